"""Deterministic, disjoint calibration and evaluation splits, and token windows.

Protocol: the corpus text is cut once at 90% of its characters (moved forward to the next paragraph
break); the first part is for calibration, the rest for evaluation, so the two never share text.
Calibration draws random windows (seeded) from the first part; evaluation takes consecutive,
non-overlapping windows from the start of the second part. Training (prunekit.train) reads the first
part only, cut again at 95%: training windows from its start, validation windows from its end.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

SPLIT_FRACTION = 0.9
VALIDATION_FRACTION = 0.05


def split_text(text: str, fraction: float = SPLIT_FRACTION) -> tuple[str, str]:
    """(calibration part, evaluation part), cut at a paragraph break near `fraction` of the text."""
    cut = int(len(text) * fraction)
    brk = text.find("\n\n", cut)
    cut = brk if brk != -1 else cut
    return text[:cut], text[cut:].lstrip()


def training_parts(text: str) -> tuple[str, str]:
    """(training text, validation text): the calibration part cut at 1 - VALIDATION_FRACTION; neither reaches
    into the evaluation part."""
    return split_text(split_text(text)[0], 1.0 - VALIDATION_FRACTION)


def token_ids(tokenizer: Any, text: str):
    """(n,) token ids of `text`, without special tokens."""
    return _token_ids(tokenizer, text)


def _token_ids(tokenizer: Any, text: str):
    import torch

    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def mixture_counts(samples: int, weights: list[float]) -> list[int]:
    """`samples` split over corpora in proportion to `weights` (largest remainder, ties to the first)."""
    total = float(sum(weights))
    exact = [samples * w / total for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: samples - sum(counts)]:
        counts[i] += 1
    return counts


def calibration_windows(tokenizer: Any, corpus: str | list[str], samples: int, seq_len: int, seed: int = 0,
                        weights: list[float] | None = None):
    """(samples, seq_len) token ids: random windows from the calibration part, fixed by `seed`. A list of
    corpora is a mixture: corpus i gives its share of `samples` by `weights` (default equal), drawn with seed
    + i, in list order; one corpus (or a list of one) draws exactly as before."""
    import torch

    if not isinstance(corpus, str):
        counts = mixture_counts(samples, list(weights) if weights is not None else [1.0] * len(corpus))
        parts = [calibration_windows(tokenizer, name, count, seq_len, seed + i)
                 for i, (name, count) in enumerate(zip(corpus, counts, strict=True)) if count]
        return torch.cat(parts)

    from .corpora import corpus_text

    ids = _token_ids(tokenizer, split_text(corpus_text(corpus))[0])
    if len(ids) <= seq_len:
        raise ConfigError(f"Corpus '{corpus}' has {len(ids)} calibration tokens, fewer than seq_len={seq_len}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - seq_len, (samples,), generator=generator)
    return torch.stack([ids[s : s + seq_len] for s in starts.tolist()])


def evaluation_windows(tokenizer: Any, corpus: str, windows: int, seq_len: int):
    """(windows, seq_len) token ids: consecutive non-overlapping windows from the evaluation part."""
    from .corpora import corpus_text

    ids = _token_ids(tokenizer, split_text(corpus_text(corpus))[1])
    available = len(ids) // seq_len
    if available < windows:
        raise ConfigError(
            f"Corpus '{corpus}' evaluation split has {len(ids)} tokens: {available} windows of {seq_len}, "
            f"fewer than the {windows} requested. Lower 'windows' or 'window'."
        )
    return ids[: windows * seq_len].view(windows, seq_len)
