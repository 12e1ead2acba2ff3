"""Why CNN speedups fall short of the MACs reduction: eager vs torch.compile, and where the time goes.

Prunes a network by 50% of channels with prunekit (L2 group norm, uniform, as in cnn.py), then times dense
and pruned forwards in channels_last under `torch.inference_mode`, eager and compiled with inductor
(freezing on: BatchNorm folded into the convolutions, pointwise ops fused), all four interleaved, medians.
`--profile` prints the top operators of the eager dense and pruned forwards (torch.profiler).

  python bench/structured/cnn_profile.py --model resnet56 --batch 128 [--modes eager compile] [--profile]
Writes bench/results/structured-cnn-profile-<model>.json.
"""

from __future__ import annotations

import argparse
import copy
from datetime import date
from pathlib import Path

import torch
from cnn import MODELS, dense_and_pruned, latency, macs

from prunekit.evaluate.records import write_record

HERE = Path(__file__).resolve().parent


def timed_models(dense: torch.nn.Module, pruned: torch.nn.Module, modes: list[str]) -> dict:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    models = {}
    for mode in modes:
        for name, model in (("dense", dense), ("pruned", pruned)):
            copy_ = copy.deepcopy(model).to(memory_format=torch.channels_last)
            models[(mode, name)] = torch.compile(copy_) if mode == "compile" else copy_
    return models


def operator_table(model: torch.nn.Module, x: torch.Tensor, rows: int = 8) -> list[dict]:
    from torch.profiler import profile

    with torch.inference_mode(), profile() as prof:
        for _ in range(3):
            model(x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 3e3, "calls": e.count // 3} for e in events]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=list(MODELS), default="resnet56")
    parser.add_argument("--batch", type=int, nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--modes", nargs="+", choices=["eager", "compile"], default=["eager", "compile"])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dense, pruned, size, default_batch = dense_and_pruned(args.model)
    reduction = macs(dense, size) / macs(pruned, size)
    result = {"model": args.model, "date": str(date.today()), "threads": args.threads, "macs_reduction": reduction,
              "rows": []}
    for batch in args.batch or [default_batch]:
        x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
        models = timed_models(dense, pruned, args.modes)
        medians = latency(models, x, args.repeats)  # interleaved, after two warm-up calls (which compile)
        for mode in args.modes:
            d, p = medians[(mode, "dense")], medians[(mode, "pruned")]
            row = {"batch": batch, "mode": mode, "dense_ms": d * 1e3, "pruned_ms": p * 1e3, "speedup": d / p,
                   "speedup_over_macs_reduction": d / p / reduction}
            result["rows"].append(row)
            print(f"{args.model} batch {batch} {mode}: dense {d * 1e3:.1f} ms, pruned {p * 1e3:.1f} ms, speedup "
                  f"{d / p:.2f}x = {d / p / reduction:.3f} of the MACs reduction ({reduction:.2f}x)", flush=True)
        if args.profile and "eager" in args.modes:
            result.setdefault("operators", {})[batch] = {
                name: operator_table(models[("eager", name)], x) for name in ("dense", "pruned")}
            for name, table in result["operators"][batch].items():
                print(name, ", ".join(f"{r['op']} {r['self_ms']:.1f} ms" for r in table), flush=True)
    out = HERE.parent / "results" / f"structured-cnn-profile-{args.model}.json"
    write_record(out, result)


if __name__ == "__main__":
    main()
