"""(a) Every press whose budget covers the context reproduces the dense greedy tokens exactly."""

from __future__ import annotations

import pytest
import torch

from prunekit.runtime import (
    ComposedPress,
    DeltaPress,
    H2OPress,
    HipPress,
    KeyNormPress,
    LazyLLMPress,
    PerLayerPress,
    SnapKVPress,
    StreamingLLMPress,
)

FULL_BUDGET = {
    "streaming": lambda: StreamingLLMPress(ratio=0.0),
    "h2o": lambda: H2OPress(ratio=0.0),
    "snapkv": lambda: SnapKVPress(ratio=0.0),
    "knorm": lambda: KeyNormPress(ratio=0.0),
    "per-layer": lambda: PerLayerPress(KeyNormPress(), {0: 0.0, 1: 0.0}),
    "lazyllm": lambda: LazyLLMPress(schedule={1: 1.0}),
    "delta": lambda: DeltaPress(budget=4096, dense_layers=0, selection_layers=[0]),
    "hip": lambda: HipPress(top_k=4096),
    "composed": lambda: ComposedPress([SnapKVPress(ratio=0.0), DeltaPress(budget=4096)]),
}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("name", list(FULL_BUDGET))
def test_full_budget_matches_dense_greedy(tiny, prompt, greedy, family, name):
    model = tiny(family, 2)
    ids = prompt(48, seed=1)
    dense = greedy(model, ids)
    with FULL_BUDGET[name]()(model):
        pressed = greedy(model, ids)
    assert pressed.shape == dense.shape == (1, 56)
    assert torch.equal(pressed, dense)
