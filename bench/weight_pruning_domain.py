"""Domain-specific weight pruning of SmolLM2-135M at 50%: D-Pruner against Wanda calibrated on either corpus alone.

Variants, all unstructured at `--sparsity` (default 0.5):
- wanda-wiki: Wanda calibrated on wiki (the general corpus);
- wanda-python: Wanda calibrated on python-stdlib (the domain corpus);
- d-pruner-lam<L>: D-Pruner (Zhang et al. 2024), general importance from the wiki calibration windows, gradients
  and empirical Fisher from python-stdlib windows, for each lam in `--lams` (its weight of the general term).
Calibration: `--samples` x `--seq-len` seeded random windows of the calibration part (32 x 512, BENCHMARKS.md's
protocol); D-Pruner's domain set: `--domain-samples` x `--domain-seq-len` windows of python-stdlib. Evaluation:
perplexity on the evaluation split of wiki (16 windows of 1024 tokens) and of python-stdlib (8 windows of 1024).

  python bench/weight_pruning_domain.py [--lams 0.1 1 10] [--threads 2]
  python bench/weight_pruning_domain.py --smoke      # a tiny random Llama, seconds; checks the script runs

Writes bench/results/weight_pruning-domain-<sparsity>.json (the --smoke run writes to a temporary folder) with the
command line and date, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from prunekit.evaluate.records import write_record  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GENERAL, DOMAIN = "wiki", "python-stdlib"


def dense_model(smoke: bool) -> Any:
    from prunekit.models import load

    if not smoke:
        return load("smollm2-135m")
    from prunekit.testing import CharTokenizer, tiny_model

    loaded = load(tiny_model("llama", vocab=256, layers=2))
    loaded.tokenizer = CharTokenizer(256)
    return loaded


def fresh_copy(loaded: Any) -> Any:
    out = copy.copy(loaded)
    out.model = copy.deepcopy(loaded.model)
    out.adapter = type(loaded.adapter)(out.model)
    return out


def variants(args: argparse.Namespace) -> list[tuple[str, str, str, dict]]:
    """(name, method, calibration corpus, options)."""
    base = {"ratio": args.sparsity}
    rows = [("wanda-wiki", "wanda", GENERAL, base), ("wanda-python", "wanda", DOMAIN, base)]
    for lam in args.lams:
        rows.append((f"d-pruner-lam{lam:g}", "d-pruner", GENERAL,
                     {**base, "domain": DOMAIN, "domain_samples": args.domain_samples,
                      "domain_seq_len": args.domain_seq_len, "lam": lam}))
    return rows


def prune(dense: Any, method: str, corpus: str, options: dict, args: argparse.Namespace) -> tuple[Any, dict]:
    from prunekit.core.typed import from_dict
    from prunekit.methods import METHODS
    from prunekit.pipeline import RunContext
    from prunekit.recipe import parse_recipe

    loaded = fresh_copy(dense)
    recipe = parse_recipe({"calibration": {"corpus": corpus, "samples": args.samples, "seq_len": args.seq_len,
                                           "seed": args.seed}})
    config = from_dict(METHODS.get(method).config, options, method)
    start = time.perf_counter()
    details = METHODS.load(method)(loaded, config, RunContext(recipe, None).inputs(), method=method)
    return loaded, {"prune_seconds": time.perf_counter() - start, "actual_sparsity": details["actual_sparsity"]}


def perplexities(loaded: Any, args: argparse.Namespace) -> dict[str, float]:
    from prunekit.evaluate.perplexity import PerplexityProtocol, perplexity

    windows = {GENERAL: args.wiki_windows, DOMAIN: args.domain_windows}
    return {corpus: perplexity(loaded.model, loaded.tokenizer, PerplexityProtocol(corpus, args.window, n))
            for corpus, n in windows.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--lams", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domain-samples", type=int, default=32)
    parser.add_argument("--domain-seq-len", type=int, default=512)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--wiki-windows", type=int, default=16)
    parser.add_argument("--domain-windows", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a tiny random Llama and small windows (seconds)")
    args = parser.parse_args()
    if args.smoke:
        args.samples, args.seq_len, args.domain_samples, args.domain_seq_len = 4, 64, 2, 64
        args.window, args.wiki_windows, args.domain_windows = 128, 2, 2
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    dense = dense_model(args.smoke)
    rows = [{"variant": "dense", "perplexity": perplexities(dense, args)}]
    print(json.dumps(rows[-1]), flush=True)
    for name, method, corpus, options in variants(args):
        loaded, timing = prune(dense, method, corpus, options, args)
        rows.append({"variant": name, "method": method, "calibration": corpus, "options": options, **timing,
                     "perplexity": perplexities(loaded, args)})
        print(json.dumps(rows[-1]), flush=True)
    folder = Path(tempfile.mkdtemp()) if args.smoke else RESULTS
    out = folder / f"weight_pruning-domain-{'smoke' if args.smoke else f'{args.sparsity:g}'}.json"
    write_record(out, {"model": "tiny random llama" if args.smoke else "smollm2-135m", "args": vars(args),
                       "rows": rows})
    print(f"\nwrote {out}\n\n| variant | calibration | ppl {GENERAL} | ppl {DOMAIN} | prune s | actual sparsity |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ppl = r["perplexity"]
        print(f"| {r['variant']} | {r.get('calibration', '-')} | {ppl[GENERAL]:.2f} | {ppl[DOMAIN]:.2f} | "
              f"{r.get('prune_seconds', 0):.1f} | {r.get('actual_sparsity', 0):.4f} |")


if __name__ == "__main__":
    main()
