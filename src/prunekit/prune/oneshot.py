"""One-shot weight pruning of every selected Linear-like layer with a registered criterion (importance/criterion.py).

A criterion (magnitude, random, Wanda, RIA, D-Pruner) scores each weight and the lowest are pruned per row, per
layer or N:M; a solver (SparseGPT) chooses and updates the weights itself. Criteria that need no data prune each
layer directly. Calibrated ones run block by block (prunekit.calib.sequential): a block's layers are pruned group
by group in execution order (q/k/v, then o, then gate/up, then down), each group calibrated on the inputs it
receives after the earlier groups were pruned, and the pruned block's outputs feed the next block. Allocation
(uniform, global, OWL, RD) first fixes a ratio per layer; N:M patterns fix N of every M weights per row group.
SparseGPT with `dense_targets` > 0 also runs every block of the dense model on the dense hidden states,
so each layer's inputs in the dense model are known (asymmetric calibration, prune/asymmetric.py).
"""

from __future__ import annotations

import time
from collections import ChainMap
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..allocate.global_threshold import global_threshold_masks, ratios_from_masks
from ..calib.collectors import Collector, CrossMomentCollector, HessianCollector, InputNormCollector
from ..calib.full_pass import collect_inputs
from ..calib.sequential import block_output, sequential_blocks
from ..core.memory import PeakMemory
from ..core.patterns import NM, nm_keep_mask, unstructured_keep_mask
from ..errors import ConfigError
from ..importance.criterion import CRITERIA, Criterion
from ..importance.magnitude import MAGNITUDE, magnitude_scores
from ..importance.wanda import wanda_scores
from ..utils.hooks import HookSet
from ..utils.progress import track
from .config import WeightPruneConfig
from .inputs import NO_INPUTS, PruneInputs
from .layers import PrunableLayer, select_layers
from .result import PruneResult

MAX_LAYER_SPARSITY = 0.99  # a global threshold may empty a layer; keep 1% so the layer still carries signal
COLLECTORS = {"norms": InputNormCollector, "hessian": HessianCollector}  # the input statistics of criterion.py


@dataclass
class LayerPruner:
    """Prunes one layer at a time with `criterion`: to its ratio in `ratios` (or the N:M pattern `nm`), given the
    statistics of its input; `extra` holds the per-layer statistics the criterion's `prepare` computed."""

    criterion: Criterion
    config: WeightPruneConfig
    ratios: dict[str, float]
    nm: NM | None = None
    extra: dict[str, dict] = field(default_factory=dict)

    def __call__(self, layer: PrunableLayer, stats: MutableMapping[str, Any],
                 criterion: Criterion | None = None) -> None:
        """Prune `layer` with `criterion` (default: the pruner's own; magnitude for layers that saw no input)."""
        criterion = criterion or self.criterion
        if layer.name in self.extra:  # lookups fall through to the layer's own statistics; writes stay shared
            stats = ChainMap(stats, self.extra[layer.name])
        weight = layer.weight_view().float()  # (out, in)
        ratio = self.ratios[layer.name]
        if criterion.solve is not None:
            new = criterion.solve(weight, stats, ratio, self.nm, self.config)  # (out, in)
            layer.set_weight(new.to(layer.module.weight.dtype))
            return
        scores = criterion.score(weight, stats, self.config)  # (out, in), higher = keep
        if self.nm:
            keep = nm_keep_mask(scores, self.nm)
        else:
            keep = unstructured_keep_mask(scores, ratio, per_row=criterion.group == "row")
        layer.module.weight.data.mul_(keep.t() if layer.transposed else keep)


def prune_weights(loaded: Any, config: WeightPruneConfig, inputs: PruneInputs = NO_INPUTS, *,
                  method: str) -> PruneResult:
    """Prune `loaded.model` in place with the criterion registered as `method`; the result has per-layer
    requested/actual sparsity and timings."""
    criterion: Criterion = CRITERIA.load(method)
    layers, skipped = select_layers(loaded.model, config.include, config.exclude)
    nm = NM(*config.nm) if config.nm else None
    needs_data = criterion.calibrated or config.allocation in ("owl", "rd")
    if needs_data and loaded.adapter is None:
        raise ConfigError(f"{method} (allocation {config.allocation}) calibrates block by block through a "
                          f"transformer's decoder blocks; {type(loaded.model).__name__} is not a supported "
                          "transformer. For other models use a data-free criterion (magnitude, random) with "
                          "uniform or global allocation, or a structured-* method.")
    batches = inputs.windows(loaded, method) if needs_data else None
    start = time.perf_counter()
    unseen: list[str] = []
    with PeakMemory() as memory:
        extra = criterion.prepare(loaded, layers, config, inputs) if criterion.prepare else {}
        with torch.no_grad():
            ratios = allocate(loaded, layers, config, criterion, batches)
            pruner = LayerPruner(criterion, config, ratios, nm, extra)
            if not criterion.calibrated:
                stats = {"generator": torch.Generator().manual_seed(inputs.seed)}
                for layer in track(layers, method, total=len(layers)):
                    pruner(layer, stats)
            else:
                unseen = prune_sequentially(loaded, layers, pruner, batches, method)
    seconds = time.perf_counter() - start
    report = {}
    for layer in layers:
        weight = layer.weight_view()
        actual = 1.0 - torch.count_nonzero(weight).item() / weight.numel()
        report[layer.name] = {"requested": nm_sparsity(nm, ratios[layer.name]), "actual": actual,
                              "params": weight.numel()}
    total = sum(v["params"] for v in report.values())
    return PruneResult(
        requested=sum(v["requested"] * v["params"] for v in report.values()) / total,
        achieved=sum(v["actual"] * v["params"] for v in report.values()) / total, layers=report,
        details={"skipped": skipped, "no_calibration_input": unseen, "prune_seconds": seconds,
                 "peak_rss_bytes": memory.peak})


def nm_sparsity(nm: NM | None, ratio: float) -> float:
    return 1 - nm.n / nm.m if nm else ratio


def input_collectors(criterion: Criterion) -> dict[str, Collector]:
    """One fresh collector per input statistic the criterion reads."""
    return {name: COLLECTORS[name]() for name in criterion.statistics if name in COLLECTORS}


def _uses_dense_targets(criterion: Criterion, config: WeightPruneConfig) -> bool:
    return "hessian" in criterion.statistics and getattr(config, "dense_targets", 0.0) > 0


def prune_sequentially(loaded: Any, layers: list[PrunableLayer], pruner: LayerPruner, batches: torch.Tensor,
                       label: str = "") -> list[str]:
    """Block-by-block calibrated pruning in one forward pass per block; returns layers that saw no input.

    All calibration windows go through a block as one batch. A forward pre-hook on each layer collects
    the statistics of the input the layer is about to receive and prunes the layer before it runs, so
    each layer is calibrated on the outputs of the already pruned layers before it (true sequential
    order: q/k/v, o, gate/up, down), and the pass itself yields the pruned block's outputs for the next
    block. Layers sharing one input (q/k/v, gate/up) share one statistic. Layers outside the blocks are
    calibrated with a final full forward pass.
    """
    config = pruner.config
    adapter = loaded.adapter
    blocks = adapter.blocks()
    by_block: list[dict[str, PrunableLayer]] = [{} for _ in blocks]
    outside: dict[str, PrunableLayer] = {}
    for layer in layers:
        index = _block_of(adapter, layer.name)
        (by_block[index] if index is not None else outside)[layer.name] = layer
    unseen: list[str] = []
    fused = batches.numel() <= config.max_batch_tokens
    chunk = batches.shape[0] if fused else max(1, config.max_batch_tokens // batches.shape[1])
    runner = sequential_blocks(loaded.model, blocks, batches, batch_size=chunk)
    targets = _uses_dense_targets(pruner.criterion, config)
    dense_stream: list[torch.Tensor] | None = None  # the dense model's hidden states, per chunk
    for index, block, inputs, advance in track(runner, label, total=len(blocks)):
        if targets and dense_stream is None:
            dense_stream = [inputs.hidden(i) for i in range(len(inputs.args))]
        if fused:
            dense_inputs = None
            if targets:
                dense_stream[0], dense_inputs = _layer_inputs(block, inputs, 0, by_block[index], dense_stream[0])
            with HookSet() as hooks:
                _install_pruning_hooks(hooks, by_block[index], pruner, dense_inputs)
                advance()
        else:
            _prune_block_two_pass(block, inputs, by_block[index], pruner, dense_stream)
            advance()
        unseen += _prune_unseen(by_block[index], pruner)
    if outside:  # e.g. a BERT pooler or an included LM head: statistics from chunked full passes
        stats = collect_inputs(loaded.model, {n: x.module for n, x in outside.items()},
                               lambda: input_collectors(pruner.criterion), batches, config.batch_size)
        for name, layer in outside.items():
            layer.pruned = name in stats
            if layer.pruned:
                pruner(layer, stats[name])
        unseen += _prune_unseen(outside, pruner)
    return unseen


def _run_block(block: torch.nn.Module, inputs: Any, i: int, layers: dict[str, PrunableLayer], hidden: torch.Tensor,
               on_input: Any) -> torch.Tensor:
    """Run `block` on chunk `i`'s arguments with `hidden` as its hidden states, calling `on_input(name, x)`
    with the input x of each of `layers` (its first call only); return the block's output."""
    done: set[str] = set()

    def hook(name: str):
        def pre(_module, args):
            if name not in done:
                done.add(name)
                on_input(name, args[0])
        return pre

    with HookSet() as hooks:
        for name, layer in layers.items():
            hooks.forward_pre(layer.module, hook(name))
        return block_output(block(hidden, *inputs.args[i][1:], **inputs.kwargs[i]))


def _layer_inputs(block: torch.nn.Module, inputs: Any, i: int, layers: dict[str, PrunableLayer],
                  hidden: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The block's output on `hidden` (chunk `i`) and the input each of `layers` received."""
    seen: dict[str, torch.Tensor] = {}
    out = _run_block(block, inputs, i, layers, hidden, seen.__setitem__)
    return out, seen


def _install_pruning_hooks(hooks: HookSet, layers: dict[str, PrunableLayer], pruner: LayerPruner,
                           dense_inputs: dict[str, torch.Tensor] | None = None) -> None:
    # The statistics of the input tensor now flowing; q/k/v (and gate/up) receive the same tensor object.
    # Holding the tensor keeps its memory from being reused by a later input of the same shape.
    # With `dense_inputs` (SparseGPT with dense targets) the statistics carry the cross moment too.
    shared: dict[str, Any] = {"input": None, "stats": None}

    def pre_hook(name: str):
        def hook(_module, args):
            layer = layers[name]
            if getattr(layer, "pruned", False):
                return
            x = args[0]
            if shared["input"] is not x:
                collectors = input_collectors(pruner.criterion)
                for collector in collectors.values():
                    collector.add_batch(x)
                stats = {stat: collector.result() for stat, collector in collectors.items()}
                if dense_inputs is not None and name in dense_inputs:
                    cross = CrossMomentCollector()
                    cross.add_pair(dense_inputs[name], x)
                    stats["cross"] = cross.result()
                shared["input"], shared["stats"] = x, stats
            pruner(layer, shared["stats"])
            layer.pruned = True
        return hook

    for name, layer in layers.items():
        layer.pruned = False
        hooks.forward_pre(layer.module, pre_hook(name))


def _prune_block_two_pass(block: torch.nn.Module, inputs: Any, layers: dict[str, PrunableLayer],
                          pruner: LayerPruner, dense_stream: list[torch.Tensor] | None = None) -> None:
    """For calibration sets too large for one batch: statistics of every layer from the dense block over
    all chunks, then prune (the caller's next pass computes the pruned outputs). Layers that read one input
    tensor (q/k/v, gate/up) share one statistic. With `dense_stream` (dense targets), each chunk also runs on
    the dense model's hidden states, which advance in place."""
    collectors: dict[str, dict[str, Collector]] = {}  # one group per input tensor, kept by its first reader
    crosses: dict[str, CrossMomentCollector] = {}
    owner: dict[str, str] = {}  # layer -> the first layer that read the same input (q/k/v, gate/up)
    previous: dict[str, Any] = {"input": None, "name": None}  # holding the tensor keeps its identity unique
    kept: dict[str, torch.Tensor] = {}  # one chunk's pruned-stream inputs, only to pair with the dense ones
    for layer in layers.values():
        layer.pruned = False

    def add(name: str, x: torch.Tensor) -> None:
        if previous["input"] is x:
            owner[name] = previous["name"]
            return
        owner[name] = name
        previous["input"], previous["name"] = x, name
        for collector in collectors.setdefault(name, input_collectors(pruner.criterion)).values():
            collector.add_batch(x)
        if dense_stream is not None:
            kept[name] = x

    def pair(name: str, x: torch.Tensor) -> None:
        if owner[name] == name:
            crosses.setdefault(name, CrossMomentCollector()).add_pair(x, kept.pop(name))

    for i in range(len(inputs.args)):
        previous["input"] = None
        _run_block(block, inputs, i, layers, inputs.hidden(i), add)
        if dense_stream is not None:
            dense_stream[i] = _run_block(block, inputs, i, layers, dense_stream[i], pair)
    previous["input"] = None
    stats: dict[str, dict[str, Any]] = {}
    for name, layer in layers.items():
        source = owner.get(name)
        if source is None or not next(iter(collectors[source].values())).n_tokens:
            continue
        if source not in stats:
            stats[source] = {stat: collector.result() for stat, collector in collectors[source].items()}
            if source in crosses:
                stats[source]["cross"] = crosses[source].result()
        pruner(layer, stats[source])
        layer.pruned = True


def _prune_unseen(layers: dict[str, PrunableLayer], pruner: LayerPruner) -> list[str]:
    """Layers that never ran during calibration fall back to magnitude pruning (and are reported)."""
    unseen = [name for name, layer in layers.items() if not layer.pruned]
    for name in unseen:
        pruner(layers[name], {}, MAGNITUDE)
    return unseen


def _block_of(adapter: Any, name: str) -> int | None:
    prefixes = getattr(adapter, "_prefix_cache", None)
    if prefixes is None:
        prefixes = [adapter.block_prefix(i) + "." for i in range(adapter.num_layers)]
        adapter._prefix_cache = prefixes
    for index, prefix in enumerate(prefixes):
        if name.startswith(prefix):
            return index
    return None


def allocate(loaded: Any, layers: list[PrunableLayer], config: WeightPruneConfig, criterion: Criterion,
             batches: torch.Tensor | None) -> dict[str, float]:
    """Per-layer sparsity: uniform, one global threshold, OWL (per block), or RD (dynamic programming). Global
    and RD compare layers with the scores of `criterion.ranking`, from the dense model's input norms."""
    names = [layer.name for layer in layers]
    if config.allocation == "uniform" or config.ratio == 0:
        return dict.fromkeys(names, config.ratio)
    ranking = criterion.ranking
    norms = None
    if "norms" in ranking.statistics or config.allocation == "owl":
        norms = collect_inputs(loaded.model, {layer.name: layer.module for layer in layers},
                               lambda: {"norms": InputNormCollector()}, batches, config.batch_size)
    if config.allocation == "global":
        scores = {layer.name: _rank_score(layer, ranking, norms, config) for layer in layers}
        ratios = ratios_from_masks(global_threshold_masks(scores, config.ratio))
        return {name: min(ratio, MAX_LAYER_SPARSITY) for name, ratio in ratios.items()}
    if config.allocation == "owl":
        from ..allocate.owl import outlier_ratio, owl_ratios_from_outliers

        groups: dict[str, list[PrunableLayer]] = {}
        for layer in layers:
            index = _block_of(loaded.adapter, layer.name)
            groups.setdefault(f"block{index}" if index is not None else layer.name, []).append(layer)
        outliers = {key: outlier_ratio([wanda_scores(x.weight_view().float(), norms[x.name]["norms"])
                                        for x in group], config.owl_threshold) for key, group in groups.items()}
        params = {key: sum(x.weight_view().numel() for x in group) for key, group in groups.items()}
        block_ratios = owl_ratios_from_outliers(outliers, params, config.ratio, config.owl_lambda)
        return {x.name: block_ratios[key] for key, group in groups.items() for x in group}
    from .rd_curves import rd_allocation

    return rd_allocation(loaded, layers, config, lambda layer: _rank_score(layer, ranking, norms, config), batches)


def _rank_score(layer: PrunableLayer, ranking: Criterion, norms: dict | None, config: WeightPruneConfig):
    """`ranking`'s scores of the layer's weights (out, in); magnitude for a layer that saw no calibration input."""
    weight = layer.weight_view().float()
    stats = (norms or {}).get(layer.name)
    if ranking.statistics and stats is None:
        return magnitude_scores(weight)
    return ranking.score(weight, stats or {}, config)
