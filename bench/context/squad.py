"""Sentence pruning on SQuAD v1.1 dev at 50% of tokens kept: answer-sentence retention against random and
lead baselines, reader F1 with full vs pruned context, and pruner throughput.

Setup (all seeded, stated in the JSON):
- Questions: ``random.Random(seed).sample`` of ``--n`` of the 10,565 dev questions.
- Context: the gold paragraph plus ``--n-other`` other paragraphs of the same article (drawn with the
  same Random, which then shuffles the paragraph order), joined by blank lines. The answer-bearing sentence
  is the unit of :func:`prunekit.context.split_units` that contains the first answer's ``answer_start``.
- Budget: 50% of the tokens kept (``--rate 0.5``, the kept fraction; ``Budget(ratio=0.5)``, ratio being
  the removed fraction) counted in the reader's (SmolLM2-135M) tokenizer, the same for all
  three methods, which share the pruner and differ only in the sentence scores: ours (MiniLM cosine),
  random (uniform scores, seeded per question) and lead (earlier sentences first). ``allow_partial`` is on
  (default), so each may add one truncated sentence to land on the target; a sentence counts as kept only
  when its whole span is kept.
- Reader: SmolLM2-135M-Instruct; ``--prompt chat`` (default): its chat template, one made-up demonstration
  exchange (``DEMO_*``), then the user turn
  ``"{context}\\n\\nQuestion: {question}\\nAnswer with a short span copied from the context, nothing else."``;
  ``--prompt plain``: ``"{context}\\n\\nQuestion: {question}\\nAnswer:"``; greedy,
  at most 16 new tokens, cut at the first newline; SQuAD v1.1 token F1 / EM (max over references) on the
  first ``--reader-n`` sampled questions. The F1 gap has a paired bootstrap 95% interval (2,000 draws).
- Throughput: original tokens per second of ``SentencePruner.prune`` on CPU (1 thread, models loaded
  once, one warm-up call), over the ``--n`` contexts; both with reader-tokenizer counting (as above)
  and with the default MiniLM counting.

  python bench/context/squad.py [--n 200] [--reader-n 80] [--seed 0] [--prompt chat|plain] [--no-throughput]
Writes bench/results/context-squad.json.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence

import torch
from _common import (
    exact_match,
    markdown_table,
    multi_paragraph_context,
    setup,
    squad_articles,
    squad_f1,
    squad_questions,
    write_result,
)

from prunekit.context import Budget, MiniLMScorer, SentencePruner, TokenCounter, split_units
from prunekit.models import load


class RandomScorer:
    """Uniform random sentence scores; reseeded from the query so each question is reproducible."""

    def __init__(self, seed: int):
        self.seed = seed

    def score(self, query: str, sentences: Sequence[str]) -> torch.Tensor:
        rng = random.Random(f"{self.seed}:{query}")
        return torch.tensor([rng.random() for _ in sentences])


class LeadScorer:
    """Earlier sentences score higher: keeps the first sentences of the context (lead-k)."""

    def score(self, query: str, sentences: Sequence[str]) -> torch.Tensor:
        return -torch.arange(len(sentences), dtype=torch.float32)


def covered(spans: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    return any(s <= start and end <= e for s, e in spans)


def answer_unit(context: str, start: int) -> tuple[int, int]:
    units = split_units(context)
    for unit in units:
        if unit.start <= start < unit.end:
            return unit.start, unit.end
    after = [u for u in units if u.start >= start]  # offset in whitespace between units: the next one
    return (after[0].start, after[0].end) if after else (units[-1].start, units[-1].end)


INSTRUCTION = "Answer with a short span copied from the context, nothing else."
# one made-up demonstration turn (not from SQuAD) showing the answer format
DEMO_CONTEXT = ("The Harlow Bridge crosses the river Esk. It was designed by the engineer Mary Quill and opened "
                "in 1874, after six years of work. Its central arch spans 42 metres.")
DEMO_QUESTION = "Who designed the Harlow Bridge?"
DEMO_ANSWER = "Mary Quill"


def reader_prompt(tokenizer, context: str, question: str, style: str) -> str:
    """``plain``: context, question, "Answer:"; ``chat``: the model's chat template with the instruction."""
    if style == "plain" or getattr(tokenizer, "chat_template", None) is None:
        return f"{context}\n\nQuestion: {question}\nAnswer:"
    turns = [{"role": "user", "content": f"{DEMO_CONTEXT}\n\nQuestion: {DEMO_QUESTION}\n{INSTRUCTION}"},
             {"role": "assistant", "content": DEMO_ANSWER},
             {"role": "user", "content": f"{context}\n\nQuestion: {question}\n{INSTRUCTION}"}]
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def answer(lm, context: str, question: str, style: str = "chat", max_new_tokens: int = 16) -> str:
    prompt = reader_prompt(lm.tokenizer, context, question, style)
    enc = lm.tokenizer(prompt, return_tensors="pt", add_special_tokens=style == "plain")
    out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=lm.tokenizer.eos_token_id)
    text = lm.tokenizer.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)
    return text.strip().split("\n")[0].strip()


def bootstrap_ci(diffs: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def throughput(pruner: SentencePruner, items: list[dict], rate: float) -> dict:
    """Original tokens per second of ``pruner`` keeping the fraction ``rate`` of each context."""
    budget = Budget.keeping(rate)
    pruner.prune(items[0]["question"], items[0]["context"], budget)  # warm-up
    tokens, start = 0, time.perf_counter()
    for item in items:
        tokens += pruner.prune(item["question"], item["context"], budget).original_tokens
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds,
            "ms_per_context": 1000 * seconds / len(items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--reader-n", type=int, default=80)
    parser.add_argument("--n-other", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.5, help="fraction of the tokens KEPT (the budget's ratio, "
                        "the removed fraction, is 1 - rate); written as 'rate'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reader-methods", nargs="*", default=["full", "ours", "random"])
    parser.add_argument("--prompt", choices=["chat", "plain"], default="chat", help="reader prompt style")
    parser.add_argument("--no-throughput", action="store_true",
                        help="skip the timing (bench/context/throughput.py measures it alone on a quiet machine)")
    args = parser.parse_args()
    setup()
    articles = squad_articles()
    rng = random.Random(args.seed)
    sample = rng.sample(squad_questions(articles), args.n)
    items = [multi_paragraph_context(articles, a, p, qa, args.n_other, rng) for a, p, qa in sample]
    lm = load("smollm2-135m")
    counter = TokenCounter(lm.tokenizer)
    minilm = MiniLMScorer()
    pruners = {"ours": SentencePruner(minilm, counter), "random": SentencePruner(RandomScorer(args.seed), counter),
               "lead": SentencePruner(LeadScorer(), counter)}
    budget = Budget.keeping(args.rate)

    pruned: dict[str, list] = {name: [] for name in pruners}
    retention = {}
    for name, pruner in pruners.items():
        sentence_kept = answer_kept = ratio = 0.0
        for item in items:
            result = pruner.prune(item["question"], item["context"], budget)
            pruned[name].append(result)
            sentence_kept += covered(result.kept_spans, *answer_unit(item["context"], item["answer_start"]))
            answer_kept += covered(result.kept_spans, item["answer_start"], item["answer_end"])
            ratio += result.kept_fraction  # 'mean_ratio' stays the kept fraction
        retention[name] = {"answer_sentence_kept": sentence_kept / len(items), "answer_span_kept": answer_kept
                           / len(items), "mean_ratio": ratio / len(items)}
        print(f"{name}: {retention[name]}", flush=True)
    tokens = [p.original_tokens for p in pruned["ours"]]

    speed = {}
    if not args.no_throughput:
        speed = {"reader_tokenizer_counting": throughput(pruners["ours"], items, args.rate),
                 "minilm_counting_default": throughput(SentencePruner(minilm), items, args.rate)}
        print(f"throughput: {speed}", flush=True)

    reader_items = items[: args.reader_n]
    reader: dict[str, dict] = {}
    for method in args.reader_methods:
        f1s, ems, preds, start = [], [], [], time.perf_counter()
        for i, item in enumerate(reader_items):
            context = item["context"] if method == "full" else pruned[method][i].text
            pred = answer(lm, context, item["question"], args.prompt)
            preds.append(pred)
            f1s.append(squad_f1(pred, item["answers"]))
            ems.append(exact_match(pred, item["answers"]))
        reader[method] = {"f1": 100 * sum(f1s) / len(f1s), "em": 100 * sum(ems) / len(ems), "per_question_f1": f1s,
                          "predictions": preds, "seconds": time.perf_counter() - start}
        print(f"reader {method}: F1 {reader[method]['f1']:.1f} EM {reader[method]['em']:.1f} "
              f"({reader[method]['seconds']:.0f}s)", flush=True)
    gaps = {}
    if "full" in reader:
        for method in reader:
            if method != "full":
                diffs = [100 * (a - b) for a, b in zip(reader["full"]["per_question_f1"],
                                                      reader[method]["per_question_f1"], strict=True)]
                gaps[method] = {"gap": sum(diffs) / len(diffs), "ci95": bootstrap_ci(diffs)}

    ret_table = markdown_table(
        ["method (rate 0.5)", "answer sentence kept", "answer span kept", "mean kept ratio"],
        [[name, r["answer_sentence_kept"], r["answer_span_kept"], r["mean_ratio"]] for name, r in retention.items()])
    reader_table = markdown_table(
        ["reader context", "F1", "EM", "F1 gap to full (95% CI)"],
        [[m, f"{r['f1']:.1f}", f"{r['em']:.1f}",
          "-" if m == "full" else f"{gaps[m]['gap']:+.1f} ({gaps[m]['ci95'][0]:+.1f}, {gaps[m]['ci95'][1]:+.1f})"]
         for m, r in reader.items()])
    speed_table = markdown_table(
        ["counting", "contexts", "tokens/s", "ms/context"],
        [[k, args.n, f"{v['tokens_per_second']:.0f}", f"{v['ms_per_context']:.0f}"] for k, v in speed.items()])
    print(f"\n{args.n} questions, gold + {args.n_other} paragraphs, {min(tokens)}-{max(tokens)} tokens "
          f"(mean {sum(tokens) / len(tokens):.0f}), seed {args.seed}\n")
    print(ret_table, reader_table, speed_table, sep="\n\n")
    path = write_result("squad", {
        "seed": args.seed, "n": args.n, "reader_n": len(reader_items), "n_other": args.n_other, "rate": args.rate,
        "counting": "SmolLM2-135M tokenizer", "context_tokens": {"min": min(tokens), "max": max(tokens),
                                                                   "mean": sum(tokens) / len(tokens)},
        "reader_prompt": args.prompt, "retention": retention, "reader": reader, "f1_gap": gaps, "throughput": speed,
        "ids": [item["id"] for item in items], "tables": [ret_table, reader_table, speed_table]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
