"""Reload a saved model whose layers have different widths (the config cannot express them).

The saved plan records the shape of every tensor that pruning changed. The model is built from its
config, those tensors are replaced by empty ones of the recorded shapes (handlers then sync head
counts and sizes), and the weights are read from the safetensors files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .plan import collect_shapes, resize_to_shapes


def needs_rebuild(model_class: Any, config: Any, shapes: dict[str, list[int]]) -> bool:
    """True when the config alone would build a tensor with a different shape than the plan records."""
    if not shapes:
        return False
    with torch.device("meta"):
        probe = model_class.from_config(config)
    current = dict(probe.named_parameters(remove_duplicate=False))
    current.update(dict(probe.named_buffers(remove_duplicate=False)))
    return any(name in current and list(current[name].shape) != list(shape) for name, shape in shapes.items())


def load_rebuilt(model_class: Any, config: Any, folder: Path, plan: Any) -> nn.Module | None:
    """The model in `folder` with the per-layer shapes of `plan`, or None when from_pretrained suffices."""
    from safetensors.torch import load_file

    shapes = collect_shapes(plan)
    if not needs_rebuild(model_class, config, shapes):
        return None
    model = model_class.from_config(config, dtype=torch.float32)
    resize_to_shapes(model, shapes)
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"No .safetensors weights in '{folder}'")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = _tied_names(model)
    missing = [m for m in missing if m not in tied]
    if missing or unexpected:
        raise RuntimeError(f"Weights in '{folder}' do not fit the rebuilt model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    return model.eval()


def _tied_names(model: nn.Module) -> set[str]:
    """Names of parameters that share their tensor with an earlier name (saved once)."""
    seen: dict[int, str] = {}
    tied = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
        else:
            seen[id(p)] = name
    return tied
