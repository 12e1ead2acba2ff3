"""TOVA press: keep the cache entries the last prompt query attends to most.

Oren et al. 2024, "Transformers are Multi-State RNNs" (arXiv 2401.06104): TOVA (Token Omission Via Attention)
treats the KV cache as a bounded multi-state RNN and, at each step, drops the state (cache entry) with the lowest
attention weight from the current query. As a post-prefill press with the shared `ratio` that is one
decision per layer: the current query is the last prompt token, entry j scores softmax(q_last K^T * scaling)_j and
the `keep_count(T, ratio)` best entries stay. The last entry is scored like any other (the paper forces nothing; its
own weight usually keeps it).

Heads. `heads="group"` (default) averages the weights over the query heads of each KV head, so every KV head keeps
its own entries (GQA, like SnapKV and H2O here); `heads="layer"` averages over all heads of the layer and evicts the
same positions from every KV head, the paper's policy (§3.3, found better than head-wise eviction there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ...errors import ConfigError
from .._attn import attention_scaling, causal_probs, group_mean, kv_groups, project_qk, repeat_heads
from .base import KVPress

HEADS = ("group", "layer")


def last_query_weights(q_last: torch.Tensor, k: torch.Tensor, scaling: float) -> torch.Tensor:
    """q_last (B, H, 1, D) = the last query, k (B, H, T, D) -> its attention weights (B, H, T) (it sees every key)."""
    return causal_probs(q_last, k, scaling, k.shape[2] - 1)[:, :, 0]  # (B, H, T)


@dataclass
class TOVAPress(KVPress):
    """Evict the prompt entries the last prompt query attends to least (mean over each KV head's query group,
    or over the whole layer with `heads="layer"`)."""

    heads: Literal["group", "layer"] = "group"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.heads not in HEADS:
            raise ConfigError(f"heads must be one of {', '.join(HEADS)}, got {self.heads!r}")

    def score(self, module: nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
              kwargs: dict[str, Any]) -> torch.Tensor:
        groups = kv_groups(module)
        pe = kwargs.get("position_embeddings")
        if pe is not None:
            pe = (pe[0][:, -1:], pe[1][:, -1:])
        q, _ = project_qk(module, hidden_states[:, -1:], pe)  # (B, H, 1, D)
        weights = last_query_weights(q, repeat_heads(keys, groups), attention_scaling(module))  # (B, H, T)
        if self.heads == "layer":
            return weights.mean(dim=1, keepdim=True).expand(-1, keys.shape[1], -1)  # (B, Hkv, T), one ranking
        return group_mean(weights, groups)  # (B, Hkv, T)
