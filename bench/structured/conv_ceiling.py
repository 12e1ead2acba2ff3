"""The speedup a pruned CNN can reach on this CPU if everything but its convolutions were free.

Prunes a network by 50% of channels with prunekit (L2 group norm, uniform, as in cnn.py), records the input
of every Conv2d of the dense and the pruned model at one batch size, then times each convolution alone with
its own weights in every kernel setting torch offers on CPU: oneDNN in channels_last, oneDNN in contiguous
(NCHW) and the native kernels (oneDNN off). Each layer keeps its fastest setting, dense and pruned apart, and
dense / pruned layer calls are interleaved (medians). The sum over layers is the convolution time; its ratio
is the ceiling of the model's speedup as long as convolutions dominate, and the table shows which widths fall
short of their MACs reduction (ideally 4x for a dense convolution at half the channels in and out, 2x for a
depthwise one).

  python bench/structured/conv_ceiling.py --model resnet56 --batch 128 [--threads 2] [--repeats 11]
Writes bench/results/structured-conv-ceiling-<model>-b<batch>-t<threads>.json.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import torch
from cnn import MODELS, dense_and_pruned, forward_with_hooks
from torch import nn

from prunekit.evaluate.records import write_record

HERE = Path(__file__).resolve().parent

SETTINGS = {  # name -> (memory format, oneDNN on)
    "onednn_channels_last": (torch.channels_last, True),
    "onednn_contiguous": (torch.contiguous_format, True),
    "native_contiguous": (torch.contiguous_format, False),
}


def conv_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[nn.Conv2d, torch.Tensor]]:
    """Every Conv2d by name, with the input it received in one forward of `x`."""
    seen = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            seen.setdefault(name, (module, args[0].detach().clone()))
        return hook

    forward_with_hooks(model, x, (nn.Conv2d,), record)
    return seen


def conv_macs(conv: nn.Conv2d, x: torch.Tensor) -> int:
    with torch.inference_mode():
        out = conv(x)
    kh, kw = conv.kernel_size
    return out.numel() * (conv.in_channels // conv.groups) * kh * kw


def time_layer(pair: dict[str, tuple[nn.Conv2d, torch.Tensor]], repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds of each model's copy of one layer in every kernel setting, calls interleaved."""
    runs = {}
    for setting, (fmt, onednn) in SETTINGS.items():
        for which, (conv, x) in pair.items():
            runs[(which, setting)] = (copy.deepcopy(conv).to(memory_format=fmt), x.contiguous(memory_format=fmt),
                                      onednn)
    times: dict[tuple, list[float]] = defaultdict(list)
    with torch.inference_mode():
        for round_ in range(repeats + 2):  # two warm-up rounds
            for key, (conv, x, onednn) in runs.items():
                with torch.backends.mkldnn.flags(enabled=onednn):
                    start = time.perf_counter()
                    conv(x)
                    elapsed = time.perf_counter() - start
                if round_ >= 2:
                    times[key].append(elapsed)
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (which, setting), values in times.items():
        out[which][setting] = statistics.median(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=list(MODELS), default="resnet56")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dense, pruned, size, _ = dense_and_pruned(args.model)
    x = torch.randn(args.batch, 3, size, size)
    inputs = {"dense": conv_inputs(dense, x), "pruned": conv_inputs(pruned, x)}
    layers = []
    for name in inputs["dense"]:
        pair = {which: inputs[which][name] for which in ("dense", "pruned")}
        seconds = time_layer(pair, args.repeats)
        conv_d, x_d = pair["dense"]
        conv_p, x_p = pair["pruned"]
        row = {"layer": name, "kernel": list(conv_d.kernel_size), "depthwise": conv_d.groups > 1,
               "channels_dense": [conv_d.in_channels, conv_d.out_channels],
               "channels_pruned": [conv_p.in_channels, conv_p.out_channels],
               "spatial_in": list(x_d.shape[2:]),
               "macs_dense": conv_macs(conv_d, x_d), "macs_pruned": conv_macs(conv_p, x_p),
               "ms": {which: {k: v * 1e3 for k, v in seconds[which].items()} for which in seconds}}
        row["best_ms"] = {which: min(row["ms"][which].values()) for which in row["ms"]}
        layers.append(row)
    total = {w: sum(r["best_ms"][w] for r in layers) for w in ("dense", "pruned")}
    macs = {w: sum(r[f"macs_{w}"] for r in layers) for w in ("dense", "pruned")}
    per_setting = {s: {w: sum(r["ms"][w][s] for r in layers) for w in ("dense", "pruned")} for s in SETTINGS}
    summary = {"conv_ms_best": total, "conv_macs": macs, "conv_macs_reduction": macs["dense"] / macs["pruned"],
               "conv_speedup_best": total["dense"] / total["pruned"], "conv_ms_per_setting": per_setting}
    summary["ceiling_over_macs_reduction"] = summary["conv_speedup_best"] / summary["conv_macs_reduction"]

    groups: dict[tuple, list[dict]] = defaultdict(list)  # layers of one shape class
    for r in layers:
        groups[(tuple(r["kernel"]), r["depthwise"], tuple(r["channels_dense"]), tuple(r["spatial_in"]))].append(r)
    print(f"{args.model}, batch {args.batch}, {args.threads} threads: convolutions only, each at its fastest kernel")
    print(f"{'kernel':>6} {'dw':>3} {'channels dense -> pruned':>26} {'in px':>7} {'n':>3} {'MACs red.':>9} "
          f"{'ms dense':>9} {'ms pruned':>9} {'speedup':>8} {'GMAC/s d/p':>12}")
    for (kernel, dw, ch, px), rows in sorted(groups.items(), key=lambda kv: -sum(r["best_ms"]["dense"]
                                                                                  for r in kv[1])):
        md, mp = sum(r["macs_dense"] for r in rows), sum(r["macs_pruned"] for r in rows)
        td, tp = sum(r["best_ms"]["dense"] for r in rows), sum(r["best_ms"]["pruned"] for r in rows)
        widths = f"{ch} -> {rows[0]['channels_pruned']}"
        print(f"{kernel[0]:>4}x{kernel[1]} {'y' if dw else '':>3} {widths:>26}"
              f" {px[0]:>7} {len(rows):>3} {md / mp:>8.2f}x {td:>9.2f} {tp:>9.2f} {td / tp:>7.2f}x"
              f" {md / td / 1e6:>5.1f}/{mp / tp / 1e6:<5.1f}")
    print(f"all convolutions: {total['dense']:.1f} -> {total['pruned']:.1f} ms, speedup "
          f"{summary['conv_speedup_best']:.2f}x for {summary['conv_macs_reduction']:.2f}x fewer MACs = "
          f"{summary['ceiling_over_macs_reduction']:.3f} of the MACs reduction")
    for s, v in per_setting.items():
        print(f"  {s:22s} {v['dense']:8.1f} -> {v['pruned']:7.1f} ms ({v['dense'] / v['pruned']:.2f}x)")
    result = {"date": date.today().isoformat(), "torch": torch.__version__, "model": args.model, "batch": args.batch,
              "threads": args.threads, "repeats": args.repeats, "summary": summary, "layers": layers}
    out = HERE.parent / "results" / f"structured-conv-ceiling-{args.model}-b{args.batch}-t{args.threads}.json"
    write_record(out, result)


if __name__ == "__main__":
    main()
