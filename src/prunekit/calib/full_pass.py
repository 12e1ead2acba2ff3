"""Input statistics of chosen layers from full forward passes of the model.

For what block-by-block calibration (calib/sequential.py) does not cover: layers outside the decoder blocks
(a BERT pooler, an included LM head), and allocations that compare every layer of the dense model at once
(global threshold, OWL, RD).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from ..utils.hooks import HookSet
from .collectors import Collector


@torch.no_grad()
def collect_inputs(model: nn.Module, modules: Mapping[str, nn.Module], make: Callable[[], dict[str, Collector]],
                   batches: Tensor, batch_size: int = 1) -> dict[str, dict[str, Tensor]]:
    """{name: {statistic: result}} of the inputs each of `modules` receives over `batches` (samples, seq_len)
    token ids, run `batch_size` windows at a time; `make()` gives one fresh {statistic: Collector} per module.
    Modules that received no token are left out.

    When none of `modules` is the output head, only the last position's logits are computed
    (`logits_to_keep=1`): full (B, T, vocab) logits would dominate peak memory for nothing.
    """
    collectors = {name: make() for name in modules}
    head = getattr(model, "lm_head", None)
    extra = {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters and all(
            module is not head for module in modules.values()):
        extra["logits_to_keep"] = 1

    def hook(name: str):
        def record(_module, args, _out):
            for collector in collectors[name].values():
                collector.add_batch(args[0])
        return record

    with HookSet() as hooks:
        for name, module in modules.items():
            hooks.forward(module, hook(name))
        for start in range(0, batches.shape[0], batch_size):
            model(input_ids=batches[start : start + batch_size], use_cache=False, **extra)
    return {name: {stat: c.result() for stat, c in group.items()} for name, group in collectors.items()
            if group and next(iter(group.values())).n_tokens}
