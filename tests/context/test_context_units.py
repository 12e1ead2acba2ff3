"""Sentence splitter, paragraphs and titles."""

from __future__ import annotations

import pytest

from prunekit.context import find_title, split_paragraphs, split_sentences, split_units


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("Dr. Smith went to Washington. He arrived at 3.15 p.m. on Monday! Did he stay? Yes.",
     ["Dr. Smith went to Washington.", "He arrived at 3.15 p.m. on Monday!", "Did he stay?", "Yes."]),
    ("We use fruit, e.g. apples, and i.e. pears. The U.S. economy grew by 2.5 percent. J. Smith agreed.",
     ["We use fruit, e.g. apples, and i.e. pears.", "The U.S. economy grew by 2.5 percent.", "J. Smith agreed."]),
    ("See Fig. 3 and No. 7 for details. Prof. Ng disagreed.",
     ["See Fig. 3 and No. 7 for details.", "Prof. Ng disagreed."]),
    ('He said "Stop." Then he left. It cost $4.50 in total.',
     ['He said "Stop."', "Then he left.", "It cost $4.50 in total."]),
    ("Wait... what happened? Nothing (really). Ok.", ["Wait... what happened?", "Nothing (really).", "Ok."]),
    ("A wrapped line\nthat continues here. Done.", ["A wrapped line\nthat continues here.", "Done."]),
    ("Trailing text without a period", ["Trailing text without a period"]),
    ("", []),
    ("   \n\n  ", []),
])
def test_split_sentences(text, expected):
    assert sentences(text) == expected


def test_offsets_point_into_the_original():
    text = "  First one.  Second one?\n\nThird!  "
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one?", "Third!"]
    assert spans == sorted(spans)


def test_paragraphs_titles_and_bullets():
    text = ("Provence pruning\nProvence is a pruner. It keeps sentences.\n\n"
            "- item one\n- item two. More.\n\n# Notes\nEnd.")
    assert [text[s:e] for s, e in split_paragraphs(text)] == [
        "Provence pruning\nProvence is a pruner. It keeps sentences.", "- item one\n- item two. More.", "# Notes\nEnd."]
    units = split_units(text)
    assert [(u.kind, text[u.start : u.end], u.paragraph) for u in units] == [
        ("title", "Provence pruning", 0), ("sentence", "Provence is a pruner.", 0),
        ("sentence", "It keeps sentences.", 0), ("sentence", "- item one", 1), ("sentence", "- item two.", 1),
        ("sentence", "More.", 1), ("title", "# Notes", 2), ("sentence", "End.", 2)]
    assert find_title(text) == (0, len("Provence pruning"))


def test_title_detection_needs_a_short_capitalised_line():
    assert find_title("The Amazon Rainforest\n\nThe Amazon rainforest covers much of the basin.") == (0, 21)
    assert find_title("the lowercase start\nNext line.") is None
    assert find_title("A sentence that ends.\nNext line.") is None
    assert find_title("Only one line") is None
