"""Joint pruning with LoRA (ATP / SPLoRA, prunekit.recover.joint) vs FLAP + LoRA at the same budget (issue 13).

SmolLM2-135M, 30% of the non-embedding parameters removed, the same T training tokens and recovery settings
(LoRA rank `--rank` on every Linear of the blocks, `--loss` from the dense model, `--lr`, `--schedule`, seed
`--seed`, wiki's training part) in both:
- joint: gates on KV-head groups and GLU neurons (`--gate`, `--temperature`, `--init-logit`) trained with the
  adapters under the budget penalty (`--penalty`, `--penalty-weight`, `--ramp`, logits at `--mask-lr`) for T
  tokens; then the lowest-logit units are removed to the budget and the adapters merged;
- flap30: FLAP + bias compensation, angular allocation (_common.BASES["flap30"], the cached base model), then
  LoRA for T tokens (prunekit.recover).
Reports the achieved ratio (counted on the model), perplexity on the evaluation split of wiki, news and
shakespeare (16 / 7 / 8 windows of 1024 tokens; flap30 also before its training), training and wall time, the
loss curves and joint's penalty curve.

  python bench/recover/joint.py --tokens 60000 [--variants joint flap30] [--penalty lagrangian]
  python bench/recover/joint.py --smoke   # tiny random Llama, byte tokens; writes to a temporary folder
Writes bench/results/recover-joint-<variant>-<tokens>.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common as common
import torch

from prunekit.recover.config import LOSSES
from prunekit.train.config import SCHEDULES

VARIANTS = ["joint", "flap30"]
RATIO = common.BASES["flap30"]["ratio"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--tokens", type=int, default=60_000, help="T: training tokens of every variant")
    parser.add_argument("--loss", default="fkl", choices=LOSSES)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--schedule", default="wsd", choices=SCHEDULES)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--gate", default="gumbel", choices=["gumbel", "hard-concrete"])
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--init-logit", type=float, default=3.0)
    parser.add_argument("--penalty", default="quadratic", choices=["quadratic", "lagrangian"])
    parser.add_argument("--penalty-weight", type=float, default=10.0)
    parser.add_argument("--ramp", type=float, default=0.5)
    parser.add_argument("--mask-lr", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="")
    parser.add_argument("--smoke", action="store_true", help="a tiny random model, a few steps (checks the script)")
    args = parser.parse_args()
    if args.smoke:
        args.seq_len, args.batch, args.micro_batch, args.rank = 32, 4, 2, 4
        args.tokens = min(args.tokens, 8 * 4 * 32)
    return args


def train_options(args: argparse.Namespace, corpus: str) -> dict:
    """The recovery settings both variants share (prunekit.recover.RecoverConfig fields)."""
    steps = -(-args.tokens // (args.batch * args.seq_len))
    return {"tokens": args.tokens, "lr": args.lr, "rank": args.rank, "alpha": 2.0 * args.rank,
            "schedule": args.schedule, "seq_len": args.seq_len, "batch_size": args.batch,
            "micro_batch_size": args.micro_batch, "loss": args.loss, "corpus": [corpus], "seed": args.seed,
            "eval_every": max(1, steps // 10), "eval_windows": 2 if args.smoke else 4, "checkpoint_every": 10}


def removed_ratio(dense, loaded) -> float:
    from prunekit.prune.unit_allocation import non_embedding_params

    return 1.0 - non_embedding_params(loaded) / non_embedding_params(dense)


def run_joint(dense, args, corpus: str, perplexities) -> dict:
    from prunekit.recover.joint import JointPruneConfig, prune_joint

    loaded = common.fresh_copy(dense)
    config = JointPruneConfig(ratio=RATIO, gate=args.gate, temperature=args.temperature, init_logit=args.init_logit,
                              penalty=args.penalty, penalty_weight=args.penalty_weight, ramp=args.ramp,
                              mask_lr=args.mask_lr, train=train_options(args, corpus))
    start = time.perf_counter()
    report = prune_joint(loaded, config, method="joint-lora", teacher=dense if args.loss != "ce" else None,
                         checkpoint=common.checkpoint(f"joint-joint-{args.tokens}{args.tag}"))
    wall = time.perf_counter() - start
    return {"config": {k: v for k, v in vars(config).items()}, "achieved": removed_ratio(dense, loaded),
            "achieved_reported": report["achieved"], "after": perplexities(loaded), "train_seconds":
            report["train_seconds"], "wall_seconds": wall, "tokens": report["tokens"],
            "tokens_per_second": report["tokens_per_second"], "expected_ratio": report["expected_ratio"],
            "closed_ratio": report["closed_ratio"], "layers": report["layers"], "history": report["history"],
            "evals": report["evals"], "penalty_curve": report["penalty_curve"]}


def run_flap_lora(dense, base, args, corpus: str, perplexities) -> dict:
    from prunekit.core.typed import from_dict
    from prunekit.recover import RecoverConfig
    from prunekit.recover.run import recover

    before = perplexities(base)
    config = from_dict(RecoverConfig, {**train_options(args, corpus), "report_windows": 0}, "recover")
    start = time.perf_counter()
    details = recover(base, config, teacher=dense if args.loss != "ce" else None,
                      checkpoint=common.checkpoint(f"joint-flap30-{args.tokens}{args.tag}"))
    wall = time.perf_counter() - start
    return {"config": {k: v for k, v in vars(config).items()}, "prune": common.BASES["flap30"],
            "achieved": removed_ratio(dense, base), "before": before, "after": perplexities(base),
            "train_seconds": details["recover_seconds"], "wall_seconds": wall, "tokens": details["tokens"],
            "tokens_per_second": details["tokens_per_second"], "history": details["history"],
            "evals": details["evals"]}


def smoke_setup():
    """A tiny random Llama with byte tokens, a local corpus, its FLAP base, and perplexity on that corpus."""
    from prunekit.data import calibration_windows
    from prunekit.evaluate.perplexity import PerplexityProtocol, perplexity
    from prunekit.prune.llm_structured import LLMStructuredConfig, prune_llm_structured
    from prunekit.testing import CharTokenizer, tiny_loaded

    folder = Path(tempfile.mkdtemp(prefix="joint-smoke-"))
    common.RESULTS = folder
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(f"the {w} sat on the mat and the {w} ran home {i}." for i in range(400)
                                  for w in ("cat", "dog", "fox")))
    dense = tiny_loaded("llama", layers=2, vocab=256)
    dense.tokenizer = CharTokenizer(256)
    base = common.fresh_copy(dense)
    options = {k: v for k, v in common.BASES["flap30"].items() if k != "method"}
    prune_llm_structured(base, LLMStructuredConfig(**options), method="llm-structured",
                         windows=calibration_windows(dense.tokenizer, str(corpus), 4, 32))

    def perplexities(loaded):
        return {"corpus": perplexity(loaded.model, loaded.tokenizer, PerplexityProtocol(str(corpus), 64, 2))}
    return dense, base, str(corpus), perplexities, {"corpus": perplexities(dense)["corpus"]}


def main() -> None:
    args = arguments()
    torch.set_num_threads(args.threads)
    if args.smoke:
        dense, base, corpus, perplexities, dense_ppl = smoke_setup()
    else:
        from prunekit.models import load

        dense = load("smollm2-135m")
        base, corpus, perplexities = None, "wiki", common.perplexities
        dense_ppl = common.dense_perplexities(dense)
    for variant in args.variants:
        if variant == "joint":
            result = run_joint(dense, args, corpus, perplexities)
        else:
            base = base if base is not None else common.pruned_base(dense, "flap30")
            result = run_flap_lora(dense, base, args, corpus, perplexities)
        path = common.write_result(f"joint-{variant}-{args.tokens}{args.tag}", {
            "variant": variant, "ratio": RATIO, "loss": args.loss, "dense": dense_ppl, **result})
        after = ", ".join(f"{c} {v:.1f} (dense {dense_ppl[c]:.1f})" for c, v in result["after"].items())
        print(f"{variant}: removed {result['achieved']:.4f} of {RATIO}; {after}; {result['tokens']} tokens, "
              f"{result['train_seconds']:.0f} s training, {result['wall_seconds']:.0f} s wall -> {path}", flush=True)
        if args.smoke and variant == "joint":  # flap30's count includes the biases its compensation adds
            assert abs(result["achieved"] - RATIO) < 0.01, result["achieved"]


if __name__ == "__main__":
    main()
