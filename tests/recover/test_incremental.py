"""Incremental prune-train (Adapt-Pruner / Adapt-Accel): the sparsity update, cycle targets, Taylor selection,
training between cycles, save / reload and plan replay, a recipe run, and bad options."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from prunekit.core.typed import from_dict
from prunekit.errors import ConfigError
from prunekit.graph import DependencyGraph
from prunekit.graph.plan import apply_plan, default_inputs
from prunekit.prune.unit_allocation import non_embedding_params
from prunekit.recover.incremental import IncrementalPruneConfig, prune_incremental, update_block_sparsity
from prunekit.testing import CharTokenizer, tiny_loaded

torch.set_num_threads(1)

NEURON = 3 * 64  # parameters of one MLP neuron of the tiny Llama (gate row, up row, down column)
HEAD = 2 * 16 * 64 * 2 + 2 * 16 * 64  # a KV head with its 2 query heads: q rows, o columns, k and v rows


def windows(n=4, t=16, seed=1):
    return torch.randint(0, 128, (n, t), generator=torch.Generator().manual_seed(seed))


def config(**options):
    return from_dict(IncrementalPruneConfig, options, "prune")


def test_block_sparsity_update_matches_hand_computation():
    # I = (0.1, 0.3, 0.2): mean 0.2, centred (-0.1, 0.1, 0), max |.| 0.1, so I^ = (-1, 1, 0)
    s = update_block_sparsity(torch.tensor([0.05, 0.0, 0.98]), torch.tensor([0.1, 0.3, 0.2]), 0.05, 0.02)
    torch.testing.assert_close(s, torch.tensor([0.12, 0.03, 0.99], dtype=torch.float64))  # 1.03 clipped to 0.99
    s = update_block_sparsity(torch.zeros(3), torch.tensor([0.1, 0.3, 0.2]), 0.01, 0.03)
    torch.testing.assert_close(s, torch.tensor([0.04, 0.0, 0.01], dtype=torch.float64))  # -0.02 clipped to 0
    s = update_block_sparsity(torch.full((2,), 0.1), torch.tensor([0.5, 0.5]), 0.05, 0.03)  # alike: no shift
    torch.testing.assert_close(s, torch.full((2,), 0.15, dtype=torch.float64))


def test_targets_split_the_ratio_into_cycles_and_substeps():
    assert [round(t, 6) for _c, t in config(ratio=0.3, tokens=0).targets()] == [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    steps = config(ratio=0.12, step_ratio=0.05, substeps=2, tokens=0).targets()
    assert [c for c, _t in steps] == [1, 1, 2, 2, 3, 3]
    assert [round(t, 6) for _c, t in steps] == [0.025, 0.05, 0.075, 0.1, 0.11, 0.12]


def test_each_cycle_removes_a_step_and_the_last_reaches_the_target():
    loaded = tiny_loaded("llama", layers=3)
    n0 = non_embedding_params(loaded)
    delta = 0.05 * n0 / sum(p.numel() for b in loaded.adapter.blocks() for p in b.parameters())  # Delta of s_l
    report = prune_incremental(loaded, config(ratio=0.3, step_ratio=0.05, amplitude=0.03, tokens=0),
                               method="incremental", windows=windows())
    assert [c["cycle"] for c in report["cycles"]] == [1, 2, 3, 4, 5, 6]
    removed_before, s = 0, torch.zeros(3, dtype=torch.float64)
    for c in report["cycles"]:
        removed = round(c["achieved"] * n0)
        assert abs(removed - round(0.05 * c["cycle"] * n0)) <= NEURON  # within one unit of c x 5%
        assert abs(removed - removed_before - 0.05 * n0) <= 2 * NEURON  # each cycle removes about 5%
        assert c["steps"][0]["params_removed"] == removed - removed_before
        removed_before = removed
        step = c["steps"][0]
        s = update_block_sparsity(s, torch.tensor(step["block_importance"]), delta, 0.03)
        torch.testing.assert_close(torch.tensor(step["block_sparsity"], dtype=torch.float64), s)  # the formula
    assert abs(report["achieved"] * n0 - round(0.3 * n0)) <= NEURON
    assert report["achieved"] * n0 == n0 - non_embedding_params(loaded)
    assert report["params_after"] == sum(p.numel() for p in loaded.model.parameters())
    s = torch.tensor(report["block_sparsity"])
    actual = torch.tensor(report["block_actual"])
    assert torch.argmax(s) == torch.argmax(actual) and torch.argmin(s) == torch.argmin(actual)  # follows s_l
    assert report["tokens"] == 0 and all("train" not in c for c in report["cycles"])
    replayed = tiny_loaded("llama", layers=3).model  # untrained: the plan's original positions give the same model
    apply_plan(replayed, report["plan"])
    ids = windows(2, 12, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(replayed(ids).logits, loaded.model(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("scope, group, unit, ratio", [
    (["mlp"], "model.layers.1.mlp.gate_proj:out", 37, 0.002),  # a budget of one neuron
    (["heads"], "model.layers.1.self_attn:kv_heads", 0, 0.05),  # a budget nearer one head than none
])
def test_taylor_removes_a_zeroed_unit_first(scope, group, unit, ratio):
    loaded = tiny_loaded("llama", layers=2)
    with torch.no_grad():
        DependencyGraph.build(loaded.model, default_inputs(loaded.model)).mask({group: [unit]})
    report = prune_incremental(loaded, config(ratio=ratio, scope=scope, tokens=0), method="incremental",
                               windows=windows())
    assert [(e["group"], e["pruned"]) for e in report["plan"]] == [(group, [unit])]
    assert report["cycles"][0]["steps"][0]["removed"] == {scope[0]: 1}


def test_training_between_cycles_then_save_reload_and_replay(corpus, tmp_path):
    from prunekit.io import save_model
    from prunekit.models import load

    loaded = tiny_loaded("llama", layers=2, vocab=256)
    loaded.tokenizer = CharTokenizer(256)
    dense = copy.deepcopy(loaded.model)
    recover = {"seq_len": 32, "batch_size": 4, "micro_batch_size": 2, "lr": 5e-3, "corpus": [corpus],
               "eval_windows": 2, "checkpoint_every": 0, "rank": 4, "alpha": 8.0, "precision": "fp32", "loss": "fkl"}
    ids = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(3))
    report = prune_incremental(loaded, config(ratio=0.2, step_ratio=0.1, tokens=256, recover=recover),
                               method="incremental", windows=ids, teacher=dense)
    assert [c["train"]["tokens"] for c in report["cycles"]] == [256, 256] and report["tokens"] == 512
    assert report["distilled"] and all(len(c["train"]["loss"]) == 2 for c in report["cycles"])
    assert abs(report["achieved"] * report["non_embedding_params"] - round(0.2 * report["non_embedding_params"])) \
        <= NEURON
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())  # merged before the next cycle
    loaded.tokenizer = None
    save_model(loaded, tmp_path / "model")
    again = load(str(tmp_path / "model"))
    with torch.no_grad():
        torch.testing.assert_close(again.model(ids).logits, loaded.model(ids).logits, rtol=0, atol=0)
    replayed = tiny_loaded("llama", layers=2, vocab=256).model  # the plan is against the original model
    apply_plan(replayed, report["plan"])
    shapes = {n: p.shape for n, p in loaded.model.named_parameters()}
    assert {n: p.shape for n, p in replayed.named_parameters()} == shapes


def test_recipe_runs_incremental_and_saves_a_reloadable_model(tiny_llama_dir, corpus, tmp_path):
    from prunekit.api import run
    from prunekit.models import load

    recipe = {
        "name": "incremental", "model": str(tiny_llama_dir),
        "calibration": {"corpus": corpus, "samples": 4, "seq_len": 16},
        "evaluation": {"tasks": ["perplexity"], "perplexity": {"corpus": corpus, "window": 32, "windows": 2}},
        "variants": [{"name": "inc", "stages": [
            {"prune": {"method": "incremental", "ratio": 0.2, "step_ratio": 0.1, "tokens": 64,
                       "recover": {"seq_len": 16, "batch_size": 4, "micro_batch_size": 2, "corpus": [corpus],
                                   "loss": "fkl", "eval_windows": 1, "rank": 4, "checkpoint_every": 0}}},
            {"save": {}}]}],
    }
    report = run(recipe, output=str(tmp_path / "out"))
    stage = report["results"][1]["stages"][0]
    assert [c["cycle"] for c in stage["cycles"]] == [1, 2] and stage["tokens"] == 128 and stage["distilled"]
    assert abs(stage["achieved"] - 0.2) < NEURON / stage["non_embedding_params"] + 1e-9
    saved = json.loads((tmp_path / "out" / "models" / "inc" / "prunekit_plan.json").read_text())
    assert saved[0]["plan"] and saved[0]["stage"]["prune"]["method"] == "incremental"
    again = load(str(tmp_path / "out" / "models" / "inc"))
    assert sum(p.numel() for p in again.model.parameters()) == stage["params_after"]


def test_bad_options_raise_config_errors_naming_them():
    for options, match in [({"ratio": 1.0}, "ratio must be in"), ({"ratio": 0.0}, "ratio must be in"),
                           ({"step_ratio": 0}, "step_ratio"), ({"substeps": 0}, "substeps"),
                           ({"amplitude": -0.1}, "amplitude"), ({"tokens": -1}, "tokens must be >= 0"),
                           ({"scope": ["channels"]}, "scope must be a non-empty list of heads, mlp"),
                           ({"head_mode": "x"}, "head_mode' must be one of kv, q, got 'x'"),
                           ({"recover": {"tokens": 5}}, "not recover.tokens"),
                           ({"recover": {"lr": 0.0}}, "lr must be > 0"), ({"recover": {"loss": "kl"}}, "loss"),
                           ({"recover": {"nope": 1}}, "Unknown key 'nope'"),
                           ({"recover": {"corpus": ["no-such-corpus"]}}, "no-such-corpus"),
                           ({"cycles": 3}, "Unknown key 'cycles'")]:
        with pytest.raises(ConfigError, match=match):
            config(**options)
    loaded = tiny_loaded("llama", layers=2)
    with pytest.raises(ConfigError, match="tokenizer"):
        prune_incremental(loaded, config(), method="incremental", windows=windows())
    loaded.tokenizer = CharTokenizer(128)
    with pytest.raises(ConfigError, match="needs the dense model as teacher \\(recover loss 'fkl'"):
        prune_incremental(loaded, config(recover={"loss": "fkl"}), method="incremental", windows=windows())
    with pytest.raises(ConfigError, match="calibration data"):
        prune_incremental(loaded, config(tokens=0), method="incremental")
    assert sum(p.numel() for p in loaded.model.parameters()) == sum(
        p.numel() for p in tiny_loaded("llama", layers=2).model.parameters())  # nothing was pruned
