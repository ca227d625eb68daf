"""A case-insensitive, order-keeping, multi-valued view over raw HTTP header pairs.

The gateway keeps headers as the peer sent them: a list of ``(name, value)`` byte
pairs. :class:`Headers` reads and edits that very list, so a filter's change is what
goes on the wire, with no copy or conversion in between. Names compare
case-insensitively; values are ``str`` (decoded as Latin-1, as HTTP/1.1 defines them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Final

from plugin_sdk._native import mypyc_attr

_BAD_NAME = re.compile(r"[\s:]")
_BAD_VALUE = re.compile(r"[\r\n\0]")


def _b(text: str) -> bytes:
    return text.encode("latin-1")


_KEYS: Final[dict[str, bytes]] = {}


def _key(name: str) -> bytes:
    """The lower-cased, encoded form of a header name (memoised: names come from code
    and configs, not from requests, so the table stays small)."""
    key = _KEYS.get(name)
    if key is None:
        key = name.lower().encode("latin-1")
        if len(_KEYS) < 4096:
            _KEYS[name] = key
    return key


def _check(name: str, value: str) -> None:
    if not name or _BAD_NAME.search(name) or _BAD_VALUE.search(value):
        raise ValueError(f"invalid header {name!r}: {value!r}")


# Compiled by mypyc (scripts/compile.py): a native class, opened to Python subclasses.
@mypyc_attr(allow_interpreted_subclasses=True)
class Headers:
    """Header fields of a request or a response.

    Usable in every phase in which its message is visible: request headers from the
    request phase on, response headers in the response phase. Editing request headers
    in the response phase changes nothing on the wire (they were already sent).
    Hop-by-hop headers (Connection, Transfer-Encoding, ...) and, for requests, Host
    are not in this view: the gateway manages them (use ``request.host``).
    """

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None) -> None:
        #: The underlying ``(name, value)`` byte pairs, shared with the gateway.
        self.raw: list[tuple[bytes, bytes]] = raw if raw is not None else []

    @classmethod
    def of(cls, items: Iterable[tuple[str, str]] | dict[str, str]) -> Headers:
        """Build from ``str`` pairs or a dict (for tests and local replies)."""
        pairs = items.items() if isinstance(items, dict) else items
        out = cls()
        for name, value in pairs:
            out.add(name, value)
        return out

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        key = _key(name)
        size = len(key)
        for n, v in self.raw:
            if len(n) == size and n.lower() == key:
                return v.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = _key(name)
        return [v.decode("latin-1") for n, v in self.raw if n.lower() == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(n.lower() == key for n, _ in self.raw)

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with one ``value`` (added if absent)."""
        _check(name, value)
        self.set_bytes(_b(name), _b(value))

    def add(self, name: str, value: str) -> None:
        """Append one more ``name: value`` field."""
        _check(name, value)
        self.raw.append((_b(name), _b(value)))

    def set_bytes(self, name: bytes, value: bytes) -> None:
        """:meth:`set` for a name and value already encoded and checked (no CR, LF,
        NUL; a token name) — for filters that validate their config at load time."""
        key = name.lower()
        size = len(key)
        raw = self.raw
        for i, (n, _) in enumerate(raw):
            if len(n) == size and n.lower() == key:
                raw[i] = (name, value)
                if i + 1 < len(raw):
                    raw[i + 1 :] = [p for p in raw[i + 1 :] if p[0].lower() != key]
                return
        raw.append((name, value))

    def add_bytes(self, name: bytes, value: bytes) -> None:
        """:meth:`add` for a name and value already encoded and checked."""
        self.raw.append((name, value))

    def setdefault(self, name: str, value: str) -> str:
        """Set ``name`` only if absent; return its (first) value."""
        current = self.get(name)
        if current is None:
            self.add(name, value)
            return value
        return current

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; return how many were removed."""
        key = _key(name)
        size = len(key)
        raw = self.raw
        for n, _ in raw:
            if len(n) == size and n.lower() == key:
                break
        else:
            return 0
        before = len(raw)
        raw[:] = [p for p in raw if p[0].lower() != key]
        return before - len(raw)

    def items(self) -> Iterator[tuple[str, str]]:
        """``(name, value)`` pairs as ``str``, in wire order, names as sent."""
        for n, v in self.raw:
            yield n.decode("latin-1"), v.decode("latin-1")

    def __iter__(self) -> Iterator[str]:
        for n, _ in self.raw:
            yield n.decode("latin-1")

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Headers({list(self.items())!r})"
