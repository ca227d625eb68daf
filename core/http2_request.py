"""An HTTP/2 request's header block, read into the gateway's :class:`Request`.

The same rules as on HTTP/1.1 (core/http1.py): forwarding and identity headers the
client may not set are dropped, the Host is checked, the path normalised, the bounds
of ``[server.limits]`` applied; a refusal is a :class:`~core.http1.Reject` with the
status the stream answers with. h2 has already checked the block's syntax (pseudo
headers, no connection-specific fields, lower-case names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.headers import HOP_BY_HOP
from core.http1 import _HOST, _SPECIAL, ClientConnection, Reject, Request

if TYPE_CHECKING:
    from core.config import Limits


def parse_request(
    req: Request,
    headers: list[tuple[bytes, bytes]],
    *,
    ended: bool,
    limits: Limits,
    max_body_bytes: int,
) -> None:
    """Fill ``req`` from a request's header block (h2 checked its syntax)."""
    size = 0
    method = path = authority = b""
    cookies: list[bytes] = []
    raw = req.headers.raw
    for name, value in headers:
        size += len(name) + len(value) + 4
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b":protocol":
                raise Reject(501, "extended CONNECT is not supported")
            continue
        kind = _SPECIAL.get(name)
        if kind is None:
            if name == b"cookie":
                cookies.append(value)
            elif name in HOP_BY_HOP or name.startswith(b"proxy-"):
                pass  # te: trailers (gRPC's) is added again for an HTTP/2 upstream
            elif not (b"_" in name and name.replace(b"_", b"-") in _SPECIAL):
                raw.append((name, value))
        elif kind == 1:
            if req.host:
                raise Reject(400, "duplicate Host header")
            req.host = value.decode("latin-1")
        elif kind == 2:
            if not value.isdigit():
                raise Reject(400, "invalid Content-Length")
            req.content_length = int(value)
            raw.append((name, b"%d" % req.content_length))
        elif kind == 7:
            req.xff.append(value)
        elif kind == 8:
            req.xfp = value
        elif kind == 9:
            req.xfh = value
        elif kind == 11:
            req.tp_in = value if req.tp_in is None else b""
        elif kind == 12:
            req.has_tracestate = True
            raw.append((name, value))
        # kinds 3-6 (framing, Connection, Upgrade, Expect) mean nothing on HTTP/2 (h2
        # refuses the first three); 10 are the headers the gateway sets itself.
    if size > limits.max_header_bytes:
        raise Reject(431, "request header fields too large")
    if cookies:  # RFC 9113 §8.2.3: one header again for an HTTP/1.1 upstream
        raw.append((b"cookie", b"; ".join(cookies)))
    req.method = method.decode("ascii", "replace")
    if req.method == "CONNECT":
        raise Reject(405, "CONNECT is not supported")
    if authority:
        host = authority.decode("latin-1")
        if req.host and req.host != host:
            raise Reject(400, "Host header differs from :authority")
        req.host = host
    if req.host:
        match = _HOST.fullmatch(req.host.encode("latin-1"))
        if match is None or int(match[1] or 0) > 65535:
            raise Reject(400, "invalid Host header")
    if len(path) > limits.max_url_bytes:
        raise Reject(414, "request URI too long")
    if path[:1] != b"/":
        raise Reject(400, "invalid request target")
    if b"#" in path:
        raise Reject(400, "fragment in request target")
    req.target = path
    text, _, query = path.decode("latin-1").partition("?")
    req.path = req._orig_path = text
    req.query = req._orig_query = query
    if "%" in text or "/." in text or "//" in text or "\\" in text:
        normal = ClientConnection._normalise_path(text)
        if normal != text:
            req.target = normal.encode("latin-1") + path[len(text) :]
            req.path = req._orig_path = normal
    req.orig_host = req.host
    if not ended and req.content_length is None:
        req.chunked = True  # an HTTP/1.1 upstream needs the body framed
    if ended and req.content_length:
        raise Reject(400, "Content-Length without a body")
    limit = max_body_bytes
    if limit and req.content_length is not None and req.content_length > limit:
        raise Reject(413, "request body too large")
