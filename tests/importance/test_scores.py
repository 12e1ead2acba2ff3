"""Importance scores: magnitude, Wanda, random."""

import pytest
import torch

from prunekit.core.patterns import unstructured_keep_mask
from prunekit.importance.magnitude import magnitude_scores
from prunekit.importance.random import random_scores
from prunekit.importance.wanda import wanda_scores

W = torch.tensor([[1.0, -2.0, 3.0, -0.5], [-4.0, 0.1, 0.2, 1.0]])


def test_magnitude():
    s = magnitude_scores(W.to(torch.bfloat16))
    assert s.dtype == torch.float32
    assert torch.equal(s, W.to(torch.bfloat16).abs().float())
    assert torch.equal(magnitude_scores(W), W.abs())


def test_wanda_hand_computed():
    norm_sq = torch.tensor([1.0, 4.0, 0.0, 100.0])  # ||X_j||^2 -> ||X_j|| = 1, 2, 0, 10
    s = wanda_scores(W, norm_sq)
    expected = torch.tensor([[1.0, 4.0, 0.0, 5.0], [4.0, 0.2, 0.0, 10.0]])
    assert torch.allclose(s, expected)
    # per-row 50%: row 0 keeps cols 1, 3; row 1 keeps cols 0, 3
    mask = unstructured_keep_mask(s, 0.5, per_row=True)
    assert torch.equal(mask, torch.tensor([[0, 1, 0, 1], [1, 0, 0, 1]]).bool())
    # a large-norm input rescues a small weight that magnitude would drop
    assert not unstructured_keep_mask(magnitude_scores(W), 0.5, per_row=True)[0, 3]


def test_wanda_matches_batch_formula():
    torch.manual_seed(0)
    w, x = torch.randn(8, 16), torch.randn(50, 16)
    s = wanda_scores(w, (x**2).sum(0))
    assert torch.allclose(s, w.abs() * x.norm(dim=0)[None, :])


def test_wanda_bad_input():
    with pytest.raises(ValueError, match=r"\(4,\)"):
        wanda_scores(W, torch.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        wanda_scores(W, torch.tensor([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="2-D"):
        wanda_scores(torch.ones(4), torch.ones(4))


def test_random_reproducible():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = random_scores(W, g1), random_scores(W, g2)
    assert a.shape == W.shape and torch.equal(a, b)
    assert torch.all((a >= 0) & (a < 1))
    assert not torch.equal(a, random_scores(W, torch.Generator().manual_seed(4)))
