"""End to end: a recipe on a tiny local model prunes, evaluates, saves, reports, and reloads."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from prunekit.api import run
from prunekit.errors import ConfigError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("\n\n".join(f"The river number {i} flows past the old mill and the quiet town. " * 4
                                for i in range(400)))
    return str(path)


def recipe(model_dir, corpus, **extra):
    data = {
        "name": "tiny", "model": str(model_dir),
        "calibration": {"corpus": corpus, "samples": 4, "seq_len": 32},
        "evaluation": {"perplexity": {"corpus": corpus, "window": 32, "windows": 4},
                       "efficiency": {"prefill_tokens": 16, "decode_tokens": 2, "repeats": 1, "macs_seq_len": 16}},
        "variants": [
            {"name": "wanda-50", "stages": [{"prune": {"method": "wanda", "ratio": 0.5}}, {"save": {}}]},
            {"name": "mag-2of4", "stages": [{"prune": {"method": "magnitude", "pattern": "2:4"}}]},
        ],
    }
    data.update(extra)
    return data


def test_run_writes_reports_and_a_reloadable_model(tiny_llama_dir, corpus, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    report = run(recipe(tiny_llama_dir, corpus), output=str(out))
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "tradeoff.png", "models"}
    saved = json.loads((out / "report.json").read_text())
    names = [r["variant"] for r in saved["results"]]
    assert names == ["dense", "wanda-50", "mag-2of4"]
    wanda = saved["results"][1]
    layers = wanda["stages"][0]["layers"]
    pruned = sum(v["params"] for v in layers.values()) // 2
    assert wanda["metrics"]["params_body_nonzero"] == wanda["metrics"]["params_body"] - pruned
    assert all(abs(v["actual"] - 0.5) < 1e-9 for v in layers.values())
    table = (out / "report.md").read_text()
    assert "| wanda-50 |" in table and "per-layer sparsity" in table
    # the saved folder reloads with plain from_pretrained and gives the pruned model's logits
    folder = out / "models" / "wanda-50"
    assert (folder / "prunekit_plan.json").is_file() and (folder / "recipe.yaml").is_file()
    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    q = reloaded.model.layers[0].self_attn.q_proj.weight
    assert (q == 0).float().mean().item() == 0.5
    ids = torch.arange(1, 30).unsqueeze(0)
    from prunekit.models import load

    again = load(str(folder))
    with torch.no_grad():
        torch.testing.assert_close(again.model(ids).logits, reloaded(ids).logits, rtol=0, atol=0)
    assert report["results"][0]["metrics"]["perplexity"] > 1


def test_existing_output_folder_is_refused_and_left_alone(tiny_llama_dir, corpus, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="already exists"):
        run(recipe(tiny_llama_dir, corpus), output=str(out))
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_a_failing_run_leaves_no_partial_output(tiny_llama_dir, corpus, tmp_path):
    data = recipe(tiny_llama_dir, corpus)
    data["evaluation"]["perplexity"]["windows"] = 10_000  # fails after the model loaded
    with pytest.raises(ConfigError, match="fewer than the 10000 requested"):
        run(data, output=str(tmp_path / "never"))
    assert list(tmp_path.iterdir()) == []


def test_cli_list_eval_and_errors(tiny_llama_dir, corpus, tmp_path):
    cli = [sys.executable, "-m", "prunekit.cli"]
    listing = subprocess.run(cli + ["list", "methods"], capture_output=True, text=True, check=True).stdout
    for method in ("magnitude", "wanda", "sparsegpt", "random"):
        assert method in listing
    proc = subprocess.run(cli + ["eval", "no-such-model"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Unknown model 'no-such-model'" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(cli + ["--debug", "eval", "no-such-model"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe(tiny_llama_dir, corpus)))
    proc = subprocess.run(cli + ["run", str(path), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0 and "2 variant(s)" in proc.stdout
    out = tmp_path / "evalout"
    proc = subprocess.run(cli + ["-q", "eval", str(tiny_llama_dir), "--corpus", corpus, "--window", "32",
                                 "--windows", "2", "--tasks", "perplexity", "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "dense" in proc.stdout and (out / "report.md").is_file()


def test_sigterm_during_pruning_leaves_nothing_and_says_so(tiny_llama_dir, corpus, tmp_path):
    import os
    import signal
    import time

    data = recipe(tiny_llama_dir, corpus)
    data["calibration"] = {"corpus": corpus, "samples": 64, "seq_len": 256}  # pruning takes seconds
    data["variants"] = [{"name": f"sgpt-{i}", "stages": [{"prune": {"method": "sparsegpt", "ratio": 0.5}},
                                                         {"save": {}}]} for i in range(20)]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    parent = tmp_path / "runs"
    parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "prunekit.cli", "run", str(path), "-o", str(parent / "out")],
                            stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:  # wait until the second variant is pruning: a model is already saved by then
            seen.append(line)
            if "prune: sparsegpt" in line and sum("prune:" in s for s in seen) == 2:
                break
        assert any(p.name.endswith(".partial") for p in parent.iterdir()), "the run writes into a partial folder"
        os.kill(proc.pid, signal.SIGTERM)
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, "".join(seen) + rest
    assert "Terminated by SIGTERM" in rest
    time.sleep(0.1)
    assert list(parent.iterdir()) == []


def test_eval_of_a_saved_pruned_model_compares_it_with_its_base(tiny_llama_dir, corpus, tmp_path):
    import prunekit

    _, result = prunekit.prune(str(tiny_llama_dir), "magnitude", ratio=0.5)
    folder = prunekit.save(result, tmp_path / "pruned-mag")
    assert yaml.safe_load((folder / "recipe.yaml").read_text()) == {"model": str(tiny_llama_dir)}
    out = tmp_path / "evalpruned"
    cli = [sys.executable, "-m", "prunekit.cli", "-q", "eval", str(folder), "--corpus", corpus, "--window", "32",
           "--windows", "2", "--tasks", "perplexity", "-o", str(out)]
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = {row["variant"]: row for row in json.loads((out / "report.json").read_text())["results"]}
    assert set(rows) == {"dense", "pruned-mag"}
    dense = prunekit.evaluate(str(tiny_llama_dir), tasks=["perplexity"], corpus=corpus, window=32, windows=2)
    assert rows["dense"]["metrics"]["perplexity"] == pytest.approx(dense["perplexity"], rel=1e-6)
    alone = prunekit.evaluate(str(folder), tasks=["perplexity"], corpus=corpus, window=32, windows=2)
    assert rows["pruned-mag"]["metrics"]["perplexity"] == pytest.approx(alone["perplexity"], rel=1e-6)
    assert alone["perplexity"] != dense["perplexity"]
    (tmp_path / "moved").mkdir()
    (folder / "recipe.yaml").write_text(yaml.safe_dump({"model": str(tmp_path / "moved" / "gone")}))
    proc = subprocess.run(cli[:-1] + [str(tmp_path / "alone")], capture_output=True, text=True)
    assert proc.returncode == 0 and "which is not found; evaluating it alone" in proc.stderr
