"""SnapKV press: score entries by the attention of an observation window of the last prompt queries.

Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before Generation" (arXiv 2404.14469): the last `w`
prompt queries already attend to what generation will need. Score of prefix entry j = sum over the window
queries of their attention to j, smoothed with a 1-D pool (kernel `kernel_size`, "avg" or "max") so neighbours
of important tokens survive, averaged over each KV head's query group. Window entries are always kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .._attn import attention_scaling, causal_probs, group_mean, kv_groups, project_qk, repeat_heads
from .base import KVPress

POOLINGS = ("avg", "max")


def window_scores(q_window: torch.Tensor, k: torch.Tensor, scaling: float, kernel_size: int,
                  pooling: str) -> torch.Tensor:
    """q_window (B, H, w, D) = last w queries, k (B, H, T, D) -> pooled scores (B, H, T), window = +inf."""
    w, t = q_window.shape[2], k.shape[2]
    probs = causal_probs(q_window, k, scaling, t - w)  # (B, H, w, T)
    scores = probs.sum(dim=2)  # (B, H, T)
    if kernel_size > 1:
        b, h = scores.shape[:2]
        flat = scores.reshape(b * h, 1, t)
        pool = F.avg_pool1d if pooling == "avg" else F.max_pool1d
        flat = pool(flat, kernel_size, stride=1, padding=kernel_size // 2)
        scores = flat.reshape(b, h, -1)[..., :t]
    scores = scores.clone()
    scores[..., t - w:] = float("inf")
    return scores


@dataclass
class SnapKVPress(KVPress):
    """Evict the prefix entries least attended by the last `window` prompt queries (pooled)."""

    window: int = 32
    kernel_size: int = 5
    pooling: Literal["avg", "max"] = "avg"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"window must be a positive integer, got {self.window!r}")
        if not isinstance(self.kernel_size, int) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be a positive odd integer, got {self.kernel_size!r}")

    def score(self, module: nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
              kwargs: dict[str, Any]) -> torch.Tensor:
        groups = kv_groups(module)
        w = min(self.window, hidden_states.shape[1])
        pe = kwargs.get("position_embeddings")
        if pe is not None:
            pe = (pe[0][:, -w:], pe[1][:, -w:])
        q, _ = project_qk(module, hidden_states[:, -w:], pe)  # (B, H, w, D)
        scores = window_scores(q, repeat_heads(keys, groups), attention_scaling(module), self.kernel_size,
                               self.pooling)
        return group_mean(scores, groups)  # (B, Hkv, T)
