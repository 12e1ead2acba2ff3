"""Rate-distortion allocation glue (Xu et al., ICCV 2023): measure each layer's distortion curve.

D_l(a) = mean squared difference of the model's output logits from the dense logits when only layer l
is pruned to amount a (with the method's own score), on a few calibration windows. The forward pass
starts at the layer's block from cached dense block inputs, and the logits error is computed without
the (vocab x hidden) head: with logits = h W^T, mean (dh W^T)^2 = sum(dh G * dh) / (tokens * vocab)
for G = W^T W (hidden x hidden), which is exact and about vocab/hidden times cheaper. The curves then
go to the dynamic program in prunekit.allocate.rd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..allocate.rd import rd_ratios
from ..calib.sequential import capture_first_block_inputs, run_block
from ..core.patterns import unstructured_keep_mask
from ..utils.progress import track

AMOUNTS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]


@torch.no_grad()
def rd_allocation(loaded: Any, layers: list, config: Any, score: Callable, batches: torch.Tensor) -> dict[str, float]:
    """Per-layer ratios from measured curves; cost: layers x amounts partial forwards of rd_samples x rd_seq_len."""
    samples, seq_len = config.rd_samples, config.rd_seq_len
    adapter = loaded.adapter
    blocks = adapter.blocks()
    ids = batches[:samples, :seq_len]
    inputs = capture_first_block_inputs(loaded.model, blocks, ids, batch_size=samples)
    block_inputs = []  # dense hidden states entering each block
    for block in blocks:
        block_inputs.append(inputs.hidden(0))
        inputs.with_hidden(0, run_block(block, inputs)[0])
    head, norm = adapter.head(), adapter.final_norm()
    gram = head.weight.t() @ head.weight  # (hidden, hidden)
    vocab = head.weight.shape[0]

    def final_hidden_from(index: int) -> torch.Tensor:
        inputs.with_hidden(0, block_inputs[index])
        for block in blocks[index:]:
            inputs.with_hidden(0, run_block(block, inputs)[0])
        hidden = inputs.hidden(0)
        return (norm(hidden) if norm is not None else hidden).flatten(0, -2)  # (tokens, hidden)

    def logits_mse(delta: torch.Tensor) -> float:
        return ((delta @ gram) * delta).sum().item() / (delta.shape[0] * vocab)

    dense = final_hidden_from(0)
    prefixes = [adapter.block_prefix(i) + "." for i in range(len(blocks))]
    curves, counts = {}, {}
    for layer in track(layers, "rd curves", total=len(layers)):
        index = next(i for i, p in enumerate(prefixes) if layer.name.startswith(p))
        original = layer.weight_view().clone()
        scores = score(layer)
        values = []
        for amount in AMOUNTS:
            if amount == 0:
                values.append(0.0)
                continue
            layer.set_weight(original * unstructured_keep_mask(scores, amount))
            values.append(logits_mse(final_hidden_from(index) - dense))
        layer.set_weight(original)
        curves[layer.name] = torch.tensor(values)
        counts[layer.name] = original.numel()
    return rd_ratios(curves, torch.tensor(AMOUNTS), counts, config.ratio)
