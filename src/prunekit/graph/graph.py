"""DependencyGraph: the groups of coupled channels of a traced model, and what removing units costs.

Build once with `DependencyGraph.build(model, example_inputs)`; each `Group` lists its removable units
(a unit is a set of channels that must go together: one channel of a residual stream in every layer
that reads or writes it, one KV head with its query group, one GLU hidden neuron in gate, up and
down). `prune({group: [unit positions]})` slices every coupled tensor at once; `mask(...)` zeroes them
instead (used to check that slicing changes nothing else). After `prune` the graph is stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import StaleGraph
from .handler import handler_for
from .slicing import gather_per_slice
from .space import connected_components
from .trace import Tracer, TraceResult


@dataclass
class Group:
    """Units that can be removed from one connected set of channel spaces."""

    name: str  # key of its first space, e.g. "model.layers.0.mlp.gate_proj:out"
    kind: str  # "heads" or "channels"
    units: Tensor  # (n,) global unit ids; positions 0..n-1 are what selections refer to
    modules: list[str]
    blocks: list[list[int]] | None = None  # remove the same number of units from each block
    graph: DependencyGraph | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.units.numel())

    def prune(self, positions: Sequence[int]) -> None:
        """Remove units `positions` of this group from the model (slices all coupled layers)."""
        self.graph.prune({self.name: positions})


@dataclass
class TensorDim:
    """One dimension of one parameter/buffer that pruning slices; units[i] owns index i (-1: never)."""

    tensor: Tensor
    dim: int
    units: Tensor
    sites: list[tuple[str, str]]  # (module name, attribute)

    @property
    def is_param(self) -> bool:
        return isinstance(self.tensor, nn.Parameter)


class DependencyGraph:
    """Coupled channel groups of `model`, found by tracing it once on example inputs."""

    def __init__(self, model: nn.Module, trace: TraceResult, options: dict, inputs: Any):
        self.model = model
        self.options = options
        self.example_inputs = inputs
        self.stale = False
        self.frozen = {s.key: s.frozen for s in trace.spaces if s.frozen}
        self.macs_terms = trace.macs
        self._build(trace)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, model: nn.Module, example_inputs: Any, *, head_mode: str = "kv") -> DependencyGraph:
        """Trace `model` on `example_inputs` (a tensor, a tuple of positional args or a dict of kwargs).

        head_mode: "kv" (a unit is one KV head with its query group) or "q" (query heads, removed
        evenly from every KV group).
        """
        from .handlers import register_builtin_handlers

        if head_mode not in ("kv", "q"):
            raise ValueError(f"head_mode must be 'kv' or 'q', got {head_mode!r}")
        register_builtin_handlers()
        args, kwargs = split_inputs(example_inputs)
        tracer = Tracer(model, {"head_mode": head_mode})
        was_training = model.training
        model.eval()
        try:
            tracer.run(args, kwargs)
        finally:
            model.train(was_training)
        return cls(model, tracer.result, {"head_mode": head_mode}, example_inputs)

    def _build(self, trace: TraceResult) -> None:
        spaces = trace.spaces
        total = sum(s.size for s in spaces)
        src, dst, first, reps = self._channel_edges(trace)
        src_t = torch.cat(src) if src else torch.empty(0, dtype=torch.long)
        dst_t = torch.cat(dst) if dst else torch.empty(0, dtype=torch.long)
        labels = connected_components(total, src_t, dst_t)  # (total,) root channel of each channel
        frozen = torch.zeros(total, dtype=torch.bool)
        for s in spaces:
            if s.frozen:
                frozen[labels[s.offset:s.offset + s.size]] = True
        unit_of_label = self._make_groups(spaces, labels, frozen, src_t, dst_t)
        unit_of_channel = unit_of_label[labels]  # (total,)
        self.port_units = dict(zip(first, gather_per_slice(unit_of_channel, list(first.values())), strict=True))
        no_channel = torch.cat([unit_of_channel, unit_of_channel.new_full((1,), -1)])  # index -1 -> unit -1
        units = gather_per_slice(no_channel, [reps[k] for k in self._tensors])
        self.tensor_dims = [TensorDim(t, d, u, []) for (t, d), u in zip(self._tensors.values(), units, strict=True)]
        self._attach_modules(unit_of_channel, trace, spaces)

    def _channel_edges(self, trace: TraceResult) -> tuple[list, list, dict, dict]:
        """(source and destination channel lists of the coupling edges, {(module, port): global channel per port
        index}, {(tensor id, dim): global channel per tensor index}); fills self._tensors."""
        offsets = [s.offset for s in trace.spaces]
        src = [e[0] for e in trace.edges]
        dst = [e[1] for e in trace.edges]
        first: dict[tuple[str, str], Tensor] = {}
        reps: dict[tuple[int, int], Tensor] = {}
        self._tensors: dict[tuple[int, int], tuple[Tensor, int]] = {}
        for b in trace.bindings:
            channels = b.index + offsets[b.space]
            key = (b.module, b.port)
            if key in first:  # the same port seen twice (a shared module): its channels coincide
                if first[key].numel() != channels.numel():
                    raise ValueError(f"Port {key} was traced with {first[key].numel()} and {channels.numel()} channels")
                src.append(first[key])
                dst.append(channels)
                continue
            first[key] = channels
            module = self.model.get_submodule(b.module)
            for attr, dim, index_map in handler_for(module).param_dims(module).get(b.port, []):
                tensor = getattr(module, attr, None)
                if tensor is None:
                    continue
                rep = torch.full((tensor.shape[dim],), -1, dtype=torch.long)
                if index_map is None:
                    rep[:channels.numel()] = channels
                else:
                    rep[index_map] = channels
                tkey = (id(tensor), dim)
                if tkey in reps:  # a tied tensor: its two users see the same channels
                    both = (reps[tkey] >= 0) & (rep >= 0)
                    src.append(reps[tkey][both])
                    dst.append(rep[both])
                    rep = torch.where(reps[tkey] >= 0, reps[tkey], rep)
                reps[tkey] = rep
                self._tensors[tkey] = (tensor, dim)
        return src, dst, first, reps

    def _make_groups(self, spaces: list, labels: Tensor, frozen: Tensor, src_t: Tensor, dst_t: Tensor) -> Tensor:
        """Groups = connected sets of spaces; each unfrozen channel label becomes a unit. Sets self.groups and
        self.num_units; returns the unit of each label (total + 1,), -1 for none."""
        total = labels.numel()
        space_of = torch.repeat_interleave(torch.arange(len(spaces)), torch.tensor([s.size for s in spaces]))
        space_labels = connected_components(len(spaces), space_of[src_t], space_of[dst_t]) if spaces else None
        unit_of_label = torch.full((total + 1,), -1, dtype=torch.long)
        self.groups: list[Group] = []
        next_unit = 0
        members: dict[int, list[int]] = {}
        for i in range(len(spaces)):
            members.setdefault(int(space_labels[i]), []).append(i)
        for root in sorted(members):
            ids = members[root]
            chans = torch.cat([torch.arange(spaces[i].offset, spaces[i].offset + spaces[i].size) for i in ids])
            unit_labels = torch.unique(labels[chans])
            unit_labels = unit_labels[~frozen[unit_labels]]
            if unit_labels.numel() == 0:
                continue
            units = torch.arange(next_unit, next_unit + unit_labels.numel())
            unit_of_label[unit_labels] = units
            next_unit += unit_labels.numel()
            named = next(i for i in ids if not frozen[labels[spaces[i].offset:spaces[i].offset + spaces[i].size]].all())
            kind = "heads" if any(spaces[i].tag == "heads" for i in ids) else "channels"
            self.groups.append(Group(spaces[named].key, kind, units, [], None, self))
        self.num_units = next_unit
        return unit_of_label

    def _attach_modules(self, unit_of_channel: Tensor, trace: TraceResult, spaces: list) -> None:
        group_of_unit = torch.full((self.num_units,), -1, dtype=torch.long)
        for gi, g in enumerate(self.groups):
            group_of_unit[g.units] = gi
        ports = list(self.port_units)
        if ports and self.groups:  # (port, group) pairs in port order, as one unique over codes port * groups + group
            units = torch.cat(list(self.port_units.values()))
            port_of = torch.repeat_interleave(torch.arange(len(ports)),
                                              torch.tensor([u.numel() for u in self.port_units.values()]))
            groups = group_of_unit[units.clamp(min=0)]
            keep = (units >= 0) & (groups >= 0)
            for code in torch.unique(port_of[keep] * len(self.groups) + groups[keep]).tolist():
                port, gi = divmod(code, len(self.groups))
                if ports[port][0] not in self.groups[gi].modules:
                    self.groups[gi].modules.append(ports[port][0])
        for space, blocks in trace.blocks:
            off = spaces[space].offset
            unit_blocks = [unit_of_channel[torch.tensor(b) + off] for b in blocks]
            if any((u < 0).any() for u in unit_blocks):
                continue
            group = self.groups[int(group_of_unit[unit_blocks[0][0]])]
            position = {int(u): p for p, u in enumerate(group.units.tolist())}
            group.blocks = [[position[int(u)] for u in b] for b in unit_blocks]
        sites: dict[int, list[tuple[str, str]]] = {}
        for name, module in self.model.named_modules():
            for attr, t in list(module._parameters.items()) + list(module._buffers.items()):
                if t is not None:
                    sites.setdefault(id(t), []).append((name, attr))
        for td in self.tensor_dims:
            td.sites = sites.get(id(td.tensor), [])

    # --- queries ----------------------------------------------------------------------------------
    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        from ..errors import unknown_name

        raise unknown_name("group", name, [g.name for g in self.groups])

    def removed_units(self, selection: Mapping[str, Sequence[int]], *, check: bool = True) -> Tensor:
        """(num_units + 1,) bool: True for units to remove; the extra last entry (index -1) is False."""
        removed = torch.zeros(self.num_units + 1, dtype=torch.bool)
        for name, positions in selection.items():
            group = self.group(name)
            pos = torch.as_tensor(list(positions), dtype=torch.long)
            if check:
                check_selection(group, pos)
            removed[group.units[pos]] = True
        return removed

    def param_slices(self, group: Group) -> list[tuple[TensorDim, Tensor]]:
        """[(tensor dim, local unit position of each index or -1)] for the parameters of `group`."""
        if not hasattr(self, "_slices"):
            local = torch.full((self.num_units + 1,), -1, dtype=torch.long)
            owner = torch.full((self.num_units + 1,), -1, dtype=torch.long)
            for gi, g in enumerate(self.groups):
                local[g.units] = torch.arange(g.size)
                owner[g.units] = gi
            self._slices: dict[str, list[tuple[TensorDim, Tensor]]] = {g.name: [] for g in self.groups}
            for td in self.tensor_dims:
                if not td.is_param:
                    continue
                for gi in torch.unique(owner[td.units]).tolist():
                    if gi >= 0:
                        pos = torch.where(owner[td.units] == gi, local[td.units], -1)
                        self._slices[self.groups[gi].name].append((td, pos))
        return self._slices[group.name]

    # --- actions ---------------------------------------------------------------------------------
    def estimate(self, selection: Mapping[str, Sequence[int]] | Tensor) -> dict[str, int]:
        """Parameters and MACs after removing `selection`, without touching the model."""
        from .slicing import estimate

        removed = selection if isinstance(selection, Tensor) else self.removed_units(selection, check=False)
        return estimate(self, removed)

    def prune(self, selection: Mapping[str, Sequence[int]]) -> None:
        """Slice the selected units out of every coupled tensor; the model stays runnable."""
        from .slicing import apply_removal

        self._check_fresh()
        apply_removal(self, self.removed_units(selection), mode="slice")
        self.stale = True

    def mask(self, selection: Mapping[str, Sequence[int]]) -> None:
        """Zero the selected units' parameters instead of slicing them (shapes unchanged)."""
        from .slicing import apply_removal

        self._check_fresh()
        apply_removal(self, self.removed_units(selection), mode="mask")

    def _check_fresh(self) -> None:
        if self.stale:
            raise StaleGraph("This graph was built before the model was pruned; build a new DependencyGraph.")


def check_selection(group: Group, pos: Tensor) -> None:
    """Positions must exist, leave at least one unit, and respect equal-removal blocks."""
    if pos.numel() and (pos.min() < 0 or pos.max() >= group.size):
        raise ValueError(f"Unit positions for group '{group.name}' must be in [0, {group.size}), got {pos.tolist()}")
    if torch.unique(pos).numel() >= group.size:
        raise ValueError(f"Removing all {group.size} units of group '{group.name}' would empty it; keep at least one.")
    if group.blocks:
        chosen = set(pos.tolist())
        counts = {sum(p in chosen for p in block) for block in group.blocks}
        if len(counts) > 1:
            raise ValueError(f"Group '{group.name}' needs the same number of units removed from each of its "
                             f"{len(group.blocks)} blocks {group.blocks}, got {sorted(chosen)}")


def split_inputs(example_inputs: Any) -> tuple[tuple, dict]:
    """(args, kwargs) for model(*args, **kwargs) from a tensor, tuple/list or dict."""
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, tuple | list):
        return tuple(example_inputs), {}
    return (example_inputs,), {}

