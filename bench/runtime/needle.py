"""Dense needle (passkey) accuracy of SmolLM2-135M-Instruct by prompt length and template; picks the needle length
for the press benchmarks: the longest length where dense scores >= 80%, capped at 2048 (the benchmarks' ~2k).

Samples: `--per-depth` prompts at each of the depths 0.1/0.3/0.5/0.7/0.9 (seed 0, filler from the wiki evaluation
part, see prunekit.evaluate.needle), greedy answers of <= 8 new tokens, exact match of the first number.
Each invocation measures the given (template, length) cells and merges them into bench/results/runtime-needle.json,
so long lengths can be run separately within the ~10 min budget of one run:

  python bench/runtime/needle.py --lengths 512 1024 --per-depth 20
  python bench/runtime/needle.py --lengths 2048 --per-depth 10
  python bench/runtime/needle.py --lengths 1024 --per-depth 4 --templates plain chat_plain
"""

from __future__ import annotations

import argparse
import time

from _common import load_model, markdown_table, needle_set, read_result, setup, write_result

from prunekit.evaluate.needle import evaluate_needle, needle_samples

PASS = 0.8
BENCH_CAP = 2048  # the press benchmarks run at ~2k tokens, or shorter if dense fails there


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--per-depth", type=int, default=20)
    parser.add_argument("--templates", nargs="+", default=["chat"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup(1)
    lm = load_model()
    previous = read_result("needle") or {}
    cells = {(c["template"], c["length"]): c for c in previous.get("cells", [])}
    for template in args.templates:
        for length in args.lengths:
            if template == "chat":
                samples = needle_set(lm.tokenizer, length, args.per_depth, args.seed)
            else:
                samples = needle_samples(lm.tokenizer, [length], [0.1, 0.3, 0.5, 0.7, 0.9], args.per_depth,
                                         seed=args.seed, template=template)
            start = time.perf_counter()
            result = evaluate_needle(lm.model, lm.tokenizer, samples)
            seconds = time.perf_counter() - start
            cells[(template, length)] = {
                "template": template, "length": length, "samples": len(samples), "seed": args.seed,
                "accuracy": result.accuracy, "by_depth": {str(k): v for k, v in result.by_depth().items()},
                "seconds": round(seconds, 1), "wrong_outputs": [o for o, ok in zip(result.outputs, result.correct,
                                                                                    strict=True) if not ok][:10],
            }
            print(f"{template} {length}: {result.accuracy:.3f} ({len(samples)} samples, {seconds:.0f} s)", flush=True)
    rows = sorted(cells.values(), key=lambda c: (c["template"], c["length"]))
    passing = [c["length"] for c in rows if c["template"] == "chat" and c["accuracy"] >= PASS and c["samples"] >= 20]
    longest = max(passing) if passing else None
    chosen = min(longest, BENCH_CAP) if longest else None
    table = markdown_table(["template", "length", "samples", "accuracy", *[f"d={d}" for d in (0.1, 0.3, 0.5, 0.7,
                                                                                             0.9)]],
                           [[c["template"], c["length"], c["samples"], c["accuracy"],
                             *[c["by_depth"].get(str(d), float("nan")) for d in (0.1, 0.3, 0.5, 0.7, 0.9)]]
                            for c in rows])
    print(table)
    print(f"longest length with chat accuracy >= {PASS} (>= 20 samples): {longest}; benchmark length: {chosen}")
    write_result("needle", {"pass_threshold": PASS, "longest_passing": longest, "chosen_length": chosen,
                            "bench_cap": BENCH_CAP, "cells": rows, "table": table})


if __name__ == "__main__":
    main()
