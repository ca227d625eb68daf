"""Searching an index, and the facts ``search`` and ``info`` show.

A package matches when every word of the query occurs in its name, one of its
keywords or its description (case-insensitive). Results are ranked: exact name,
then words in the name, then keywords, then the description; ties by name. What is
shown for a package is its latest release (pre-releases only when nothing else exists).
"""

from __future__ import annotations

import difflib
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


def search(index: Index, text: str) -> list[Hit]:
    words = text.lower().split()
    hits = []
    for name in index.packages:
        entry = latest(index, name)
        if entry is None:
            continue
        m = entry.manifest
        score = 0
        for word in words:
            if word == name:
                score += 100
            elif word in name:
                score += 30
            elif any(word in k for k in m.keywords):
                score += 10
            elif word in m.description.lower():
                score += 3
            else:
                score = -1
                break
        if score >= 0:
            hits.append(Hit(name, entry, tuple(versions_newest_first(index, name)), score))
    hits.sort(key=lambda h: (-h.score, h.name))
    return hits


def suggest_names(name: str, index: Index) -> str:
    close = difflib.get_close_matches(name, list(index.packages), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
