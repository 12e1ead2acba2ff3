"""Reload a saved model whose tensors the config alone cannot build (per-layer widths, added biases).

The safetensors header records the shape of every saved tensor, so it is the one source of truth: the
model is built from its config, every tensor whose saved shape differs is replaced by an empty one of that
shape (handlers then sync head counts and sizes), a Linear bias that exists only in the file is created
(biases from bias compensation on architectures whose config cannot express them), a Linear bias the
config adds but the file lacks is dropped, and the weights are read. Nothing here depends on the plan,
so every structured path (and any later one) reloads the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .plan import resize_to_shapes


def saved_shapes(folder: Path) -> dict[str, list[int]]:
    """{tensor name: shape} of every tensor in the folder's safetensors files (headers only)."""
    from safetensors import safe_open

    shapes: dict[str, list[int]] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                shapes[key] = list(handle.get_slice(key).get_shape())
    return shapes


def _bias_owner(model: nn.Module, name: str) -> nn.Module | None:
    """The module owning `name` when it names the bias of a Linear-like layer (a 2-D `weight`), else None."""
    if not name.endswith(".bias"):
        return None
    try:
        module = model.get_submodule(name[: -len(".bias")])
    except AttributeError:
        return None
    weight = getattr(module, "weight", None)
    return module if isinstance(weight, torch.Tensor) and weight.dim() == 2 and "bias" in module._parameters else None


def shape_differences(model: nn.Module, shapes: dict[str, list[int]]) -> tuple[dict, list[str], list[str]]:
    """(tensors to resize {name: saved shape}, Linear biases to create, Linear biases to drop) for `model`."""
    current = dict(model.named_parameters(remove_duplicate=False))
    current.update(dict(model.named_buffers(remove_duplicate=False)))
    resize = {n: s for n, s in shapes.items() if n in current and list(current[n].shape) != s}
    create = [n for n in shapes if n not in current and (m := _bias_owner(model, n)) is not None and m.bias is None]
    drop = [n for n in current if n not in shapes and (m := _bias_owner(model, n)) is not None
            and m.bias is not None and n.rsplit(".", 1)[0] + ".weight" in shapes]
    return resize, create, drop


def load_rebuilt(model_class: Any, config: Any, folder: Path) -> nn.Module | None:
    """The model in `folder` with its saved tensor shapes, or None when from_pretrained builds them all."""
    from safetensors.torch import load_file

    shapes = saved_shapes(folder)
    if not shapes:
        return None
    with torch.device("meta"):
        probe = model_class.from_config(config)
    if not any(shape_differences(probe, shapes)):
        return None
    model = model_class.from_config(config, dtype=torch.float32)
    resize, create, drop = shape_differences(model, shapes)
    resize_to_shapes(model, resize)
    for name in create:
        module = _bias_owner(model, name)
        module.bias = nn.Parameter(torch.zeros(shapes[name], dtype=module.weight.dtype))
    for name in drop:
        _bias_owner(model, name).register_parameter("bias", None)
    state: dict[str, torch.Tensor] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
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
