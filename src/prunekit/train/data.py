"""Training data: packed token windows from one or more corpora, mixed by weight, in a resumable order.

Each corpus's training text (prunekit.data.splits.training_parts) is tokenised once and cut into
consecutive windows of seq_len tokens (packing: no padding, documents run across window edges). Every
epoch of a corpus visits its windows in a fresh seeded permutation. A batch draws its windows' corpora from
the mixture weights with a generator seeded by (seed, step), so the data of a step depends only on the
seed, the step, the weights and how many windows each corpus has served: exactly what `state_dict` holds.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError


class WindowStream:
    """Batches of (size, seq_len) token ids from `corpora` mixed by `weights` (default equal)."""

    def __init__(self, tokenizer: Any, corpora: list[str], seq_len: int, *, weights: list[float] | None = None,
                 seed: int = 0) -> None:
        from ..data import corpus_text
        from ..data.splits import token_ids, training_parts

        if tokenizer is None:
            raise ConfigError("training on a corpus needs the model's tokenizer; this model has none")
        self.corpora = list(corpora)
        self.seq_len = seq_len
        self.seed = seed
        self.windows: list[torch.Tensor] = []
        for name in self.corpora:
            ids = token_ids(tokenizer, training_parts(corpus_text(name))[0])
            count = len(ids) // seq_len
            if count < 1:
                raise ConfigError(f"Corpus '{name}' has {len(ids)} training tokens, fewer than seq_len={seq_len}")
            self.windows.append(ids[: count * seq_len].view(count, seq_len))  # (n, seq_len)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.corpora)
        self.served = [0] * len(self.corpora)

    def _window(self, corpus: int) -> torch.Tensor:
        table = self.windows[corpus]
        epoch, index = divmod(self.served[corpus], table.shape[0])
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + corpus * 10_007 + epoch)
        order = torch.randperm(table.shape[0], generator=generator)
        self.served[corpus] += 1
        return table[order[index]]

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """((size, seq_len) token ids, (size,) corpus index of each window) for optimizer step `step`."""
        generator = torch.Generator().manual_seed(self.seed * 7_919 + step)
        weights = torch.tensor(self.weights, dtype=torch.float64)
        sources = torch.multinomial(weights / weights.sum(), size, replacement=True, generator=generator)
        sources = sources.sort().values  # (size,)
        return torch.stack([self._window(int(c)) for c in sources]), sources

    @property
    def tokens_available(self) -> list[int]:
        return [int(t.numel()) for t in self.windows]

    def state_dict(self) -> dict:
        return {"served": list(self.served), "weights": list(self.weights)}

    def load_state_dict(self, state: dict) -> None:
        self.served = list(state["served"])
        self.weights = list(state["weights"])


def validation_windows(tokenizer: Any, corpus: str, windows: int, seq_len: int) -> torch.Tensor:
    """(n, seq_len) consecutive windows from the validation text of `corpus` (at most `windows`)."""
    from ..data import corpus_text
    from ..data.splits import token_ids, training_parts

    ids = token_ids(tokenizer, training_parts(corpus_text(corpus))[1])
    count = min(windows, len(ids) // seq_len)
    if count < 1:
        raise ConfigError(f"Corpus '{corpus}' has {len(ids)} validation tokens, fewer than seq_len={seq_len}")
    return ids[: count * seq_len].view(count, seq_len)
