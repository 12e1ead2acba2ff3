"""Needle (passkey) generator: exact length, needle at the requested depth, determinism, scoring."""

from __future__ import annotations

import re

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.evaluate.needle import (
    NeedleConfig,
    NeedleSample,
    evaluate_needle,
    extract_number,
    is_correct,
    needle_samples,
)

FILLER = " ".join(f"Sentence number {i} talks about topic {i % 7} at some length, with several plain words."
                  for i in range(3000))


class WordTokenizer:
    """Words, single digits and punctuation as tokens (a stand-in with the tokenizer calls the generator uses)."""

    chat_template = None
    eos_token_id = None

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.pieces: list[str] = []

    def __call__(self, text: str, add_special_tokens: bool = False, **_):
        ids = []
        for piece in re.findall(r"\s*[^\s\d.!?,]+|\s*\d|\s*[.!?,]|\s+", text):
            if piece not in self.vocab:
                self.vocab[piece] = len(self.pieces)
                self.pieces.append(piece)
            ids.append(self.vocab[piece])
        return {"input_ids": ids}

    def decode(self, ids, skip_special_tokens: bool = False):
        return "".join(self.pieces[i] for i in ids)


@pytest.fixture(scope="module")
def tok():
    return WordTokenizer()


def make(tok, lengths=(256, 1000), depths=(0.0, 0.25, 0.5, 0.9, 1.0), per=3, seed=0, template="plain"):
    return needle_samples(tok, list(lengths), list(depths), per, seed=seed, template=template, filler_text=FILLER)


def needle_text(tok, sample: NeedleSample) -> str:
    return tok.decode(list(sample.input_ids[sample.needle_start:sample.needle_end]))


def test_length_is_exact_and_needle_sits_at_depth(tok):
    samples = make(tok)
    assert len(samples) == 2 * 5 * 3
    for s in samples:
        assert len(s.input_ids) == s.length
        text = needle_text(tok, s)
        assert text.strip() == f"The secret code of {s.name} is {s.answer}."
        filler = s.context_end - s.context_start - (s.needle_end - s.needle_start)
        assert abs(s.actual_depth - s.depth) <= 24 / filler + 1e-9  # snapped to a sentence end within 24 tokens
        before = tok.decode(list(s.input_ids[:s.needle_start]))
        assert s.depth == 0.0 or before.rstrip().endswith(".")  # the needle starts a sentence
        prompt = tok.decode(list(s.input_ids))
        assert prompt.count(s.answer) == 1 and prompt.endswith(f"The secret code of {s.name} is")
        assert f"What is the secret code of {s.name}?" in prompt


def test_retokenized_text_within_one_percent(tok):
    for s in make(tok, lengths=(512, 2048), per=1):
        assert abs(len(tok(tok.decode(list(s.input_ids)))["input_ids"]) - s.length) <= 0.01 * s.length


def test_deterministic_and_seed_dependent(tok):
    a, b = make(tok, per=2, seed=3), make(tok, per=2, seed=3)
    assert a == b
    c = make(tok, per=2, seed=4)
    assert [s.answer for s in a] != [s.answer for s in c]
    # a cell does not depend on which other cells were requested
    only = needle_samples(tok, [1000], [0.5], 2, seed=3, template="plain", filler_text=FILLER)
    assert only == [s for s in a if s.length == 1000 and s.depth == 0.5]


def test_too_short_and_bad_options(tok):
    with pytest.raises(ConfigError, match="too short"):
        needle_samples(tok, [20], [0.5], 1, filler_text=FILLER)
    with pytest.raises(ConfigError, match="template"):
        needle_samples(tok, [256], [0.5], 1, template="nope", filler_text=FILLER)
    with pytest.raises(ConfigError, match="depths"):
        NeedleConfig(depths=[1.5])


def test_scoring():
    assert extract_number(" 12345.\n") == "12345" and extract_number(" 1 2 3 4 5") == "12345"
    assert is_correct(" 48213. It is", "48213")
    assert not is_correct(" 4821", "48213") and not is_correct(" none", "48213")
    assert not is_correct(" 482130", "48213")


class Oracle(torch.nn.Module):
    """Generates the hidden number read from its own prompt (checks the evaluation loop, not a model)."""

    def __init__(self, tok, answers):
        super().__init__()
        self.tok, self.answers = tok, answers
        self.w = torch.nn.Parameter(torch.zeros(1))

    def generate(self, ids, **kwargs):
        answer = next(a for a in self.answers if a in self.tok.decode(ids[0].tolist()))
        new = torch.tensor([self.tok(" " + answer + ".")["input_ids"]])
        return torch.cat([ids, new[:, :kwargs["max_new_tokens"]]], dim=1)


def test_evaluate_with_oracle_and_press(tok):
    samples = make(tok, lengths=(256,), per=2)
    entered = []

    def press(model):
        from contextlib import contextmanager

        @contextmanager
        def ctx():
            entered.append(1)
            yield

        return ctx()

    result = evaluate_needle(Oracle(tok, [s.answer for s in samples]), tok, samples, press=press)
    assert result.accuracy == 1.0 and len(entered) == len(samples)
    assert set(result.by_depth()) == {0.0, 0.25, 0.5, 0.9, 1.0}
    short = evaluate_needle(Oracle(tok, [s.answer for s in samples]), tok, samples, max_new_tokens=3)
    assert short.accuracy == 0.0  # " 1 2" has too few digits


def test_real_tokenizer_chat_template():
    transformers = pytest.importorskip("transformers")
    try:
        from prunekit.models.load import _bundled_folder

        folder, _ = _bundled_folder("smollm2-135m")
        real = transformers.AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # the bundled model is optional
        pytest.skip(f"SmolLM2 tokenizer unavailable: {exc}")
    samples = needle_samples(real, [512, 2048], [0.1, 0.5, 0.9], 1, seed=0, template="chat", filler_text=FILLER)
    for s in samples:
        assert len(s.input_ids) == s.length
        text = real.decode(list(s.input_ids))
        assert abs(len(real(text, add_special_tokens=False)["input_ids"]) - s.length) <= 0.01 * s.length
        assert text.startswith("<|im_start|>system") and text.endswith(f"assistant\nThe secret code of {s.name} is")
        assert real.decode(list(s.input_ids[s.needle_start:s.needle_end])).strip().endswith(f"is {s.answer}.")
