"""Handlers for the standard layers: Linear, ConvNd (grouped, depthwise), norms, Embedding, HF Conv1D."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import UnsupportedOperation
from ..handler import LayerHandler, ParamDim


def _numel_out(output: Any) -> int:
    return output.numel() if isinstance(output, torch.Tensor) else 0


class LinearHandler(LayerHandler):
    """nn.Linear: weight (out, in), bias (out,). MACs = output elements x in_features."""

    def get_out_channels(self, module: nn.Linear) -> int:
        return module.weight.shape[0]

    def get_in_channels(self, module: nn.Linear) -> int:
        return module.weight.shape[1]

    def param_dims(self, module: nn.Module) -> dict[str, list[ParamDim]]:
        return {"out": [("weight", 0, None), ("bias", 0, None)], "in": [("weight", 1, None)]}

    def sync(self, module: nn.Linear) -> None:
        module.out_features, module.in_features = module.weight.shape

    def macs(self, module: nn.Linear, inputs, output) -> int:
        return _numel_out(output) * module.weight.shape[1]


class HFConv1DHandler(LayerHandler):
    """transformers' Conv1D (GPT-2): weight (in, out), bias (out,)."""

    def get_out_channels(self, module: nn.Module) -> int:
        return module.weight.shape[1]

    def get_in_channels(self, module: nn.Module) -> int:
        return module.weight.shape[0]

    def param_dims(self, module: nn.Module) -> dict[str, list[ParamDim]]:
        return {"out": [("weight", 1, None), ("bias", 0, None)], "in": [("weight", 0, None)]}

    def sync(self, module: nn.Module) -> None:
        module.nx, module.nf = module.weight.shape

    def macs(self, module: nn.Module, inputs, output) -> int:
        return _numel_out(output) * module.weight.shape[0]


class ConvHandler(LayerHandler):
    """nn.Conv1d/2d/3d, weight (out, in/groups, *k).

    Depthwise (groups == in_channels): input channel c owns output channels c*m .. c*m+m-1, removing it
    removes a whole group. Other grouped convs: channel j of every group goes together (the same
    relative index in each group), so all groups keep equal sizes, as the weight layout requires.
    """

    in_dim = 1
    out_dim = 1

    def get_out_channels(self, module: nn.Module) -> int:
        return module.weight.shape[0]

    def get_in_channels(self, module: nn.Module) -> int:
        return module.weight.shape[1] * module.groups

    @staticmethod
    def _depthwise(module: nn.Module) -> bool:
        return module.groups > 1 and module.weight.shape[1] == 1

    def param_dims(self, module: nn.Module) -> dict[str, list[ParamDim]]:
        out = [("weight", 0, None), ("bias", 0, None)]
        if self._depthwise(module):
            return {"out": out, "in": []}
        per_group = module.weight.shape[1]
        index = torch.arange(self.get_in_channels(module)) % per_group if module.groups > 1 else None
        return {"out": out, "in": [("weight", 1, index)]}

    def sync(self, module: nn.Module) -> None:
        out = module.weight.shape[0]
        if self._depthwise(module):
            multiplier = module.out_channels // module.groups  # from the sizes before pruning
            module.groups = out // multiplier
            module.in_channels = module.groups
        else:
            module.in_channels = module.weight.shape[1] * module.groups
        module.out_channels = out

    def macs(self, module: nn.Module, inputs, output) -> int:
        return _numel_out(output) * module.weight[0].numel()

    def trace(self, tracer, name: str, module: nn.Module, inputs: list, output: Any) -> None:
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            raise UnsupportedOperation(f"'{name}' is a transposed convolution; register a handler for it.")
        x = tracer.first_tensor(inputs)
        n_in, n_out, groups = self.get_in_channels(module), self.get_out_channels(module), module.groups
        in_space = tracer.channel_space(x, 1, f"{name}:in", n_in)
        factors = [(name, "out")]
        if self._depthwise(module) and n_out == n_in:
            out_space = in_space
            tracer.bind(name, "out", out_space)
        else:
            out_space = tracer.new_space(f"{name}:out", n_out)
            tracer.bind(name, "out", out_space)
            tracer.bind(name, "in", in_space)
            if self._depthwise(module):  # output channel o belongs to input channel o // m
                tracer.couple(out_space, in_space, None, torch.arange(n_out) // (n_out // n_in))
            else:
                factors.append((name, "in"))
                if groups > 1:  # same relative index in every group
                    tracer.couple(out_space, out_space, None, torch.arange(n_out) % (n_out // groups))
                    tracer.couple(in_space, in_space, None, torch.arange(n_in) % (n_in // groups))
        tracer.set_output(tracer.first_tensor(output), x, 1, out_space)
        tracer.add_macs(self.macs(module, inputs, output), factors)


class NormHandler(LayerHandler):
    """Per-channel affine norms (BatchNorm, LayerNorm, RMSNorm, GroupNorm): input channel i is output
    channel i. LayerNorm / RMSNorm statistics run over the channels, so removing channels changes
    them slightly (unavoidable; Torch-Pruning does the same)."""

    coupled = True
    tensors: tuple[str, ...] = ("weight", "bias")

    def get_out_channels(self, module: nn.Module) -> int:
        weight = getattr(module, "weight", None)
        if weight is None:
            shape = getattr(module, "normalized_shape", None) or (getattr(module, "num_features", None),)
            return int(math.prod(shape))
        return weight.shape[0]

    def param_dims(self, module: nn.Module) -> dict[str, list[ParamDim]]:
        return {"out": [(t, 0, None) for t in self.tensors]}

    def sync(self, module: nn.Module) -> None:
        weight = getattr(module, "weight", None)
        if weight is None:
            return
        n = weight.shape[0]
        for attr in ("num_features", "num_channels"):
            if hasattr(module, attr):
                setattr(module, attr, n)
        if isinstance(getattr(module, "normalized_shape", None), tuple | list):
            module.normalized_shape = (n,)

    def trace(self, tracer, name: str, module: nn.Module, inputs: list, output: Any) -> None:
        shape = getattr(module, "normalized_shape", None)
        if getattr(module, "weight", None) is None or (shape is not None and len(shape) != 1):
            x = tracer.first_tensor(inputs)
            spaces = tracer.spaces_of(x) or ()
            for s in spaces:
                if s is not None:
                    tracer.freeze(s, f"norm '{name}' without a per-channel weight fixes its size")
            out = tracer.first_tensor(output)
            if out is not None and spaces and out.shape == x.shape:
                tracer.set_spaces(out, spaces)
            return
        super().trace(tracer, name, module, inputs, output)


class BatchNormHandler(NormHandler):
    in_dim = 1
    out_dim = 1
    tensors = ("weight", "bias", "running_mean", "running_var")


class GroupNormHandler(NormHandler):
    """GroupNorm: channel j of every group goes together so groups stay equal."""

    in_dim = 1
    out_dim = 1

    def trace(self, tracer, name: str, module: nn.GroupNorm, inputs: list, output: Any) -> None:
        super().trace(tracer, name, module, inputs, output)
        spaces = tracer.spaces_of(tracer.first_tensor(output))
        if spaces and spaces[1] is not None and module.num_groups > 1:
            n = module.num_channels
            tracer.couple(spaces[1], spaces[1], None, torch.arange(n) % (n // module.num_groups))


class EmbeddingHandler(LayerHandler):
    """nn.Embedding: weight (vocab, dim); the output channels are the embedding dims."""

    def get_out_channels(self, module: nn.Embedding) -> int:
        return module.weight.shape[1]

    def get_in_channels(self, module: nn.Embedding) -> None:
        return None

    def param_dims(self, module: nn.Module) -> dict[str, list[ParamDim]]:
        return {"out": [("weight", 1, None)]}

    def sync(self, module: nn.Embedding) -> None:
        module.embedding_dim = module.weight.shape[1]


RMS_NORMS = [f"transformers.models.{m}.modeling_{m}.{c}RMSNorm" for m, c in
             [("llama", "Llama"), ("qwen2", "Qwen2"), ("mistral", "Mistral"), ("qwen3", "Qwen3"),
              ("gemma", "Gemma"), ("phi3", "Phi3"), ("olmo2", "Olmo2")]]


def register_builtin(register) -> None:
    """Register the handlers of this file with `register(key, handler)`."""
    register(nn.Linear, LinearHandler())
    register(nn.modules.conv._ConvNd, ConvHandler())
    register(nn.modules.batchnorm._BatchNorm, BatchNormHandler())
    register(nn.LayerNorm, NormHandler())
    register(nn.GroupNorm, GroupNormHandler())
    if hasattr(nn, "RMSNorm"):
        register(nn.RMSNorm, NormHandler())
    register(nn.Embedding, EmbeddingHandler())
    register("transformers.pytorch_utils.Conv1D", HFConv1DHandler())
    for key in RMS_NORMS:
        register(key, NormHandler())
