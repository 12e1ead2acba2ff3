"""Retraining-free structured width pruning of decoder LLMs (attention heads and GLU MLP neurons).

Scores (`criterion`):
- "flap": FLAP's fluctuation score V_j ||W[:, j]||^2 of the inputs of o_proj / down_proj, summed per
  head, standardised per structure type (An et al., AAAI 2024; importance/flap.py);
- "maw" / "vow" / "pon": data-free GLU neuron scores (Martra 2025; importance/glu_width.py), MLP only;
- "cfsp": CFSP's RIA-style channel score with activation norms (Wang et al.; importance/cfsp.py), MLP only;
  "act-norm": ||X_j|| of down_proj's inputs, what CFSP's released code reduces to (the named baseline);
- "l2": L2 norm of each coupled group (DepGraph-style; importance/group_norm.py), standardised alike.
Allocation (`allocation`), to remove `ratio` of the non-embedding parameters:
- "global": one ranking of all units; each unit costs its parameters (a head costs its share);
- "uniform": each decoder block loses the same fraction of its parameters;
- "angular": per-block keep ratios from the angular distance of each block's input and output
  (CFSP, Wang et al.; allocate/block_importance.py); a final global pass fills any shortfall.
Recovery, both from one dense calibration pass: `bias_compensation` (FLAP: b += W[:, removed] mu_removed)
and `refit` (Týr-the-Pruner's local least-squares re-solve of the kept o_proj / down_proj columns;
prune/refit.py; with bias_compensation it also fits the bias), or `scale_tuning` (COMP's per-neuron scales
of the kept columns, a k-parameter special case of the refit; prune/scale_tuning.py).

Slicing is the dependency graph's (`graph.prune`). A new bias on o_proj / down_proj is carried in the
saved config when the architecture can express it (Llama: `attention_bias` / `mlp_bias`, which also
give q/k/v resp. gate/up a zero bias), so plain from_pretrained reads it. Where the config cannot express
it (Qwen2, Mistral) the report says `bias_carried: False`: prunekit.models.load still restores the bias
from the saved weights, plain from_pretrained drops it.

Importable without torch (the config is read when a recipe is validated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..errors import ConfigError
from ..importance.unit_criteria import UNIT_CRITERIA
from .inputs import NO_INPUTS, PruneInputs
from .result import PruneResult
from .structured import HEAD_MODES, HeadMode
from .unit_allocation import allocate_units

UnitAllocation = Literal["global", "uniform", "angular"]
ALLOCATIONS = get_args(UnitAllocation)
SCOPES = ("mlp", "heads")


@dataclass
class LLMStructuredConfig:
    """ratio: fraction of the non-embedding parameters to remove, in [0, 1). criterion: flap, maw, vow, pon,
    cfsp, act-norm, l2. allocation: global, uniform or angular. bias_compensation / refit / scale_tuning:
    recovery without training (refit and scale_tuning exclude each other).
    scope: "mlp" and/or "heads" (default: both, or mlp only for the GLU criteria). head_mode: "kv" (a KV
    head with its query group) or "q" (query heads, evenly from each KV group). max_layer_ratio: most of
    a group's units that may go. min_keep: least keep ratio of a block (angular). damp: refit ridge, a
    fraction of the mean Gram diagonal. batch_size: calibration windows per forward."""

    ratio: float = 0.2
    criterion: str = "flap"
    allocation: UnitAllocation = "global"
    bias_compensation: bool = True
    refit: bool = False
    scale_tuning: bool = False
    scope: list[str] | None = None
    head_mode: HeadMode = "kv"
    max_layer_ratio: float = 0.9
    min_keep: float = 0.05
    damp: float = 0.01
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(f"ratio must be in [0, 1), got {self.ratio}")
        for name, value, choices in (("criterion", self.criterion, UNIT_CRITERIA.names()),
                                     ("allocation", self.allocation, ALLOCATIONS),
                                     ("head_mode", self.head_mode, HEAD_MODES)):
            if value not in choices:
                raise ConfigError(f"Unknown {name} '{value}'. Valid choices: {', '.join(choices)}.")
        if self.scope is not None:
            bad = [s for s in self.scope if s not in SCOPES]
            if bad or not self.scope:
                raise ConfigError(f"scope must be a non-empty list of {', '.join(SCOPES)}; got {self.scope}")
            if UNIT_CRITERIA.load(self.criterion).glu and "heads" in self.scope:
                raise ConfigError(f"criterion '{self.criterion}' scores GLU neurons only; use scope: [mlp].")
        if not 0.0 < self.max_layer_ratio <= 1.0 or not 0.0 <= self.min_keep < 1.0:
            raise ConfigError("max_layer_ratio must be in (0, 1] and min_keep in [0, 1)")
        if self.refit and self.scale_tuning:
            raise ConfigError("refit and scale_tuning exclude each other (the refit already re-solves the scales); "
                              "choose one.")
        if self.damp < 0 or self.batch_size < 1:
            raise ConfigError(f"damp must be >= 0 and batch_size >= 1, got {self.damp}, {self.batch_size}")

    @property
    def resolved_scope(self) -> list[str]:
        if self.scope is not None:
            return list(self.scope)
        return ["mlp"] if UNIT_CRITERIA.load(self.criterion).glu else ["heads", "mlp"]


def prune_llm_structured(loaded: Any, config: LLMStructuredConfig, inputs: PruneInputs = NO_INPUTS, *, method: str,
                         windows: Any = None) -> PruneResult:
    """Prune heads / MLP neurons of `loaded.model` in place; the result has layers, plan, params_*.

    windows: (samples, seq_len) calibration token ids (default: the run's calibration windows)."""
    import torch

    from ..graph.plan import group_shapes, plan_entries

    model, adapter = loaded.model, getattr(loaded, "adapter", None)
    if adapter is None:
        raise ConfigError(f"{type(model).__name__} is not a supported transformer (no adapter).")
    graph, kinds, groups, outputs = prunable_groups(model, adapter, config)
    windows, stats = calibration_statistics(loaded, config, inputs, windows, outputs)
    scores = group_scores(graph, groups, kinds, outputs, stats, config.criterion)
    params_before = sum(p.numel() for p in model.parameters())
    alloc = allocate_units(loaded, graph, groups, scores, config, windows)
    updates = recovery_updates(graph, groups, outputs, alloc.selection, stats, config)
    plan = plan_entries(graph, alloc.selection, kinds)
    with torch.no_grad():
        views = {name: weight for name, weight, _pos in outputs.values()}  # (out, in) views of the weights
        for name, (weight, _bias) in updates.items():
            if weight is not None:
                views[name].copy_(weight)
        graph.prune(alloc.selection)
    adapter.sync_config()
    shapes = group_shapes(graph)
    bias_shapes, carried = add_biases(model, {n: b for n, (_w, b) in updates.items() if b is not None})
    adapter.sync_config()
    details = {
        "criterion": config.criterion, "allocation": config.allocation, "params_before": params_before,
        "params_after": sum(p.numel() for p in model.parameters()), "non_embedding_params": alloc.nonembed,
        "requested": config.ratio, "achieved": alloc.achieved, "bias_compensation": config.bias_compensation,
        "refit": config.refit, "scale_tuning": config.scale_tuning, "bias_carried": carried, "shapes": bias_shapes,
    }
    if alloc.importance is not None:
        details["block_importance"] = [float(v) for v in alloc.importance]
        details["block_ratios"] = [float(v) for v in alloc.block_ratio]
    return PruneResult(requested=config.ratio, achieved=alloc.achieved,
                       layers=alloc.layers(kinds, shapes, config.ratio), plan=plan, details=details)


def prunable_groups(model: Any, adapter: Any, config: LLMStructuredConfig) -> tuple[Any, dict, list, dict]:
    """(dependency graph, {group: kind}, the groups in scope, {group: output_slice})."""
    from ..graph import DependencyGraph
    from ..graph.plan import default_inputs
    from .structured import classify_groups

    graph = DependencyGraph.build(model, default_inputs(model), head_mode=config.head_mode)
    kinds = classify_groups(graph, adapter)
    scope = config.resolved_scope
    groups = [g for g in graph.groups if kinds[g.name] in scope and g.size > 1]
    if not groups:
        raise ConfigError(f"No prunable groups of kinds {scope} in {type(model).__name__}.")
    return graph, kinds, groups, {g.name: output_slice(graph, g) for g in groups}


def calibration_statistics(loaded: Any, config: LLMStructuredConfig, inputs: PruneInputs, windows: Any,
                           outputs: dict) -> tuple[Any, dict]:
    """(calibration windows or None, {output layer: (fluctuation, Hessian or None)}) as the options need them."""
    gram = config.refit or config.scale_tuning
    activations = UNIT_CRITERIA.load(config.criterion).activations or config.bias_compensation or gram
    if (activations or config.allocation == "angular") and windows is None:
        windows = inputs.windows(loaded, f"criterion '{config.criterion}' with these options")
    if not activations:
        return windows, {}
    layers = {name: loaded.model.get_submodule(name) for name, _w, _pos in outputs.values()}
    return windows, collect_input_stats(loaded.model, layers, windows, config.batch_size, gram=gram)


def output_slice(graph: Any, group: Any) -> tuple[str, Any, Any]:
    """(module name, its weight viewed (out, in), unit of each input index (in,)) of the group's output
    projection: the 2-D weight the group slices along its inputs (o_proj for heads, down_proj for MLP
    neurons; nn.Linear stores (out, in), transformers' Conv1D (in, out))."""
    from .layers import linear_kind

    found = []
    for td, pos in graph.param_slices(group):
        if td.tensor.ndim != 2 or not td.sites or td.sites[0][1] != "weight":
            continue
        transposed = linear_kind(graph.model.get_submodule(td.sites[0][0]))
        if transposed is not None and td.dim == (0 if transposed else 1):
            found.append((td.sites[0][0], td.tensor.T if transposed else td.tensor, pos))
    if len(found) != 1:
        raise ConfigError(f"Group '{group.name}' has {len(found)} output projections; expected one "
                          f"(o_proj / down_proj).")
    return found[0]


def collect_input_stats(model: Any, layers: dict, windows: Any, batch_size: int, *, gram: bool) -> dict:
    """{layer name: (FluctuationCollector, HessianCollector or None)} over the dense model's inputs."""
    import torch

    from ..calib.collectors import HessianCollector
    from ..calib.fluctuation import FluctuationCollector
    from ..utils.hooks import HookSet

    stats = {name: (FluctuationCollector(), HessianCollector(torch.float64) if gram else None) for name in layers}

    def hook(name):
        def fn(_module, args):
            for collector in stats[name]:
                if collector is not None:
                    collector.add_batch(args[0])
        return fn

    with torch.no_grad(), HookSet() as hooks:
        for name, module in layers.items():
            hooks.forward_pre(module, hook(name))
        for start in range(0, windows.shape[0], batch_size):
            model(input_ids=windows[start:start + batch_size], use_cache=False)
    return stats


def group_scores(graph: Any, groups: list, kinds: dict, outputs: dict, stats: dict, criterion: str) -> dict:
    """{group: (size,) float64 scores} of the unit criterion `criterion`, standardised per structure type."""
    from ..importance.flap import standardize
    from ..importance.unit_criteria import UnitGroup

    plugin = UNIT_CRITERIA.load(criterion)
    score = plugin.scorer()
    raw = {}
    for g in groups:
        name, weight, pos = outputs[g.name]
        fluctuation = stats[name][0] if plugin.activations else None
        raw[g.name] = score(UnitGroup(graph, g, name, weight, pos, fluctuation), **plugin.options)
    out = {}
    for kind in {kinds[g.name] for g in groups}:
        members = [g.name for g in groups if kinds[g.name] == kind]
        out.update(zip(members, standardize([raw[m] for m in members]), strict=True))
    return out


def recovery_updates(graph: Any, groups: list, outputs: dict, selection: dict, stats: dict,
                     config: LLMStructuredConfig) -> dict:
    """{output layer: (new full-width weight or None, bias delta (out,) or None)} before slicing."""
    import torch

    from ..importance.flap import bias_compensation
    from .refit import refit_columns
    from .scale_tuning import tune_scales

    updates = {}
    for g in groups:
        positions = selection.get(g.name)
        if not positions or not (config.bias_compensation or config.refit or config.scale_tuning):
            continue
        name, weight, pos = outputs[g.name]
        gone = torch.isin(pos, torch.as_tensor(positions, dtype=torch.long))  # (in,)
        removed_idx, keep_idx = torch.where(gone)[0], torch.where(~gone)[0]
        fluct, hessian = stats[name]
        weight = weight.detach()
        n = fluct.n_tokens
        gram = hessian.result().double() * (n / 2.0) if hessian is not None else None  # X X^T
        if config.refit:
            sums = fluct.mean.double() * n if config.bias_compensation else None
            w_keep, intercept = refit_columns(weight, gram, keep_idx, damp=config.damp, sums=sums, count=n)
            new = weight.clone()
            new[:, keep_idx] = w_keep
            updates[name] = (new, intercept)
        elif config.scale_tuning:
            mean = fluct.mean.double() if config.bias_compensation else None
            scales, intercept = tune_scales(weight, gram, keep_idx, damp=config.damp, mean=mean, count=n)
            new = weight.clone()
            new[:, keep_idx] = weight[:, keep_idx] * scales
            updates[name] = (new, intercept)
        else:
            updates[name] = (None, bias_compensation(weight, fluct.mean, removed_idx))
    return updates


def add_biases(model: Any, deltas: dict) -> tuple[dict, bool]:
    """Add `deltas` ({layer: (out,)}) to the layers' biases, creating them where missing, and switch on the
    config flags that make from_pretrained build them (zero biases for the other layers those flags add).
    Returns ({bias name: shape} of every bias created, whether the saved config carries them)."""
    import copy
    import warnings

    import torch
    from torch import nn

    if not deltas:
        return {}, True
    current = {n for n, _ in model.named_parameters()}
    missing = {f"{name}.bias" for name in deltas} - current
    created: dict[str, list[int]] = {}
    config = model.config
    for flag in ("attention_bias", "mlp_bias"):
        if not missing or not hasattr(config, flag) or getattr(config, flag):
            continue
        probe_config = copy.deepcopy(config)
        setattr(probe_config, flag, True)
        with torch.device("meta"):
            probe = type(model)(probe_config)
        new = {n for n, _ in probe.named_parameters() if n.endswith(".bias")} - current
        if not new & missing:
            continue
        setattr(config, flag, True)
        for bias_name in sorted(new):
            module = model.get_submodule(bias_name.rsplit(".", 1)[0])
            weight = module.weight
            module.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device))
            created[bias_name] = [weight.shape[0]]
        current |= new
        missing -= new
    for bias_name in sorted(missing):  # the config cannot express it: in memory only
        module = model.get_submodule(bias_name.rsplit(".", 1)[0])
        weight = module.weight
        module.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device))
    if missing:
        warnings.warn(f"{type(model).__name__}'s config cannot express biases on {sorted(missing)[:3]}...: "
                      f"prunekit.load restores them from the saved weights, plain from_pretrained drops them.",
                      stacklevel=2)
    with torch.no_grad():
        for name, delta in deltas.items():
            module = model.get_submodule(name)
            module.bias.add_(delta.to(module.bias.dtype))
    return created, not missing
