"""Trainable per-token keep head for Provence-style pruning (Chirkova et al. 2025, "Provence:
efficient and robust context pruning for retrieval-augmented generation", arXiv 2501.16214).

Provence encodes ``[CLS] query [SEP] passage`` with a cross-encoder and predicts, per passage token,
whether it belongs to a sentence worth keeping. Here the encoder is the packaged all-MiniLM-L6-v2,
kept frozen; only :class:`KeepHead` (one linear layer on the token states) is trained with BCE, the
label of a token being 1 when its sentence contains the answer string. A sentence's score is the mean
keep probability of its tokens (``reduce="mean"``), or the fraction of its tokens above
``token_threshold`` (``reduce="vote"``, Provence's sentence rounding). Long passages are split into
blocks of whole sentences that share the query, as Provence does for inputs over 512 tokens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from prunekit.errors import ConfigError

from .base import atomic_write_bytes
from .encoder import load_minilm
from .units import split_sentences


class KeepHead(nn.Module):
    """Linear layer: token state [.., H] -> keep logit [..]."""

    def __init__(self, hidden_size: int = 384):
        super().__init__()
        self.hidden_size = hidden_size
        self.proj = nn.Linear(hidden_size, 1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.proj(states).squeeze(-1)

    def save(self, path: str | os.PathLike) -> None:
        """Write the head as safetensors, atomically (temporary file, then rename)."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {"format": "prunekit.keephead", "config": json.dumps({"hidden_size": self.hidden_size})}
        atomic_write_bytes(path, st_save(tensors, metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeepHead:
        """Read a head written by :meth:`save`."""
        with open(path, "rb") as handle:
            data = handle.read()
        tensors = st_load(data)
        if set(tensors) != {"proj.weight", "proj.bias"}:
            raise ConfigError(f"{path} is not a KeepHead file; found tensors {sorted(tensors)}.")
        head = cls(int(tensors["proj.weight"].shape[1]))
        head.load_state_dict(tensors)
        return head.eval()


def _join(sentences: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join sentences with spaces; return the passage and each sentence's character span."""
    spans, pos = [], 0
    for s in sentences:
        spans.append((pos, pos + len(s)))
        pos += len(s) + 1
    return " ".join(sentences), spans


@torch.no_grad()
def encode_pair(encoder: Any, tokenizer: Any, query: str, sentences: Sequence[str],
                max_length: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states [T, H] of ``[CLS] query [SEP] passage [SEP]`` and, per token, its sentence index
    (-1 for query and special tokens)."""
    passage, spans = _join(sentences)
    enc = tokenizer(query, passage, truncation="only_second", max_length=max_length,
                    return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    seq_ids = enc.sequence_ids(0)
    device = next(encoder.parameters()).device
    states = encoder(**enc.to(device)).last_hidden_state[0].float().cpu()
    owner = torch.full((len(offsets),), -1, dtype=torch.long)
    for t, ((start, _end), seq) in enumerate(zip(offsets, seq_ids, strict=True)):
        if seq == 1:
            owner[t] = next((j for j, (a, b) in enumerate(spans) if a <= start < b), -1)
    return states, owner


def _blocks(tokenizer: Any, query: str, sentences: Sequence[str], max_length: int) -> list[list[int]]:
    """Group sentence indices into blocks whose pair encoding fits ``max_length``."""
    room = max_length - len(tokenizer(query, add_special_tokens=False).input_ids) - 3
    blocks: list[list[int]] = [[]]
    used = 0
    for i, s in enumerate(sentences):
        cost = len(tokenizer(s, add_special_tokens=False).input_ids) + 1
        if blocks[-1] and used + cost > room:
            blocks.append([])
            used = 0
        blocks[-1].append(i)
        used += cost
    return blocks


@dataclass
class KeepHeadScorer:
    """SentenceScorer from a :class:`KeepHead` on the (frozen) MiniLM token states."""

    head: KeepHead
    encoder: Any = None
    tokenizer: Any = None
    max_length: int = 512
    reduce: Literal["mean", "vote"] = "mean"
    token_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.reduce not in ("mean", "vote"):
            raise ConfigError(f"reduce='{self.reduce}' is invalid; valid choices: mean, vote.")
        if self.encoder is None or self.tokenizer is None:
            self.encoder, self.tokenizer = load_minilm()

    @torch.no_grad()
    def token_probs(self, query: str, sentences: Sequence[str]) -> list[torch.Tensor]:
        """Keep probabilities of each sentence's tokens."""
        per_sentence: list[list[torch.Tensor]] = [[] for _ in sentences]
        for block in _blocks(self.tokenizer, query, sentences, self.max_length):
            states, owner = encode_pair(self.encoder, self.tokenizer, query, [sentences[i] for i in block],
                                        self.max_length)
            probs = torch.sigmoid(self.head(states))
            for local, i in enumerate(block):
                per_sentence[i].append(probs[owner == local])
        return [torch.cat(p) if p else torch.zeros(0) for p in per_sentence]

    def score(self, query: str, sentences: Sequence[str]) -> torch.Tensor:
        out = []
        for probs in self.token_probs(query, sentences):
            if probs.numel() == 0:
                out.append(0.0)
            elif self.reduce == "mean":
                out.append(float(probs.mean()))
            else:
                out.append(float((probs >= self.token_threshold).float().mean()))
        return torch.tensor(out)


def _check_triples(triples: Sequence[tuple[str, str, str]]) -> None:
    if not triples:
        raise ConfigError("train_keep_head needs at least one (question, paragraph, answer) triple.")
    for i, item in enumerate(triples):
        if not (isinstance(item, tuple | list) and len(item) == 3 and all(isinstance(x, str) and x.strip()
                                                                           for x in item)):
            raise ConfigError(f"triple {i} is {item!r}; valid: (question, paragraph, answer) non-empty strs.")


def answer_labels(sentences: Sequence[str], answer: str) -> list[int]:
    """1 for each sentence containing ``answer`` (case-insensitive), else 0."""
    needle = answer.lower().strip()
    return [int(needle in s.lower()) for s in sentences]


def train_keep_head(triples: Sequence[tuple[str, str, str]], epochs: int = 20, lr: float = 1e-2, *,
                    encoder: Any = None, tokenizer: Any = None, max_length: int = 256, batch_size: int = 256,
                    seed: int = 0) -> KeepHead:
    """Train a :class:`KeepHead` on (question, paragraph, answer) triples; the encoder stays frozen.

    Token states are computed once; the head is fitted with Adam and class-balanced BCE.
    """
    _check_triples(triples)
    if epochs < 1 or lr <= 0:
        raise ConfigError(f"epochs={epochs}, lr={lr} are invalid; valid: epochs >= 1 and lr > 0.")
    if encoder is None or tokenizer is None:
        encoder, tokenizer = load_minilm()
    feats, labels = [], []
    for question, paragraph, answer in triples:
        sentences = [paragraph[s:e] for s, e in split_sentences(paragraph)]
        sent_labels = answer_labels(sentences, answer)
        if not any(sent_labels):
            continue
        states, owner = encode_pair(encoder, tokenizer, question, sentences, max_length)
        mask = owner >= 0
        feats.append(states[mask])
        labels.append(torch.tensor(sent_labels, dtype=torch.float)[owner[mask]])
    if not feats:
        raise ConfigError("no triple has its answer inside the paragraph; nothing to train on.")
    x, y = torch.cat(feats), torch.cat(labels)
    generator = torch.Generator().manual_seed(seed)
    head = KeepHead(x.shape[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head.proj.reset_parameters()
    pos = float(y.sum())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(y) - pos) / max(pos, 1.0)))
    optim = torch.optim.Adam(head.parameters(), lr=lr)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            optim.zero_grad()
            loss_fn(head(x[idx]), y[idx]).backward()
            optim.step()
    return head.eval()
