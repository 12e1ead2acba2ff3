"""Long-context QA under the inference-time presses: SQuAD v1.1 dev questions whose gold paragraph sits among
other paragraphs of the same article, answered by SmolLM2-135M-Instruct, dense vs each press.

Setup (seeded): ``random.Random(seed).sample`` of ``--n`` dev questions; context = the gold paragraph plus
``--n-other`` other paragraphs of its article in shuffled order (bench/context/_common.multi_paragraph_context);
reader prompt, greedy decoding (16 new tokens, first line) and SQuAD token F1 / EM exactly as
bench/context/squad.py's ``--prompt chat``. Each configuration wraps ``model.generate`` in ``with press(model)``.
Presses: SnapKV, StreamingLLM and key norm at compression ratio 0.5; LazyLLM {8: 0.4, 18: 0.08} (window 1, pool 15,
last 32 kept); HiP defaults; DELTA with a budget of a quarter of the shortest prompt. The SQuAD data come from the
bigbench sdist (see bench/context/_common.py for how to get it).

  python bench/context/longqa.py [--n 40] [--n-other 6] [--seed 0]
Writes bench/results/runtime-longqa.json.
"""

from __future__ import annotations

import argparse
import random
import time

from _common import (
    RESULTS,
    exact_match,
    markdown_table,
    multi_paragraph_context,
    setup,
    squad_articles,
    squad_f1,
    squad_questions,
)
from squad import answer

from prunekit.evaluate.records import write_record
from prunekit.models import load
from prunekit.runtime import make_press


def presses(delta_budget: int) -> dict:
    lazy = {"schedule": {8: 0.4, 18: 0.08}, "window": 1, "pool": 15, "keep_last": 32}
    return {"dense": None, "snapkv r=0.5": ("snapkv", {"ratio": 0.5}),
            "streamingllm r=0.5": ("streamingllm", {"ratio": 0.5}),
            "knorm r=0.5": ("knorm", {"ratio": 0.5}), "lazyllm": ("lazyllm", lazy),
            "hip": ("hip", {}), f"delta budget {delta_budget}": ("delta", {"budget": delta_budget})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--n-other", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup(2)
    start = time.perf_counter()
    articles = squad_articles()
    rng = random.Random(args.seed)
    sample = rng.sample(squad_questions(articles), args.n)
    items = [multi_paragraph_context(articles, a, p, qa, args.n_other, rng) for a, p, qa in sample]
    lm = load("smollm2-135m")
    lengths = [len(lm.tokenizer(item["context"]).input_ids) for item in items]
    configs = presses(min(lengths) // 4)
    scores: dict[str, dict[str, list[float]]] = {}
    for name, spec in configs.items():
        f1, em = [], []
        for item in items:
            if spec is None:
                prediction = answer(lm, item["context"], item["question"])
            else:
                with make_press(spec[0], **spec[1])(lm.model):
                    prediction = answer(lm, item["context"], item["question"])
            f1.append(squad_f1(prediction, item["answers"]))
            em.append(exact_match(prediction, item["answers"]))
        scores[name] = {"f1": f1, "em": em}
        print(f"{name}: F1 {100 * sum(f1) / len(f1):.1f} EM {100 * sum(em) / len(em):.1f}", flush=True)
    dense_f1 = sum(scores["dense"]["f1"]) / args.n
    rows = [[name, 100 * sum(s["f1"]) / args.n, 100 * sum(s["em"]) / args.n,
             100 * (sum(s["f1"]) / args.n - dense_f1)] for name, s in scores.items()]
    table = markdown_table(["config", "F1", "EM", "F1 - dense"], rows)
    print(f"{args.n} questions, context {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f})")
    print(table)
    write_record(RESULTS / "runtime-longqa.json", {
        "n": args.n, "n_other": args.n_other, "seed": args.seed, "context_tokens": lengths, "scores": scores,
        "table": table, "seconds": round(time.perf_counter() - start)})

if __name__ == "__main__":
    main()
