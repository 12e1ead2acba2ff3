"""LongCodeZip at 3x compression on standard-library modules: is the function asked about kept?
(acceptance: >= 90% of cases keep the function's ``def`` line and most of its body).

Setup: ``--n`` modules of the CPython 3.11 standard library with ``--lo``..``--hi`` SmolLM2 tokens, chosen
with ``random.Random(seed)``, each with one documented function or method (docstring, >= 6 lines, name
defined once in the module) chosen with the same Random. Query: "What does `name` do and what does it
return?". A third of the tokens kept (``--rate 1/3``, the kept fraction, written as "rate"; the budget is
``Budget(ratio=2/3)``, ratio being the removed fraction, built by ``Budget.keeping``; each row's "ratio" is the
kept fraction ``Pruned.kept_fraction``), SmolLM2-135M as the LM and counter.

A case passes when the function's ``def`` line is in the output and at least half of its non-blank body
lines are ("most of its body"). Also reported: the ``def`` line alone, the mean kept share of the body,
whether the coarse stage selected the function's chunk and the chunk's AMI rank among the module's chunks.

  python bench/context/longcodezip.py [--n 30] [--seed 0] [--tag seed1]
A case takes 15-110 s on one CPU thread: the script stops starting cases after --max-seconds (540) and
resumes from ~/.cache/prunekit/bench/context-longcodezip[-tag].partial.jsonl when run again; it writes
bench/results/context-longcodezip[-tag].json once every case is done.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _common import CACHE, markdown_table, pick_code_cases, setup, write_result

from prunekit.context import Budget, LongCodeZipConfig, LongCodeZipPruner, TokenCounter, split_chunks
from prunekit.models import load


class RecordingLongCodeZip(LongCodeZipPruner):
    """Keeps the coarse-stage scores and selection of the last call."""

    def _coarse(self, chunk_tokens, chunk_ami, capacity):
        selected = super()._coarse(chunk_tokens, chunk_ami, capacity)
        self.last_coarse = (list(chunk_ami), selected)
        return selected


def kept_lines(source: str, spans: list[tuple[int, int]]) -> list[bool]:
    lines = source.splitlines(keepends=True)
    keep, pos = [], 0
    for line in lines:
        keep.append(any(s <= pos and pos + len(line) <= e for s, e in spans))
        pos += len(line)
    return keep


def evaluate(pruner: RecordingLongCodeZip, case: dict, rate: float) -> dict:
    source = case["source"]
    start = time.perf_counter()
    result = pruner.prune(case["question"], source, Budget.keeping(rate))
    seconds = time.perf_counter() - start
    lines = source.splitlines()
    keep = kept_lines(source, result.kept_spans)
    body = [i for i in range(case["start"] + 1, case["end"]) if lines[i].strip()]
    body_share = sum(keep[i] for i in body) / max(1, len(body))
    chunks = split_chunks(source)
    target = next(c for c, chunk in enumerate(chunks) if chunk.start <= case["start"] < chunk.end)
    ami, selected = pruner.last_coarse
    rank = 1 + sum(value > ami[target] for value in ami)
    return {"module": case["module"], "function": case["function"], "tokens": result.original_tokens,
            "ratio": result.kept_fraction, "def_kept": keep[case["start"]], "body_share": body_share,
            "kept": keep[case["start"]] and body_share >= 0.5, "chunk_selected": target in selected,
            "chunk_rank": rank, "chunks": len(chunks), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--lo", type=int, default=1500)
    parser.add_argument("--hi", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1 / 3, help="fraction of the tokens KEPT (the budget's "
                        "ratio, the removed fraction, is 1 - rate); written as 'rate'")
    parser.add_argument("--tag", default="")
    parser.add_argument("--max-seconds", type=float, default=540,
                        help="stop starting new cases after this long; rerun to resume")
    args = parser.parse_args()
    setup()
    lm = load("smollm2-135m")
    counter = TokenCounter(lm.tokenizer)
    pruner = RecordingLongCodeZip(lm.model, lm.tokenizer, config=LongCodeZipConfig())
    cases = pick_code_cases(counter, args.n, args.lo, args.hi, args.seed)
    name = "longcodezip" + (f"-{args.tag}" if args.tag else "")
    partial = CACHE / "bench" / f"context-{name}.partial.jsonl"  # resumable: one finished case per line
    key = {"seed": args.seed, "rate": args.rate, "lo": args.lo, "hi": args.hi}
    done = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            record = json.loads(line)
            if record["key"] == key:
                done[(record["row"]["module"], record["row"]["function"])] = record["row"]
    partial.parent.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    for i, case in enumerate(cases):
        if (case["module"], case["function"]) in done:
            rows.append(done[(case["module"], case["function"])])
            continue
        if time.perf_counter() - start > args.max_seconds:
            sys.exit(f"stopped after {args.max_seconds}s with {len(rows)}/{len(cases)} cases done; "
                     f"run the same command again to continue ({partial}).")
        rows.append(evaluate(pruner, case, args.rate))
        with partial.open("a") as handle:
            handle.write(json.dumps({"key": key, "row": rows[-1]}) + "\n")
        r = rows[-1]
        print(f"{i + 1}/{len(cases)} {r['module']}:{r['function']} tokens {r['tokens']} ratio {r['ratio']:.3f} "
              f"def {r['def_kept']} body {r['body_share']:.2f} coarse {r['chunk_selected']} "
              f"rank {r['chunk_rank']}/{r['chunks']} ({r['seconds']:.0f}s, total {time.perf_counter() - start:.0f}s)",
              flush=True)
    n = len(rows)
    summary = {"cases": n, "kept": sum(r["kept"] for r in rows) / n, "def_kept": sum(r["def_kept"] for r in rows) / n,
               "mean_body_share": sum(r["body_share"] for r in rows) / n,
               "coarse_selected": sum(r["chunk_selected"] for r in rows) / n,
               "rank1": sum(r["chunk_rank"] == 1 for r in rows) / n,
               "max_abs_rate_error": max(abs(r["ratio"] - args.rate) for r in rows),
               "seconds_per_case": sum(r["seconds"] for r in rows) / n,
               "tokens_per_second": sum(r["tokens"] for r in rows) / sum(r["seconds"] for r in rows)}
    config_name = "default config"
    table = markdown_table(
        ["config", "cases", "function kept (def + >=50% body)", "def line kept", "mean body share",
         "coarse selected chunk", "chunk AMI rank 1", "max abs(ratio - 1/3)", "s/case"],
        [[config_name, n, summary["kept"], summary["def_kept"], summary["mean_body_share"],
          summary["coarse_selected"], summary["rank1"], summary["max_abs_rate_error"],
          f"{summary['seconds_per_case']:.1f}"]])
    print(table)
    path = write_result(name, {"seed": args.seed, "rate": args.rate, "token_range": [args.lo, args.hi],
                               "config": config_name, "summary": summary, "rows": rows, "table": table})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
