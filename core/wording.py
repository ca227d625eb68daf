"""Small helpers for the words the CLI and logs print."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """A count with its noun in the right number: ``1 route``, ``2 routes``.
    ``nouns`` is the plural when adding "s" is wrong (``Ingress``, ``Ingresses``)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"
