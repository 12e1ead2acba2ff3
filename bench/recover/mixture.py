"""Dynamic batch loading (Sheared-LLaMA) against a fixed uniform mixture when recovering a pruned SmolLM2-135M on
several corpora (issue 13: the worst corpus's loss should drop).

Both runs train LoRA on `--tokens` tokens from wiki, news, shakespeare and python-stdlib (training parts), the
same seed and settings; "fixed" keeps equal weights, "dynamic" re-weights after each of the ~10 validations
towards the corpora whose validation loss lags the dense model's most. Reported: validation loss per corpus at the
end against the dense model's (the excess is what dynamic loading minimises), perplexity on each evaluation
split, and the weights over time.

  python bench/recover/mixture.py [--base flap30] [--tokens 60000]
Writes bench/results/recover-mixture-<base>-<tokens><tag>.json.
"""

from __future__ import annotations

import argparse

import _common as common
import torch

CORPORA = ["wiki", "news", "shakespeare", "python-stdlib"]
EVAL = {"wiki": 8, "news": 7, "shakespeare": 8, "python-stdlib": 8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="flap30", choices=list(common.BASES))
    parser.add_argument("--tokens", type=int, default=60_000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="", help="suffix of the result file name (pass as --tag=-x)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from prunekit.models import load
    from prunekit.recover import RecoverConfig
    from prunekit.recover.run import recover

    dense = load("smollm2-135m")
    base = common.pruned_base(dense, args.base)
    steps = -(-args.tokens // (8 * 256))
    result = {"base": args.base, "tokens": args.tokens, "corpora": CORPORA, "dense": common.perplexities(dense, EVAL),
              "before": common.perplexities(base, EVAL)}
    for mix in ("fixed", "dynamic"):
        loaded = common.fresh_copy(base)
        config = RecoverConfig(tokens=args.tokens, lr=args.lr, corpus=CORPORA, mix=mix, mix_eta=args.eta,
                               eval_every=max(1, steps // 10), eval_windows=4, report_windows=0, checkpoint_every=10)
        ckpt = common.checkpoint(f"mixture-{args.base}-{args.tokens}{args.tag}-{mix}")
        details = recover(loaded, config, teacher=dense, checkpoint=ckpt)
        final = details["evals"][-1]
        reference = details["mixture"]["reference"] if details["mixture"] else None
        result[mix] = {"perplexity": common.perplexities(loaded, EVAL),
                       "val_loss": {c: final[f"val_loss/{c}"] for c in CORPORA},
                       "mixture": details["mixture"], "evals": details["evals"],
                       "train_seconds": details["recover_seconds"], "tokens_per_second": details["tokens_per_second"]}
        if reference:
            result["dense_val_loss"] = dict(zip(CORPORA, reference, strict=True))
        print(mix, {c: round(v, 3) for c, v in result[mix]["val_loss"].items()},
              {c: round(v, 1) for c, v in result[mix]["perplexity"].items()}, flush=True)
    ref = result["dense_val_loss"]
    for mix in ("fixed", "dynamic"):
        excess = {c: result[mix]["val_loss"][c] - ref[c] for c in CORPORA}
        result[mix]["excess"] = excess
        result[mix]["worst_excess"] = max(excess.values())
    common.write_result(f"mixture-{args.base}-{args.tokens}{args.tag}", result)
    print("worst excess loss over dense: fixed", round(result["fixed"]["worst_excess"], 4), "dynamic",
          round(result["dynamic"]["worst_excess"], 4))


if __name__ == "__main__":
    main()
