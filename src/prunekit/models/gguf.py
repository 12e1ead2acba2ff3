"""Read a GGUF file with transformers, dequantise to fp32 and cache it once as a safetensors folder.

The cache key is the SHA-256 of the GGUF file, so a changed file is converted again and a second load
of the same file reads safetensors (seconds instead of tens of seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelLoadError
from ..utils.paths import atomic_directory, cache_dir, file_sha256
from ..utils.progress import log

CACHE_FORMAT = 1


def cached_gguf_folder(gguf_path: Path) -> tuple[Path, str]:
    """Return (folder with config + safetensors + tokenizer, file hash), converting on the first call."""
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")
    digest = file_sha256(gguf_path)
    folder = cache_dir("models") / f"{gguf_path.stem}-{digest[:16]}"
    if (folder / "prunekit_cache.json").is_file():
        return folder, digest
    log(f"Converting {gguf_path.name} to fp32 safetensors (once; cached in {folder})")
    with atomic_directory(folder, overwrite=True) as tmp:
        _convert(gguf_path, tmp)
        meta = {"format": CACHE_FORMAT, "source": str(gguf_path), "sha256": digest}
        (tmp / "prunekit_cache.json").write_text(json.dumps(meta, indent=1))
    return folder, digest


def _convert(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    except Exception as exc:  # gguf raises many kinds of errors on a damaged file
        raise ModelLoadError(
            f"Could not read GGUF file {gguf_path}: {type(exc).__name__}: {exc}. "
            "The file may be truncated or not a GGUF model; re-install or re-download it."
        ) from exc
    # A model loaded from GGUF refuses save_pretrained; rebuild it from a plain config.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config = AutoConfig.for_model(**config.to_dict())
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
