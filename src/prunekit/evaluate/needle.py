"""Needle-in-a-haystack (passkey) retrieval: hide one fact in long filler text and ask for it at the end.

The task follows the passkey retrieval test of Mohtashami & Jaggi 2023, "Landmark Attention: Random-Access Infinite
Context Length for Transformers" (arXiv 2305.16300) and the single-needle task of RULER (Hsieh et al. 2024,
"RULER: What's the Real Context Size of Your Long-Context Language Models?", arXiv 2404.06654): a sentence
"The secret code of <name> is <5-digit number>." is inserted into natural filler (the evaluation part of a
bundled corpus, `wiki` by default) at a chosen depth, and the question "What is the secret code of <name>?"
closes the prompt. The model answers greedily with at most `max_new_tokens` (8) new tokens; a sample is correct when
the first number in the answer equals the hidden one exactly.

Construction is done on token ids, so a prompt has exactly `length` tokens (template, instruction, filler,
needle, question and the answer prefix all included). `depth` is the fraction of the filler tokens that precede
the needle; the insertion point is moved to the nearest sentence end within `snap` tokens so the needle stays a
sentence of its own. Everything random (filler offset, name, number) is drawn from `random.Random` seeded by
(seed, length, depth, sample index), so samples are identical across runs and do not depend on which other
cells are requested.

Prompt formats (`template`): "chat" wraps the instruction in the tokenizer's chat template and starts the
assistant turn with the answer prefix "The secret code of <name> is" (the default: it scored best for
SmolLM2-135M-Instruct, see bench/runtime/needle.py); "chat_plain" uses the template without the answer prefix;
"plain" is raw text ending in "Answer: The secret code of <name> is".
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import ConfigError

Template = Literal["chat", "chat_plain", "plain"]
TEMPLATES = get_args(Template)
NAMES = (
    "Alice", "Bruno", "Chen", "Dalia", "Emeka", "Freya", "Gustav", "Hana", "Ivan", "Jamal", "Keiko", "Lars",
    "Maya", "Nikos", "Olga", "Pedro", "Quinn", "Rosa", "Samir", "Tala", "Umar", "Vera", "Wei", "Ximena",
    "Yusuf", "Zoe", "Anton", "Bianca", "Carlos", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ingrid", "Jonas",
)
INSTRUCTION = ("Below is a long text. Somewhere in it, a secret code is hidden. Find it and remember it: you will be "
               "asked for it after the text.\n\n")
NEEDLE = " The secret code of {name} is {code}. "
QUESTION = "\n\nWhat is the secret code of {name}? Answer with the 5-digit number only."
ANSWER_PREFIX = "The secret code of {name} is"
_MARK = "\u2063NEEDLE-CONTENT\u2063"


@dataclass(frozen=True)
class NeedleSample:
    """One prompt: token ids, the hidden number, and where the needle and the filler lie in `input_ids`."""

    input_ids: tuple[int, ...]
    answer: str
    name: str
    length: int  # requested length in tokens (== len(input_ids))
    depth: float  # requested depth: fraction of filler tokens before the needle
    needle_start: int  # index in input_ids of the needle's first token
    needle_end: int  # exclusive
    context_start: int  # first filler token
    context_end: int  # exclusive; the filler (both parts) plus the needle lie in [context_start, context_end)

    @property
    def actual_depth(self) -> float:
        """Fraction of the filler tokens that precede the needle."""
        filler = self.context_end - self.context_start - (self.needle_end - self.needle_start)
        return (self.needle_start - self.context_start) / max(filler, 1)


@dataclass
class NeedleConfig:
    """Options of the needle task (`prunekit eval --task needle`)."""

    lengths: list[int] = field(default_factory=lambda: [1024])
    depths: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    samples: int = 4  # per (length, depth) cell
    seed: int = 0
    corpus: str = "wiki"
    template: Template = "chat"
    max_new_tokens: int = 8

    def __post_init__(self) -> None:
        if not self.lengths or any(not isinstance(n, int) or n < 64 for n in self.lengths):
            raise ConfigError(f"needle lengths must be integers >= 64 tokens, got {self.lengths!r}")
        if not self.depths or any(not 0.0 <= float(d) <= 1.0 for d in self.depths):
            raise ConfigError(f"needle depths must be fractions in [0, 1], got {self.depths!r}")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ConfigError(f"needle samples must be a positive integer, got {self.samples!r}")
        if self.template not in TEMPLATES:
            raise ConfigError(f"needle template must be one of {', '.join(TEMPLATES)}, got {self.template!r}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _template_parts(tokenizer: Any, template: str) -> tuple[str, str]:
    """(text before the user content, text after it up to the assistant's first token)."""
    if template == "plain" or getattr(tokenizer, "chat_template", None) is None:
        return "", ""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": _MARK}], tokenize=False,
                                             add_generation_prompt=True)
    head, _, tail = rendered.partition(_MARK)
    return head, tail


class _Filler:
    """Token ids of a corpus' evaluation part, with a flag for tokens that end a sentence."""

    def __init__(self, tokenizer: Any, text: str):
        self.ids = _encode(tokenizer, text)
        pieces: dict[int, str] = {}
        for token in set(self.ids):
            pieces[token] = tokenizer.decode([token])
        self.sentence_end = [pieces[t].rstrip().endswith((".", "!", "?")) for t in self.ids]

    def snap(self, start: int, offset: int, limit: int, snap: int) -> int:
        """The insertion offset in [0, limit] nearest `offset` that follows a sentence end (within `snap`)."""
        for distance in range(snap + 1):
            for candidate in (offset - distance, offset + distance):
                if 0 < candidate <= limit and self.sentence_end[start + candidate - 1]:
                    return candidate
        return offset


_FILLERS: dict[tuple[int, str], _Filler] = {}


def _filler(tokenizer: Any, corpus: str) -> _Filler:
    key = (id(tokenizer), corpus)
    if key not in _FILLERS:
        from ..data import corpus_text, split_text

        _FILLERS[key] = _Filler(tokenizer, split_text(corpus_text(corpus))[1])
    return _FILLERS[key]


def make_sample(tokenizer: Any, length: int, depth: float, *, rng: random.Random, filler: _Filler,
                template: str = "chat", snap: int = 24) -> NeedleSample:
    """One needle prompt of exactly `length` tokens with the needle at `depth` of the filler."""
    if template not in TEMPLATES:
        raise ConfigError(f"template must be one of {', '.join(TEMPLATES)}, got {template!r}")
    name = rng.choice(NAMES)
    code = str(rng.randint(10000, 99999))
    head_text, tail_text = _template_parts(tokenizer, template)
    question = QUESTION.format(name=name)
    if template == "plain":
        tail_text = question + "\nAnswer: " + ANSWER_PREFIX.format(name=name)
    elif template == "chat":
        tail_text = question + tail_text + ANSWER_PREFIX.format(name=name)
    else:
        tail_text = question + tail_text
    head = _encode(tokenizer, head_text + INSTRUCTION)
    needle = _encode(tokenizer, NEEDLE.format(name=name, code=code))
    tail = _encode(tokenizer, tail_text)
    count = length - len(head) - len(needle) - len(tail)
    if count < 1:
        raise ConfigError(f"needle length {length} is too short for the prompt's fixed {length - count} tokens")
    if count > len(filler.ids):
        raise ConfigError(f"needle length {length} needs {count} filler tokens; the corpus has {len(filler.ids)}")
    start = rng.randrange(0, len(filler.ids) - count + 1)
    for step in range(min(256, len(filler.ids) - count - start) + 1):  # begin at a sentence start when one is near
        if start + step == 0 or filler.sentence_end[start + step - 1]:
            start += step
            break
    chunk = filler.ids[start:start + count]
    cut = filler.snap(start, round(depth * count), count, snap)
    ids = head + chunk[:cut] + needle + chunk[cut:] + tail
    needle_start = len(head) + cut
    return NeedleSample(tuple(ids), code, name, length, float(depth), needle_start, needle_start + len(needle),
                        len(head), len(head) + count + len(needle))


def needle_samples(tokenizer: Any, lengths: Iterable[int], depths: Sequence[float], samples: int, *, seed: int = 0,
                   corpus: str = "wiki", template: str = "chat", filler_text: str | None = None
                   ) -> list[NeedleSample]:
    """`samples` prompts per (length, depth), deterministic in `seed`; filler from `corpus` (evaluation part) or
    from `filler_text` when given."""
    filler = _Filler(tokenizer, filler_text) if filler_text is not None else _filler(tokenizer, corpus)
    out = []
    for length in lengths:
        for depth in depths:
            for s_index in range(samples):
                rng = random.Random(f"{seed}-{int(length)}-{float(depth)!r}-{s_index}")
                out.append(make_sample(tokenizer, int(length), float(depth), rng=rng, filler=filler,
                                       template=template))
    return out


def extract_number(text: str) -> str | None:
    """The first run of digits in `text` (digits split by spaces are joined: '1 2 3' -> '123')."""
    match = re.search(r"\d(?:[\d ]*\d)?", text)
    return None if match is None else match.group(0).replace(" ", "")


def is_correct(output: str, answer: str) -> bool:
    return extract_number(output) == answer


def greedy_generate(model: Any, input_ids: Sequence[int], max_new_tokens: int = 8, eos_token_id: Any = None
                    ) -> list[int]:
    """Greedy `model.generate` on one prompt; returns the new token ids."""
    import torch

    ids = torch.tensor([list(input_ids)], dtype=torch.long, device=next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=eos_token_id, pad_token_id=eos_token_id or 0,
                             temperature=None, top_p=None, top_k=None)
    return out[0, ids.shape[1]:].tolist()


@dataclass
class NeedleResult:
    """Per-sample correctness and outputs, with accuracy by length and depth."""

    samples: list[NeedleSample]
    outputs: list[str]
    correct: list[bool]

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / max(len(self.correct), 1)

    def by(self, key: Callable[[NeedleSample], Any]) -> dict[Any, float]:
        groups: dict[Any, list[bool]] = {}
        for sample, ok in zip(self.samples, self.correct, strict=True):
            groups.setdefault(key(sample), []).append(ok)
        return {k: sum(v) / len(v) for k, v in sorted(groups.items())}

    def by_length(self) -> dict[int, float]:
        return self.by(lambda s: s.length)

    def by_depth(self) -> dict[float, float]:
        return self.by(lambda s: s.depth)


def evaluate_needle(model: Any, tokenizer: Any, samples: Sequence[NeedleSample], *, press: Any = None,
                    max_new_tokens: int = 8, generate: Callable[..., list[int]] | None = None) -> NeedleResult:
    """Greedy answers for every sample (inside `with press(model)` when a press is given), scored by exact match
    of the first number in the answer."""
    generate = generate or greedy_generate
    eos = getattr(tokenizer, "eos_token_id", None)
    outputs, correct = [], []
    for sample in samples:
        with press(model) if press is not None else nullcontext():
            new = generate(model, sample.input_ids, max_new_tokens, eos)
        text = tokenizer.decode(new, skip_special_tokens=True)
        outputs.append(text)
        correct.append(is_correct(text, sample.answer))
    return NeedleResult(list(samples), outputs, correct)


def needle_task(loaded: Any, config: Any, *, press: Any = None, **_: Any) -> dict[str, float]:
    """Evaluation task: {"needle_accuracy", "needle_accuracy@<length>", "needle_samples"} for `config.needle`
    (a NeedleConfig; defaults when absent)."""
    options = getattr(config, "needle", None) or NeedleConfig()
    samples = needle_samples(loaded.tokenizer, options.lengths, options.depths, options.samples, seed=options.seed,
                             corpus=options.corpus, template=options.template)
    result = evaluate_needle(loaded.model, loaded.tokenizer, samples, press=press,
                             max_new_tokens=options.max_new_tokens)
    metrics = {"needle_accuracy": result.accuracy, "needle_samples": float(len(samples))}
    metrics.update({f"needle_accuracy@{n}": acc for n, acc in result.by_length().items()})
    return metrics
