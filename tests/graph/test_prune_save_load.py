"""The public surface on any model: `prunekit.prune` on plain PyTorch modules (residual, concatenation, grouped
conv, a torchvision-style ResNet), a Hugging Face model object without a tokenizer and SmolLM2 (per-layer MLP
widths), then
`prunekit.save` -> `prunekit.load` in a fresh process gives the same outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from graph_nets import all_nets

import prunekit
from prunekit.errors import ConfigError, ModelLoadError
from prunekit.testing import tiny_model, tiny_resnet

HERE = Path(__file__).parent
IDS = torch.randint(0, 128, (1, 12), generator=torch.Generator().manual_seed(0))
RELOAD = """
import json, sys, torch, prunekit
cases = json.loads(sys.argv[1])
out = {}
for name, (folder, inputs) in cases.items():
    model = prunekit.load(folder).model
    with torch.no_grad():
        y = model(torch.load(inputs))
    out[name] = (y.logits if hasattr(y, "logits") else y).tolist()
print(json.dumps(out))
"""


def _outputs(model, x):
    with torch.no_grad():
        y = model(x) if not isinstance(x, dict) else model(**x)
    return y.logits if hasattr(y, "logits") else y


@pytest.fixture(scope="module")
def saved(tmp_path_factory, one_thread):
    """{case: (folder, inputs file, outputs before saving)}, each pruned through prunekit.prune."""
    root = tmp_path_factory.mktemp("saved")
    cases = {}
    nets = {name: net for name, net in all_nets().items() if name != "conv1d_glu"}
    for name, (net, x) in nets.items():
        model, result = prunekit.prune(net, "structured-l2", ratio=0.4, scope=["channels"], example_inputs=x)
        assert result.plan and result["params_after"] < result["params_before"]
        cases[name] = (prunekit.save(result, root / name), x, _outputs(model.model, x))
    x = torch.randn(2, 3, 16, 16)
    model, result = prunekit.prune(tiny_resnet(widths=(8, 16)), "structured-l2", ratio=0.5, scope=["channels"],
                                   example_inputs=x)
    folder = prunekit.save(result, root / "resnet", builder="prunekit.testing:tiny_resnet", kwargs={"widths": [8, 16]})
    cases["resnet"] = (folder, x, _outputs(model.model, x))
    calibration = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(1))
    model, result = prunekit.prune(tiny_model("llama"), "wanda", ratio=0.5, calibration=calibration)
    cases["hf-wanda"] = (prunekit.save(result, root / "hf-wanda"), IDS, _outputs(model.model, IDS))
    model, result = prunekit.prune("smollm2-135m", "structured-l2", ratio=0.3, allocation="global")
    assert len({row["after"] for row in result.layers.values() if row["kind"] == "mlp"}) > 1  # per-layer widths
    cases["smollm2"] = (prunekit.save(result, root / "smollm2"), IDS, _outputs(model.model, IDS))
    return cases


def test_a_fresh_process_reloads_every_pruned_model_to_the_same_outputs(saved, tmp_path):
    args = {}
    for name, (folder, x, _) in saved.items():
        torch.save(x, tmp_path / f"{name}.pt")
        args[name] = (str(folder), str(tmp_path / f"{name}.pt"))
    env = {"PYTHONPATH": str(HERE), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", RELOAD, json.dumps(args)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reloaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(reloaded) == {"residual", "concat", "grouped", "resnet", "hf-wanda", "smollm2"}
    for name, (_, _, before) in saved.items():
        torch.testing.assert_close(torch.tensor(reloaded[name]), before, rtol=0, atol=1e-5, msg=name)


def test_the_saved_folder_records_the_plan_and_how_to_rebuild(saved):
    folder = Path(saved["resnet"][0])
    meta = json.loads((folder / "prunekit_module.json").read_text())
    assert meta["builder"] == "prunekit.testing:tiny_resnet" and meta["kwargs"] == {"widths": [8, 16]}
    assert meta["class"] == "torch.nn.modules.container:Sequential"
    plan = json.loads((folder / "prunekit_plan.json").read_text())
    assert plan and all({"group", "size", "pruned"} <= set(entry) for entry in plan)
    assert json.loads((Path(saved["hf-wanda"][0]) / "prunekit_plan.json").read_text()) == {}  # masks, no plan


def test_a_folder_that_cannot_rebuild_itself_takes_a_fresh_instance(tmp_path, one_thread):
    x = torch.randn(1, 3, 16, 16)
    model, result = prunekit.prune(tiny_resnet(), "structured-l2", ratio=0.5, scope=["channels"], example_inputs=x)
    folder = prunekit.save(result, tmp_path / "m")  # recorded builder: nn.Sequential() (empty), which cannot fit
    with pytest.raises(ModelLoadError, match=r"model=\.\.\."):
        prunekit.load(folder)
    again = prunekit.load(folder, model=tiny_resnet(seed=5))  # any unpruned instance: the weights are replaced
    torch.testing.assert_close(_outputs(again.model, x), _outputs(model.model, x), rtol=0, atol=0)
    with pytest.raises(ModelLoadError, match="plain PyTorch modules"):
        prunekit.load(str(saved_hf(tmp_path)), model=tiny_resnet())


def saved_hf(tmp_path):
    model, result = prunekit.prune(tiny_model("llama"), "magnitude", ratio=0.3)
    return prunekit.save(result, tmp_path / "hf")


def test_bad_inputs_fail_with_the_fix_named(tmp_path, one_thread):
    with pytest.raises(ConfigError, match="Unknown method 'nope'"):
        prunekit.prune(str(tmp_path / "no-such-model"), "nope")  # the method is checked before the model loads
    with pytest.raises(ConfigError, match="no tokenizer.*calibration= token ids"):
        prunekit.prune(tiny_model("llama"), "wanda", ratio=0.5)
    with pytest.raises(ConfigError, match="not a supported transformer.*magnitude"):
        prunekit.prune(tiny_resnet(), "wanda", ratio=0.5, calibration=torch.randn(2, 3, 16, 16))
    with pytest.raises(ConfigError, match="pass example_inputs"):
        prunekit.prune(tiny_resnet(), "structured-l2", ratio=0.5)
    with pytest.raises(ConfigError, match="builder must be 'package.module:name'"):
        prunekit.save(tiny_resnet(), tmp_path / "x", builder="resnet18")
    with pytest.raises(ConfigError, match="JSON data"):
        prunekit.save(tiny_resnet(), tmp_path / "y", kwargs={"widths": object()})
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_entry_points_stay_callable_after_their_packages_are_imported(one_thread):
    import prunekit.evaluate.perplexity  # noqa: F401  (binds the packages to prunekit's attributes)
    import prunekit.prune.oneshot  # noqa: F401
    import prunekit.recover.config  # noqa: F401

    model, result = prunekit.prune(tiny_resnet(), "magnitude", ratio=0.5)
    assert result.achieved == pytest.approx(0.5, abs=1e-3)
    assert callable(prunekit.recover) and callable(prunekit.evaluate)
