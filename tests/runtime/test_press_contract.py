"""Contract of every registered press (walked from the registry, never a hand list): its defaults change the
computation, it accepts the shared `ratio` knob (which also acts, and is dense at 0) and, with a
RenamedOptionWarning, its old name `compression_ratio`, and unknown options raise ConfigError. Plus LazyLLM's default
schedule and its ratio -> schedule mapping (Fu et al. 2024, arXiv 2407.14057)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from prunekit.core.typed import RenamedOptionWarning
from prunekit.errors import ConfigError
from prunekit.runtime import PRESSES, LazyLLMPress, make_press, press_options
from prunekit.runtime.tokens import default_schedule, keep_counts, mean_kept_fraction, ratio_schedule
from prunekit.runtime.tokens.schedule import max_ratio

LAYERS = 6  # DELTA's defaults (2 dense layers, selection at 2, L/2, 3L/4) leave a sparse layer from 5 layers on
LENGTH = 1100  # longer than DELTA's default budget (1024 entries) and HiP's (512 gathered keys per query)


@pytest.fixture(scope="module")
def model(tiny):
    return tiny("llama", LAYERS, max_position_embeddings=2048)


@pytest.fixture(scope="module")
def ids(prompt):
    return prompt(LENGTH, seed=4)


def run(greedy, model, ids, press=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, logits (steps, B, V)) of 3 greedy steps: the prefill's prediction and two decode steps."""
    extra = dict(return_dict_in_generate=True, output_logits=True)
    if press is None:
        out = greedy(model, ids, 3, **extra)
    else:
        with press(model):
            out = greedy(model, ids, 3, **extra)
    return out.sequences, torch.stack(out.logits)


@pytest.fixture(scope="module")
def dense(greedy, model, ids):
    return run(greedy, model, ids)


def assert_changed(pressed: torch.Tensor, dense_logits: torch.Tensor) -> None:
    assert pressed.shape == dense_logits.shape
    assert float((pressed - dense_logits).abs().max()) > 1e-4, "the press left every logit as dense computes it"


@pytest.mark.parametrize("name", PRESSES.names())
def test_defaults_change_the_computation(greedy, model, ids, dense, name):
    press = make_press(name)
    _, logits = run(greedy, model, ids, press)
    assert_changed(logits, dense[1])


@pytest.mark.parametrize("name", PRESSES.names())
def test_shared_ratio_is_accepted_and_changes_the_computation(greedy, model, ids, dense, name):
    assert "ratio" in press_options(name)
    press = make_press(name, ratio=0.5)
    assert press.ratio == 0.5
    _, logits = run(greedy, model, ids, press)
    assert_changed(logits, dense[1])


@pytest.mark.parametrize("name", PRESSES.names())
def test_ratio_zero_removes_nothing(greedy, model, ids, dense, name):
    tokens, logits = run(greedy, model, ids, make_press(name, ratio=0.0))
    assert torch.equal(tokens, dense[0])
    torch.testing.assert_close(logits, dense[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", PRESSES.names())
def test_unknown_and_invalid_options_raise(name):
    with pytest.raises(ConfigError, match=f"Unknown option 'nonsense' for press '{name}'"):
        make_press(name, nonsense=1)
    with pytest.raises(ConfigError, match=r"\bratio must be a number in \[0, 1\)"):
        make_press(name, ratio=1.0)


# --- the old name of `ratio`: compression_ratio (kvpress's), with a RenamedOptionWarning -----------------------------

OLD_NAME = "compression_ratio is renamed ratio"


@pytest.mark.parametrize("name", PRESSES.names())
def test_old_name_in_the_constructor_warns_and_builds_the_same_press(name):
    cls = PRESSES.load(name)
    with pytest.warns(RenamedOptionWarning, match=OLD_NAME):
        old = cls(compression_ratio=0.25)
    assert old == cls(ratio=0.25) and old.ratio == 0.25
    with pytest.warns(RenamedOptionWarning, match=OLD_NAME):
        assert old.compression_ratio == 0.25  # the deprecated attribute reads `ratio`
    with pytest.warns(RenamedOptionWarning, match=OLD_NAME):
        old.compression_ratio = 0.5
    assert old.ratio == 0.5 and "compression_ratio" not in vars(old)


@pytest.mark.parametrize("name", PRESSES.names())
def test_old_name_in_make_press_and_a_recipe_warns_and_works(name):
    from prunekit.recipe import parse_recipe

    with pytest.warns(RenamedOptionWarning, match=rf"'{name}\.compression_ratio' is renamed 'ratio'"):
        press = make_press(name, compression_ratio=0.25)
    assert press == make_press(name, ratio=0.25)
    stage = {"press": {"name": name, "compression_ratio": 0.25}}
    with pytest.warns(RenamedOptionWarning, match=r"stages\[0\]\.press\.compression_ratio' is renamed 'ratio'"):
        recipe = parse_recipe({"variants": [{"name": "a", "stages": [stage]}]})
    options = recipe.variants[0].stages[0].options
    assert options.options == {"ratio": 0.25} and options.build() == press  # the resolved recipe has the new name
    assert recipe.to_dict()["variants"][0]["stages"][0]["press"] == {"name": name, "ratio": 0.25}


@pytest.mark.parametrize("name", PRESSES.names())
def test_old_and_new_name_together_are_refused(name):
    cls = PRESSES.load(name)
    ratio = press_options(name)["ratio"] or 0.25  # the KV presses' default (0.5) counts as given too
    with pytest.raises(ConfigError, match="both compression_ratio and ratio"):
        cls(ratio=ratio, compression_ratio=ratio)
    with pytest.raises(ConfigError, match="both 'compression_ratio' and 'ratio'"):
        make_press(name, ratio=ratio, compression_ratio=ratio)
    positional = [f.name for f in dataclasses.fields(cls) if f.init and not f.kw_only]
    args = [press_options(name)[field] for field in positional[:positional.index("ratio") + 1]]
    with pytest.raises(ConfigError, match="both compression_ratio and ratio"):
        cls(*args, compression_ratio=0.25)  # `ratio` given by position


@pytest.mark.parametrize("name", PRESSES.names())
@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_ratio_out_of_range_names_ratio(name, bad):
    cls = PRESSES.load(name)
    with pytest.raises(ConfigError, match=rf"^ratio must be a number in \[0, 1\), got {bad}"):
        cls(ratio=bad)
    with pytest.raises(ConfigError, match=rf"^ratio must be a number in \[0, 1\), got {bad}"), \
            pytest.warns(RenamedOptionWarning, match=OLD_NAME):
        cls(compression_ratio=bad)


def test_presses_without_a_ratio_keep_their_signature():
    import inspect

    from prunekit.runtime import ComposedPress, StreamingLLMPress

    with pytest.raises(TypeError, match="compression_ratio"):
        ComposedPress([], compression_ratio=0.5)
    assert not hasattr(ComposedPress([]), "compression_ratio")
    assert list(inspect.signature(StreamingLLMPress).parameters) == ["ratio", "layer_ratios", "n_sink"]


# --- LazyLLM: default schedule and the ratio -> schedule mapping -----------------------------------------------------

def test_lazyllm_default_is_the_measured_schedule():
    assert default_schedule(30) == {8: 0.4, 18: 0.08}
    press = make_press("lazyllm")
    assert press.schedule is None and press.ratio is None
    assert (press.window, press.pool, press.keep_last) == (1, 15, 32)
    assert press.schedule_for(30) == {8: 0.4, 18: 0.08}
    assert mean_kept_fraction({8: 0.4, 18: 0.08}, 30) == pytest.approx(0.432)
    assert ratio_schedule(30, 1 - 0.432) == pytest.approx({8: 0.4, 18: 0.08})
    assert default_schedule(2) == {1: 0.4}  # both stages round to layer 1: one stage, the milder keep fraction
    with pytest.raises(ConfigError, match="at least 2 layers"):
        default_schedule(1)


@pytest.mark.parametrize("layers", [2, 3, 4, 6, 12, 30, 32])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.45, 0.5, 0.6, 0.7])
def test_lazyllm_ratio_schedule_removes_that_fraction(layers, ratio):
    if ratio >= max_ratio(layers):
        with pytest.raises(ConfigError, match=rf"out of range for a {layers}-layer model: valid \[0, "):
            ratio_schedule(layers, ratio)
        return
    schedule = ratio_schedule(layers, ratio)
    assert all(1 <= layer < layers for layer in schedule)
    fractions = [schedule[k] for k in sorted(schedule)]
    assert all(0.0 < f <= 1.0 for f in fractions) and fractions == sorted(fractions, reverse=True)
    assert len(schedule) <= 2 and (ratio > 0 or schedule == {})
    assert mean_kept_fraction(schedule, layers) == pytest.approx(1 - ratio, abs=1e-9)
    counts = keep_counts(2048, schedule, layers)  # tokens processed: the same up to rounding to whole tokens
    assert sum(counts) / (layers * 2048) == pytest.approx(1 - ratio, abs=1 / 2048)


def test_lazyllm_ratio_keeps_the_measured_shape():
    schedule = ratio_schedule(30, 0.5)
    assert list(schedule) == [8, 18] and schedule[8] == pytest.approx(5 * schedule[18])
    assert ratio_schedule(30, 0.1) == pytest.approx({18: 0.75})  # below 0.32 the first stage would keep everything
    with pytest.raises(ConfigError, match=r"valid \[0, 0\.733\)"):
        ratio_schedule(30, 0.75)


def test_lazyllm_runs_the_schedule_resolved_for_the_model(model, ids, tiny):
    for press, expected in ((LazyLLMPress(), default_schedule(LAYERS)),
                            (LazyLLMPress(ratio=0.5), ratio_schedule(LAYERS, 0.5))):
        with torch.no_grad(), press(model):
            model(ids[:, :200])
        assert press.active_schedule == expected
        assert press.tokens_per_layer == keep_counts(200, expected, LAYERS)
    with pytest.raises(ConfigError, match=r"out of range for a 2-layer model: valid \[0, 0\.500\)"):
        with LazyLLMPress(ratio=0.5)(tiny("llama", 2)):
            pass


@pytest.mark.parametrize(("name", "absolute"), [("lazyllm", {"schedule": {1: 0.5}}), ("delta", {"budget": 512}),
                                                ("hip", {"top_k": 256})])
def test_absolute_option_and_ratio_together_are_refused(name, absolute):
    with pytest.raises(ConfigError, match="not both"):
        make_press(name, ratio=0.5, **absolute)
