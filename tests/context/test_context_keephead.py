"""Provence keep head: training on synthetic QA lifts held-out sentence selection; save / load."""

from __future__ import annotations

import os
import random

import pytest
import torch

from prunekit.context import Budget, KeepHead, KeepHeadScorer, SentencePruner, split_sentences, train_keep_head
from prunekit.context.keephead import answer_labels

TOWNS = ["Arvel", "Bostra", "Calden", "Dunmore", "Elvar", "Fenwick", "Garrow", "Hollin", "Istra", "Jorvik",
         "Kessel", "Lorne", "Marrow", "Norwick", "Orlan", "Pellam", "Quarry", "Rusk", "Selby", "Tarn",
         "Ulric", "Varden", "Wexley", "Yarrow", "Zennor", "Ashby", "Brill", "Corwen", "Delph", "Esker"]
PEOPLE = ["Anna Lowe", "Ben Carter", "Clara Moss", "David Hale", "Eva Stone", "Frank Reed", "Grace Hill",
          "Henry Wood", "Iris Vale", "Jack Frost", "Kara Bell", "Liam Ford", "Maya Price", "Noah Grant"]
COLORS = ["green", "blue", "red", "yellow", "purple", "orange", "white", "black"]
# (question, fact sentence, answer slot)
TEMPLATES = [
    ("What is the capital of {a}?", "The capital of {a} is {b}.", "b"),
    ("How many people live in {a}?", "About {n} thousand people live in {a}.", "n"),
    ("Who founded the company {a}?", "The company {a} was founded by {p}.", "p"),
    ("What color is the flag of {a}?", "The flag of {a} is mostly {c}.", "c"),
    ("Which river flows through {a}?", "The river {b} flows through the town of {a}.", "b"),
    ("When was the bridge in {a} built?", "The bridge in {a} was built in {y}.", "y"),
]


def make_triple(rng: random.Random, towns: list[str]) -> tuple[tuple[str, str, str], str]:
    """((question, paragraph, answer), answer sentence); names are unique inside a paragraph."""
    picks = rng.sample(range(len(TEMPLATES)), 5)
    names = iter(rng.sample(towns, 10))
    sentences, triple = [], None
    for k, t in enumerate(picks):
        question, fact, slot = TEMPLATES[t]
        values = {"a": next(names), "b": next(names), "n": str(rng.randint(10, 99)), "p": rng.choice(PEOPLE),
                  "c": rng.choice(COLORS), "y": str(rng.randint(1700, 1999))}
        sentence = fact.format(**values)
        sentences.append(sentence)
        if k == 0:
            triple = (question.format(**values), values[slot], sentence)
    rng.shuffle(sentences)
    question, answer, sentence = triple
    return (question, " ".join(sentences), answer), sentence


def selection_accuracy(scorer, data) -> float:
    hits = 0
    for (question, paragraph, _), answer_sentence in data:
        sentences = [paragraph[s:e] for s, e in split_sentences(paragraph)]
        hits += sentences[int(scorer.score(question, sentences).argmax())] == answer_sentence
    return hits / len(data)


@pytest.fixture(scope="module")
def data():
    rng = random.Random(0)
    train = [make_triple(rng, TOWNS[:18]) for _ in range(40)]
    held_out = [make_triple(rng, TOWNS[18:]) for _ in range(30)]  # unseen names
    return train, held_out


@pytest.fixture(scope="module")
def trained(minilm, data):
    train, _ = data
    return train_keep_head([t for t, _ in train], epochs=20, lr=1e-2, encoder=minilm[0], tokenizer=minilm[1])


def test_training_beats_untrained_head(minilm, data, trained):
    _, held_out = data
    torch.manual_seed(0)
    untrained = selection_accuracy(KeepHeadScorer(KeepHead(), *minilm), held_out)
    learned = selection_accuracy(KeepHeadScorer(trained, *minilm), held_out)
    assert learned >= 0.8 and learned > untrained + 0.3


def test_keep_head_drives_the_pruner(minilm, data, trained):
    (question, paragraph, answer), sentence = data[1][0]
    pruner = SentencePruner(KeepHeadScorer(trained, *minilm))
    result = pruner.prune(question, paragraph, Budget(threshold=0.5))
    assert sentence in result.text and result.kept_fraction < 0.6
    vote = SentencePruner(KeepHeadScorer(trained, *minilm, reduce="vote", token_threshold=0.1))
    assert sentence in vote.prune(question, paragraph, Budget(threshold=0.5)).text


def test_long_passages_are_split_into_blocks(minilm, trained):
    sentences = [f"Filler sentence number {i} talks about nothing in particular at all." for i in range(40)]
    scorer = KeepHeadScorer(trained, *minilm, max_length=64)
    scores = scorer.score("What is the capital of Arvel?", sentences)
    assert scores.shape == (40,) and bool((scores > 0).all())


def test_save_load_roundtrip_is_atomic(tmp_path, trained):
    path = tmp_path / "heads" / "keep.safetensors"
    trained.save(path)
    trained.save(path)  # overwrite in place
    assert sorted(os.listdir(path.parent)) == ["keep.safetensors"]  # no temporary files left
    loaded = KeepHead.load(path)
    states = torch.randn(3, 5, 384)
    assert torch.allclose(loaded(states), trained(states))
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file
    save_file({"weight": torch.zeros(2)}, str(bad))
    with pytest.raises(ValueError, match="not a KeepHead file"):
        KeepHead.load(bad)


def test_bad_training_input(minilm):
    with pytest.raises(ValueError, match="at least one"):
        train_keep_head([], encoder=minilm[0], tokenizer=minilm[1])
    with pytest.raises(ValueError, match="triple 0"):
        train_keep_head([("q", "", "a")], encoder=minilm[0], tokenizer=minilm[1])
    with pytest.raises(ValueError, match="answer inside"):
        train_keep_head([("Who?", "Nobody came.", "Bob")], encoder=minilm[0], tokenizer=minilm[1])
    assert answer_labels(["Bob came.", "Alice left."], "bob") == [1, 0]
