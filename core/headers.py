"""Header tables shared by both directions of the proxy.

Header names arrive as the peer sent them (bytes); every comparison uses the
lower-cased name. The sets below are the hop-by-hop headers of RFC 9110 §7.6.1 plus
the de-facto ones (Keep-Alive, Proxy-Connection), which a proxy must not forward.
``Proxy-*`` headers are treated as hop-by-hop too.
"""

from __future__ import annotations

from typing import Final

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

# Values of Connection that name a behaviour, not a header to strip.
CONNECTION_OPTIONS: Final = frozenset({b"close", b"keep-alive", b"upgrade"})


def connection_tokens(values: list[bytes]) -> set[bytes]:
    """Header names listed in Connection headers (lower-cased, options removed)."""
    out: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token and token not in CONNECTION_OPTIONS:
                out.add(token)
    return out


def is_hop_by_hop(lname: bytes) -> bool:
    return lname in HOP_BY_HOP or lname.startswith(b"proxy-")


def render(headers: list[tuple[bytes, bytes]]) -> bytes:
    """``Name: value\\r\\n`` lines for a header list."""
    return b"".join([n + b": " + v + b"\r\n" for n, v in headers])
