"""Collectors equal the batch formulas when fed uneven batches."""

import pytest
import torch

from prunekit.calib.collectors import HessianCollector, InputNormCollector


def _batches():
    torch.manual_seed(0)
    xs = [torch.randn(2, 7, 12), torch.randn(1, 30, 12), torch.randn(3, 1, 12)]  # 14 + 30 + 3 tokens
    return xs, torch.cat([x.reshape(-1, 12) for x in xs])


def test_input_norm_matches_batch():
    xs, X = _batches()
    c = InputNormCollector()
    for x in xs:
        c.add_batch(x)
    assert c.n_tokens == 47
    out = c.result()
    assert out.shape == (12,) and out.dtype == torch.float32
    assert torch.allclose(out, (X.double() ** 2).sum(0).float(), rtol=1e-6)


def test_hessian_matches_batch():
    xs, X = _batches()
    c = HessianCollector()
    for x in xs:
        c.add_batch(x)
    H = c.result()
    expected = 2.0 / X.shape[0] * X.double().T @ X.double()
    assert H.shape == (12, 12) and H.dtype == torch.float32
    assert torch.allclose(H.double(), expected, rtol=1e-5, atol=1e-6)
    c64 = HessianCollector(dtype=torch.float64)
    for x in xs:
        c64.add_batch(x)
    assert torch.allclose(c64._H, expected, rtol=1e-12)


def test_half_inputs_and_empty_batches():
    c = InputNormCollector()
    c.add_batch(torch.zeros(0, 4))
    c.add_batch(torch.ones(3, 4, dtype=torch.bfloat16))
    assert c.n_tokens == 3 and torch.equal(c.result(), torch.full((4,), 3.0))


def test_collector_errors():
    c = HessianCollector()
    with pytest.raises(RuntimeError, match="before any"):
        c.result()
    c.add_batch(torch.randn(5, 4))
    with pytest.raises(ValueError, match="in_features=4"):
        c.add_batch(torch.randn(5, 3))
    with pytest.raises(ValueError, match="float16"):
        HessianCollector(dtype=torch.float16)
