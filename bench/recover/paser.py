"""Recovery data selection on pruned SmolLM2-135M: PASER vs random windows at the same token budget (issue 13).

The base is FLAP + bias compensation, angular allocation, 30% of the non-embedding parameters (_common.BASES).
Both runs draw the same candidate windows (--pool-factor x the windows the budget trains on) from a mixture of
--corpus (default wiki, news, shakespeare, python-stdlib, equal weights) and keep --tokens / --seq-len of them:
(a) a seeded random subset, (b) PASER (MiniLM embeddings, --clusters spectral clusters, budget by each cluster's
JSD between the pruned and the dense model, conflict filter; prunekit/recover/paser.py). Then LoRA (rank 16, every
Linear of the blocks) trains on --tokens tokens of the pool with the same seed and settings, and perplexity is
reported on the evaluation split of wiki, news and shakespeare (16 / 7 / 8 windows of 1024 tokens) before and
after, with the log-perplexity gap closed.

  python bench/recover/paser.py --tokens 40000 --pool-factor 4 [--select random paser] [--loss ce]
  python bench/recover/paser.py --smoke     # a tiny random model, seconds; writes to a temporary folder
Writes bench/results/recover-paser-<base>-<select>-<tokens>[-<loss>]<tag>.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common as common
import torch

from prunekit.recover.config import LOSSES

CORPORA = ["wiki", "news", "shakespeare", "python-stdlib"]


class _ByteTokenizer:
    """--smoke: one id per UTF-8 byte, with decode (PASER embeds the decoded windows)."""

    def __call__(self, text, add_special_tokens=False, return_attention_mask=False, **_):
        return {"input_ids": list(text.encode("utf-8"))}

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")


def smoke_models():
    """(dense, pruned, dense perplexities): a tiny random Llama and a 50% magnitude-pruned copy of it."""
    from prunekit.api import prune
    from prunekit.models import load
    from prunekit.testing import tiny_model

    dense = load(tiny_model("llama", layers=2, vocab=256, max_position_embeddings=1024))
    dense.tokenizer = _ByteTokenizer()
    pruned, _ = prune(common.fresh_copy(dense), "magnitude", ratio=0.5)
    return dense, pruned, common.perplexities(dense)


def run(args: argparse.Namespace, select: str, dense, base_model, dense_ppl: dict) -> dict:
    from prunekit.recover import RecoverConfig
    from prunekit.recover.run import recover

    loaded = common.fresh_copy(base_model)
    before = common.perplexities(loaded)
    windows = -(-args.tokens // args.seq_len)
    config = RecoverConfig(tokens=args.tokens, lr=args.lr, rank=args.rank, alpha=2.0 * args.rank,
                           seq_len=args.seq_len, batch_size=args.batch, micro_batch_size=args.micro_batch,
                           loss=args.loss, corpus=args.corpus, report_windows=0, seed=args.seed,
                           eval_every=max(1, -(-args.tokens // (args.batch * args.seq_len)) // 5), eval_windows=4,
                           checkpoint_every=10, select=select, paser_clusters=args.clusters,
                           paser_candidates=args.pool_factor * windows)
    start = time.perf_counter()
    loss = "" if args.loss == "ce" else f"-{args.loss}"
    name = f"paser-{args.base}-{select}-{args.tokens}{loss}{args.tag}"
    details = recover(loaded, config, teacher=dense, checkpoint=common.checkpoint(name))
    wall = time.perf_counter() - start
    after = common.perplexities(loaded)
    closed = {c: common.gap_closed(dense_ppl[c], before[c], after[c]) for c in after}
    path = common.write_result(name, {
        "base": args.base, "prune": common.BASES.get(args.base), "select": select, "loss": args.loss,
        "config": dict(vars(config)), "dense": dense_ppl, "before": before, "after": after, "gap_closed": closed,
        "selection": details["selection"], "tokens": details["tokens"], "train_seconds": details["recover_seconds"],
        "wall_seconds": wall, "tokens_per_second": details["tokens_per_second"],
        "peak_rss_bytes": details["peak_rss_bytes"], "history": details["history"], "evals": details["evals"]})
    selection = details["selection"]
    print(f"{select}: {selection['windows']} of {selection['candidates']} windows {selection['per_corpus']}; "
          f"wiki {before['wiki']:.1f} -> {after['wiki']:.1f} (dense {dense_ppl['wiki']:.1f}, gap closed "
          f"{closed['wiki']:.2f}); news {before['news']:.1f} -> {after['news']:.1f}; shakespeare "
          f"{before['shakespeare']:.1f} -> {after['shakespeare']:.1f}; {wall:.0f} s -> {path}", flush=True)
    return after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="flap30", choices=list(common.BASES))
    parser.add_argument("--select", nargs="+", default=["random", "paser"], choices=["random", "paser"])
    parser.add_argument("--tokens", type=int, default=40_000)
    parser.add_argument("--pool-factor", type=int, default=4, help="candidates = this x the windows trained on")
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--loss", default="ce", choices=LOSSES)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--corpus", nargs="+", default=CORPORA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="")
    parser.add_argument("--smoke", action="store_true", help="a tiny random model and a small budget (seconds)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        common.RESULTS = Path(tempfile.mkdtemp(prefix="paser-smoke-"))
        args.tokens, args.seq_len, args.batch, args.rank, args.base = 2048, 64, 4, 4, "smoke"
        common.EVAL.update({"wiki": 2, "news": 2, "shakespeare": 2})
        dense, base_model, dense_ppl = smoke_models()
    else:
        from prunekit.models import load

        dense = load("smollm2-135m")
        dense_ppl = common.dense_perplexities(dense)
        base_model = common.pruned_base(dense, args.base)
    results = {select: run(args, select, dense, base_model, dense_ppl) for select in args.select}
    if len(results) == 2:
        print("paser vs random (after): " + ", ".join(
            f"{c} {results['paser'][c]:.2f} vs {results['random'][c]:.2f}" for c in results["paser"]))


if __name__ == "__main__":
    main()
