"""(g) HiP: tree-search recall on synthetic local attention, gathered attention, FLOPs, and the press."""

from __future__ import annotations

import pytest
import torch

from prunekit.runtime import HipPress, attention_flops, gathered_attention, hip_select
from prunekit.runtime.attention.hip import _blocks, _tree_search, dense_prefix_blocks


def local_qk(length: int, dim: int = 32, heads: int = 2, rho: float = 0.998, noise: float = 0.1, seed: int = 0):
    """Queries and keys that share a smooth AR(1) signal: q_i . k_j is large when |i - j| is small."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(1, heads, length, dim, generator=g)
    signal = torch.empty_like(eps)
    signal[:, :, 0] = eps[:, :, 0]
    for t in range(1, length):
        signal[:, :, t] = rho * signal[:, :, t - 1] + (1 - rho**2) ** 0.5 * eps[:, :, t]
    q = signal + noise * torch.randn(signal.shape, generator=g)
    k = signal + noise * torch.randn(signal.shape, generator=g)
    return q, k


def test_tree_search_recall_of_exact_top_blocks():
    q, k = local_qk(2048)
    bq, bk, top_k, sink, window = 64, 32, 256, 32, 64
    index = hip_select(q, k, bq, bk, top_k, sink, window)
    end, sink_end, _, first, last = _blocks(2048, 2048, bq, bk, sink, window, torch.device("cpu"))
    m, recalls = top_k // bk, []
    for b in range(end.shape[0]):
        lo, hi = first, int(last[b])
        if hi - lo <= m:
            continue
        scores = torch.einsum("bhqd,bhnkd->bhnqk", q[:, :, b * bq:(b + 1) * bq],
                              k[:, :, lo * bk:hi * bk].reshape(1, 2, hi - lo, bk, -1)).amax(dim=(-1, -2))
        exact = scores.topk(m, dim=-1).indices + lo  # (1, H, M) exact top key blocks by max score
        start = int(sink_end[b])
        chosen = index[:, :, b, start:start + m * bk:bk] // bk
        for h in range(2):
            recalls.append(len(set(exact[0, h].tolist()) & set(chosen[0, h].tolist())) / m)
    assert len(recalls) > 40
    assert sum(recalls) / len(recalls) >= 0.9


def test_selection_is_causal_unique_and_has_sink_and_window():
    q, k = local_qk(512, heads=1)
    index = hip_select(q, k, 32, 16, 64, 16, 32)  # (1, 1, NQ, S)
    for b in range(index.shape[2]):
        row = index[0, 0, b]
        row = row[row >= 0]
        end = (b + 1) * 32
        assert row.unique().numel() == row.numel()
        assert int(row.max()) == end - 1 and set(range(min(16, end))) <= set(row.tolist())
        assert set(range(max(0, b * 32 - 32), end)) <= set(row.tolist())
        assert row.numel() <= 16 + 64 + 32 + 32


def test_gathered_attention_full_selection_is_dense():
    q, k = local_qk(300, heads=4)
    k, v = k[:, :2], torch.randn(1, 2, 300, 32)  # 2 KV heads, GQA groups of 2
    index = hip_select(q, k, 64, 32, 512, 0, 512)
    out = gathered_attention(q, k, v, index, 64)
    dense = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                                             is_causal=True)
    torch.testing.assert_close(out, dense, atol=1e-5, rtol=1e-5)


def test_flops_at_4k_with_512_keys():
    flops = attention_flops(4096, top_k=512, block_q=64, block_k=64, sink=64, window=64, head_dim=64, num_heads=8)
    assert flops.ratio <= 0.25
    assert flops.selection < 0.1 * flops.attention
    assert 0.3 < flops.ratio_causal < 0.4  # vs a causal-skipping dense kernel the saving is smaller


def test_short_blocks_keep_every_candidate_and_only_the_rest_search():
    q, k = local_qk(700)
    bq, bk, top_k, sink, window = 32, 16, 64, 16, 32
    index = hip_select(q, k, bq, bk, top_k, sink, window)
    n_dense = dense_prefix_blocks(700, 700, bq, bk, top_k, sink, window)
    end, _, _, first, last = _blocks(700, 700, bq, bk, sink, window, q.device)
    assert 0 < n_dense < end.shape[0]
    for b in range(n_dense):  # every causal key, each once
        row = index[0, 0, b]
        assert sorted(row[row >= 0].tolist()) == list(range(int(end[b])))
    searched = _tree_search(q, k, 1, bq, bk, top_k // bk, first, last)  # the search over every block
    chosen = index[:, :, n_dense:, sink: sink + top_k: bk] // bk
    torch.testing.assert_close(chosen, searched[:, :, n_dense:])


@pytest.mark.parametrize("boolean_mask", [False, True])
def test_dense_prefix_gives_the_gathered_result(boolean_mask):
    q, k = local_qk(700, heads=4)
    k, v = k[:, :2], torch.randn(1, 2, 700, 32)
    bq, bk, top_k, sink, window = 32, 16, 64, 16, 32
    index = hip_select(q, k, bq, bk, top_k, sink, window)
    n_dense = dense_prefix_blocks(700, 700, bq, bk, top_k, sink, window)
    mask = torch.ones(700, 700).tril().bool()[None, None] if boolean_mask else None
    gathered = gathered_attention(q, k, v, index, bq, mask=mask)
    prefix = gathered_attention(q, k, v, index, bq, mask=mask, dense_blocks=n_dense)
    torch.testing.assert_close(prefix, gathered, atol=1e-5, rtol=1e-5)
    assert dense_prefix_blocks(600, 700, bq, bk, top_k, sink, window) == 0  # queries after a cached prefix


def test_flops_count_the_dense_prefix_and_meet_a_quarter_of_causal_at_512_keys():
    top_k, bq, bk, sink, window = 416, 32, 32, 32, 32  # 32 sink + 416 selected + 64 local = 512 keys per query
    f = attention_flops(4096, top_k, bq, bk, sink, window, head_dim=64, num_heads=9)
    p = 512  # blocks ending at or before key 512 have at most 13 candidate blocks: dense over their prefix
    assert dense_prefix_blocks(4096, 4096, bq, bk, top_k, sink, window) * bq == p
    assert f.attention == 4 * 64 * 9 * (p * (p + 1) // 2 + (4096 - p) * 512)
    assert f.ratio_causal <= 0.25


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_press_sparse_prefill_runs_and_gathers(tiny, prompt, greedy, family):
    model = tiny(family, 2)
    ids = prompt(160)
    dense = greedy(model, ids, 4)
    press = HipPress(top_k=32, block_q=16, block_k=8, sink=8, window=16, dense_layers=(0,))
    with press(model):
        out = greedy(model, ids, 4)
    assert set(press.attended_keys_per_layer) == {1}
    assert press.attended_keys_per_layer[1] < 8 + 32 + 16 + 16 + 8
    assert out.shape == dense.shape
    assert (out[:, 160:] == dense[:, 160:]).float().mean() >= 0.25


def test_ratio_sets_top_k_from_the_context(tiny, prompt, greedy):
    """The shared knob: keys gathered per query = the kept fraction of the context (sink + selected + local)."""
    assert HipPress().top_k == 416 and HipPress(ratio=0.75).top_k_for(2048) == 416
    assert HipPress(ratio=0.0).top_k_for(1100) + 32 + 32 + 32 >= 1100  # nothing removed: dense
    press = HipPress(ratio=0.5, block_q=16, block_k=8, sink=8, window=16)
    assert press.top_k is None and press.top_k_for(200) == 56  # 100 kept - 8 sink - 16 window - 16 query block
    model = tiny("llama", 4)
    with press(model):
        greedy(model, prompt(200), 2)
    assert set(press.attended_keys_per_layer) == {1, 2, 3}
    assert all(0 < keys <= 100 for keys in press.attended_keys_per_layer.values())
