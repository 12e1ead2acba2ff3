"""Recovery of pruned SmolLM2-135M: LoRA with cross-entropy vs distillation from the dense model (issue 13).

For each base (FLAP + bias compensation, angular allocation, 30% of the non-embedding parameters; depth pruning
of 8 of 30 blocks; SparseGPT 2:4) and each loss, trains LoRA adapters (rank 16, every Linear of the blocks) on
`--tokens` tokens of wiki's training part and reports perplexity on the evaluation split of wiki, news and
shakespeare (16 / 7 / 8 windows of 1024 tokens) before and after, the log-perplexity gap closed, tokens/s, wall
time, peak memory, and that every zero of the 2:4 model survived.

  python bench/recover/heal.py --base flap30 depth8 sgpt24 --loss ce fkl --tokens 200000 [--lr 1e-3]
Writes bench/results/recover-heal-<base>-<loss>-<tokens>.json (and a loss-curve PNG beside it).
"""

from __future__ import annotations

import argparse
import time

import _common as common
import torch

from prunekit.recover.config import LOSSES, METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", nargs="+", default=list(common.BASES), choices=list(common.BASES))
    parser.add_argument("--loss", nargs="+", default=["ce", "fkl"], choices=LOSSES)
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--method", default="lora", choices=METHODS)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--distill", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--corpus", nargs="+", default=["wiki"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from prunekit.models import load
    from prunekit.recover import RecoverConfig
    from prunekit.recover.run import recover

    dense = load("smollm2-135m")
    dense_ppl = common.dense_perplexities(dense)
    for base in args.base:
        for loss in args.loss:
            loaded = common.pruned_base(dense, base)
            before = common.perplexities(loaded)
            zeros = sum(int((p == 0).sum()) for n, p in loaded.model.named_parameters() if "layers" in n)
            config = RecoverConfig(method=args.method, tokens=args.tokens, lr=args.lr, rank=args.rank,
                                   alpha=2.0 * args.rank,
                                   seq_len=args.seq_len, batch_size=args.batch, micro_batch_size=args.micro_batch,
                                   loss=loss, distill=args.distill, temperature=args.temperature,
                                   corpus=args.corpus, report_windows=0,
                                   eval_every=max(1, -(-args.tokens // (args.batch * args.seq_len)) // 10),
                                   eval_windows=4, checkpoint_every=10)
            start = time.perf_counter()
            ckpt = common.checkpoint(f"heal-{base}-{loss}-{args.tokens}{args.tag}")
            details = recover(loaded, config, teacher=dense if loss != "ce" else None, checkpoint=ckpt)
            wall = time.perf_counter() - start
            after = common.perplexities(loaded)
            zeros_after = sum(int((p == 0).sum()) for n, p in loaded.model.named_parameters() if "layers" in n)
            closed = {c: common.gap_closed(dense_ppl[c], before[c], after[c]) for c in after}
            name = f"heal-{base}-{loss}-{args.tokens}{args.tag}"
            common.write_result(name, {
                "base": base, "prune": common.BASES[base], "loss": loss, "distill": args.distill,
                "config": {k: v for k, v in vars(config).items()}, "dense": dense_ppl, "before": before,
                "after": after, "gap_closed": closed, "tokens": details["tokens"],
                "train_seconds": details["recover_seconds"], "wall_seconds": wall,
                "tokens_per_second": details["tokens_per_second"], "peak_rss_bytes": details["peak_rss_bytes"],
                "zeros_before": zeros, "zeros_after": zeros_after, "masked_layers": details["masked_layers"],
                "history": details["history"], "evals": details["evals"]})
            print(f"{base} {loss}: wiki {before['wiki']:.1f} -> {after['wiki']:.1f} (dense {dense_ppl['wiki']:.1f}, "
                  f"gap closed {closed['wiki']:.2f}); news {before['news']:.1f} -> {after['news']:.1f}; "
                  f"shakespeare {before['shakespeare']:.1f} -> {after['shakespeare']:.1f}; "
                  f"{details['tokens_per_second']:.0f} tok/s, {wall:.0f} s, zeros {zeros} -> {zeros_after}",
                  flush=True)


if __name__ == "__main__":
    main()
