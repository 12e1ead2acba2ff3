"""Physical removal: slice every coupled tensor once, re-tie shared tensors, sync module attributes.

Each tensor dimension is sliced exactly once even when several layers use it (a tied embedding and
LM head), and every attribute that pointed at the old tensor gets the new one, so ties survive.
Handlers that override `prune_out_channels` / `prune_in_channels` are called instead for their ports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .handler import handler_for

if TYPE_CHECKING:
    from .graph import DependencyGraph


class _EstimateIndex:
    """The graph's unit lists concatenated once, so that every kept fraction is one scatter-add."""

    def __init__(self, graph: DependencyGraph) -> None:
        params = [td for td in graph.tensor_dims if td.is_param]
        self.tensor_ids = [id(td.tensor) for td in params]
        self.numels = {id(td.tensor): td.tensor.numel() for td in params}
        self.ports = list(graph.port_units)
        lists = [td.units for td in params] + [graph.port_units[k] for k in self.ports]
        lengths = torch.tensor([u.numel() for u in lists], dtype=torch.long)
        self.units = torch.cat(lists) if lists else torch.zeros(0, dtype=torch.long)
        self.segments = torch.repeat_interleave(torch.arange(len(lists)), lengths)
        self.lengths = lengths.clamp_min(1).double()
        self.split = len(params)

    def kept(self, removed: Tensor) -> list[float]:
        counts = torch.zeros(len(self.lengths), dtype=torch.float64)
        counts.index_add_(0, self.segments, removed[self.units].double())
        return (1.0 - counts / self.lengths).tolist()


def estimate(graph: DependencyGraph, removed: Tensor) -> dict[str, int]:
    """{"params", "macs"} of the model after removing the units flagged in `removed` (num_units+1,)."""
    index = graph.__dict__.get("_estimate_index")
    if index is None:
        index = graph.__dict__["_estimate_index"] = _EstimateIndex(graph)
    kept = index.kept(removed)
    params_before = sum(p.numel() for p in graph.model.parameters())
    fractions: dict[int, float] = {}  # tensor id -> kept fraction
    for key, frac in zip(index.tensor_ids, kept[:index.split], strict=True):
        fractions[key] = fractions.get(key, 1.0) * frac
    params = params_before - sum(round(index.numels[k] * (1.0 - f)) for k, f in fractions.items())
    port_frac = dict(zip(index.ports, kept[index.split:], strict=True))
    macs = 0.0
    for term in graph.macs_terms:
        scale = 1.0
        for factor in term.factors:
            scale *= port_frac.get(factor, 1.0)
        macs += term.count * scale
    return {"params": int(params), "macs": int(round(macs))}


def gather_per_slice(table: Tensor, index_lists: list[Tensor]) -> list[Tensor]:
    """[table[i] for i in index_lists] as one gather (an index -1 reads the table's last entry)."""
    if not index_lists:
        return []
    return list(table[torch.cat(index_lists)].split([i.numel() for i in index_lists]))


def any_per_slice(pieces: list[Tensor]) -> list[bool]:
    """[bool(piece.any()) for piece in pieces] as one scatter-add."""
    if not pieces:
        return []
    sizes = torch.tensor([p.numel() for p in pieces], dtype=torch.long)
    owner = torch.repeat_interleave(torch.arange(len(pieces)), sizes)
    hits = torch.zeros(len(pieces), dtype=torch.long).index_add_(0, owner, torch.cat(pieces).long())
    return (hits > 0).tolist()


def apply_removal(graph: DependencyGraph, removed: Tensor, *, mode: str = "slice") -> None:
    """Remove (mode="slice") or zero (mode="mask") the flagged units in `graph.model`."""
    model = graph.model
    drops: dict[int, dict[int, Tensor]] = {}  # tensor id -> {dim: (size,) bool, True = remove}
    tensors: dict[int, Tensor] = {}
    flags = gather_per_slice(removed, [td.units for td in graph.tensor_dims])
    for td, drop, any_hit in zip(graph.tensor_dims, flags, any_per_slice(flags), strict=True):
        if any_hit:
            drops.setdefault(id(td.tensor), {})[td.dim] = drop
            tensors[id(td.tensor)] = td.tensor
    custom = []
    modules = dict(model.named_modules())
    for (module_name, port), units in graph.port_units.items():
        module = modules[module_name]
        handler = handler_for(module)
        if handler is None or not handler.overrides_prune():
            continue
        idx = removed[units].nonzero().squeeze(1)
        if idx.numel():
            custom.append((handler, module, module_name, port, idx.tolist()))
    with torch.no_grad():
        if mode == "mask":
            for key, dims in drops.items():
                tensor = tensors[key]
                if isinstance(tensor, nn.Parameter):
                    for dim, drop in dims.items():
                        tensor.data.index_fill_(dim, drop.nonzero().squeeze(1), 0.0)
            if custom:
                names = ", ".join(c[2] for c in custom)
                raise NotImplementedError(f"Masking is not available for layers with custom prune functions: {names}")
            return
        replacements = {key: _sliced(tensors[key], dims) for key, dims in drops.items()}
        for module in model.modules():
            for store in (module._parameters, module._buffers):
                for attr, tensor in store.items():
                    if tensor is not None and id(tensor) in replacements:
                        store[attr] = replacements[id(tensor)]
        for handler, module, name, port, idx in custom:
            if port == "out":
                handler.prune_out_channels(module, idx)
            elif port == "in":
                handler.prune_in_channels(module, idx)
            else:
                raise NotImplementedError(f"Custom handler of '{name}' cannot prune port '{port}'")
    sync_modules(model)


def _sliced(tensor: Tensor, dims: dict[int, Tensor]) -> Tensor:
    new = tensor.detach()
    for dim, drop in dims.items():
        new = new.index_select(dim, (~drop).nonzero().squeeze(1))
    new = new.contiguous()
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(new, requires_grad=tensor.requires_grad)
    return new


def sync_modules(model: nn.Module) -> None:
    """Let every handled module update its size attributes from its tensor shapes."""
    from .handlers import register_builtin_handlers

    register_builtin_handlers()  # a process that only reloads a pruned model has traced nothing yet
    for module in model.modules():
        handler = handler_for(module)
        if handler is not None:
            handler.sync(module)
