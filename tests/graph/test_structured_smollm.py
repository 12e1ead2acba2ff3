"""SmolLM2 pruned with different widths per layer saves, reloads with prunekit.load, generates the same tokens."""

import copy
import json
import subprocess
import sys

import pytest
import torch

import prunekit
from prunekit.core.typed import from_dict
from prunekit.io import save_model
from prunekit.methods import METHODS


@pytest.mark.slow
def test_uneven_widths_save_reload_and_generate_identically(smollm, tmp_path):
    loaded = copy.copy(smollm)
    loaded.model = copy.deepcopy(smollm.model)
    loaded.adapter = type(smollm.adapter)(loaded.model)
    config = from_dict(METHODS.get("structured-l2").config,
                       {"ratio": 0.3, "allocation": "global", "max_layer_ratio": 0.6, "round_to": 8}, "x")
    details = METHODS.load("structured-l2")(loaded, config, method="structured-l2")
    widths = {layer.mlp.gate_proj.out_features for layer in loaded.model.model.layers}
    assert len(widths) > 1, "global allocation should give different MLP widths"
    assert details["params_after"] < 0.85 * details["params_before"]
    folder = save_model(loaded, tmp_path / "pruned", plan={"layers": details["layers"], "plan": details["plan"]})
    again = prunekit.load(str(folder))
    ids = loaded.tokenizer("The history of the city begins", return_tensors="pt").input_ids
    with torch.no_grad():
        before = loaded.model.generate(ids, max_new_tokens=12, do_sample=False)
        after = again.model.generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(before, after)
    assert [layer.mlp.gate_proj.out_features for layer in again.model.model.layers] == \
        [layer.mlp.gate_proj.out_features for layer in loaded.model.model.layers]
    # a fresh process that only reloads (nothing traced there) gets the same size attributes
    script = ("import json, sys, prunekit; m = prunekit.load(sys.argv[1]).model; print(json.dumps("
              "[l.mlp.gate_proj.out_features for l in m.model.layers]))")
    fresh = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, check=True)
    assert json.loads(fresh.stdout.strip().splitlines()[-1]) == \
        [layer.mlp.gate_proj.weight.shape[0] for layer in loaded.model.model.layers]


@pytest.mark.slow
def test_flap_bias_compensation_global_saved_by_a_recipe_reloads_in_a_fresh_process(smollm, tmp_path):
    """Issue #22's recipe: FLAP 30% with bias compensation and global allocation, saved by the save stage."""
    from prunekit.pipeline import RunContext, run_stage
    from prunekit.recipe import parse_recipe
    from prunekit.recipe.stages import parse_stage

    loaded = copy.copy(smollm)
    loaded.model = copy.deepcopy(smollm.model)
    loaded.adapter = type(smollm.adapter)(loaded.model)
    ctx = RunContext(parse_recipe({"model": "smollm2-135m",
                                   "calibration": {"corpus": "wiki", "samples": 8, "seq_len": 256, "seed": 0}}),
                     tmp_path)
    prune = {"method": "llm-structured", "ratio": 0.3, "criterion": "flap", "bias_compensation": True}
    run_stage(parse_stage({"prune": prune}, "x"), loaded, ctx, "flapbc30")
    run_stage(parse_stage({"save": {}}, "x"), loaded, ctx, "flapbc30")
    assert loaded.model.config.attention_bias and loaded.model.config.mlp_bias
    ids = loaded.tokenizer("The history of the city begins", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = loaded.model(ids).logits
        tokens = loaded.model.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    torch.save({"ids": ids}, tmp_path / "ids.pt")
    script = "\n".join([  # the same thread count: a different one changes float summation order (~4e-5)
        "import sys, torch, prunekit",
        "torch.set_num_threads(int(sys.argv[4]))",
        "m = prunekit.load(sys.argv[1]).model",
        "ids = torch.load(sys.argv[2])['ids']",
        "with torch.no_grad():",
        "    out = {'logits': m(ids).logits,",
        "           'tokens': m.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False)}",
        "torch.save(out, sys.argv[3])"])
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "models" / "flapbc30"), str(tmp_path / "ids.pt"),
                    str(tmp_path / "got.pt"), str(torch.get_num_threads())], check=True, timeout=600)
    got = torch.load(tmp_path / "got.pt")
    assert (got["logits"] - logits).abs().max().item() == 0
    assert tokens.shape[1] == ids.shape[1] + 16 and torch.equal(got["tokens"], tokens)
