"""Where SmolLM2-135M's attention finds the needle, layer by layer: the diagnostic behind the LazyLLM schedule.

For needle prompts of `--length` tokens (seed 0, depths 0.1..0.9, `--per-depth` samples each), one dense prefill
with a forward hook on every attention module computes, from the module's own inputs, the token scores a
LazyLLM press at the next layer would use: attention of the last `--window` prompt queries (causal), reduced over
heads by mean ("mean", LazyLLM) or max ("max"), and of the last query alone ("last", `--window 1`), each max-pooled
over 15 positions. For the needle's answer digits (the 4 tokens before the needle's final period) the worst rank
is reported as a fraction of the prompt (0.05 = all digits are in the top 5%). A LazyLLM pruning layer l keeping a
fraction f keeps the digits when the rank at layer l-1 is below f.

  python bench/runtime/needle_rank.py --length 2048 --per-depth 1
"""

from __future__ import annotations

import argparse

import torch
from _common import ids_tensor, load_model, needle_set, setup, write_result

from prunekit.runtime._attn import attention_scaling, kv_groups, project_qk
from prunekit.runtime.base import attention_modules
from prunekit.runtime.tokens._calls import max_pool_scores

REDUCTIONS = ("mean", "max", "last")


def digit_ranks(probs: torch.Tensor, span: slice, pool: int = 15) -> dict[str, float]:
    """probs (H, w, n) of the last w queries -> worst rank fraction of `span` under each reduction."""
    n = probs.shape[-1]
    scores = {"mean": probs.mean((0, 1)), "max": probs.amax(0).mean(0), "last": probs[:, -1].mean(0)}
    out = {}
    for name in REDUCTIONS:
        order = max_pool_scores(scores[name][None], pool)[0].argsort(descending=True)
        rank = torch.empty(n, dtype=torch.long)
        rank[order] = torch.arange(n)
        out[name] = int(rank[span].max()) / n
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--per-depth", type=int, default=1)
    parser.add_argument("--window", type=int, default=16)
    args = parser.parse_args()
    setup(1)
    lm = load_model()
    model, tok = lm.model, lm.tokenizer
    records = []
    for sample in needle_set(tok, args.length, args.per_depth):
        span = slice(sample.needle_end - 5, sample.needle_end - 1)
        ranks: dict[int, dict[str, float]] = {}

        def make(index: int, ranks: dict = ranks, span: slice = span):
            def hook(module, _args, kwargs, _output):
                q, k = project_qk(module, kwargs["hidden_states"], kwargs["position_embeddings"])  # (1, H, T, D)
                w, n = args.window, k.shape[2]
                keys = k.repeat_interleave(kv_groups(module), dim=1).float()
                logits = torch.einsum("bhwd,bhnd->bhwn", q[:, :, -w:].float(), keys) * attention_scaling(module)
                future = torch.arange(n)[None, :] > torch.arange(n - w, n)[:, None]  # (w, n)
                ranks[index] = digit_ranks(logits.masked_fill(future, float("-inf")).softmax(-1)[0], span)
            return hook

        handles = [m.register_forward_hook(make(i), with_kwargs=True) for i, m in enumerate(attention_modules(model))]
        try:
            with torch.no_grad():
                model(ids_tensor(sample), logits_to_keep=1)
        finally:
            for handle in handles:
                handle.remove()
        layers = sorted(ranks)
        records.append({"depth": sample.depth, "digits": tok.decode(list(sample.input_ids[span])),
                        **{name: [round(ranks[i][name], 3) for i in layers] for name in REDUCTIONS}})
        print(f"depth {sample.depth}", flush=True)
        for name in REDUCTIONS:
            print(f"  {name:5}", " ".join(f"{ranks[i][name]:.2f}" for i in layers), flush=True)
    worst = {name: [max(r[name][i] for r in records) for i in range(len(records[0][name]))] for name in REDUCTIONS}
    print("worst over samples:")
    for name in REDUCTIONS:
        print(f"  {name:5}", " ".join(f"{v:.2f}" for v in worst[name]))
    write_result("needle-rank", {"length": args.length, "window": args.window, "pool": 15, "records": records,
                                 "worst": worst})


if __name__ == "__main__":
    main()
