"""Retraining-free structured pruning of SmolLM2-135M (issue 5): every width criterion, allocator and recovery at
20% and 30% of the non-embedding parameters, depth pruning of 25% of the blocks, prefill latency, save/reload.

Data: bench/results/data-32x512.pt (32 x 512 calibration windows from the wiki calibration part, 16 x 1024
evaluation windows from the wiki evaluation part; made by bench/weight_pruning.py), so the numbers compare with
the one-shot weight-pruning tables. Each configuration prunes a fresh copy of the dense model, then its
perplexity is measured on the 16 evaluation windows. Results are written after every configuration and a rerun
skips those already in the results file (`--fresh` to start over).

  python bench/structured/llm_width_depth.py [--quality] [--depth] [--latency] [--reload] [--plot]
  (no flag: all of them; --latency runs interleaved dense/pruned prefills at 1024 tokens, medians)
Writes bench/results/structured-llm-width-depth.json and .png.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from prunekit.evaluate.efficiency import interleaved_medians
from prunekit.evaluate.perplexity import perplexity_of_windows
from prunekit.io.save import save_model
from prunekit.models import load
from prunekit.prune.depth import DepthPruneConfig, prune_depth
from prunekit.prune.llm_structured import LLMStructuredConfig, prune_llm_structured
from prunekit.prune.unit_allocation import non_embedding_params

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
OUT = RESULTS / "structured-llm-width-depth.json"

# name -> LLMStructuredConfig options (ratio added per run). "global" = one ranking of heads and neurons.
WIDTH = {
    "flap+bias": dict(criterion="flap", bias_compensation=True),
    "flap": dict(criterion="flap", bias_compensation=False),
    "l2": dict(criterion="l2", bias_compensation=False),
    "l2+refit": dict(criterion="l2", bias_compensation=False, refit=True),
    "flap+bias+refit": dict(criterion="flap", bias_compensation=True, refit=True),
    "flap+bias+scales": dict(criterion="flap", bias_compensation=True, scale_tuning=True),
    "flap+bias uniform": dict(criterion="flap", bias_compensation=True, allocation="uniform"),
    "flap+bias angular": dict(criterion="flap", bias_compensation=True, allocation="angular"),
    "cfsp (mlp)": dict(criterion="cfsp", bias_compensation=False),
    "act-norm (mlp)": dict(criterion="act-norm", bias_compensation=False),
    "maw (mlp)": dict(criterion="maw", bias_compensation=False),
    "vow (mlp)": dict(criterion="vow", bias_compensation=False),
    "pon (mlp)": dict(criterion="pon", bias_compensation=False),
}
RATIOS = (0.2, 0.3)
# Recovery (bias, refit, scales) changes weights, not shapes: latency is measured once per shape class.
SHAPE_CLASS = {"flap+bias": "flap", "flap": "flap", "flap+bias+refit": "flap", "flap+bias+scales": "flap",
               "l2": "l2", "l2+refit": "l2", "flap+bias uniform": "flap+bias uniform",
               "flap+bias angular": "flap+bias angular", "cfsp (mlp)": "cfsp (mlp)",
               "act-norm (mlp)": "act-norm (mlp)", "maw (mlp)": "maw (mlp)", "vow (mlp)": "vow (mlp)",
               "pon (mlp)": "pon (mlp)"}
DEPTH = {"angular": dict(order="angular"), "last": dict(order="last"),
         **{f"random seed {s}": dict(order="random", seed=s) for s in range(3)}}


def fresh_copy(dense):
    pruned = copy.copy(dense)
    pruned.model = copy.deepcopy(dense.model)
    pruned.adapter = type(dense.adapter)(pruned.model)
    return pruned


def prune_width(dense, data, name: str, ratio: float):
    loaded = fresh_copy(dense)
    config = LLMStructuredConfig(ratio=ratio, batch_size=4, **WIDTH[name])
    start = time.perf_counter()
    report = prune_llm_structured(loaded, config, method="llm-structured", windows=data["calibration"])
    return loaded, report, time.perf_counter() - start


def save(results: dict) -> None:
    results["date"] = str(date.today())
    results["torch"] = torch.__version__
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(OUT)


def quality(dense, data, results: dict) -> None:
    nonembed = non_embedding_params(dense)
    rows = results.setdefault("width", {})
    for ratio in RATIOS:
        for name in WIDTH:
            key = f"{name} @ {ratio:.0%}"
            if key in rows:
                continue
            loaded, report, seconds = prune_width(dense, data, name, ratio)
            start = time.perf_counter()
            ppl = perplexity_of_windows(loaded.model, data["evaluation"])
            rows[key] = {"name": name, "ratio": ratio, "perplexity": ppl, "prune_seconds": seconds,
                         "eval_seconds": time.perf_counter() - start, "achieved": report["achieved"],
                         "params": sum(p.numel() for p in loaded.model.parameters()),
                         "non_embedding_removed": (nonembed - non_embedding_params(loaded)) / nonembed,
                         "heads_removed": sum(v["before"] - v["after"] for v in report["layers"].values()
                                              if v["kind"] == "heads"),
                         "neurons_removed": sum(v["before"] - v["after"] for v in report["layers"].values()
                                                if v["kind"] == "mlp"),
                         "block_ratios": report.get("block_ratios")}
            print(f"{key:32s} ppl {ppl:10.2f}  removed {rows[key]['non_embedding_removed']:.3f}  "
                  f"prune {seconds:.0f} s", flush=True)
            save(results)


def depth(dense, data, results: dict) -> None:
    rows = results.setdefault("depth", {})
    for name, options in DEPTH.items():
        if name in rows:
            continue
        loaded = fresh_copy(dense)
        report = prune_depth(loaded, DepthPruneConfig(blocks=0.25, **options), method="depth",
                             windows=data["calibration"])
        ppl = perplexity_of_windows(loaded.model, data["evaluation"])
        rows[name] = {"perplexity": ppl, "removed": report["removed"], "blocks_after": report["blocks_after"],
                      "params": report["params_after"]}
        print(f"depth {name:16s} ppl {ppl:10.2f} removed {report['removed']}", flush=True)
        save(results)


def prefill(model, ids, logits_to_keep):
    def run():
        with torch.inference_mode():
            model(input_ids=ids, use_cache=True, logits_to_keep=logits_to_keep)
    return run


def latency(dense, data, results: dict, repeats: int, threads: int) -> None:
    torch.set_num_threads(threads)
    ids = data["evaluation"][:1, :1024]
    rows = results["latency"] = {"threads": threads, "repeats": repeats, "tokens": 1024, "runs": {}}
    for name in ("flap+bias", "flap+bias uniform"):
        loaded, _report, _ = prune_width(dense, data, name, 0.3)
        for keep, label in ((1, "last-token logits (generate's prefill)"), (0, "logits for every position")):
            med = interleaved_medians({"dense": prefill(dense.model, ids, keep),
                                       "pruned": prefill(loaded.model, ids, keep)}, repeats)
            rows["runs"][f"{name} @ 30% | {label}"] = {
                "dense_ms": med["dense"] * 1e3, "pruned_ms": med["pruned"] * 1e3,
                "ratio": med["pruned"] / med["dense"],
                "params_ratio": sum(p.numel() for p in loaded.model.parameters())
                / sum(p.numel() for p in dense.model.parameters())}
            print(f"latency {name} @ 30% ({label}): {med['pruned'] / med['dense']:.3f} of dense "
                  f"({med['pruned'] * 1e3:.0f} vs {med['dense'] * 1e3:.0f} ms)", flush=True)
        save(results)


def latency_table(dense, data, results: dict, repeats: int, threads: int) -> None:
    """Last-token prefill latency at 1024 tokens of every shape class at 20% and 30%, against dense."""
    torch.set_num_threads(threads)
    ids = data["evaluation"][:1, :1024]
    rows = results.setdefault("latency_table", {})
    for ratio in RATIOS:
        for shape in dict.fromkeys(SHAPE_CLASS.values()):
            key = f"{shape} @ {ratio:.0%}"
            if key in rows:
                continue
            loaded, _report, _ = prune_width(dense, data, shape, ratio)
            med = interleaved_medians({"dense": prefill(dense.model, ids, 1), "pruned": prefill(loaded.model, ids, 1)},
                                      repeats)
            rows[key] = {"dense_ms": med["dense"] * 1e3, "pruned_ms": med["pruned"] * 1e3,
                         "ratio": med["pruned"] / med["dense"], "threads": threads, "repeats": repeats}
            print(f"latency {key}: {rows[key]['ratio']:.3f} of dense", flush=True)
            save(results)


def reload_check(dense, data, results: dict) -> None:
    loaded, report, _ = prune_width(dense, data, "flap+bias angular", 0.3)
    ids = data["evaluation"][:1, :64]
    with torch.no_grad():
        before = loaded.model(ids).logits
        tokens = loaded.model.generate(ids[:, :32], max_new_tokens=16, do_sample=False)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(loaded, Path(tmp) / "m", plan=report.report())
        again = load(str(Path(tmp) / "m"))
        with torch.no_grad():
            after = again.model(ids).logits
            tokens_again = again.model.generate(ids[:, :32], max_new_tokens=16, do_sample=False)
    widths = sorted({layer.mlp.down_proj.weight.shape[1] for layer in loaded.model.model.layers})
    results["reload"] = {"config": "flap+bias angular @ 30%", "max_abs_logit_diff": float((before - after).abs().max()),
                         "same_tokens": bool(torch.equal(tokens, tokens_again)), "distinct_mlp_widths": len(widths)}
    print(f"reload: {results['reload']}", flush=True)
    save(results)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    names = sorted({row["name"] for row in results["width"].values()})
    colors = plt.get_cmap("tab20").colors
    for i, name in enumerate(names):
        pts = sorted((row["ratio"], row["perplexity"]) for row in results["width"].values() if row["name"] == name)
        ax.plot([100 * p[0] for p in pts], [p[1] for p in pts], marker="osD^v<>"[i % 7], color=colors[i % 20],
                linestyle="-" if "mlp" not in name else "--", label=name)
    ax.axhline(results["dense_perplexity"], color="k", linestyle="--", label="dense")
    ax.set_yscale("log")
    ax.set_xlabel("non-embedding parameters removed (%)")
    ax.set_ylabel("wiki perplexity (16 x 1024, log scale)")
    ax.set_title("SmolLM2-135M, retraining-free structured pruning")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(OUT.with_suffix(".png"), dpi=120)


def _ppl(row: dict | None) -> str:
    return f"{row['perplexity']:.2f}" if row else "-"


def table(results: dict) -> str:
    lines = ["| configuration | ppl @ 20% | ppl @ 30% | params @ 30% (M) | heads / neurons removed @ 30% | "
             "prefill / dense @ 20% | @ 30% |", "|---|---|---|---|---|---|---|"]
    lat = results.get("latency_table", {})

    def speed(ratio: str, name: str) -> str:
        row = lat.get(f"{SHAPE_CLASS[name]} @ {ratio}")
        return f"{row['ratio']:.3f}" if row else "-"

    for name in WIDTH:
        a, b = results["width"].get(f"{name} @ 20%"), results["width"].get(f"{name} @ 30%")
        if not (a or b):
            continue
        tail = f"{b['params'] / 1e6:.1f} | {b['heads_removed']} / {b['neurons_removed']}" if b else "- | -"
        lines.append(f"| {name} | {_ppl(a)} | {_ppl(b)} | {tail} | {speed('20%', name)} | {speed('30%', name)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("quality", "depth", "latency", "latency-table", "reload", "plot"):
        parser.add_argument(f"--{flag}", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="ignore earlier results")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    everything = not any((args.quality, args.depth, args.latency, args.latency_table, args.reload, args.plot))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {} if args.fresh or not OUT.exists() else json.loads(OUT.read_text())
    data = torch.load(RESULTS / "data-32x512.pt")
    dense = load("smollm2-135m")
    if "dense_perplexity" not in results:
        results["dense_perplexity"] = perplexity_of_windows(dense.model, data["evaluation"])
        results["dense_params"] = sum(p.numel() for p in dense.model.parameters())
        save(results)
    print(f"dense ppl {results['dense_perplexity']:.2f}", flush=True)
    if everything or args.quality:
        quality(dense, data, results)
    if everything or args.depth:
        depth(dense, data, results)
    if everything or args.reload:
        reload_check(dense, data, results)
    if everything or args.latency:
        latency(dense, data, results, args.repeats, args.threads)
    if everything or args.latency_table:
        latency_table(dense, data, results, args.repeats, args.threads)
    if results.get("width"):
        print(table(results))
        plot(results)


if __name__ == "__main__":
    main()
