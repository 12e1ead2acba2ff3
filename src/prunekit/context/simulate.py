"""Simulated parallel reasoning traces for testing and benchmarking DeepPrune (Tu et al. 2025,
"DeepPrune: Parallel Scaling without Inter-trace Redundancy", arXiv 2510.08483) without an LLM.

:func:`simulate_traces` writes ``k`` traces: a share ``agree`` reaches the majority answer with
similar wording (one template, a few sentences reworded per trace), the rest reach the minority answer
with distinct wording (another template). Each trace states a tentative answer a third of the way in
and a ``\\boxed{..}`` final answer at the end. :func:`trace_generators` streams them in word chunks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

_MAJORITY = [
    "Let us set up the equation from the statement of the problem.",
    "We write the unknown quantity as x and collect the known terms.",
    "Moving every constant to the right hand side gives a simpler form.",
    "Dividing both sides by the common factor isolates the variable.",
    "We check the intermediate value by substituting it back.",
    "The substitution confirms that the left side equals the right side.",
    "Next we consider whether any other root could satisfy the constraint.",
    "The constraint rules out negative values, so one candidate remains.",
]
_MINORITY = [
    "Consider instead a geometric picture of the configuration described.",
    "Draw the triangle and label its sides by their lengths carefully.",
    "The angle bisector splits the opposite side in a fixed proportion.",
    "Applying the proportion yields a relation between two segments.",
    "A similarity argument then transfers this ratio to the small triangle.",
    "Area counting over the small triangles gives an independent check.",
    "Both routes agree, which makes the geometric reading convincing.",
    "Parity of the segment counts eliminates the remaining alternatives.",
]
_REWORD = ["Hmm, let me double check this step once more.", "Wait, maybe I should reconsider that.",
           "Okay, that seems fine so far.", "Let me be careful with the arithmetic here."]


@dataclass(frozen=True)
class SimulatedTrace:
    text: str
    answer: str
    group: str  # "majority" or "minority"


def _write(rng: random.Random, template: Sequence[str], answer: str, steps: int, reword: float) -> str:
    sentences = []
    for step in range(steps):
        base = template[step % len(template)]
        sentences.append(rng.choice(_REWORD) if rng.random() < reword else base)
        if step == steps // 3:
            sentences.append(f"So far the answer is {answer}.")
    sentences.append(f"Therefore the final answer is \\boxed{{{answer}}}.")
    return " ".join(sentences) + " "


def simulate_traces(k: int = 16, agree: float = 0.8, steps: int = 40, seed: int = 0,
                    answers: tuple[str, str] = ("42", "17"), reword: float = 0.1) -> list[SimulatedTrace]:
    """``round(agree * k)`` majority traces then the minority ones, shuffled with ``seed``."""
    rng = random.Random(seed)
    n_major = round(agree * k)
    traces = [SimulatedTrace(_write(rng, _MAJORITY, answers[0], steps, reword), answers[0], "majority")
              for _ in range(n_major)]
    traces += [SimulatedTrace(_write(rng, _MINORITY, answers[1], steps, reword), answers[1], "minority")
               for _ in range(k - n_major)]
    rng.shuffle(traces)
    return traces


def _chunks(text: str, words_per_chunk: int) -> Iterator[str]:
    words = text.split(" ")
    for i in range(0, len(words), words_per_chunk):
        yield " ".join(words[i : i + words_per_chunk]) + " "


def trace_generators(traces: Sequence[SimulatedTrace], words_per_chunk: int = 8) -> list[Iterator[str]]:
    """One generator of ``words_per_chunk``-word chunks per trace."""
    return [_chunks(t.text.strip(), words_per_chunk) for t in traces]
