"""`prunekit` command line: a thin shell over prunekit.api.

Errors caused by input (unknown names, bad recipes, missing files, an existing output folder) print
one paragraph and exit with status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import PrunekitError

app = typer.Typer(
    name="prunekit",
    help="Make PyTorch models smaller and faster by pruning, and measure the trade-off.\n\n"
    "Examples:\n\n  prunekit run recipes/quickstart.yaml\n\n  prunekit eval smollm2-135m\n\n  prunekit list methods",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    from .utils.progress import set_quiet

    set_quiet(quiet)


def _finish(report: dict) -> None:
    from .evaluate.report import print_table

    print_table(report)
    out = report["output"]
    typer.echo(f"Report: {out}/report.md, {out}/report.json, {out}/tradeoff.png")


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file (see recipes/).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe value: key.path=value (repeatable), e.g. "
        "--set evaluation.perplexity.windows=4")] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Output folder (default runs/NAME-TIME).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Validate the recipe and exit without loading weights.")] = False,
) -> None:
    """Run a recipe: load the model, prune each variant, evaluate against the dense baseline, write reports."""
    from .recipe import load_recipe

    resolved = load_recipe(recipe, set_ or [])
    if check:
        typer.echo(f"Recipe '{recipe}' is valid: model {resolved.model}, {len(resolved.variants)} variant(s).")
        return
    from .pipeline import run_recipe

    _finish(run_recipe(resolved, output=output, overwrite=overwrite))


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Argument(
        help="Bundled model name, HF folder, .gguf file or hub id.")] = "smollm2-135m",
    corpus: Annotated[str, typer.Option(
        help="Evaluation corpus (prunekit list corpora) or a .txt/.jsonl file.")] = "wiki",
    window: Annotated[int, typer.Option(help="Tokens per perplexity window.")] = 1024,
    windows: Annotated[int, typer.Option(help="Number of non-overlapping windows from the evaluation split.")] = 16,
    tasks: Annotated[str | None, typer.Option(
        help="Comma-separated tasks (prunekit list tasks); default perplexity,efficiency, or needle with "
        "--press.")] = None,
    press: Annotated[list[str] | None, typer.Option(
        "--press", help="Also evaluate inside this inference-time press (prunekit list presses); repeat to "
        "compare several against dense.")] = None,
    press_ratio: Annotated[float | None, typer.Option(
        "--press-ratio", help="ratio of every --press, in [0, 1): the fraction of the press's work "
        "removed (KV entries, prompt-token work over layers for lazyllm, attended keys for delta and hip).")]
    = None,
    press_option: Annotated[list[str] | None, typer.Option(
        "--press-option", help="Press option key=value (YAML value, repeatable), e.g. budget=512.")] = None,
    needle_length: Annotated[int, typer.Option(help="Needle task: prompt length in tokens.")] = 1024,
    needle_samples: Annotated[int, typer.Option(help="Needle task: samples per depth (5 depths).")] = 4,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Output folder (default runs/eval-TIME).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")] = False,
) -> None:
    """Evaluate a model (perplexity, size, MACs, latency, needle retrieval) and write a report; the dense
    perplexity is cached. With --press, each press is a variant evaluated against the dense model. A folder
    saved by prunekit (a recipe's save stage or prunekit.save) is compared with the model it was pruned from:
    that one is the dense row, the folder the variant row."""
    from .pipeline import run_recipe
    from .recipe import parse_recipe

    if press_ratio is not None or press_option:
        if not press:
            raise PrunekitError("--press-ratio and --press-option need at least one --press NAME.")
    options = _press_options(press_option or [])
    if press_ratio is not None:
        options["ratio"] = press_ratio
    tasks = tasks or ("needle" if press else "perplexity,efficiency")
    variants = [{"name": name, "stages": [{"press": {"name": name, **options}}]} for name in press or []]
    base = None if press else _pruned_base(model)
    if base is not None:  # a saved pruned model: the baseline row is the model it was pruned from
        variants = [{"name": Path(model).name or "pruned", "model": model, "stages": []}]
    recipe = parse_recipe({
        "name": "eval", "model": base or model,
        "evaluation": {"tasks": [t.strip() for t in tasks.split(",") if t.strip()],
                       "perplexity": {"corpus": corpus, "window": window, "windows": windows},
                       "needle": {"lengths": [needle_length], "samples": needle_samples}},
        "variants": variants,
    })
    _finish(run_recipe(recipe, output=output, overwrite=overwrite))


def _pruned_base(model: str) -> str | None:
    """The base of a prunekit-saved folder when it still resolves (a bundled name or an existing path), else None
    (the folder is then evaluated alone, with a note)."""
    from .io import saved_base
    from .models import validate_spec

    base = saved_base(model)
    if base is None:
        return None
    try:
        validate_spec(base)
    except PrunekitError:
        typer.echo(f"note: '{model}' was pruned from '{base}', which is not found; evaluating it alone.", err=True)
        return None
    return base


def _press_options(items: list[str]) -> dict:
    return _key_values(items, "--press-option")


def _key_values(items: list[str], flag: str) -> dict:
    """key=value pairs with YAML values."""
    import yaml

    options = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise PrunekitError(f"{flag} '{item}' must look like key=value")
        options[key.strip()] = yaml.safe_load(raw)
    return options


@app.command("recover")
def recover_(
    model: Annotated[Path, typer.Argument(help="A saved (pruned) model folder, e.g. runs/NAME/models/VARIANT.")],
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Output folder (default runs/recover-NAME-TIME): model/, report.md, recovery.png.")]
    = None,
    teacher: Annotated[str | None, typer.Option(
        "--teacher", help="Dense model for distillation losses (default: the model the run pruned).")] = None,
    method: Annotated[str, typer.Option(help="lora (peft adapters, merged at the end) or full.")] = "lora",
    loss: Annotated[str, typer.Option(help="ce, or distillation from the teacher: fkl, rkl, jsd.")] = "ce",
    tokens: Annotated[int, typer.Option(help="Training budget in tokens.")] = 100_000,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-4,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any other recover option key=value (YAML value, repeatable), e.g. rank=32, "
        "corpus=news, schedule=wsd, seq_len=512. See prunekit.recover.RecoverConfig.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")] = False,
) -> None:
    """Heal a pruned model: fine-tune it (LoRA or full, keeping every pruned weight at zero) and save it again.
    An interrupted run writes a checkpoint; the same command resumes it."""
    from .recover.saved import recover_saved

    options = {"method": method, "loss": loss, "tokens": tokens, "lr": lr, **_key_values(set_ or [], "--set")}
    report = recover_saved(model, output, teacher=teacher, options=options, overwrite=overwrite)
    st = report["recover"]
    for corpus, before in st["perplexity_before"].items():
        typer.echo(f"{corpus}: perplexity {before:.2f} -> {st['perplexity_after'][corpus]:.2f}")
    typer.echo(f"{st['tokens']} tokens in {st['recover_seconds']:.0f} s ({st['tokens_per_second']:.0f} tokens/s). "
               f"Model: {report['output']}/model, report: {report['output']}/report.md")


@app.command("context")
def context(
    file: Annotated[Path, typer.Argument(help="Text or code file to prune ('-' reads standard input).")],
    query: Annotated[str, typer.Option("--query", "-Q", help="The question the kept context must answer.")],
    budget: Annotated[int | None, typer.Option(help="Keep at most this many tokens.")] = None,
    ratio: Annotated[float | None, typer.Option(
        help="Remove this fraction of the tokens, in [0, 1) (0.5 keeps half).")] = None,
    threshold: Annotated[float | None, typer.Option(
        help="Adaptive: keep sentences scoring at least this (method sentences).")] = None,
    method: Annotated[str, typer.Option(help="sentences (Provence-style), code (LongCodeZip) or tokens "
                                        "(self-information baseline).")] = "sentences",
    rate: Annotated[float | None, typer.Option(
        help="Deprecated: the KEPT fraction, in (0, 1]; use --ratio (removed fraction) = 1 - rate.")] = None,
) -> None:
    """Prune a context for a query and print the kept text, then the token counts and the removed fraction on
    standard error."""
    import warnings

    from .api import compress_context
    from .context import get_pruner
    from .core.typed import RenamedOptionWarning

    get_pruner(method)  # fail on a bad name before reading anything
    if [budget, ratio, rate, threshold].count(None) != 3:
        raise PrunekitError("Give exactly one of --budget N, --ratio R or --threshold T"
                            + (" (--rate is the old form of --ratio)." if rate is not None else "."))
    if rate is not None:
        typer.echo(f"--rate (kept fraction) is deprecated and replaced by --ratio (removed fraction) = 1 - rate: "
                   f"use --ratio {1 - rate:g}.", err=True)
    if str(file) == "-":
        data = sys.stdin.buffer.read()
    elif not file.is_file():
        raise PrunekitError(f"File '{file}' does not exist.")
    else:
        data = file.read_bytes()
    with warnings.catch_warnings():  # --rate's deprecation is printed above, once
        warnings.simplefilter("ignore", RenamedOptionWarning)
        pruned = compress_context(query, data, method=method, tokens=budget, ratio=ratio, threshold=threshold,
                                  rate=rate)
    typer.echo(pruned.text)
    typer.echo(f"kept {pruned.kept_tokens} of {pruned.original_tokens} tokens "
               f"(removed fraction {pruned.removed_fraction:.3f})", err=True)


@app.command("list")
def list_(
    kind: Annotated[str | None, typer.Argument(
        help="models, corpora, methods, tasks, stages, presses, context-pruners, adapters or handlers "
        "(default: all).")] = None,
) -> None:
    """List every registry: models, corpora, methods, tasks, recipe stages, inference-time presses, context
    pruners, model adapters, graph layer handlers and the unit criteria of llm-structured."""
    from .context import PRUNERS
    from .data import CORPORA
    from .errors import unknown_name
    from .evaluate.tasks import TASKS
    from .graph.handlers import handler_registry
    from .importance.unit_criteria import UNIT_CRITERIA
    from .methods import METHODS
    from .models import ADAPTERS, MODELS
    from .recipe.stages import STAGES
    from .runtime.registry import PRESSES

    registries = {"models": MODELS, "corpora": CORPORA, "methods": METHODS, "tasks": TASKS, "stages": STAGES,
                  "presses": PRESSES, "context-pruners": PRUNERS, "adapters": ADAPTERS, "handlers": handler_registry(),
                  "unit-criteria": UNIT_CRITERIA}
    if kind is not None and kind not in registries:
        raise unknown_name("list kind", kind, registries)
    for name, registry in registries.items():
        if kind in (None, name):
            typer.echo(f"{name}:")
            for entry in registry.entries():
                typer.echo(f"  {entry.name:<16} {entry.summary}")


class Terminated(BaseException):
    """SIGTERM arrived (a job scheduler, `timeout`, `kill`): unwinds like Ctrl-C, so partial output is removed."""


def _raise_on_sigterm(signum, _frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def main() -> None:
    debug = "--debug" in sys.argv
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        app()
    except Terminated:
        typer.echo("Terminated by SIGTERM: stopped, and any partial output was removed.", err=True)
        raise SystemExit(128 + signal.SIGTERM) from None
    except (PrunekitError, FileExistsError) as exc:
        if debug:
            raise
        typer.echo(f"Error: {exc}", err=True)
        if not debug:
            typer.echo("(run with --debug for the full traceback)", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
