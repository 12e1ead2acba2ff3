"""StreamingLLM press: keep a few attention-sink tokens plus the most recent window.

Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks" (arXiv 2309.17453): the first tokens
act as attention sinks, so keeping them plus a recent window preserves fluency. Here it is applied once after
prefill: the first `n_sink` entries and the most recent ones fill the `T - int(ratio * T)` kept slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError
from .base import KVPress


def streaming_scores(batch: int, heads: int, length: int, n_sink: int, device: torch.device) -> torch.Tensor:
    """(B, Hkv, T): sinks score +inf, the rest score their position (recent = high)."""
    scores = torch.arange(length, device=device, dtype=torch.float32)  # (T,)
    scores[:n_sink] = float("inf")
    return scores.expand(batch, heads, length)


@dataclass
class StreamingLLMPress(KVPress):
    """Keep `n_sink` first entries and the most recent ones; `ratio` of the prompt is evicted."""

    n_sink: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.n_sink, int) or self.n_sink < 0:
            raise ConfigError(f"n_sink must be a non-negative integer, got {self.n_sink!r}")

    def score(self, module: nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
              kwargs: dict[str, Any]) -> torch.Tensor:
        b, h, t, _ = keys.shape  # (B, Hkv, T, D)
        return streaming_scores(b, h, t, self.n_sink, keys.device)
