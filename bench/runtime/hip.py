"""HiP sparse prefill attention: selection recall and attention FLOPs.

1. Recall on synthetic locality data: queries and keys share a smooth AR(1) signal (rho 0.998, noise 0.1, dim 64,
   4 heads, 4096 tokens, seeds 0-2), so q_i . k_j is large for nearby i, j. For each query block whose candidate
   range (between sink and local window) has more than M = top_k / block_k blocks, the exact top-M key blocks by
   block score max_{q in block, k in key block} q . k are compared with HiP's M selected blocks:
   recall = |selected & exact| / M, averaged over blocks and heads (target >= 0.9).
2. The same on real SmolLM2-135M queries and keys (post-RoPE, GQA keys repeated per query head) of layers 5, 15
   and 25 at 4096 tokens of wiki evaluation text. Also reported there: "mass recall" = attention probability mass
   (softmax over the causal keys, summed over the block's queries) on HiP's selected candidate blocks divided by
   the mass on the best M candidate blocks by mass, and the relative L2 error of HiP's attention output vs dense
   causal SDPA for that layer (values captured too).
3. Attention FLOPs at 4096 tokens (9 heads x 64 dims, SmolLM2) of `hip_select` + `gathered_attention`, as
   `attention_flops` counts them (padding included), against dense attention over all T x T pairs ("full", what
   eager / masked SDPA compute) and over the causal pairs only ("causal", target <= 25%), for the old press defaults
   and candidate configurations with ~512 keys per query.

  python bench/runtime/hip.py
"""

from __future__ import annotations

import time

import torch
from _common import load_model, markdown_table, setup, write_result

from prunekit.data import evaluation_windows
from prunekit.runtime import HipPress, attention_flops, gathered_attention, hip_select
from prunekit.runtime._attn import project_qk, repeat_heads
from prunekit.runtime.attention.hip import _blocks
from prunekit.runtime.base import attention_modules

LENGTH = 4096
LAYERS = (5, 15, 25)
CONFIGS = {  # name: (top_k, block_q, block_k, sink, window)
    "old default (512 blocks-keys, 64/64/64/64)": (512, 64, 64, 64, 64),
    "default: 512 keys/query (416 + 32 sink + 64 local), 32-blocks": (416, 32, 32, 32, 32),
    "480 keys/query (384 + 32 sink + 64 local), 32-blocks": (384, 32, 32, 32, 32),
    "448 + 64 local, no sink, 64-query blocks": (448, 64, 32, 0, 0),
}


class _Stop(Exception):
    pass


def local_qk(length: int, dim: int = 64, heads: int = 4, rho: float = 0.998, noise: float = 0.1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(1, heads, length, dim, generator=g)
    signal = torch.empty_like(eps)
    signal[:, :, 0] = eps[:, :, 0]
    scale = (1 - rho**2) ** 0.5
    for t in range(1, length):
        signal[:, :, t] = rho * signal[:, :, t - 1] + scale * eps[:, :, t]
    return signal + noise * torch.randn(signal.shape, generator=g), signal + noise * torch.randn(signal.shape,
                                                                                              generator=g)


def recall(q, k, config, scaling: float | None = None) -> dict[str, float]:
    """Block recall (max-score criterion) and, when `scaling` is given, mass recall; k has one head per query head."""
    top_k, bq, bk, sink, window = config
    tq, heads = q.shape[2], q.shape[1]
    index = hip_select(q, k, bq, bk, top_k, sink, window)
    end, sink_end, _, first, last = _blocks(tq, tq, bq, bk, sink, window, q.device)
    m = top_k // bk
    hits, mass_hits, count = 0.0, 0.0, 0
    for b in range(end.shape[0]):
        lo, hi = first, int(last[b])
        if hi - lo <= m:
            continue
        qb = q[0, :, b * bq:min((b + 1) * bq, tq)].float()  # (H, bq, D)
        kb = k[0, :, lo * bk:hi * bk].float().reshape(heads, hi - lo, bk, -1)  # (H, nb, bk, D)
        score = torch.einsum("hqd,hnkd->hnqk", qb, kb).amax(dim=(-1, -2))  # (H, nb)
        exact = score.topk(m, dim=-1).indices + lo  # (H, M)
        start = int(sink_end[b])
        chosen = index[0, :, b, start:start + m * bk:bk] // bk  # (H, M)
        for h in range(heads):
            hits += len(set(exact[h].tolist()) & set(chosen[h].tolist())) / m
        if scaling is not None:
            qpos = torch.arange(b * bq, min((b + 1) * bq, tq))
            logits = torch.einsum("hqd,hkd->hqk", qb, k[0, :, :int(end[b])].float()) * scaling
            logits = logits.masked_fill(torch.arange(int(end[b]))[None, None] > qpos[None, :, None], float("-inf"))
            probs = logits.softmax(-1).sum(1)  # (H, Tk)
            block_mass = probs[:, lo * bk:hi * bk].reshape(heads, hi - lo, bk).sum(-1)  # (H, nb)
            best = block_mass.topk(m, dim=-1).values.sum(-1)  # (H,)
            got = block_mass.gather(1, (chosen - lo).clamp(min=0)).sum(-1)
            mass_hits += float((got / best).sum())
        count += heads
    out = {"block_recall": hits / max(count, 1), "evaluated": count}
    if scaling is not None:
        out["mass_recall"] = mass_hits / max(count, 1)
    return out


@torch.no_grad()
def capture_qkv(lm, ids: torch.Tensor) -> dict[int, tuple]:
    """Post-RoPE q (1, H, T, D), k and v repeated to H heads, for LAYERS; the forward stops after the last one."""
    found: dict[int, tuple] = {}
    modules = attention_modules(lm.model)

    def make(layer):
        def hook(module, args, kwargs):
            hidden = kwargs["hidden_states"]
            q, k = project_qk(module, hidden, kwargs.get("position_embeddings"))
            v = module.v_proj(hidden).view(1, hidden.shape[1], -1, module.head_dim).transpose(1, 2)
            groups = q.shape[1] // k.shape[1]
            found[layer] = (q, repeat_heads(k, groups), repeat_heads(v, groups), module.scaling)
            if layer == max(LAYERS):
                raise _Stop

        return hook

    handles = [modules[layer].register_forward_pre_hook(make(layer), with_kwargs=True) for layer in LAYERS]
    try:
        lm.model(input_ids=ids, use_cache=False)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return found


def main() -> None:
    setup(1)
    start = time.perf_counter()
    results: dict = {"length": LENGTH, "configs": {}}
    new_default = HipPress()
    default_tuple = (new_default.top_k, new_default.block_q, new_default.block_k, new_default.sink,
                     new_default.window)
    # 1. synthetic
    synth_rows = []
    synthetic = [local_qk(LENGTH, seed=s) for s in range(3)]
    for name, config in CONFIGS.items():
        values = [recall(q, k, config) for q, k in synthetic]
        mean = sum(v["block_recall"] for v in values) / len(values)
        results["configs"].setdefault(name, {"config": dict(zip(("top_k", "block_q", "block_k", "sink", "window"),
                                                                config, strict=True))})["synthetic_recall"] = mean
        synth_rows.append([name, mean, sum(v["evaluated"] for v in values)])
        print(f"synthetic {name}: {mean:.3f}", flush=True)
    # 2. real SmolLM2 q/k/v
    lm = load_model()
    ids = evaluation_windows(lm.tokenizer, "wiki", 1, LENGTH)
    captured = capture_qkv(lm, ids)
    real_rows = []
    for name, config in CONFIGS.items():
        row = [name]
        for layer in LAYERS:
            q, k, v, scaling = captured[layer]
            r = recall(q, k, config, scaling)
            top_k, bq, bk, sink, window = config
            index = hip_select(q, k, bq, bk, top_k, sink, window)
            out = gathered_attention(q, k, v, index, bq, scaling=scaling)
            dense = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)
            error = float((out - dense).norm() / dense.norm())
            keys = float((index >= 0).sum(-1).float().mean())
            results["configs"][name][f"layer{layer}"] = {**r, "relative_output_error": error,
                                                        "mean_keys_per_query_block": keys}
            row += [r["block_recall"], r["mass_recall"], error]
            print(f"real layer {layer} {name}: {r} err {error:.3f} keys {keys:.0f}", flush=True)
        real_rows.append(row)
    # 3. FLOPs
    flop_rows = []
    for name, config in CONFIGS.items():
        top_k, bq, bk, sink, window = config
        f = attention_flops(LENGTH, top_k, bq, bk, sink, window, head_dim=64, num_heads=9)
        width = f.gathered_width
        results["configs"][name]["flops"] = {"gathered_keys_per_query": width, "selection": f.selection,
                                             "attention": f.attention, "dense_full": f.dense_full,
                                             "dense_causal": f.dense_causal, "ratio_full": f.ratio,
                                             "ratio_causal": f.ratio_causal,
                                             "meets_25pct_causal": f.ratio_causal <= 0.25}
        flop_rows.append([name + (" *" if config == default_tuple else ""), width, f"{f.selection / f.total:.3f}",
                          f.ratio, f.ratio_causal, f.ratio_causal <= 0.25])
    tables = {
        "synthetic": markdown_table(["config", "block recall", "blocks x heads"], synth_rows),
        "real": markdown_table(["config", *[f"L{layer} {m}" for layer in LAYERS for m in ("recall", "mass", "err")]],
                               real_rows),
        "flops": markdown_table(["config (* = HipPress default)", "keys/query", "selection share", "vs full dense",
                                 "vs causal dense", "<= 25% causal"], flop_rows),
    }
    for title, table in tables.items():
        print(f"\n{title}\n{table}")
    write_result("hip", {**results, "tables": tables, "default": default_tuple,
                         "seconds": round(time.perf_counter() - start)})


if __name__ == "__main__":
    main()
