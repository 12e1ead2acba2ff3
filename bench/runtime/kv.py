"""KV-cache presses (StreamingLLM, H2O, SnapKV, key norm) at compression ratios 0.25 / 0.5 / 0.75 on SmolLM2-135M:
measured cache bytes after prefill vs dense (target: bytes / dense = 1 - ratio, up to rounding of the kept count)
and needle accuracy (<= 8 greedy tokens, exact match) on the same prompts as dense.

Protocol. Needle prompts of `--length` tokens (default: bench/results/runtime-needle.json's benchmark length),
depths 0.1/0.3/0.5/0.7/0.9, sample indices `--first`..`--first + --per-depth - 1` per depth, seed 0. Prefill is
shared: one dense prefill per prompt, then each press's own eviction hook is replayed on a copy of the cache and the
answer decoded greedily inside the press (see _common.py; `--check` verifies replay == `model.generate` under the
press, token for token, on prompts of `--check-length` tokens). A press's scores do not depend on the ratio, so each
press scores a prompt once and the three ratios reuse the scores (memoised `score`, or H2O's accumulated attention
`received`; the press code otherwise runs unchanged). `h2o-norecent` is H2O with `recent_fraction=0` (accumulated
attention only, the default before the recent-window fix).
Per-sample results are merged into bench/results/runtime-kv.json, so runs with different `--first`
add samples:

  python bench/runtime/kv.py --per-depth 4 --first 0 --check
  python bench/runtime/kv.py --per-depth 4 --first 4
"""

from __future__ import annotations

import argparse
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
    read_result,
    replay_kv_press,
    setup,
    write_result,
)

from prunekit.evaluate.needle import greedy_generate
from prunekit.runtime import H2OPress, registry

PRESSES = {entry.name: registry.PRESSES.load(entry.name) for entry in registry.PRESSES.entries() if entry.kind == "kv"}
VARIANTS = {"h2o-norecent": (H2OPress, {"recent_fraction": 0.0})}  # accumulated attention only (pre-fix default)
RATIOS = [0.25, 0.5, 0.75]
STEPS = 8


def memoised(cls: type, memo: dict, **options):
    """An instance of press `cls` whose ratio-independent scores are computed once per layer and prompt (shared
    through `memo`): H2O's accumulated attention (`received`; its recent window depends on the ratio), the other
    presses' `score`."""
    method = "received" if hasattr(cls, "received") else "score"
    original = getattr(cls, method)

    def cached(self, module, *args):
        key = int(module.layer_idx)
        if key not in memo:
            memo[key] = original(self, module, *args)
        return memo[key]

    return type(f"Memo{cls.__name__}", (cls,), {method: cached})(**options)


def check_replay(lm, length: int) -> list[dict]:
    """Replay vs `model.generate` under each press at ratio 0.5 on two prompts of `length` tokens."""
    rows = []
    eos = lm.tokenizer.eos_token_id
    for key, sample in needle_range(lm.tokenizer, length, 0, 1)[:2]:
        prefill = DensePrefill(lm.model, ids_tensor(sample))
        for name, cls in PRESSES.items():
            press = cls(ratio=0.5)
            replayed, _, _ = replay_kv_press(lm.model, press, prefill, STEPS, eos)
            with press(lm.model):
                generated = greedy_generate(lm.model, sample.input_ids, STEPS, eos)
            rows.append({"sample": key, "press": name, "equal": replayed == generated, "replay": replayed,
                         "generate": generated})
            print(f"check {key} {name}: {'equal' if replayed == generated else 'DIFFERENT'}", flush=True)
    return rows


def save(length: int, checks: list, records: dict, quiet: bool = False) -> None:
    """Summarise the per-sample records and write runtime-kv.json."""
    dense = records["dense"]
    rows, summary = [], []
    for config, recs in records.items():
        name, _, ratio = config.partition("@")
        ratio = float(ratio) if ratio else 0.0
        keys = sorted(recs)
        accuracy = sum(recs[k]["correct"] for k in keys) / len(keys)
        dense_acc = sum(dense[k]["correct"] for k in keys if k in dense) / len(keys)
        byte_ratio = sum(recs[k]["bytes"] / dense[k]["bytes"] for k in keys) / len(keys)
        kept = sum(recs[k]["kept"] for k in keys) / len(keys)
        # "compression_ratio": the press's `ratio`, under the key older result files use
        summary.append({"press": name, "compression_ratio": ratio, "samples": len(keys), "accuracy": accuracy,
                        "dense_accuracy_same_samples": dense_acc, "cache_bytes_mean": sum(recs[k]["bytes"]
                                                                                          for k in keys) / len(keys),
                        "bytes_over_dense": byte_ratio, "target_bytes_over_dense": 1 - ratio,
                        "kept_entries_per_layer": kept,
                        "shrinks_by_ratio": abs(byte_ratio - (1 - ratio)) <= 1 / length})
        rows.append([name, ratio, len(keys), round(kept, 1), f"{byte_ratio:.4f}", f"{1 - ratio:.4f}",
                     f"{summary[-1]['cache_bytes_mean'] / 2**20:.2f}", accuracy, accuracy - dense_acc])
    table = markdown_table(["press", "ratio", "samples", "kept/layer", "bytes/dense", "target", "cache MiB",
                            "needle acc", "Δ vs dense"], rows)
    if not quiet:
        print(table)
    write_result("kv", {"length": length, "steps": STEPS, "seed": 0, "summary": summary, "table": table,
                        "replay_check": checks, "records": records})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=None)
    parser.add_argument("--per-depth", type=int, default=4)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--check-length", type=int, default=512)
    args = parser.parse_args()
    setup(1)
    lm = load_model()
    tok, model = lm.tokenizer, lm.model
    length = args.length or chosen_length()
    eos = tok.eos_token_id
    previous = read_result("kv") or {}
    if previous.get("length") not in (None, length):
        previous = {}
    records: dict[str, dict] = {}
    checks = check_replay(lm, args.check_length) if args.check else previous.get("replay_check", [])
    for key, sample in needle_range(tok, length, args.first, args.per_depth):
        t0 = time.perf_counter()
        prefill = DensePrefill(model, ids_tensor(sample))
        dense_bytes = sum(t.numel() * t.element_size() for layer in prefill.cache.layers
                          for t in (layer.keys, layer.values))
        with torch.no_grad():
            tokens = greedy_decode(model, prefill.cache_copy(), prefill.first, STEPS, eos)
        records.setdefault("dense", {})[key] = {"correct": answer_correct(tok, tokens, sample), "bytes": dense_bytes,
                                                "kept": length}
        memos: dict[type, dict] = {}
        configs = {name: (cls, {}) for name, cls in PRESSES.items()} | VARIANTS
        for name, (cls, options) in configs.items():
            memo = memos.setdefault(cls, {})
            for ratio in RATIOS:
                press = memoised(cls, memo, ratio=ratio, **options)
                tokens, size, lengths = replay_kv_press(model, press, prefill, STEPS, eos)
                records.setdefault(f"{name}@{ratio}", {})[key] = {
                    "correct": answer_correct(tok, tokens, sample), "bytes": size,
                    "kept": sum(lengths) / len(lengths), "dense_bytes": dense_bytes,
                }
        del prefill
        print(f"{key}: {time.perf_counter() - t0:.0f} s", flush=True)
        save(length, checks, merge_records(previous.get("records"), records), quiet=True)
    save(length, checks, merge_records(previous.get("records"), records))


if __name__ == "__main__":
    main()
