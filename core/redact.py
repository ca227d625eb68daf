"""Keeping credentials out of the access log and the exported spans.

A :class:`Redactor` is built once per configuration snapshot from three lists of
names: the built-in ones below, ``[redact] query`` / ``headers`` of gateway.toml, and
what each filter of the snapshot declares it reads credentials from
(:meth:`plugin_sdk.Filter.sensitive_params` / ``sensitive_headers``: key-auth's key
parameter, jwt-auth's token parameter ...). The value of a query parameter so named
(case-insensitive, percent-decoded) becomes :data:`MARKER`, in the request target
and in a logged ``Referer``; a logged header so named is replaced whole. Everything
else stays byte for byte. Only what is logged changes: the upstream gets the request
as the filters left it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

MARKER = "[REDACTED]"

#: Query parameters that carry credentials by common convention.
QUERY = (
    "access_token",
    "api_key",
    "api-key",
    "apikey",
    "auth",
    "client_secret",
    "id_token",
    "jwt",
    "key",
    "passwd",
    "password",
    "refresh_token",
    "secret",
    "sig",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
)

#: Request headers that carry credentials (only Referer and User-Agent are logged today,
#: by the combined format; the list keeps future fields honest).
HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key")

_SEPARATORS = re.compile(r"([&;])")


class Redactor:
    """Replaces the values of sensitive query parameters and headers with MARKER."""

    def __init__(self, query: Iterable[str] = (), headers: Iterable[str] = ()) -> None:
        self.query = frozenset(n.lower() for n in (*QUERY, *query))
        self.headers = frozenset(n.lower() for n in (*HEADERS, *headers))

    def target(self, target: bytes) -> str:
        """A request target (or any URL) as text, with sensitive values replaced."""
        return self.url(target.decode("latin-1"))

    def url(self, url: str) -> str:
        head, sep, rest = url.partition("?")
        if not sep or not rest:
            return url
        query, hash_, fragment = rest.partition("#")
        return f"{head}?{self.query_string(query)}{hash_}{fragment}"

    def query_string(self, query: str) -> str:
        """A raw query string (no ``?``) with sensitive values replaced; ``&`` and ``;``
        both separate parameters, as some servers take either."""
        if not query:
            return query
        parts = _SEPARATORS.split(query)
        changed = False
        for i in range(0, len(parts), 2):
            name, eq, _ = parts[i].partition("=")
            if eq and unquote_plus(name).strip().lower() in self.query:
                parts[i] = f"{name}={MARKER}"
                changed = True
        return "".join(parts) if changed else query

    def header(self, name: str, value: str) -> str:
        """A logged header's value: MARKER for a sensitive one; a Referer's query redacted."""
        lower = name.lower()
        if lower in self.headers:
            return MARKER
        if lower == "referer":
            return self.url(value)
        return value


def declared(filters: Iterable[tuple[str, Any]]) -> tuple[list[str], list[str]]:
    """The query parameters and headers ``(name, filter)`` pairs declare sensitive;
    ValueError naming the filter whose hook fails or answers something else than names."""
    query: list[str] = []
    headers: list[str] = []
    for name, f in filters:
        for hook, out in (("sensitive_params", query), ("sensitive_headers", headers)):
            method = getattr(f, hook, None)
            if method is None:
                continue
            try:
                names = list(method())
            except Exception as exc:
                raise ValueError(f"filter {name!r}: {hook}() failed: {exc!r}") from None
            if not all(isinstance(n, str) for n in names):
                raise ValueError(f"filter {name!r}: {hook}() must return names (str)")
            out.extend(names)
    return query, headers
