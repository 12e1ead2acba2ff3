"""Budget, counting and the shared bad-input behaviour of every pruner."""

from __future__ import annotations

import math
import warnings

import pytest

from prunekit.context import PRUNERS, Budget, Pruned, TokenCounter, get_pruner
from prunekit.context.base import as_text, merge_spans
from prunekit.core.typed import RenamedOptionWarning
from prunekit.errors import ConfigError


@pytest.mark.parametrize("kwargs", [{}, {"tokens": 5, "ratio": 0.5}, {"ratio": 0.5, "threshold": 0.1},
                                    {"tokens": 0}, {"tokens": -3}, {"tokens": 2.5}, {"tokens": True},
                                    {"ratio": 1.0}, {"ratio": -0.5}, {"ratio": 1.1}, {"ratio": True},
                                    {"threshold": math.nan}, {"threshold": math.inf}])
def test_budget_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="Budget|Valid|valid"):
        Budget(**kwargs)


def test_budget_modes_and_target():
    assert Budget(tokens=10).mode == "tokens" and Budget(tokens=10).target(100) == 10
    assert Budget(tokens=500).target(100) == 100
    assert Budget(ratio=0.75).mode == "ratio" and Budget(ratio=0.75).target(202) == 50
    assert Budget(ratio=0.999).target(100) == 1  # never zero
    assert Budget(ratio=0.0).target(7) == 7
    assert Budget(threshold=0.2).mode == "threshold" and Budget(threshold=0.2).target(100) is None


@pytest.mark.parametrize("rate, ratio", [(0.1, 0.9), (0.25, 0.75), (0.3, 0.7), (0.4, 0.6), (0.5, 0.5), (0.6, 0.4),
                                         (0.7, 0.3), (0.75, 0.25), (0.9, 0.1), (0.15, 0.85), (0.85, 0.15),
                                         (0.001, 0.999), (1.0, 0.0), (1 / 3, 1 - 1 / 3)])
def test_the_old_rate_is_the_kept_fraction_and_keeps_its_targets(rate, ratio):
    with pytest.warns(RenamedOptionWarning, match=r"rate \(kept fraction\) is replaced by ratio \(removed fraction\)"):
        old = Budget(rate=rate)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RenamedOptionWarning)  # the new name does not warn
        new = Budget(ratio=ratio)
        kept = Budget.keeping(rate)
    assert old.mode == new.mode == kept.mode == "ratio" and old.ratio == new.ratio and old == new == kept
    for n in range(1, 3001):  # the same targets, rounding ties included (0.3 * 15 = 4.5 -> 4)
        assert old.target(n) == new.target(n) == kept.target(n) == min(n, max(1, round(rate * n))), n


def test_rate_and_ratio_together_or_out_of_range_are_refused():
    with pytest.raises(ConfigError, match=r"both rate=0\.3 and ratio=0\.7"):
        Budget(rate=0.3, ratio=0.7)
    for ratio in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=rf"Budget ratio={ratio} is invalid; valid: .*\[0, 1\)"):
            Budget(ratio=ratio)
    for rate in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=rf"Budget rate={rate} is invalid; valid: .*\(0, 1\]"):
            Budget(rate=rate)
        with pytest.raises(ConfigError, match=rf"Budget.keeping\({rate}\) is invalid; valid: .*\(0, 1\]"):
            Budget.keeping(rate)


def test_pruned_ratio_is_the_deprecated_kept_fraction():
    pruned = Pruned("kept", [(0, 4)], kept_fraction=0.25, original_tokens=8, kept_tokens=2)
    assert pruned.removed_fraction == 0.75
    with pytest.warns(RenamedOptionWarning, match=r"Pruned\.ratio \(kept fraction\) is renamed kept_fraction"):
        assert pruned.ratio == pruned.kept_fraction == 0.25


def test_token_counter_matches_tokenizer(minilm):
    _, tok = minilm
    count = TokenCounter(tok)
    text = "Pruning keeps the useful tokens."
    assert count(text) == len(tok(text, add_special_tokens=False).input_ids)
    assert count("") == 0
    assert count.token_ends(text)[-1] == len(text)


def test_bytes_input_is_decoded_or_refused():
    assert as_text("é".encode(), "text") == "é"
    with pytest.raises(ValueError, match=r"text is not valid UTF-8 .*pass str or decode it first"):
        as_text(b"caf\xe9", "text")
    with pytest.raises(ValueError, match="str or UTF-8 bytes"):
        as_text(42, "text")


def test_merge_spans():
    text = "ab cd|ef"
    assert merge_spans([(3, 5), (0, 2)], text) == [(0, 5)]  # only whitespace between: bridged
    assert merge_spans([(0, 2), (3, 5)], text, bridge_whitespace=False) == [(0, 2), (3, 5)]
    assert merge_spans([(0, 5), (6, 8)], text) == [(0, 5), (6, 8)]


def test_registry():
    assert set(PRUNERS) == {"sentences", "code", "tokens"}
    assert get_pruner("tokens") is PRUNERS["tokens"]
    with pytest.raises(ValueError, match=r"'sentence'.*Valid choices: code, sentences, tokens"):
        get_pruner("sentence")


SAMPLE = {"sentences": "Cattle ranching clears land. Soy farming adds pressure.",
          "code": "def f(x):\n    return x + 1\n",
          "tokens": "Cattle ranching clears land. Soy farming adds pressure."}


@pytest.mark.parametrize("name", ["sentences", "code", "tokens"])
def test_shared_bad_input(pruners, name):
    pruner = pruners[name]
    text = SAMPLE[name]
    if pruner.needs_query:
        for empty in ("", "   "):
            with pytest.raises(ValueError, match="query is empty"):
                pruner.prune(empty, text, Budget(ratio=0.5))
    else:
        assert pruner.prune("", text, Budget(ratio=0.5)).kept_tokens >= 1
    empty = pruner.prune("what?", "", Budget(ratio=0.5))
    assert empty == Pruned("", [], 1.0, 0, 0)
    n = pruner.counter(text)
    for budget in (Budget(tokens=n), Budget(tokens=n + 50), Budget(ratio=0.0)):
        same = pruner.prune("what?", text, budget)
        assert same.text == text and same.kept_fraction == 1.0 and same.kept_spans == [(0, len(text))]
        assert same.original_tokens == same.kept_tokens == n
    assert pruner.prune(b"what?", text.encode(), Budget(ratio=0.0)).text == text
    with pytest.raises(ValueError, match=r"text is not valid UTF-8 .*pass str or decode it first"):
        pruner.prune("what?", b"\xff\xfe bad", Budget(ratio=0.5))
    with pytest.raises(ValueError, match="Budget"):
        pruner.prune("what?", text, 0.5)


def test_unsupported_mode_is_named(code_pruner):
    with pytest.raises(ValueError, match=r"'threshold'.*Valid choices: tokens, ratio"):
        code_pruner.prune("q", "def f():\n    pass\n", Budget(threshold=0.1))
