"""Rate accuracy of the context pruners: |kept/original - rate| for kept fractions ("rates") 0.2..0.8 on real
inputs over 200 tokens (acceptance: <= 0.02 for every pruner).

"rate" here and in the results is the KEPT fraction; the budget is ``Budget(ratio=1 - rate)`` (ratio: the
removed fraction, see ``Budget.keeping``), whose target ``round(rate * n)`` is the old ``Budget(rate=rate)``'s.

- sentences (MiniLM scorer, MiniLM WordPiece counting) and tokens (SmolLM2-135M self-information,
  SmolLM2 counting): SQuAD v1.1 dev paragraphs of one article concatenated until the text has over 200
  tokens in both tokenizers; the query is a question about the first paragraph.
- code (LongCodeZip on SmolLM2-135M, SmolLM2 counting): stdlib modules of 400..2,000 tokens, query
  "What does `f` do and what does it return?" for a documented function of the module.

The LM scores of an input do not depend on the rate, so each LM-scored input is scored once and the
scores are reused across rates (in-memory caches around ``ami`` / ``line_scores`` /
``self_information``); everything else, including the final re-count, runs per rate.
``ratio`` (in the results) is the pruner's ``Pruned.kept_fraction``; ``recount`` re-encodes the output text with
the same counter (for tokens it differs from ``ratio`` where kept pieces of split words meet, see tokens.py).

  python bench/context/rate.py [--inputs 20] [--seed 0] [--only sentences tokens code]
(with --only, the other pruners' rows are kept from the previous bench/results/context-rate.json)
Writes bench/results/context-rate.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from _common import (
    RESULTS,
    markdown_table,
    multi_paragraph_context,
    pick_code_cases,
    setup,
    squad_articles,
    squad_questions,
    write_result,
)

from prunekit.context import Budget, LongCodeZipPruner, SentencePruner, TokenCounter, TokenPruner
from prunekit.models import load

RATES = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


class CachedLongCodeZip(LongCodeZipPruner):
    """LongCodeZip with its LM scores memoised per (query, context) and per line list."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ami: dict[tuple[str, str], float] = {}
        self._lines: dict[tuple[str, ...], list[float]] = {}

    def ami(self, query, contexts):
        missing = [c for c in dict.fromkeys(contexts) if (query, c) not in self._ami]
        if missing:
            self._ami.update({(query, c): v for c, v in zip(missing, super().ami(query, missing), strict=True)})
        return [self._ami[(query, c)] for c in contexts]

    def line_scores(self, lines):
        key = tuple(lines)
        if key not in self._lines:
            self._lines[key] = super().line_scores(lines)
        return self._lines[key]


class CachedTokenPruner(TokenPruner):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._info: dict[str, tuple] = {}

    def self_information(self, text):
        if text not in self._info:
            self._info[text] = super().self_information(text)
        return self._info[text]


def prose_inputs(n: int, seed: int, counters: list) -> list[tuple[str, str]]:
    """(query, text): paragraphs of one article, concatenated until over 200 tokens in every counter."""
    articles = squad_articles()
    questions = squad_questions(articles)
    rng = random.Random(seed)
    out = []
    for a, p, qa in rng.sample(questions, n):
        item = multi_paragraph_context(articles, a, p, qa, 0, rng)
        text, nxt = item["context"], p
        while min(c(text) for c in counters) <= 200:
            nxt = (nxt + 1) % len(articles[a]["paragraphs"])
            text += "\n\n" + articles[a]["paragraphs"][nxt]["context"]
        out.append((qa["question"], text))
    return out


def measure(name: str, pruner, inputs: list[tuple[str, str]], recount) -> dict:
    rows = []
    start = time.perf_counter()
    for i, (query, text) in enumerate(inputs):
        for rate in RATES:
            result = pruner.prune(query, text, Budget.keeping(rate))
            rows.append({"input": i, "rate": rate, "original_tokens": result.original_tokens,
                         "kept_tokens": result.kept_tokens, "ratio": result.kept_fraction,
                         "recount": recount(result.text) / result.original_tokens})
        print(f"  {name} {i + 1}/{len(inputs)} ({time.perf_counter() - start:.0f}s)", flush=True)
    errors = [abs(r["ratio"] - r["rate"]) for r in rows]
    recount_errors = [abs(r["recount"] - r["rate"]) for r in rows]
    per_rate = {rate: max(abs(r["ratio"] - rate) for r in rows if r["rate"] == rate) for rate in RATES}
    return {
        "pruner": name, "inputs": len(inputs), "cases": len(rows),
        "min_tokens": min(r["original_tokens"] for r in rows), "max_tokens": max(r["original_tokens"] for r in rows),
        "max_abs_error": max(errors), "mean_abs_error": sum(errors) / len(errors),
        "within_2pct": sum(e <= 0.02 for e in errors) / len(errors),
        "max_abs_error_recount": max(recount_errors), "max_abs_error_by_rate": per_rate,
        "seconds": time.perf_counter() - start, "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", default=["sentences", "tokens", "code"])
    args = parser.parse_args()
    setup()
    lm = load("smollm2-135m")
    lm_counter = TokenCounter(lm.tokenizer)
    sentences = SentencePruner()
    needs_prose = {"sentences", "tokens"} & set(args.only)  # SQuAD is only needed for the prose pruners
    prose = prose_inputs(args.inputs, args.seed, [sentences.counter, lm_counter]) if needs_prose else []
    results = []
    if "sentences" in args.only:
        results.append(measure("sentences", sentences, prose, sentences.counter))
    if "tokens" in args.only:
        results.append(measure("tokens", CachedTokenPruner(lm.model, lm.tokenizer), prose, lm_counter))
    if "code" in args.only:
        cases = pick_code_cases(lm_counter, args.inputs, 400, 2000, args.seed)
        code_inputs = [(c["question"], c["source"]) for c in cases]
        results.append(measure("code", CachedLongCodeZip(lm.model, lm.tokenizer), code_inputs, lm_counter))
    previous = RESULTS / "context-rate.json"
    if set(args.only) != {"sentences", "tokens", "code"} and previous.exists():  # keep the other pruners' rows
        old = {r["pruner"]: r for r in json.loads(previous.read_text())["details"]}
        fresh = {r["pruner"]: r for r in results}
        results = [fresh.get(name) or old[name] for name in ("sentences", "tokens", "code")
                   if name in fresh or name in old]
    headers = ["pruner", "inputs x rates", "tokens (min-max)", "max abs(ratio - rate)", "mean abs err",
               "share within 0.02", "max abs err (re-encoded output)"]
    table = markdown_table(headers, [
        [r["pruner"], f"{r['inputs']} x {len(RATES)}", f"{r['min_tokens']}-{r['max_tokens']}", r["max_abs_error"],
         r["mean_abs_error"], r["within_2pct"], r["max_abs_error_recount"]] for r in results])
    print(table)
    path = write_result("rate", {"rates": RATES, "seed": args.seed, "summary": [
        {k: v for k, v in r.items() if k != "rows"} for r in results], "details": results, "table": table})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
