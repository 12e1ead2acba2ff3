"""RIA, relative importance and activations: Zhang, Bai, Lin, Zhao, Hou & Cannistraci, "Plug-and-Play: An
Efficient Post-training Pruning Method for Large Language Models" (ICLR 2024).

RIA_ij = (|W_ij| / sum_k |W_kj| + |W_ij| / sum_k |W_ik|) * (||X_j||_2)^a,  a = 0.5:
a weight's share of the total |W| of its input channel j plus its share of its output channel i, times the
input's activation norm to the power a. Higher = keep. The relative terms stop whole channels from being
removed (the paper's "channel corruption"). Scores compete over the whole layer: the released code's default
(comparing per output row, Wanda's way, is its `--per_outneuron` option). N:M patterns compete within each group.
"""

from torch import Tensor

from .criterion import Criterion

ALPHA = 0.5  # the exponent a of the activation norm (the paper's default)


def ria_scores(weight: Tensor, input_sq_norm: Tensor, a: float = ALPHA) -> Tensor:
    """RIA scores (out, in) for ``weight`` (out, in) and ``input_sq_norm`` (in,) = ||X_j||_2^2 (InputNormCollector).

    An all-zero row or column contributes 0 to its relative term (instead of 0 / 0).
    """
    w = weight.detach().abs().float()  # (out, in)
    column = w.sum(0, keepdim=True)  # (1, in) total |W| of each input channel
    row = w.sum(1, keepdim=True)  # (out, 1) total |W| of each output channel
    relative = w / column.where(column > 0, 1.0) + w / row.where(row > 0, 1.0)  # (out, in)
    return relative * input_sq_norm.detach().float().to(w.device).sqrt().pow(a)  # (out, in)


RIA = Criterion(statistics=("norms",), group="layer", score=lambda weight, stats, config: ria_scores(
    weight, stats["norms"]))
