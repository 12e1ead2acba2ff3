"""PASER: recovery data chosen where the pruned model lost the most (He et al. 2025, "PASER: Post-Training Data
Selection for Efficient Pruned Large Language Model Recovery", arXiv 2502.12594).

The paper, on an instruction set: (1) embed every instruction with all-MiniLM-L6-v2; (2) cluster in the semantic
space: diffusion kernel A = exp(-d^2 / 2 sigma^2) with sigma the median distance, random-walk Laplacian
L = I - D^-1 A, its k smallest eigenvectors V, NMF on |V V^T|; (3) capability degradation of a cluster = mean
Jensen-Shannon divergence JSD(pruned || dense) of the next-token distributions over its samples; (4) the data
budget is split over clusters in proportion to their degradation; (5) inside a cluster, samples are taken in
order of JSD / log(length^2) (degradation per unit of training cost); (6) a concept-consistency graph of RAKE
key phrases rejects samples whose concepts conflict with those already chosen; (7) LoRA on the selection.

Adapted to prunekit's data, packed windows of seq_len tokens from the bundled corpora (no instruction /
response pairs):
- A candidate window is decoded to text with the pruned model's tokenizer and embedded with the packaged MiniLM.
- Clustering: the same diffusion kernel and random-walk Laplacian, then seeded k-means (k-means++) on the rows of
  the k eigenvectors (Shi & Malik 2000), instead of NMF on |V V^T|, so it is deterministic for a seed; above
  SPECTRAL_LIMIT candidates (the kernel is n x n) k-means runs on the embeddings directly.
- JSD is averaged over the window's positions (natural log, in [0, ln 2]); every window has seq_len tokens, so
  the length normalisation of step 5 keeps the JSD order (implemented anyway, for windows of other lengths).
- The concept filter becomes a conflict filter on what the pruned model already gets right: a window is dropped
  when its JSD is below `min_jsd` (the pruned model already predicts like the dense one) or when the pruned
  model's next-token loss on it is at or below the dense model's (nothing to recover there).
- Budgets are capped by what a cluster holds after the filter and the rest goes to the other clusters in
  proportion (the paper's rounding drops it), so exactly `keep` windows are chosen; if the filter leaves fewer
  than `keep`, the gap is filled from the dropped windows the same way (budget by degradation, then rank),
  reported as "backfilled".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

SPECTRAL_LIMIT = 4096  # candidates above this are clustered by k-means on the embeddings (the kernel is n x n)


# --- pure tensor functions -------------------------------------------------------------------------------------
def jsd(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """Jensen-Shannon divergence 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2, of softmax(logits) over the
    last dimension; (..., V) -> (...), in nats."""
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    return 0.5 * (log_p.exp() * (log_p - log_m)).sum(-1) + 0.5 * (log_q.exp() * (log_q - log_m)).sum(-1)


def window_losses(logits: Tensor, ids: Tensor) -> Tensor:
    """Mean next-token cross-entropy of each window; logits (B, T, V), ids (B, T) -> (B,)."""
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
    return nll.mean(1)


def kmeans(x: Tensor, k: int, *, seed: int = 0, iters: int = 100) -> Tensor:
    """(n,) cluster labels in [0, k) of the rows of x (n, d): k-means++ seeding from a seeded generator, then
    Lloyd iterations until no label changes (an emptied cluster restarts at the point farthest from its centre)."""
    x = x.double()
    n = x.shape[0]
    k = min(k, n)
    generator = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(n, (1,), generator=generator)]  # (1, d)
    for _ in range(1, k):
        d2 = torch.cdist(x, centres).min(1).values.square()  # (n,)
        if d2.sum() <= 0:  # fewer distinct points than k: take any unused point
            pick = torch.randint(n, (1,), generator=generator)
        else:
            pick = torch.multinomial(d2 / d2.sum(), 1, generator=generator)
        centres = torch.cat([centres, x[pick]])  # (c, d)
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        distances = torch.cdist(x, centres)  # (n, k)
        new = distances.argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = labels == c
            if members.any():
                centres[c] = x[members].mean(0)
            else:
                far = int(distances.min(1).values.argmax())
                centres[c] = x[far]
    return labels


def spectral_embedding(x: Tensor, k: int) -> Tensor:
    """(n, k) eigenvectors of the k smallest eigenvalues of the random-walk Laplacian I - D^-1 A of the diffusion
    kernel A = exp(-d^2 / 2 sigma^2), sigma = the median pairwise distance (PASER step 2); x (n, d)."""
    x = x.double()
    n = x.shape[0]
    d = torch.cdist(x, x)  # (n, n)
    off = d[~torch.eye(n, dtype=torch.bool)]
    sigma = float(off.median()) if off.numel() else 1.0
    sigma = sigma if sigma > 0 else 1.0
    a = torch.exp(-d.square() / (2 * sigma**2))  # (n, n)
    inv_sqrt = a.sum(1).rsqrt()  # (n,) D^-1/2
    sym = torch.eye(n, dtype=x.dtype) - inv_sqrt[:, None] * a * inv_sqrt[None, :]  # I - D^-1/2 A D^-1/2
    _values, vectors = torch.linalg.eigh(sym)  # ascending
    return inv_sqrt[:, None] * vectors[:, : min(k, n)]  # D^-1/2 u: eigenvectors of I - D^-1 A


def cluster(embeddings: Tensor, k: int, *, seed: int = 0) -> Tensor:
    """(n,) labels: k-means on the spectral embedding (k-means on the embeddings above SPECTRAL_LIMIT rows)."""
    if embeddings.shape[0] > SPECTRAL_LIMIT:
        return kmeans(embeddings, k, seed=seed)
    return kmeans(spectral_embedding(embeddings, k), k, seed=seed)


def cluster_means(values: Tensor, labels: Tensor, k: int) -> Tensor:
    """(k,) mean of `values` (n,) over each label (0 for an empty cluster)."""
    sums = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, values.double())
    counts = torch.bincount(labels, minlength=k).double()
    return sums / counts.clamp(min=1)


def allocate_budget(shares: Tensor, caps: Tensor, total: int) -> Tensor:
    """(k,) integer counts summing to min(total, caps.sum()), proportional to `shares` (k,) and at most `caps`
    (k,): largest remainders (Hamilton's method) for the units left by rounding, and a capped group's excess
    shared again in proportion among the others. Groups with share 0 get units only when no other has room."""
    shares = shares.double().clamp(min=0)
    caps = caps.long()
    out = torch.zeros_like(caps)
    total = min(int(total), int(caps.sum()))
    while (left := total - int(out.sum())) > 0:
        room = caps - out  # (k,)
        open_ = room > 0
        weight = torch.where(open_, shares, torch.zeros_like(shares))
        if weight.sum() <= 0:
            weight = open_.double()
        quota = weight / weight.sum() * left  # (k,) sums to left
        give = torch.minimum(quota.floor().long(), room)
        remainder = quota - quota.floor()  # below 1e-6 it is rounding noise of the shares, not a claim
        takers = [c for c in sorted(range(len(caps)), key=lambda c: (-float(remainder[c]), c))
                  if remainder[c] > 1e-6 and give[c] < room[c]]
        for c in takers[: left - int(give.sum())]:
            give[c] += 1
        out += give
    return out


def efficiency(jsd_values: Tensor, lengths: Tensor) -> Tensor:
    """PASER's within-cluster order: degradation per unit of training cost, JSD / log(length^2); (n,) -> (n,)."""
    return jsd_values.double() / torch.log(lengths.double().clamp(min=2).square())


def conflict_filter(jsd_values: Tensor, pruned_loss: Tensor, dense_loss: Tensor, min_jsd: float) -> Tensor:
    """(n,) bool, True = keep: drop windows the pruned model already predicts like the dense one (JSD < min_jsd)
    or already predicts at least as well (its loss <= the dense model's)."""
    return (jsd_values >= min_jsd) & (pruned_loss > dense_loss)


def choose(labels: Tensor, budget: Tensor, score: Tensor, keep_mask: Tensor) -> list[int]:
    """Indices, cluster by cluster: the budget[c] kept windows of cluster c with the highest score (ties: lower
    index first)."""
    chosen: list[int] = []
    for c in range(budget.shape[0]):
        members = [int(i) for i in torch.nonzero((labels == c) & keep_mask).flatten()]
        members.sort(key=lambda i: (-float(score[i]), i))
        chosen += members[: int(budget[c])]
    return chosen


# --- glue: two models, candidate windows -> chosen indices -----------------------------------------------------
@torch.inference_mode()
def score_windows(pruned: Any, dense: Any, windows: Tensor, *, batch_size: int = 4) -> dict[str, Tensor]:
    """{"jsd", "pruned_loss", "dense_loss"}: (n,) per-window mean JSD(pruned || dense) over positions and each
    model's next-token loss; windows (n, T) token ids; both models are nn.Modules returning `.logits`."""
    device = next(pruned.parameters()).device
    dense_device = next(dense.parameters()).device
    out: dict[str, list[Tensor]] = {"jsd": [], "pruned_loss": [], "dense_loss": []}
    for start in range(0, windows.shape[0], batch_size):
        ids = windows[start : start + batch_size]  # (B, T)
        p = pruned(input_ids=ids.to(device), use_cache=False).logits.float().cpu()  # (B, T, V)
        q = dense(input_ids=ids.to(dense_device), use_cache=False).logits.float().cpu()  # (B, T, V)
        out["jsd"].append(jsd(p, q).mean(1))
        out["pruned_loss"].append(window_losses(p, ids))
        out["dense_loss"].append(window_losses(q, ids))
    return {key: torch.cat(parts) for key, parts in out.items()}


def minilm_embedder() -> Callable[[list[str]], Tensor]:
    """texts -> (n, 384) L2-normalised MiniLM sentence embeddings (the packaged all-MiniLM-L6-v2)."""
    from ..context.encoder import embed, load_minilm

    model, tokenizer = load_minilm()
    return lambda texts: embed(model, tokenizer, texts)


def decode_windows(tokenizer: Any, windows: Tensor) -> list[str]:
    if not hasattr(tokenizer, "decode"):
        raise ConfigError("select 'paser' decodes the candidate windows to text for the MiniLM encoder, and this "
                          f"model's tokenizer ({type(tokenizer).__name__}) has no decode(); use select: random")
    return [tokenizer.decode(row.tolist()) for row in windows]


def select_paser(pruned: Any, dense: Any, windows: Tensor, keep: int, *, clusters: int = 8, seed: int = 0,
                 min_jsd: float = 1e-3, batch_size: int = 4, groups: list[str] | None = None,
                 embed_texts: Callable[[list[str]], Tensor] | None = None) -> tuple[list[int], dict]:
    """(sorted indices of the `keep` chosen rows of `windows` (n, T), report). `pruned` is the pruned LoadedModel
    (its tokenizer decodes the windows), `dense` the dense model (LoadedModel or nn.Module); `embed_texts`
    defaults to the packaged MiniLM; `groups` (a name per window, e.g. its corpus) are counted per cluster in the
    report."""
    n = windows.shape[0]
    if not 1 <= keep <= n:
        raise ConfigError(f"select 'paser' keeps {keep} windows of {n} candidates; it needs 1 <= keep <= candidates "
                          "(raise paser_candidates or lower select_tokens)")
    start = time.perf_counter()
    from ..models import LoadedModel

    dense_model = dense.model if isinstance(dense, LoadedModel) else dense
    embeddings = (embed_texts or minilm_embedder())(decode_windows(pruned.tokenizer, windows))  # (n, H)
    labels = cluster(embeddings, clusters, seed=seed)  # (n,)
    k = int(labels.max()) + 1
    scores = score_windows(pruned.model, dense_model, windows, batch_size=batch_size)
    degradation = cluster_means(scores["jsd"], labels, k)  # (k,)
    kept = conflict_filter(scores["jsd"], scores["pruned_loss"], scores["dense_loss"], min_jsd)
    available = torch.bincount(labels[kept], minlength=k)
    budget = allocate_budget(degradation, available, keep)
    rank = efficiency(scores["jsd"], torch.full((n,), windows.shape[1]))
    chosen = choose(labels, budget, rank, kept)
    refill = allocate_budget(degradation, torch.bincount(labels[~kept], minlength=k), keep - len(chosen))
    backfill = choose(labels, refill, rank, ~kept)  # only when the filter left fewer than `keep`
    chosen = sorted(chosen + backfill)
    picked = torch.zeros(n, dtype=torch.bool)
    picked[chosen] = True
    report = {
        "candidates": n, "windows": keep, "clusters": k, "filtered": int((~kept).sum()), "backfilled": len(backfill),
        "min_jsd": min_jsd, "jsd_candidates": float(scores["jsd"].mean()),
        "jsd_chosen": float(scores["jsd"][picked].mean()),
        "per_cluster": [{"size": int((labels == c).sum()), "degradation": float(degradation[c]),
                         "kept_by_filter": int(available[c]), "budget": int(budget[c]), "backfilled": int(refill[c]),
                         "chosen": int(picked[labels == c].sum()),
                         **({"groups": _count([groups[i] for i in range(n) if labels[i] == c])} if groups else {})}
                        for c in range(k)],
        "seconds": time.perf_counter() - start,
    }
    return chosen, report


def _count(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts
