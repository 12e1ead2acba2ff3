"""`prunekit recover MODEL_DIR`: heal a pruned model saved by prunekit (or any causal-LM folder) and save it
again, with a report. Every option and path is checked before any weights load."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.save import saved_base
from ..utils.progress import log


def _vocab_from_config(spec: str) -> int | None:
    path = Path(spec) / "config.json"
    if path.is_file():
        return json.loads(path.read_text()).get("vocab_size")
    return None


def _check_targets(folder: Path, config: Any) -> None:
    """Resolve include / exclude against the architecture built on the meta device (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .run import target_modules

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    target_modules(skeleton, config)


def recover_saved(folder: str | Path, output: str | Path | None = None, *, teacher: str | None = None,
                  options: dict[str, Any] | None = None, overwrite: bool = False) -> dict:
    """Recover the model in `folder` with RecoverConfig `options`; write OUTPUT/model (the healed model),
    report.json, report.md and recovery.png. Returns the report."""
    from ..core.typed import from_dict, to_dict
    from ..evaluate.report import plot_recovery, recovery_sections
    from ..io import save_model
    from ..models import load, validate_spec
    from ..utils.paths import atomic_directory, atomic_write_text, cache_dir
    from .config import RecoverConfig
    from .run import recover

    folder = Path(folder)
    config = from_dict(RecoverConfig, options or {}, "recover")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"'{folder}' is not a saved model folder (no config.json).")
    if config.needs_teacher:
        teacher = teacher or saved_base(folder)
        if teacher is None:
            raise ConfigError(f"loss '{config.loss}' needs --teacher (the dense model); '{folder}' names no base model")
        validate_spec(teacher)
        theirs, ours = _vocab_from_config(teacher), _vocab_from_config(str(folder))
        if theirs is not None and ours is not None and theirs != ours:
            raise ConfigError(f"The teacher '{teacher}' has a vocabulary of {theirs} tokens and the model {ours}; "
                              "distillation needs the same tokenizer.")
    out = Path(output) if output else Path(f"runs/recover-{folder.name}-{datetime.now():%Y%m%d-%H%M%S}")
    _check_targets(folder, config)
    if out.exists() and not overwrite:
        raise ConfigError(f"Output folder '{out}' already exists. Choose another with --output, or pass --overwrite.")
    loaded = load(str(folder))
    dense = load(teacher) if config.needs_teacher else None
    key = json.dumps([str(folder.resolve()), loaded.fingerprint, teacher, to_dict(config)], sort_keys=True)
    checkpoint = cache_dir("checkpoints") / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"
    with atomic_directory(out, overwrite=overwrite) as tmp:
        details = recover(loaded, config, teacher=dense, checkpoint=checkpoint)
        plan = loaded.info if isinstance(loaded.info, list) else ([loaded.info] if loaded.info else [])
        plan = plan + [{"stage": {"recover": to_dict(config)}}]
        save_model(loaded, tmp / "model", plan=plan)
        stage = {"stage": {"recover": to_dict(config)}, **details}
        report = {"model": str(folder), "teacher": teacher, "recover": stage,
                  "results": [{"variant": "pruned", "stages": []}, {"variant": folder.name, "stages": [stage]}]}
        atomic_write_text(tmp / "report.json", json.dumps(report, indent=1, default=str))
        atomic_write_text(tmp / "report.md", "\n".join([f"# prunekit recover: {folder}", ""]
                                                       + recovery_sections(report)) + "\n")
        plot_recovery(report, tmp / "recovery.png")
    log(f"healed model saved to {out / 'model'}")
    report["output"] = str(out)
    return report
