"""Block-by-block calibration: capture the first block's inputs, then run one block at a time.

As in SparseGPT (Frantar & Alistarh 2023), each block sees the outputs of the already pruned blocks
before it, so later blocks are calibrated on the activations they will really receive. Only one
block's activations are held at a time (one (B, T, d) tensor per calibration batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..utils.hooks import HookSet


class _StopForward(Exception):
    pass


@dataclass
class BlockInputs:
    """Positional and keyword arguments of one call of a block, per calibration batch."""

    args: list[tuple]
    kwargs: list[dict]

    def hidden(self, i: int) -> torch.Tensor:
        return self.args[i][0]

    def with_hidden(self, i: int, hidden: torch.Tensor) -> None:
        self.args[i] = (hidden,) + tuple(self.args[i][1:])


def block_output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple | list) else out


@torch.no_grad()
def capture_first_block_inputs(model: nn.Module, blocks: nn.ModuleList, batches: torch.Tensor,
                               batch_size: int = 1) -> BlockInputs:
    """Run the model on each batch of token ids until block 0 and record what block 0 receives."""
    captured = BlockInputs([], [])

    def grab(_module, args, kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("cache", "past_key_values", "layer_past")}
        kwargs["use_cache"] = False
        captured.args.append(tuple(args))
        captured.kwargs.append(kwargs)
        raise _StopForward

    with HookSet() as hooks:
        hooks.forward_pre(blocks[0], grab, with_kwargs=True)
        for start in range(0, batches.shape[0], batch_size):
            try:
                model(input_ids=batches[start : start + batch_size], use_cache=False)
            except _StopForward:
                pass
    return captured


@torch.no_grad()
def run_block(block: nn.Module, inputs: BlockInputs) -> list[torch.Tensor]:
    """Outputs of `block` for every captured batch."""
    outs = []
    for args, kwargs in zip(inputs.args, inputs.kwargs, strict=True):
        outs.append(block_output(block(*args, **kwargs)))
    return outs


@torch.no_grad()
def execution_groups(block: nn.Module, layers: dict[str, nn.Module], inputs: BlockInputs) -> list[list[str]]:
    """Layers of a block in the order they run, grouped by shared input (q/k/v together, gate/up together)."""
    order: list[tuple[str, torch.Tensor]] = []  # holding the inputs keeps their memory from being reused

    def record(name):
        def hook(_module, args, _out):
            if not any(n == name for n, _ in order):
                order.append((name, args[0]))
        return hook

    with HookSet() as hooks:
        for name, module in layers.items():
            hooks.forward(module, record(name))
        block(*inputs.args[0], **inputs.kwargs[0])
    groups: list[list[str]] = []
    last = None
    for name, tensor in order:
        if groups and last is not None and tensor.data_ptr() == last.data_ptr() and tensor.shape == last.shape:
            groups[-1].append(name)
        else:
            groups.append([name])
        last = tensor
    missing = [n for n in layers if all(n != m for m, _ in order)]
    if missing:
        groups.append(missing)  # never called in a forward pass: pruned without input statistics
    return groups


def sequential_blocks(model: nn.Module, blocks: nn.ModuleList, batches: torch.Tensor,
                      batch_size: int = 1) -> Iterator[tuple[int, nn.Module, BlockInputs, Callable[[], None]]]:
    """Yield (index, block, its inputs, advance); call `advance()` after pruning to feed the next block."""
    inputs = capture_first_block_inputs(model, blocks, batches, batch_size)
    for index, block in enumerate(blocks):
        def advance(block=block):
            for i, out in enumerate(run_block(block, inputs)):
                inputs.with_hidden(i, out)
        yield index, block, inputs, advance
