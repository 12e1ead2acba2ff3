"""Run reports: report.json (everything), report.md (a table a person reads), and PNG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..utils.paths import atomic_write_text

COLUMNS = [
    ("perplexity", "PPL", "{:.2f}"),
    ("ppl_ratio", "xdense", "{:.2f}"),
    ("params_body_nonzero", "nnz M", "{:.1f}"),
    ("sparsity_body", "sparsity", "{:.1%}"),
    ("macs_per_token", "MMAC/tok", "{:.1f}"),
    ("prefill_seconds", "TTFT ms", "{:.0f}"),
    ("decode_tokens_per_second", "tok/s", "{:.1f}"),
    ("peak_rss_bytes", "RSS GB", "{:.2f}"),
]


def _cell(key: str, value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "prefill_seconds":
        value = value * 1000
    if key == "peak_rss_bytes":
        value = value / 1e9
    if key in ("params_body_nonzero", "macs_per_token"):
        value = value / 1e6
    return fmt.format(value)


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    results = report["results"]
    dense_ppl = results[0]["metrics"].get("perplexity")
    present = [c for c in COLUMNS if any(c[0] in r["metrics"] for r in results) or c[0] == "ppl_ratio"]
    if dense_ppl is None:
        present = [c for c in present if c[0] != "ppl_ratio"]
    header = ["variant"] + [c[1] for c in present]
    rows = []
    for r in results:
        metrics = dict(r["metrics"])
        if dense_ppl:
            metrics["ppl_ratio"] = metrics.get("perplexity", float("nan")) / dense_ppl
        rows.append([r["variant"]] + [_cell(k, metrics.get(k), f) for k, _, f in present])
    return header, rows


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats shown with 3 decimals, everything else with str()."""
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    header, rows = table_rows(report)
    recipe = report["recipe"]
    ppl = recipe["evaluation"]["perplexity"]
    eff = recipe["evaluation"]["efficiency"]
    lines = [
        f"# prunekit run: {recipe['name']}",
        "",
        f"Model `{report['model']['spec']}` (loaded in {report['model']['load_seconds']:.1f} s). "
        f"Perplexity on the `{ppl['corpus']}` evaluation split, {ppl['windows']} non-overlapping windows of "
        f"{ppl['window']} tokens. Prefill latency at {eff['prefill_tokens']} tokens and decode speed are "
        f"medians of {eff['repeats']} runs; MACs/token at {eff['macs_seq_len']} tokens.",
        "",
        "Columns: PPL = perplexity; xdense = PPL / dense PPL; nnz M = non-zero parameters outside the "
        "embeddings (millions); sparsity = share of zero weights outside the embeddings; MMAC/tok = dense "
        "multiply-accumulates per token (millions); TTFT ms = prefill latency; tok/s = greedy decode speed; "
        "RSS GB = peak resident memory during the timing runs.",
        "",
        markdown_table(header, rows),
    ]
    for r in report["results"][1:]:
        for stage in r["stages"]:
            layers = stage.get("layers")
            if not layers:
                continue
            lines += ["", f"## {r['variant']}: per-layer sparsity ({next(iter(stage['stage']))})", "",
                      f"Pruned {len(layers)} layers in {stage.get('prune_seconds', stage['seconds']):.1f} s: "
                      f"requested {stage.get('requested_sparsity', float('nan')):.4f}, actual "
                      f"{stage.get('actual_sparsity', float('nan')):.4f} of their weights.", "",
                      "| layer | requested | actual |", "|---|---|---|"]
            lines += [f"| {name} | {v['requested']:.3f} | {v['actual']:.3f} |" for name, v in layers.items()]
            if stage.get("no_calibration_input"):
                lines += ["", "Never ran during calibration, pruned by magnitude instead: "
                          + ", ".join(stage["no_calibration_input"])]
            if stage.get("skipped"):
                lines += ["", "Not pruned: " + ", ".join(f"{s['layer']} ({s['reason']})" for s in stage["skipped"])]
    lines += recovery_sections(report)
    lines += ["", f"Total wall time {report['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def recovery_stages(report: dict) -> list[tuple[str, dict]]:
    """(variant, stage report) of every recover stage."""
    return [(r["variant"], st) for r in report["results"][1:] for st in r["stages"] if "recover" in st["stage"]]


def recovery_sections(report: dict) -> list[str]:
    """Markdown: what each recover stage trained, its speed, and perplexity before / after per corpus."""
    lines = []
    for variant, st in recovery_stages(report):
        history = st["history"]
        lines += ["", f"## {variant}: recovery ({st['method']}, loss {st['loss']})", "",
                  f"Trained {st['layers_trained']} layers ({st['trainable_params'] / 1e6:.2f} M parameters) on "
                  f"{st['tokens']} tokens in {st['recover_seconds']:.0f} s ({st['tokens_per_second']:.0f} tokens/s), "
                  f"peak RSS {st['peak_rss_bytes'] / 1e9:.2f} GB; training loss {history[0]['loss']:.3f} -> "
                  f"{history[-1]['loss']:.3f}; {st['zeros_kept']} pruned weights kept at zero in "
                  f"{st['masked_layers']} sparse layers. Loss curve: recovery.png."]
        before, after = st["perplexity_before"], st["perplexity_after"]
        if before:
            lines += ["", markdown_table(["corpus", "PPL before", "PPL after"],
                                         [[c, before[c], after[c]] for c in before])]
    return lines


def plot_recovery(report: dict, path: Path) -> None:
    """Training loss and validation loss against training tokens, one line per recover stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant, st in recovery_stages(report):
        left.plot([h["tokens"] for h in st["history"]], [h["loss"] for h in st["history"]], label=variant)
        for key in sorted({k for e in st["evals"] for k in e if k.startswith("val_loss/")}):
            right.plot([e["tokens"] for e in st["evals"]], [e.get(key, float("nan")) for e in st["evals"]],
                       marker="o", label=f"{variant} {key.split('/', 1)[1]}")
    for axis, title in ((left, "Training loss"), (right, "Validation loss (held-out training text)")):
        axis.set_xlabel("training tokens")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        m = r["metrics"]
        if "perplexity" in m:
            x = m.get("sparsity_body", 0.0) * 100
            left.scatter([x], [m["perplexity"]], s=40)
            left.annotate(r["variant"], (x, m["perplexity"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    left.set_xlabel("sparsity of non-embedding weights (%)")
    left.set_ylabel("perplexity (log scale)")
    left.set_yscale("log")
    left.set_title("Quality against sparsity")
    left.grid(alpha=0.3)
    names = [r["variant"] for r in results if "prefill_seconds" in r["metrics"]]
    values = [r["metrics"]["prefill_seconds"] * 1000 for r in results if "prefill_seconds" in r["metrics"]]
    right.barh(names, values, color="tab:blue")
    right.set_xlabel("prefill latency (ms, median)")
    right.set_title("Time to first token")
    right.invert_yaxis()
    fig.suptitle(f"{report['recipe']['name']} on {report['model']['spec']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    header, rows = table_rows(report)
    table = Table(title=f"prunekit: {report['recipe']['name']} on {report['model']['spec']}")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(stderr=False)
    needed = console.measure(table, options=console.options.update(max_width=10_000)).maximum
    if needed > console.width:  # a narrow terminal (80 columns, or a pipe) would cut names and headers short:
        console = Console(stderr=False, width=needed)  # print at full width and let the terminal wrap lines
    console.print(table)


def write_report(report: dict, folder: Path) -> None:
    folder = Path(folder)
    atomic_write_text(folder / "report.json", json.dumps(report, indent=1, default=str))
    atomic_write_text(folder / "report.md", markdown(report))
    plot(report, folder / "tradeoff.png")
    if recovery_stages(report):
        plot_recovery(report, folder / "recovery.png")
