"""LoRA adapters from peft, with a sparsity-preserving update for layers that pruning left sparse.

LoRA (Hu et al. 2021, arXiv 2106.09685): a frozen weight W gets a trainable update (alpha / r) B A, A (r, in)
random, B (out, r) zero, so training starts from the pruned model. LLM-Pruner (Ma et al. 2023) and most
pruning papers recover this way. A sparse W would lose its zeros in a plain merge W + (alpha / r) B A; here a
layer with zeros uses the update M * (alpha / r) B A with M = [W != 0], both in the forward pass that training
sees and in the merge, as SQFT's SparsePEFT does (Munoz et al. 2024, arXiv 2410.03750): the merged model is
the trained model and keeps every zero (the N:M pattern too). This is a peft LoRA variant (the extension
point peft uses for DoRA). Without dropout the masked update lives inside the base layer's weight during
training (a parametrization W -> W + M * (alpha / r) B A, removed before the merge), so each sparse layer runs one
(out x in) product forward and two backward, not two and three; with dropout the update is its own product,
applied to the dropped-out input as in plain LoRA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

ADAPTER = "default"


def _variant_base():
    from peft.tuners.lora.layer import LoraVariant

    return LoraVariant


def masked_delta(module: Any, adapter: str) -> torch.Tensor:
    """M * (alpha / r) B A in the base weight's layout (transposed for Conv1D, as peft stores it)."""
    return module.get_delta_weight(adapter) * module.prunekit_keep


class MaskedLoraVariant:
    """peft LoRA variant whose update is zero wherever the base weight is zero."""

    @staticmethod
    def init(module: Any, adapter_name: str, **kwargs: Any) -> None:
        pass

    @staticmethod
    def merge_safe(module: Any, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight + masked_delta(module, active_adapter).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module: Any, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data += masked_delta(module, active_adapter).to(orig_weight.dtype)

    @staticmethod
    def unmerge(module: Any, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight - masked_delta(module, active_adapter).to(orig_weight.dtype)

    @staticmethod
    def forward(module: Any, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs: Any):
        if parametrize.is_parametrized(module.base_layer, "weight"):
            return result  # the base product already used W + M * delta
        delta = masked_delta(module, active_adapter)
        if module.fan_in_fan_out:
            delta = delta.T  # (out, in) for F.linear
        return result + F.linear(module.lora_dropout[active_adapter](x), delta)


class MaskedUpdate(nn.Module):
    """Parametrization of a peft layer's base weight: W -> W + M * (alpha / r) B A (the adapter's masked delta)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self._layer = [layer]  # a plain list: the peft layer is not a child of its own base layer

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + masked_delta(self._layer[0], ADAPTER).to(weight.dtype)


def sparse_masks(modules: dict[str, nn.Module], min_sparsity: float) -> dict[str, torch.Tensor]:
    """{name: keep mask} of the layers whose weight has at least `min_sparsity` zeros (base layout)."""
    masks = {}
    for name, module in modules.items():
        keep = module.weight.detach() != 0
        if 1.0 - keep.float().mean().item() >= min_sparsity:
            masks[name] = keep
    return masks


def attach_lora(model: nn.Module, modules: dict[str, nn.Module], config: Any) -> tuple[Any, dict]:
    """Inject peft LoRA adapters into `modules` of `model` (in place, every other weight frozen); layers with
    zeros get the masked variant. Returns (the peft model, {name: keep mask} of the masked layers)."""
    from peft import LoraConfig, get_peft_model

    masks = sparse_masks(modules, config.mask_min_sparsity)
    conv1d = [name for name, m in modules.items() if type(m).__name__ == "Conv1D"]
    lora_config = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                             target_modules=sorted(modules), bias="none", fan_in_fan_out=bool(conv1d))
    torch.manual_seed(config.seed)  # the initialisation of A
    peft_model = get_peft_model(model, lora_config, adapter_name=ADAPTER)
    variant = type("PrunekitMaskedLora", (MaskedLoraVariant, _variant_base()), {})
    for name, keep in masks.items():
        layer = model.get_submodule(name)
        layer.register_buffer("prunekit_keep", keep, persistent=False)
        layer.lora_variant[ADAPTER] = variant()
        if not config.dropout:
            parametrize.register_parametrization(layer.base_layer, "weight", MaskedUpdate(layer))
    return peft_model, masks


def _unparametrize(model: nn.Module) -> None:
    """Give every base layer its plain weight back (the masked delta is then added by the merge, or dropped)."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def lora_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trainable adapter tensors, by name."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]


def merge_lora(peft_model: Any) -> nn.Module:
    """Fold every adapter into its weight (masked where the layer was sparse) and remove peft's wrappers."""
    _unparametrize(peft_model)
    return peft_model.merge_and_unload()


def remove_lora(peft_model: Any) -> nn.Module:
    """Remove the adapters without merging (the model as it was before `attach_lora`)."""
    _unparametrize(peft_model)
    return peft_model.unload()
