"""Throughput of the sentence pruner (Provence-style, MiniLM scorer) on CPU: original tokens per second of
``SentencePruner.prune`` keeping half the tokens (``--rate 0.5``, the kept fraction, i.e. ``Budget(ratio=0.5)``)
over the SQuAD v1.1 dev contexts of ``squad.py`` (same seeded sample: gold paragraph + ``--n-other``
paragraphs). Models are loaded once and one warm-up call is made; timing is
``time.perf_counter`` around the whole loop, repeated ``--repeats`` times (the best and the median are
reported). Two countings: the reader's SmolLM2 tokenizer (as in squad.py) and the default MiniLM one.
Run on a quiet machine; the timing is meaningless while other jobs share the cores.

  python bench/context/throughput.py [--n 200] [--threads 1] [--repeats 3]
Writes bench/results/context-throughput.json.
"""

from __future__ import annotations

import argparse
import random
import statistics

from _common import markdown_table, multi_paragraph_context, setup, squad_articles, squad_questions, write_result
from squad import throughput

from prunekit.context import MiniLMScorer, SentencePruner, TokenCounter
from prunekit.models import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--n-other", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.5, help="fraction of the tokens KEPT (the budget's ratio, "
                        "the removed fraction, is 1 - rate); written as 'rate'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    setup(args.threads)
    articles = squad_articles()
    rng = random.Random(args.seed)
    sample = rng.sample(squad_questions(articles), args.n)
    items = [multi_paragraph_context(articles, a, p, qa, args.n_other, rng) for a, p, qa in sample]
    minilm = MiniLMScorer()
    pruners = {"reader_tokenizer_counting": SentencePruner(minilm, TokenCounter(load("smollm2-135m").tokenizer)),
               "minilm_counting_default": SentencePruner(minilm)}
    results = {}
    for name, pruner in pruners.items():
        runs = [throughput(pruner, items, args.rate) for _ in range(args.repeats)]
        speeds = [r["tokens_per_second"] for r in runs]
        results[name] = {"tokens": runs[0]["tokens"], "tokens_per_second_best": max(speeds),
                         "tokens_per_second_median": statistics.median(speeds),
                         "ms_per_context_median": statistics.median(r["ms_per_context"] for r in runs), "runs": runs}
        print(f"{name}: {results[name]['tokens_per_second_median']:.0f} tokens/s (median of {args.repeats})",
              flush=True)
    table = markdown_table(
        ["counting", "contexts", "threads", "tokens/s (median)", "tokens/s (best)", "ms/context (median)"],
        [[k, args.n, args.threads, f"{v['tokens_per_second_median']:.0f}", f"{v['tokens_per_second_best']:.0f}",
          f"{v['ms_per_context_median']:.0f}"] for k, v in results.items()])
    print(table)
    path = write_result("throughput", {"seed": args.seed, "n": args.n, "n_other": args.n_other, "rate": args.rate,
                                       "repeats": args.repeats, "results": results, "table": table})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
