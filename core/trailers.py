"""Trailer fields: which may cross the gateway, and how they are written on HTTP/1.1.

A request's trailers (an HTTP/2 client's trailing HEADERS, or the trailer section of
an HTTP/1.1 chunked body) and a response's (an HTTP/2 upstream's) cross the gateway
as their own section, never merged into the head. A field that would mean something
there is dropped on the way in (RFC 9110 §6.5.1): framing, routing, authentication,
connection handling, content handling, and the fields the gateway sets itself
(X-Forwarded-*, X-Real-IP, traceparent, the client-certificate headers), so a
trailer cannot smuggle what the head was checked for.

Where trailers go:

- to an HTTP/2 upstream or client: trailing HEADERS;
- to an HTTP/1.1 client that sent ``TE: trailers``: the trailer section of a chunked
  response (RFC 9112 §7.1.2); to other HTTP/1.1 clients, or a response with a
  Content-Length, nowhere;
- to an HTTP/1.1 upstream: nowhere. As Envoy's HTTP/1 codec does by default (and
  nginx), request trailers are not sent to HTTP/1.1 servers: many merge them into
  the request's headers, where they would bypass what the filters checked.
"""

from __future__ import annotations

import re

_NOT_IN_TRAILERS = frozenset(
    {
        # framing and connection handling
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        # routing, request modifiers and controls
        b"host",
        b"expect",
        b"max-forwards",
        b"cache-control",
        b"range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"if-range",
        # authentication
        b"authorization",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"www-authenticate",
        b"cookie",
        b"set-cookie",
        # how the content is processed
        b"content-type",
        b"content-encoding",
        b"content-range",
        # response control data
        b"location",
        b"retry-after",
        b"age",
        b"date",
        b"expires",
        b"vary",
        # set by the gateway, never taken from a peer
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-real-ip",
        b"x-client-cert-subject",
        b"x-client-cert-san",
        b"traceparent",
        b"tracestate",
        b"proxy",
    }
)
_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(rb"[\r\n\0]")


def allowed(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The fields that may travel as trailers (names lower-cased); the rest dropped."""
    out = []
    for name, value in fields:
        lname = name.lower()
        if (
            lname in _NOT_IN_TRAILERS
            or lname.startswith(b"proxy-")
            or _NAME.fullmatch(lname) is None
            or _BAD_VALUE.search(value) is not None
        ):
            continue
        out.append((lname, value))
    return out


def last_chunk(fields: list[tuple[bytes, bytes]] | None) -> bytes:
    """The end of a chunked body: the zero-size chunk, the trailer section, CRLF."""
    if not fields:
        return b"0\r\n\r\n"
    parts = [b"0\r\n"]
    for name, value in allowed(fields):
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def accepts_trailers(te: bytes) -> bool:
    """Whether a ``TE`` value lists ``trailers`` (RFC 9110 §10.1.4)."""
    return any(part.split(b";")[0].strip().lower() == b"trailers" for part in te.split(b","))
