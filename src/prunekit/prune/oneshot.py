"""One-shot weight pruning of every selected Linear-like layer: magnitude, random, Wanda, SparseGPT.

Data-free criteria (magnitude, random) prune each layer directly. Wanda and SparseGPT run block by
block (prunekit.calib.sequential): a block's layers are pruned group by group in execution order
(q/k/v, then o, then gate/up, then down), each group calibrated on the inputs it receives after the
earlier groups were pruned, and the pruned block's outputs feed the next block. Allocation (uniform,
global, OWL, RD) first fixes a ratio per layer; N:M patterns fix N of every M weights per row group.
SparseGPT with `dense_targets` > 0 also runs every block of the dense model on the dense hidden states,
so each layer's inputs in the dense model are known (asymmetric calibration, prune/asymmetric.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from ..allocate.global_threshold import global_threshold_masks, ratios_from_masks
from ..calib.collectors import CrossMomentCollector, HessianCollector, InputNormCollector
from ..calib.sequential import block_output, sequential_blocks
from ..core.memory import PeakMemory
from ..core.patterns import NM, nm_keep_mask, unstructured_keep_mask
from ..importance.magnitude import magnitude_scores
from ..importance.random import random_scores
from ..importance.wanda import wanda_scores
from ..utils.hooks import HookSet
from ..utils.progress import track
from .asymmetric import dense_target_map
from .config import WeightPruneConfig
from .layers import PrunableLayer, select_layers
from .sparsegpt import inverse_factor, sparsegpt_prune

MAX_LAYER_SPARSITY = 0.99  # a global threshold may empty a layer; keep 1% so the layer still carries signal
STATISTIC = {"magnitude": None, "random": None, "wanda": "norms", "sparsegpt": "hessian"}


@dataclass
class HessianStat:
    """SparseGPT's statistic of one input tensor, shared by the layers that read it (q/k/v, gate/up), so
    the inverse factor and the dense-target map are computed once per input, not once per layer."""

    hessian: torch.Tensor  # (in, in)
    cross: torch.Tensor | None = None  # (in, in) cross moment with the dense model's input (dense targets)
    _factor: torch.Tensor | None = None
    _map: torch.Tensor | None = None

    def factor(self, damp: float) -> torch.Tensor:
        if self._factor is None:
            self._factor = inverse_factor(self.hessian, damp)
        return self._factor

    def dense_map(self, damp: float, mix: float) -> torch.Tensor:
        if self._map is None:
            self._map = dense_target_map(self.hessian, self.cross, damp=damp, mix=mix)
        return self._map


def prune_weights(loaded: Any, config: WeightPruneConfig, ctx: Any, *, method: str) -> dict:
    """Prune `loaded.model` in place; return per-layer requested/actual sparsity and timings."""
    if method not in STATISTIC:
        raise ValueError(f"Unknown weight pruning method '{method}'. Valid choices: {', '.join(STATISTIC)}")
    model = loaded.model
    layers, skipped = select_layers(model, config.include, config.exclude)
    nm = NM(*config.nm) if config.nm else None
    needs_data = STATISTIC[method] is not None or config.allocation in ("owl", "rd")
    batches = ctx.calibration(loaded.tokenizer) if needs_data else None
    start = time.perf_counter()
    unseen: list[str] = []
    with PeakMemory() as memory, torch.no_grad():
        ratios = allocate(loaded, layers, config, method, batches)
        if STATISTIC[method] is None:
            generator = torch.Generator().manual_seed(ctx.recipe.calibration.seed)
            for layer in track(layers, f"{method}", total=len(layers)):
                prune_layer(layer, method, ratios[layer.name], nm, None, config, generator)
        else:
            unseen = prune_sequentially(loaded, layers, ratios, nm, config, method, batches)
    seconds = time.perf_counter() - start
    report = {}
    for layer in layers:
        weight = layer.weight_view()
        actual = 1.0 - torch.count_nonzero(weight).item() / weight.numel()
        report[layer.name] = {"requested": nm_sparsity(nm, ratios[layer.name]), "actual": actual,
                              "params": weight.numel()}
    total = sum(v["params"] for v in report.values())
    return {
        "layers": report, "skipped": skipped, "no_calibration_input": unseen,
        "prune_seconds": seconds, "peak_rss_bytes": memory.peak,
        "requested_sparsity": sum(v["requested"] * v["params"] for v in report.values()) / total,
        "actual_sparsity": sum(v["actual"] * v["params"] for v in report.values()) / total,
    }


def nm_sparsity(nm: NM | None, ratio: float) -> float:
    return 1 - nm.n / nm.m if nm else ratio


def prune_layer(layer: PrunableLayer, method: str, ratio: float, nm: NM | None, stat: torch.Tensor | None,
                config: WeightPruneConfig, generator: torch.Generator | None = None) -> None:
    """Prune one layer to `ratio` (or N:M) with `method`, given its input statistic.

    For SparseGPT the statistic is a Hessian or a ``HessianStat``; with a cross moment (dense targets)
    the weights are first mapped towards the dense outputs (prune/asymmetric.py).
    """
    weight = layer.weight_view().float()  # (out, in)
    if method == "sparsegpt":
        stat = stat if isinstance(stat, HessianStat) else HessianStat(stat)
        if stat.cross is not None:
            weight = weight @ stat.dense_map(config.damp, config.dense_targets)
        new, _ = sparsegpt_prune(weight, stat.hessian, ratio, nm=nm, block_size=config.block_size,
                                 damp=config.damp, factor=stat.factor(config.damp))
        layer.set_weight(new.to(layer.module.weight.dtype))
        return
    if method == "wanda":
        scores = wanda_scores(weight, stat)
    elif method == "random":
        scores = random_scores(weight, generator)
    else:
        scores = magnitude_scores(weight)
    keep = nm_keep_mask(scores, nm) if nm else unstructured_keep_mask(scores, ratio, per_row=method == "wanda")
    layer.module.weight.data.mul_(keep.t() if layer.transposed else keep)


def prune_sequentially(loaded: Any, layers: list[PrunableLayer], ratios: dict[str, float], nm: NM | None,
                       config: WeightPruneConfig, method: str, batches: torch.Tensor) -> list[str]:
    """Block-by-block calibrated pruning in one forward pass per block; returns layers that saw no input.

    All calibration windows go through a block as one batch. A forward pre-hook on each layer collects
    the statistic of the input the layer is about to receive and prunes the layer before it runs, so
    each layer is calibrated on the outputs of the already pruned layers before it (true sequential
    order: q/k/v, o, gate/up, down), and the pass itself yields the pruned block's outputs for the next
    block. Layers sharing one input (q/k/v, gate/up) share one statistic. Layers outside the blocks are
    calibrated with a final full forward pass.
    """
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
    targets = method == "sparsegpt" and getattr(config, "dense_targets", 0.0) > 0
    dense_stream: list[torch.Tensor] | None = None  # the dense model's hidden states, per chunk
    for index, block, inputs, advance in track(runner, method, total=len(blocks)):
        if targets and dense_stream is None:
            dense_stream = [inputs.hidden(i) for i in range(len(inputs.args))]
        if fused:
            dense_inputs = None
            if targets:
                dense_stream[0], dense_inputs = _layer_inputs(block, inputs, 0, by_block[index], dense_stream[0])
            with HookSet() as hooks:
                _install_pruning_hooks(hooks, by_block[index], ratios, nm, config, method, dense_inputs)
                advance()
        else:
            _prune_block_two_pass(block, inputs, by_block[index], ratios, nm, config, method, dense_stream)
            advance()
        unseen += _prune_unseen(by_block[index], ratios, nm, config)
    if outside:  # e.g. a BERT pooler or an included LM head: statistics from chunked full passes
        stats = collect_full(loaded.model, outside, method, batches, config.batch_size)
        for name, layer in outside.items():
            layer.pruned = name in stats
            if layer.pruned:
                prune_layer(layer, method, ratios[name], nm, stats[name], config)
        unseen += _prune_unseen(outside, ratios, nm, config)
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


def _install_pruning_hooks(hooks: HookSet, layers: dict[str, PrunableLayer], ratios: dict[str, float],
                           nm: NM | None, config: WeightPruneConfig, method: str,
                           dense_inputs: dict[str, torch.Tensor] | None = None) -> None:
    # The statistic of the input tensor now flowing; q/k/v (and gate/up) receive the same tensor object.
    # Holding the tensor keeps its memory from being reused by a later input of the same shape.
    # With `dense_inputs` (SparseGPT with dense targets) the statistic carries the cross moment too.
    shared: dict[str, Any] = {"input": None, "stat": None}

    def pre_hook(name: str):
        def hook(_module, args):
            layer = layers[name]
            if getattr(layer, "pruned", False):
                return
            x = args[0]
            if shared["input"] is not x:
                collector = HessianCollector() if STATISTIC[method] == "hessian" else InputNormCollector()
                collector.add_batch(x)
                shared["input"], shared["stat"] = x, collector.result()
                if STATISTIC[method] == "hessian":
                    shared["stat"] = HessianStat(shared["stat"])
                    if dense_inputs is not None and name in dense_inputs:
                        cross = CrossMomentCollector()
                        cross.add_pair(dense_inputs[name], x)
                        shared["stat"].cross = cross.result()
            prune_layer(layer, method, ratios[name], nm, shared["stat"], config)
            layer.pruned = True
        return hook

    for name, layer in layers.items():
        layer.pruned = False
        hooks.forward_pre(layer.module, pre_hook(name))


def _prune_block_two_pass(block: torch.nn.Module, inputs: Any, layers: dict[str, PrunableLayer],
                          ratios: dict[str, float], nm: NM | None, config: WeightPruneConfig, method: str,
                          dense_stream: list[torch.Tensor] | None = None) -> None:
    """For calibration sets too large for one batch: statistics of every layer from the dense block over
    all chunks, then prune (the caller's next pass computes the pruned outputs). Layers that read one input
    tensor (q/k/v, gate/up) share one statistic. With `dense_stream` (dense targets), each chunk also runs on
    the dense model's hidden states, which advance in place."""
    hessian = STATISTIC[method] == "hessian"
    collectors: dict[str, Any] = {}  # one per input tensor, kept by the first layer that reads it
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
        collectors.setdefault(name, HessianCollector() if hessian else InputNormCollector()).add_batch(x)
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
    stats: dict[str, Any] = {}
    for name, layer in layers.items():
        source = owner.get(name)
        if source is None or not collectors[source].n_tokens:
            continue
        if source not in stats:
            stats[source] = collectors[source].result()
            if hessian:
                stats[source] = HessianStat(stats[source], crosses[source].result() if source in crosses else None)
        prune_layer(layer, method, ratios[name], nm, stats[source], config)
        layer.pruned = True


def _prune_unseen(layers: dict[str, PrunableLayer], ratios: dict[str, float], nm: NM | None,
                  config: WeightPruneConfig) -> list[str]:
    """Layers that never ran during calibration fall back to magnitude pruning (and are reported)."""
    unseen = [name for name, layer in layers.items() if not layer.pruned]
    for name in unseen:
        prune_layer(layers[name], "magnitude", ratios[name], nm, None, config)
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


def _collectors(layers: dict[str, PrunableLayer], method: str) -> dict[str, Any]:
    kind = STATISTIC[method]
    return {name: (HessianCollector() if kind == "hessian" else InputNormCollector()) for name in layers}


def _attach(hooks: HookSet, layers: dict[str, PrunableLayer], collectors: dict[str, Any]) -> None:
    for name, layer in layers.items():
        hooks.forward(layer.module, lambda _m, args, _o, c=collectors[name]: c.add_batch(args[0]))


def _results(collectors: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {name: c.result() for name, c in collectors.items() if c.n_tokens}


@torch.no_grad()
def collect_full(model: torch.nn.Module, layers: dict[str, PrunableLayer], method: str, batches: torch.Tensor,
                 batch_size: int = 1) -> dict:
    """Input statistics of `layers` from full forward passes of the model.

    When no selected layer is the output head, only the last position's logits are computed
    (`logits_to_keep=1`): full (B, T, vocab) logits would dominate peak memory for nothing.
    """
    import inspect

    collectors = _collectors(layers, method)
    head = getattr(model, "lm_head", None)
    extra = {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters and all(
            layer.module is not head for layer in layers.values()):
        extra["logits_to_keep"] = 1
    with HookSet() as hooks:
        _attach(hooks, layers, collectors)
        for start in range(0, batches.shape[0], batch_size):
            model(input_ids=batches[start : start + batch_size], use_cache=False, **extra)
    return _results(collectors)


def allocate(loaded: Any, layers: list[PrunableLayer], config: WeightPruneConfig, method: str,
             batches: torch.Tensor | None) -> dict[str, float]:
    """Per-layer sparsity: uniform, one global threshold, OWL (per block), or RD (dynamic programming)."""
    names = [layer.name for layer in layers]
    if config.allocation == "uniform" or config.sparsity == 0:
        return dict.fromkeys(names, config.sparsity)
    norms = None
    if method in ("wanda", "sparsegpt") or config.allocation in ("owl", "rd"):
        norms = collect_full(loaded.model, {layer.name: layer for layer in layers}, "wanda", batches,
                             config.batch_size)
    if config.allocation == "global":
        scores = {layer.name: _score(layer, method, norms) for layer in layers}
        ratios = ratios_from_masks(global_threshold_masks(scores, config.sparsity))
        return {name: min(ratio, MAX_LAYER_SPARSITY) for name, ratio in ratios.items()}
    if config.allocation == "owl":
        from ..allocate.owl import outlier_ratio, owl_ratios_from_outliers

        groups: dict[str, list[PrunableLayer]] = {}
        for layer in layers:
            index = _block_of(loaded.adapter, layer.name)
            groups.setdefault(f"block{index}" if index is not None else layer.name, []).append(layer)
        outliers = {key: outlier_ratio([wanda_scores(x.weight_view().float(), norms[x.name]) for x in group],
                                       config.owl_threshold) for key, group in groups.items()}
        params = {key: sum(x.weight_view().numel() for x in group) for key, group in groups.items()}
        block_ratios = owl_ratios_from_outliers(outliers, params, config.sparsity, config.owl_lambda)
        return {x.name: block_ratios[key] for key, group in groups.items() for x in group}
    from .rd_curves import rd_allocation

    return rd_allocation(loaded, layers, config, lambda layer: _score(layer, method, norms), batches)


def _score(layer: PrunableLayer, method: str, norms: dict | None) -> torch.Tensor:
    weight = layer.weight_view().float()
    if norms is not None and layer.name in norms and method != "magnitude":
        return wanda_scores(weight, norms[layer.name])
    return magnitude_scores(weight)
