"""gRPC over the gateway's HTTP/2: what it means for a request to be a gRPC call.

A gRPC client reads a call's outcome from ``grpc-status`` and ``grpc-message``, not
from the HTTP status; an HTTP error page leaves it guessing (grpcio says "Received
http2 header with status: 401"). So a reply the gateway gives itself to a gRPC call
(a filter's 401, 403 or 429, no route, an upstream that failed) is sent as a
*trailers-only* response: HTTP 200, ``content-type: application/grpc``, the gRPC
code matching the HTTP status, and the reason as ``grpc-message``, all in one
HEADERS frame that ends the stream. Responses from the upstream pass unchanged.

``grpc-timeout`` is the call's deadline: when it passes, the gateway ends the call
itself with DEADLINE_EXCEEDED (trailers-only, or trailers after what was sent) and
cancels the upstream stream, whatever the upstream does.
"""

from __future__ import annotations

from plugin_sdk.headers import Headers

# HTTP status of a local reply -> gRPC status code (gRPC's own HTTP-to-gRPC table,
# except 429: a rate limit is RESOURCE_EXHAUSTED, which clients do not retry blindly).
STATUS = {
    400: 13,  # INTERNAL
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 12,  # UNIMPLEMENTED
    408: 4,  # DEADLINE_EXCEEDED
    413: 8,  # RESOURCE_EXHAUSTED
    429: 8,  # RESOURCE_EXHAUSTED
    431: 8,  # RESOURCE_EXHAUSTED
    499: 1,  # CANCELLED
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}
UNKNOWN = 2
_KEEP = frozenset({b"www-authenticate", b"retry-after"})  # worth passing on to a client


def is_grpc(headers: Headers) -> bool:
    """Whether a request's Content-Type says gRPC (``application/grpc`` and ``+proto`` etc.)."""
    value = headers.get("content-type")
    return value is not None and value.startswith("application/grpc")


_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def timeout(value: str | None) -> float | None:
    """Seconds from a ``grpc-timeout`` value (``"250m"``, ``"5S"``, at most 8 digits);
    None when absent or malformed (a malformed one is not ours to enforce)."""
    if not value or len(value) > 9:
        return None
    digits, unit = value[:-1], _UNITS.get(value[-1])
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit


def code_for(status: int) -> int:
    return STATUS.get(status, 0 if 200 <= status < 300 else UNKNOWN)


def message(text: str) -> bytes:
    """``grpc-message``: percent-encoded outside printable ASCII (and ``%`` itself)."""
    out = bytearray()
    for byte in text.strip().encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def trailers_only(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> list[tuple[bytes, bytes]]:
    """The one HEADERS block that answers a gRPC call with a local reply."""
    fields = [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"%d" % code_for(status)),
        (b"grpc-message", message(body.decode("utf-8", "replace") or f"HTTP {status}")),
    ]
    fields += [(n.lower(), v) for n, v in headers if n.lower() in _KEEP]
    return fields
