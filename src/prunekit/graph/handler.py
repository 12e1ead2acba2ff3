"""Layer handlers: how one module type couples, slices and counts its channels.

A handler answers four questions about a module (Torch-Pruning's BasePruningFunc has the same four
entry points): how many output / input channels it has (`get_out_channels`, `get_in_channels`) and
how to remove some of them (`prune_out_channels`, `prune_in_channels`). Handlers that only declare
`param_dims` (which tensor dimension follows which port) get slicing, parameter counting and scoring
for free; handlers that override the prune functions slice themselves.

Register a handler for a new layer type with `register_handler(MyLayer, MyHandler())`; the key may be
a class or the qualified class name ("transformers.models.llama.modeling_llama.LlamaRMSNorm"), so
registering never imports the library that defines the class. `HANDLERS` is the registry (`prunekit list
handlers`), keyed by the lowercased qualified class name; lookup follows the class MRO.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..registry import Registry

if TYPE_CHECKING:
    from .trace import Tracer

# (attribute name, tensor dim, optional map port index -> tensor index (None = identity))
ParamDim = tuple[str, int, Tensor | None]

HANDLERS = Registry("layer handler")  # lowercased qualified class name -> LayerHandler instance


class LayerHandler:
    """Base handler for a layer with one input and one output channel dimension.

    in_dim / out_dim: which dimension of the input / output activation holds the channels.
    coupled: input channel i *is* output channel i (norms, depthwise conv): one space, one port "out".
    """

    in_dim: int = -1
    out_dim: int = -1
    coupled: bool = False
    tag: str | None = None

    # --- the four entry points ---------------------------------------------------------------
    def get_out_channels(self, module: nn.Module) -> int | None:
        raise NotImplementedError(f"{type(self).__name__} must implement get_out_channels")

    def get_in_channels(self, module: nn.Module) -> int | None:
        return self.get_out_channels(module) if self.coupled else None

    def prune_out_channels(self, module: nn.Module, idxs: Sequence[int]) -> None:
        """Remove output channels `idxs` (default: slice the tensors named by `param_dims`)."""
        slice_module(module, self.param_dims(module).get("out", []), idxs)
        self.sync(module)

    def prune_in_channels(self, module: nn.Module, idxs: Sequence[int]) -> None:
        """Remove input channels `idxs` (default: slice the tensors named by `param_dims`)."""
        slice_module(module, self.param_dims(module).get("in", []), idxs)
        self.sync(module)

    # --- declarative description ------------------------------------------------------------------
    def param_dims(self, module: nn.Module) -> dict[str, list[ParamDim]]:
        """{port: [(attribute, dim, index map)]}: which tensor dims follow each port."""
        return {}

    def sync(self, module: nn.Module) -> None:
        """Update size attributes (in_features, num_heads, ...) from the current tensor shapes."""

    def macs(self, module: nn.Module, inputs: Sequence[Any], output: Any) -> int:
        """Multiply-accumulates of one call, from the real input/output shapes (default 0)."""
        return 0

    def trace(self, tracer: Tracer, name: str, module: nn.Module, inputs: list[Any], output: Any) -> None:
        """Record this call in the graph: spaces, bindings, couplings and MACs."""
        x = tracer.first_tensor(inputs)
        out = tracer.first_tensor(output)
        if out is None:
            return
        in_space = tracer.channel_space(x, self.in_dim, f"{name}:in", self.get_in_channels(module))
        if self.coupled:
            out_space = in_space
            if out_space is not None:
                tracer.bind(name, "out", out_space)
        else:
            out_space = tracer.new_space(f"{name}:out", self.get_out_channels(module), tag=self.tag)
            tracer.bind(name, "out", out_space)
            if in_space is not None and self.get_in_channels(module) is not None:
                tracer.bind(name, "in", in_space)
        tracer.set_output(out, x, self.out_dim, out_space)
        factors = [(name, "out")] + ([(name, "in")] if not self.coupled else [])
        tracer.add_macs(self.macs(module, inputs, output), factors)

    # --- helpers ------------------------------------------------------------------------------------
    def overrides_prune(self) -> bool:
        """True when a subclass slices by itself (its prune functions are not the defaults)."""
        cls = type(self)
        return (cls.prune_out_channels is not LayerHandler.prune_out_channels
                or cls.prune_in_channels is not LayerHandler.prune_in_channels)


def _key_name(key: Any) -> str:
    name = key if isinstance(key, str) else f"{key.__module__}.{key.__qualname__}"
    return name.lower()


def _register(module_type: type | str, handler: LayerHandler, kind: str, replace: bool) -> None:
    HANDLERS.register(_key_name(module_type), handler, summary=type(handler).__name__, kind=kind, replace=replace)


def register_handler(module_type: type | str, handler: LayerHandler, *, replace: bool = False) -> None:
    """Use `handler` for modules of `module_type` (a class or its qualified name) and subclasses."""
    if not isinstance(handler, LayerHandler):
        raise TypeError(f"handler must be a prunekit.graph.LayerHandler instance, got {type(handler).__name__}")
    name = _key_name(module_type)
    if name in HANDLERS and not replace:
        raise ValueError(f"A handler for '{name}' is already registered; pass replace=True to override it.")
    _register(module_type, handler, "custom", replace=True)


def register_default(module_type: type | str, handler: LayerHandler) -> None:
    """Register `handler` unless a handler for `module_type` exists already (used for built-ins)."""
    if _key_name(module_type) not in HANDLERS:
        _register(module_type, handler, "built-in", replace=False)


def handler_for(module: nn.Module) -> LayerHandler | None:
    """The handler of the closest class in `type(module).__mro__` that has one, else None."""
    for cls in type(module).__mro__:
        name = _key_name(cls)
        if name in HANDLERS:
            return HANDLERS.load(name)
    return None


def registered_handlers() -> list[str]:
    return HANDLERS.names()


def slice_module(module: nn.Module, dims: Sequence[ParamDim], idxs: Sequence[int]) -> None:
    """Remove port indices `idxs` from every (attribute, dim) of `module` (parameters and buffers)."""
    for attr, dim, index_map in dims:
        tensor = getattr(module, attr, None)
        if tensor is None:
            continue
        keep = keep_index(tensor.shape[dim], idxs, index_map)
        replace_tensor(module, attr, tensor.detach().index_select(dim, keep))


def keep_index(size: int, idxs: Sequence[int] | Tensor, index_map: Tensor | None) -> Tensor:
    """Indices along a tensor dim of `size` that survive removing port indices `idxs`."""
    drop = torch.as_tensor(list(idxs) if not isinstance(idxs, Tensor) else idxs, dtype=torch.long)
    if index_map is not None:
        drop = index_map[drop]
    mask = torch.ones(size, dtype=torch.bool)
    mask[drop] = False
    return mask.nonzero().squeeze(1)


def replace_tensor(module: nn.Module, attr: str, value: Tensor) -> None:
    """Set `module.attr` to `value`, keeping it a Parameter (same requires_grad) or a buffer."""
    old = getattr(module, attr)
    if isinstance(old, nn.Parameter):
        setattr(module, attr, nn.Parameter(value.contiguous(), requires_grad=old.requires_grad))
    else:
        module._buffers[attr] = value.contiguous()
