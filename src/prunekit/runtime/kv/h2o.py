"""H2O press: keep the "heavy hitters", the entries that received the most attention over the prompt, plus the
most recent entries.

Zhang et al. 2023, "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models"
(arXiv 2306.14048): the accumulated attention a token receives identifies the few tokens that matter. Here the
score of entry j is the sum over all prompt queries i >= j of softmax(q_i K^T / sqrt(d))_j, averaged over the query
heads of each KV head (GQA). Queries are processed in chunks so memory stays O(chunk * T).

Recent budget. The paper's policy keeps heavy hitters AND a window of recent tokens, splitting the cache budget
equally between them in its experiments. Accumulated attention alone is biased against recent entries (entry j is
summed over only T - j queries), so without the window the question at the end of a prompt is evicted first: on
needle retrieval with SmolLM2-135M that left the last 8 prompt tokens out of almost every layer (bench/runtime/kv.py).
So `recent_fraction` (default 0.5, the paper's split) of each layer's kept entries go to the most recent ones, the
rest to the highest accumulated attention; `recent_window` forces a fixed number of recent entries instead when it
is larger. `recent_fraction=0` gives pure accumulated attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError
from .._attn import attention_scaling, causal_probs, group_mean, kv_groups, project_qk, repeat_heads
from .base import KVPress, keep_count


def accumulated_attention(q: torch.Tensor, k: torch.Tensor, scaling: float, chunk: int = 256) -> torch.Tensor:
    """q (B, H, T, D), k (B, H, T, D) -> (B, H, T): attention received by each key, summed over causal queries."""
    total = torch.zeros(q.shape[0], q.shape[1], k.shape[2], device=q.device)  # (B, H, T)
    for start in range(0, q.shape[2], chunk):
        probs = causal_probs(q[:, :, start:start + chunk], k, scaling, start)  # (B, H, c, T)
        total += probs.sum(dim=2)
    return total


@dataclass
class H2OPress(KVPress):
    """Evict the entries with the least accumulated attention over the prompt, keeping a recent window."""

    recent_window: int = 0
    recent_fraction: float = 0.5
    chunk: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.recent_window, int) or self.recent_window < 0:
            raise ConfigError(f"recent_window must be a non-negative integer, got {self.recent_window!r}")
        if (not isinstance(self.recent_fraction, int | float) or isinstance(self.recent_fraction, bool)
                or not 0.0 <= self.recent_fraction <= 1.0):
            raise ConfigError(f"recent_fraction must be a number in [0, 1], got {self.recent_fraction!r}")

    def received(self, module: nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor,
                 kwargs: dict[str, Any]) -> torch.Tensor:
        """(B, Hkv, T) accumulated attention received by each entry (mean over each KV head's query group)."""
        groups = kv_groups(module)
        q, _ = project_qk(module, hidden_states, kwargs.get("position_embeddings"))  # (B, H, T, D)
        received = accumulated_attention(q, repeat_heads(keys, groups), attention_scaling(module), self.chunk)
        return group_mean(received, groups)  # (B, Hkv, T)

    def recent_count(self, layer_idx: int, length: int) -> int:
        """Most recent entries always kept at this layer."""
        return max(self.recent_window, int(self.recent_fraction * keep_count(length, self.ratio_for(layer_idx))))

    def score(self, module: nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
              kwargs: dict[str, Any]) -> torch.Tensor:
        scores = self.received(module, hidden_states, keys, kwargs).clone()
        recent = min(self.recent_count(int(module.layer_idx), keys.shape[-2]), keys.shape[-2])
        if recent:
            scores[..., -recent:] = float("inf")
        return scores
