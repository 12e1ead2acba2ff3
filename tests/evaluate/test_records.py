import json
import sys

import pytest

from prunekit.evaluate.records import read_record, write_record


def test_a_record_names_its_command_and_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench/recover/heal.py", "--tag=-x y"])
    path = write_record(tmp_path / "area" / "recover-heal.json", {"perplexity": 43.3})
    record = json.loads(path.read_text())
    assert record["command"] == "python bench/recover/heal.py '--tag=-x y'"
    assert record["perplexity"] == 43.3
    assert {"date", "cpus", "load", "torch", "threads"} <= set(record)
    assert read_record(path) == record
    assert read_record(tmp_path / "missing.json") is None


def test_a_failed_write_leaves_the_old_record(tmp_path):
    path = write_record(tmp_path / "r.json", {"value": 1})
    with pytest.raises(TypeError):
        write_record(path, {"value": object()})
    assert read_record(path)["value"] == 1
