"""Keep masks: hand-computed golden masks, exact counts, N:M validity, bad input."""

import pytest
import torch

from prunekit.core.patterns import (
    NM,
    check_sparsity,
    keep_mask_by_count,
    mask_sparsity,
    nm_keep_mask,
    num_pruned,
    unstructured_keep_mask,
)

SCORES_2x8 = torch.tensor(
    [
        [0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.8, 0.4],
        [1.0, 0.0, 0.6, 0.55, 2.0, 0.15, 0.25, 3.0],
    ]
)


def test_unstructured_whole_tensor_golden():
    mask = unstructured_keep_mask(SCORES_2x8, 0.5)
    expected = torch.tensor(
        [
            [0, 1, 0, 1, 0, 0, 1, 0],  # 0.9, 0.7, 0.8 are in the global top 8
            [1, 0, 1, 1, 1, 0, 0, 1],  # 1.0, 0.6, 0.55, 2.0, 3.0
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def test_unstructured_per_row_golden():
    mask = unstructured_keep_mask(SCORES_2x8, 0.5, per_row=True)
    expected = torch.tensor(
        [
            [0, 1, 0, 1, 1, 0, 1, 0],  # 0.9, 0.7, 0.5, 0.8
            [1, 0, 1, 0, 1, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def test_nm_golden_2_4():
    mask = nm_keep_mask(SCORES_2x8, NM(2, 4))
    expected = torch.tensor(
        [
            [0, 1, 0, 1, 1, 0, 1, 0],
            [1, 0, 1, 0, 1, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def test_ties_keep_lower_index():
    scores = torch.ones(1, 8)
    assert torch.equal(unstructured_keep_mask(scores, 0.5)[0], torch.tensor([1, 1, 1, 1, 0, 0, 0, 0]).bool())
    assert torch.equal(nm_keep_mask(scores, NM(1, 4))[0], torch.tensor([1, 0, 0, 0, 1, 0, 0, 0]).bool())


@pytest.mark.parametrize("nm", [NM(2, 4), NM(4, 8), NM(1, 4)])
def test_nm_exact_on_random(nm):
    torch.manual_seed(0)
    scores = torch.randn(64, 128).abs()
    mask = nm_keep_mask(scores, nm)
    per_group = mask.reshape(64, 128 // nm.m, nm.m).sum(-1)
    assert torch.all(per_group == nm.n)
    # the kept entries are the top-n of each group
    groups = scores.reshape(64, -1, nm.m)
    kept_min = torch.where(mask.reshape(groups.shape), groups, torch.inf).amin(-1)
    pruned_max = torch.where(mask.reshape(groups.shape), -torch.inf, groups).amax(-1)
    assert torch.all(kept_min >= pruned_max)


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.37, 0.5, 0.9, 0.999])
def test_unstructured_exact_counts(sparsity):
    torch.manual_seed(1)
    scores = torch.randn(33, 70)
    mask = unstructured_keep_mask(scores, sparsity)
    assert (~mask).sum().item() == round(sparsity * scores.numel())
    row_mask = unstructured_keep_mask(scores, sparsity, per_row=True)
    assert torch.all((~row_mask).sum(-1) == round(sparsity * 70))
    if 0 < sparsity:
        assert scores[mask].min() >= scores[~mask].max()


def test_keep_mask_by_count_and_helpers():
    scores = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(keep_mask_by_count(scores, 2), torch.tensor([[0, 0, 1], [1, 1, 1]]).bool())
    assert torch.equal(keep_mask_by_count(scores, 3, per_row=True), torch.zeros(2, 3, dtype=torch.bool))
    assert mask_sparsity(torch.tensor([True, False, False, True])) == 0.5
    assert num_pruned(0.5, 5) == round(2.5)
    with pytest.raises(ValueError, match="n_prune"):
        keep_mask_by_count(scores, 7)


def test_nm_parse_and_props():
    assert NM.parse("2:4") == NM(2, 4)
    assert NM.parse(" 4 : 8 ") == NM(4, 8)
    assert str(NM(2, 4)) == "2:4"
    assert NM(1, 4).sparsity == 0.75
    for bad in ["2-4", "2:", "a:b", "2:4:8", "", "-1:4"]:
        with pytest.raises(ValueError, match="N:M pattern"):
            NM.parse(bad)
    with pytest.raises(ValueError, match="N:M pattern"):
        NM.parse("0:4")


def test_nm_validation():
    with pytest.raises(ValueError, match=r"N <= M, got N=5, M=4"):
        NM(5, 4)
    with pytest.raises(ValueError, match="N=0"):
        NM(0, 4)
    with pytest.raises(ValueError, match="M=0"):
        NM(1, 0)


def test_nm_indivisible_raises():
    with pytest.raises(ValueError, match=r"M=4.*\(2, 10\)"):
        nm_keep_mask(torch.randn(2, 10), NM(2, 4))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_sparsity_raises_with_value(bad):
    with pytest.raises(ValueError, match=str(bad)):
        unstructured_keep_mask(torch.randn(4, 4), bad)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_sparsity(bad)


def test_nan_scores_raise():
    with pytest.raises(ValueError, match="NaN"):
        unstructured_keep_mask(torch.tensor([[1.0, float("nan")]]), 0.5)
