"""Perplexity under one documented protocol, the same for dense and pruned models.

Protocol (defaults): the evaluation split of the corpus (last 10% of its text, see prunekit.data.splits)
is tokenised without special tokens and cut into `windows` consecutive, non-overlapping windows of
`window` tokens from its start (stride = window). Each window is scored independently with no context
carried over; every token except the first of its window is predicted. Perplexity = exp(mean NLL) over
all predicted tokens (windows * (window - 1)).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..utils.progress import track


@dataclass(frozen=True)
class PerplexityProtocol:
    corpus: str = "wiki"
    window: int = 1024
    windows: int = 16
    batch_size: int = 1

    def key(self) -> str:
        return f"ppl:{self.corpus}:w{self.window}:n{self.windows}"

    def to_dict(self) -> dict:
        return asdict(self)


def perplexity(model: Any, tokenizer: Any, protocol: PerplexityProtocol = PerplexityProtocol()) -> float:
    """Perplexity of a causal LM on the evaluation split under `protocol`."""
    from ..data import evaluation_windows

    ids = evaluation_windows(tokenizer, protocol.corpus, protocol.windows, protocol.window)
    return perplexity_of_windows(model, ids, protocol.batch_size)


def perplexity_of_windows(model: Any, ids, batch_size: int = 1) -> float:
    """exp(mean next-token NLL) over (N, T) windows, each scored independently."""
    import torch
    import torch.nn.functional as F

    total_nll, total_tokens = 0.0, 0
    device = next(model.parameters()).device
    batches = range(0, ids.shape[0], batch_size)
    with torch.inference_mode():
        for start in track(batches, "perplexity", total=len(batches)):
            batch = ids[start : start + batch_size].to(device)  # (B, T)
            logits = model(input_ids=batch, use_cache=False).logits  # (B, T, V)
            nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum")
            total_nll += nll.item()
            total_tokens += batch[:, 1:].numel()
    return math.exp(total_nll / total_tokens)
