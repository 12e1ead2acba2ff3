"""D-Pruner, domain-specific dual pruning: Zhang, Liu, Zhao, Cheng, Bao, Zhang, Mitra & Chen, "Pruning as a
Domain-specific LLM Extractor" (NAACL 2024 Findings, arXiv 2405.06275).

General importance, from the open-domain calibration set (the recipe's calibration corpus): the OBS error of
removing weight m of a layer, G_m = w_m^2 / [H^-1]_mm, with the layer-input Hessian H of SparseGPT. D-Pruner adds
it to the domain loss as a regulariser, L' = L_domain + lam * sum_m G_m (theta_m - theta0_m)^2, and scores each
weight by a second-order Taylor estimate of the change of L' when the weight is set to 0:

    S_m = | g_m w_m - 1/2 (F_mm + 2 lam G_m) w_m^2 |

with g the mean gradient of the next-token loss on the domain calibration set and F the empirical Fisher
(mean squared per-window gradient) standing in for its Hessian; the regulariser adds nothing to g at theta0 and
2 lam G to the Hessian. The lowest scores are pruned within each output row. Here g and F are taken once on the
dense model (prunekit.calib.gradients) and H block by block, like SparseGPT's, on the already pruned layers' outputs.

The module imports without torch (prunekit.methods reads DPrunerConfig).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..importance.criterion import Criterion
from ..importance.wanda import WANDA
from .config import WeightPruneConfig

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class DPrunerConfig(WeightPruneConfig):
    """D-Pruner options. domain: the domain calibration corpus (a name or a local .txt / .jsonl file), on which
    the gradients and the empirical Fisher are taken over `domain_samples` random windows of `domain_seq_len`
    tokens (one backward pass each; seeded by the recipe's calibration seed). lam: the weight of the general
    importance (0: domain importance alone). damp: dampening of the open-domain Hessian before its inverse, as a
    fraction of its mean diagonal."""

    domain: str = "python-stdlib"
    domain_samples: int = 16
    domain_seq_len: int = 256
    lam: float = 1.0
    damp: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        from ..data.corpora import validate_corpus

        validate_corpus(self.domain, "domain")
        if self.domain_samples < 1 or self.domain_seq_len < 2:
            raise ConfigError(f"domain_samples must be >= 1 and domain_seq_len >= 2, got {self.domain_samples} "
                              f"and {self.domain_seq_len}")
        if self.lam < 0 or self.damp <= 0:
            raise ConfigError(f"lam must be >= 0 and damp > 0, got lam={self.lam}, damp={self.damp}")


def dpruner_scores(weight: Tensor, hessian: Tensor, gradient: Tensor, fisher: Tensor, lam: float,
                   damp: float = 0.01) -> Tensor:
    """S = |g w - 1/2 (F + 2 lam G) w^2|, G = w^2 / [H^-1]_mm, for weight, gradient, fisher (out, in) and the
    input Hessian (in, in). Inputs that are always zero (diag H == 0) have G = 0."""
    import torch

    from .sparsegpt import inverse_factor

    w = weight.detach().float()  # (out, in)
    upper = inverse_factor(hessian, damp)  # (in, in) U with (H + damp I)^-1 = U^T U
    inverse_diagonal = upper.square().sum(0)  # (in,) [H^-1]_mm
    general = w.square() / inverse_diagonal  # (out, in) G
    general[:, torch.diagonal(hessian) == 0] = 0.0
    return (gradient * w - 0.5 * (fisher + 2.0 * lam * general) * w.square()).abs()  # (out, in)


def domain_gradients(loaded: Any, layers: list, config: DPrunerConfig, inputs: Any) -> dict[str, dict]:
    """{layer name: {"gradient": g, "fisher": F}} (out, in) of the dense model on the domain calibration windows."""
    from ..calib.gradients import lm_gradient_statistics
    from ..data.splits import calibration_windows

    windows = calibration_windows(loaded.tokenizer, config.domain, config.domain_samples, config.domain_seq_len,
                                  inputs.seed)
    stats = lm_gradient_statistics(loaded.model, {layer.name: layer.module.weight for layer in layers}, windows)
    # Conv1D stores its weight as (in, out): give the criterion the (out, in) view, like weight_view()
    return {layer.name: {k: v.t() if layer.transposed else v for k, v in stats[layer.name].items()}
            for layer in layers}


DPRUNER = Criterion(
    statistics=("hessian", "gradients"), group="row", prepare=domain_gradients, ranked_by=WANDA,
    score=lambda weight, stats, config: dpruner_scores(weight, stats["hessian"], stats["gradient"],
                                                       stats["fisher"], config.lam, config.damp))
