"""DELTA press: decode-time sparse attention over KV pages chosen by a few dense "selection" layers.

Zeng et al. 2025, "DELTA: Dynamic Layer-Aware Token Attention for Efficient Long-Context Reasoning"
(arXiv 2510.09883). Layers have three roles during decode (prefill stays dense; the full KV cache is kept):
  * the first `dense_layers` layers attend densely;
  * `selection_layers` attend densely and re-select pages: the cache is cut into `page_size` pages, page score
    S(P) = sum over j in P of max over heads of p_{h,j} (the current query's attention probabilities), the last
    `recent_pages` pages are forced in, and the best pages fill the budget;
  * every other layer attends only to the latest selection (the same entries for every head), gathered from the
    cache, so its cost is `budget` entries instead of the context length.
Budget = number of attended KV entries per sparse layer. Pages are aligned to the END of the cache (page 0 = the
most recent `page_size` entries), so only the oldest page can be short; pages are taken whole in score order and
the last one taken is cut to its most recent entries, so exactly `budget` entries are attended. When the cache
holds no more than `budget` entries every layer is dense (identical to the model without the press).
The forced recent pages must leave room for selected ones (recent_pages * page_size < budget): with the paper's 8
recent pages a budget of 128 would be a pure 128-entry sliding window without the attention-sink page, which on
SmolLM2-135M broke greedy agreement (0.34 teacher-forced at 512 tokens, bench/runtime/delta.py), so it is an error.
Defaults: pages of ONE entry and 16 forced recent entries, not the paper's 16-entry pages and 8 recent pages. The
paper's pages suit a paged GPU KV cache; on CPU the sparse layers gather entries one by one, so a page saves nothing,
and finer pages spend the budget on the entries the selection layer actually attends to. Teacher-forced greedy
agreement with dense over 64 decode steps on SmolLM2-135M at budget = 1/4 of a 1024-token prompt (8 prompts,
bench/runtime/delta.py): pages of 16 / 8 / 4 / 2 / 1 -> 0.906 (4 prompts) / 0.938 / 0.945 / 0.967 / 0.979; at 2048
tokens, pages of 16 -> 0.859 (4 prompts), 2 -> 0.924, 1 -> 0.949.
Budget. `budget` is absolute (default 1024 entries: the press acts once the cache holds more, e.g. on a 2k
prompt). `ratio` r (the knob every press shares), given instead of `budget`, sets it at every decode
step from the current cache length K: budget = K - int(r K) (the kept fraction 1 - r, floored as in the KV presses),
at least (recent_pages + 1) * page_size so a page is still selected; r = 0 is dense. Giving both is an error.
Installed as an attention function through AttentionInterface, wrapping the model's current implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import ConfigError
from ...utils.hooks import HookSet
from .._interface import AttentionFn, attention_function
from ..base import RENAMED_RATIO, Press, num_layers, validate_ratio


def decode_probs(query: torch.Tensor, key: torch.Tensor, scaling: float, mask: torch.Tensor | None) -> torch.Tensor:
    """query (B, H, 1, D), key (B, Hkv, K, D), optional mask (B, 1|H, 1, K) -> probabilities (B, H, K)."""
    b, h, _, d = query.shape
    groups = h // key.shape[1]
    q = query.float().reshape(b, key.shape[1], groups, d)  # (B, Hkv, g, D)
    logits = torch.einsum("bkgd,bknd->bkgn", q, key.float()).reshape(b, h, -1) * scaling  # (B, H, K)
    if mask is not None:
        mask = mask[:, :, -1, :]  # (B, 1|H, K)
        logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask.float()
    return logits.softmax(dim=-1)


def page_scores(probs: torch.Tensor, page_size: int) -> torch.Tensor:
    """probs (B, H, K) -> (B, P): sum over each end-aligned page of the max over heads (page 0 = most recent)."""
    best = probs.amax(dim=1)  # (B, K)
    length = best.shape[-1]
    pages = -(-length // page_size)
    page_of = (length - 1 - torch.arange(length, device=probs.device)) // page_size  # (K,)
    scores = best.new_zeros(best.shape[0], pages)
    return scores.index_add_(1, page_of, best)


def select_pages(scores: torch.Tensor, length: int, page_size: int, budget: int, recent_pages: int) -> torch.Tensor:
    """Page scores (B, P) -> (B, budget) cache indices, sorted: forced recent pages first, then by score."""
    batch, pages = scores.shape
    scores = scores.clone()
    scores[:, :recent_pages] = float("inf")
    order = scores.argsort(dim=-1, descending=True, stable=True)  # (B, P)
    offsets = torch.arange(page_size, device=scores.device)  # most recent entry of a page first
    table = length - 1 - torch.arange(pages, device=scores.device)[:, None] * page_size - offsets  # (P, page)
    ordered = table[order].reshape(batch, -1)  # (B, P * page)
    valid = ordered >= 0
    take = valid & (valid.cumsum(dim=-1) <= budget)
    return ordered[take].view(batch, budget).sort(dim=-1).values


def gathered_decode(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, index: torch.Tensor,
                    scaling: float, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of query (B, H, 1, D) over the entries `index` (B, n) of key/value (B, Hkv, K, D) -> (B, 1, H, D)."""
    b, h, _, d = query.shape
    hkv = key.shape[1]
    gather = index[:, None, :, None].expand(b, hkv, index.shape[1], d)  # (B, Hkv, n, D)
    k, v = key.gather(2, gather), value.gather(2, gather)  # (B, Hkv, n, D)
    if mask is not None:
        mask = mask[:, :, -1:, :].gather(3, index[:, None, None, :].expand(b, mask.shape[1], 1, -1))
    probs = decode_probs(query, k, scaling, mask).to(v.dtype)  # (B, H, n)
    probs = probs.view(b, hkv, h // hkv, -1)  # (B, Hkv, g, n)
    out = torch.einsum("bkgn,bknd->bkgd", probs, v).reshape(b, h, 1, d)  # (B, H, 1, D)
    return out.transpose(1, 2).contiguous()


@dataclass
class DeltaPress(Press):
    """Dense first layers, page-selecting Δ-layers, and sparse layers attending to `budget` selected entries."""

    budget: int | None = None  # None: DEFAULT_BUDGET, unless ratio is given
    ratio: float | None = None
    page_size: int = 1
    recent_pages: int = 16
    dense_layers: int = 2
    selection_layers: Sequence[int] | None = None

    RENAMED: ClassVar[dict[str, str]] = RENAMED_RATIO
    DEFAULT_BUDGET: ClassVar[int] = 1024
    replaces_attention: ClassVar[bool] = True
    supported_model_types: ClassVar[tuple[str, ...]] = ("gpt2", "llama", "mistral", "qwen2", "qwen3")

    def __post_init__(self) -> None:
        if self.ratio is not None:
            if self.budget is not None:
                raise ConfigError("give either budget or ratio, not both (ratio sets the budget to the kept fraction "
                                  "of the cache at every step)")
            self.ratio = validate_ratio(self.ratio)
        elif self.budget is None:
            self.budget = self.DEFAULT_BUDGET
        for name in ("budget", "page_size"):
            value = getattr(self, name)
            if value is None and name == "budget":
                continue
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("recent_pages", "dense_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if self.budget is not None:
            if self.budget < self.page_size:
                raise ConfigError(f"budget ({self.budget}) must hold at least one page of {self.page_size} entries")
            if self.recent_pages * self.page_size >= self.budget:
                raise ConfigError(f"recent_pages ({self.recent_pages}) x page_size ({self.page_size}) fill the whole "
                                  f"budget ({self.budget}): no page would be selected and sparse layers would see only "
                                  "a sliding window; lower recent_pages or raise the budget")
        self.reset()

    def budget_for(self, length: int) -> int:
        """Entries a sparse layer attends to when the cache holds `length` (absolute, or from ratio)."""
        if self.ratio is None:
            return int(self.budget)
        kept = length - int(length * self.ratio)
        return max(kept, (self.recent_pages + 1) * self.page_size)

    def reset(self) -> None:
        self.attended_entries_per_layer: dict[int, int] = {}
        self.selections: int = 0
        self._selection: torch.Tensor | None = None
        self._selection_length = -1

    def roles(self, layers: int) -> list[str]:
        """'dense', 'select' or 'sparse' for each layer."""
        select = self._selection_layers(layers)
        return ["select" if i in select else "dense" if i < self.dense_layers else "sparse" for i in range(layers)]

    def _selection_layers(self, layers: int) -> list[int]:
        if self.selection_layers is not None:
            return sorted({int(i) for i in self.selection_layers})
        return sorted({min(self.dense_layers, layers - 1), layers // 2, (3 * layers) // 4})

    def validate(self, model: nn.Module) -> None:
        layers = num_layers(model)
        select = self._selection_layers(layers)
        bad = [i for i in select if not 0 <= i < layers]
        if bad:
            raise ConfigError(f"selection_layers {bad} are outside the model's layers 0..{layers - 1}")
        if not select or select[0] > self.dense_layers:
            raise ConfigError(f"layers {self.dense_layers}..{select[0] if select else layers - 1} would be sparse "
                              "before any selection layer; the first selection layer must be <= dense_layers "
                              f"({self.dense_layers}), got selection_layers={select}")

    def install(self, model: nn.Module, hooks: HookSet, stack: ExitStack) -> None:
        self._roles = self.roles(num_layers(model))
        stack.enter_context(attention_function(model, "delta", self._make))

    def _make(self, previous: Any) -> AttentionFn:
        def delta_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
            dense = previous(module)
            layer = int(module.layer_idx)
            length = key.shape[2]
            role = self._roles[layer]
            budget = self.budget_for(length)
            if query.shape[2] != 1 or length <= budget or role == "dense":
                if query.shape[2] == 1:
                    self.attended_entries_per_layer[layer] = length
                return dense(module, query, key, value, attention_mask, **kwargs)
            scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
            if role == "select":
                with torch.no_grad():
                    probs = decode_probs(query, key, scaling, attention_mask)  # (B, H, K)
                    scores = page_scores(probs, self.page_size)  # (B, P)
                    self._selection = select_pages(scores, length, self.page_size, budget, self.recent_pages)
                self._selection_length = length
                self.selections += 1
                self.attended_entries_per_layer[layer] = length
                return dense(module, query, key, value, attention_mask, **kwargs)
            if self._selection is None or self._selection_length != length:  # cache lengths differ across layers
                self.attended_entries_per_layer[layer] = length
                return dense(module, query, key, value, attention_mask, **kwargs)
            self.attended_entries_per_layer[layer] = int(self._selection.shape[1])
            return gathered_decode(query, key, value, self._selection, scaling, attention_mask), None

        return delta_attention
