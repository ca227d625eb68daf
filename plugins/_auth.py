"""Helpers shared by the auth plugins (``jwt-auth``, ``key-auth``, ``basic-auth``).

The convention they share: on success ``ctx.state["consumer"]`` holds the consumer's
name and the request carries it upstream in ``consumer_header``; that header is
removed from every incoming request first (with :func:`remove_headers`), so a client
can never choose it.
"""

from __future__ import annotations

import string
from urllib.parse import unquote_plus

from pydantic import Field, field_validator

from plugin_sdk import Headers, LocalReply, PluginConfig

_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
# Headers the gateway manages or that carry the credentials themselves.
_MANAGED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
)


def check_header_name(name: str, *, allow_empty: bool = False) -> str:
    """A config validator: ``name`` must be an HTTP field name the gateway lets us edit."""
    if not name and allow_empty:
        return name
    if not name or not set(name) <= _TOKEN_CHARS:
        raise ValueError(f"invalid header name {name!r}")
    if name.lower() in _MANAGED:
        raise ValueError(f"{name!r} is managed by the gateway and cannot be used here")
    return name


def check_realm(realm: str) -> str:
    """A config validator: the realm goes in a quoted-string, so no quotes or controls."""
    if any(c in realm for c in '"\\') or any(ord(c) < 0x20 or ord(c) == 0x7F for c in realm):
        raise ValueError("realm must not contain quotes, backslashes or control characters")
    return realm


def wire_value(text: str) -> str | None:
    """``text`` as a header value (UTF-8 octets on the wire), or None if it cannot be one.

    :class:`~plugin_sdk.Headers` encodes values as Latin-1; passing the UTF-8 bytes
    through Latin-1 puts exactly the UTF-8 octets on the wire, which is what upstreams
    decode. Control characters (CR, LF, NUL, ...) make a value unusable.
    """
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text):
        return None
    return text.encode("utf-8").decode("latin-1")


def unauthorized(challenge: str, message: str) -> LocalReply:
    """The 401 every auth plugin answers with: a challenge and a short plain-text body."""
    return LocalReply(
        401,
        [
            ("www-authenticate", challenge),
            ("content-type", "text/plain; charset=utf-8"),
            ("cache-control", "no-store"),
        ],
        f"401 Unauthorized: {message}\n",
    )


def remove_headers(headers: Headers, names: list[str]) -> None:
    """Remove every field called one of ``names``, also spelt with ``_`` for ``-``:
    CGI and WSGI servers read ``X_Consumer`` as ``X-Consumer``."""
    keys = {name.lower().replace("_", "-").encode("latin-1") for name in names}
    raw = headers.raw
    if any(n.lower().replace(b"_", b"-") in keys for n, _ in raw):
        raw[:] = [p for p in raw if p[0].lower().replace(b"_", b"-") not in keys]


def query_get(query: str, name: str) -> str | None:
    """The first value of parameter ``name`` in a raw query string (decoded), or None."""
    if not query:
        return None
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote_plus(key) == name:
            return unquote_plus(value)
    return None


def query_without(query: str, name: str) -> str:
    """The raw query string without any ``name`` parameter (the rest byte for byte)."""
    return "&".join(p for p in query.split("&") if unquote_plus(p.partition("=")[0]) != name)


class AuthConfig(PluginConfig):
    """Fields every authentication plugin has: where the consumer goes, the realm."""

    consumer_header: str = Field(
        "X-Consumer", description="Request header carrying the consumer name upstream."
    )
    realm: str = Field("wasmgate", description="Realm of the WWW-Authenticate challenge.")

    @field_validator("consumer_header")
    @classmethod
    def _consumer_header(cls, value: str) -> str:
        return check_header_name(value)

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        return check_realm(value)
