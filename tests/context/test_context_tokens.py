"""Self-information token pruner: exact kept token count, spans, sliding windows, threshold mode."""

from __future__ import annotations

import math

import pytest
import torch

from prunekit.context import Budget, TokenPruner, TokenPrunerConfig
from prunekit.context.lm import token_logprobs
from prunekit.context.tokens import (
    continues_word,
    join_pieces,
    keep_top,
    keep_top_words,
    token_spans,
    with_word_prefixes,
)


@pytest.mark.parametrize("ratio, keep", [(0.9, 0.1), (0.7, 0.3), (0.5, 0.5), (0.3, 0.7), (0.1, 0.9)])
def test_ratio_is_exact_in_lm_tokens(token_pruner, passage, ratio, keep):
    result = token_pruner.prune("", passage, Budget(ratio=ratio))
    assert result.original_tokens == token_pruner.counter(passage) > 200
    assert result.kept_tokens == round(keep * result.original_tokens)
    assert abs(result.removed_fraction - ratio) <= 0.02
    assert abs(token_pruner.counter(result.text) / result.original_tokens - keep) <= 0.02  # re-encoded


def test_token_budget_is_exact(token_pruner, passage):
    assert token_pruner.prune("ignored", passage, Budget(tokens=77)).kept_tokens == 77


def test_output_is_the_kept_spans(token_pruner, passage):
    result = token_pruner.prune("", passage, Budget(ratio=0.6))
    assert result.text == join_pieces(passage, result.kept_spans)
    assert "".join(result.text.split()) == "".join("".join(passage[s:e].split()) for s, e in result.kept_spans)
    assert all(0 <= s < e <= len(passage) for s, e in result.kept_spans)
    assert result.kept_spans == sorted(result.kept_spans)


def test_most_informative_tokens_are_kept(tiny_lm, passage):
    pruner = TokenPruner(*tiny_lm, TokenPrunerConfig(word_prefix=False))  # plain top-k
    ids, offsets, info = pruner.self_information(passage)
    result = pruner.prune("", passage, Budget(ratio=0.5))
    assert result.kept_spans == token_spans(passage, offsets, keep_top(info, result.kept_tokens))
    kept = set(keep_top(info, result.kept_tokens))
    dropped_max = max(float(info[i]) for i in range(len(ids)) if i not in kept)
    kept_min = min(float(info[i]) for i in kept)
    assert kept_min >= dropped_max
    assert math.isinf(float(info[0])) is False  # the MiniLM tokenizer has CLS as anchor


def test_kept_word_pieces_bring_their_word_prefix(token_pruner, passage):
    ids, offsets, info = token_pruner.self_information(passage)
    pieces = [i for i in range(len(ids)) if continues_word(passage, offsets, i)]
    assert pieces  # the WordPiece test tokenizer splits some words
    for ratio, kept in ((0.8, 0.2), (0.5, 0.5), (0.2, 0.8)):
        keep = keep_top_words(info, round(kept * len(ids)), passage, offsets)
        assert len(keep) == round(kept * len(ids)) and keep == with_word_prefixes(keep, passage, offsets)
        result = token_pruner.prune("", passage, Budget(ratio=ratio))
        assert result.kept_spans == token_spans(passage, offsets, keep)


def test_word_helpers():
    text = "Ma astricht 1957"
    offsets = [(0, 2), (3, 6), (6, 11), (11, 12), (12, 13), (13, 14), (14, 15), (15, 16)]  # ' ' then digits
    assert [continues_word(text, offsets, i) for i in range(8)] == [False, False, True, False, True, True, True,
                                                                    True]
    info = torch.tensor([0.0, 1.0, 9.0, 0.0, 5.0, 1.0, 1.0, 8.0])
    assert keep_top_words(info, 2, text, offsets) == [1, 2]  # 'strict' (9) brings 'ast'
    assert keep_top_words(info, 3, text, offsets) == [0, 1, 2]  # '7' (5 tokens) and '1' (2) do not fit
    assert keep_top_words(info, 4, text, offsets) == [1, 2, 3, 4]  # '1' (5) brings its space token
    assert keep_top_words(info, 7, text, offsets) == [1, 2, 3, 4, 5, 6, 7]
    assert with_word_prefixes([7], text, offsets) == [3, 4, 5, 6, 7]


def test_threshold_mode(token_pruner, tiny_lm, passage):
    _, offsets, info = token_pruner.self_information(passage)
    tau = float(info.median())
    passing = [i for i in range(len(info)) if float(info[i]) >= tau]
    result = token_pruner.prune("", passage, Budget(threshold=tau))
    assert result.kept_tokens == len(with_word_prefixes(passing, passage, offsets)) >= len(passing)
    plain = TokenPruner(*tiny_lm, TokenPrunerConfig(word_prefix=False))
    assert plain.prune("", passage, Budget(threshold=tau)).kept_tokens == len(passing)
    assert plain.prune("", passage, Budget(threshold=1e9)).kept_tokens == 1


def test_sliding_windows_cover_every_token(tiny_lm, passage):
    model, tok = tiny_lm
    ids = tok(passage, add_special_tokens=False).input_ids
    full = token_logprobs(model, tok, ids, window=1024)
    windowed = token_logprobs(model, tok, ids, window=64, stride=16)
    assert not torch.isnan(windowed).any() and windowed.shape == full.shape
    assert torch.allclose(full[:63], windowed[:63], atol=1e-4)  # the first window (anchor + 63) matches
    pruner = TokenPruner(model, tok, TokenPrunerConfig(window=64, stride=16))
    assert pruner.prune("", passage, Budget(ratio=0.75)).kept_tokens == round(0.25 * len(ids))


def test_span_helpers():
    text = "Hello big world, again"
    offsets = [(0, 5), (6, 9), (10, 15), (15, 16), (17, 22)]
    spans = token_spans(text, offsets, [0, 2, 3])
    assert spans == [(0, 5), (9, 16)]
    assert join_pieces(text, spans) == "Hello world,"
    assert join_pieces("abcd", [(0, 1), (2, 3)]) == "a c"  # word characters never fuse
    assert keep_top(torch.tensor([1.0, 3.0, 3.0, 0.5]), 2) == [1, 2]


def test_config_validation(tiny_lm):
    with pytest.raises(ValueError, match="stride=8"):
        TokenPrunerConfig(window=8, stride=8)
    with pytest.raises(ValueError, match="tokenizer"):
        TokenPruner(tiny_lm[0], None)
