"""Structured pruning on the dependency graph: score units (L1/L2 group norm, Taylor, random), allocate
(uniform or global, to a channel / parameter / MAC target), slice, sync the config, report a replayable plan.

Importable without torch (the config is read when a recipe is validated); the work happens in
`prune_structured`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import ConfigError
from .inputs import NO_INPUTS, PruneInputs
from .result import PruneResult

CRITERIA = ("l1", "l2", "taylor", "random")
Target = Literal["channels", "params", "macs"]
TARGETS = get_args(Target)
SCOPES = ("mlp", "heads", "channels")
Allocation = Literal["uniform", "global"]
ALLOCATIONS = get_args(Allocation)
HeadMode = Literal["kv", "q"]
HEAD_MODES = get_args(HeadMode)


@dataclass
class StructuredPruneConfig:
    """Remove whole channels, MLP neurons and attention heads.

    ratio: fraction of `target` to remove, in [0, 1). target: "channels" (units in scope), "params"
    or "macs" (of the whole model; reached by bisection). scope: kinds of groups to prune: "mlp"
    (MLP hidden neurons of a block), "heads" (attention heads), "channels" (everything else: CNN
    channels, the transformer hidden size). allocation: "uniform" (each group alike) or "global" (one
    ranking of group-normalised scores). max_layer_ratio: most any group may lose. round_to: keep
    channel counts multiples of this. head_mode: GQA units: "kv" (a KV head with its query group) or
    "q" (query heads, evenly from each KV group). batch_size: calibration windows per backward (taylor).
    """

    ratio: float = 0.3
    target: Target = "channels"
    scope: list[str] = field(default_factory=lambda: ["mlp", "heads"])
    allocation: Allocation = "uniform"
    max_layer_ratio: float = 0.9
    round_to: int = 1
    head_mode: HeadMode = "kv"
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(f"ratio must be in [0, 1), got {self.ratio}")
        for name, value, choices in (("target", self.target, TARGETS), ("allocation", self.allocation, ALLOCATIONS),
                                     ("head_mode", self.head_mode, HEAD_MODES)):
            if value not in choices:
                raise ConfigError(f"Unknown {name} '{value}'. Valid choices: {', '.join(choices)}.")
        bad = [s for s in self.scope if s not in SCOPES]
        if bad or not self.scope:
            raise ConfigError(f"scope must be a non-empty list of {', '.join(SCOPES)}; got {self.scope}")
        if not 0.0 < self.max_layer_ratio <= 1.0:
            raise ConfigError(f"max_layer_ratio must be in (0, 1], got {self.max_layer_ratio}")
        if self.round_to < 1 or self.batch_size < 1:
            raise ConfigError(f"round_to and batch_size must be >= 1, got {self.round_to}, {self.batch_size}")


def criterion_of(method: str) -> str:
    """'l2' from 'l2', 'structured-l2' or 'structured_l2'."""
    name = method.removeprefix("structured").lstrip("-_")
    if name not in CRITERIA:
        raise ConfigError(f"Unknown structured criterion '{method}'. Valid choices: "
                          f"{', '.join(CRITERIA)} (optionally prefixed 'structured-').")
    return name


def prune_structured(loaded: Any, config: StructuredPruneConfig, inputs: PruneInputs = NO_INPUTS, *, method: str,
                     example_inputs: Any = None, batches: Any = None, loss_fn: Any = None) -> PruneResult:
    """Prune `loaded.model` in place; return {"layers", "params_*", "macs_*", "plan", ...}.

    example_inputs: inputs for tracing (default: 8 token ids for HF models). batches / loss_fn: Taylor
    calibration data and loss (default: the run's calibration windows and the causal-LM loss).
    """
    import time

    from ..graph import DependencyGraph
    from ..graph.allocate import allocate, candidates
    from ..graph.plan import default_inputs, group_shapes, plan_entries

    criterion = criterion_of(method)
    model, adapter = loaded.model, getattr(loaded, "adapter", None)
    example = inputs.example_inputs if example_inputs is None else example_inputs
    example = default_inputs(model) if example is None else example
    start = time.perf_counter()
    graph = DependencyGraph.build(model, example, head_mode=config.head_mode)
    graph_seconds = time.perf_counter() - start
    kinds = classify_groups(graph, adapter)
    groups = [g for g in graph.groups if kinds[g.name] in config.scope and g.size > 1]
    if not groups:
        found = sorted({kinds[g.name] for g in graph.groups if g.size > 1})
        raise ConfigError(f"No prunable groups of kinds {config.scope} in {type(model).__name__}; "
                          f"it has: {', '.join(found) or 'none'}.")
    t0 = time.perf_counter()
    scores = score_groups(graph, groups, criterion, loaded, config, inputs, batches, loss_fn)
    score_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    cands = candidates(groups, scores, config.max_layer_ratio, config.round_to)
    selection, achieved = allocate(graph, cands, config.ratio, config.target, config.allocation)
    before, after = graph.estimate({}), graph.estimate(selection)  # exact: tests compare with a re-trace
    params_before = sum(p.numel() for p in model.parameters())
    plan = plan_entries(graph, selection, kinds)
    graph.prune(selection)
    if adapter is not None:
        adapter.sync_config()
    prune_seconds = time.perf_counter() - t0
    shapes = group_shapes(graph)
    layers = {}
    uniform_channels = config.target == "channels" and config.allocation == "uniform"
    for g in groups:
        removed = len(selection.get(g.name, []))
        layers[g.name] = {"kind": kinds[g.name], "before": g.size, "after": g.size - removed,
                          "requested": config.ratio if uniform_channels else removed / g.size,
                          "actual": removed / g.size, "shapes": shapes[g.name]}
    return PruneResult(requested=config.ratio, achieved=achieved, layers=layers, plan=plan, details={
        "criterion": criterion, "params_before": params_before,
        "params_after": sum(p.numel() for p in model.parameters()),
        "macs_before": before["macs"], "macs_after": after["macs"],
        "target": config.target, "requested": config.ratio, "achieved": achieved,
        "frozen": graph.frozen, "graph_seconds": graph_seconds, "score_seconds": score_seconds,
        "prune_seconds": prune_seconds})


def classify_groups(graph: Any, adapter: Any) -> dict[str, str]:
    """{group: "heads" | "mlp" | "channels"}; "mlp" = inside one block and outside its attention."""
    kinds = {}
    blocks: list[tuple[str, str]] = []
    if adapter is not None:
        names = {id(m): n for n, m in graph.model.named_modules()}
        for block in adapter.blocks():
            blocks.append((names[id(block)] + ".", names[id(adapter.attention(block))] + "."))
    for g in graph.groups:
        if g.kind == "heads":
            kinds[g.name] = "heads"
            continue
        inside = any(g.modules and all(m.startswith(b) and not m.startswith(a) for m in g.modules)
                     for b, a in blocks)
        kinds[g.name] = "mlp" if inside else "channels"
    return kinds


def score_groups(graph: Any, groups: list, criterion: str, loaded: Any, config: StructuredPruneConfig,
                 inputs: PruneInputs, batches: Any, loss_fn: Any) -> dict:
    """{group name: (size,) unit scores} with the chosen criterion (higher = keep)."""
    import torch

    from ..graph.slicing import any_per_slice, gather_per_slice
    from ..importance.group_norm import group_norm_scores
    from ..importance.random import random_scores
    from ..importance.taylor import accumulate_gradients, causal_lm_loss, taylor_scores

    if criterion == "random":
        generator = torch.Generator().manual_seed(inputs.seed)
        return {g.name: random_scores(torch.empty(g.size), generator) for g in groups}
    if criterion in ("l1", "l2"):
        p = 1 if criterion == "l1" else 2
        # units of different groups are disjoint: score all of them in one pass over the parameter slices
        # that hold any unit of `groups` (unit -1 marks indices no unit owns)
        wanted = torch.zeros(graph.num_units + 1, dtype=torch.bool)
        for g in groups:
            wanted[g.units] = True
        params = [td for td in graph.tensor_dims if td.is_param]
        touched = any_per_slice(gather_per_slice(wanted, [td.units for td in params]))
        all_units = group_norm_scores([(td.tensor, td.dim, td.units) for td, t in zip(params, touched, strict=True)
                                       if t], graph.num_units, p)
        return {g.name: all_units[g.units] for g in groups}
    if batches is None:
        windows = inputs.windows(loaded, "taylor")  # (samples, seq_len) token ids
        batches = [windows[i:i + config.batch_size] for i in range(0, windows.shape[0], config.batch_size)]
    if loss_fn is None:
        if not getattr(getattr(loaded, "adapter", None), "is_causal_lm", False):
            raise ConfigError("taylor on a model that is not a causal LM needs loss_fn=(model, batch) -> loss.")
        loss_fn = causal_lm_loss
    grads = accumulate_gradients(graph.model, batches, loss_fn)
    return {g.name: taylor_scores([(td.tensor, grads[id(td.tensor)], td.dim, pos)
                                   for td, pos in graph.param_slices(g)], g.size) for g in groups}

