"""LongCodeZip: knapsack optimality, spikes, budget allocation, chunking, removed ratio and markers."""

from __future__ import annotations

import itertools
import random
import re

import pytest
import torch

from prunekit.context import (
    Budget,
    LongCodeZipConfig,
    LongCodeZipPruner,
    allocate_budget,
    find_spikes,
    knapsack,
    knapsack_exact,
    knapsack_greedy,
    split_blocks,
    split_chunks,
)
from prunekit.context.codechunks import omission_marker

MARKER = re.compile(r"^[ \t]*(?:#|//) \.\.\. \((\d+) lines? omitted\)\n", re.M)
SMALL_CODE = '''import math


def area(radius):
    """Area of a circle."""
    return math.pi * radius ** 2


def perimeter(radius):
    """Perimeter of a circle."""
    return 2 * math.pi * radius


class Account:
    """A bank account with a balance."""

    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount):
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self.balance += amount
        return self.balance

    def withdraw(self, amount):
        if amount > self.balance:
            raise ValueError("insufficient funds")
        self.balance -= amount
        return self.balance


def compound_interest(principal, rate, years):
    """Grow the principal with yearly compounding."""
    total = principal
    for _ in range(years):
        total = total * (1 + rate)
    return round(total, 2)
'''


def brute_force(values, weights, capacity):
    best = 0.0
    for r in range(len(values) + 1):
        for subset in itertools.combinations(range(len(values)), r):
            if sum(weights[i] for i in subset) <= capacity:
                best = max(best, sum(values[i] for i in subset))
    return best


@pytest.mark.parametrize("seed", range(60))
def test_knapsack_exact_matches_brute_force(seed):
    rng = random.Random(seed)
    n = rng.randint(0, 12)
    values = [round(rng.uniform(-1, 10), 3) for _ in range(n)]
    weights = [rng.randint(0, 30) for _ in range(n)]
    capacity = rng.randint(0, 100)
    chosen = knapsack_exact(values, weights, capacity)
    assert sum(weights[i] for i in chosen) <= capacity
    assert sum(values[i] for i in chosen) == pytest.approx(brute_force(values, weights, capacity))
    greedy = knapsack_greedy(values, weights, capacity)
    assert sum(weights[i] for i in greedy) <= capacity
    assert sum(values[i] for i in greedy) >= 0.5 * brute_force(values, weights, capacity) - 1e-9
    assert knapsack(values, weights, capacity, max_cells=0) == greedy
    assert knapsack(values, weights, capacity) == chosen


def test_knapsack_input_checks():
    with pytest.raises(ValueError, match="differ in length"):
        knapsack_exact([1.0], [1, 2], 3)
    with pytest.raises(ValueError, match="non-negative integers"):
        knapsack_exact([1.0], [1.5], 3)
    with pytest.raises(ValueError, match="capacity=-1"):
        knapsack_greedy([1.0], [1], -1)


def test_find_spikes_on_hand_made_series():
    flat = [2.0, 2.1, 1.9, 2.0, 2.05, 1.95, 2.0]
    assert find_spikes(flat, k=1.0) == [] or all(flat[i] < 2.2 for i in find_spikes(flat, k=3.0))
    series = [2.0, 2.1, 1.9, 6.0, 2.0, 2.1, 1.8, 2.2, 7.5, 2.0]
    assert find_spikes(series, k=1.0, window=3) == [3, 8]
    assert find_spikes([1.0, float("nan"), 9.0, 1.0, 1.2], k=1.0, window=2) == [2]
    assert split_blocks(series, k=1.0, window=3) == [(0, 3), (3, 8), (8, 10)]
    assert split_blocks(series, k=1.0, window=3, max_block_lines=2) == [(0, 2), (2, 3), (3, 5), (5, 6), (6, 8),
                                                                        (8, 10)]
    assert split_blocks([], k=1.0) == []


def test_allocate_budget_is_adaptive_and_exact():
    shares = allocate_budget([100, 100, 100], [0.0, 0.5, 1.0], 150, beta=0.5)
    assert sum(shares) == 150 and shares[0] < shares[1] < shares[2]
    assert allocate_budget([100, 100], [1.0, 1.0], 101) in ([51, 50], [50, 51])
    capped = allocate_budget([10, 200], [1.0, 0.0], 100, beta=1.0)
    assert capped[0] <= 10 and sum(capped) == 100
    assert allocate_budget([10, 20], [0.3, 0.1], 1000) == [10, 20]
    with pytest.raises(ValueError, match="beta=2"):
        allocate_budget([1], [1.0], 1, beta=2)


def test_python_chunks_partition_the_source(textwrap_source):
    lines = textwrap_source.splitlines(keepends=True)
    chunks = split_chunks(textwrap_source)
    assert chunks[0].start == 0 and chunks[-1].end == len(lines)
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))
    names = {c.name for c in chunks}
    assert {"TextWrapper", "TextWrapper._wrap_chunks", "wrap", "fill", "shorten", "dedent", "indent"} <= names
    dedent = next(c for c in chunks if c.name == "dedent")
    assert lines[dedent.start].startswith("def dedent(")


def test_regex_chunks_for_other_languages():
    js = "import x from 'y';\n\n// adds one\nexport function foo(a) {\n  return a + 1;\n}\n\nfn bar() {}\n"
    chunks = split_chunks(js, "javascript")
    lines = js.splitlines(keepends=True)
    assert [(c.kind, c.name) for c in chunks] == [("module", ""), ("function", "foo"), ("function", "bar")]
    assert lines[chunks[1].start] == "// adds one\n"  # comment above belongs to the function
    with pytest.raises(ValueError, match="language 'cobol'.*Valid choices"):
        split_chunks(js, "cobol")
    assert split_chunks("def broken(:\n    pass\ndef ok():\n    pass\n")[-1].name == "ok"  # regex fallback


def test_omission_marker_styles():
    assert omission_marker(12, "    ", "python") == "    # ... (12 lines omitted)\n"
    assert omission_marker(1, "", "go") == "// ... (1 line omitted)\n"


def check_render(original: str, result) -> None:
    """Output = kept line runs with marker lines between them; every line is accounted for."""
    assert MARKER.sub("", result.text) == "".join(original[s:e] for s, e in result.kept_spans)
    omitted = sum(int(n) for n in MARKER.findall(result.text))
    kept = sum(original[s:e].count("\n") for s, e in result.kept_spans)
    blank_dropped = original.count("\n") - kept - omitted
    assert blank_dropped >= 0


@pytest.mark.parametrize("ratio", [0.85, 0.7, 0.5, 0.25])
def test_ratio_within_two_percent_on_textwrap(code_pruner, textwrap_source, ratio):
    result = code_pruner.prune("How does shorten collapse whitespace and truncate?", textwrap_source,
                               Budget(ratio=ratio))
    assert result.original_tokens > 200
    assert result.kept_tokens == code_pruner.counter(result.text)
    assert abs(result.removed_fraction - ratio) <= 0.02
    assert MARKER.search(result.text)
    check_render(textwrap_source, result)


@pytest.mark.parametrize("ratio", [0.7, 0.4])
def test_ratio_on_a_small_file(code_pruner, ratio):
    result = code_pruner.prune("deposit money into the account", SMALL_CODE, Budget(ratio=ratio))
    assert result.original_tokens > 200
    assert abs(result.removed_fraction - ratio) <= 0.02
    check_render(SMALL_CODE, result)


def test_token_budget(code_pruner, textwrap_source):
    result = code_pruner.prune("dedent common leading whitespace", textwrap_source, Budget(tokens=600))
    assert 600 - 0.01 * result.original_tokens - 1 <= result.kept_tokens <= 600


def test_coarse_stage_follows_ami(tiny_lm, monkeypatch):
    """With an AMI that favours the chunk naming the query identifier, that function is kept."""
    pruner = LongCodeZipPruner(*tiny_lm, config=LongCodeZipConfig(fine_ratio=1.0))
    monkeypatch.setattr(pruner, "ami", lambda query, texts: [float("withdraw" in t) for t in texts])
    result = pruner.prune("withdraw", SMALL_CODE, Budget(ratio=0.7))
    assert "def withdraw(self, amount):" in result.text
    assert "insufficient funds" in result.text
    assert "def compound_interest" not in result.text


def test_go_markers(tiny_lm):
    body = "func f{i}(x int) int {{\n\ty := x * {i}\n\ty = y + {i}\n\tfmt.Println(y)\n\treturn y\n}}\n\n"
    go = "package main\n\nimport \"fmt\"\n\n" + "".join(body.format(i=i) for i in range(12))
    pruner = LongCodeZipPruner(*tiny_lm, config=LongCodeZipConfig(language="go"))
    result = pruner.prune("which function multiplies by seven", go, Budget(ratio=0.6))
    assert "// ... (" in result.text and "# ..." not in result.text
    assert abs(result.kept_fraction - 0.4) <= 0.02


def test_config_validation():
    with pytest.raises(ValueError, match="fine_ratio=0"):
        LongCodeZipConfig(fine_ratio=0)
    with pytest.raises(ValueError, match="language 'klingon'"):
        LongCodeZipConfig(language="klingon")


def test_budget_below_one_marker_gives_empty_text(code_pruner):
    result = code_pruner.prune("what", "x = 1\n", Budget(tokens=1))
    assert result.text == "" and result.kept_tokens == 0 and result.kept_spans == []


def test_query_nll_is_in_input_order_for_any_batch_size(tiny_lm, textwrap_source):
    from prunekit.context.lm import query_nll

    model, tok = tiny_lm
    lines = textwrap_source.splitlines(keepends=True)
    prefixes = ["", "".join(lines[:3]), "".join(lines[:40]), "x = 1\n", "".join(lines[10:25])]  # mixed lengths
    one = query_nll(model, tok, prefixes, "What does wrap return?", max_length=128, batch_size=1)
    sorted_batches = query_nll(model, tok, prefixes, "What does wrap return?", max_length=128, batch_size=2)
    assert one.shape == (5,) and torch.allclose(one, sorted_batches, atol=1e-4)


def test_query_nll_truncates_long_prefixes_at_the_chosen_end(tiny_lm):
    from prunekit.context.lm import encode, query_nll

    model, tok = tiny_lm
    words = ("cat dog sun red car box tree fish bird rain " * 30).split()  # single WordPiece tokens
    assert len(encode(tok, " ".join(words))) == len(words)
    query, max_length = "where is the red box?", 64
    cut = max_length - len(encode(tok, query)) - 1 - len(encode(tok, "\n\n"))  # room left after anchor and query
    long = " ".join(words[:-3] + ["moon", "star", "sky"])  # head and tail differ
    head = query_nll(model, tok, [long, " ".join(words[:cut])], query, max_length, keep="head")
    tail_text = " ".join((words[:-3] + ["moon", "star", "sky"])[-cut:])
    tail = query_nll(model, tok, [long, tail_text], query, max_length, keep="tail")
    assert torch.allclose(head[0], head[1], atol=1e-5) and torch.allclose(tail[0], tail[1], atol=1e-5)
    assert not torch.allclose(head[0], tail[0], atol=1e-4)
    with pytest.raises(ValueError, match="keep='middle'"):
        query_nll(model, tok, [long], query, max_length, keep="middle")
    with pytest.raises(ValueError, match="truncate='middle'"):
        LongCodeZipConfig(truncate="middle")


def test_unused_share_passes_to_the_next_most_relevant_chunk(tiny_lm):
    from prunekit.context.longcodezip import _Block

    pruner = LongCodeZipPruner(*tiny_lm)
    # chunk 0: head 10 + three blocks of 30 (share 77: two blocks fit, 7 left); chunk 1: head 5 + one block of
    # 25 (share 23 < 30 alone; 30 with the 7 passed on). Equal AMIs: shares proportional to size (100 : 30).
    blocks = [_Block(0, 0, 1, 10, float("inf")), _Block(0, 1, 2, 30, 3.0), _Block(0, 2, 3, 30, 2.0),
              _Block(0, 3, 4, 30, 1.0), _Block(1, 4, 5, 5, float("inf")), _Block(1, 5, 6, 25, 1.0)]
    pruner._select(blocks, [0, 1], [1.0, 1.0], 100)
    assert [b.kept for b in blocks] == [True, True, True, False, True, True]


def test_coarse_takes_chunks_in_ami_order_including_the_one_crossing_the_budget(tiny_lm):
    pruner = LongCodeZipPruner(*tiny_lm)
    # 50 tokens used after the best chunk; the 300-token second best crosses 100 and is still taken; then stop
    assert pruner._coarse([50, 300, 20], [3.0, 2.0, 1.0], 100) == [0, 1]
    assert pruner._coarse([50, 30, 20], [3.0, 2.0, 1.0], 100) == [0, 1, 2]
    assert pruner._coarse([120, 30, 20], [1.0, 2.0, 3.0], 40) == [1, 2]
    with pytest.raises(ValueError, match="coarse_extra=-1"):
        LongCodeZipConfig(coarse_extra=-1)
