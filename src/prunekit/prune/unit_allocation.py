"""How many heads / MLP neurons each group of an LLM loses: the weakest units (standardised scores) first until a
fraction of the non-embedding parameters is gone, either globally or per block first (uniform, or by angular block
importance) with any shortfall filled globally. Used by llm-structured pruning and the methods that prune while
training (recover/incremental.py, recover/joint.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .llm_structured import LLMStructuredConfig


@dataclass
class Allocation:
    """Which units go: candidates per group, their parameter cost, the block of each group, per-block ratios."""

    cands: list
    costs: list
    block_of: dict
    selection: dict
    achieved: float
    nonembed: int
    block_ratio: Any = None
    importance: Any = None

    def layers(self, kinds: dict, shapes: dict, ratio: float) -> dict:
        out = {}
        for ci, c in enumerate(self.cands):
            g = c.group
            gone = len(self.selection.get(g.name, []))
            b = self.block_of[g.name]
            requested = ratio if self.block_ratio is None or b < 0 else float(self.block_ratio[b])
            out[g.name] = {"kind": kinds[g.name], "before": g.size, "after": g.size - gone, "requested": requested,
                           "actual": gone / g.size, "params": len(c.items) * self.costs[ci],
                           "shapes": shapes[g.name]}
        return out


def allocate_units(loaded: Any, graph: Any, groups: list, scores: dict, config: LLMStructuredConfig,
                   windows: Any) -> Allocation:
    """Weakest units first until `ratio` of the non-embedding parameters are gone: globally, or per block first
    (uniform, or angular block importance) with the shortfall filled globally."""
    import torch

    from ..allocate.block_importance import block_angular_importance, keep_ratios
    from ..graph.allocate import candidates

    model, blocks = loaded.model, loaded.adapter.blocks()
    names = {id(m): n for n, m in model.named_modules()}
    prefixes = [names[id(b)] + "." for b in blocks]
    block_of = {g.name: next((i for i, p in enumerate(prefixes) if all(m.startswith(p) for m in g.modules)), -1)
                for g in groups}
    cands = candidates(groups, scores, config.max_layer_ratio, 1)
    before = graph.estimate({})["params"]
    costs = [before - graph.estimate({c.group.name: c.items[0]})["params"] for c in cands]
    items = sorted((float(scores[c.group.name][item].mean()), ci, k)
                   for ci, c in enumerate(cands) for k, item in enumerate(c.items))
    nonembed = non_embedding_params(loaded)
    budget = config.ratio * nonembed
    chosen: list[set[int]] = [set() for _ in cands]
    caps = [c.cap for c in cands]
    block_params = torch.tensor([float(sum(p.numel() for p in b.parameters())) for b in blocks])
    block_ratio = importance = None
    if config.allocation != "global":
        share = budget / float(block_params.sum())
        if config.allocation == "uniform":
            block_ratio = torch.full((len(blocks),), share, dtype=torch.float64)
        else:
            importance = block_angular_importance(model, blocks, windows, config.batch_size)
            block_ratio = 1.0 - keep_ratios(importance, 1.0 - share, block_params, low=config.min_keep).double()
        for b in range(len(blocks)):
            mine = [it for it in items if block_of[cands[it[1]].group.name] == b]
            fill(mine, costs, caps, chosen, float(block_ratio[b] * block_params[b]), 0.0)
    removed = sum(len(chosen[ci]) * costs[ci] for ci in range(len(cands)))
    fill(items, costs, caps, chosen, budget, removed)  # global; for per-block allocations: the shortfall
    selection = {c.group.name: sorted(p for k in chosen[ci] for p in c.items[k]) for ci, c in enumerate(cands)}
    selection = {k: v for k, v in selection.items() if v}
    achieved = (before - graph.estimate(selection)["params"]) / nonembed
    return Allocation(cands, costs, block_of, selection, achieved, nonembed, block_ratio, importance)


def fill(items: list, costs: list, caps: list, chosen: list, budget: float, removed: float) -> float:
    """Take items (score, group, item) weakest first while that brings the removed parameters closer to
    `budget` (skipping items that would overshoot it); respects each group's cap. Returns the total."""
    for _score, ci, k in items:
        if k in chosen[ci] or len(chosen[ci]) >= caps[ci]:
            continue
        if removed + costs[ci] / 2 < budget:
            chosen[ci].add(k)
            removed += costs[ci]
    return removed


def non_embedding_params(loaded: Any) -> int:
    """Parameters outside the token embeddings and the LM head (tied tensors counted once)."""
    model, adapter = loaded.model, loaded.adapter
    skip = {id(p) for m in adapter.embeddings() for p in m.parameters()}
    head = adapter.head()
    if head is not None:
        skip |= {id(p) for p in head.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)
