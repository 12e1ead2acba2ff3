"""Joint pruning with LoRA (ATP / SPLoRA): straight-through gates, exact gating, the budget, training, save/reload,
the recipe stage and bad options."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import torch

from prunekit.core.typed import from_dict
from prunekit.errors import ConfigError
from prunekit.io.save import save_model
from prunekit.models import load
from prunekit.prune.unit_allocation import non_embedding_params
from prunekit.recover.joint import (
    JointPruneConfig,
    budget_penalty,
    build_gates,
    expected_removed,
    gate_values,
    install_gates,
    prune_joint,
    ramp_target,
    select_units,
)
from prunekit.testing import CharTokenizer, tiny_loaded
from prunekit.utils.hooks import HookSet

torch.set_num_threads(1)


def train_options(corpus, steps=12, **overrides):
    return {"tokens": steps * 4 * 32, "seq_len": 32, "batch_size": 4, "micro_batch_size": 2, "lr": 5e-3,
            "corpus": [corpus], "eval_windows": 2, "checkpoint_every": 0, "rank": 4, "alpha": 8.0,
            "precision": "fp32", **overrides}


def ids(seed=0, batch=2, length=16, vocab=128):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def closing(gates, selection):
    """Gate values with the selected units at 0 and all others at 1."""
    values = torch.ones_like(gates.logits.detach())
    for name, positions in selection.items():
        values[gates.slices[name]][positions] = 0.0
    return values


@pytest.mark.parametrize("kind", ["gumbel", "hard-concrete"])
def test_gates_are_hard_straight_through_and_open_with_probability_sigmoid(kind):
    torch.manual_seed(0)
    logits = torch.full((20_000,), 1.0, requires_grad=True)
    gates = gate_values(logits, kind, 0.5, sample=True)
    assert set(gates.unique().tolist()) == {0.0, 1.0}  # hard in the forward pass
    assert abs(gates.mean().item() - 1 / (1 + math.exp(-1.0))) < 0.015  # P(open) = sigmoid(logit)
    weights = torch.randn(20_000)
    (gates * weights).sum().backward()
    grad = logits.grad
    assert (grad != 0).float().mean() > (0.4 if kind == "hard-concrete" else 0.99)  # reaches the logits
    assert (torch.sign(grad[grad != 0]) == torch.sign(weights[grad != 0])).all()  # d gate / d logit >= 0
    fixed = gate_values(torch.tensor([-0.5, 0.0, 0.5]), kind, 0.5, sample=False)
    assert fixed.tolist() == [0.0, 0.0, 1.0]  # outside training: open iff logit > 0


def test_penalty_ramp_and_expected_ratio_match_hand_computation():
    logits = torch.tensor([0.0, 40.0, -40.0])
    costs = torch.tensor([2.0, 3.0, 5.0])
    assert expected_removed(logits, costs, 20.0).item() == pytest.approx((2 * 0.5 + 0 + 5) / 20)  # 0.3
    removed = torch.tensor(0.3)
    assert budget_penalty(removed, 0.1, 10.0).item() == pytest.approx(10 * 0.04)
    assert budget_penalty(removed, 0.1, 10.0, multiplier=-1.0).item() == pytest.approx(-1 * 0.2 + 0.4)
    assert [ramp_target(s, 10, 0.05, 0.3, 0.5) for s in (0, 1, 4, 5, 9)] == pytest.approx(
        [0.1, 0.15, 0.3, 0.3, 0.3])
    assert ramp_target(0, 10, 0.05, 0.3, 0.0) == 0.3


def gated_logits(model, groups, outputs, gates, values, x):
    with HookSet() as hooks, torch.no_grad():
        install_gates(hooks, model, groups, outputs, gates)
        gates.values = values
        return model(x).logits


def test_open_gates_leave_the_model_exactly_unchanged():
    loaded = tiny_loaded("llama", layers=2)
    graph, groups, _kinds, outputs, gates = build_gates(loaded, JointPruneConfig(init_logit=60.0))
    x = ids()
    with torch.no_grad():
        plain = loaded.model(x).logits
    assert torch.equal(gated_logits(loaded.model, groups, outputs, gates, torch.ones_like(gates.logits), x), plain)
    assert torch.equal(gated_logits(loaded.model, groups, outputs, gates, gates.sample(), x), plain)  # all open
    closed = gated_logits(loaded.model, groups, outputs, gates, torch.zeros_like(gates.logits), x)
    assert not torch.allclose(closed, plain)
    with torch.no_grad():
        assert torch.equal(loaded.model(x).logits, plain)  # hooks gone


@pytest.mark.parametrize("family,head_mode,lora", [("llama", "kv", False), ("llama", "q", False),
                                                   ("qwen2", "kv", False), ("llama", "kv", True)])
def test_slicing_the_closed_units_gives_the_gated_logits(family, head_mode, lora):
    """Sliced = masked: removing the selected units through the graph equals closing their gates (with LoRA
    adapters too, merged before the slicing as prune_joint does), and the selection meets the budget."""
    from prunekit.recover.lora import attach_lora, lora_parameters, merge_lora
    from prunekit.recover.run import target_modules

    loaded = tiny_loaded(family, layers=2)
    total = non_embedding_params(loaded)
    graph, groups, _kinds, outputs, gates = build_gates(loaded, JointPruneConfig(head_mode=head_mode))
    with torch.no_grad():
        gates.logits.normal_(generator=torch.Generator().manual_seed(1))
    selection, _cands, _costs = select_units(graph, groups, gates.scores(), 0.3 * total, 0.9)
    model = loaded.model
    if lora:
        train = JointPruneConfig(train={"rank": 4, "alpha": 8.0}).recovery
        peft_model, _ = attach_lora(model, target_modules(model, train), train)
        with torch.no_grad():
            for _name, p in lora_parameters(model):
                p.normal_(std=0.05)
    x = ids(seed=2)
    masked = gated_logits(model, groups, outputs, gates, closing(gates, selection), x)
    if lora:
        merge_lora(peft_model)
    graph.prune(selection)
    loaded.adapter.sync_config()
    with torch.no_grad():
        sliced = model(x).logits
    torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=0)
    assert abs((total - non_embedding_params(loaded)) / total - 0.3) < 0.01
    assert not any("lora" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("penalty", ["quadratic", "lagrangian"])
def test_joint_training_meets_the_budget_and_the_penalty_moves_the_expected_ratio(penalty, corpus):
    loaded = tiny_loaded("llama", layers=2, vocab=256)
    loaded.tokenizer = CharTokenizer(256)
    total = non_embedding_params(loaded)
    config = JointPruneConfig(ratio=0.3, penalty=penalty, train=train_options(corpus, steps=24))
    report = prune_joint(loaded, config, method="joint-lora")
    assert abs(report["achieved"] - 0.3) < 0.01
    assert abs((total - non_embedding_params(loaded)) / total - 0.3) < 0.01  # counted on the model itself
    curve = [row["expected_ratio"] for row in report["penalty_curve"]]
    assert len(curve) == 24 and report["tokens"] == 24 * 4 * 32
    assert curve[0] < 0.06 and abs(curve[-1] - 0.3) < 0.5 * abs(curve[0] - 0.3)  # pulled towards the target
    assert report["penalty_curve"][-1]["target_ratio"] == pytest.approx(0.3)
    assert all(v["after"] == v["before"] - round(v["actual"] * v["before"]) for v in report["layers"].values())
    assert sum(v["before"] - v["after"] for v in report["layers"].values()) == sum(
        len(e["pruned"]) for e in report["plan"])
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())
    assert all(p.requires_grad for p in loaded.model.parameters())  # flags restored
    assert report["evals"][-1]["val_loss/" + corpus] < report["evals"][0]["val_loss/" + corpus] + 0.5


def test_pruned_model_saves_and_reloads_with_equal_logits(corpus, tmp_path):
    loaded = tiny_loaded("llama", layers=2, vocab=256)
    loaded.tokenizer = CharTokenizer(256)
    report = prune_joint(loaded, JointPruneConfig(ratio=0.4, train=train_options(corpus, steps=4)),
                         method="joint-lora")
    loaded.tokenizer = None  # the byte stand-in cannot be saved
    x = ids(seed=3, vocab=256)
    with torch.no_grad():
        expected = loaded.model(x).logits
    save_model(loaded, tmp_path / "m", plan=report)
    again = load(str(tmp_path / "m"))
    with torch.no_grad():
        torch.testing.assert_close(again.model(x).logits, expected, atol=1e-6, rtol=0)
    widths = {again.model.model.layers[i].mlp.down_proj.in_features for i in range(2)}
    assert widths == {loaded.model.model.layers[i].mlp.down_proj.in_features for i in range(2)} and max(widths) < 128


def test_distillation_from_the_dense_teacher(corpus):
    dense = tiny_loaded("llama", layers=2, vocab=256)
    student = copy.copy(dense)
    student.model = copy.deepcopy(dense.model)
    student.adapter = type(dense.adapter)(student.model)
    student.tokenizer = CharTokenizer(256)
    config = JointPruneConfig(ratio=0.2, train=train_options(corpus, steps=3, loss="fkl"))
    with pytest.raises(ConfigError, match="teacher"):
        prune_joint(student, config, method="joint-lora")
    assert not any("lora" in n for n, _ in student.model.named_parameters())  # nothing attached
    report = prune_joint(student, config, method="joint-lora", teacher=dense)
    assert "fkl" in report["history"][0] and report["loss"] == "fkl"
    assert dense.model.model.layers[0].mlp.down_proj.in_features == 128  # the teacher is untouched


def test_bad_options_raise_config_errors_naming_them():
    for data, match in [({"ratio": 1.0}, "ratio"), ({"gate": "gumbal"}, "gate"), ({"penalty": "l1"}, "penalty"),
                        ({"scope": ["attn"]}, "scope"), ({"temperature": 0}, "temperature"),
                        ({"mask_lr": -1}, "mask_lr"), ({"ramp": 2}, "ramp"), ({"head_mode": "x"}, "head_mode"),
                        ({"train": {"lr": 0}}, "lr must be > 0"), ({"train": {"rank": 0}}, "rank"),
                        ({"train": {"method": "full"}}, "train.method"),
                        ({"train": {"nope": 1}}, "Unknown key 'nope'"),
                        ({"train": {"corpus": ["no-such-corpus"]}}, "no-such-corpus"), ({"nope": 1}, "nope")]:
        with pytest.raises(ConfigError, match=match):
            from_dict(JointPruneConfig, data, "prune")
    from prunekit.recipe.stages import parse_stage

    with pytest.raises(ConfigError, match="gate"):
        parse_stage({"prune": {"method": "joint-lora", "gate": "sigmoid"}}, "stages[0]")
    assert parse_stage({"prune": {"method": "joint-lora", "ratio": 0.2}}, "s").options.config.ratio == 0.2


def test_the_config_module_imports_without_torch():
    code = "import sys, prunekit.methods, prunekit.recover.joint; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_recipe_prune_stage_runs_saves_and_reloads(tiny_llama_dir, corpus, tmp_path):
    from prunekit.api import run

    recipe = {
        "name": "joint", "model": str(tiny_llama_dir),
        "calibration": {"corpus": corpus, "samples": 4, "seq_len": 32},
        "evaluation": {"tasks": ["perplexity"], "perplexity": {"corpus": corpus, "window": 32, "windows": 2}},
        "variants": [{"name": "joint", "stages": [
            {"prune": {"method": "joint-lora", "ratio": 0.25,
                       "train": {"tokens": 256, "seq_len": 32, "batch_size": 4, "corpus": [corpus], "rank": 4,
                                 "eval_windows": 1, "checkpoint_every": 0}}},
            {"save": {}}]}],
    }
    report = run(recipe, output=str(tmp_path / "out"))
    stage = report["results"][1]["stages"][0]
    assert abs(stage["achieved"] - 0.25) < 0.01 and stage["tokens"] == 256 and len(stage["penalty_curve"]) == 2
    again = load(str(tmp_path / "out" / "models" / "joint"))
    assert abs(1 - non_embedding_params(again) / stage["non_embedding_params"] - 0.25) < 0.01
    with torch.no_grad():
        assert torch.isfinite(again.model(torch.arange(1, 20).unsqueeze(0)).logits).all()


def test_an_interrupted_run_resumes_to_the_same_model(corpus, tmp_path, monkeypatch):
    """The checkpoint carries the adapters, the logits, both optimizer groups and the multiplier."""
    from prunekit.recover import joint

    config = JointPruneConfig(ratio=0.3, penalty="lagrangian", train=train_options(corpus, steps=6))
    x = ids(seed=4, vocab=256)

    def fresh():
        loaded = tiny_loaded("llama", layers=2, vocab=256)
        loaded.tokenizer = CharTokenizer(256)
        return loaded

    whole = fresh()
    prune_joint(whole, config, method="joint-lora")
    penalty = joint.UnitGates.penalty

    def interrupt_at_step_3(self, steps):
        if self.step == 3:
            raise KeyboardInterrupt
        return penalty(self, steps)

    checkpoint = tmp_path / "joint.pt"
    monkeypatch.setattr(joint.UnitGates, "penalty", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        prune_joint(fresh(), config, method="joint-lora", checkpoint=checkpoint)
    assert checkpoint.is_file()
    monkeypatch.setattr(joint.UnitGates, "penalty", penalty)
    resumed = fresh()
    report = prune_joint(resumed, config, method="joint-lora", checkpoint=checkpoint)
    assert report["resumed_from"] == 3 and not checkpoint.exists()
    with torch.no_grad():
        assert torch.equal(resumed.model(x).logits, whole.model(x).logits)
