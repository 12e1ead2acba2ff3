"""Rules for operations that move channels between dims or tensors: reshape, permute, expand, cat, stack,
chunk / split, indexing. See prunekit.graph.ops for the overview."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .trace import Tracer


def reshape_spaces(tracer: Tracer, x: Tensor, out_shape: torch.Size, name: str) -> list[int | None]:
    """Spaces of x.reshape(out_shape): dims are matched by equal products of consecutive sizes."""
    spaces = tracer.spaces_of(x)
    in_shape = x.shape
    result: list[int | None] = [None] * len(out_shape)
    ins = [d for d in range(len(in_shape)) if in_shape[d] != 1]
    outs = [d for d in range(len(out_shape)) if out_shape[d] != 1]
    if x.numel() == 0:
        return result
    i = j = 0
    while i < len(ins) and j < len(outs):
        group_in, group_out = [ins[i]], [outs[j]]
        p_in, p_out = in_shape[ins[i]], out_shape[outs[j]]
        i, j = i + 1, j + 1
        while p_in != p_out:
            if p_in < p_out:
                group_in.append(ins[i])
                p_in *= in_shape[ins[i]]
                i += 1
            else:
                group_out.append(outs[j])
                p_out *= out_shape[outs[j]]
                j += 1
        with_space = [d for d in group_in if spaces[d] is not None]
        if not with_space:
            continue
        if len(group_in) == 1 and len(group_out) == 1:
            result[group_out[0]] = spaces[group_in[0]]
        elif len(group_out) == 1 and len(with_space) == 1:
            result[group_out[0]] = _merged_space(tracer, spaces[with_space[0]], [in_shape[d] for d in group_in],
                                                 group_in.index(with_space[0]), name)
        else:
            for d in with_space:
                tracer.freeze(spaces[d], f"'{name}' splits or interleaves channels into shape {tuple(out_shape)}")
    return result


def _merged_space(tracer: Tracer, space: int, sizes: list[int], pos: int, name: str) -> int:
    """A space of prod(sizes) features where feature f belongs to channel ch[f] of `space`."""
    shape = [1] * len(sizes)
    shape[pos] = sizes[pos]
    ch = torch.arange(sizes[pos]).view(shape).expand(sizes).reshape(-1)  # (prod(sizes),)
    merged = tracer.new_space(f"{tracer.space(space).key}>{name}", ch.numel())
    tracer.couple(merged, space, None, ch)
    return merged


def permute(tracer: Tracer, name: str, x: Tensor, rest: tuple, kwargs: dict, out: Tensor) -> None:
    spaces = list(tracer.spaces_of(x))
    n = len(spaces)
    if name == "permute":
        dims = rest[0] if rest and isinstance(rest[0], list | tuple) else (rest or kwargs.get("dims"))
        order = [d % n for d in dims]
    elif name in ("t", "T"):
        order = list(reversed(range(n)))
    elif name in ("movedim", "moveaxis"):
        src, dst = (rest + (kwargs.get("source"), kwargs.get("destination")))[:2]
        src, dst = ([src], [dst]) if isinstance(src, int) else (list(src), list(dst))
        rest_dims = [d for d in range(n) if d not in [s % n for s in src]]
        order = [None] * n
        for s, t in zip(src, dst, strict=True):
            order[t % n] = s % n
        it = iter(rest_dims)
        order = [o if o is not None else next(it) for o in order]
    else:  # transpose, swapaxes, swapdims, mT
        a, b = (-2, -1) if name == "mT" else (rest[0], rest[1]) if len(rest) >= 2 else (
            kwargs.get("dim0"), kwargs.get("dim1"))
        order = list(range(n))
        order[a % n], order[b % n] = order[b % n], order[a % n]
    tracer.set_spaces(out, tuple(spaces[d] for d in order))


def align_right(tracer: Tracer, x: Tensor, out: Tensor) -> None:
    spaces = tracer.spaces_of(x)
    result: list[int | None] = [None] * out.ndim
    for k in range(1, x.ndim + 1):
        if x.shape[-k] == out.shape[-k]:
            result[-k] = spaces[-k]
        elif spaces[-k] is not None:
            tracer.freeze(spaces[-k], "expanded along the channel dim")
    tracer.set_spaces(out, tuple(result))


def cat(tracer: Tracer, args: tuple, kwargs: dict, out: Tensor) -> None:
    pieces = list(args[0] if args else kwargs["tensors"])
    dim = dim_arg(args, kwargs, 1, 0) % out.ndim
    _elementwise_except(tracer, pieces, out, dim)
    spaces = [tracer.spaces_of(p) for p in pieces]
    if all(s is None or s[dim] is None for s in spaces):
        return
    merged = tracer.new_space(f"cat#{len(tracer.result.spaces)}", out.shape[dim])
    offset = 0
    for piece, sp in zip(pieces, spaces, strict=True):
        n = piece.shape[dim]
        source = sp[dim] if sp is not None and sp[dim] is not None else tracer.new_space(
            f"cat-constant#{len(tracer.result.spaces)}", n, frozen="concatenated with a constant tensor")
        tracer.couple(merged, source, torch.arange(offset, offset + n), None)
        offset += n
    current = list(tracer.spaces_of(out) or [None] * out.ndim)
    current[dim] = merged
    tracer.set_spaces(out, tuple(current))


def _elementwise_except(tracer: Tracer, pieces: list[Tensor], out: Tensor, skip: int | None) -> None:
    """Couple the pieces' spaces on every dim but `skip` and give `out` the result."""
    result: list[int | None] = [None] * out.ndim
    for d in range(out.ndim):
        if d == skip:
            continue
        members = [s[d] for p in pieces if (s := tracer.spaces_of(p)) is not None and s[d] is not None]
        for m in members[1:]:
            tracer.couple(members[0], m)
        result[d] = members[0] if members else None
    tracer.set_spaces(out, tuple(result))


def stack(tracer: Tracer, args: tuple, kwargs: dict, out: Tensor) -> None:
    pieces = list(args[0] if args else kwargs["tensors"])
    dim = dim_arg(args, kwargs, 1, 0) % out.ndim
    result: list[int | None] = [None] * out.ndim
    for d in range(pieces[0].ndim):
        members = [s[d] for p in pieces if (s := tracer.spaces_of(p)) is not None and s[d] is not None]
        for m in members[1:]:
            tracer.couple(members[0], m)
        result[d if d < dim else d + 1] = members[0] if members else None
    tracer.set_spaces(out, tuple(result))


def split_pieces(tracer: Tracer, name: str, x: Tensor, args: tuple, kwargs: dict, outs: list[Tensor]) -> None:
    default = -1 if name == "glu" else 0
    dim = dim_arg(args, kwargs, 1 if name in ("unbind", "glu") else 2, default) % x.ndim
    spaces = list(tracer.spaces_of(x))
    space = spaces[dim]
    if name == "unbind":
        if space is not None:
            tracer.freeze(space, "'unbind' over the channels")
        for o in outs:
            tracer.set_spaces(o, tuple(s for d, s in enumerate(spaces) if d != dim))
        return
    if name == "glu":  # glu(x) = a * sigmoid(b) with a, b = x.chunk(2, dim)
        n = x.shape[dim] // 2
        outs = [outs[0], outs[0]]
        sizes = [n, n]
    else:
        sizes = [o.shape[dim] for o in outs]
    equal = len(set(sizes)) == 1 and name in ("chunk", "glu")
    if space is not None and not equal:
        tracer.freeze(space, f"'{name}' with fixed piece sizes {sizes} over the channels")
    first = None
    offset = 0
    for o, n in zip(outs, sizes, strict=True):
        piece = list(spaces)
        if space is not None:
            if first is None:
                first = tracer.new_space(f"{tracer.space(space).key}>{name}", n)
            tracer.couple(first, space, None, torch.arange(offset, offset + n))  # equal pieces stay equal
            piece[dim] = first
        tracer.set_spaces(o, tuple(piece))
        offset += n


def slicing(tracer: Tracer, name: str, x: Tensor, args: tuple, kwargs: dict, outs: list[Tensor]) -> None:
    spaces = tracer.spaces_of(x)
    if name == "getitem":
        result = _getitem_spaces(tracer, x, args[1])
        if result is not None and len(result) == outs[0].ndim:
            tracer.set_spaces(outs[0], tuple(result))
            return
        freeze_dims(tracer, x, range(x.ndim), "advanced indexing")
        return
    for o in outs:
        result = []
        for k in range(1, o.ndim + 1):
            same = k <= x.ndim and o.shape[-k] == x.shape[-k] and name not in ("flip", "roll")
            if k <= x.ndim and spaces[-k] is not None and not same:
                tracer.freeze(spaces[-k], f"'{name}' selects or reorders channels with indices fixed in code")
            result.insert(0, spaces[-k] if k <= x.ndim and same else None)
        tracer.set_spaces(o, tuple(result))


def _getitem_spaces(tracer: Tracer, x: Tensor, index: Any) -> list[int | None] | None:
    spaces = tracer.spaces_of(x)
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, Tensor | list) for i in items):
        return None
    used = sum(1 for i in items if i is not None and i is not Ellipsis)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.ndim - used)
    items += [slice(None)] * (x.ndim - sum(1 for i in items if i is not None))
    result: list[int | None] = []
    d = 0
    for item in items:
        if item is None:
            result.append(None)
            continue
        sp = spaces[d]
        if isinstance(item, slice):
            full = range(*item.indices(x.shape[d])) == range(x.shape[d])
            if sp is not None and not full:
                tracer.freeze(sp, "sliced with bounds fixed in code")
            result.append(sp if full else None)
        elif sp is not None:  # an int picks one channel
            tracer.freeze(sp, "one channel picked by index")
        d += 1
    return result


def dim_arg(args: tuple, kwargs: dict, pos: int, default: Any) -> Any:
    """The `dim` argument of an op: keyword dim/axis, else positional `pos` when not a tensor, else default."""
    if "dim" in kwargs:
        return kwargs["dim"]
    if "axis" in kwargs:
        return kwargs["axis"]
    if len(args) > pos and not isinstance(args[pos], Tensor):
        return args[pos]
    return default


def freeze_dims(tracer: Tracer, x: Tensor, dims: Any, reason: str) -> None:
    spaces = tracer.spaces_of(x)
    for d in dims:
        if d is not None and spaces[d % x.ndim] is not None:
            tracer.freeze(spaces[d % x.ndim], reason)
