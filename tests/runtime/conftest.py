"""Fixtures for the runtime-press tests: tiny random decoders and a greedy-generation helper."""

from __future__ import annotations

import pytest
import torch

from prunekit.testing import tiny_model


@pytest.fixture(scope="module", autouse=True)
def _single_threaded(one_thread):
    """Every test here runs with one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="module")
def tiny():
    """tiny(family, layers) -> cached tiny random model (eval mode)."""
    cache: dict = {}

    def build(family: str = "llama", layers: int = 2, **overrides):
        key = (family, layers, tuple(sorted(overrides.items())))
        if key not in cache:
            cache[key] = tiny_model(family, layers=layers, vocab=128, **overrides)
        return cache[key]

    return build


@pytest.fixture(scope="module")
def prompt():
    def make(length: int = 48, seed: int = 0) -> torch.Tensor:
        return torch.randint(0, 128, (1, length), generator=torch.Generator().manual_seed(seed))

    return make


def greedy_kwargs(new_tokens: int = 8) -> dict:
    return dict(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
                pad_token_id=0)


@pytest.fixture(scope="module")
def greedy():
    """greedy(model, ids, n=8, **extra) -> generate() output with plain greedy decoding and no early stop."""

    def run(model, ids, new_tokens: int = 8, **extra):
        with torch.no_grad():
            return model.generate(ids, attention_mask=torch.ones_like(ids), **greedy_kwargs(new_tokens), **extra)

    return run
