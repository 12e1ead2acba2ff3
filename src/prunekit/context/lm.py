"""Causal-LM scoring helpers for the LM-based context pruners: per-token log-probabilities with sliding
windows (Li et al. 2023, "Compressing Context to Enhance Inference Efficiency of Large Language
Models" / Selective Context) and conditional query perplexity (the approximate mutual information of
Shi et al. 2025, "LongCodeZip: Compress Long Context for Code Language Models").

Works with any transformers causal LM and its tokenizer; text is encoded without special tokens and
an *anchor* token (BOS, else CLS, else EOS) is prepended so that the first real token has a context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, verbose=False).input_ids) if text else []


def anchor_id(tokenizer: Any) -> int | None:
    """The token put before a text so its first token can be scored (BOS, CLS or EOS)."""
    for name in ("bos_token_id", "cls_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return None


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _pad_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


@torch.no_grad()
def _logits(model: Any, ids: torch.Tensor, mask: torch.Tensor, keep: int = 0) -> torch.Tensor:
    """Logits of the last ``keep`` positions (all when 0); positions follow the attention mask."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                              "use_cache": False}
    try:
        out = model(**kwargs, logits_to_keep=keep)
    except TypeError:  # models without logits_to_keep
        out = model(**kwargs)
    logits = out.logits
    return logits[:, -keep:] if keep else logits


@torch.no_grad()
def token_logprobs(model: Any, tokenizer: Any, ids: Sequence[int], window: int = 512,
                   stride: int | None = None, batch_size: int = 4) -> torch.Tensor:
    """``log p(ids[i] | ids[:i])`` for every token, each scored with at least ``window - stride``
    tokens of context (sliding windows). The first token is scored after the anchor; NaN if none."""
    n = len(ids)
    out = torch.full((n,), float("nan"))
    if n == 0:
        return out
    anchor = anchor_id(tokenizer)
    window = max(2, window)
    stride = max(1, min(stride or window // 2, window - 1))
    full = ([anchor] if anchor is not None else []) + list(ids)
    shift = 1 if anchor is not None else 0  # full[j + shift] == ids[j]
    jobs = []  # (context start in full, first scored index in full, end in full)
    first = 1
    while first < len(full):
        end = min(len(full), first + stride) if first > 1 else min(len(full), window)
        jobs.append((max(0, end - window), first, end))
        first = end
    device = _device(model)
    for b in range(0, len(jobs), batch_size):
        batch = jobs[b : b + batch_size]
        width = max(end - start for start, _, end in batch)
        ids_t = torch.full((len(batch), width), _pad_id(tokenizer), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (start, _, end) in enumerate(batch):
            ids_t[r, : end - start] = torch.tensor(full[start:end])
            mask[r, : end - start] = 1
        logp = _logits(model, ids_t.to(device), mask.to(device)).float().log_softmax(-1).cpu()
        for r, (start, first_scored, end) in enumerate(batch):
            targets = torch.tensor(full[first_scored:end])
            rows = logp[r, first_scored - 1 - start : end - 1 - start]
            values = rows.gather(-1, targets[:, None]).squeeze(-1)
            out[first_scored - shift : end - shift] = values
    return out


@torch.no_grad()
def query_nll(model: Any, tokenizer: Any, prefixes: Sequence[str], query: str, max_length: int = 512,
              batch_size: int = 8, separator: str = "\n\n", keep: str = "head") -> torch.Tensor:
    """Mean negative log-likelihood of the query tokens given each ``prefix + separator``; an empty prefix
    gives the unconditional value. A prefix too long for ``max_length`` keeps its first tokens
    (``keep="head"``: for code, the signature and docstring that name the chunk) or its last ones
    (``keep="tail"``); the separator always stays."""
    anchor = anchor_id(tokenizer)
    head = [anchor] if anchor is not None else []
    q_ids = encode(tokenizer, query)[: max(1, max_length // 2)]
    skip = 0 if head else 1  # without an anchor, the first query token has no context anywhere
    if len(q_ids) - skip <= 0:
        return torch.zeros(len(prefixes))
    sep = encode(tokenizer, separator)
    room = max(0, max_length - len(q_ids) - len(head))
    if keep not in ("head", "tail"):
        raise ValueError(f"keep={keep!r} is invalid; valid: 'head' or 'tail'.")
    rows = []
    for prefix in prefixes:
        p_ids = encode(tokenizer, prefix) if prefix else []
        if p_ids:
            cut = max(0, room - len(sep))
            p_ids = (p_ids[:cut] if keep == "head" else p_ids[max(0, len(p_ids) - cut) :]) if cut else []
            p_ids = p_ids + sep if p_ids else []
        rows.append(head + p_ids + q_ids)
    device = _device(model)
    m = len(q_ids)
    result = torch.zeros(len(rows))
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i]), i))  # batch similar lengths: less padding
    for b in range(0, len(order), batch_size):
        members = order[b : b + batch_size]
        batch = [rows[i] for i in members]
        width = max(len(r) for r in batch)
        ids_t = torch.full((len(batch), width), _pad_id(tokenizer), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, row in enumerate(batch):  # left padding: the query ends every row
            ids_t[r, width - len(row) :] = torch.tensor(row)
            mask[r, width - len(row) :] = 1
        logits = _logits(model, ids_t.to(device), mask.to(device), keep=m + 1)[:, :m]
        logp = logits.float().log_softmax(-1).cpu()
        gathered = logp.gather(-1, torch.tensor(q_ids)[None, :, None].expand(len(batch), m, 1)).squeeze(-1)
        result[members] = -gathered[:, skip:].mean(-1)
    return result


def approx_mutual_information(model: Any, tokenizer: Any, contexts: Sequence[str], query: str,
                              max_length: int = 512, batch_size: int = 8, keep: str = "head") -> torch.Tensor:
    """AMI(c) = PPL(query) - PPL(query | c) for each context (higher: c helps predict the query)."""
    if not contexts:
        return torch.zeros(0)
    nll = query_nll(model, tokenizer, ["", *contexts], query, max_length, batch_size, keep=keep)
    ppl = torch.exp(nll.clamp(max=50.0))
    return ppl[0] - ppl[1:]


def self_information(logprobs: torch.Tensor) -> torch.Tensor:
    """``-log p``; unscorable tokens (NaN) get +inf, i.e. they are always kept."""
    info = -logprobs
    return torch.where(torch.isnan(info), torch.full_like(info, math.inf), info)
