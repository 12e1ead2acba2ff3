"""How each torch operation outside a handled module moves channels (one rule per operation family).

Every tracked activation carries a tuple with one entry per dim: the id of its channel space, or None
for dims that are not channels (batch, tokens, spatial). Rules:
- elementwise ops (add, mul, activations) couple the spaces of their inputs dim by dim (residual adds
  and GLU products become coupled channels);
- reshapes follow the real shapes: a flatten of (C, H, W) makes a space of C*H*W features in which
  each channel owns H*W positions; splitting a channel dim freezes it;
- cat / chunk build new spaces from slices of their inputs (chunk pieces lose the same channels);
- reductions, softmax and literal slices over a channel dim freeze that space (the op needs every
  channel, or its code holds the size) and record why;
- matmul / einsum / functional layers on traced activations, and any op not listed here, raise
  UnsupportedOperation: register a handler for the module that contains them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from .errors import UnsupportedOperation
from .shape_ops import align_right, cat, dim_arg, freeze_dims, permute, reshape_spaces, slicing, split_pieces, stack
from .tensors import iter_tensors

if TYPE_CHECKING:
    from .trace import Tracer

UNARY = set("""relu relu6 gelu silu sigmoid tanh hardswish hardsigmoid hardtanh leaky_relu elu selu celu mish
softplus softsign tanhshrink logsigmoid softshrink hardshrink rrelu threshold dropout dropout1d dropout2d
dropout3d alpha_dropout feature_alpha_dropout abs exp exp2 expm1 log log1p log2 log10 sqrt rsqrt square
erf erfc erfinv sin cos tan asin acos atan sinh cosh sign sgn reciprocal neg negative positive floor ceil
round trunc frac nan_to_num logical_not bitwise_not isnan isinf isfinite clone contiguous to type type_as
float half double bfloat16 int long bool cpu cuda detach data zeros_like ones_like empty_like full_like
rand_like randn_like fill zero normal uniform requires_grad pin_memory""".split())
ELEMENTWISE = set("""add sub subtract mul multiply div divide true_divide floor_divide remainder fmod pow where
maximum minimum fmax fmin atan2 eq ne lt le gt ge logical_and logical_or logical_xor bitwise_and bitwise_or
bitwise_xor masked_fill lerp addcmul addcdiv hypot copysign xlogy clamp clamp_min clamp_max clip rsub radd
rmul rtruediv rdiv rpow rfloordiv rmod and or xor rand ror rxor mod truediv floordiv copy""".split())
RESHAPE = set("view reshape view_as reshape_as flatten unflatten squeeze unsqueeze".split())
PERMUTE = set("permute transpose swapaxes swapdims movedim moveaxis t T mT".split())
EXPAND = set("expand expand_as broadcast_to".split())
SPATIAL = set("""max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d
adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d
max_pool1d_with_indices max_pool2d_with_indices lp_pool1d lp_pool2d interpolate upsample upsample_nearest
upsample_bilinear pad pixel_shuffle pixel_unshuffle""".split())
REDUCE = set("""sum mean nansum nanmean amax amin max min std var prod logsumexp all any argmax argmin
count_nonzero median std_mean var_mean aminmax norm""".split())
ALONG = set("softmax log_softmax softmin cumsum cumprod cummax cummin sort argsort normalize logcumsumexp".split())
SLICING = set("getitem narrow select index_select gather take_along_dim repeat tile repeat_interleave roll flip "
              "topk kthvalue".split())
PIECES = set("split split_with_sizes tensor_split unbind chunk".split())
MIXING = set("""matmul mm bmm einsum baddbmm addmm addbmm addmv linear bilinear conv1d conv2d conv3d
conv_transpose1d conv_transpose2d conv_transpose3d embedding embedding_bag scaled_dot_product_attention
multi_head_attention_forward outer dot tensordot kron inner cross prelu""".split())
NORMS = set("layer_norm group_norm batch_norm instance_norm rms_norm local_response_norm".split())
IGNORE_OUTPUT = set("new_zeros new_ones new_full new_empty new_tensor".split())


def op_name(func: Any) -> str:
    """'add' for torch.add, Tensor.add, Tensor.__add__, Tensor.add_ and Tensor.__iadd__."""
    name = getattr(func, "__name__", str(func))
    if name == "__get__":  # a tensor property such as .T or .data
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name.startswith("i") and name[1:] in ELEMENTWISE | {"add", "sub", "mul", "truediv", "floordiv", "pow"}:
            name = name[1:]
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def record_op(tracer: Tracer, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """Apply the rule of `func` to its traced arguments and give its outputs their spaces."""
    name = op_name(func)
    if name == "setitem":  # x[index] = value: both sides' channel counts are now fixed by the index
        for t in iter_tensors((args, kwargs)):
            for space in tracer.spaces_of(t) or ():
                if space is not None:
                    tracer.freeze(space, "written into by index")
        return
    outs = list(iter_tensors(out))
    if not outs:
        return
    inputs = list(iter_tensors((args, kwargs)))
    tracked = [t for t in inputs if tracer.spaces_of(t) is not None]
    if not tracked:
        return
    if name in IGNORE_OUTPUT:
        return
    params = [t for t in inputs if isinstance(t, nn.Parameter)]
    if params or name in MIXING:
        owner = ", ".join(tracer.param_owner.get(id(p), "?") for p in params) or "traced activations"
        raise UnsupportedOperation(
            f"Operation '{name}' on {owner} in {tracer.where()} combines channels in a way the graph cannot "
            f"follow. Register a handler for the module that contains it: prunekit.graph.register_handler("
            f"ThatModuleClass, handler).")
    x = args[0] if args and isinstance(args[0], Tensor) else tracked[0]
    if name in UNARY:
        _same(tracer, x, outs)
    elif name in ELEMENTWISE or (name in ("max", "min") and len(args) > 1 and isinstance(args[1], Tensor)):
        _elementwise(tracer, name, inputs, outs)
    elif name in RESHAPE:
        tracer.set_spaces(outs[0], tuple(reshape_spaces(tracer, x, outs[0].shape, name)))
    elif name in PERMUTE:
        permute(tracer, name, x, args[1:], kwargs, outs[0])
    elif name in EXPAND:
        align_right(tracer, x, outs[0])
    elif name in SPATIAL:
        _spatial(tracer, name, x, outs)
    elif name in REDUCE:
        _reduce(tracer, name, x, args, kwargs, outs)
    elif name in ALONG or name in NORMS:
        dim = dim_arg(args, kwargs, 2 if name == "normalize" else 1, 1 if name == "normalize" else -1)
        dims = range(x.ndim) if name in NORMS else [dim]
        freeze_dims(tracer, x, dims, f"'{name}' over the channels")
        _same(tracer, x, outs)
    elif name in ("cat", "concat", "concatenate"):
        cat(tracer, args, kwargs, outs[0])
    elif name == "stack":
        stack(tracer, args, kwargs, outs[0])
    elif name in PIECES or name == "glu":
        split_pieces(tracer, name, x, args, kwargs, outs)
    elif name in SLICING:
        slicing(tracer, name, x, args, kwargs, outs)
    else:
        raise UnsupportedOperation(
            f"Operation '{name}' in {tracer.where()} is not known to the dependency graph. Register a handler "
            f"for that module (prunekit.graph.register_handler(ThatModuleClass, handler)) so the graph treats "
            f"it as one layer, or ask for an op rule in prunekit.graph.ops.")


# --- rules ---------------------------------------------------------------------------------------
def _same(tracer: Tracer, x: Tensor, outs: list[Tensor]) -> None:
    spaces = tracer.spaces_of(x)
    for o in outs:
        if spaces is not None and o.shape == x.shape:
            tracer.set_spaces(o, spaces)


def _elementwise(tracer: Tracer, name: str, inputs: list[Tensor], outs: list[Tensor]) -> None:
    for o in outs:
        result: list[int | None] = [None] * o.ndim
        for d in range(o.ndim):
            members, constant = [], False
            for t in inputs:
                td = d - (o.ndim - t.ndim)
                if td < 0 or (t.shape[td] == 1 and o.shape[d] != 1):
                    continue  # broadcast along d
                spaces = tracer.spaces_of(t)
                if spaces is not None and spaces[td] is not None:
                    members.append(spaces[td])
                elif spaces is None and o.shape[d] > 1:
                    constant = True
            for m in members[1:]:
                tracer.couple(members[0], m)
            if members:
                result[d] = members[0]
                if constant:
                    tracer.freeze(members[0], f"'{name}' with a constant tensor holding one value per channel")
        tracer.set_spaces(o, tuple(result))


def _spatial(tracer: Tracer, name: str, x: Tensor, outs: list[Tensor]) -> None:
    spaces = tracer.spaces_of(x)
    for o in outs:
        if o.ndim != x.ndim:
            freeze_dims(tracer, x, range(x.ndim), f"'{name}' changes the number of dims")
            continue
        result = []
        for d in range(x.ndim):
            keep = o.shape[d] == x.shape[d]
            if spaces[d] is not None and not keep:
                tracer.freeze(spaces[d], f"'{name}' changes the channel count")
            result.append(spaces[d] if keep else None)
        tracer.set_spaces(o, tuple(result))


def _reduce(tracer: Tracer, name: str, x: Tensor, args: tuple, kwargs: dict, outs: list[Tensor]) -> None:
    dim = dim_arg(args, kwargs, 2 if name == "norm" else 1, None)
    if isinstance(dim, str):  # e.g. norm(p="fro")
        dim = None
    listed = dim if isinstance(dim, list | tuple) else [dim]
    dims = list(range(x.ndim)) if dim is None else [d % x.ndim for d in listed]
    freeze_dims(tracer, x, dims, f"'{name}' reduces over the channels")
    spaces = tracer.spaces_of(x)
    kept = [spaces[d] for d in range(x.ndim) if d not in dims]
    for o in outs:
        if o.ndim == x.ndim:
            tracer.set_spaces(o, tuple(None if d in dims else spaces[d] for d in range(x.ndim)))
        elif o.ndim == len(kept):
            tracer.set_spaces(o, tuple(kept))


