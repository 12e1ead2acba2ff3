"""Structured pruning plans: JSON-serialisable, replayable on a fresh copy of the model.

A plan is a list of entries, one per pruned group:
    {"group": "model.layers.0.mlp.gate_proj:out", "kind": "mlp", "size": 128, "pruned": [3, 17, ...]}
`group` is the key of the group's first channel space, which tracing the same architecture always
reproduces; `pruned` holds unit positions inside the group. `apply_plan(model, plan)` rebuilds the
graph and removes the same units. `resize_to_shapes` lets a loader build a model with per-layer widths
before reading its weights (graph/reload.py takes the shapes from the safetensors header).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .graph import DependencyGraph
from .slicing import sync_modules


def plan_entries(graph: DependencyGraph, selection: Mapping[str, Sequence[int]],
                 kinds: Mapping[str, str] | None = None) -> list[dict]:
    """The plan for `selection` ({group name: unit positions}) in group order."""
    entries = []
    for group in graph.groups:
        pruned = sorted(int(p) for p in selection.get(group.name, []))
        if pruned:
            kind = (kinds or {}).get(group.name, group.kind)
            entries.append({"group": group.name, "kind": kind, "size": group.size, "pruned": pruned})
    return entries


def default_inputs(model: nn.Module, seq_len: int = 8) -> dict:
    """Token ids for a model with a `config.vocab_size` (Hugging Face); other models need inputs."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if not vocab:
        raise ConfigError(f"{type(model).__name__} has no config.vocab_size, so prunekit cannot make example "
                         f"inputs for it; pass example_inputs (a tensor, a tuple of args or a dict of kwargs).")
    generator = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(0, vocab, (1, seq_len), generator=generator)}


def plan_groups(plan: Any) -> list[dict]:
    """The entry list of `plan` (a list, or a dict holding it under "plan" or "groups")."""
    if isinstance(plan, Mapping):
        plan = plan.get("plan", plan.get("groups"))
    if not isinstance(plan, list) or not all(isinstance(e, Mapping) and "group" in e for e in plan):
        raise ValueError("A structured plan is a list of {'group', 'size', 'pruned'} entries "
                         "(the 'plan' of prune_structured's report).")
    return list(plan)


def apply_plan(model: nn.Module, plan: Any, example_inputs: Any = None) -> DependencyGraph:
    """Replay `plan` on `model` (a fresh, unpruned copy of the architecture it was made on)."""
    entries = plan_groups(plan)
    head_mode = "q" if any(e["group"].endswith(":q_heads") for e in entries) else "kv"
    inputs = default_inputs(model) if example_inputs is None else example_inputs
    graph = DependencyGraph.build(model, inputs, head_mode=head_mode)
    selection = {}
    for entry in entries:
        group = graph.group(entry["group"])
        if group.size != entry["size"]:
            raise ValueError(f"Group '{group.name}' has {group.size} units in this model but the plan was made "
                             f"for {entry['size']}; apply plans to the unpruned model they were made on.")
        selection[group.name] = entry["pruned"]
    graph.prune(selection)
    return graph


def group_shapes(graph: DependencyGraph) -> dict[str, dict[str, list[int]]]:
    """{group name: {tensor name: current shape}} for the tensors each group slices."""
    model = graph.model
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(dict(model.named_buffers(remove_duplicate=False)))
    local = torch.full((graph.num_units + 1,), -1, dtype=torch.long)
    for gi, group in enumerate(graph.groups):
        local[group.units] = gi
    out: dict[str, dict[str, list[int]]] = {g.name: {} for g in graph.groups}
    for td in graph.tensor_dims:
        for gi in torch.unique(local[td.units]).tolist():
            if gi < 0:
                continue
            for module, attr in td.sites:
                name = f"{module}.{attr}" if module else attr
                if name in tensors:
                    out[graph.groups[gi].name][name] = list(tensors[name].shape)
    return out


def resize_to_shapes(model: nn.Module, shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """Replace tensors whose shape differs from `shapes` by empty ones of the recorded shape (ties kept),
    then sync module attributes. Returns the names that changed."""
    current = dict(model.named_parameters(remove_duplicate=False))
    current.update(dict(model.named_buffers(remove_duplicate=False)))
    unknown = sorted(set(shapes) - set(current))
    if unknown:
        raise ValueError(f"The plan records shapes for tensors this model does not have: {unknown[:5]}")
    new: dict[int, torch.Tensor] = {}
    changed = []
    for name, shape in shapes.items():
        tensor = current[name]
        if list(tensor.shape) == list(shape) or id(tensor) in new:
            continue
        empty = torch.empty(tuple(shape), dtype=tensor.dtype, device=tensor.device)
        new[id(tensor)] = nn.Parameter(empty, requires_grad=tensor.requires_grad) if isinstance(
            tensor, nn.Parameter) else empty
        changed.append(name)
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for attr, tensor in store.items():
                if tensor is not None and id(tensor) in new:
                    store[attr] = new[id(tensor)]
    sync_modules(model)
    return changed
