"""(f) DELTA: page scoring and selection, layer roles, attended entries per sparse layer equal the budget."""

from __future__ import annotations

import pytest
import torch

from prunekit.runtime import DeltaPress
from prunekit.runtime.attention import page_scores, select_pages


def test_page_scores_sum_of_head_max_end_aligned():
    probs = torch.zeros(1, 2, 10)
    probs[0, 0, 9] = 0.5  # most recent entry -> page 0
    probs[0, 1, 9] = 0.2
    probs[0, 1, 0] = 0.3  # oldest entry -> page 2 (a short page: entries 0..1)
    probs[0, 0, 5] = 0.1  # page 1 (entries 2..5)
    assert torch.allclose(page_scores(probs, 4), torch.tensor([[0.5, 0.1, 0.3]]))


@pytest.mark.parametrize("length", [64, 67, 100])
def test_select_pages_exact_budget_recent_forced(length):
    torch.manual_seed(0)
    scores = page_scores(torch.rand(2, 3, length).softmax(-1), 8)
    scores[:, 1:3] = -1.0  # the recent pages score worst but are forced in
    chosen = select_pages(scores, length, 8, 32, recent_pages=2)
    assert chosen.shape == (2, 32)
    for row in chosen:
        assert row.unique().numel() == 32 and bool((row.diff() > 0).all())
        assert set(range(length - 16, length)) <= set(row.tolist())  # last 2 pages
        assert int(row.min()) >= 0 and int(row.max()) < length


def test_roles_and_validation(tiny):
    assert DeltaPress(dense_layers=2, selection_layers=[2, 5]).roles(8) == [
        "dense", "dense", "select", "sparse", "sparse", "select", "sparse", "sparse"]
    assert DeltaPress(dense_layers=2).roles(30).count("select") == 3
    with pytest.raises(ValueError, match="first selection layer"), DeltaPress(
            dense_layers=0, selection_layers=[1])(tiny("llama", 2)):
        pass


@pytest.mark.parametrize(("family", "page_size", "recent_pages"), [("llama", 8, 2), ("gpt2", 8, 2), ("llama", 1, 16)])
def test_attended_entries_equal_budget(tiny, prompt, greedy, family, page_size, recent_pages):
    model = tiny(family, 4)
    press = DeltaPress(budget=48, page_size=page_size, recent_pages=recent_pages, dense_layers=1,
                       selection_layers=[1])
    with press(model):
        greedy(model, prompt(100), 4)
    context = 100 + 3  # prompt + 3 decoded tokens fed back at the last step
    assert press.attended_entries_per_layer == {0: context, 1: context, 2: 48, 3: 48}
    assert press.selections == 3


def test_manual_decode_selection_keeps_recent_pages(tiny, prompt):
    """A manual decode step (no generate) selects exactly `budget` entries including the most recent page."""
    model = tiny("llama", 4)
    press = DeltaPress(budget=32, page_size=8, recent_pages=1, dense_layers=1, selection_layers=[1])
    captured = {}
    with torch.no_grad(), press(model):
        out = model(prompt(80), use_cache=True)
        model(torch.tensor([[3]]), cache=out.cache)
        captured["sel"] = press._selection.clone()
    assert captured["sel"].shape == (1, 32)
    assert set(range(73, 81)) <= set(captured["sel"][0].tolist())


def test_ratio_sets_the_budget_from_the_current_length(tiny, prompt, greedy):
    """The shared knob: each step attends to the kept fraction of the cache, at least the recent pages + one page."""
    assert DeltaPress().budget == 1024
    press = DeltaPress(ratio=0.5, page_size=8, recent_pages=2, dense_layers=1, selection_layers=[1])
    assert press.budget is None and press.budget_for(103) == 52 and press.budget_for(20) == 24
    model = tiny("llama", 4)
    with press(model):
        greedy(model, prompt(100), 4)
    assert press.attended_entries_per_layer == {0: 103, 1: 103, 2: 52, 3: 52}  # 103 - int(0.5 * 103)
    assert press.selections == 3
