"""LazyLLM (progressive prefill token pruning) vs dense on SmolLM2-135M: time to first token and needle accuracy.

Schedules are {layer: cumulative keep fraction} (see prunekit.runtime.tokens.lazyllm); presets below, or JSON.
* TTFT (`--timing`): one prefill forward (`use_cache=True, logits_to_keep=1`, as generate's first step) of a needle
  prompt of `--length` tokens (depth 0.5, sample 0), dense and every schedule interleaved in one process, 2 torch
  threads, `--repeats` rounds after one warm-up each (`interleaved_medians`); reported as median seconds and
  median / dense median. Also the tokens processed per layer.
* Accuracy (`--per-depth N --first i`): needle prompts (seed 0, depths 0.1..0.9, sample indices i..i+N-1), greedy
  `model.generate` (<= 8 new tokens) inside `with press(model)` (revival on), 1 thread; dense on the same prompts.
  Per-sample results are merged into bench/results/runtime-lazyllm.json across runs.
Target: TTFT <= `--max-ttft` (0.75) x dense with needle accuracy at most 5 points below dense.
`--defaults` adds the press with its defaults (config "defaults": `LazyLLMPress()`, the measured schedule scaled to
the model, pool 15, window 1, keep_last 32); `--ratio R` adds `LazyLLMPress(ratio=R)` (config "ratio-R"; its
profile's options keep the result key `compression_ratio`, the option's old name, so older result files compare).
`--output NAME` writes bench/results/runtime-NAME.json instead of runtime-lazyllm.json (records merge per file).

  python bench/runtime/lazyllm.py --timing --schedules A B C D
  python bench/runtime/lazyllm.py --per-depth 2 --first 0 --schedules A B C D
  python bench/runtime/lazyllm.py --per-depth 2 --first 0 --schedules A G --window 16 --pool 15
  python bench/runtime/lazyllm.py --defaults --schedules --timing --max-ttft 0.6 --output lazyllm-defaults
`--window`/`--pool` switch on the optional SnapKV-style scoring of LazyLLMPress (last 16 queries, max-pool 15);
the default is the paper's last-token score. `--keep-last N` always keeps the last N prompt tokens (the question and
the answer prefix of the needle prompt are its last ~32 tokens).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _common import (
    DensePrefill,
    answer_correct,
    chosen_length,
    greedy_decode,
    ids_tensor,
    load_model,
    markdown_table,
    merge_records,
    needle_range,
    prefill_call,
    read_result,
    setup,
    write_result,
)

from prunekit.evaluate.efficiency import interleaved_medians
from prunekit.evaluate.needle import greedy_generate
from prunekit.runtime import LazyLLMPress, keep_counts

RESULT_KEYS = {"ratio": "compression_ratio"}  # option -> key in the result files (written before the rename)
PRESETS = {  # name: schedule {layer: cumulative keep fraction}
    "A": {8: 0.6, 14: 0.4, 20: 0.25},
    "B": {6: 0.5, 12: 0.3, 18: 0.2},
    "C": {10: 0.7, 16: 0.5, 22: 0.35},
    "D": {4: 0.5, 10: 0.3, 16: 0.15},
    "E": {8: 0.5, 16: 0.25},
    "F": {12: 0.5, 20: 0.25},
    "G": {10: 0.5, 18: 0.25},
    "H": {14: 0.4, 22: 0.2},
    "I": {16: 0.3},
}


def parse_schedule(text: str, window: int, pool: int, keep_last: int = 1) -> tuple[str, dict]:
    """(config name, LazyLLMPress options) for a preset name or a JSON schedule; scoring options in the name."""
    if text in PRESETS:
        name, schedule = text, PRESETS[text]
    else:
        schedule = {int(k): float(v) for k, v in json.loads(text).items()}
        name = json.dumps(schedule, separators=(",", ":"))
    if window > 1 or pool > 1:
        name += f"/w{window}p{pool}"
    if keep_last > 1:
        name += f"/last{keep_last}"
    return name, {"schedule": schedule, "window": window, "pool": pool, "keep_last": keep_last}


def save(length: int, profiles: dict, timing: dict, records: dict, quiet: bool = False, max_ttft: float = 0.75,
         output: str = "lazyllm") -> None:
    """Summarise every config with profiles, timing or records and write runtime-<output>.json."""
    rows, summary = [], {}
    dense = records.get("dense", {})
    for name in sorted(set(profiles) | set(timing)):
        recs = records.get(name, {})
        keys = sorted(k for k in recs if k in dense)
        acc = sum(recs[k]["correct"] for k in keys) / len(keys) if keys else float("nan")
        dense_acc = sum(dense[k]["correct"] for k in keys) / len(keys) if keys else float("nan")
        ratio = timing.get(name, {}).get("ttft_over_dense", float("nan"))
        ok = ratio <= max_ttft and acc >= dense_acc - 0.05
        summary[name] = {**profiles.get(name, {}), **timing.get(name, {}), "samples": len(keys), "accuracy": acc,
                         "dense_accuracy_same_samples": dense_acc, "meets_target": ok}
        profile = profiles.get(name, {})
        tags = (("window", "w"), ("pool", "p"), ("keep_last", "last"))
        scoring = "".join(f" {tag}{profile[key]}" for key, tag in tags if profile.get(key, 1) > 1)
        rows.append([name, json.dumps(profile.get("schedule", {})).replace('"', "") + scoring,
                     profile.get("mean_kept_fraction", float("nan")), ratio, len(keys), acc, dense_acc,
                     acc - dense_acc, ok])
    table = markdown_table(["schedule", "layer: keep", "mean kept", "TTFT / dense", "samples", "needle acc",
                            "dense acc", "Δ", "target met"], rows)
    if not quiet:
        print(table)
        for name, profile in profiles.items():
            print(f"{name} tokens per layer: {profile['tokens_per_layer']}")
    write_result(output, {"length": length, "seed": 0, "max_ttft": max_ttft, "summary": summary, "profiles": profiles,
                          "timing": timing, "table": table, "records": records})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=None)
    parser.add_argument("--schedules", nargs="*", default=None, help="presets or JSON (default A unless --defaults "
                        "or --ratio)")
    parser.add_argument("--defaults", action="store_true", help="also the press with its defaults (config 'defaults')")
    parser.add_argument("--ratio", type=float, action="append", default=[],
                        help="also the press with ratio=R (repeatable)")
    parser.add_argument("--max-ttft", type=float, default=0.75, help="TTFT / dense target of the summary")
    parser.add_argument("--output", default="lazyllm", help="results file bench/results/runtime-<output>.json")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-depth", type=int, default=0)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--window", type=int, default=1, help="prompt queries scoring tokens (1 = LazyLLM)")
    parser.add_argument("--pool", type=int, default=1, help="max-pool kernel over scores (1 = LazyLLM)")
    parser.add_argument("--keep-last", type=int, default=1, help="last prompt tokens always kept (1 = LazyLLM)")
    args = parser.parse_args()
    setup(1)
    lm = load_model()
    model, tok = lm.model, lm.tokenizer
    length = args.length or chosen_length()
    layers = model.config.num_hidden_layers
    names = args.schedules if args.schedules is not None else ([] if args.defaults or args.ratio else ["A"])
    schedules = dict(parse_schedule(s, args.window, args.pool, args.keep_last) for s in names)
    if args.defaults:
        schedules["defaults"] = {}  # LazyLLMPress() as make_press("lazyllm") builds it
    schedules.update({f"ratio-{r:g}": {"ratio": r} for r in args.ratio})
    previous = read_result(args.output) or {}
    if previous.get("length") not in (None, length):
        previous = {}
    profiles = previous.get("profiles", {})
    for name, options in schedules.items():
        press = LazyLLMPress(**options)
        schedule = press.schedule_for(layers)
        counts = keep_counts(length, schedule, layers)
        recorded = {RESULT_KEYS.get(k, k): v for k, v in options.items()}  # result files keep the old key
        profiles[name] = {"options": recorded, "schedule": {str(k): v for k, v in schedule.items()},
                          "window": press.window, "pool": press.pool, "keep_last": press.keep_last,
                          "tokens_per_layer": counts, "mean_kept_fraction": sum(counts) / (layers * length)}
    timing = previous.get("timing", {})
    if args.timing:
        sample = needle_range(tok, length, 0, 1)[2][1]  # depth 0.5, sample 0
        ids = ids_tensor(sample)

        def prefill(press=None):
            return prefill_call(model, ids, press)

        presses = {name: LazyLLMPress(**o) for name, o in schedules.items()}
        torch.set_num_threads(2)
        medians = interleaved_medians({"dense": prefill(), **{n: prefill(p) for n, p in presses.items()}},
                                      repeats=args.repeats)
        torch.set_num_threads(1)
        for name, press in presses.items():
            measured = press.tokens_per_layer
            assert measured == profiles[name]["tokens_per_layer"], (measured, profiles[name])
            timing[name] = {"seconds": medians[name], "dense_seconds": medians["dense"],
                            "ttft_over_dense": medians[name] / medians["dense"], "repeats": args.repeats,
                            "threads": 2}
            print(f"TTFT {name}: {medians[name]:.2f} s vs dense {medians['dense']:.2f} s "
                  f"= {medians[name] / medians['dense']:.3f}", flush=True)
    records: dict[str, dict] = {}
    if args.per_depth:
        eos = tok.eos_token_id
        for key, sample in needle_range(tok, length, args.first, args.per_depth):
            t0 = time.perf_counter()
            prefill_state = DensePrefill(model, ids_tensor(sample))
            tokens = greedy_decode(model, prefill_state.cache, prefill_state.first, 8, eos)
            del prefill_state
            records.setdefault("dense", {})[key] = {"correct": answer_correct(tok, tokens, sample)}
            for name, options in schedules.items():
                press = LazyLLMPress(**options)
                with press(model):
                    tokens = greedy_generate(model, sample.input_ids, 8, eos)
                records.setdefault(name, {})[key] = {"correct": answer_correct(tok, tokens, sample),
                                                     "revived": sum(press.revived_per_layer.values()),
                                                     "output": tok.decode(tokens)}
            print(f"{key}: {time.perf_counter() - t0:.0f} s "
                  f"{[records[n][key]['correct'] for n in ['dense', *schedules]]}", flush=True)
            save(length, profiles, timing, merge_records(previous.get("records"), records), quiet=True,
                 max_ttft=args.max_ttft, output=args.output)
    save(length, profiles, timing, merge_records(previous.get("records"), records), max_ttft=args.max_ttft,
         output=args.output)


if __name__ == "__main__":
    main()
