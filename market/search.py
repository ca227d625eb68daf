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


def _score(word: str, name: str, keywords: list[str], description: str) -> int:
    if word == name:
        return _EXACT_NAME
    parts = _WORD.findall(word)
    if not parts:
        return 0
    name_words = name.split("-")
    if word in name_words:
        return _NAME_WORD
    if name.startswith(word) or any(w.startswith(word) for w in name_words):
        return _NAME_PREFIX
    best = 0
    for place, (exact, prefix) in (
        (keywords, (_TAG_WORD, _TAG_PREFIX)),
        ([description], (_TEXT_WORD, _TEXT_PREFIX)),
    ):
        for text in place:
            tokens = _WORD.findall(text.lower())
            joined = " ".join(tokens)
            query = " ".join(parts)  # "proxy-wasm" matches the words "proxy wasm"
            if f" {joined} ".find(f" {query} ") >= 0:
                best = max(best, exact)
            elif f" {joined}".find(f" {query}") >= 0:
                best = max(best, prefix)
        if best:
            return best
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
            got = _score(word, name, list(m.keywords), m.description)
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
