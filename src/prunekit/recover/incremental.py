"""Incremental prune-train of decoder LLMs (Adapt-Pruner / Adapt-Accel, Pan et al. 2025, arXiv 2502.03460).

Cycles c = 1..C, C = ceil(ratio / step_ratio), each removing about `step_ratio` of the non-embedding parameters
(the last one what is left to `ratio`), in `substeps` pruning steps, then training on `tokens` tokens
(prunekit.recover: LoRA merged at the end, or full; CE or logit distillation from the dense model). Each pruning
step, on the current (already pruned and trained) model:
1. block importance I_l from the calibration windows: the mean angular distance arccos(cos(h_in, h_out)) / pi
   of block l's input and output (allocate/block_importance.py; a per-token monotone transform of the paper's
   -cos), normalised to I^_l = (I_l - mean I) / max |I - mean I| (0 when all blocks are alike);
2. per-block sparsity s_l <- clip(s_l + Delta - A I^_l, 0, 0.99) (s_l: removed fraction of block l's original
   parameters; Delta: this step's share of the blocks' parameters; A: `amplitude`), so blocks that change the
   residual stream least lose most;
3. first-order Taylor scores sum |w * dL/dw| of every attention head and MLP neuron (importance/taylor.py,
   LM loss on the calibration windows), normalised by the mean of their group;
4. in each block the coarse groups (attention heads) lose their weakest units until round(s_l x their
   original units) are gone in all (the paper's rule: every coupled group pruned to s_l), as far as the step's
   budget allows; the block's MLP neurons, weakest first, fill the rest of its budget
   s_l P_l^0 - (already removed) without passing it; then the weakest units anywhere make up the step's target
   round(target x N^0) parameters (N^0: the original non-embedding parameters) to within one unit (`select`);
5. the units are removed physically through the dependency graph (`graph.prune`) and the config synced.
Deviation from the paper: MLP neurons follow the block's parameter budget rather than s_l of their channels, so
each step meets its parameter target although a head is a coarse unit; heads round to the nearest unit.
The report holds every step (importance, s_l, achieved), every cycle's training (tokens, losses) and the plan
against the original model, replayable with graph.plan.apply_plan. Cycle c trains with seed + c - 1 (fresh
windows); training of a cycle is not resumed after an interrupt.

Importable without torch (the config is read when a recipe is validated; validating `recover` loads torch).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..prune.inputs import NO_INPUTS, PruneInputs
from ..prune.result import PruneResult
from ..prune.structured import HeadMode

SCOPES = ("heads", "mlp")
MAX_SPARSITY = 0.99  # the paper's clip of s_l


@dataclass
class IncrementalPruneConfig:
    """ratio: fraction of the non-embedding parameters removed in the end, in (0, 1). step_ratio: removed per
    cycle (Adapt-Accel: about 0.05). substeps: pruning steps per cycle, each re-scored (Adapt-Pruner's
    sub-steps; no training between them). amplitude: A of the sparsity update, in [0, 1) (paper 0.02-0.03).
    tokens: training tokens after each cycle (0 = prune only). recover: options of prunekit.recover.RecoverConfig
    for that training (method, loss, lr, rank, corpus, seq_len, ...; not `tokens`; report_windows defaults to 0).
    scope: "heads" and/or "mlp". head_mode: "kv" (a KV head with its query group) or "q". batch_size:
    calibration windows per forward / backward pass."""

    ratio: float = 0.3
    step_ratio: float = 0.05
    substeps: int = 1
    amplitude: float = 0.02
    tokens: int = 10_000
    recover: dict[str, Any] = field(default_factory=dict)
    scope: list[str] = field(default_factory=lambda: list(SCOPES))
    head_mode: HeadMode = "kv"
    batch_size: int = 4

    def __post_init__(self) -> None:
        for name, value, ok, allowed in (
            ("ratio", self.ratio, 0.0 < self.ratio < 1.0, "in (0, 1)"),
            ("step_ratio", self.step_ratio, 0.0 < self.step_ratio < 1.0, "in (0, 1)"),
            ("substeps", self.substeps, self.substeps >= 1, "an integer >= 1"),
            ("amplitude", self.amplitude, 0.0 <= self.amplitude < 1.0, "in [0, 1)"),
            ("tokens", self.tokens, self.tokens >= 0, ">= 0 (training tokens per cycle; 0 = prune only)"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1"),
            ("head_mode", self.head_mode, self.head_mode in ("kv", "q"), "one of kv, q"),
            ("scope", self.scope, bool(self.scope) and all(s in SCOPES for s in self.scope),
             f"a non-empty list of {', '.join(SCOPES)}"),
        ):
            if not ok:
                raise ConfigError(f"incremental option {name} must be {allowed}, got {value!r}")
        if "tokens" in self.recover:
            raise ConfigError("incremental: set the training tokens of each cycle with `tokens`, not recover.tokens "
                              f"(got recover.tokens={self.recover['tokens']!r})")
        self.train_config(0, validate=True)

    @property
    def cycles(self) -> int:
        return max(1, math.ceil(self.ratio / self.step_ratio - 1e-9))

    def targets(self) -> list[tuple[int, float]]:
        """[(cycle, removed fraction of the non-embedding parameters after the step)] of every pruning step."""
        out = []
        for c in range(1, self.cycles + 1):
            lo, hi = min((c - 1) * self.step_ratio, self.ratio), min(c * self.step_ratio, self.ratio)
            out += [(c, lo + (hi - lo) * (j + 1) / self.substeps) for j in range(self.substeps)]
        return out

    def train_config(self, cycle: int, *, validate: bool = False) -> Any:
        """The RecoverConfig of cycle `cycle` (0-based: seed + cycle), or None when tokens is 0."""
        if not self.tokens and not validate:
            return None
        from ..core.typed import from_dict
        from .config import RecoverConfig

        base = from_dict(RecoverConfig, {"report_windows": 0, **self.recover, "tokens": max(self.tokens, 1)},
                         "recover")
        return dataclasses.replace(base, seed=base.seed + cycle) if cycle else base


def update_block_sparsity(s: Any, importance: Any, delta: float, amplitude: float) -> Any:
    """(L,) s_l + delta - A I^_l clipped to [0, 0.99], I^ = (I - mean I) / max |I - mean I| (Adapt-Pruner)."""
    centred = importance.double() - importance.double().mean()  # (L,)
    scale = centred.abs().max()
    normalised = centred / scale if scale > 0 else centred * 0
    return (s.double() + delta - amplitude * normalised).clamp(0.0, MAX_SPARSITY)


def prune_incremental(loaded: Any, config: IncrementalPruneConfig, inputs: PruneInputs = NO_INPUTS, *, method: str,
                      windows: Any = None, teacher: Any = None) -> PruneResult:
    """Alternate pruning steps and training on `loaded.model` (in place) until `config.ratio`; return the report.

    windows: (samples, seq_len) calibration token ids (default: the run's). teacher: the dense model for the
    distillation losses (default: the run's dense model)."""
    import time

    import torch

    from ..allocate.block_importance import block_angular_importance
    from ..prune.unit_allocation import non_embedding_params
    from .run import recover

    windows, teacher = check_inputs(loaded, config, inputs, windows, teacher)
    model, blocks = loaded.model, list(loaded.adapter.blocks())
    n0 = non_embedding_params(loaded)
    state = {"s": torch.zeros(len(blocks), dtype=torch.float64), "alive": None, "n0": n0,
             "params0": sum(p.numel() for p in model.parameters()), "block_params0": block_sizes(blocks)}
    steps = config.targets()
    cycles, prune_seconds = [], 0.0
    for i, (cycle, target) in enumerate(steps):
        if not cycles or cycles[-1]["cycle"] != cycle:
            cycles.append({"cycle": cycle, "steps": []})
        t0 = time.perf_counter()
        importance = block_angular_importance(model, blocks, windows, config.batch_size)  # (L,) I_l
        delta = (target - (steps[i - 1][1] if i else 0.0)) * n0 / float(state["block_params0"].sum())
        state["s"] = update_block_sparsity(state["s"], importance, delta, config.amplitude)
        budget = round(target * n0) - (n0 - non_embedding_params(loaded))  # parameters to remove now
        step = prune_step(loaded, config, windows, state, budget)
        achieved = (n0 - non_embedding_params(loaded)) / n0
        prune_seconds += time.perf_counter() - t0
        cycles[-1]["steps"].append({"target": target, "achieved": achieved, **step,
                                    "block_importance": importance.tolist(), "block_sparsity": state["s"].tolist()})
        cycles[-1].update(target=target, achieved=achieved, params=sum(p.numel() for p in model.parameters()))
        last_of_cycle = i + 1 == len(steps) or steps[i + 1][0] != cycle
        train = config.train_config(cycle - 1) if last_of_cycle else None
        if train is not None:  # LoRA is merged at the end: the next step prunes plain weights
            cycles[-1]["train"] = training_summary(recover(loaded, train, teacher=teacher))
    distilled = config.tokens > 0 and config.train_config(0).loss != "ce"
    return final_report(loaded, config, state, cycles, prune_seconds, distilled)


def check_inputs(loaded: Any, config: IncrementalPruneConfig, inputs: PruneInputs, windows: Any,
                 teacher: Any) -> tuple:
    """(calibration windows, teacher or None); ConfigError before any work when something is missing."""
    adapter = getattr(loaded, "adapter", None)
    if adapter is None or not getattr(adapter, "is_causal_lm", False):
        raise ConfigError(f"incremental prunes decoder LLMs; {type(loaded.model).__name__} is not one.")
    first = config.train_config(0)
    if first is not None:
        if loaded.tokenizer is None:
            raise ConfigError("incremental trains between cycles on a corpus, which needs the model's tokenizer; "
                              "this model has none (or set tokens: 0)")
        if first.needs_teacher:
            teacher = teacher if teacher is not None else inputs.dense
            if teacher is None:
                why = f"loss '{first.loss}'" + (f", select '{first.select}'" if hasattr(first, "select") else "")
                raise ConfigError(f"incremental training needs the dense model as teacher (recover {why}): run it "
                                  "from a recipe, pass teacher=..., or use loss: ce")
    if windows is None:
        windows = inputs.windows(loaded, "incremental (it scores units on calibration data)")
    return windows, teacher if first is not None and first.needs_teacher else None


def final_report(loaded: Any, config: IncrementalPruneConfig, state: dict, cycles: list, prune_seconds: float,
                 distilled: bool) -> PruneResult:
    """The method report: per group (original units, left, the block's s_l), the plan against the original
    model, every cycle, totals."""
    from ..graph.plan import plan_entries
    from ..prune.unit_allocation import non_embedding_params

    model, n0, kinds0 = loaded.model, state["n0"], state["kinds0"]
    removed = {name: sorted(set(range(size)) - set(state["alive"][name])) for name, (size, _b) in
               state["sizes"].items()}
    layers = {name: {"kind": kinds0[name], "block": b, "before": size, "after": size - len(removed[name]),
                     "requested": float(state["s"][b]) if b >= 0 else config.ratio,
                     "actual": len(removed[name]) / size} for name, (size, b) in state["sizes"].items()}
    achieved = (n0 - non_embedding_params(loaded)) / n0
    trained = [c["train"] for c in cycles if "train" in c]
    block_actual = 1 - block_sizes(list(loaded.adapter.blocks())) / state["block_params0"]
    return PruneResult(requested=config.ratio, achieved=achieved, layers=layers,
                       plan=plan_entries(state["graph0"], removed, kinds0), details={
        "cycles": cycles, "params_before": state["params0"],
        "params_after": sum(p.numel() for p in model.parameters()),
        "non_embedding_params": n0, "requested": config.ratio, "achieved": achieved,
        "block_sparsity": state["s"].tolist(), "block_actual": block_actual.tolist(),
        "tokens": sum(t["tokens"] for t in trained), "train_seconds": sum(t["seconds"] for t in trained),
        "prune_seconds": prune_seconds, "distilled": distilled,
       })


def prune_step(loaded: Any, config: IncrementalPruneConfig, windows: Any, state: dict, budget: int) -> dict:
    """Score units by Taylor, choose them (`select`) to remove `budget` parameters now, prune physically. Updates
    state["alive"] (original unit positions left per group). Returns {"removed": {kind: units}, "params_removed"}."""
    import torch

    from ..graph import DependencyGraph
    from ..graph.allocate import candidates
    from ..graph.plan import default_inputs
    from ..prune.structured import classify_groups, score_groups

    model, adapter = loaded.model, loaded.adapter
    graph = DependencyGraph.build(model, default_inputs(model), head_mode=config.head_mode)
    kinds = classify_groups(graph, adapter)
    blocks = list(adapter.blocks())
    names = {id(m): n for n, m in model.named_modules()}
    prefixes = [names[id(b)] + "." for b in blocks]
    block_of = {g.name: next((i for i, p in enumerate(prefixes) if all(m.startswith(p) for m in g.modules)), -1)
                for g in graph.groups}
    if state["alive"] is None:  # the original model: what the final plan refers to
        scoped = [g for g in graph.groups if kinds[g.name] in config.scope and g.size > 1]
        if not scoped:
            raise ConfigError(f"No prunable groups of kinds {config.scope} in {type(model).__name__}.")
        state.update(graph0=graph, kinds0=kinds, alive={g.name: list(range(g.size)) for g in scoped},
                     sizes={g.name: (g.size, block_of[g.name]) for g in scoped})
    groups = [g for g in graph.groups if g.name in state["alive"] and g.size > 1]
    if budget <= 0 or not groups:
        return {"removed": {}, "params_removed": 0}
    batches = [windows[i:i + config.batch_size] for i in range(0, windows.shape[0], config.batch_size)]
    scores = score_groups(graph, groups, "taylor", loaded, config, NO_INPUTS, batches, None)  # {group: (size,)}
    cands = candidates(groups, scores, 1.0, 1)  # items weakest first, scores over the group mean; >= 1 unit kept
    before = graph.estimate({})["params"]
    costs = [before - graph.estimate({c.group.name: c.items[0]})["params"] for c in cands]
    p0 = state["block_params0"]
    block_budget = (state["s"] * p0 - (p0 - block_sizes(blocks).double())).clamp_min(0)  # (L,)
    if block_budget.sum() > budget:
        block_budget *= budget / float(block_budget.sum())
    original = [state["sizes"][c.group.name][0] // len(c.items[0]) for c in cands]  # items of the dense group
    chosen = select(cands, costs, [block_of[c.group.name] for c in cands], original, state["s"], block_budget,
                    budget)

    selection = {c.group.name: sorted(p for k in chosen[ci] for p in c.items[k]) for ci, c in enumerate(cands)}
    selection = {k: v for k, v in selection.items() if v}
    counts: dict[str, int] = {}
    for name, positions in selection.items():
        gone = set(positions)
        state["alive"][name] = [orig for p, orig in enumerate(state["alive"][name]) if p not in gone]
        counts[kinds[name]] = counts.get(kinds[name], 0) + len(positions)
    with torch.no_grad():
        graph.prune(selection)
    adapter.sync_config()
    return {"removed": counts, "params_removed": sum(len(chosen[ci]) * costs[ci] for ci in range(len(cands)))}


def select(cands: list, costs: list, block_of: list, original: list, s: Any, block_budget: Any,
           budget: float) -> list[set[int]]:
    """{item} per candidate group to remove, never more than `budget` parameters plus half an item:
    1. coarse groups (heads; all but each block's finest group), blocks by falling s_b: each loses its weakest
       items up to round(s_b x its original items) in all, as the step's budget allows (the paper's rule);
    2. each block's finest group (MLP neurons) fills what is left of the block's `block_budget` (and of the
       step's budget);
    3. the weakest items anywhere (score over the group mean) make up `budget`, then one more item if that
       brings the total nearer to it (so the step lands within one unit of it)."""
    from ..prune.unit_allocation import fill

    chosen: list[set[int]] = [set() for _ in cands]
    spent = {b: 0.0 for b in set(block_of)}
    removed = 0.0
    per_block = {b: sorted((ci for ci in range(len(cands)) if block_of[ci] == b), key=lambda ci: -costs[ci])
                 for b in set(block_of) - {-1}}
    order = sorted(per_block, key=lambda b: -float(s[b]))
    for b in order:
        for ci in per_block[b][:-1]:
            want = math.floor(float(s[b]) * original[ci] + 0.5) - (original[ci] - len(cands[ci].items))
            k = max(0, min(want, int((budget - removed) // costs[ci]), cands[ci].cap))
            chosen[ci].update(range(k))  # the k weakest items
            spent[b] += k * costs[ci]
            removed += k * costs[ci]
    for b in order:
        ci = per_block[b][-1]
        left = min(float(block_budget[b]) - spent[b], budget - removed)
        k = max(0, min(int(left // costs[ci]), cands[ci].cap))
        chosen[ci].update(range(k))
        removed += k * costs[ci]
    items = sorted((float(c.scores[k]), ci, k) for ci, c in enumerate(cands) for k in range(len(c.items)))
    caps = [c.cap for c in cands]
    for _score, ci, k in items:  # the rest of the step, weakest first anywhere, never past the budget
        if k not in chosen[ci] and len(chosen[ci]) < caps[ci] and removed + costs[ci] <= budget:
            chosen[ci].add(k)
            removed += costs[ci]
    fill(items, costs, caps, chosen, budget, removed)  # at most one more item, if it lands nearer the budget
    return chosen


def block_sizes(blocks: list) -> Any:
    """(L,) float64 parameter count of each block."""
    import torch

    return torch.tensor([float(sum(p.numel() for p in b.parameters())) for b in blocks], dtype=torch.float64)


def training_summary(details: dict) -> dict:
    """What the per-cycle report keeps of a recover() report."""
    history = details["history"]
    return {"tokens": details["tokens"], "steps": details["steps"], "seconds": details["recover_seconds"],
            "tokens_per_second": details["tokens_per_second"], "loss_first": history[0]["loss"],
            "loss_last": history[-1]["loss"], "loss": [row["loss"] for row in history], "evals": details["evals"]}
