"""Trace a model once on example inputs and record its channel couplings.

Why a torch-function mode plus module hooks (and not torch.fx or a grad_fn walk):
- torch.fx symbolic tracing fails on data-dependent Python control flow, which Hugging Face models
  are full of (cache handling, mask creation, `if` on shapes); a real run does not.
- a grad_fn walk sees autograd nodes whose arguments (cat dim, split sizes, view shapes) must be
  decoded from private `_saved_*` fields, needs `requires_grad`, and loses integer inputs.
- a `TorchFunctionMode` sees every torch call made during a real forward with its real arguments and
  outputs (cat's `dim`, view's target shape), under `no_grad`, with in-place ops visible.
Modules that have a handler are leaves: their inner ops are not recorded, and the handler describes
the module (this is how attention heads and GQA groups enter the graph). Hooks are installed through
`HookSet` and removed on exit.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..utils.hooks import HookSet
from .errors import UnsupportedOperation
from .handler import LayerHandler, handler_for
from .space import Binding, MacTerm, Space
from .tensors import iter_tensors

Spaces = tuple  # per-dim space id or None


@dataclass
class TraceResult:
    """Everything one trace found: spaces, channel edges, bindings, MAC terms."""

    spaces: list[Space] = field(default_factory=list)
    edges: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # global channel id pairs
    bindings: list[Binding] = field(default_factory=list)
    macs: list[MacTerm] = field(default_factory=list)
    blocks: list[tuple[int, list[list[int]]]] = field(default_factory=list)  # (space, equal-removal blocks)
    modules: dict[str, nn.Module] = field(default_factory=dict)  # traced leaf modules by name


class _Mode(TorchFunctionMode):
    def __init__(self, tracer: Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tracer = self.tracer
        if tracer.recording():
            from .ops import record_op

            tracer.busy = True
            try:
                record_op(tracer, func, args, kwargs, out)
            finally:
                tracer.busy = False
        return out


class Tracer:
    """Runs the model and builds a TraceResult; handlers and op rules call its recording API."""

    def __init__(self, model: nn.Module, options: dict | None = None):
        self.model = model
        self.options = options or {}
        self.result = TraceResult()
        self.names = {id(m): n for n, m in model.named_modules()}
        self.param_owner = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
        self._values: dict[int, tuple[weakref.ref, Spaces]] = {}  # weak: activations are freed as usual
        self._stack: list[tuple[str, nn.Module, LayerHandler | None]] = []
        self._leaf_depth = 0
        self._total = 0
        self.busy = False

    # --- running ------------------------------------------------------------------------------
    def run(self, args: tuple, kwargs: dict) -> Any:
        with HookSet() as hooks, torch.no_grad():
            for module in self.model.modules():
                hooks.forward_pre(module, self._pre, with_kwargs=True)
                hooks.forward(module, self._post, with_kwargs=True)
            with _Mode(self):
                output = self.model(*args, **kwargs)
        for tensor in iter_tensors(output):
            for space in self.spaces_of(tensor) or ():
                if space is not None:
                    self.freeze(space, "model output")
        return output

    def recording(self) -> bool:
        return self._leaf_depth == 0 and not self.busy

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.busy:
            return
        name = self.names.get(id(module), type(module).__name__)
        handler = handler_for(module) if self._leaf_depth == 0 else None
        own_params = any(True for _ in module.parameters(recurse=False))
        if self._leaf_depth == 0 and handler is None and own_params and module is not self.model:
            own = ", ".join(n for n, _ in module.named_parameters(recurse=False))
            raise UnsupportedOperation(
                f"Module '{name}' ({type(module).__qualname__}) holds parameters ({own}) but prunekit has no "
                f"handler for its type, so its channels cannot be followed. Register one with "
                f"prunekit.graph.register_handler({type(module).__qualname__}, handler) "
                f"(a LayerHandler with get/prune_out_channels and get/prune_in_channels).")
        self._stack.append((name, module, handler))
        if handler is not None or self._leaf_depth > 0:
            self._leaf_depth += 1

    def _post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self.busy or not self._stack or self._stack[-1][1] is not module:
            return
        name, _, handler = self._stack.pop()
        if self._leaf_depth > 0:
            self._leaf_depth -= 1
        if handler is not None and self._leaf_depth == 0:
            self.busy = True
            try:
                self.result.modules[name] = module
                handler.trace(self, name, module, list(args) + list(kwargs.values()), output)
            finally:
                self.busy = False

    def where(self) -> str:
        """The innermost module being run, for error messages."""
        if not self._stack:
            return "the model's top-level forward"
        name, module, _ = self._stack[-1]
        return f"module '{name or '<root>'}' ({type(module).__qualname__})"

    # --- values -------------------------------------------------------------------------------------
    def spaces_of(self, tensor: Any) -> Spaces | None:
        if not isinstance(tensor, Tensor):
            return None
        found = self._values.get(id(tensor))
        if found is None or found[0]() is not tensor:  # a dead tensor's id may be reused by a new one
            return None
        return found[1]

    def set_spaces(self, tensor: Tensor, spaces: Spaces) -> None:
        if len(spaces) != tensor.ndim:
            raise AssertionError(f"spaces {spaces} do not match a {tensor.ndim}-d tensor")
        if all(s is None for s in spaces):
            self._values.pop(id(tensor), None)
            return
        self._values[id(tensor)] = (weakref.ref(tensor), tuple(spaces))

    def first_tensor(self, obj: Any) -> Tensor | None:
        """The first tracked tensor in `obj` (nested lists/tuples/dicts), else the first tensor."""
        tensors = list(iter_tensors(obj))
        for t in tensors:
            if self.spaces_of(t) is not None:
                return t
        return tensors[0] if tensors else None

    # --- recording API for handlers and op rules --------------------------------------------
    def new_space(self, key: str, size: int, *, tag: str | None = None, frozen: str | None = None) -> int:
        self.result.spaces.append(Space(key, int(size), self._total, tag, frozen))
        self._total += int(size)
        return len(self.result.spaces) - 1

    def space(self, index: int) -> Space:
        return self.result.spaces[index]

    def channel_space(self, x: Tensor | None, dim: int, key: str, size: int | None) -> int | None:
        """The space of `x` along `dim`; a new frozen space when `x` carries none (a model input)."""
        if size is None:
            return None
        spaces = self.spaces_of(x)
        if spaces is not None and spaces[dim] is not None:
            found = spaces[dim]
            if self.space(found).size != size:
                raise UnsupportedOperation(
                    f"{key}: expected {size} channels along dim {dim}, the input carries "
                    f"{self.space(found).size}; the handler's in_dim is probably wrong.")
            return found
        reason = "model input" if spaces is None else "input without channel identity"
        return self.new_space(key, size, frozen=reason)

    def bind(self, module: str, port: str, space: int, index: Tensor | None = None) -> None:
        if index is None:
            index = torch.arange(self.space(space).size)
        self.result.bindings.append(Binding(module, port, space, index.long()))

    def couple(self, a: int, b: int, index_a: Tensor | None = None, index_b: Tensor | None = None) -> None:
        """Channel index_a[k] of space a goes with channel index_b[k] of space b (default: i with i)."""
        if a == b and index_a is None and index_b is None:
            return
        sa, sb = self.space(a), self.space(b)
        if index_a is None and index_b is None and sa.size != sb.size:
            raise UnsupportedOperation(
                f"Cannot couple '{sa.key}' ({sa.size} channels) with '{sb.key}' ({sb.size}) in {self.where()}.")
        ia = torch.arange(sa.size) if index_a is None else index_a.long()
        ib = torch.arange(sb.size) if index_b is None else index_b.long()
        self.result.edges.append((ia + sa.offset, ib + sb.offset))

    def freeze(self, space: int, reason: str) -> None:
        s = self.space(space)
        if s.frozen is None:
            s.frozen = f"{reason} ({self.where()})" if reason not in ("model output",) else reason

    def add_macs(self, count: int, factors: list[tuple[str, str]]) -> None:
        if count:
            self.result.macs.append(MacTerm(int(count), list(factors)))

    def equal_blocks(self, space: int, blocks: list[list[int]]) -> None:
        """Require removing the same number of channels from every block of `space`."""
        self.result.blocks.append((space, blocks))

    def set_output(self, out: Tensor | None, like: Tensor | None, dim: int, space: int | None) -> None:
        """Give `out` the spaces of `like` (when shapes line up) with `dim` set to `space`."""
        if out is None:
            return
        base = self.spaces_of(like)
        spaces = list(base) if base is not None and len(base) == out.ndim else [None] * out.ndim
        if out.ndim:
            spaces[dim] = space
        self.set_spaces(out, tuple(spaces))

    def total_channels(self) -> int:
        return self._total
