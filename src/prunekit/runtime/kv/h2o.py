"""H2O press: keep the "heavy hitters", the entries that received the most attention over the prompt.

Zhang et al. 2023, "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models"
(arXiv 2306.14048): the accumulated attention a token receives identifies the few tokens that matter. Here the
score of entry j is the sum over all prompt queries i >= j of softmax(q_i K^T / sqrt(d))_j, averaged over the query
heads of each KV head (GQA); optional `recent_window` entries are always kept, as in the paper's recent budget.
Queries are processed in chunks so memory stays O(chunk * T).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError
from .._attn import attention_scaling, causal_probs, group_mean, kv_groups, project_qk, repeat_heads
from .base import KVPress


def accumulated_attention(q: torch.Tensor, k: torch.Tensor, scaling: float, chunk: int = 256) -> torch.Tensor:
    """q (B, H, T, D), k (B, H, T, D) -> (B, H, T): attention received by each key, summed over causal queries."""
    total = torch.zeros(q.shape[0], q.shape[1], k.shape[2], device=q.device)  # (B, H, T)
    for start in range(0, q.shape[2], chunk):
        probs = causal_probs(q[:, :, start:start + chunk], k, scaling, start)  # (B, H, c, T)
        total += probs.sum(dim=2)
    return total


@dataclass
class H2OPress(KVPress):
    """Evict the entries with the least accumulated attention over the prompt."""

    recent_window: int = 0
    chunk: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.recent_window, int) or self.recent_window < 0:
            raise ConfigError(f"recent_window must be a non-negative integer, got {self.recent_window!r}")

    def score(self, module: nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
              kwargs: dict[str, Any]) -> torch.Tensor:
        groups = kv_groups(module)
        q, _ = project_qk(module, hidden_states, kwargs.get("position_embeddings"))  # (B, H, T, D)
        received = accumulated_attention(q, repeat_heads(keys, groups), attention_scaling(module), self.chunk)
        scores = group_mean(received, groups)  # (B, Hkv, T)
        if self.recent_window:
            scores[..., -self.recent_window:] = float("inf")
        return scores
