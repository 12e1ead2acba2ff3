"""Does a deployment-style cleanup of the memory-bound layers lift the CNN speedup towards the MACs reduction?

Prunes a network by 50% of channels with prunekit (as in cnn.py), then builds a deployment copy of the dense and
the pruned model alike: every BatchNorm that directly follows a convolution is folded into it, a symmetric
zero padding before a convolution becomes the convolution's own padding (EfficientNet-lite's TF-"same"
padding), and ReLU / ReLU6 run in place. Checks that the copies give the same outputs, then times all four in
channels_last, interleaved, medians.

  python bench/structured/cnn_fold.py --model efficientnet_lite0 --batch 8 32 [--threads 2] [--repeats 9]
Writes bench/results/structured-cnn-fold-<model>.json.
"""

from __future__ import annotations

import argparse
import copy
from datetime import date
from pathlib import Path

import torch
from cnn import MODELS, dense_and_pruned, forward_with_hooks, latency, macs
from torch import nn

from prunekit.evaluate.records import write_record

HERE = Path(__file__).resolve().parent


def conv_bn_pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """(conv, batchnorm) module names where the BatchNorm's input is the convolution's output tensor."""
    producer, pairs = {}, []

    def watch(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                producer[output.data_ptr()] = name
            elif args[0].data_ptr() in producer:
                pairs.append((producer[args[0].data_ptr()], name))
        return hook

    forward_with_hooks(model, x, (nn.Conv2d, nn.BatchNorm2d), watch)
    return pairs


def deployment_copy(model: nn.Module, x: torch.Tensor) -> nn.Module:
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    with torch.no_grad():
        for conv_name, bn_name in conv_bn_pairs(model, x):
            conv, bn = modules[conv_name], modules[bn_name]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            parent, _, attr = bn_name.rpartition(".")
            setattr(modules[parent] if parent else model, attr, nn.Identity())
    for module in model.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(module, nn.Conv2d) and isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom and module.padding == (0, 0):
                module.padding, module.static_padding = (top, left), nn.Identity()
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            module.inplace = True
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=list(MODELS), default="efficientnet_lite0")
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dense, pruned, size, _ = dense_and_pruned(args.model)
    reduction = macs(dense, size) / macs(pruned, size)
    probe = torch.randn(2, 3, size, size)
    models = {"dense": dense, "pruned": pruned,
              "dense_folded": deployment_copy(dense, probe), "pruned_folded": deployment_copy(pruned, probe)}
    with torch.inference_mode():
        error = {k: float((models[f"{k}_folded"](probe) - models[k](probe)).abs().max()) for k in ("dense", "pruned")}
    print(f"{args.model}: MACs reduction {reduction:.2f}x; max |folded - original| {error}")
    rows = []
    for batch in args.batch:
        x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
        timed = {k: copy.deepcopy(m).to(memory_format=torch.channels_last) for k, m in models.items()}
        ms = {k: v * 1e3 for k, v in latency(timed, x, args.repeats).items()}
        row = {"batch": batch, "latency_ms": ms,
               "eager_over_macs_reduction": ms["dense"] / ms["pruned"] / reduction,
               "folded_over_macs_reduction": ms["dense_folded"] / ms["pruned_folded"] / reduction}
        rows.append(row)
        print(f"batch {batch}: eager {ms['dense']:.1f} -> {ms['pruned']:.1f} ms "
              f"({row['eager_over_macs_reduction']:.3f} of the MACs reduction); folded {ms['dense_folded']:.1f} -> "
              f"{ms['pruned_folded']:.1f} ms ({row['folded_over_macs_reduction']:.3f})", flush=True)
    result = {"date": date.today().isoformat(), "torch": torch.__version__, "model": args.model,
              "threads": args.threads, "macs_reduction": reduction, "max_abs_error": error, "rows": rows}
    write_record((HERE.parent / "results" / f"structured-cnn-fold-{args.model}.json"), result)


if __name__ == "__main__":
    main()
