"""`prunekit eval --press` and recipe `press` stages: presses are variants evaluated against the dense model."""

from __future__ import annotations

import json
import math
import re

import pytest
from typer.testing import CliRunner

from prunekit.api import run
from prunekit.cli import app
from prunekit.errors import ConfigError, PrunekitError
from prunekit.recipe import parse_recipe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("\n\n".join(f"The river number {i} flows past the old mill and the quiet town. " * 4
                                for i in range(200)))
    return str(path)


def rows(report_dir) -> dict:
    report = json.loads((report_dir / "report.json").read_text())
    return {row["variant"]: row["metrics"] for row in report["results"]}


def test_eval_press_variants_against_dense(tiny_llama_dir, corpus, tmp_path):
    """A KV press leaves the full-sequence forward exact, so its perplexity equals dense; a token-dropping press
    (LazyLLM) has no perplexity (NaN); the model is unchanged afterwards."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "-q", "eval", str(tiny_llama_dir), "--corpus", corpus, "--window", "32", "--windows", "2",
        "--tasks", "perplexity", "--press", "streamingllm", "--press", "knorm", "--press-ratio", "0.5",
        "-o", str(out)])
    assert result.exit_code == 0, result.output
    metrics = rows(out)
    assert list(metrics) == ["dense", "streamingllm", "knorm"]
    assert metrics["streamingllm"]["perplexity"] == pytest.approx(metrics["dense"]["perplexity"], rel=1e-5)
    out2 = tmp_path / "out2"
    result = CliRunner().invoke(app, [
        "-q", "eval", str(tiny_llama_dir), "--corpus", corpus, "--window", "32", "--windows", "2",
        "--tasks", "perplexity", "--press", "lazyllm", "--press-option", "schedule={1: 0.5}", "-o", str(out2)])
    assert result.exit_code == 0, result.output
    assert math.isnan(rows(out2)["lazyllm"]["perplexity"])


@pytest.mark.parametrize(("args", "message"), [
    (["--press-ratio", "0.5"], "need at least one --press"),
    (["--press", "snapkv", "--press-ratio", "1.0"], r"\bratio must be a number in \[0, 1\)"),
    (["--press", "nosuch"], "Unknown press 'nosuch'"),
    (["--press", "delta", "--press-option", "budget=16"], "fill the whole budget"),
])
def test_eval_press_bad_input_fails_before_loading(tiny_llama_dir, args, message):
    result = CliRunner().invoke(app, ["-q", "eval", str(tiny_llama_dir), "--tasks", "perplexity", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, PrunekitError)
    assert re.search(message, str(result.exception)), result.exception


def test_recipe_press_stage_runs_needle_inside_press(tiny_llama_dir, corpus, tmp_path, monkeypatch):
    """The needle task of a press variant generates inside the press (entered once per sample)."""
    from prunekit.runtime import StreamingLLMPress

    entered = []
    original = StreamingLLMPress.__call__

    def spy(self, model):
        entered.append(type(model).__name__)
        return original(self, model)

    monkeypatch.setattr(StreamingLLMPress, "__call__", spy)
    recipe = parse_recipe({
        "name": "press", "model": str(tiny_llama_dir),
        "evaluation": {"tasks": ["needle"], "needle": {"lengths": [96], "depths": [0.5], "samples": 2,
                                                        "corpus": corpus, "template": "plain",
                                                        "max_new_tokens": 2}},
        "variants": [{"name": "stream", "stages": [{"press": {"name": "streamingllm", "ratio": 0.5}}]}],
    })
    report = run(recipe, output=str(tmp_path / "needle"))
    metrics = {row["variant"]: row["metrics"] for row in report["results"]}
    assert metrics["dense"]["needle_samples"] == 2 and metrics["stream"]["needle_samples"] == 2
    assert 0.0 <= metrics["stream"]["needle_accuracy"] <= 1.0
    assert len(entered) == 2  # once per sample, only for the press variant
    with pytest.raises(ConfigError, match="Unknown option 'rate'"):
        parse_recipe({"variants": [{"name": "x", "stages": [{"press": {"name": "snapkv", "rate": 0.5}}]}]})


@pytest.fixture(scope="module")
def tiny_llama4_dir(tmp_path_factory, minilm_dir):
    """A 4-layer tiny random Llama folder (2 layers cannot remove half of LazyLLM's prompt-token work)."""
    from transformers import AutoTokenizer

    from prunekit.testing import tiny_model

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    folder = tmp_path_factory.mktemp("tiny-llama4")
    tiny_model("llama", vocab=tokenizer.vocab_size, layers=4).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_eval_lazyllm_press_ratio_maps_to_a_schedule(tiny_llama4_dir, tmp_path, monkeypatch):
    """`prunekit eval --press lazyllm --press-ratio 0.5` runs: the ratio becomes a schedule for the model's depth."""
    from prunekit.runtime import LazyLLMPress
    from prunekit.runtime.tokens import keep_counts, mean_kept_fraction, ratio_schedule

    entered = []
    original = LazyLLMPress.__call__

    def spy(self, model):
        entered.append(self)
        return original(self, model)

    monkeypatch.setattr(LazyLLMPress, "__call__", spy)
    out = tmp_path / "lazy"
    result = CliRunner().invoke(app, [
        "-q", "eval", str(tiny_llama4_dir), "--press", "lazyllm", "--press-ratio", "0.5", "--tasks", "needle",
        "--needle-length", "128", "--needle-samples", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    metrics = rows(out)
    assert list(metrics) == ["dense", "lazyllm"] and metrics["lazyllm"]["needle_samples"] == 5
    press = entered[-1]
    assert press.ratio == 0.5 and press.active_schedule == ratio_schedule(4, 0.5)
    assert mean_kept_fraction(press.active_schedule, 4) == pytest.approx(0.5)
    assert press.tokens_per_layer == keep_counts(128, press.active_schedule, 4)
