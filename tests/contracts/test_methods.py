"""Contract of every registered pruning method, read from the registry (a new method is covered with no test edit):
it returns a typed PruneResult, meets the amount it reports as requested, leaves no hook or adapter behind (also
when it fails), gives finite outputs, reports the shared keys, saves and reloads to the same logits, and refuses
bad options by name.

Every method runs with its default options on a tiny Llama with a byte tokenizer; training methods train on the
bundled wiki corpus (their default) with the dense model as teacher."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from prunekit.core.typed import from_dict
from prunekit.errors import ConfigError
from prunekit.methods import METHODS
from prunekit.prune.result import PruneResult
from prunekit.testing import CharTokenizer, tiny_loaded

torch.set_num_threads(1)
NAMES = METHODS.names()
IDS = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def prune_inputs(tmp_path_factory):
    from prunekit.pipeline import RunContext
    from prunekit.recipe import parse_recipe

    corpus = tmp_path_factory.mktemp("contract") / "corpus.txt"
    corpus.write_text("\n\n".join(f"the cat number {i} sat on the mat and then ran home." for i in range(600)))
    ctx = RunContext(parse_recipe({"calibration": {"corpus": str(corpus), "samples": 4, "seq_len": 32}}),
                     tmp_path_factory.mktemp("out"))
    ctx.dense = _model()
    return ctx.inputs()


def _model():
    loaded = tiny_loaded("llama", layers=4, vocab=256, seed=0)
    loaded.tokenizer = CharTokenizer(256)
    return loaded


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def pruned(prune_inputs):
    """{method: (LoadedModel, report)} with default options."""
    out = {}
    for name in NAMES:
        loaded = _model()
        config = from_dict(METHODS.get(name).config, {}, name)
        out[name] = loaded, METHODS.load(name)(loaded, config, prune_inputs, method=name)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_meets_the_requested_amount_and_reports_the_shared_keys(pruned, name):
    loaded, report = pruned[name]
    assert isinstance(report, PruneResult), type(report)
    assert (report.requested, report.achieved) == (report["requested_sparsity"], report["actual_sparsity"])
    assert "plan" not in report.report(with_plan=False)
    assert {"layers", "requested_sparsity", "actual_sparsity"} <= set(report)
    assert report["layers"], "a report lists what it pruned"
    assert abs(report["actual_sparsity"] - report["requested_sparsity"]) <= 0.01, report["actual_sparsity"]
    changed = sum(p.numel() for p in loaded.model.parameters()) < sum(p.numel() for p in _model().model.parameters())
    zeros = sum(int((p == 0).sum()) for p in loaded.model.parameters())
    assert changed or zeros > 0.1 * sum(p.numel() for p in loaded.model.parameters()), "the model was pruned"


@pytest.mark.parametrize("name", NAMES)
def test_leaves_no_hooks_adapters_or_parametrizations_and_gives_finite_outputs(pruned, name):
    model = pruned[name][0].model
    assert _hooks(model) == 0
    assert not any("lora" in n or "parametrizations" in n for n, _ in model.named_parameters())
    with torch.no_grad():
        assert torch.isfinite(model(IDS).logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_saves_and_reloads_to_the_same_logits(pruned, name, tmp_path):
    from prunekit.io import save_model
    from prunekit.models import load

    loaded, report = pruned[name]
    keep = loaded.tokenizer
    loaded.tokenizer = None  # the byte tokenizer is a test stand-in that cannot be saved
    try:
        save_model(loaded, tmp_path / name, plan=[{"layers": report["layers"], "plan": report.get("plan")}])
    finally:
        loaded.tokenizer = keep
    again = load(str(tmp_path / name))
    with torch.no_grad():
        assert torch.equal(again.model(IDS).logits, loaded.model(IDS).logits)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("name", NAMES)
def test_a_failure_inside_leaves_no_hooks_behind(prune_inputs, name):
    loaded = _model()
    handle = loaded.model.model.layers[-1].register_forward_hook(lambda *_: (_ for _ in ()).throw(Boom()))
    config = from_dict(METHODS.get(name).config, {}, name)
    try:
        METHODS.load(name)(loaded, config, prune_inputs, method=name)
    except Boom:
        pass  # methods that run the model fail here; data-free ones finish
    handle.remove()
    assert _hooks(loaded.model) == 0
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())


def _bad_value(hint):
    """A value of the wrong type for `hint` (every option is typed)."""
    return {int: "many", float: "much", bool: "yes", str: 3}.get(hint, object())


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_raise_config_errors_naming_them(name):
    cls = METHODS.get(name).config
    with pytest.raises(ConfigError, match="no_such_option"):
        from_dict(cls, {"no_such_option": 1}, name)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if hint in (int, float, bool, str):
            with pytest.raises(ConfigError, match=field.name):
                from_dict(cls, {field.name: _bad_value(hint)}, name)

