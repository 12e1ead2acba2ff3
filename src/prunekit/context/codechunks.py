"""Split source code into function-level chunks with line spans, for LongCodeZip's coarse stage
(Shi et al. 2025, "LongCodeZip: Compress Long Context for Code Language Models", arXiv 2510.00446).

- Python: ``ast``. Every top-level function / class starts a chunk (decorators included); a class is
  further split into its head (signature, docstring, attributes) and one chunk per method, since
  methods are the functions of a class. Module-level code between definitions forms its own chunks.
- Other languages, or Python that does not parse: a line matching ``def|function|class|func|fn``
  (optionally after modifiers such as ``export``, ``pub``, ``async``, ``static``) at the outermost
  indentation found, or one level (up to 4 columns / one tab) deeper, starts a chunk.
- Comment, decorator and annotation lines directly above a definition belong to it; chunks made only
  of blank lines are merged into the previous chunk. Chunks partition the lines exactly.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Literal

from prunekit.errors import ConfigError

COMMENT_PREFIX = {
    "python": "#", "ruby": "#", "shell": "#", "r": "#", "perl": "#",
    "javascript": "//", "typescript": "//", "java": "//", "go": "//", "rust": "//", "c": "//",
    "cpp": "//", "csharp": "//", "kotlin": "//", "swift": "//", "php": "//", "scala": "//",
}
LANGUAGES = tuple(sorted(COMMENT_PREFIX))

_DEF_LINE = re.compile(
    r"^(?P<indent>[ \t]*)(?:(?:export|default|pub(?:\([a-z]+\))?|async|static|public|private|protected|"
    r"internal|final|abstract|override|inline|extern|unsafe|const|open|suspend)\s+)*"
    r"(?:def|function\*?|class|func|fn|interface|struct|impl|trait|enum)\b"
)
_ATTACHED = re.compile(r"^\s*(?:@|#|//|/\*|\*|///|--)")


@dataclass(frozen=True)
class Chunk:
    """Lines ``[start, end)`` (0-based) of the source; ``kind`` says what the first code line is."""

    start: int
    end: int
    kind: Literal["function", "class", "module"]
    name: str = ""


def check_language(language: str) -> str:
    if language not in COMMENT_PREFIX:
        raise ConfigError(f"language '{language}' is not supported. Valid choices: {', '.join(LANGUAGES)}.")
    return language


def omission_marker(n_lines: int, indent: str, language: str) -> str:
    """The line that replaces ``n_lines`` dropped lines, e.g. ``    # ... (12 lines omitted)``."""
    return f"{indent}{COMMENT_PREFIX[language]} ... ({n_lines} line{'s' if n_lines != 1 else ''} omitted)\n"


def _python_starts(source: str) -> dict[int, tuple[str, str]] | None:
    """Chunk starts (0-based line -> (kind, name)) from the AST, or None when it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    starts: dict[int, tuple[str, str]] = {}
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

    def first_line(node: ast.AST) -> int:
        decorators = getattr(node, "decorator_list", [])
        return min([node.lineno, *(d.lineno for d in decorators)]) - 1

    for node in tree.body:
        if isinstance(node, defs):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            starts[first_line(node)] = (kind, node.name)
            if node.end_lineno is not None:
                starts.setdefault(node.end_lineno, ("module", ""))
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        starts[first_line(item)] = ("function", f"{node.name}.{item.name}")
        else:
            starts.setdefault(node.lineno - 1, ("module", ""))
    return starts


def _regex_starts(lines: list[str]) -> dict[int, tuple[str, str]]:
    matches = [(i, m) for i, line in enumerate(lines) if (m := _DEF_LINE.match(line))]
    if not matches:
        return {}
    widths = [len(m.group("indent").expandtabs(4)) for _, m in matches]
    base = min(widths)
    starts: dict[int, tuple[str, str]] = {}
    for (i, m), width in zip(matches, widths, strict=True):
        if width <= base + 4:
            word = re.search(r"\b(class|interface|struct|impl|trait|enum)\b", m.group(0))
            name = re.search(r"\b(?:def|function\*?|class|func|fn|interface|struct|impl|trait|enum)\s+(\w+)",
                             lines[i])
            starts[i] = ("class" if word else "function", name.group(1) if name else "")
    return starts


def _attach_comments(lines: list[str], starts: dict[int, tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """Move each definition start up over the comment / decorator lines directly above it."""
    moved: dict[int, tuple[str, str]] = {}
    for line_no in sorted(starts):
        kind, name = starts[line_no]
        first = line_no
        if kind != "module":
            while first > 0 and first - 1 not in starts and first - 1 not in moved \
                    and _ATTACHED.match(lines[first - 1]):
                first -= 1
        moved[first] = (kind, name)
    return moved


def split_chunks(source: str, language: str = "python") -> list[Chunk]:
    """Partition the lines of ``source`` (``splitlines(keepends=True)``) into chunks."""
    check_language(language)
    lines = source.splitlines(keepends=True)
    if not lines:
        return []
    starts = _python_starts(source) if language == "python" else None
    if starts is None:
        starts = _regex_starts(lines)
    starts = _attach_comments(lines, {k: v for k, v in starts.items() if 0 <= k < len(lines)})
    starts.setdefault(0, ("module", ""))
    bounds = sorted(starts) + [len(lines)]
    chunks: list[Chunk] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        kind, name = starts[a]
        if chunks and not "".join(lines[a:b]).strip():  # blank-only: glue to the previous chunk
            chunks[-1] = Chunk(chunks[-1].start, b, chunks[-1].kind, chunks[-1].name)
        elif chunks and chunks[-1].kind == "module" and kind == "module":
            chunks[-1] = Chunk(chunks[-1].start, b, "module", "")
        else:
            chunks.append(Chunk(a, b, kind, name))  # type: ignore[arg-type]
    return chunks
