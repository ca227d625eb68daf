"""Searching an index, and the facts ``search`` and ``info`` show.

A package matches when every word of the query matches its name, one of its
keywords or its description (case-insensitive). A query word matches a whole word
or the beginning of one, never letters inside a word: ``ip`` finds
``ip-restriction`` and "client IPs" but not "AssemblyScript". Results are ranked:
the exact name, then a word of the name, then the start of the name or of one of
its words, then keywords, then the description; ties by name. What is
shown for a package is its latest release (pre-releases only when nothing else exists).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from packaging.version import Version

from market.index import Index, IndexEntry


@dataclass(frozen=True)
class Hit:
    name: str
    latest: IndexEntry
    versions: tuple[str, ...]  # newest first
    score: int


def versions_newest_first(index: Index, name: str) -> list[str]:
    return sorted(index.packages.get(name, {}), key=Version, reverse=True)


def latest(index: Index, name: str) -> IndexEntry | None:
    """The newest release of ``name`` (a pre-release only if there is nothing else)."""
    ordered = versions_newest_first(index, name)
    releases = [v for v in ordered if not Version(v).is_prerelease]
    pool = releases or ordered
    return index.packages[name][pool[0]] if pool else None


# What one query word scores in each place; a word that scores nothing excludes the
# package. A word matches a whole word or the start of one, never the inside of a
# word ("ip" finds "ip-restriction" and "IPs", not "AssemblyScript").
_EXACT_NAME, _NAME_WORD, _NAME_PREFIX = 100, 40, 30
_TAG_WORD, _TAG_PREFIX = 15, 10
_TEXT_WORD, _TEXT_PREFIX = 4, 3
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> str:
    """``text`` as its lower-case words, space-separated, with a space at each end."""
    return " " + " ".join(_WORD.findall(text.lower())) + " "


def _score(word: str, name: str, keywords: tuple[str, ...], description: str) -> int:
    query = _words(word).rstrip()  # " proxy wasm": a hyphenated word is its words
    if not query.strip():
        return 0
    if word == name:
        return _EXACT_NAME
    if word in name.split("-"):
        return _NAME_WORD
    if name.startswith(word) or query in _words(name):
        return _NAME_PREFIX
    places = ((keywords, _TAG_WORD, _TAG_PREFIX), ((description,), _TEXT_WORD, _TEXT_PREFIX))
    for texts, whole, start in places:
        found = [_words(text) for text in texts if query in _words(text)]
        if found:
            return whole if any(query + " " in text for text in found) else start
    return 0


def search(index: Index, text: str) -> list[Hit]:
    """The packages matching every word of ``text``, best first (see the module
    docstring); every package, by name, for an empty ``text``."""
    words = text.lower().split()
    hits = []
    for name in index.packages:
        entry = latest(index, name)
        if entry is None:
            continue
        m = entry.manifest
        score = 0
        for word in words:
            got = _score(word, name, m.keywords, m.description)
            if not got:
                break
            score += got
        else:
            hits.append(Hit(name, entry, tuple(versions_newest_first(index, name)), score))
    hits.sort(key=lambda h: (-h.score, h.name))
    return hits


def suggest_names(name: str, index: Index) -> str:
    close = difflib.get_close_matches(name, list(index.packages), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
