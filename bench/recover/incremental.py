"""Incremental prune-train (Adapt-Accel) vs one-shot pruning + the same training tokens on SmolLM2-135M (issue 13).

Every variant removes `--ratio` (default 30%) of the non-embedding parameters and trains with the same recovery
settings (LoRA rank `--rank` on every Linear of the blocks, `--loss` from the dense model, `--lr`, `--schedule`,
seed `--seed`) on wiki's training part, for the same number of tokens T in all:
- incremental: `--cycles` cycles of ratio / cycles each (Taylor scores, per-block sparsity from block importance
  with A = `--amplitude`), T / cycles tokens of training after each (prunekit.recover.incremental);
- oneshot: the same pruner, its `--cycles` steps back to back with no training between them, then T tokens;
- flap30: FLAP + bias compensation, angular allocation (_common.BASES["flap30"]; only with --ratio 0.3), then T.
incremental and oneshot score on the same `--calib-samples` x `--calib-len` wiki windows (default 16 x 256: a
Taylor backward and a block-importance forward per pruning step); flap30 is the cached base calibrated on 32 x 512
(its pruning time is not measured). Reports perplexity on the evaluation split of wiki, news and shakespeare
(16 / 7 / 8 windows of 1024 tokens) after training (and before it for the one-shot variants), the pruning and
training time, and for incremental every cycle (parameters, achieved ratio, training tokens and loss).
T is rounded to whole optimizer steps per cycle, so every variant trains on exactly the same number of tokens.

  python bench/recover/incremental.py --tokens 60000 [--variants incremental oneshot flap30]
  python bench/recover/incremental.py --smoke   # tiny random Llama, byte tokens; writes to a temporary folder
Writes bench/results/recover-incremental-<variant>-<tokens>.json.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import _common as common
import torch

from prunekit.recover.config import LOSSES
from prunekit.train.config import SCHEDULES

VARIANTS = ["incremental", "oneshot", "flap30"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--tokens", type=int, default=60_000, help="T: training tokens of every variant")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--amplitude", type=float, default=0.02)
    parser.add_argument("--loss", default="fkl", choices=LOSSES)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--schedule", default="wsd", choices=SCHEDULES)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--calib-len", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="")
    parser.add_argument("--smoke", action="store_true", help="a tiny random model, a few steps (checks the script)")
    args = parser.parse_args()
    if args.smoke:
        args.seq_len, args.batch, args.micro_batch, args.calib_samples, args.calib_len = 32, 4, 2, 4, 32
        args.tokens = min(args.tokens, args.cycles * 128)
    return args


def setup(args: argparse.Namespace):
    """(dense model, perplexity function, calibration context)."""
    from prunekit.data import calibration_windows

    if args.smoke:
        from prunekit.evaluate.perplexity import PerplexityProtocol, perplexity
        from prunekit.testing import CharTokenizer, tiny_loaded

        dense = tiny_loaded("llama", layers=2, vocab=256)
        dense.tokenizer = CharTokenizer(256)

        def perplexities(loaded):
            return {c: perplexity(loaded.model, loaded.tokenizer, PerplexityProtocol(c, 64, 2)) for c in common.EVAL}
    else:
        from prunekit.models import load

        dense = load("smollm2-135m")
        perplexities = common.perplexities
    windows = calibration_windows(dense.tokenizer, "wiki", args.calib_samples, args.calib_len, args.seed)
    from prunekit.prune.inputs import PruneInputs

    return dense, perplexities, PruneInputs(calibration=lambda _tokenizer: windows, seed=args.seed, dense=dense)


def run_variant(variant: str, dense, perplexities, inputs, args, opts: dict, per_cycle: int) -> dict:
    """Prune and train one variant; returns its result row."""
    from prunekit.core.typed import from_dict
    from prunekit.prune.unit_allocation import non_embedding_params
    from prunekit.recover import RecoverConfig
    from prunekit.recover.incremental import IncrementalPruneConfig, prune_incremental
    from prunekit.recover.run import recover

    total = per_cycle * args.cycles
    teacher = dense if args.loss != "ce" else None
    row: dict = {"variant": variant}
    start = time.perf_counter()
    if variant == "incremental":
        config = IncrementalPruneConfig(ratio=args.ratio, step_ratio=args.ratio / args.cycles,
                                        amplitude=args.amplitude, tokens=per_cycle, recover=opts)
        report = prune_incremental(loaded := common.fresh_copy(dense), config, inputs, method="incremental")
        row.update(prune_seconds=report["prune_seconds"], train_seconds=report["train_seconds"],
                   tokens=report["tokens"], per_cycle=cycle_rows(report))
    else:
        if variant == "oneshot":
            config = IncrementalPruneConfig(ratio=args.ratio, step_ratio=args.ratio, substeps=args.cycles,
                                            amplitude=args.amplitude, tokens=0)
            report = prune_incremental(loaded := common.fresh_copy(dense), config, inputs, method="incremental")
        else:
            report, loaded = flap_base(dense, inputs, args)
        prune_seconds = time.perf_counter() - start
        row["before"] = perplexities(loaded)
        details = recover(loaded, from_dict(RecoverConfig, {**opts, "tokens": total}, "recover"), teacher=teacher)
        row.update(prune_seconds=prune_seconds, train_seconds=details["recover_seconds"], tokens=details["tokens"],
                   loss_first=details["history"][0]["loss"], loss_last=details["history"][-1]["loss"],
                   evals=details["evals"])
    row["wall_seconds"] = row["prune_seconds"] + row["train_seconds"]  # evaluation excluded
    row.update(achieved=1 - non_embedding_params(loaded) / non_embedding_params(dense),
               params_after=sum(p.numel() for p in loaded.model.parameters()), prune_cached=not report,
               block_sparsity=report.get("block_sparsity"), block_actual=report.get("block_actual"))
    row["after"] = perplexities(loaded)
    return row


def flap_base(dense, inputs, args):
    """(report, model) of FLAP 30%: the cached SmolLM2 base of heal.py (report {}: its pruning time is not
    measured here), or pruned here for --smoke."""
    from prunekit.prune.llm_structured import LLMStructuredConfig, prune_llm_structured

    options = {k: v for k, v in common.BASES["flap30"].items() if k != "method"}
    if args.ratio != options["ratio"]:
        raise SystemExit(f"flap30 removes 30%; run it with --ratio 0.3 (got {args.ratio})")
    if not args.smoke:
        return {}, common.pruned_base(dense, "flap30")
    loaded = common.fresh_copy(dense)
    return prune_llm_structured(loaded, LLMStructuredConfig(**options), inputs, method="llm-structured"), loaded


def cycle_rows(report: dict) -> list[dict]:
    rows = []
    for c in report["cycles"]:
        train = c.get("train", {})
        removed: dict[str, int] = {}
        for step in c["steps"]:
            for kind, n in step["removed"].items():
                removed[kind] = removed.get(kind, 0) + n
        rows.append({"cycle": c["cycle"], "target": c["target"], "achieved": c["achieved"], "params": c["params"],
                     "removed": removed, "tokens": train.get("tokens", 0), "loss_first": train.get("loss_first"),
                     "loss_last": train.get("loss_last"), "evals": train.get("evals", []),
                     "block_sparsity": c["steps"][-1]["block_sparsity"]})
    return rows


def main() -> None:
    args = arguments()
    torch.set_num_threads(args.threads)
    if args.smoke:
        common.RESULTS = Path(tempfile.mkdtemp(prefix="prunekit-bench-smoke-"))
    dense, perplexities, inputs = setup(args)
    dense_ppl = perplexities(dense) if args.smoke else common.dense_perplexities(dense)
    per_step = args.batch * args.seq_len
    per_cycle = max(1, round(args.tokens / args.cycles / per_step)) * per_step  # equal totals in every variant
    opts = {"lr": args.lr, "rank": args.rank, "alpha": 2.0 * args.rank, "seq_len": args.seq_len,
            "batch_size": args.batch, "micro_batch_size": args.micro_batch, "loss": args.loss,
            "schedule": args.schedule, "corpus": ["wiki"], "report_windows": 0, "eval_windows": 4,
            "checkpoint_every": 0, "seed": args.seed}
    rows = []
    for variant in args.variants:
        row = run_variant(variant, dense, perplexities, inputs, args, opts, per_cycle)
        row["gap_to_dense"] = {c: math.log(row["after"][c]) - math.log(dense_ppl[c]) for c in row["after"]}
        if "before" in row:
            row["gap_closed"] = {c: common.gap_closed(dense_ppl[c], row["before"][c], row["after"][c])
                                 for c in row["after"]}
        path = common.write_result(f"incremental-{variant}-{args.tokens}{args.tag}", {
            "ratio": args.ratio, "cycles": args.cycles, "amplitude": args.amplitude, "tokens_requested": args.tokens,
            "calibration": [args.calib_samples, args.calib_len], "recover": opts, "smoke": args.smoke,
            "dense": dense_ppl, **row})
        rows.append(row)
        after = row["after"]
        print(f"{variant}: wiki {after['wiki']:.2f}, news {after['news']:.2f}, shakespeare "
              f"{after['shakespeare']:.2f} (dense {dense_ppl['wiki']:.2f} / {dense_ppl['news']:.2f} / "
              f"{dense_ppl['shakespeare']:.2f}); achieved {row['achieved']:.4f}, {row['tokens']} tokens, prune "
              f"{row['prune_seconds']:.0f} s + train {row['train_seconds']:.0f} s -> {path}", flush=True)
    if len(rows) > 1:
        best = min(rows, key=lambda r: r["after"]["wiki"])
        print(f"lowest wiki perplexity: {best['variant']} ({best['after']['wiki']:.2f})")


if __name__ == "__main__":
    main()
