"""Load a model from a bundled name, a local HF folder, a .gguf file, a hub name, or an nn.Module."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, unknown_name
from ..io.module import is_module_folder, load_module
from .catalog import MODELS, BundledGGUF


@dataclass
class LoadedModel:
    """A model with its tokenizer and adapter; `fingerprint` keys cached dense baselines."""

    model: Any
    tokenizer: Any
    adapter: Any
    name: str
    fingerprint: str | None = None
    source: str | None = None
    info: dict = field(default_factory=dict)


def load(spec: Any, *, dtype: str = "float32", model: Any = None) -> LoadedModel:
    """Load `spec`: a bundled name (`prunekit list`), a folder, a .gguf file, a hub id or an nn.Module.

    A folder saved from a plain PyTorch module (`prunekit.save`) is rebuilt from `model`, a fresh unpruned
    instance of its architecture, or from the recorded class when that builds from the recorded kwargs."""
    from torch import nn

    from .adapters import adapter_for

    _quiet_transformers()
    if isinstance(spec, nn.Module):  # a Hugging Face model gets its family's adapter; a plain module none
        is_hf = getattr(getattr(spec, "config", None), "model_type", None) is not None
        return LoadedModel(spec, None, adapter_for(spec) if is_hf else None, type(spec).__name__)
    if isinstance(spec, LoadedModel):
        return spec
    text = str(spec)
    if model is not None and not is_module_folder(Path(text).expanduser()):
        raise ModelLoadError(f"model= rebuilds folders saved from plain PyTorch modules; '{text}' is not one "
                             f"(no prunekit_module.json).")
    if text in MODELS:
        folder, digest = _bundled_folder(text)
        return _from_folder(folder, name=text, fingerprint=f"{text}:{digest[:16]}")
    path = Path(text).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            from .gguf import cached_gguf_folder

            folder, digest = cached_gguf_folder(path)
            return _from_folder(folder, name=path.name, fingerprint=f"gguf:{digest[:16]}")
        if is_module_folder(path):
            plan_file = path / "prunekit_plan.json"
            info = json.loads(plan_file.read_text()) if plan_file.is_file() else {}
            return LoadedModel(load_module(path, model), None, None, path.name, _folder_fingerprint(path), str(path),
                               info)
        if path.is_dir():
            return _from_folder(path, name=path.name, fingerprint=_folder_fingerprint(path))
        raise ModelLoadError(f"'{text}' is a file but not a .gguf model; pass a model folder or a .gguf file.")
    if text.endswith(".gguf") or text.startswith((".", "/", "~")) or "\\" in text:
        raise ModelLoadError(f"Model path '{text}' does not exist.")
    if text.count("/") == 1:
        return _from_hub(text)
    raise unknown_name("model", text, MODELS.names()) from None


def _quiet_transformers() -> None:
    """Hide transformers' own progress bars unless prunekit shows progress (a TTY, not --quiet)."""
    from transformers.utils import logging as hf_logging

    from ..utils.progress import progress_enabled

    if not progress_enabled():
        hf_logging.disable_progress_bar()


def validate_spec(spec: str, where: str | None = None) -> None:
    """Fail fast (no torch import) on a model name that cannot resolve."""
    if spec in MODELS:
        return
    path = Path(spec).expanduser()
    if path.exists():
        return
    if spec.endswith(".gguf") or spec.startswith((".", "/", "~")):
        raise ModelLoadError(f"Model path '{spec}' does not exist" + (f" (at '{where}')." if where else "."))
    if spec.count("/") != 1:
        raise unknown_name("model", spec, MODELS.names(), where)


def _bundled_folder(name: str) -> tuple[Path, str]:
    from .gguf import cached_gguf_folder

    bundle: BundledGGUF = MODELS.get(name).target
    found = importlib.util.find_spec(bundle.package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"Model '{name}' needs the package '{bundle.package}', which is not installed. "
            f"Install it with: {bundle.install}"
        )
    gguf_path = Path(list(found.submodule_search_locations)[0]) / bundle.filename
    return cached_gguf_folder(gguf_path)


def _folder_fingerprint(folder: Path) -> str:
    parts = []
    for item in sorted(folder.iterdir()):
        if item.is_file() and item.suffix in {".json", ".safetensors", ".bin"}:
            stat = item.stat()
            parts.append(f"{item.name}:{stat.st_size}:{int(stat.st_mtime)}")
    import hashlib

    return "dir:" + hashlib.sha256("|".join([str(folder.resolve())] + parts).encode()).hexdigest()[:16]


def _model_class(config: Any):
    import transformers

    for arch in getattr(config, "architectures", None) or []:
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return transformers.AutoModelForCausalLM
    if getattr(config, "is_decoder", False) or config.model_type in {"llama", "qwen2", "mistral", "gpt2"}:
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def _from_folder(folder: Path, *, name: str, fingerprint: str | None) -> LoadedModel:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from ..graph.reload import load_rebuilt
    from .adapters import adapter_for

    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"'{folder}' is not a Hugging Face model folder (no config.json).")
    plan_file = folder / "prunekit_plan.json"
    info = json.loads(plan_file.read_text()) if plan_file.is_file() else {}
    try:
        config = AutoConfig.from_pretrained(folder)
        model = load_rebuilt(_model_class(config), config, folder)
        rebuilt = model is not None
        if not rebuilt:
            model = _model_class(config).from_pretrained(folder, dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(f"Could not load the model in '{folder}': {type(exc).__name__}: {exc}") from exc
    model.eval()
    adapter = adapter_for(model)
    if rebuilt:
        adapter.sync_config()  # the real sizes, where the saved config could not state them
    tokenizer = _tokenizer(folder, AutoTokenizer)
    return LoadedModel(model, tokenizer, adapter, name, fingerprint, str(folder), info)


def _tokenizer(folder: Path, auto_tokenizer):
    try:
        return auto_tokenizer.from_pretrained(folder)
    except Exception:  # a folder with weights only; evaluation will ask for a tokenizer
        return None


def _from_hub(repo_id: str) -> LoadedModel:
    import os

    import torch
    from transformers import AutoConfig, AutoTokenizer

    from .adapters import adapter_for

    try:
        config = AutoConfig.from_pretrained(repo_id)
        model = _model_class(config).from_pretrained(repo_id, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(repo_id)
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True"}
        reason = "HF_HUB_OFFLINE=1 is set and the model is not in the local HF cache" if offline else str(exc)
        raise ModelLoadError(
            f"Could not load '{repo_id}' from the Hugging Face hub: {reason}. Use a bundled model "
            f"({', '.join(MODELS.names())}), a local folder, or a .gguf file."
        ) from exc
    model.eval()
    return LoadedModel(model, tokenizer, adapter_for(model), repo_id, f"hub:{repo_id}", repo_id)
