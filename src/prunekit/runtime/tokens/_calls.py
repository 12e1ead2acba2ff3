"""Helpers for rewriting decoder-layer calls: read/replace arguments by name, slice sequences, positional masks."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._attn import gather_rows


class LayerCall:
    """The (args, kwargs) of one forward call, addressed by parameter name (GPT-2 passes the mask positionally)."""

    def __init__(self, module: nn.Module, args: tuple, kwargs: dict):
        params = inspect.signature(module.forward).parameters.values()
        self.names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.args = list(args)
        self.kwargs = dict(kwargs)

    def _position(self, name: str) -> int | None:
        if name in self.names and self.names.index(name) < len(self.args):
            return self.names.index(name)
        return None

    def get(self, name: str) -> Any:
        position = self._position(name)
        return self.args[position] if position is not None else self.kwargs.get(name)

    def has(self, name: str) -> bool:
        return self._position(name) is not None or name in self.kwargs

    def set(self, name: str, value: Any) -> None:
        position = self._position(name)
        if position is not None:
            self.args[position] = value
        else:
            self.kwargs[name] = value

    def result(self) -> tuple[tuple, dict]:
        return tuple(self.args), self.kwargs


def slice_sequence_inputs(call: LayerCall, index: torch.Tensor) -> None:
    """Restrict position embeddings, position ids and a 4D mask of a prefill call to rows/cols `index` (B, n)."""
    pe = call.get("position_embeddings")
    if pe is not None:
        call.set("position_embeddings", tuple(gather_rows(x, index, 1) for x in pe))  # (B, n, D) each
    position_ids = call.get("position_ids")
    if isinstance(position_ids, torch.Tensor) and position_ids.dim() == 2:
        call.set("position_ids", gather_rows(position_ids, index, 1))
    mask = call.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        mask = gather_rows(mask, index, 2)  # (B, 1, n, T)
        call.set("attention_mask", gather_rows(mask, index, 3))  # (B, 1, n, n)


def positional_mask(key_pos: torch.Tensor, query_pos: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (B, 1, q, k): 0 where key position <= query position, dtype-min elsewhere."""
    allowed = key_pos[:, None, None, :] <= query_pos[:, None, :, None]  # (B, 1, q, k)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=key_pos.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def last_token_importance(q_last: torch.Tensor, keys: torch.Tensor, groups: int, scaling: float) -> torch.Tensor:
    """q_last (B, H, 1, D), keys (B, Hkv, n, D) -> (B, n): attention of the last query, mean over heads."""
    return window_importance(q_last, keys, groups, scaling)


def window_importance(q: torch.Tensor, keys: torch.Tensor, groups: int, scaling: float) -> torch.Tensor:
    """q (B, H, w, D) = the queries of the last w of the n rows, keys (B, Hkv, n, D) -> (B, n): causal attention
    probabilities, mean over heads and the w queries (w = 1: the last token's attention, LazyLLM's score)."""
    b, h, w, d = q.shape
    n = keys.shape[2]
    q = q.float().view(b, h // groups, groups, w, d)  # (B, Hkv, g, w, D)
    logits = torch.einsum("bkgwd,bknd->bkgwn", q, keys.float()) * scaling  # (B, Hkv, g, w, n)
    if w > 1:
        rows = torch.arange(n - w, n, device=keys.device)[:, None]  # (w, 1)
        logits = logits.masked_fill(torch.arange(n, device=keys.device)[None, :] > rows, float("-inf"))
    return logits.softmax(dim=-1).mean(dim=(1, 2, 3))  # (B, n)


def max_pool_scores(scores: torch.Tensor, kernel: int) -> torch.Tensor:
    """scores (B, n) in position order -> max over a centred window of `kernel` (odd) neighbours."""
    if kernel <= 1:
        return scores
    return F.max_pool1d(scores[:, None], kernel, stride=1, padding=kernel // 2)[:, 0]
