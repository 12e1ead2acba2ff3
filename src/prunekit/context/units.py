"""Text units for context pruning: paragraphs, titles and sentences, all with character offsets.

Regex heuristics, no model. Sentence-level units are what Provence rounds its token decisions to
(Chirkova et al. 2025, "Provence: efficient and robust context pruning for retrieval-augmented
generation"). Rules:

- Paragraphs are separated by blank lines.
- Inside a paragraph, a title-like first line (short, capitalised, no final punctuation, next line
  capitalised), a Markdown heading and each bullet / numbered item are units of their own; the other
  lines are joined as hard-wrapped prose.
- Prose is cut after ``.``, ``!``, ``?`` or ``…`` (plus closing quotes/brackets) followed by
  whitespace and a capital, digit, quote or bracket. A period does not end a sentence after a known
  abbreviation (``Dr.``, ``e.g.``, ``Fig.``), an initialism (``U.S.``, ``Ph.D.``) or a single capital
  initial (``J. Smith``). Decimals (``3.14``) never match because no whitespace follows the point.
  We prefer under-splitting: "in the U.S. He left" stays one sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Span = tuple[int, int]

ABBREVIATIONS = frozenset(
    "e.g i.e cf vs al dr mr mrs ms prof sr jr st mt fig figs eq eqs approx dept est inc ltd co corp "
    "jan feb mar apr jun jul aug sep sept oct nov dec gen gov sen rep rev lt col sgt capt ed eds "
    "resp viz ca".split()
)
CASED_ABBREVIATIONS = frozenset({"No", "Nos", "Vol", "Vols", "Ch", "Sec", "p", "pp"})

_PARA_SEP = re.compile(r"\n[ \t]*\n\s*")
_SENT_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
_BULLET = re.compile(r"\s*(?:[-*•+]|\d{1,3}[.)])\s+")
_HEADING = re.compile(r"\s*#{1,6}\s+\S")
_INITIALISM = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")
_OPENERS = "\"'“‘([*-"


@dataclass(frozen=True)
class Unit:
    """A sentence or title: ``text[start:end]``, in paragraph ``paragraph``."""

    start: int
    end: int
    kind: Literal["title", "sentence"]
    paragraph: int


def _trim(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def split_paragraphs(text: str) -> list[Span]:
    """Character spans of the paragraphs (blank-line separated), trimmed of whitespace."""
    spans: list[Span] = []
    pos = 0
    for match in _PARA_SEP.finditer(text):
        if (span := _trim(text, pos, match.start())) is not None:
            spans.append(span)
        pos = match.end()
    if (span := _trim(text, pos, len(text))) is not None:
        spans.append(span)
    return spans


def is_title_line(line: str, next_line: str | None) -> bool:
    """A Markdown heading, or a short capitalised line without final punctuation before a capital."""
    stripped = line.strip()
    if not stripped:
        return False
    if _HEADING.match(line):
        return True
    if next_line is None or len(stripped) > 100 or len(stripped.split()) > 12:
        return False
    if stripped[-1] in ".!?,;:…" or not (stripped[0].isupper() or stripped[0].isdigit()):
        return False
    following = next_line.strip()
    return bool(following) and (following[0].isupper() or following[0].isdigit() or following[0] in _OPENERS)


def _is_abbreviation(word: str) -> bool:
    word = word.lstrip(_OPENERS)
    if not word:
        return False
    if word.lower() in ABBREVIATIONS or word in CASED_ABBREVIATIONS:
        return True
    if _INITIALISM.fullmatch(word):
        return True
    return len(word) == 1 and word.isupper()


def _sentence_cuts(text: str, start: int, end: int) -> list[int]:
    """Absolute offsets right after each sentence end inside ``text[start:end]``."""
    segment = text[start:end]
    cuts = []
    for match in _SENT_END.finditer(segment):
        rest = segment[match.end():].lstrip()
        if not rest:
            continue
        nxt = rest[0]
        if not (nxt.isupper() or nxt.isdigit() or nxt in _OPENERS):
            continue
        if match.group().rstrip("\"'”’)]") == ".":
            word = re.search(r"\S*$", segment[: match.start()]).group()
            if _is_abbreviation(word):
                continue
        cuts.append(start + match.end())
    return cuts


def _split_prose(text: str, start: int, end: int) -> list[Span]:
    spans = []
    pos = start
    for cut in [*_sentence_cuts(text, start, end), end]:
        if (span := _trim(text, pos, cut)) is not None:
            spans.append(span)
        pos = cut
    return spans


def _lines(text: str, start: int, end: int) -> list[Span]:
    spans, pos = [], start
    while pos < end:
        stop = text.find("\n", pos, end)
        stop = end if stop < 0 else stop
        spans.append((pos, stop))
        pos = stop + 1
    return spans


def _paragraph_units(text: str, p_start: int, p_end: int, p_idx: int, after: str | None) -> list[Unit]:
    """Units of one paragraph; ``after`` is the next paragraph when this one may be a lone title."""
    lines = [span for span in _lines(text, p_start, p_end) if text[span[0] : span[1]].strip()]
    units: list[Unit] = []
    prose: list[Span] = []  # consecutive hard-wrapped prose lines

    def flush() -> None:
        if prose:
            spans = _split_prose(text, prose[0][0], prose[-1][1])
            units.extend(Unit(s, e, "sentence", p_idx) for s, e in spans)
            prose.clear()

    for i, (l_start, l_end) in enumerate(lines):
        line = text[l_start:l_end]
        next_line = text[lines[i + 1][0] : lines[i + 1][1]] if i + 1 < len(lines) else after
        title = bool(_HEADING.match(line)) or (i == 0 and is_title_line(line, next_line))
        if not title and not _BULLET.match(line):
            prose.append((l_start, l_end))
            continue
        flush()
        start, end = _trim(text, l_start, l_end) or (l_start, l_end)
        if title:
            units.append(Unit(start, end, "title", p_idx))
        else:
            units.extend(Unit(s, e, "sentence", p_idx) for s, e in _split_prose(text, start, end))
    flush()
    return units


def split_units(text: str) -> list[Unit]:
    """Titles and sentences of ``text`` in reading order, with character offsets."""
    paragraphs = split_paragraphs(text)
    units: list[Unit] = []
    for p_idx, (p_start, p_end) in enumerate(paragraphs):
        lone_title = p_idx == 0 and len(paragraphs) > 1 and "\n" not in text[p_start:p_end]
        after = text[paragraphs[1][0] : paragraphs[1][1]] if lone_title else None
        units.extend(_paragraph_units(text, p_start, p_end, p_idx, after))
    return units


def split_sentences(text: str) -> list[Span]:
    """Character spans of the sentences (titles included as units of their own)."""
    return [(unit.start, unit.end) for unit in split_units(text)]


def find_title(text: str) -> Span | None:
    """Span of the title line that opens ``text``, if there is one."""
    units = split_units(text)
    return (units[0].start, units[0].end) if units and units[0].kind == "title" else None
