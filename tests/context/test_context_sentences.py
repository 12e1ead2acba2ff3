"""Provence-style sentence pruner: ratio accuracy, adaptive threshold, spans, titles, reranking."""

from __future__ import annotations

import pytest
import torch

from prunekit.context import Budget, SentenceConfig, SentencePruner, split_sentences
from prunekit.context.base import TokenCounter
from prunekit.context.sentences import select_greedy, select_threshold


class KeywordScorer:
    """Deterministic scorer: fraction of query words present in the sentence."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def score(self, query, sentences):
        words = set(query.lower().strip("?").split())
        return torch.tensor([len(words & set(s.lower().strip(".").split())) / len(words) for s in sentences])


def reconstruct(original: str, result, separator: str = " ") -> str:
    return separator.join(original[s:e] for s, e in result.kept_spans)


@pytest.mark.parametrize("ratio", [0.9, 0.75, 0.6, 0.5, 0.25, 0.1])
def test_ratio_within_two_percent(sentence_pruner, passage, query, ratio):
    result = sentence_pruner.prune(query, passage, Budget(ratio=ratio))
    assert result.original_tokens > 200
    assert result.kept_tokens == sentence_pruner.counter(result.text)
    assert abs(result.removed_fraction - ratio) <= 0.02
    assert result.text == reconstruct(passage, result)


def test_token_budget_and_relevant_sentence_first(sentence_pruner, passage, query):
    result = sentence_pruner.prune(query, passage, Budget(tokens=40))
    assert 38 <= result.kept_tokens <= 40
    assert "Cattle ranching accounts for about 80 percent of cleared land." in result.text


def test_whole_sentences_only_without_partial(minilm, passage, query):
    pruner = SentencePruner(KeywordScorer(minilm[1]), config=SentenceConfig(allow_partial=False))
    units = split_sentences(passage)
    starts, ends = {s for s, _ in units}, {e for _, e in units}
    for ratio, keep in ((0.8, 0.2), (0.5, 0.5)):
        result = pruner.prune(query, passage, Budget(ratio=ratio))
        assert result.kept_tokens <= round(keep * result.original_tokens)
        assert all(s in starts and e in ends for s, e in result.kept_spans)  # whole sentences only


def test_threshold_is_adaptive_and_monotone(sentence_pruner, passage, query):
    kept = [sentence_pruner.prune(query, passage, Budget(threshold=t)).kept_tokens for t in (0.0, 0.2, 0.4, 0.6)]
    assert kept == sorted(kept, reverse=True) and kept[0] > kept[-1]
    strict = sentence_pruner.prune(query, passage, Budget(threshold=0.99))
    assert strict.kept_tokens > 0 and "Cattle ranching" in strict.text  # always at least the best one
    result = sentence_pruner.prune(query, passage, Budget(threshold=0.3))
    assert result.text == reconstruct(passage, result)


def test_keep_title(minilm, passage, query):
    scorer = KeywordScorer(minilm[1])
    plain = SentencePruner(scorer).prune(query, passage, Budget(threshold=0.5))
    titled = SentencePruner(scorer, config=SentenceConfig(keep_title=True)).prune(query, passage, Budget(threshold=0.5))
    assert not plain.text.startswith("The Amazon Rainforest")
    assert titled.text.startswith("The Amazon Rainforest")
    budgeted = SentencePruner(scorer, config=SentenceConfig(keep_title=True)).prune(query, passage, Budget(tokens=30))
    assert budgeted.text.startswith("The Amazon Rainforest") and budgeted.kept_tokens <= 30


def test_adjacent_sentences_keep_original_whitespace(minilm):
    text = "Alpha beta gamma.\nDelta epsilon zeta. Eta theta iota. Kappa lambda mu."
    pruner = SentencePruner(KeywordScorer(minilm[1]), config=SentenceConfig(separator=" | "))
    result = pruner.prune("alpha beta gamma delta epsilon zeta kappa", text, Budget(threshold=0.1))
    assert result.text == "Alpha beta gamma.\nDelta epsilon zeta. | Kappa lambda mu."
    assert result.kept_spans == [(0, 37), (54, 70)]
    assert result.text == reconstruct(text, result, " | ")


def test_custom_counter_is_used(minilm, passage, query):
    words = SentencePruner(KeywordScorer(minilm[1]), counter=lambda t: len(t.split()))
    result = words.prune(query, passage, Budget(ratio=0.7))
    assert result.original_tokens == len(passage.split())
    assert abs(result.kept_fraction - 0.3) <= 0.02


def test_passage_score_and_rerank(sentence_pruner, passage, other_passage, query):
    assert sentence_pruner.passage_score(query, passage) > sentence_pruner.passage_score(query, other_passage)
    assert sentence_pruner.rerank(query, [other_passage, passage]) == [1, 0]
    mean = SentencePruner(sentence_pruner.scorer, config=SentenceConfig(passage_reduce="mean", top_k=2))
    assert mean.passage_score(query, passage) <= sentence_pruner.passage_score(query, passage)


def test_scorer_without_tokenizer_needs_counter():
    class Bare:
        def score(self, query, sentences):
            return torch.zeros(len(sentences))

    with pytest.raises(ValueError, match="counter="):
        SentencePruner(Bare())
    with pytest.raises(ValueError, match="passage_reduce='median'.*max, mean"):
        SentenceConfig(passage_reduce="median")


def test_selection_helpers():
    assert select_threshold([0.1, 0.5, 0.3], 0.3) == [1, 2]
    assert select_threshold([0.1, 0.5, 0.3], 0.9) == [1]
    assert select_threshold([0.1, 0.5, 0.3], 0.9, forced=[0]) == [0]
    assert select_greedy([0.9, 0.8, 0.1], [10, 5, 3], capacity=9) == [1, 2]
    assert select_greedy([0.9, 0.8, 0.1], [10, 5, 3], capacity=9, forced=[2]) == [1, 2]


def test_counter_object(minilm):
    counter = TokenCounter(minilm[1])
    assert counter("one two three") == 3


def test_embed_keeps_input_order_across_length_sorted_batches(minilm, passage):
    from prunekit.context.encoder import embed

    model, tok = minilm
    texts = [passage[s:e] for s, e in split_sentences(passage)]
    single = torch.cat([embed(model, tok, [t]) for t in texts])
    assert torch.allclose(embed(model, tok, texts, batch_size=3), single, atol=1e-5)
    assert embed(model, tok, []).shape == (0, model.config.hidden_size)
