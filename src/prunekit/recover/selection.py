"""Which windows recovery trains on: "all" (every training window of the corpora, prunekit.train.WindowStream),
"random" (a seeded subset) or "paser" (PASER, recover/paser.py), the last two as a fixed pool of
RecoverConfig.selected_windows windows chosen from RecoverConfig.candidate_windows candidates.

Candidates are drawn from the corpora by the mixture weights (each corpus's share apportioned exactly, capped by
the windows it has; windows in a seeded permutation), so random and PASER choose from the same candidates. The
chosen pool is served by SelectedStream.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from .config import RecoverConfig
from .paser import allocate_budget, select_paser


class SelectedStream:
    """Batches of (size, seq_len) ids served from a fixed pool: `chosen` rows of `candidates` (n, seq_len), whose
    corpus indices are `sources` (n,). Same interface as WindowStream (batch, windows, weights, state_dict).

    Corpora take turns by smooth weighted round-robin over `weights` (default: the pool's window count per corpus,
    so every pooled window is served exactly once per pass over the pool); each corpus serves its pooled windows
    in a fresh seeded permutation per epoch. The state (windows served and round-robin credit per corpus, the
    weights and the chosen rows) fixes all later batches, so a resumed run sees the same data.
    """

    def __init__(self, candidates: Tensor, sources: Tensor, chosen: list[int], corpora: list[str], seq_len: int,
                 *, seed: int = 0) -> None:
        self.candidates, self.sources = candidates, sources
        self.corpora = list(corpora)
        self.seq_len = seq_len
        self.seed = seed
        self._choose(chosen)
        self.weights = [float(t.shape[0]) for t in self.windows]
        self.served = [0] * len(self.corpora)
        self.credit = [0.0] * len(self.corpora)

    def _choose(self, chosen: list[int]) -> None:
        if not chosen:
            raise ConfigError("the selected pool of training windows is empty")
        self.chosen = [int(i) for i in chosen]
        rows = torch.tensor(self.chosen, dtype=torch.long)
        self.windows = [self.candidates[rows[self.sources[rows] == c]] for c in range(len(self.corpora))]

    def _next_corpus(self) -> int:
        weights = [w if t.shape[0] else 0.0 for w, t in zip(self.weights, self.windows, strict=True)]
        total = sum(weights)
        if total <= 0:
            raise ConfigError(f"stream weights {self.weights} give no weight to a corpus with selected windows")
        for c, w in enumerate(weights):
            self.credit[c] += w
        pick = max((c for c, w in enumerate(weights) if w > 0), key=lambda c: (self.credit[c], -c))
        self.credit[pick] -= total
        return pick

    def _window(self, corpus: int) -> Tensor:
        table = self.windows[corpus]
        epoch, index = divmod(self.served[corpus], table.shape[0])
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + corpus * 10_007 + epoch)
        self.served[corpus] += 1
        return table[torch.randperm(table.shape[0], generator=generator)[index]]

    def batch(self, step: int, size: int) -> tuple[Tensor, Tensor]:
        """((size, seq_len) token ids, (size,) corpus index of each window); `step` is unused: the state alone
        fixes the batch."""
        sources = torch.tensor(sorted(self._next_corpus() for _ in range(size)), dtype=torch.long)  # (size,)
        return torch.stack([self._window(int(c)) for c in sources]), sources

    @property
    def tokens_available(self) -> list[int]:
        return [int(t.numel()) for t in self.windows]

    def state_dict(self) -> dict:
        return {"served": list(self.served), "weights": list(self.weights), "credit": list(self.credit),
                "chosen": list(self.chosen)}

    def load_state_dict(self, state: dict) -> None:
        if state["chosen"] != self.chosen:  # keep the checkpoint's pool, even if scoring again differed
            self._choose(state["chosen"])
        self.served = list(state["served"])
        self.weights = list(state["weights"])
        self.credit = list(state["credit"])


def draw_candidates(stream: Any, count: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """((m, seq_len) ids, (m,) corpus index): `count` windows of a WindowStream's corpora (m < count only when
    the corpora hold fewer), apportioned by `stream.weights`, each corpus's in a seeded permutation."""
    sizes = torch.tensor([t.shape[0] for t in stream.windows])
    counts = allocate_budget(torch.tensor(stream.weights, dtype=torch.float64), sizes, count)
    ids, sources = [], []
    for c, (table, n) in enumerate(zip(stream.windows, counts.tolist(), strict=True)):
        generator = torch.Generator().manual_seed(seed * 7_919 + c)
        ids.append(table[torch.randperm(table.shape[0], generator=generator)[:n]])
        sources.append(torch.full((n,), c, dtype=torch.long))
    return torch.cat(ids), torch.cat(sources)


def build_stream(loaded: Any, config: RecoverConfig, dense: Any = None) -> tuple[Any, dict]:
    """(the training stream, the selection report) for `config.select`; `dense` (the dense model) is needed by
    "paser"."""
    from ..train.data import WindowStream

    base = WindowStream(loaded.tokenizer, config.corpus, config.seq_len, weights=config.weights, seed=config.seed)
    if config.select == "all":
        return base, {"select": "all", "windows": sum(t.shape[0] for t in base.windows)}
    keep = config.selected_windows
    ids, sources = draw_candidates(base, config.candidate_windows, config.seed)
    if ids.shape[0] < keep:
        raise ConfigError(f"recover select '{config.select}' needs {keep} windows of {config.seq_len} tokens and the "
                          f"corpora {config.corpus} hold {ids.shape[0]}; lower select_tokens or add corpora")
    details: dict = {}
    if config.select == "random":
        generator = torch.Generator().manual_seed(config.seed * 31 + 17)
        chosen = sorted(torch.randperm(ids.shape[0], generator=generator)[:keep].tolist())
    elif config.select == "paser":
        if dense is None:
            raise ConfigError("recover select 'paser' compares the pruned model with the dense one: in a recipe that "
                              "is the dense model; in Python pass teacher=...; or use select: random")
        names = [config.corpus[int(s)] for s in sources]
        chosen, details = select_paser(loaded, dense, ids, keep, clusters=config.paser_clusters, seed=config.seed,
                                       groups=names)
    else:  # RecoverConfig admits only SELECTORS
        raise ConfigError(f"Unknown select '{config.select}'")
    stream = SelectedStream(ids, sources, chosen, config.corpus, config.seq_len, seed=config.seed)
    per_corpus = {name: int(t.shape[0]) for name, t in zip(config.corpus, stream.windows, strict=True)}
    report = {"select": config.select, "windows": keep, "tokens": keep * config.seq_len,
              "candidates": int(ids.shape[0]), "per_corpus": per_corpus, **details}
    return stream, report
