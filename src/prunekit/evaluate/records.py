"""Benchmark records: one way for every script in bench/ to set up and to write its result file.

A result file says how to reproduce it: the command line, the date, the machine (CPU count, load average), the
torch version and thread count sit beside the numbers. Files are written whole or not at all (a temporary file,
then a rename), so an interrupted benchmark never leaves half a JSON behind. Timings between variants are taken
with `prunekit.evaluate.efficiency.interleaved_medians` (runs interleaved in one process, medians).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import date
from pathlib import Path
from typing import Any

import torch

from .efficiency import interleaved_medians

__all__ = ["bench_setup", "command_line", "interleaved_medians", "machine", "read_record", "write_record"]


def bench_setup(threads: int = 1, seed: int = 0) -> None:
    """`threads` torch threads (the CPUs are shared with other work) and a fixed seed. (HF_HUB_OFFLINE must be
    set before transformers is imported: the scripts' _common modules do it first.)"""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def command_line() -> str:
    """The command that ran this process, as a shell would read it back."""
    return shlex.join(["python", *sys.argv])


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {"cpus": os.cpu_count(), "processor": platform.machine(), "load": list(os.getloadavg()),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def write_record(path: Path, result: dict[str, Any]) -> Path:
    """Write `result` to `path` as JSON, with the date, the command line and the machine first; atomic."""
    payload = {"date": date.today().isoformat(), "command": command_line(), **machine(), **result}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=1) + "\n")
    partial.replace(path)
    return path


def read_record(path: Path) -> dict[str, Any] | None:
    """A result written by `write_record`, or None when there is none yet."""
    return json.loads(path.read_text()) if path.is_file() else None
