"""Depth pruning: remove whole decoder blocks.

ShortGPT (Men et al., "ShortGPT: Layers in Large Language Models are More Redundant Than You Expect",
2024) removes the blocks that change the hidden state least; here "angular" ranks blocks by the angular
distance arccos(cos(h_in, h_out))/pi of Gromov et al. 2024 (see allocate/block_importance.py) and
removes the smallest. Baselines: "random" (seeded) and "last" (the last blocks).

Importable without torch (the config is read when a recipe is validated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..errors import ConfigError
from .inputs import NO_INPUTS, PruneInputs
from .result import PruneResult

Order = Literal["angular", "random", "last"]
ORDERS = get_args(Order)


@dataclass
class DepthPruneConfig:
    """blocks: how many decoder blocks to remove (an int >= 1) or a fraction of them in (0, 1).
    order: "angular" (least important by calibration angular distance), "random" (seeded) or "last".
    seed: for "random". batch_size: calibration windows per forward (angular)."""

    blocks: float = 0.25
    order: Order = "angular"
    seed: int = 0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ConfigError(f"Unknown order '{self.order}'. Valid choices: {', '.join(ORDERS)}.")
        if self.blocks <= 0 or (self.blocks >= 1 and float(self.blocks) != int(self.blocks)):
            raise ConfigError(f"blocks must be a fraction in (0, 1) or a whole count >= 1, got {self.blocks}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")

    def count(self, n_blocks: int) -> int:
        n = int(self.blocks) if self.blocks >= 1 else int(round(self.blocks * n_blocks))
        if not 1 <= n < n_blocks:
            raise ConfigError(f"blocks={self.blocks} removes {n} of {n_blocks} blocks; remove at least one and "
                              f"keep at least one.")
        return n


def choose_blocks(n_blocks: int, count: int, order: str, importance: Any = None, seed: int = 0) -> list[int]:
    """Sorted indices of the `count` blocks to remove."""
    import torch

    if order == "last":
        return list(range(n_blocks - count, n_blocks))
    if order == "random":
        generator = torch.Generator().manual_seed(seed)
        return sorted(torch.randperm(n_blocks, generator=generator)[:count].tolist())
    if order == "angular":
        if importance is None or len(importance) != n_blocks:
            raise ValueError("order 'angular' needs one importance per block")
        ranked = torch.argsort(torch.as_tensor(importance, dtype=torch.float64), stable=True)
        return sorted(ranked[:count].tolist())
    raise ConfigError(f"Unknown order '{order}'. Valid choices: {', '.join(ORDERS)}.")


def remove_blocks(loaded: Any, indices: list[int]) -> None:
    """Delete blocks `indices` from `loaded.model` in place and sync the config and per-layer indices
    (attention `layer_idx`, so a KV cache is indexed by the new positions; `config.layer_types`)."""
    from torch import nn

    adapter = loaded.adapter
    blocks = adapter.blocks()
    drop = set(indices)
    kept = [b for i, b in enumerate(blocks) if i not in drop]
    kept_idx = [i for i in range(len(blocks)) if i not in drop]
    parent, attr = _owner(loaded.model, blocks)
    setattr(parent, attr, nn.ModuleList(kept))
    config = loaded.model.config
    for new, block in enumerate(kept):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(blocks):
        config.layer_types = [layer_types[i] for i in kept_idx]
    config.num_hidden_layers = len(kept)
    if hasattr(config, "n_layer"):  # gpt2-style configs
        config.n_layer = len(kept)
    adapter.sync_config()


def _owner(model: Any, blocks: Any) -> tuple[Any, str]:
    for module in model.modules():
        for attr, child in module.named_children():
            if child is blocks:
                return module, attr
    raise ValueError("Could not find the module that holds the decoder blocks")


def prune_depth(loaded: Any, config: DepthPruneConfig, inputs: PruneInputs = NO_INPUTS, *, method: str,
                windows: Any = None) -> PruneResult:
    """Remove whole blocks from `loaded.model`; the result details removed blocks, their importance, params_*.

    windows: (samples, seq_len) calibration token ids for "angular" (default: the run's calibration)."""
    import torch

    from ..allocate.block_importance import block_angular_importance

    model, adapter = loaded.model, loaded.adapter
    if adapter is None:
        raise ConfigError(f"Depth pruning needs a supported transformer; {type(model).__name__} has no adapter.")
    blocks = adapter.blocks()
    n_blocks = len(blocks)
    count = config.count(n_blocks)
    importance = None
    if config.order == "angular":
        if windows is None:
            windows = inputs.windows(loaded, "order 'angular'")
        importance = block_angular_importance(model, blocks, windows, config.batch_size)
    removed = choose_blocks(n_blocks, count, config.order, importance, config.seed)
    prefix = {i: n for n, m in model.named_modules() for i, b in enumerate(blocks) if m is b}
    params_before = sum(p.numel() for p in model.parameters())
    layers = {}
    for i, block in enumerate(blocks):
        gone = i in removed
        layers[prefix[i]] = {"kind": "block", "requested": 1.0 if gone else 0.0, "actual": 1.0 if gone else 0.0,
                             "params": sum(p.numel() for p in block.parameters()),
                             "importance": None if importance is None else float(importance[i])}
    with torch.no_grad():
        remove_blocks(loaded, removed)
    params_after = sum(p.numel() for p in model.parameters())
    return PruneResult(requested=count / n_blocks, achieved=len(removed) / n_blocks, layers=layers, details={
        "removed": removed, "order": config.order, "blocks_before": n_blocks, "blocks_after": n_blocks - len(removed),
        "importance": None if importance is None else [float(v) for v in importance],
        "params_before": params_before, "params_after": params_after})
