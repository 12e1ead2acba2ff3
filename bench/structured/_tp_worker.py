"""Torch-Pruning side of bench/structured/cnn.py; runs in Torch-Pruning's own venv.

  python _tp_worker.py MODEL RATIO REPEATS OUT.pt  -> prints JSON; saves the last pruned model to OUT.pt
"""

import copy
import json
import sys
import time

import torch
import torch_pruning as tp
from nets import efficientnet_lite0, resnet56  # noqa: E402


def main() -> None:
    name, ratio, repeats, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    dense = {"resnet56": resnet56, "efficientnet_lite0": efficientnet_lite0}[name]()
    size = 32 if name == "resnet56" else 224
    x = torch.randn(1, 3, size, size)
    head = dense.fc if name == "resnet56" else dense._fc
    macs_before, params_before = tp.utils.count_ops_and_params(dense, x)
    seconds = []
    for _ in range(repeats):
        model = copy.deepcopy(dense)
        ignored = [model.fc if name == "resnet56" else model._fc]
        start = time.perf_counter()
        pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=ratio, ignored_layers=ignored)
        pruner.step()
        seconds.append(time.perf_counter() - start)
    del head
    macs_after, params_after = tp.utils.count_ops_and_params(model, x)
    torch.save(model, out)
    print(json.dumps({"seconds": seconds, "tp_macs_before": macs_before, "tp_macs_after": macs_after,
                      "params_before": params_before, "params_after": params_after,
                      "torch_pruning": getattr(tp, "__version__", "?")}))


if __name__ == "__main__":
    main()
