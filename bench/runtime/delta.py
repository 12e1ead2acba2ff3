"""DELTA (decode-time sparse attention) vs dense greedy decoding on SmolLM2-135M, budget = 1/4 of the prompt.

Prompts: `--prompts` windows of `--length` tokens from the wiki evaluation part (consecutive, non-overlapping;
plain-text continuation), plus the same number of needle prompts (seed 0, depths 0.1..0.9) so that retrieval-heavy
decoding is covered too. For each prompt one dense prefill is shared (DELTA leaves prefill dense: it acts only on
one-token queries), then from copies of its cache:
  * dense: 64 greedy decode steps -> reference tokens y_1..y_64 (y_0 comes from the prefill);
  * teacher-forced agreement: under DELTA, feed y_0..y_63 one by one; agreement = fraction of the 64 steps t at
    which DELTA's argmax equals y_t;
  * free-running: DELTA decodes its own tokens from y_0 for 64 steps; first divergence = the first step t with
    z_t != y_t (64 when none), plus the fraction of positions where z_t == y_t.
Attended entries are read from the press after every step: each sparse layer must attend to exactly `budget`.
Pages and forced recent pages: the press defaults (1-entry pages, 16 recent), or `--page-size` / `--recent-pages`
(the paper's 16 / 8); recent pages are capped at half the budget's pages so that selection layers still choose pages
(with 8 x 16 = 128 = the whole budget at 512 tokens, the first run attended only to a sliding window: teacher-forced
agreement 0.34; DeltaPress now rejects that configuration).

  python bench/runtime/delta.py [--length 2048] [--prompts 4] [--page-size 16 --recent-pages 8]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import (
    DensePrefill,
    chosen_length,
    load_model,
    markdown_table,
    needle_set,
    setup,
    write_result,
)

from prunekit.data import evaluation_windows
from prunekit.runtime import DeltaPress

STEPS = 64


@torch.no_grad()
def dense_tokens(model, prefill: DensePrefill) -> list[int]:
    cache, tokens = prefill.cache_copy(), [prefill.first]
    for _ in range(STEPS):
        out = model(input_ids=torch.tensor([[tokens[-1]]]), cache=cache, use_cache=True)
        tokens.append(int(out.logits[0, -1].argmax()))
    return tokens  # y_0..y_64


@torch.no_grad()
def press_run(model, press: DeltaPress, prefill: DensePrefill, forced: list[int] | None) -> tuple[list[int], list]:
    """Predictions z_1..z_64 (teacher-forced on `forced` when given, else free-running) and per-step attended
    entries per layer."""
    cache, last, predictions, attended = prefill.cache_copy(), prefill.first, [], []
    with press(model):
        for step in range(STEPS):
            out = model(input_ids=torch.tensor([[last]]), cache=cache, use_cache=True)
            predictions.append(int(out.logits[0, -1].argmax()))
            attended.append(dict(press.attended_entries_per_layer))
            last = forced[step + 1] if forced is not None else predictions[-1]
    return predictions, attended


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=None)
    parser.add_argument("--prompts", type=int, default=4, help="wiki prompts; as many needle prompts are added")
    parser.add_argument("--page-size", type=int, default=DeltaPress.page_size)
    parser.add_argument("--selection-layers", type=int, nargs="+", default=None,
                        help="Δ-layers (default: dense_layers, L/2, 3L/4 as the paper's 2/14/22 of 28)")
    parser.add_argument("--output", default="delta", help="result name: bench/results/runtime-<output>.json")
    parser.add_argument("--recent-pages", type=int, default=None,
                        help="forced recent pages (default: the press's, at most half the budget's pages)")
    args = parser.parse_args()
    setup(1)
    lm = load_model()
    model, tok = lm.model, lm.tokenizer
    length = args.length or chosen_length()
    budget = length // 4
    wiki = evaluation_windows(tok, "wiki", args.prompts, length)
    needles = needle_set(tok, length, 1)
    prompts = [(f"wiki/{i}", wiki[i:i + 1]) for i in range(args.prompts)]
    picks = [round(i * (len(needles) - 1) / max(args.prompts - 1, 1)) for i in range(args.prompts)]
    prompts += [(f"needle/{needles[i].depth}", torch.tensor([list(needles[i].input_ids)])) for i in picks]
    recent = args.recent_pages if args.recent_pages is not None else min(DeltaPress.recent_pages,
                                                                         budget // args.page_size // 2)
    press = DeltaPress(budget=budget, page_size=args.page_size, recent_pages=recent,
                       selection_layers=args.selection_layers)
    roles = press.roles(model.config.num_hidden_layers)
    sparse = [i for i, r in enumerate(roles) if r == "sparse"]
    rows, records = [], []
    start = time.perf_counter()
    for name, ids in prompts:
        t0 = time.perf_counter()
        prefill = DensePrefill(model, ids)
        reference = dense_tokens(model, prefill)
        forced, attended = press_run(model, press, prefill, reference)
        free, _ = press_run(model, press, prefill, None)
        agree = sum(int(a == b) for a, b in zip(forced, reference[1:], strict=True)) / STEPS
        diverge = next((t + 1 for t, (a, b) in enumerate(zip(free, reference[1:], strict=True)) if a != b), STEPS)
        free_match = sum(int(a == b) for a, b in zip(free, reference[1:], strict=True)) / STEPS
        per_layer = sorted({step[i] for step in attended for i in sparse})
        exact = per_layer == [budget]
        records.append({"prompt": name, "teacher_forced_agreement": agree, "first_divergence_step": diverge,
                        "free_running_match": free_match, "sparse_layer_entries": per_layer,
                        "entries_equal_budget": exact, "dense_text": tok.decode(reference),
                        "delta_text": tok.decode([reference[0], *free])})
        rows.append([name, agree, diverge, free_match, ",".join(map(str, per_layer)), exact])
        print(f"{name}: tf {agree:.3f}, diverge {diverge}, {time.perf_counter() - t0:.0f} s", flush=True)
    mean_tf = sum(r["teacher_forced_agreement"] for r in records) / len(records)
    mean_div = sum(r["first_divergence_step"] for r in records) / len(records)
    mean_free = sum(r["free_running_match"] for r in records) / len(records)
    rows.append(["mean", mean_tf, mean_div, mean_free, "", all(r["entries_equal_budget"] for r in records)])
    table = markdown_table(["prompt", "teacher-forced agreement", "first divergence step (of 64)",
                            "free-running match", "entries/sparse layer", "= budget"], rows)
    print(f"DELTA budget {budget} of {length}-token prompts, page {press.page_size}, recent pages "
          f"{press.recent_pages}, roles: dense {[i for i, r in enumerate(roles) if r == 'dense']}, select "
          f"{[i for i, r in enumerate(roles) if r == 'select']}, {len(sparse)} sparse layers")
    print(table)
    write_result(args.output, {"length": length, "budget": budget, "steps": STEPS, "page_size": press.page_size,
                           "recent_pages": press.recent_pages, "roles": roles,
                           "mean_teacher_forced_agreement": mean_tf, "mean_first_divergence_step": mean_div,
                           "mean_free_running_match": mean_free, "records": records, "table": table,
                           "seconds": round(time.perf_counter() - start)})


if __name__ == "__main__":
    main()
