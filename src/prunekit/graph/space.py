"""Channel spaces and the coupling structure found by tracing.

A *space* is the channel dimension of one activation (a Linear's output features, a Conv's output
channels, the heads of an attention module). Tracing records *edges* that say "channel i of space A
must be removed together with channel j of space B" (a residual add couples A[i] with B[i]; a
concatenation couples out[offset + i] with piece[i]). The connected components of channels under
these edges are the *units* that can be removed, and a *group* is a connected set of spaces
(DepGraph, Fang et al. 2023, "DepGraph: Towards Any Structural Pruning"; "Structurally Prune
Anything", Wang et al. 2024, propagate masks the same way).

A *binding* ties a port of a layer (e.g. Linear "out", Conv "in") to a space: port index p holds
channel `index[p]` of the space.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Space:
    """One channel dimension of size `size`; `key` names it ("layer1.0.conv1:out")."""

    key: str
    size: int
    offset: int  # first global channel id
    tag: str | None = None  # "heads" for attention-head spaces
    frozen: str | None = None  # reason this space must not be pruned (model input/output, ...)


@dataclass
class Binding:
    """Port `port` of module `module` holds channel `index[p]` of space `space` at port index p."""

    module: str
    port: str
    space: int
    index: Tensor  # (port_size,) long, channel indices inside the space


@dataclass
class MacTerm:
    """`count` multiply-accumulates that scale with the kept fraction of each (module, port) factor."""

    count: int
    factors: list[tuple[str, str]] = field(default_factory=list)


def connected_components(num: int, src: Tensor, dst: Tensor) -> Tensor:
    """Label (num,) nodes so that nodes joined by an edge src[e]-dst[e] share the smallest id.

    Vectorised min-label propagation with pointer jumping; converges in O(log diameter) rounds
    for chains (the residual stream of a deep network is one long chain).
    """
    labels = torch.arange(num, dtype=torch.long)  # (num,)
    if src.numel() == 0:
        return labels
    while True:
        low = torch.minimum(labels[src], labels[dst])  # (E,)
        new = labels.clone()
        new.scatter_reduce_(0, src, low, reduce="amin")
        new.scatter_reduce_(0, dst, low, reduce="amin")
        # a node's label points at a node; jump until labels are fixed points (roots)
        while True:
            jumped = new[new]
            if torch.equal(jumped, new):
                break
            new = jumped
        if torch.equal(new, labels):
            return labels
        labels = new
