"""Structured pruning of CNNs at 50% of channels: real CPU speedup vs MACs, and side by side with
Torch-Pruning (its own venv, run as a subprocess) at the same target.

ResNet-56 (CIFAR shape, random init, batch 32 at 32 px) and EfficientNet-lite0 (ImageNet weights,
batch 8 at 224 px; top-1 on the 20 ImageNet images that ship in the foolbox wheel, when it is
installed with `pip install --no-deps foolbox`, preprocessed the lite way: (x - 0.498) / 0.502).
Both tools prune every channel group by 50% with the L2 group norm (uniform) and keep the
classifier's outputs; no fine-tuning. Latency under `torch.inference_mode`, at each `--batch` and memory format
(`--formats contiguous channels_last`; models and input converted alike), `--threads` threads (default one: the
2 shared cores make two-thread timings noisy), dense / ours / Torch-Pruning forwards interleaved, medians.
MACs of all models are counted by prunekit's graph (Linear/Conv only), so the comparison uses one counter.

  python bench/structured/cnn.py [--tp-python /work/bench-venvs/tp/bin/python] [--repeats 15]
      [--batch 32 128 512] [--formats contiguous channels_last] [--threads 2]
Writes bench/results/structured-cnn.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from nets import efficientnet_lite0, resnet56

from prunekit.evaluate.records import write_record
from prunekit.graph import DependencyGraph
from prunekit.models import LoadedModel
from prunekit.prune.structured import StructuredPruneConfig, prune_structured

HERE = Path(__file__).resolve().parent

MODELS = {"resnet56": (resnet56, 32, 32), "efficientnet_lite0": (efficientnet_lite0, 224, 8)}


def macs(model: torch.nn.Module, size: int) -> int:
    return DependencyGraph.build(model, torch.randn(1, 3, size, size)).estimate({})["macs"]


def ours(dense: torch.nn.Module, size: int, ratio: float, repeats: int) -> tuple[torch.nn.Module, dict, list]:
    config = StructuredPruneConfig(ratio=ratio, target="channels", scope=["channels"], allocation="uniform")
    seconds, report, model = [], None, None
    for _ in range(repeats):
        model = copy.deepcopy(dense)
        report = prune_structured(LoadedModel(model, None, None, "cnn"), config, method="l2",
                                  example_inputs=torch.randn(1, 3, size, size))
        seconds.append(report["graph_seconds"] + report["score_seconds"] + report["prune_seconds"])
    return model, report, seconds


def dense_and_pruned(name: str, ratio: float = 0.5) -> tuple[torch.nn.Module, torch.nn.Module, int, int]:
    """(dense, pruned by `ratio` of channels with prunekit, image size, default batch), both in eval mode."""
    make, size, default_batch = MODELS[name]
    dense = make().eval()
    return dense, ours(dense, size, ratio, 1)[0].eval(), size, default_batch


def torch_pruning(python: str, name: str, ratio: float, repeats: int) -> tuple[torch.nn.Module, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tp.pt"
        proc = subprocess.run([python, str(HERE / "_tp_worker.py"), name, str(ratio), str(repeats), str(out)],
                              capture_output=True, text=True, check=True)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        return torch.load(out, weights_only=False).eval(), info


def forward_with_hooks(model: torch.nn.Module, x: torch.Tensor, kinds: tuple[type, ...], make_hook) -> None:
    """One forward of `x` (inference mode) with the forward hook `make_hook(name)` on every module of `kinds`."""
    hooks = [m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if isinstance(m, kinds)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()


def latency(models: dict[str, torch.nn.Module], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per forward, runs interleaved across models."""
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():  # warm-up
            m(x)
            m(x)
        for _ in range(repeats):
            for name, m in models.items():
                start = time.perf_counter()
                m(x)
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def foolbox_top1(models: dict[str, torch.nn.Module]) -> dict[str, float] | None:
    """Top-1 on foolbox's 20 ImageNet samples (files imagenet_<i>_<label>.jpg), without importing foolbox."""
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        return None
    import numpy as np
    from PIL import Image

    files = sorted(Path(list(spec.submodule_search_locations)[0], "data").glob("imagenet_*.jpg"))
    images, labels = [], []
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB").resize((224, 224)), dtype=np.float32) / 255  # (H, W, 3)
        images.append((torch.from_numpy(rgb).permute(2, 0, 1) - 0.498) / 0.502)
        labels.append(int(f.stem.split("_")[-1]))
    x, y = torch.stack(images), torch.tensor(labels)
    with torch.no_grad():
        return {k: float((m(x).argmax(1) == y).float().mean()) for k, m in models.items()}


def run(name: str, tp_python: str | None, ratio: float, repeats: int, rounds: int = 3,
        batches: list[int] | None = None, formats: tuple[str, ...] = ("contiguous",)) -> dict:
    """Prune `name` with both tools, then time dense / ours / TP at every batch size and memory format."""
    make, size, default_batch = MODELS[name]
    dense = make()
    our_seconds, tp_seconds, info = [], [], {}
    for _ in range(rounds):  # prune timings interleaved with Torch-Pruning's; the first run of a block is warm-up
        pruned, report, seconds = ours(dense, size, ratio, 4)
        our_seconds += seconds[1:]
        if tp_python:
            tp_model, info = torch_pruning(tp_python, name, ratio, 4)
            tp_seconds += info["seconds"][1:]
    models = {"dense": dense, "ours": pruned}
    row = {"model": name, "image": size, "ratio": ratio,
           "macs_dense": macs(dense, size), "macs_ours": macs(pruned, size),
           "params_dense": report["params_before"], "params_ours": report["params_after"],
           "ours_prune_seconds_median": statistics.median(our_seconds), "ours_prune_seconds": our_seconds}
    if tp_python:
        models["torch_pruning"] = tp_model
        row.update({"macs_tp": macs(tp_model, size), "params_tp": info["params_after"],
                    "tp_prune_seconds_median": statistics.median(tp_seconds), "tp_prune_seconds": tp_seconds,
                    "tp_own_counter_macs": [info["tp_macs_before"], info["tp_macs_after"]],
                    "torch_pruning_version": info["torch_pruning"]})
        row["macs_ours_vs_tp"] = row["macs_ours"] / row["macs_tp"] - 1
    row["macs_reduction"] = row["macs_dense"] / row["macs_ours"]
    row["latency"] = []
    for b in batches or [default_batch]:
        for fmt in formats:
            x = torch.randn(b, 3, size, size)
            timed = models
            if fmt == "channels_last":
                timed = {k: copy.deepcopy(m).to(memory_format=torch.channels_last) for k, m in models.items()}
                x = x.to(memory_format=torch.channels_last)
            lat = latency(timed, x, repeats)
            entry = {"batch": b, "format": fmt, "latency_ms": {k: v * 1000 for k, v in lat.items()},
                     "speedup": lat["dense"] / lat["ours"]}
            entry["speedup_over_macs_reduction"] = entry["speedup"] / row["macs_reduction"]
            if "torch_pruning" in lat:
                entry["speedup_tp"] = lat["dense"] / lat["torch_pruning"]
            row["latency"].append(entry)
            print(f"{name} batch {b} {fmt}: dense {entry['latency_ms']['dense']:.1f} ms, ours "
                  f"{entry['latency_ms']['ours']:.1f} ms, speedup {entry['speedup']:.2f}x = "
                  f"{entry['speedup_over_macs_reduction']:.3f} of the MACs reduction", flush=True)
    if name == "efficientnet_lite0":
        row["foolbox_top1_20_images"] = foolbox_top1(models)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tp-python", default=None, help="python of a venv with torch-pruning installed")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="batch sizes to time (default: each model's own, ResNet-56 32, EfficientNet-lite0 8)")
    parser.add_argument("--formats", nargs="+", default=["contiguous"], choices=["contiguous", "channels_last"],
                        help="memory formats to time (models and input converted alike)")
    parser.add_argument("--out", default="structured-cnn.json", help="file name under bench/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run(m, args.tp_python, args.ratio, args.repeats, batches=args.batch, formats=tuple(args.formats))
            for m in args.models]
    result = {"date": date.today().isoformat(), "torch": torch.__version__, "threads": args.threads, "rows": rows}
    out = HERE.parent / "results" / args.out
    write_record(out, result)
    for r in rows:
        tp = ""
        if "macs_tp" in r:
            tp = (f" | TP MACs {r['macs_tp'] / 1e6:.1f}M ({r['macs_ours_vs_tp']:+.2%}), "
                  f"prune {r['tp_prune_seconds_median']:.3f}s")
        print(f"{r['model']}: MACs {r['macs_dense'] / 1e6:.1f}M -> {r['macs_ours'] / 1e6:.1f}M "
              f"({r['macs_reduction']:.2f}x), prune {r['ours_prune_seconds_median']:.3f}s{tp}"
              + (f" | top-1 (20 images) {r['foolbox_top1_20_images']}" if r.get("foolbox_top1_20_images") else ""))
        for e in r["latency"]:
            print(f"  batch {e['batch']:4d} {e['format']:13s} {e['latency_ms']['dense']:8.1f} -> "
                  f"{e['latency_ms']['ours']:7.1f} ms  speedup {e['speedup']:.2f}x"
                  + (f" (TP {e['speedup_tp']:.2f}x)" if "speedup_tp" in e else "")
                  + f"  = {e['speedup_over_macs_reduction']:.3f} of the MACs reduction")


if __name__ == "__main__":
    main()
