"""Accuracy vs kept tokens and vs time to first token for the presses: bench/results/runtime-tradeoff.png (+ .json).

Needle accuracy and kept fractions come from runtime-kv.json (KV presses: kept cache entries / prompt length) and
runtime-lazyllm.json (LazyLLM: mean tokens processed per layer / prompt length, TTFT from its interleaved timing).
This script adds, at the same needle length:
* `--timing`: TTFT of dense, each KV press at ratio 0.5 (eviction happens inside prefill, so the scoring cost is
  part of TTFT; the kept ratio barely changes it) and HiP with its defaults, one prefill forward each
  (`logits_to_keep=1`), interleaved medians, 2 threads, `--repeats` rounds;
* `--hip-per-depth N`: HiP needle accuracy (defaults: 512 gathered keys per query) on N samples per depth, with
  HiP's kept fraction = mean gathered keys per query / prompt length over the sparse layers.

  python bench/runtime/tradeoff.py --timing --hip-per-depth 2
  python bench/runtime/tradeoff.py            # only redraw from the JSON files (+ a Markdown table of the points)
LazyLLM schedules measured on fewer than `--min-samples` (5) needle samples are left out.
"""

from __future__ import annotations

import argparse

import torch
from _common import (
    RESULTS,
    chosen_length,
    load_model,
    markdown_table,
    needle_range,
    prefill_call,
    read_result,
    setup,
    write_result,
)

from prunekit.evaluate.efficiency import interleaved_medians
from prunekit.evaluate.needle import evaluate_needle
from prunekit.runtime import HipPress, registry

KV = {entry.name: registry.PRESSES.load(entry.name) for entry in registry.PRESSES.entries() if entry.kind == "kv"}
COLORS = {"streamingllm": "tab:blue", "h2o": "tab:orange", "snapkv": "tab:green", "knorm": "tab:red",
          "lazyllm": "tab:purple", "lazyllm+wp": "tab:pink", "hip": "tab:brown", "dense": "black"}


def measure(length: int, repeats: int, hip_per_depth: int, previous: dict) -> dict:
    lm = load_model()
    model, tok = lm.model, lm.tokenizer
    out = dict(previous)
    if repeats:
        ids = torch.tensor([list(needle_range(tok, length, 0, 1)[2][1].input_ids)])

        def run(press=None):
            return prefill_call(model, ids, press)

        fns = {"dense": run(), **{n: run(c(ratio=0.5)) for n, c in KV.items()}, "hip": run(HipPress())}
        torch.set_num_threads(2)
        medians = interleaved_medians(fns, repeats=repeats)
        torch.set_num_threads(1)
        out["ttft"] = {n: {"seconds": s, "over_dense": s / medians["dense"]} for n, s in medians.items()}
        out["ttft_repeats"] = repeats
        for n, s in medians.items():
            print(f"TTFT {n}: {s:.2f} s = {s / medians['dense']:.3f} x dense", flush=True)
    if hip_per_depth:
        samples = [s for _, s in needle_range(tok, length, 0, hip_per_depth)]
        press = HipPress()
        result = evaluate_needle(model, tok, samples, press=press)
        kept = sum(press.attended_keys_per_layer.values()) / len(press.attended_keys_per_layer)
        out["hip"] = {"accuracy": result.accuracy, "samples": len(samples), "keys_per_query": kept,
                      "kept_fraction": kept / length, "outputs": result.outputs}
        print(f"HiP needle accuracy {result.accuracy:.3f} on {len(samples)}, {kept:.0f} keys/query", flush=True)
    return out


def plot(length: int, extra: dict, min_samples: int = 5) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []  # (family, label, kept fraction, ttft ratio or None, accuracy, samples)
    kv = read_result("kv")
    ttft = extra.get("ttft", {})
    if kv and kv.get("length") == length:
        for row in kv["summary"]:
            name = row["press"]
            if name == "dense":
                points.append(("dense", "dense", 1.0, 1.0, row["accuracy"], row["samples"]))
                continue
            points.append((name, f"{name} r={row['compression_ratio']}", row["kept_entries_per_layer"] / length,
                           ttft.get(name, {}).get("over_dense"), row["accuracy"], row["samples"]))
    lazy = read_result("lazyllm")
    if lazy and lazy.get("length") == length:
        for name, row in lazy["summary"].items():
            if row.get("samples", 0) >= min_samples:  # leave out the short schedule probes
                family = "lazyllm+wp" if row.get("window", 1) > 1 or row.get("pool", 1) > 1 else "lazyllm"
                points.append((family, f"LazyLLM {name}", row["mean_kept_fraction"], row.get("ttft_over_dense"),
                               row["accuracy"], row["samples"]))
    if "hip" in extra:
        points.append(("hip", "HiP", extra["hip"]["kept_fraction"], ttft.get("hip", {}).get("over_dense"),
                       extra["hip"]["accuracy"], extra["hip"]["samples"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    seen: set[str] = set()
    for family, label, kept, ratio, acc, _ in points:
        color = COLORS.get(family, "gray")
        legend = family if family not in seen else None
        seen.add(family)
        axes[0].scatter(kept, acc, color=color, label=legend)
        if ratio is not None and ratio == ratio:
            axes[1].scatter(ratio, acc, color=color)
            if family.startswith("lazyllm") or family == "hip":
                axes[1].annotate(label.replace("LazyLLM ", ""), (ratio, acc), fontsize=7)
    for family in KV:
        line = sorted((p[2], p[4]) for p in points if p[0] == family)
        if line:
            axes[0].plot(*zip(*line, strict=True), color=COLORS.get(family, "gray"), alpha=0.5)
    axes[0].set_xlabel("kept tokens / prompt (KV: cache entries; LazyLLM: mean per layer; HiP: keys per query)")
    axes[0].set_ylabel(f"needle accuracy ({length} tokens)")
    axes[1].set_xlabel("time to first token / dense (CPU, 2 threads, interleaved medians)")
    axes[1].axvline(0.75, color="gray", linestyle=":", linewidth=1)
    for axis in axes:
        axis.set_ylim(-0.03, 1.03)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"SmolLM2-135M-Instruct, needle retrieval at {length} tokens")
    fig.tight_layout()
    path = RESULTS / "runtime-tradeoff.png"
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
    rows = [[label, f"{kept:.3f}", "" if ratio is None or ratio != ratio else f"{ratio:.3f}", f"{acc:.3f}", n]
            for _, label, kept, ratio, acc, n in points]
    table = markdown_table(["config", "kept tokens / prompt", "TTFT / dense", "needle acc", "samples"], rows)
    print(table)
    keys = ("family", "label", "kept_fraction", "ttft_over_dense", "accuracy", "samples")
    return {"table": table, "points": [dict(zip(keys, p, strict=True)) for p in points]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=None)
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hip-per-depth", type=int, default=0)
    parser.add_argument("--min-samples", type=int, default=5, help="LazyLLM schedules with fewer are not drawn")
    args = parser.parse_args()
    setup(1)
    length = args.length or chosen_length()
    previous = read_result("tradeoff") or {}
    previous = {k: previous[k] for k in ("ttft", "ttft_repeats", "hip") if k in previous and
                previous.get("length") == length}
    extra = measure(length, args.repeats if args.timing else 0, args.hip_per_depth, previous) \
        if args.timing or args.hip_per_depth else previous
    write_result("tradeoff", {"length": length, **extra, **plot(length, extra, args.min_samples)})


if __name__ == "__main__":
    main()
