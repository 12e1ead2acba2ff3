"""Contract of every registered context pruner, read from the registry (a new pruner is covered with no test edit):
the budget semantics of prunekit.context.base (a token or ratio target is never exceeded, the kept fraction is
kept / original tokens in the pruner's own counting, kept spans are in order and appear in the output in that order),
empty text gives an empty result, a budget at or above the text returns it unchanged, unsupported budget modes and
anything that is not a Budget raise ConfigError naming the valid choices, and query-based pruners refuse an empty
query.

Building: a pruner whose constructor takes `model` and `tokenizer` gets a tiny random Llama on the packaged MiniLM
tokenizer; any other is built with its defaults, which must stay cheap (the sentence pruner loads the packaged
MiniLM)."""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prunekit.context import PRUNERS, Budget, ContextPruner, Pruned
from prunekit.context.encoder import load_minilm
from prunekit.errors import ConfigError

NAMES = PRUNERS.names()
QUERY = "How is an overdraft refused?"
TEXT = '''"""Bank accounts: deposits, withdrawals and a monthly statement.

An account keeps its balance in cents. Deposits must be positive. A withdrawal that would overdraw the account
is refused and leaves the balance unchanged. Statements list every transaction of the month in order.
"""


class Account:
    """A bank account owned by one customer."""

    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance
        self.history = []

    def deposit(self, amount):
        """Add money to the account. The amount must be positive."""
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self.balance += amount
        self.history.append(("deposit", amount))

    def withdraw(self, amount):
        """Take money out. Overdrawing is refused and the balance stays the same."""
        if amount > self.balance:
            raise ValueError("insufficient funds")
        self.balance -= amount
        self.history.append(("withdraw", amount))
'''
MODES = {"tokens": Budget(tokens=40), "ratio": Budget(ratio=0.6), "threshold": Budget(threshold=0.3)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def build():
    """build(name) -> the registered pruner, built once per module."""
    _, tokenizer = load_minilm()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64)
    lm = LlamaForCausalLM(config).eval()
    built: dict[str, ContextPruner] = {}

    def make(name: str) -> ContextPruner:
        if name not in built:
            cls = PRUNERS.load(name)
            takes = inspect.signature(cls).parameters
            built[name] = cls(model=lm, tokenizer=tokenizer) if {"model", "tokenizer"} <= set(takes) else cls()
        return built[name]

    return make


def assert_spans_in_order(text: str, result: Pruned) -> None:
    """Kept spans: non-empty, sorted, disjoint, inside the text, and each one appears in the output in order."""
    position, previous_end = 0, 0
    for start, end in result.kept_spans:
        assert previous_end <= start < end <= len(text)
        found = result.text.find(text[start:end], position)
        assert found >= 0, f"kept span {(start, end)} is not in the output after position {position}"
        position, previous_end = found + end - start, end


def test_the_registry_holds_context_pruner_classes_under_their_own_names():
    assert NAMES
    for name in NAMES:
        cls = PRUNERS.load(name)
        assert issubclass(cls, ContextPruner) and cls.name == name and PRUNERS.get(name).summary
        assert set(cls.supported_modes) <= set(MODES) and {"tokens", "ratio"} <= set(cls.supported_modes)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("budget", [Budget(tokens=1), Budget(tokens=40), Budget(ratio=0.7), Budget(ratio=0.4)],
                         ids=["tokens1", "tokens40", "ratio0.7", "ratio0.4"])
def test_the_target_is_never_exceeded_and_the_kept_fraction_is_reported(build, name, budget):
    pruner = build(name)
    result = pruner.prune(QUERY, TEXT, budget)
    n = pruner.counter(TEXT)
    assert result.original_tokens == n > 200
    assert result.kept_tokens <= budget.target(n) < n
    assert result.kept_fraction == result.kept_tokens / n
    assert_spans_in_order(TEXT, result)


@pytest.mark.parametrize("name", NAMES)
def test_each_budget_mode_is_served_or_refused_by_name(build, name):
    pruner = build(name)
    for mode, budget in MODES.items():
        if mode in pruner.supported_modes:
            result = pruner.prune(QUERY, TEXT, budget)  # a threshold's scale is the pruner's own: any amount
            assert result.original_tokens == pruner.counter(TEXT) and result.kept_tokens <= result.original_tokens
            assert result.kept_fraction == result.kept_tokens / result.original_tokens
            assert_spans_in_order(TEXT, result)
        else:
            valid = ", ".join(pruner.supported_modes)
            with pytest.raises(ConfigError, match=rf"does not support budget mode '{mode}'\. Valid choices: {valid}"):
                pruner.prune(QUERY, TEXT, budget)


@pytest.mark.parametrize("name", NAMES)
def test_empty_text_gives_an_empty_result(build, name):
    pruner = build(name)
    for text in ("", b""):
        for mode in pruner.supported_modes:
            assert pruner.prune(QUERY, text, MODES[mode]) == Pruned("", [], 1.0, 0, 0)


@pytest.mark.parametrize("name", NAMES)
def test_a_budget_at_or_above_the_text_returns_it_unchanged(build, name):
    pruner = build(name)
    n = pruner.counter(TEXT)
    for budget in (Budget(tokens=n), Budget(tokens=n + 50), Budget(ratio=0.0)):
        assert pruner.prune(QUERY, TEXT, budget) == Pruned(TEXT, [(0, len(TEXT))], 1.0, n, n)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [0.5, 40, None, "half", {"tokens": 40}])
def test_anything_but_a_budget_is_refused(build, name, bad):
    with pytest.raises(ConfigError, match=rf"budget has type {type(bad).__name__}; valid choices: prunekit Budget"):
        build(name).prune(QUERY, TEXT, bad)


@pytest.mark.parametrize("kwargs", [{"tokens": 0}, {"ratio": 1.0}, {"ratio": -0.5}, {"tokens": 5, "ratio": 0.5}, {}])
def test_bad_budget_values_are_refused(kwargs):
    with pytest.raises(ConfigError, match="Budget"):
        Budget(**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_the_query_rule(build, name):
    pruner = build(name)
    for empty in ("", "   "):
        if pruner.needs_query:
            with pytest.raises(ConfigError, match="query is empty"):
                pruner.prune(empty, TEXT, Budget(ratio=0.5))
        else:
            result = pruner.prune(empty, TEXT, Budget(ratio=0.5))
            assert 0 < result.kept_tokens <= Budget(ratio=0.5).target(result.original_tokens)
