"""Budget, counting and the shared bad-input behaviour of every pruner."""

from __future__ import annotations

import math

import pytest

from prunekit.context import PRUNERS, Budget, Pruned, TokenCounter, get_pruner
from prunekit.context.base import as_text, merge_spans


@pytest.mark.parametrize("kwargs", [{}, {"tokens": 5, "rate": 0.5}, {"rate": 0.5, "threshold": 0.1},
                                    {"tokens": 0}, {"tokens": -3}, {"tokens": 2.5}, {"tokens": True},
                                    {"rate": 0.0}, {"rate": 1.5}, {"rate": -0.1}, {"threshold": math.nan},
                                    {"threshold": math.inf}])
def test_budget_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="Budget|Valid|valid"):
        Budget(**kwargs)


def test_budget_modes_and_target():
    assert Budget(tokens=10).mode == "tokens" and Budget(tokens=10).target(100) == 10
    assert Budget(tokens=500).target(100) == 100
    assert Budget(rate=0.25).mode == "rate" and Budget(rate=0.25).target(202) == 50
    assert Budget(rate=0.001).target(100) == 1  # never zero
    assert Budget(rate=1.0).target(7) == 7
    assert Budget(threshold=0.2).mode == "threshold" and Budget(threshold=0.2).target(100) is None


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
                pruner.prune(empty, text, Budget(rate=0.5))
    else:
        assert pruner.prune("", text, Budget(rate=0.5)).kept_tokens >= 1
    empty = pruner.prune("what?", "", Budget(rate=0.5))
    assert empty == Pruned("", [], 1.0, 0, 0)
    n = pruner.counter(text)
    for budget in (Budget(tokens=n), Budget(tokens=n + 50), Budget(rate=1.0)):
        same = pruner.prune("what?", text, budget)
        assert same.text == text and same.ratio == 1.0 and same.kept_spans == [(0, len(text))]
        assert same.original_tokens == same.kept_tokens == n
    assert pruner.prune(b"what?", text.encode(), Budget(rate=1.0)).text == text
    with pytest.raises(ValueError, match=r"text is not valid UTF-8 .*pass str or decode it first"):
        pruner.prune("what?", b"\xff\xfe bad", Budget(rate=0.5))
    with pytest.raises(ValueError, match="Budget"):
        pruner.prune("what?", text, 0.5)


def test_unsupported_mode_is_named(code_pruner):
    with pytest.raises(ValueError, match=r"'threshold'.*Valid choices: tokens, rate"):
        code_pruner.prune("q", "def f():\n    pass\n", Budget(threshold=0.1))
