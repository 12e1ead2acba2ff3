"""Run a recipe: load, evaluate the dense baseline, build each variant, evaluate, save, report."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .prune.inputs import PruneInputs
from .recipe import Recipe
from .utils.paths import atomic_directory
from .utils.progress import log


@dataclass
class RunContext:
    """What stages share within one run: the recipe, the dense model and cached calibration data."""

    recipe: Recipe
    output: Path
    _calibration: Any = None
    dense: Any = None  # the dense LoadedModel: the teacher of a recover stage
    extras: dict = field(default_factory=dict)

    def checkpoint(self, variant: str, stage: Any) -> Path:
        """Where a training stage keeps its resumable checkpoint: outside the (temporary) output folder, keyed by
        the recipe, the variant and the stage, so running the same recipe again resumes it."""
        import hashlib
        import json

        from .utils.paths import cache_dir

        key = json.dumps([self.recipe.to_dict(), variant, stage.to_dict()], sort_keys=True, default=str)
        return cache_dir("checkpoints") / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"

    def calibration(self, tokenizer: Any):
        """(samples, seq_len) calibration token ids, built once per run."""
        if self._calibration is None:
            from .data import calibration_windows

            cal = self.recipe.calibration
            self._calibration = calibration_windows(tokenizer, cal.corpus, cal.samples, cal.seq_len, cal.seed,
                                                    cal.weights)
        return self._calibration

    def inputs(self) -> PruneInputs:
        """What a pruning method reads from this run: its calibration source and seed, and the dense model."""
        return PruneInputs(calibration=self.calibration, seed=self.recipe.calibration.seed, dense=self.dense)


def resolve_output(recipe: Recipe, output: str | None, overwrite: bool) -> Path:
    """The output folder; an existing one is an error unless `overwrite`."""
    chosen = output or recipe.output
    if chosen is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        chosen = f"runs/{recipe.name}-{stamp}"
    path = Path(chosen)
    if path.exists() and not overwrite:
        raise ConfigError(f"Output folder '{path}' already exists. Choose another with --output, or pass --overwrite.")
    return path


def run_recipe(recipe: Recipe, *, output: str | None = None, overwrite: bool = False) -> dict:
    """Execute `recipe` and write report.json, report.md and plots into the output folder."""
    from .evaluate.report import write_report
    from .evaluate.run import evaluate_loaded
    from .models import load

    out = resolve_output(recipe, output, overwrite)
    started = time.perf_counter()
    with atomic_directory(out, overwrite=overwrite) as tmp:
        log(f"loading model {recipe.model} ...")
        t0 = time.perf_counter()
        dense = load(recipe.model)
        load_seconds = time.perf_counter() - t0
        log(f"loaded {recipe.model} in {load_seconds:.1f} s")
        ctx = RunContext(recipe, tmp, dense=dense)
        rows = [{"variant": "dense", "metrics": evaluate_loaded(dense, recipe.evaluation, dense=True), "stages": []}]
        for variant in recipe.variants:
            log(f"variant {variant.name}: {len(variant.stages)} stage(s)")
            loaded = variant_model(variant, dense)
            stage_reports = [run_stage(stage, loaded, ctx, variant.name) for stage in variant.stages]
            press = ctx.extras.pop(("press", variant.name), None)
            metrics = evaluate_loaded(loaded, recipe.evaluation, press=press)
            rows.append({"variant": variant.name, "metrics": metrics, "stages": stage_reports})
            del loaded
        report = {
            "recipe": recipe.to_dict(),
            "model": {"spec": recipe.model, "fingerprint": dense.fingerprint, "load_seconds": load_seconds},
            "results": rows,
            "wall_seconds": time.perf_counter() - started,
            "created": datetime.now().isoformat(timespec="seconds"),
        }
        write_report(report, tmp)
    report["output"] = str(out)
    return report


def variant_model(variant: Any, dense: Any) -> Any:
    """What a variant starts from: its own saved model when it names one, else a fresh copy of the dense one."""
    if variant.model is not None:
        from .models import load

        log(f"  loading {variant.model} ...")
        loaded = load(variant.model)
    else:
        loaded = copy.copy(dense)
        loaded.model = copy.deepcopy(dense.model)
        loaded.adapter = type(dense.adapter)(loaded.model)
    loaded.fingerprint = None  # a variant is never read from or written to the dense cache
    return loaded


def run_stage(stage: Any, loaded: Any, ctx: RunContext, variant: str) -> dict:
    """Run one stage on `loaded` (modified in place) and return its report entry."""
    from .methods import METHODS

    start = time.perf_counter()
    if stage.kind == "prune":
        log(f"  prune: {stage.options.method}")
        result = METHODS.load(stage.options.method)(loaded, stage.options.config, ctx.inputs(),
                                                    method=stage.options.method)
        ctx.extras.setdefault(("plan", variant), []).append(
            {"stage": stage.to_dict(), "layers": result.layers, "plan": result.plan})
        details = result.report(with_plan=False)  # the plan goes to the saved folder
    elif stage.kind == "press":
        log(f"  press: {stage.options.name}")
        if ("press", variant) in ctx.extras:
            raise ConfigError(f"Variant '{variant}' has more than one press stage; recipes run one press "
                              "per variant")
        ctx.extras[("press", variant)] = stage.options.build()
        details = {"press": stage.options.name}
    elif stage.kind == "recover":
        from .recover import recover

        options = stage.options
        log(f"  recover: {options.method}, loss {options.loss}, {options.tokens} tokens")
        details = recover(loaded, options, teacher=ctx.dense, checkpoint=ctx.checkpoint(variant, stage))
    elif stage.kind == "save":
        from .io import save_model

        folder = ctx.output / "models" / variant
        save_model(loaded, folder, plan=ctx.extras.get(("plan", variant)), recipe=ctx.recipe.to_dict())
        details = {"folder": str(Path("models") / variant)}
    else:  # parse_stage only admits registered kinds
        raise ConfigError(f"Stage kind '{stage.kind}' has no runner")
    return {"stage": stage.to_dict(), "seconds": time.perf_counter() - start, **details}
