"""Save a (pruned) model as a normal Hugging Face folder, written atomically.

The folder holds config.json + safetensors (so plain `from_pretrained` reloads it), the tokenizer,
`prunekit_plan.json` (what was pruned and how) and `recipe.yaml` (the resolved recipe).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..utils.paths import atomic_directory


def save_model(loaded: Any, folder: str | Path, *, plan: dict | None = None, recipe: dict | None = None,
               overwrite: bool = False) -> Path:
    import yaml

    folder = Path(folder)
    with atomic_directory(folder, overwrite=overwrite) as tmp:
        loaded.adapter.sync_config()
        config = loaded.model.config
        loaded.model.config = loaded.adapter.saveable_config()
        try:
            loaded.model.save_pretrained(tmp, safe_serialization=True)
        finally:
            loaded.model.config = config
        if loaded.tokenizer is not None:
            loaded.tokenizer.save_pretrained(tmp)
        (tmp / "prunekit_plan.json").write_text(json.dumps(plan or {}, indent=1, default=str))
        if recipe is not None:
            (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def saved_base(folder: str | Path) -> str | None:
    """The model a prunekit-saved folder was made from (its recipe.yaml's `model`), or None: not such a folder,
    or the base is the folder itself."""
    import yaml

    recipe = Path(folder).expanduser() / "recipe.yaml"
    if not recipe.is_file():
        return None
    try:
        base = (yaml.safe_load(recipe.read_text()) or {}).get("model")
    except yaml.YAMLError:
        return None
    if not isinstance(base, str) or Path(base).expanduser().resolve() == Path(folder).expanduser().resolve():
        return None
    return base
