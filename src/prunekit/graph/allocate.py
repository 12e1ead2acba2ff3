"""How many units each group loses: uniform ratios or one global ranking, to a channel, parameter or
MAC target (found by bisection, since removing units changes the cost of coupled layers).

- uniform: every group loses the same fraction of its units (Li et al. 2017, "Pruning Filters for
  Efficient ConvNets", prune each layer alike);
- global: units of all groups are ranked by their score divided by the mean score of their group
  (the "mean" normalisation of Torch-Pruning's global pruning), with a per-group ceiling.
A group whose units come in equal-removal blocks (query heads inside GQA groups) is ranked by bundles:
bundle k holds the k-th weakest unit of every block. `round_to` keeps kept-channel counts multiples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from .graph import DependencyGraph, Group

TARGETS = ("channels", "params", "macs")
ALLOCATIONS = ("uniform", "global")


@dataclass
class Candidate:
    """A group's removal order: items (lists of unit positions), weakest first, with item scores."""

    group: Group
    items: list[list[int]]
    scores: Tensor  # (n_items,) normalised score of each item, ascending
    cap: int  # at most this many items may go
    round_to: int

    def count(self, ratio: float) -> int:
        """Items removed at `ratio` of the group (nearest, then rounded, then capped)."""
        n = len(self.items)
        return self._fit(math.floor(ratio * n + 0.5), nearest=True)

    def _fit(self, c: int, *, nearest: bool) -> int:
        n = len(self.items)
        c = max(0, min(c, self.cap))
        if self.round_to > 1 and len(self.items[0]) == 1 and c:
            kept = n - c
            step = self.round_to
            kept = (math.floor(kept / step + 0.5) if nearest else math.ceil(kept / step)) * step
            c = max(0, min(n - max(kept, step), self.cap))
        return c

    def positions(self, c: int) -> list[int]:
        return sorted(p for item in self.items[:c] for p in item)


def candidates(groups: list[Group], scores: Mapping[str, Tensor], max_layer_ratio: float,
               round_to: int) -> list[Candidate]:
    """Removal orders of `groups` from their unit scores (higher = keep)."""
    out = []
    for g in groups:
        s = scores[g.name].double()  # (n_units,)
        if g.blocks:
            ranked = [sorted(block, key=lambda p: float(s[p])) for block in g.blocks]
            items = [list(bundle) for bundle in zip(*ranked, strict=True)]
            item_scores = torch.stack([s[item].mean() for item in items])
        else:
            order = torch.argsort(s, stable=True)
            items = [[p] for p in order.tolist()]
            item_scores = s[order]
        item_scores = item_scores / s.mean().clamp_min(1e-12)
        cap = min(math.floor(max_layer_ratio * len(items) + 1e-9), len(items) - 1)
        out.append(Candidate(g, items, item_scores, cap, 1 if g.kind == "heads" else round_to))  # round channels
    return out


def select(cands: list[Candidate], counts: list[int]) -> dict[str, list[int]]:
    return {c.group.name: c.positions(k) for c, k in zip(cands, counts, strict=True) if k}


def allocate(graph: DependencyGraph, cands: list[Candidate], ratio: float, target: str,
             allocation: str) -> tuple[dict[str, list[int]], float]:
    """(selection, achieved fraction of the target removed)."""
    if target not in TARGETS:
        raise ConfigError(f"Unknown target '{target}'. Valid choices: {', '.join(TARGETS)}.")
    if allocation not in ALLOCATIONS:
        raise ConfigError(f"Unknown allocation '{allocation}'. Valid choices: {', '.join(ALLOCATIONS)}.")
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"ratio must be in [0, 1), got {ratio}")
    base = graph.estimate({}) if target != "channels" else None
    total_units = sum(len(c.group.units) for c in cands)

    def removed_fraction(counts: list[int]) -> float:
        if target == "channels":
            return sum(sum(len(i) for i in c.items[:k]) for c, k in zip(cands, counts, strict=True)) / total_units
        after = graph.estimate(select(cands, counts))
        return 1.0 - after[target] / max(base[target], 1)

    if allocation == "uniform":
        counts_at = lambda r: [c.count(r) for c in cands]  # noqa: E731
        if target == "channels":
            counts = counts_at(ratio)
        else:
            counts = _bisect(counts_at, removed_fraction, ratio, target, lambda lo, hi: (lo + hi) / 2, 0.0, 1.0)
        return select(cands, counts), removed_fraction(counts)
    order = sorted((float(s), ci, k) for ci, c in enumerate(cands) for k, s in enumerate(c.scores))

    def counts_prefix(n: int) -> list[int]:
        """The n weakest items overall, each group capped and rounded (removing fewer, never more)."""
        counts = [0] * len(cands)
        for _, ci, k in order[: int(n)]:
            counts[ci] = max(counts[ci], k + 1)
        return [c._fit(k, nearest=False) for c, k in zip(cands, counts, strict=True)]

    counts = _bisect(counts_prefix, removed_fraction, ratio, target, lambda lo, hi: (lo + hi) // 2, 0, len(order))
    return select(cands, counts), removed_fraction(counts)


def _bisect(counts_at, measure, ratio: float, target: str, middle, lo, hi) -> list[int]:
    """Counts at the smallest knob in [lo, hi] whose removed fraction reaches `ratio` (knob monotone)."""
    reachable = measure(counts_at(hi))
    if reachable + 1e-9 < ratio:
        raise ConfigError(f"ratio {ratio} of {target} cannot be reached with these groups and max_layer_ratio "
                          f"(at most {reachable:.3f}); widen the scope or raise max_layer_ratio.")
    integer = isinstance(hi, int)
    for _ in range(60):
        if (hi - lo) <= (0 if integer else 1e-6):
            break
        mid = middle(lo, hi)
        if measure(counts_at(mid)) + 1e-12 >= ratio:
            hi = mid
        else:
            lo = mid + 1 if integer else mid
    return counts_at(hi)
