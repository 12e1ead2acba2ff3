"""D-Pruner: the score is the paper's formula, lam = 0 prunes by the domain Taylor term alone, and it runs from a
recipe."""

import json

import pytest
import torch

from prunekit.core.typed import from_dict
from prunekit.data import calibration_windows
from prunekit.errors import ConfigError
from prunekit.methods import METHODS
from prunekit.models import load
from prunekit.pipeline import RunContext
from prunekit.prune.dpruner import dpruner_scores
from prunekit.recipe import parse_recipe
from prunekit.testing import CharTokenizer, layer_inputs, tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpora")
    general, domain = folder / "general.txt", folder / "domain.txt"
    general.write_text("\n\n".join(f"the river number {i} flows past the old mill and the town. " * 3
                                   for i in range(300)))
    domain.write_text("\n\n".join(f"def f{i}(x):\n    return x * {i} + len(str(x))\n" * 3 for i in range(300)))
    return str(general), str(domain)


def test_the_score_is_the_formula_with_the_inverse_hessian_diagonal():
    gen = torch.Generator().manual_seed(0)
    w, g, f = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen), torch.rand(3, 4, generator=gen)
    x = torch.randn(50, 4, generator=gen)
    x[:, 3] = 0.0  # an input that is always zero
    hessian = 2 * x.T @ x / 50
    damped = hessian.clone()
    damped[3, 3] = 1.0
    damped += 0.01 * damped.diagonal().mean() * torch.eye(4)
    general = w.square() / torch.linalg.inv(damped).diagonal()
    general[:, 3] = 0.0
    expected = (g * w - 0.5 * (f + 2 * 0.3 * general) * w.square()).abs()
    torch.testing.assert_close(dpruner_scores(w, hessian, g, f, lam=0.3, damp=0.01), expected)
    torch.testing.assert_close(dpruner_scores(w, hessian, g, f, lam=0.0), (g * w - 0.5 * f * w.square()).abs())


def test_lam_zero_prunes_every_layer_by_the_domain_gradient_and_fisher(corpora):
    general, domain = corpora
    loaded = load(tiny_model("llama", vocab=128, layers=2))
    loaded.tokenizer = CharTokenizer()
    recipe = parse_recipe({"calibration": {"corpus": general, "samples": 4, "seq_len": 32, "seed": 5}})
    config = from_dict(METHODS.get("d-pruner").config,
                       {"lam": 0.0, "domain": domain, "domain_samples": 3, "domain_seq_len": 24}, "d-pruner")
    modules = {n: m for n, m in loaded.model.named_modules() if isinstance(m, torch.nn.Linear) and "layers" in n}
    names = list(modules)
    windows = calibration_windows(loaded.tokenizer, domain, 3, 24, 5)  # the recipe's calibration seed
    grads = []
    for ids in windows:
        loss = torch.nn.functional.cross_entropy(loaded.model(input_ids=ids[None]).logits[0, :-1], ids[1:])
        grads.append(torch.autograd.grad(loss, [modules[n].weight for n in names]))
    expected = {}
    for i, name in enumerate(names):
        per_window = torch.stack([g[i] for g in grads])  # (3, out, in)
        w = modules[name].weight.detach()
        score = (per_window.mean(0) * w - 0.5 * per_window.square().mean(0) * w.square()).abs()
        drop = score.argsort(dim=1)[:, : w.shape[1] // 2]  # the lowest half of each row
        expected[name] = torch.ones_like(w, dtype=torch.bool).scatter_(1, drop, False)
    details = METHODS.load("d-pruner")(loaded, config, RunContext(recipe, None).inputs(), method="d-pruner")
    assert set(details["layers"]) == set(names) and details["actual_sparsity"] == 0.5
    for name in names:
        assert torch.equal(modules[name].weight != 0, expected[name]), name


def _q_proj_hessian(loaded, ctx):
    """H = (2/N) X^T X of block 0's q_proj input (the dense embeddings after the norm), dampened by 1%."""
    q_proj = loaded.model.model.layers[0].self_attn.q_proj
    x = layer_inputs(loaded.model, q_proj, ctx.calibration(loaded.tokenizer))  # (tokens, in)
    hessian = 2 * x.T @ x / x.shape[0]
    return hessian + 0.01 * hessian.diagonal().mean() * torch.eye(x.shape[1])


def test_a_large_lam_prunes_by_the_general_obs_importance(corpora):
    """With lam -> infinity, S ~ lam G w^2 = lam w^4 / [H^-1]_mm, from the open-domain Hessian."""
    general, domain = corpora
    masks = {}
    for lam in (0.0, 1e9):
        loaded = load(tiny_model("llama", vocab=128, layers=1))
        loaded.tokenizer = CharTokenizer()
        ctx = RunContext(parse_recipe({"calibration": {"corpus": general, "samples": 4, "seq_len": 32}}), None)
        q_proj = loaded.model.model.layers[0].self_attn.q_proj
        w = q_proj.weight.detach().clone()
        obs = w.pow(4) / torch.linalg.inv(_q_proj_hessian(loaded, ctx)).diagonal()  # G w^2
        expected = torch.ones_like(w, dtype=torch.bool).scatter_(1, obs.argsort(1)[:, : w.shape[1] // 2], False)
        config = from_dict(METHODS.get("d-pruner").config, {"lam": lam, "domain": domain, "domain_samples": 2,
                                                            "domain_seq_len": 24}, "d-pruner")
        METHODS.load("d-pruner")(loaded, config, ctx.inputs(), method="d-pruner")
        masks[lam] = q_proj.weight != 0
    assert torch.equal(masks[1e9], expected)
    assert not torch.equal(masks[0.0], masks[1e9])


def test_d_pruner_runs_from_a_recipe_and_a_bad_domain_fails_before_loading(tiny_llama_dir, corpora, tmp_path):
    from prunekit.api import run

    general, domain = corpora
    stage = {"method": "d-pruner", "ratio": 0.5, "domain": domain, "domain_samples": 2, "domain_seq_len": 32}
    data = {
        "name": "domain", "model": str(tiny_llama_dir),
        "calibration": {"corpus": general, "samples": 4, "seq_len": 32},
        "evaluation": {"tasks": ["perplexity"], "perplexity": {"corpus": domain, "window": 32, "windows": 2}},
        "variants": [{"name": "dpruner-50", "stages": [{"prune": stage}]}],
    }
    run(data, output=str(tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    result = saved["results"][1]
    assert result["variant"] == "dpruner-50" and result["metrics"]["perplexity"] > 1
    assert all(v["actual"] == 0.5 for v in result["stages"][0]["layers"].values())
    data["variants"][0]["stages"][0]["prune"]["domain"] = "no-such-corpus"
    with pytest.raises(ConfigError, match="no-such-corpus"):
        parse_recipe(data)
