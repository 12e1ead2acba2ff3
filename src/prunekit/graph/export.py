"""ONNX export of a (pruned) model, checked against onnxruntime (optional extra: `pip install onnx onnxruntime`).

Pruned models are ordinary modules with smaller tensors, so they export like dense ones; this helper
writes atomically (temporary file, then rename) and returns the largest difference between PyTorch
and onnxruntime outputs on the example inputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .graph import split_inputs
from .tensors import iter_tensors


class _FirstOutput(nn.Module):
    """Returns the logits (or first tensor) of a model whose forward returns a structure; no cache."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        kwargs = dict(zip(self.names, tensors, strict=True))
        if hasattr(getattr(self.model, "config", None), "use_cache"):
            kwargs["use_cache"] = False
        out = self.model(**kwargs)
        logits = getattr(out, "logits", None)
        return logits if logits is not None else next(iter_tensors(out))


def export_onnx(model: nn.Module, example_inputs: Any, path: str | Path, *, opset: int = 17,
                dynamic_batch: bool = True) -> Path:
    """Write `model` (called on `example_inputs`: a tensor, tuple, or dict of tensors) to `path`."""
    args, kwargs = split_inputs(example_inputs)
    names = list(kwargs) if kwargs else [f"input_{i}" for i in range(len(args))]
    tensors = tuple(kwargs.values()) if kwargs else tuple(args)
    wrapped = _FirstOutput(model, names) if kwargs else model
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    axes = {n: {0: "batch"} for n in names} | {"output": {0: "batch"}} if dynamic_batch else None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(wrapped, tensors, str(tmp), input_names=names, output_names=["output"],
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        os.replace(tmp, path)
    finally:
        model.train(was_training)
        tmp.unlink(missing_ok=True)
    return path


def onnx_max_difference(path: str | Path, model: nn.Module, example_inputs: Any) -> float:
    """Largest |PyTorch - onnxruntime| over the output on `example_inputs`."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError("Checking an ONNX export needs onnxruntime: pip install onnx onnxruntime") from exc
    args, kwargs = split_inputs(example_inputs)
    names = list(kwargs) if kwargs else [f"input_{i}" for i in range(len(args))]
    tensors = tuple(kwargs.values()) if kwargs else tuple(args)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["output"], {n: t.numpy() for n, t in zip(names, tensors, strict=True)})
    wrapped = _FirstOutput(model, names) if kwargs else model
    with torch.no_grad():
        expected = wrapped(*tensors)
    return float((torch.from_numpy(got) - expected).abs().max())
