"""Save and rebuild a pruned plain PyTorch module (anything that is not a Hugging Face model).

The folder holds `model.safetensors` (the state dict at its pruned shapes), `prunekit_plan.json` (what was
pruned) and `prunekit_module.json` (the class as "package.module:QualName", and the builder, a class or function as
"package.module:name", with the keyword arguments that build the unpruned network). Rebuilding needs a fresh,
unpruned instance of the architecture: `prunekit.load(folder, model=MyNet())`, or nothing when the recorded
builder makes one (`prunekit.save(..., builder="torchvision.models:resnet18", kwargs={...})`; the default
builder is the class itself, called with `kwargs`, default none). Every tensor whose saved shape differs is
replaced by one of that shape and the module attributes (channels, features, groups) are synced
(graph.plan.resize_to_shapes); then the weights load strictly.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelLoadError
from ..utils.paths import atomic_directory

MODULE_FILE = "prunekit_module.json"
WEIGHTS_FILE = "model.safetensors"


def class_path(model: Any) -> str:
    """"package.module:QualName" of `model`'s class."""
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def save_module(model: Any, folder: str | Path, *, plan: Any = None, builder: str | None = None,
                kwargs: dict | None = None, overwrite: bool = False) -> Path:
    """Write `model` (a plain nn.Module) to `folder` atomically; `builder(**kwargs)` ("package.module:name",
    default: the model's class) makes the unpruned network again at load time."""
    from safetensors.torch import save_model as save_tensors

    if builder is not None and ":" not in builder:
        raise ConfigError(f"builder must be 'package.module:name' (e.g. 'torchvision.models:resnet18'), "
                          f"got {builder!r}")
    try:
        meta = json.dumps({"format": 1, "class": class_path(model), "builder": builder or class_path(model),
                           "kwargs": kwargs or {}}, indent=1)
    except TypeError as exc:
        raise ConfigError(f"kwargs must be JSON data (numbers, strings, lists, dicts) to be saved: {exc}") from exc
    folder = Path(folder)
    with atomic_directory(folder, overwrite=overwrite) as tmp:
        save_tensors(model, str(tmp / WEIGHTS_FILE))  # shared tensors are written once
        (tmp / "prunekit_plan.json").write_text(json.dumps(plan or {}, indent=1, default=str))
        (tmp / MODULE_FILE).write_text(meta + "\n")
    return folder


def is_module_folder(folder: Path) -> bool:
    return (folder / MODULE_FILE).is_file()


def build_recorded(folder: Path) -> Any:
    """A fresh, unpruned network from the builder recorded in `folder`, called with the recorded kwargs."""
    meta = json.loads((folder / MODULE_FILE).read_text())
    module_name, _, qualname = meta["builder"].partition(":")
    hint = rebuild_hint(folder)
    if module_name == "__main__":
        raise ModelLoadError(f"'{folder}' was saved from a {qualname} defined in a script (__main__); {hint}.")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        return target(**meta.get("kwargs", {}))
    except Exception as exc:
        raise ModelLoadError(f"Could not rebuild {meta['builder']} with kwargs {meta.get('kwargs', {})} "
                             f"({type(exc).__name__}: {exc}); {hint}.") from exc


def rebuild_hint(folder: Path) -> str:
    cls = json.loads((folder / MODULE_FILE).read_text())["class"].rpartition(":")[2].split(".")[-1]
    return (f"pass a fresh, unpruned instance of the saved {cls}: prunekit.load('{folder}', model=...), or save "
            f"with builder='package.module:function' and kwargs= that make one")


def load_module(folder: str | Path, model: Any = None) -> Any:
    """The pruned module saved in `folder`: `model` (or the recorded class) resized to the saved shapes, with
    the saved weights, in eval mode."""
    from safetensors.torch import load_model as load_tensors

    from ..graph.plan import resize_to_shapes
    from ..graph.reload import saved_shapes

    folder = Path(folder)
    model = build_recorded(folder) if model is None else model
    try:
        resize_to_shapes(model, saved_shapes(folder))
        load_tensors(model, str(folder / WEIGHTS_FILE), strict=True)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"The weights in '{folder}' do not fit the {type(model).__name__} to rebuild ({exc}); "
                             f"{rebuild_hint(folder)}.") from exc
    return model.eval()
