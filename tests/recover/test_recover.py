"""Recovery: exact masked LoRA and full fine-tuning, losses, the recipe stage, bad input, and a real SmolLM2 run."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from prunekit.core.typed import from_dict
from prunekit.errors import ConfigError
from prunekit.recover import RecoverConfig
from prunekit.recover.lora import attach_lora, lora_parameters, merge_lora
from prunekit.recover.losses import divergence, recovery_loss
from prunekit.recover.run import recover
from prunekit.testing import CharTokenizer, tiny_loaded

torch.set_num_threads(1)


def sparsify(model, pattern="2:4"):
    """Magnitude N:M (or 50% unstructured) on every Linear of the blocks; returns {name: zero mask}."""
    zeros = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in name:
                w = module.weight
                if pattern == "2:4":
                    groups = w.abs().reshape(-1, 4)
                    drop = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, groups.topk(2, largest=False).indices,
                                                                              True).reshape(w.shape)
                else:
                    drop = w.abs() <= w.abs().flatten().kthvalue(w.numel() // 2).values
                w.masked_fill_(drop, 0.0)
                zeros[name] = w == 0
    return zeros


def small(text, **overrides):
    options = {"tokens": 6 * 4 * 32, "seq_len": 32, "batch_size": 4, "micro_batch_size": 2, "lr": 5e-3,
               "corpus": [text], "report_corpora": [text], "report_windows": 2, "eval_windows": 2,
               "checkpoint_every": 0, "rank": 4, "alpha": 8.0, "precision": "fp32", **overrides}
    return from_dict(RecoverConfig, options, "recover")


@pytest.mark.parametrize("dropout", [0.0, 0.1])  # the masked update inside the base weight, or its own product
def test_masked_lora_trains_and_merges_exactly_the_masked_update(dropout):
    loaded = tiny_loaded("llama", layers=2)
    zeros = sparsify(loaded.model)
    w = loaded.model.model.layers[0].mlp.up_proj.weight.detach().clone()
    modules = {n: loaded.model.get_submodule(n) for n in zeros}
    peft_model, masks = attach_lora(loaded.model, modules, SimpleNamespace(rank=4, alpha=8.0, dropout=dropout,
                                                                            mask_min_sparsity=0.01, seed=0))
    assert set(masks) == set(zeros)
    loaded.model.eval()  # dropout off: the two paths compute the same function
    for name, p in lora_parameters(loaded.model):
        if "lora_B" in name:
            with torch.no_grad():
                p.normal_()
    layer = loaded.model.model.layers[0].mlp.up_proj
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    x = torch.randn(3, w.shape[1])
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, w + (w != 0) * 2.0 * (b @ a)), atol=1e-5, rtol=0)
        ids = torch.randint(0, 128, (1, 12))
        trained = loaded.model(ids).logits
    merge_lora(peft_model)
    for name, zero in zeros.items():
        weight = loaded.model.get_submodule(name).weight
        assert torch.equal(weight == 0, zero), name  # every zero kept, no other weight became zero
        assert (weight.reshape(-1, 4) != 0).sum(1).eq(2).all()  # 2:4 in every group
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, trained, atol=1e-5, rtol=0)  # merged = trained
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())


def test_a_plain_peft_merge_fills_the_zeros_in():
    """What users report: merging LoRA into a sparse model the usual way (W + B A) destroys the sparsity."""
    from peft import LoraConfig, get_peft_model

    loaded = tiny_loaded("llama", layers=2)
    zeros = sparsify(loaded.model, "unstructured")
    peft_model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=sorted(zeros)))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            with torch.no_grad():
                p.normal_()
    merged = peft_model.merge_and_unload()
    left = sum(int((merged.get_submodule(n).weight == 0).sum()) for n in zeros)
    assert left < 0.01 * sum(int(z.sum()) for z in zeros.values())


@pytest.mark.parametrize("method", ["lora", "full"])
def test_recovery_keeps_every_zero_and_lowers_the_training_loss(method, corpus):
    loaded = tiny_loaded("llama", layers=2, vocab=256)
    loaded.tokenizer = CharTokenizer(256)
    zeros = sparsify(loaded.model)
    details = recover(loaded, small(corpus, method=method, lr=1e-2 if method == "lora" else 3e-3))
    assert details["masked_layers"] == len(zeros) and details["zeros_kept"] == sum(int(z.sum()) for z in zeros.values())
    for name, zero in zeros.items():
        assert torch.equal(loaded.model.get_submodule(name).weight == 0, zero), name
    losses = [row["loss"] for row in details["history"]]
    assert losses[-1] < losses[0] and details["tokens"] == 6 * 4 * 32
    assert details["perplexity_after"][next(iter(details["perplexity_after"]))] < \
        details["perplexity_before"][next(iter(details["perplexity_before"]))]
    assert all(p.requires_grad for p in loaded.model.parameters())  # flags restored
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())


def test_divergences_match_their_definitions():
    p_logits, q_logits = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.5, 0.5, 0.0]])
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    kl = lambda a, b: (a * (a / b).log()).sum()  # noqa: E731
    m = (p + q) / 2
    assert divergence(q_logits, p_logits, "fkl").item() == pytest.approx(kl(p, q).item(), rel=1e-5)
    assert divergence(q_logits, p_logits, "rkl").item() == pytest.approx(kl(q, p).item(), rel=1e-5)
    assert divergence(q_logits, p_logits, "jsd").item() == pytest.approx((kl(p, m) / 2 + kl(q, m) / 2).item(), rel=1e-5)
    assert divergence(p_logits, p_logits, "fkl").item() == pytest.approx(0.0, abs=1e-7)
    t = 2.0  # temperature: T^2 KL of the softened distributions
    assert divergence(q_logits, p_logits, "fkl", t).item() == pytest.approx(
        t * t * kl((p_logits / t).softmax(-1), (q_logits / t).softmax(-1)).item(), rel=1e-5)
    # top-k: both renormalised over the teacher's two largest logits (tokens 0 and 1)
    pk, qk = p_logits[:, :2].softmax(-1), q_logits[:, :2].softmax(-1)
    assert divergence(q_logits, p_logits, "fkl", top_k=2).item() == pytest.approx(kl(pk, qk).item(), rel=1e-5)


def test_mixed_loss_weights_cross_entropy_and_divergence():
    logits, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    loss, parts = recovery_loss(logits, ids, teacher, "jsd", 0.25, 1.0, 0)
    assert loss.item() == pytest.approx(0.75 * parts["ce"] + 0.25 * parts["jsd"], rel=1e-6)
    assert recovery_loss(logits, ids, None, "ce", 1.0, 1.0, 0)[1].keys() == {"ce"}


def test_distillation_pulls_the_student_towards_the_teacher(corpus):
    teacher = tiny_loaded("llama", layers=2, vocab=256)
    with torch.no_grad():
        teacher.model.lm_head.weight.mul_(30.0)  # a confident teacher: the pruned student's divergence is large
    student = copy.copy(teacher)
    student.model = copy.deepcopy(teacher.model)
    student.adapter = type(teacher.adapter)(student.model)
    student.tokenizer = CharTokenizer(256)
    sparsify(student.model)
    ids = torch.tensor([list(open(corpus, "rb").read()[i:i + 32]) for i in range(0, 128, 32)])
    with torch.no_grad():
        before = divergence(student.model(ids).logits, teacher.model(ids).logits, "fkl").item()
    details = recover(student, small(corpus, loss="fkl", lr=1e-2, report_windows=0), teacher=teacher)
    with torch.no_grad():
        after = divergence(student.model(ids).logits, teacher.model(ids).logits, "fkl").item()
    assert after < 0.8 * before and "fkl" in details["history"][0]


def test_bad_input_fails_before_training(corpus):
    for key, value, match in [("lr", 0.0, "lr must be > 0"), ("tokens", -5, "tokens must be a positive"),
                              ("rank", 0, "rank must be a positive"), ("corpus", ["no-such-corpus"], "no-such-corpus"),
                              ("loss", "kl", "loss"), ("method", "dora", "method"), ("include", ["(oops"], "oops")]:
        with pytest.raises(ConfigError, match=match):
            from_dict(RecoverConfig, {key: value}, "recover")
    loaded = tiny_loaded("llama", layers=2, vocab=256)
    loaded.tokenizer = CharTokenizer(256)
    with pytest.raises(ConfigError, match="matches no module"):
        recover(loaded, small(corpus, include=["no_such_layer"]))
    with pytest.raises(ConfigError, match="teacher"):
        recover(loaded, small(corpus, loss="fkl"))
    with pytest.raises(ConfigError, match="vocabulary of 128 tokens and the student 256"):
        recover(loaded, small(corpus, loss="fkl"), teacher=tiny_loaded("llama", layers=2, vocab=128))
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())


def test_recipe_recover_stage_reports_and_saves_a_reloadable_model(tiny_llama_dir, corpus, tmp_path):
    from prunekit.api import run
    from prunekit.models import load

    recipe = {
        "name": "heal", "model": str(tiny_llama_dir),
        "calibration": {"corpus": corpus, "samples": 4, "seq_len": 32},
        "evaluation": {"tasks": ["perplexity"], "perplexity": {"corpus": corpus, "window": 32, "windows": 2}},
        "variants": [{"name": "heal", "stages": [
            {"prune": {"method": "llm-structured", "ratio": 0.3, "criterion": "flap", "allocation": "global"}},
            {"recover": {"tokens": 256, "seq_len": 32, "batch_size": 4, "corpus": [corpus], "loss": "fkl",
                         "report_corpora": [corpus], "report_windows": 1, "eval_windows": 1, "rank": 4}},
            {"save": {}}]}],
    }
    report = run(recipe, output=str(tmp_path / "out"))
    stage = report["results"][1]["stages"][1]
    assert stage["tokens"] == 256 and stage["tokens_per_second"] > 0 and len(stage["history"]) == 2
    assert set(stage["perplexity_before"]) == {corpus}
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["results"][1]["stages"][1]["loss"] == "fkl"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## heal: recovery (lora, loss fkl)" in markdown and "| corpus | PPL before | PPL after |" in markdown
    assert (tmp_path / "out" / "recovery.png").is_file()
    again = load(str(tmp_path / "out" / "models" / "heal"))
    ids = torch.arange(1, 20).unsqueeze(0)
    with torch.no_grad():
        assert torch.isfinite(again.model(ids).logits).all()


@pytest.mark.slow
def test_lora_heals_2_4_smollm_and_keeps_the_pattern(smollm):
    from prunekit.api import prune
    from prunekit.evaluate.perplexity import PerplexityProtocol, perplexity

    loaded = copy.copy(smollm)
    loaded.model = copy.deepcopy(smollm.model)
    loaded.adapter = type(smollm.adapter)(loaded.model)
    loaded, _ = prune(loaded, "magnitude", pattern="2:4")
    protocol = PerplexityProtocol("wiki", 256, 4)
    before = perplexity(loaded.model, loaded.tokenizer, protocol)
    q = loaded.model.model.layers[3].self_attn.q_proj.weight
    zeros = (q == 0).clone()
    details = recover(loaded, from_dict(RecoverConfig, {"tokens": 8 * 2 * 128, "seq_len": 128, "batch_size": 2,
                                                         "lr": 2e-3, "report_windows": 0, "eval_windows": 1,
                                                         "checkpoint_every": 0}, "recover"))
    after = perplexity(loaded.model, loaded.tokenizer, protocol)
    assert after < 0.8 * before, (before, after)
    assert torch.equal(q == 0, zeros) and (q.reshape(-1, 4) != 0).sum(1).le(2).all()  # 2:4 (some weights were 0)
    assert details["masked_layers"] == 210


def test_cli_recovers_a_saved_folder_and_refuses_bad_input_before_loading(tiny_llama_dir, corpus, tmp_path):
    import subprocess
    import sys
    import time

    cli = [sys.executable, "-m", "prunekit.cli", "recover"]
    small_run = ["--tokens", "128", "--lr", "0.005", "--set", "seq_len=32", "--set", "batch_size=4",
                 "--set", f"corpus={corpus}", "--set", f"report_corpora=[{corpus}]", "--set", "report_windows=1",
                 "--set", "eval_windows=1", "--set", "rank=4"]
    out = tmp_path / "healed"
    proc = subprocess.run(cli + [str(tiny_llama_dir), "-o", str(out)] + small_run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "perplexity" in proc.stdout and "128 tokens" in proc.stdout
    assert {p.name for p in out.iterdir()} == {"model", "report.json", "report.md", "recovery.png"}
    plan = json.loads((out / "model" / "prunekit_plan.json").read_text())
    assert plan[-1]["stage"]["recover"]["tokens"] == 128
    for args, message in [([str(tmp_path / "missing")], "not a saved model folder"),
                          ([str(tiny_llama_dir), "--lr", "-1"], "lr must be > 0"),
                          ([str(tiny_llama_dir), "--set", "corpus=nope"], "Unknown corpus 'nope'"),
                          ([str(tiny_llama_dir), "--set", "include=[nope]"], "'nope' matches no module"),
                          ([str(tiny_llama_dir), "--loss", "fkl", "--teacher", "no-such-model"], "no-such-model"),
                          ([str(tiny_llama_dir), "-o", str(out)], "already exists")]:
        start = time.perf_counter()
        proc = subprocess.run(cli + args, capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert time.perf_counter() - start < 90  # generous: the 2 shared cores may be busy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "healed"]


def test_dynamic_mixing_moves_weight_to_the_corpus_that_lags_the_dense_model(corpus, tmp_path):
    other = tmp_path / "numbers.txt"
    other.write_text("\n\n".join(" ".join(str(i * j % 97) for j in range(30)) for i in range(300)))
    teacher = tiny_loaded("llama", layers=2, vocab=256)
    student = copy.copy(teacher)
    student.model = copy.deepcopy(teacher.model)
    student.adapter = type(teacher.adapter)(student.model)
    student.tokenizer = CharTokenizer(256)
    sparsify(student.model)
    details = recover(student, small(corpus, corpus=[corpus, str(other)], mix="dynamic", eval_every=2,
                                     mix_eta=50.0, report_windows=0), teacher=teacher)
    mixture = details["mixture"]
    assert len(mixture["reference"]) == 2
    assert len(mixture["weights"]) == 4  # validations at steps 0, 2, 4 and 6
    assert all(abs(sum(w) - 1) < 1e-9 for w in mixture["weights"])
    assert mixture["weights"][0] != [0.5, 0.5]
    with pytest.raises(ConfigError, match="at least two corpora and eval_every"):
        small(corpus, mix="dynamic", eval_every=2)
