"""SmolLM2 pruned with different widths per layer saves, reloads with prunekit.load, generates the same tokens."""

import copy
import json
import subprocess
import sys

import pytest
import torch

import prunekit
from prunekit.io import save_model
from prunekit.methods import METHODS
from prunekit.recipe.convert import from_dict


@pytest.mark.slow
def test_uneven_widths_save_reload_and_generate_identically(smollm, tmp_path):
    loaded = copy.copy(smollm)
    loaded.model = copy.deepcopy(smollm.model)
    loaded.adapter = type(smollm.adapter)(loaded.model)
    config = from_dict(METHODS.get("structured-l2").config,
                       {"ratio": 0.3, "allocation": "global", "max_layer_ratio": 0.6, "round_to": 8}, "x")
    details = METHODS.load("structured-l2")(loaded, config, None, method="structured-l2")
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
