"""Press registry and option validation; LazyLLM's optional window/pool scoring; HiP's default FLOPs budget."""

from __future__ import annotations

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.runtime import (
    PRESSES,
    HipPress,
    LazyLLMPress,
    SnapKVPress,
    attention_flops,
    make_press,
    press_options,
)
from prunekit.runtime.tokens._calls import last_token_importance, max_pool_scores, window_importance
from prunekit.runtime.tokens.lazyllm import select_kept


def test_names_classes_and_summaries():
    """Walks the registry: every press loads to a Press subclass, has a summary and a known kind, and builds."""
    from prunekit.runtime.base import Press

    assert {"streamingllm", "h2o", "snapkv", "knorm", "lazyllm", "delta", "hip"} <= set(PRESSES.names())
    for name in PRESSES.names():
        cls = PRESSES.load(name)
        assert issubclass(cls, Press)
        assert PRESSES.get(name).summary and PRESSES.get(name).kind in {"kv", "tokens", "attention"}
        assert isinstance(make_press(name), cls)
    assert PRESSES.load("snapkv") is SnapKVPress and PRESSES.load("lazyllm") is LazyLLMPress
    assert "layer_ratios" not in press_options("h2o") and press_options("snapkv")["window"] == 32


def test_make_press_checks_and_converts_options():
    press = make_press("lazyllm", schedule={"8": 0.6, 14: 0.4}, window=4, pool=3)
    assert press.schedule == {8: 0.6, 14: 0.4} and (press.window, press.pool) == (4, 3)
    assert make_press("snapkv", ratio=0, pooling="max").ratio == 0.0
    assert make_press("h2o", ratio=0.5).ratio == 0.5
    assert make_press("hip", dense_layers=(0, 1)).dense_layers == [0, 1]
    assert make_press("delta", selection_layers=None).selection_layers is None


@pytest.mark.parametrize("name, options, message", [
    ("nope", {}, "Unknown press 'nope'. Valid choices: delta, h2o"),
    ("h2o", {"rate": 0.5}, "Unknown option 'rate' for press 'h2o'. Valid options: chunk, ratio, recent_fraction"),
    ("h2o", {"ratio": 1.5}, r"\bratio must be a number in \[0, 1\)"),
    ("snapkv", {"pooling": "min"}, "must be one of avg, max"),
    ("delta", {"budget": "1024"}, "'delta.budget' must be an integer"),
    ("lazyllm", {"schedule": {0: 0.5}}, "layer 0"),
    ("lazyllm", {"schedule": [8, 0.5]}, "must be a mapping"),
    ("lazyllm", {"pool": 4}, "pool must be a positive odd integer"),
    ("lazyllm", {"window": 0}, "window must be a positive integer"),
    ("hip", {"dense_layers": "0"}, "must be a list"),
    ("knorm", {"layer_ratios": {0: 0.5}}, "Unknown option 'layer_ratios'"),
])
def test_make_press_errors_name_the_problem(name, options, message):
    with pytest.raises(ConfigError, match=message):
        make_press(name, **options)


def test_window_importance_is_causal_mean_of_last_queries():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 5, 8, generator=g), torch.randn(1, 2, 12, 8, generator=g)
    got = window_importance(q, k, 2, 0.3)
    kk = k.repeat_interleave(2, dim=1)  # (1, 4, 12, 8)
    logits = q @ kk.transpose(-1, -2) * 0.3  # (1, 4, 5, 12); query j sits at row 7 + j
    logits = logits.masked_fill(torch.arange(12)[None, :] > torch.arange(7, 12)[:, None], float("-inf"))
    torch.testing.assert_close(got, logits.softmax(-1).mean(dim=(1, 2)))
    torch.testing.assert_close(last_token_importance(q[:, :, -1:], k, 2, 0.3), window_importance(q[:, :, -1:], k, 2,
                                                                                                   0.3))


def test_max_pool_scores_spreads_peaks_to_neighbours():
    scores = torch.tensor([[0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    assert max_pool_scores(scores, 1) is scores
    assert max_pool_scores(scores, 3).tolist() == [[0.0, 0.0, 5.0, 5.0, 5.0, 0.0, 0.0, 1.0, 1.0]]


def test_lazyllm_window_and_pool_keep_schedule_and_full_budget_is_dense(tiny, prompt, greedy):
    model = tiny("llama", 4)
    ids = prompt(64)
    dense = greedy(model, ids, 4)
    with LazyLLMPress(schedule={1: 1.0}, window=8, pool=5)(model):
        assert torch.equal(greedy(model, ids, 4), dense)
    press = LazyLLMPress(schedule={1: 0.5, 3: 0.25}, window=8, pool=5)
    with press(model):
        out = greedy(model, ids, 4)
    assert out.shape == dense.shape and press.tokens_per_layer == [64, 32, 32, 16]


def test_lazyllm_pool_selects_by_max_pooled_last_token_scores(tiny, prompt):
    model = tiny("llama", 2)
    ids = prompt(64)
    plain = LazyLLMPress(schedule={1: 8 / 64}, revive=False, pool=1, keep_last=1)  # the paper's plain score
    raw = {}
    score = plain._last_token_scores

    def record(module, args, kwargs):
        raw["scores"] = score(module, args, kwargs)
        return raw["scores"]

    plain._last_token_scores = record
    pooled = LazyLLMPress(schedule={1: 8 / 64}, pool=7, keep_last=1, revive=False)
    with torch.no_grad():
        for press in (plain, pooled):
            with press(model):
                model(ids, use_cache=True)
    expected, _ = select_kept(max_pool_scores(raw["scores"], 7), 8)
    kept = sorted(set(range(64)) - set(pooled.aux_cache[1].positions[0].tolist()))
    assert kept == expected[0].tolist() and 63 in kept


def test_hip_defaults_gather_about_512_keys_within_a_quarter_of_causal_flops():
    press = HipPress()
    flops = attention_flops(4096, press.top_k, press.block_q, press.block_k, press.sink, press.window,
                            head_dim=64, num_heads=9)
    width = press.sink + press.top_k + press.block_q + press.window
    assert 448 <= width <= 512
    assert flops.ratio_causal <= 0.25 and flops.ratio <= 0.125
