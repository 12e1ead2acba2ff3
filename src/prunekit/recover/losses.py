"""Recovery losses: next-token cross-entropy and logit distillation from the dense model.

Knowledge distillation (Hinton et al. 2015, arXiv 1503.02531) at temperature T, scaled by T^2 so the gradient
keeps the cross-entropy's size, with three divergences between teacher p and student q over the vocabulary:
forward KL(p || q) (mean-seeking, Hinton's), reverse KL(q || p) (mode-seeking, MiniLLM, Gu et al. 2024,
arXiv 2306.08543) and the Jensen-Shannon divergence 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2
(Agarwal et al. 2024, GKD, arXiv 2306.13649). Pruned LLMs recover this way in Sheared-LLaMA (Xia et al. 2024)
and Minitron (Muralidharan et al. 2024). `top_k` keeps only the teacher's k largest logits per token: the
divergence is taken over those k tokens, both distributions renormalised there (memory O(k), not O(V)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import DIVERGENCES


def next_token_loss(logits: Tensor, ids: Tensor) -> Tensor:
    """Mean cross-entropy of predicting ids[:, 1:] from logits[:, :-1]; logits (B, T, V), ids (B, T)."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())


def divergence(student: Tensor, teacher: Tensor, kind: str, temperature: float = 1.0, top_k: int = 0) -> Tensor:
    """T^2 x mean over tokens of the divergence `kind` (fkl, rkl, jsd) between teacher and student logits
    (..., V); with top_k > 0 only over the teacher's top-k tokens of each position."""
    student, teacher = student.float() / temperature, teacher.float() / temperature
    if top_k:
        teacher, index = teacher.topk(min(top_k, teacher.shape[-1]), dim=-1)  # (..., k)
        student = student.gather(-1, index)
    log_q = F.log_softmax(student, dim=-1)
    log_p = F.log_softmax(teacher, dim=-1)
    if kind == "fkl":
        value = (log_p.exp() * (log_p - log_q)).sum(-1)
    elif kind == "rkl":
        value = (log_q.exp() * (log_q - log_p)).sum(-1)
    elif kind == "jsd":
        log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - torch.log(torch.tensor(2.0))
        value = 0.5 * (log_p.exp() * (log_p - log_m)).sum(-1) + 0.5 * (log_q.exp() * (log_q - log_m)).sum(-1)
    else:
        raise ValueError(f"Unknown divergence '{kind}'. Valid choices: {', '.join(DIVERGENCES)}")
    return temperature**2 * value.mean()


def recovery_loss(logits: Tensor, ids: Tensor, teacher_logits: Tensor | None, loss: str, distill: float,
                  temperature: float, top_k: int) -> tuple[Tensor, dict[str, float]]:
    """(1 - distill) x cross-entropy + distill x divergence `loss` (no divergence for loss "ce");
    returns the loss and each term."""
    ce = next_token_loss(logits, ids)
    parts = {"ce": ce.item()}
    if loss == "ce" or distill == 0.0:
        return ce, parts
    kd = divergence(logits[:, :-1], teacher_logits[:, :-1], loss, temperature, top_k)
    parts[loss] = kd.item()
    return (kd if distill == 1.0 else (1.0 - distill) * ce + distill * kd), parts
