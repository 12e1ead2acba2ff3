"""Joint structured pruning and LoRA tuning: learned unit gates trained with the adapters under a parameter budget.

ATP (Lu et al. 2024, "All-in-One Tuning and Structural Pruning for Domain-Specific LLMs", arXiv 2412.14426) and
Structured Pruning Adapters (Hedegaard et al., SPLoRA) prune while they fine-tune, so the adapters learn the
pruned structure. Every prunable unit u (a KV head with its query group, or a query head; a GLU neuron) has a
logit theta_u and a hard gate m_u in {0, 1} on its output channels (the inputs of o_proj / down_proj): the layer
computes y = (W0 + B A)(m * x), ATP's m * ((W0 + B A) x) on the unit's own rows.

- Gates: "gumbel" (Gumbel-sigmoid / binary concrete, s = sigmoid((theta + log u - log(1 - u)) / tau), ATP) or
  "hard-concrete" (s stretched to (gamma, zeta) = (-0.1, 1.1) and clipped, Louizos et al. 2018, L0); the forward
  pass uses m = [s > 1/2] and the backward pass the gradient of s (straight-through, Bengio et al. 2013). In both,
  P(m_u = 1) = sigmoid(theta_u); outside training m_u = [theta_u > 0].
- Budget: r = sum_u c_u (1 - sigmoid(theta_u)) / P, the expected removed fraction of the P non-embedding
  parameters (c_u: parameters of unit u), against a target t that moves linearly from r at the initial gates to
  `ratio` over the first `ramp` of the steps. "quadratic": w (r - t)^2 (ATP's (params(m)/P - (1 - p))^2, on the
  expectation); "lagrangian": the augmented Lagrangian l (r - t) + w (r - t)^2, l <- l + 2 w (r - t) after each
  step (Hestenes 1969; CoFi and Sheared-LLaMA, Xia et al. 2022 / 2024, learn such multipliers), which drives r
  to t rather than to where the task loss balances the quadratic.
- Training: prunekit.train.Trainer on the LoRA tensors (lr of `train`) and the logits (`mask_lr`); the task loss
  is cross-entropy or distillation from the dense model (prunekit.recover.losses).
- End: units ranked by theta, weakest first, fill the budget as llm-structured's global allocation does (within
  half a unit's parameters); the LoRA updates are merged and the units sliced out through the dependency graph.
  ATP's generator network and its group lasso on the masked groups are not used: the gates are free parameters,
  and a closed gate already zeroes its unit's output, so removing the unit changes nothing else.

Importable without torch (the config is read when a recipe is validated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError
from ..prune.inputs import NO_INPUTS, PruneInputs
from ..prune.result import PruneResult

GATES = ("gumbel", "hard-concrete")
PENALTIES = ("quadratic", "lagrangian")
SCOPES = ("heads", "mlp")
STRETCH = (-0.1, 1.1)  # (gamma, zeta) of the hard concrete distribution (Louizos et al. 2018)
# recover options that joint-lora fixes: LoRA, every window of the corpora, no perplexity report of its own
FIXED_TRAIN_KEYS = ("method", "report_corpora", "report_windows", "select", "select_tokens", "paser_clusters",
                    "paser_candidates")


@dataclass
class JointPruneConfig:
    """ratio: fraction of the non-embedding parameters to remove, in [0, 1). scope: "heads" and / or "mlp".
    head_mode: "kv" (a KV head with its query group) or "q" (query heads, evenly from each KV group).
    gate: "gumbel" or "hard-concrete", at `temperature`; init_logit: every gate's starting logit (it is open
    with probability sigmoid(init_logit)). penalty: "quadratic" (penalty_weight x gap^2) or "lagrangian" (plus
    a multiplier x gap, raised by 2 x penalty_weight x gap after each step); ramp: fraction of the steps over
    which the target moves to `ratio`. mask_lr: learning rate of the logits. max_layer_ratio: most of a group's
    units that may go. train: the LoRA training's options, those of prunekit.recover.RecoverConfig (tokens, lr,
    rank, alpha, loss, corpus, seq_len, ...) but method, report_* and select*."""

    ratio: float = 0.3
    scope: list[str] = field(default_factory=lambda: list(SCOPES))
    head_mode: Literal["kv", "q"] = "kv"
    gate: Literal["gumbel", "hard-concrete"] = "gumbel"
    temperature: float = 0.5
    init_logit: float = 3.0
    penalty: Literal["quadratic", "lagrangian"] = "quadratic"
    penalty_weight: float = 10.0
    ramp: float = 0.5
    mask_lr: float = 0.3
    max_layer_ratio: float = 0.9
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..train.config import check_ranges

        check_ranges("joint-lora", [
            ("ratio", self.ratio, 0.0 <= self.ratio < 1.0, "in [0, 1)"),
            ("scope", self.scope, bool(self.scope) and all(s in SCOPES for s in self.scope),
             f"a non-empty list of {', '.join(SCOPES)}"),
            ("head_mode", self.head_mode, self.head_mode in ("kv", "q"), "one of kv, q"),
            ("gate", self.gate, self.gate in GATES, f"one of {', '.join(GATES)}"),
            ("temperature", self.temperature, self.temperature > 0, "> 0"),
            ("init_logit", self.init_logit, math.isfinite(self.init_logit), "a finite number"),
            ("penalty", self.penalty, self.penalty in PENALTIES, f"one of {', '.join(PENALTIES)}"),
            ("penalty_weight", self.penalty_weight, self.penalty_weight > 0, "> 0"),
            ("ramp", self.ramp, 0.0 <= self.ramp <= 1.0, "in [0, 1] (a fraction of the steps)"),
            ("mask_lr", self.mask_lr, self.mask_lr > 0, "> 0"),
            ("max_layer_ratio", self.max_layer_ratio, 0.0 < self.max_layer_ratio <= 1.0, "in (0, 1]"),
        ])
        for key in set(FIXED_TRAIN_KEYS) & set(self.train):
            raise ConfigError(f"joint-lora option train.{key} cannot be set: joint-lora trains LoRA on every window "
                              f"of its corpora and the run's evaluation reports the pruned model. The train options "
                              f"are those of the recover stage except {', '.join(FIXED_TRAIN_KEYS)}.")
        _ = self.recovery  # validates the training options now, before any weights load

    @property
    def recovery(self) -> Any:
        """The LoRA training options as a prunekit.recover.RecoverConfig (method lora, no perplexity report)."""
        from ..core.typed import from_dict
        from .config import RecoverConfig

        return from_dict(RecoverConfig, {**self.train, "method": "lora", "report_windows": 0}, "train")


# --- gate maths (pure) ----------------------------------------------------------------------------------------
def gate_values(logits: Any, kind: str, temperature: float, *, sample: bool) -> Any:
    """Hard 0/1 gates (n,) for logits (n,): sampled with a straight-through gradient, or [logit > 0]."""
    import torch

    if not sample:
        return (logits.detach() > 0).to(logits.dtype)
    u = torch.rand_like(logits).clamp(1e-6, 1.0 - 1e-6)  # (n,)
    soft = torch.sigmoid((logits + u.log() - (-u).log1p()) / temperature)  # binary concrete sample (n,)
    if kind == "hard-concrete":
        gamma, zeta = STRETCH
        soft = (soft * (zeta - gamma) + gamma).clamp(0.0, 1.0)
    hard = (soft > 0.5).to(logits.dtype)
    return hard + (soft - soft.detach())  # forward: exactly hard; backward: d soft / d logits


def expected_removed(logits: Any, costs: Any, total: float) -> Any:
    """sum_u c_u P(m_u = 0) / P: the expected removed fraction of P parameters; logits, costs (n,)."""
    import torch

    return (costs * (1.0 - torch.sigmoid(logits))).sum() / total


def budget_penalty(removed: Any, target: float, weight: float, multiplier: float = 0.0) -> Any:
    """multiplier (r - t) + w (r - t)^2 (quadratic: multiplier 0)."""
    gap = removed - target
    return multiplier * gap + weight * gap.square()


def ramp_target(step: int, steps: int, start: float, ratio: float, ramp: float) -> float:
    """The penalty's target at optimizer step `step` (0-based): linear from `start` (the expected ratio of the
    initial gates) to `ratio` over the first `ramp` fraction of the `steps`, then `ratio`."""
    ramp_steps = max(1, round(ramp * steps))
    return start + (ratio - start) * min(1.0, (step + 1) / ramp_steps)


class UnitGates:
    """One logit per unit of each group (name -> size); `values` (n,) are the gates the hooks apply."""

    def __init__(self, sizes: dict[str, int], unit_costs: dict[str, float], total: int,
                 config: JointPruneConfig, device: Any = None) -> None:
        import torch

        self.config, self.total, self.step = config, float(total), 0
        self.slices, offset = {}, 0
        for name, n in sizes.items():
            self.slices[name] = slice(offset, offset + n)
            offset += n
        self.logits = torch.nn.Parameter(torch.full((offset,), float(config.init_logit), device=device))
        self.costs = torch.cat([torch.full((n,), float(unit_costs[name]), device=device)
                                for name, n in sizes.items()])  # (n,) parameters of each unit
        self.multiplier = 0.0  # of the augmented Lagrangian (penalty "lagrangian")
        self.values = torch.ones(offset, device=device)
        self.start = float(expected_removed(self.logits.detach(), self.costs, self.total))

    def sample(self) -> Any:
        return gate_values(self.logits, self.config.gate, self.config.temperature, sample=True)

    def hard(self) -> Any:
        return gate_values(self.logits, self.config.gate, self.config.temperature, sample=False)

    def scores(self) -> dict[str, Any]:
        """{group: (size,) float64 logits}: higher = keep."""
        return {name: self.logits.detach()[sl].double() for name, sl in self.slices.items()}

    def penalty(self, steps: int) -> tuple[Any, dict[str, float]]:
        """The budget penalty of the current step and its parts (expected ratio, target, multiplier)."""
        c = self.config
        target = ramp_target(self.step, steps, self.start, c.ratio, c.ramp)
        removed = expected_removed(self.logits, self.costs, self.total)
        value = budget_penalty(removed, target, c.penalty_weight, self.multiplier)
        return value, {"penalty": value.item(), "expected_ratio": removed.item(), "target_ratio": target,
                       "multiplier": self.multiplier}

    def update_multiplier(self, steps: int) -> None:
        """Dual ascent of the augmented Lagrangian at the updated logits: l <- l + 2 w (r - t)."""
        if self.config.penalty == "lagrangian":
            target = ramp_target(self.step, steps, self.start, self.config.ratio, self.config.ramp)
            gap = float(expected_removed(self.logits.detach(), self.costs, self.total)) - target
            self.multiplier += 2.0 * self.config.penalty_weight * gap

    def hook(self, name: str, pos: Any) -> Any:
        """A forward pre-hook that multiplies input column j of the output projection by the gate of unit
        pos[j] of group `name` (pos[j] = -1: no unit, gate 1)."""
        import torch

        sl, pos = self.slices[name], pos.to(self.logits.device)

        def apply(_module: Any, args: tuple) -> tuple:
            gates = self.values[sl]
            column = torch.cat([gates, gates.new_ones(1)])[pos]  # (in,)
            return (args[0] * column.to(args[0].dtype),) + tuple(args[1:])
        return apply


class GateSteps:
    """The gates' plug-in on the training loop (prunekit.train.TrainPlugin's hooks, duck-typed so that this
    module imports without torch): updates the multiplier and counts steps for the target ramp."""

    def __init__(self, gates: UnitGates, steps: int) -> None:
        self.gates, self.steps = gates, steps

    def after_backward(self, trainer: Any) -> None:
        pass

    def after_step(self, trainer: Any, step: int) -> None:
        self.gates.update_multiplier(self.steps)
        self.gates.step = step + 1

    def after_eval(self, trainer: Any, metrics: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {"step": self.gates.step, "multiplier": self.gates.multiplier}

    def load_state_dict(self, state: dict) -> None:
        self.gates.step, self.gates.multiplier = state["step"], state["multiplier"]


# --- glue -----------------------------------------------------------------------------------------------------
def build_gates(loaded: Any, config: JointPruneConfig) -> tuple[Any, list, dict, dict, UnitGates]:
    """(graph, groups, kinds, {group: output projection (name, weight, pos)}, gates) of `loaded.model`."""
    import torch

    from ..graph import DependencyGraph
    from ..graph.allocate import candidates
    from ..graph.plan import default_inputs
    from ..prune.llm_structured import output_slice
    from ..prune.structured import classify_groups
    from ..prune.unit_allocation import non_embedding_params

    model, adapter = loaded.model, getattr(loaded, "adapter", None)
    if adapter is None:
        raise ConfigError(f"{type(model).__name__} is not a supported transformer (no adapter).")
    graph = DependencyGraph.build(model, default_inputs(model), head_mode=config.head_mode)
    kinds = classify_groups(graph, adapter)
    groups = [g for g in graph.groups if kinds[g.name] in config.scope and g.size > 1]
    if not groups:
        raise ConfigError(f"No prunable groups of kinds {config.scope} in {type(model).__name__}.")
    outputs = {g.name: output_slice(graph, g) for g in groups}
    cands = candidates(groups, {g.name: torch.zeros(g.size) for g in groups}, 1.0, 1)
    costs = item_costs(graph, cands)
    unit_costs = {c.group.name: costs[ci] / len(c.items[0]) for ci, c in enumerate(cands)}
    gates = UnitGates({g.name: g.size for g in groups}, unit_costs, non_embedding_params(loaded), config,
                      next(model.parameters()).device)
    return graph, groups, kinds, outputs, gates


def install_gates(hooks: Any, model: Any, groups: list, outputs: dict, gates: UnitGates) -> None:
    """Register each group's gate hook (HookSet `hooks`) on its output projection (o_proj / down_proj)."""
    for g in groups:
        name, _weight, pos = outputs[g.name]
        hooks.forward_pre(model.get_submodule(name), gates.hook(g.name, pos))


def item_costs(graph: Any, cands: list) -> list[int]:
    """Parameters that removing one item of each candidate group removes."""
    before = graph.estimate({})["params"]
    return [before - graph.estimate({c.group.name: c.items[0]})["params"] for c in cands]


def select_units(graph: Any, groups: list, scores: dict, budget: float, max_layer_ratio: float) -> tuple:
    """({group: positions} removing `budget` parameters, weakest score first; candidates; item costs)."""
    from ..graph.allocate import candidates
    from ..prune.unit_allocation import fill

    cands = candidates(groups, scores, max_layer_ratio, 1)
    costs = item_costs(graph, cands)
    items = sorted((float(scores[c.group.name][item].mean()), ci, k)
                   for ci, c in enumerate(cands) for k, item in enumerate(c.items))
    chosen: list[set[int]] = [set() for _ in cands]
    fill(items, costs, [c.cap for c in cands], chosen, budget, 0.0)
    selection = {c.group.name: sorted(p for k in chosen[ci] for p in c.items[k]) for ci, c in enumerate(cands)}
    return {k: v for k, v in selection.items() if v}, cands, costs


def train_gated(loaded: Any, gates: UnitGates, config: JointPruneConfig, train: Any, teacher: Any,
                checkpoint: Any) -> Any:
    """Train the LoRA adapters (already attached) and the gate logits together; returns the TrainResult."""
    import torch

    from ..train import Trainer
    from ..train.data import WindowStream, validation_windows
    from .lora import lora_parameters
    from .losses import next_token_loss, recovery_loss

    model = loaded.model
    stream = WindowStream(loaded.tokenizer, train.corpus, train.seq_len, weights=train.weights, seed=train.seed)
    held_out = {c: validation_windows(loaded.tokenizer, c, train.eval_windows, train.seq_len) for c in train.corpus}
    adapters = lora_parameters(model)
    masks = [("joint.logits", gates.logits)]

    def loss_fn(ids: torch.Tensor, _sources: torch.Tensor):
        teacher_logits = None
        if teacher is not None:
            with torch.inference_mode():
                teacher_logits = teacher(input_ids=ids, use_cache=False).logits.clone()
        gates.values = gates.sample()
        logits = model(input_ids=ids, use_cache=False).logits  # (B, T, V)
        loss, parts = recovery_loss(logits, ids, teacher_logits, train.loss, train.distill, train.temperature,
                                    train.top_k)
        penalty, info = gates.penalty(train.steps)
        return loss + penalty, {**parts, **info}

    def validate() -> dict[str, float]:
        gates.values = gates.hard()
        return {f"val_loss/{c}": next_token_loss(model(input_ids=ids, use_cache=False).logits, ids).item()
                for c, ids in held_out.items()}

    trainer = Trainer(model, adapters, train, loss_fn, stream, validate=validate,
                      plugins=[GateSteps(gates, train.steps)], checkpoint=checkpoint, description="joint-lora",
                      extra_groups=[{"params": masks, "lr": config.mask_lr, "weight_decay": 0.0}])  # logits: mask_lr
    result = trainer.fit()
    gates.values = gates.hard()
    return result


def prune_joint(loaded: Any, config: JointPruneConfig, inputs: PruneInputs = NO_INPUTS, *, method: str,
                teacher: Any = None, checkpoint: Any = None) -> PruneResult:
    """Prune heads / MLP neurons of `loaded.model` in place while LoRA adapters train; merge them; report.

    teacher: the dense model for a distillation loss (default: the run's dense model, inputs.dense). checkpoint: a
    file for resumable training checkpoints (an interrupted run continues there)."""
    from ..graph.plan import group_shapes, plan_entries
    from ..utils.hooks import HookSet
    from ..utils.progress import log
    from .lora import attach_lora, merge_lora, remove_lora
    from .run import check_teacher, target_modules

    model = loaded.model
    train = config.recovery
    teacher_model = check_teacher(model, teacher if teacher is not None else inputs.dense, train)
    teacher_model = teacher_model if train.loss != "ce" else None
    if teacher_model is model:
        raise ConfigError("joint-lora's teacher is the model being pruned; pass the dense model as a separate copy.")
    graph, groups, kinds, outputs, gates = build_gates(loaded, config)
    modules = target_modules(model, train)
    params_before = sum(p.numel() for p in model.parameters())
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    peft_model, _masks = attach_lora(model, modules, train)
    try:
        with HookSet() as hooks:
            install_gates(hooks, model, groups, outputs, gates)
            result = train_gated(loaded, gates, config, train, teacher_model, checkpoint)
    except BaseException:
        remove_lora(peft_model)
        _restore_flags(model, requires_grad)
        raise
    merge_lora(peft_model)
    _restore_flags(model, requires_grad)

    selection, cands, costs = select_units(graph, groups, gates.scores(), config.ratio * gates.total,
                                           config.max_layer_ratio)
    before = graph.estimate({})["params"]
    achieved = (before - graph.estimate(selection)["params"]) / gates.total
    learned = float(expected_removed(gates.logits.detach(), gates.costs, gates.total))
    closed = float((gates.costs * (1.0 - gates.hard())).sum()) / gates.total  # removed by the gates alone
    plan = plan_entries(graph, selection, kinds)
    graph.prune(selection)
    loaded.adapter.sync_config()
    model.eval()
    layers = _layer_rows(cands, costs, selection, kinds, group_shapes(graph), gates, config.ratio)
    curve = [{k: h[k] for k in ("step", "tokens", "expected_ratio", "target_ratio", "penalty", "multiplier")}
             for h in result.history]
    log(f"  joint-lora: {result.tokens} tokens in {result.seconds:.0f} s; expected ratio {learned:.3f}, gates "
        f"closed {closed:.3f}, removed {achieved:.4f} (requested {config.ratio}"
        + ("" if abs(achieved - config.ratio) <= 0.01 else "; the groups in scope cannot give more") + ")")
    return PruneResult(requested=config.ratio, achieved=achieved, layers=layers, plan=plan, details={
        "gate": config.gate, "penalty": config.penalty,
        "params_before": params_before, "params_after": sum(p.numel() for p in model.parameters()),
        "non_embedding_params": int(gates.total), "requested": config.ratio, "achieved": achieved,
        "expected_ratio": learned, "closed_ratio": closed, "loss": train.loss, "rank": train.rank,
        "tokens": result.tokens, "steps": result.steps, "train_seconds": result.seconds,
        "tokens_per_second": result.tokens_per_second, "history": result.history, "evals": result.evals,
        "penalty_curve": curve, "resumed_from": result.resumed_from,
       })


def _layer_rows(cands: list, costs: list, selection: dict, kinds: dict, shapes: dict, gates: UnitGates,
                ratio: float) -> dict:
    """The report's row per group: units before / after, parameters, shapes and how many gates stayed open."""
    layers = {}
    for ci, c in enumerate(cands):
        g = c.group
        gone = len(selection.get(g.name, []))
        layers[g.name] = {"kind": kinds[g.name], "before": g.size, "after": g.size - gone, "requested": ratio,
                          "actual": gone / g.size, "params": len(c.items) * costs[ci], "shapes": shapes[g.name],
                          "gates_open": int((gates.logits.detach()[gates.slices[g.name]] > 0).sum())}
    return layers


def _restore_flags(model: Any, requires_grad: dict[str, bool]) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(requires_grad.get(name, True))
