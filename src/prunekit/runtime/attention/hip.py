"""HiP press: hierarchical key-block selection per query block, then attention over the GATHERED keys only.

Lee et al. 2024, "HiP Attention: Sparse Sub-Quadratic Attention with Hierarchical Attention Pruning"
(arXiv 2406.09827). For each block of `block_q` queries, the key blocks (of `block_k` keys) between the sink and
the local window are split into M = top_k / block_k contiguous groups; each round splits every group into two
halves, scores a half by its representative key (the centre key of the half, as in the paper: attention
locality makes it stand for its neighbours) as the max over the block's queries (every 2nd query) of q . k_rep,
and keeps the best M halves, until every group is one block: log2(T / top_k)
rounds of O(top_k / block_k) dot products per query block. The selected blocks plus `sink` first keys and a
local `window` (plus the query block itself) are gathered and attended; sink and window are rounded outward to
key-block boundaries. Queries are lower-right aligned with the keys (query i is at position Tk - Tq + i).

The press installs this as the attention function for PREFILL (q_len > 1) on all but `dense_layers`; decode and
contexts the budget already covers use the wrapped dense kernel (so a budget >= context is exactly dense).

Query blocks whose causal range has at most M candidate blocks select every key anyway; they run as dense causal
attention over their prefix (fewer pairs than the padded gathered width), and only the later blocks search.

Defaults: every query attends to 512 gathered keys at any length (32 sink + 13 selected blocks of 32 + a local
region of 64: its own 32-query block and a 32-key window), so at 4k tokens HiP's attention plus selection FLOPs are
24.5% of a causal-skipping dense kernel and 12.3% of dense over all T x T pairs (bench/runtime/hip.py). The
earlier defaults (top_k 512, 64-blocks, sink and window 64) gathered 704 keys per query: 32% of causal dense.
`ratio` r (the knob every press shares), given instead of `top_k`, makes the keys gathered per query
the kept fraction of the current context of Tk keys: top_k = block_k * floor((Tk - int(r Tk) - sink - window -
block_q) / block_k), at least 0 (sink and local keys are always gathered), so sink + selected + local <= (1 - r) Tk
whenever (1 - r) Tk >= sink + window + block_q (r = 0.75 at 2048 tokens gives the default 416); as with `top_k`, a
context the gathered width covers stays dense, and so does one where int(r Tk) = 0 (r = 0 is dense). Giving both is
an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import ConfigError
from ...utils.hooks import HookSet
from .._interface import AttentionFn, attention_function
from ..base import RENAMED_RATIO, Press, validate_ratio


def _blocks(tq: int, tk: int, block_q: int, block_k: int, sink: int, window: int, device: torch.device):
    """Per query block: end (exclusive, key positions), sink end, window start, first/last+1 candidate block."""
    offset = tk - tq
    nq = -(-tq // block_q)
    b = torch.arange(nq, device=device)
    start = offset + b * block_q  # (NQ,)
    end = offset + torch.clamp((b + 1) * block_q, max=tq)  # (NQ,)
    sink_end = torch.clamp(torch.full_like(end, -(-sink // block_k) * block_k), max=end)
    win_start = torch.maximum(sink_end, torch.div(start - window, block_k, rounding_mode="floor") * block_k)
    first = -(-sink // block_k)
    last = torch.clamp(win_start // block_k, min=first)  # candidate blocks [first, last)
    return end, sink_end, win_start, first, last


def hip_select(q: torch.Tensor, k: torch.Tensor, block_q: int, block_k: int, top_k: int, sink: int,
               window: int) -> torch.Tensor:
    """q (B, H, Tq, D), k (B, Hkv, Tk, D) -> key indices (B, H, NQ, S) per query block, -1 for padding."""
    bsz, heads, tq, dim = q.shape
    tk, groups = k.shape[2], heads // k.shape[1]
    device = q.device
    end, sink_end, win_start, first, last = _blocks(tq, tk, block_q, block_k, sink, window, device)
    nq, m = end.shape[0], top_k // block_k
    blocks = None
    if m:  # blocks with at most M candidates keep them all; only the rest search (the search is batched)
        n_all = _short_blocks(first, last, m)
        head = first + torch.arange(m, device=device)  # (M,)
        blocks = torch.where(head < last[:n_all, None], head, -1).expand(bsz, heads, -1, -1)  # (B, H, n_all, M)
        if n_all < nq:
            searched = _tree_search(q[:, :, n_all * block_q:], k, groups, block_q, block_k, m, first, last[n_all:])
            blocks = torch.cat([blocks, searched], dim=2)  # (B, H, NQ, M)
    parts = []
    sink_width = int(sink_end.max()) if nq else 0
    sink_idx = torch.arange(sink_width, device=device).expand(nq, -1)  # (NQ, s)
    parts.append(torch.where(sink_idx < sink_end[:, None], sink_idx, -1).expand(bsz, heads, -1, -1))
    if blocks is not None:
        keys = blocks[..., None] * block_k + torch.arange(block_k, device=device)  # (B, H, NQ, M, bk)
        keys = torch.where(blocks[..., None] >= 0, keys, -1)
        parts.append(keys.flatten(-2))
    win_width = int((end - win_start).max()) if nq else 0
    win_idx = win_start[:, None] + torch.arange(win_width, device=device)  # (NQ, w)
    parts.append(torch.where(win_idx < end[:, None], win_idx, -1).expand(bsz, heads, -1, -1))
    return torch.cat(parts, dim=-1)


def _tree_search(q: torch.Tensor, k: torch.Tensor, groups: int, block_q: int, block_k: int, m: int, first: int,
                 last: torch.Tensor) -> torch.Tensor:
    """Selected key-block ids (B, H, NQ, M) (-1 = none) by the halving search over candidates [first, last)."""
    bsz, heads, tq, dim = q.shape
    nq = last.shape[0]
    pad = nq * block_q - tq
    qp = torch.cat([q, q[:, :, -1:].expand(-1, -1, pad, -1)], dim=2) if pad else q
    reps = qp.view(bsz, heads, nq, block_q, dim)[:, :, :, ::2]  # (B, H, NQ, bq/2, D)
    count = (last - first).clamp(min=0)  # (NQ,)
    g = torch.arange(m + 1, device=q.device)
    bounds = first + torch.div(g[None, :] * count[:, None], m, rounding_mode="floor")  # (NQ, M + 1)
    begin = bounds[:, :-1].expand(bsz, heads, -1, -1).contiguous()  # (B, H, NQ, M)
    stop = bounds[:, 1:].expand(bsz, heads, -1, -1).contiguous()
    head_of = torch.arange(heads, device=q.device) // groups
    kh = k[:, head_of]  # (B, H, Tk, D)
    while int((stop - begin).max()) > 1:
        mid = begin + (stop - begin + 1) // 2
        hb = torch.cat([begin, mid], dim=-1)  # (B, H, NQ, 2M) halves: [begin, mid) and [mid, stop)
        he = torch.cat([mid, stop], dim=-1)
        rep = ((hb + he) * block_k // 2).clamp(max=kh.shape[2] - 1)  # centre key of each half
        rep_k = kh.gather(2, rep.flatten(2)[..., None].expand(-1, -1, -1, dim))  # (B, H, NQ*2M, D)
        rep_k = rep_k.view(bsz, heads, nq, 2 * m, dim)
        score = torch.einsum("bhnqd,bhnmd->bhnqm", reps.float(), rep_k.float()).amax(dim=3)  # (B, H, NQ, 2M)
        score = score.masked_fill(he <= hb, float("-inf"))
        keep = score.topk(m, dim=-1).indices  # (B, H, NQ, M)
        begin, stop = hb.gather(-1, keep), he.gather(-1, keep)
    return torch.where(stop > begin, begin, -1)


def dense_prefix_blocks(tq: int, tk: int, block_q: int, block_k: int, top_k: int, sink: int, window: int) -> int:
    """Leading query blocks whose selection is every causal key (at most M = top_k / block_k candidate blocks):
    dense causal attention computes them exactly and with fewer key pairs than the gathered width."""
    if tq != tk:  # queries after a cached prefix: no block sees only a short causal range
        return 0
    _, _, _, first, last = _blocks(tq, tk, block_q, block_k, sink, window, torch.device("cpu"))
    return _short_blocks(first, last, top_k // block_k)


def _short_blocks(first: int, last: torch.Tensor, m: int) -> int:
    """Leading query blocks with at most `m` candidate key blocks (`last` never decreases, so they are a prefix)."""
    return int(((last - first) <= m).sum())


def gathered_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, indices: torch.Tensor, block_q: int,
                       *, scaling: float | None = None, mask: torch.Tensor | None = None, dense_blocks: int = 0,
                       chunk: int = 8) -> torch.Tensor:
    """Attention of q (B, H, Tq, D) over the gathered keys `indices` (B, H, NQ, S) of k, v (B, Hkv, Tk, D),
    causal by position, optional 4D mask (B, 1|H, Tq, Tk) additive or boolean -> (B, H, Tq, D).

    The first `dense_blocks` query blocks (whose `indices` hold every causal key, see `dense_prefix_blocks`;
    needs Tq == Tk) run as dense causal attention over their prefix instead of over the padded gathered width.
    """
    bsz, heads, tq, dim = q.shape
    tk, groups = k.shape[2], heads // k.shape[1]
    scaling = dim ** -0.5 if scaling is None else scaling
    nq, width = indices.shape[2], indices.shape[3]
    head_of = torch.arange(heads, device=q.device) // groups
    out = q.new_empty(bsz, heads, nq * block_q, v.shape[-1])
    pad = nq * block_q - tq
    qp = torch.cat([q, q.new_zeros(bsz, heads, pad, dim)], dim=2) if pad else q
    start_block = 0
    if dense_blocks and tq == tk:
        start_block = min(dense_blocks, nq)
        p = min(tq, start_block * block_q)
        sub = None if mask is None else mask[:, :, :p, :p]
        out[:, :, :p] = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, :p], k[:, head_of, :p], v[:, head_of, :p], attn_mask=sub, is_causal=sub is None, scale=scaling)
    # one row of K / V per (batch, KV head, position): a selected key is a whole row, copied by index_select
    # (1.5-1.7x faster than gather with an index expanded over the head dimension)
    k_rows, v_rows = k.reshape(-1, dim), v.reshape(-1, v.shape[-1])
    row_base = (torch.arange(bsz, device=q.device)[:, None] * k.shape[1] + head_of[None, :]) * tk  # (B, H)
    for b0 in range(start_block, nq, chunk):
        b1 = min(nq, b0 + chunk)
        idx = indices[:, :, b0:b1]  # (B, H, c, S)
        safe = idx.clamp(min=0)
        rows = (safe + row_base[:, :, None, None]).flatten()  # (B*H*c*S,)
        kk = k_rows.index_select(0, rows).view(bsz, heads, b1 - b0, width, dim)
        vv = v_rows.index_select(0, rows).view(bsz, heads, b1 - b0, width, v.shape[-1])
        qq = qp[:, :, b0 * block_q:b1 * block_q].reshape(bsz, heads, b1 - b0, block_q, dim)
        logits = torch.einsum("bhnqd,bhnsd->bhnqs", qq.float(), kk.float()) * scaling  # (B, H, c, bq, S)
        qpos = tk - tq + torch.arange(b0 * block_q, b1 * block_q, device=q.device).view(b1 - b0, block_q, 1)
        allowed = (idx[:, :, :, None, :] >= 0) & (idx[:, :, :, None, :] <= qpos)  # (B, H, c, bq, S)
        if mask is not None:
            rows = torch.arange(b0 * block_q, b1 * block_q, device=q.device).clamp(max=tq - 1)
            sub = mask[:, :, rows].view(mask.shape[0], mask.shape[1], b1 - b0, block_q, tk)
            sub = sub.expand(bsz, heads, -1, -1, -1).gather(4, safe.view(bsz, heads, b1 - b0, 1, width)
                                                             .expand(-1, -1, -1, block_q, -1))
            if sub.dtype == torch.bool:
                allowed = allowed & sub
            else:
                logits = logits + sub.float()
        logits = logits.masked_fill(~allowed, float("-inf"))
        probs = logits.softmax(dim=-1)  # every query sees its own key, so a row is empty only under `mask`
        probs = (probs.nan_to_num(0.0) if mask is not None else probs).to(vv.dtype)
        out[:, :, b0 * block_q:b1 * block_q] = torch.einsum("bhnqs,bhnsd->bhnqd", probs, vv).flatten(2, 3)
    return out[:, :, :tq]


@dataclass(frozen=True)
class FlopCount:
    """Attention FLOPs (multiply-add = 2) of HiP vs dense at one sequence length, all heads."""

    dense_full: int  # every query x every key, as eager / masked SDPA compute it
    dense_causal: int  # only the unmasked causal pairs (a causal-skipping kernel)
    selection: int
    attention: int
    gathered_width: int = 0  # keys per query block after the dense prefix (sink + selected + local)

    @property
    def total(self) -> int:
        return self.selection + self.attention

    @property
    def ratio(self) -> float:
        return self.total / self.dense_full

    @property
    def ratio_causal(self) -> float:
        return self.total / self.dense_causal


def attention_flops(seq_len: int, top_k: int, block_q: int = 64, block_k: int = 64, sink: int = 64,
                    window: int = 64, head_dim: int = 64, num_heads: int = 1) -> FlopCount:
    """Count what `hip_select` + `gathered_attention` compute for a prefill of `seq_len` tokens (padding included)."""
    end, sink_end, win_start, first, last = _blocks(seq_len, seq_len, block_q, block_k, sink, window,
                                                    torch.device("cpu"))
    m = top_k // block_k
    width = int(sink_end.max()) + m * block_k + int((end - win_start).max())
    nq = end.shape[0]
    n_dense = dense_prefix_blocks(seq_len, seq_len, block_q, block_k, top_k, sink, window)
    p = min(seq_len, n_dense * block_q)
    pairs = p * (p + 1) // 2 + (nq - n_dense) * block_q * width  # dense causal prefix, then the gathered width
    attention = 4 * head_dim * num_heads * pairs  # QK^T and PV
    selection = 0
    if m and n_dense < nq:  # searching blocks run the rounds the largest candidate range needs (batched)
        largest = -(-int((last - first).clamp(min=0).max()) // m)
        rounds = math.ceil(math.log2(largest)) if largest > 1 else 0
        selection = rounds * (nq - n_dense) * 2 * m * -(-block_q // 2) * 2 * head_dim * num_heads
    dense_full = 4 * head_dim * num_heads * seq_len * seq_len
    dense_causal = 4 * head_dim * num_heads * seq_len * (seq_len + 1) // 2
    return FlopCount(dense_full, dense_causal, selection, attention, width)


@dataclass
class HipPress(Press):
    """Prefill attention over HiP-selected key blocks plus sink and window, on all layers but `dense_layers`."""

    top_k: int | None = None  # None: DEFAULT_TOP_K, unless ratio is given
    ratio: float | None = None
    block_q: int = 32
    block_k: int = 32
    sink: int = 32
    window: int = 32
    dense_layers: Sequence[int] = (0,)

    RENAMED: ClassVar[dict[str, str]] = RENAMED_RATIO
    DEFAULT_TOP_K: ClassVar[int] = 416
    replaces_attention: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.ratio is not None:
            if self.top_k is not None:
                raise ConfigError("give either top_k or ratio, not both (ratio sets top_k from the kept fraction of "
                                  "the context)")
            self.ratio = validate_ratio(self.ratio)
        elif self.top_k is None:
            self.top_k = self.DEFAULT_TOP_K
        for name in ("block_q", "block_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("top_k", "sink", "window"):
            value = getattr(self, name)
            if (value is not None or name != "top_k") and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if self.top_k is not None and self.top_k % self.block_k:
            raise ConfigError(f"top_k ({self.top_k}) must be a multiple of block_k ({self.block_k})")
        self.reset()

    def top_k_for(self, length: int) -> int:
        """Selected keys per query block for a context of `length` keys (absolute, or from ratio)."""
        if self.ratio is None:
            return int(self.top_k)
        kept = length - int(length * self.ratio)
        spare = kept - self.sink - self.window - self.block_q
        if kept >= length:  # nothing removed (r = 0, or a short context): cover every key, i.e. dense
            return max(0, -(-spare // self.block_k) * self.block_k)
        return max(0, spare // self.block_k * self.block_k)

    def reset(self) -> None:
        self.attended_keys_per_layer: dict[int, int] = {}

    def install(self, model: nn.Module, hooks: HookSet, stack: ExitStack) -> None:
        stack.enter_context(attention_function(model, "hip", self._make))

    def _make(self, previous: Any) -> AttentionFn:
        dense_layers = {int(i) for i in self.dense_layers}

        def hip_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
            layer = int(module.layer_idx)
            top_k = self.top_k_for(key.shape[2])
            budget = self.sink + self.window + top_k + self.block_q
            if (query.shape[2] == 1 or key.shape[2] <= budget or layer in dense_layers
                    or not getattr(module, "is_causal", True)):
                return previous(module)(module, query, key, value, attention_mask, **kwargs)
            with torch.no_grad():
                index = hip_select(query, key, self.block_q, self.block_k, top_k, self.sink, self.window)
            self.attended_keys_per_layer[layer] = int((index >= 0).sum(-1).float().mean())
            dense_blocks = dense_prefix_blocks(query.shape[2], key.shape[2], self.block_q, self.block_k, top_k,
                                               self.sink, self.window)
            out = gathered_attention(query, key, value, index, self.block_q, scaling=kwargs.get("scaling"),
                                     mask=attention_mask if isinstance(attention_mask, torch.Tensor) else None,
                                     dense_blocks=dense_blocks)
            return out.transpose(1, 2).contiguous(), None

        return hip_attention
