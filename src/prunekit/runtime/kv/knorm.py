"""Key-norm press: keep the cache entries whose keys have the LOWEST L2 norm.

Devoto et al. 2024, "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression" (arXiv 2406.11430):
keys with a low L2 norm tend to receive high attention, so the norm is a query-free importance proxy. RoPE is a
rotation, so the norm of the cached (rotated) key equals the norm before rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import KVPress


def knorm_scores(keys: torch.Tensor) -> torch.Tensor:
    """keys (B, Hkv, T, D) -> (B, Hkv, T) = -||k||, so the lowest norms score highest."""
    return -keys.float().norm(dim=-1)


@dataclass
class KeyNormPress(KVPress):
    """Evict the `ratio` of prompt entries with the largest key norms, per KV head."""

    def score(self, module: nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
              kwargs: dict[str, Any]) -> torch.Tensor:
        return knorm_scores(keys)
