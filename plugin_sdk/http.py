"""The HTTP messages a filter sees: :class:`Request`, :class:`Response`, :class:`LocalReply`.

The gateway parses straight into these classes (its own request type subclasses
:class:`Request`), so what a filter reads and writes is what the gateway forwards.

`make install` compiles this module with mypyc (plugin_sdk/_compiled.py): the gateway's
compiled data path then reads and writes a request's fields directly instead of
through Python's attribute lookup. Built, read, changed, subclassed (in Python, with
attributes of the subclass's own) and copied or pickled, :class:`Request` and
:class:`Response` behave as the plain classes with ``__slots__`` they are in pure
Python (``WASMGATE_COMPILED=0``): a misspelt attribute is an ``AttributeError`` and an
instance has no ``__dict__``. What differs when compiled: a field set to a value of
another type than the one documented raises ``TypeError`` (``body`` takes ``bytes`` or
None, not a ``bytearray``; ``client_port`` and ``status`` an ``int``), a field cannot be
deleted, the classes list no ``__slots__``, and a copy or pickle of a subclass keeps the
SDK's fields but not the attributes the subclass added. :class:`TLSInfo` and
:class:`LocalReply` are plain dataclasses either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plugin_sdk._native import mypyc_attr
from plugin_sdk.headers import Headers


@mypyc_attr(native_class=False)  # a plain dataclass, compiled or not
@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What the client's TLS connection established (None on plain HTTP)."""

    version: str = ""
    cipher: str = ""
    server_name: str = ""  #: the SNI the client asked for
    peer_subject: str = ""  #: verified client certificate subject, if any
    peer_sans: tuple[str, ...] = ()  #: its subject alternative names


@mypyc_attr(allow_interpreted_subclasses=True)
class Request:
    """The client's request.

    Readable in every phase; writable in the request phase only (later changes
    do not reach the upstream). Setting ``path`` or ``query`` changes the request
    target the upstream sees; the rest of the target is forwarded byte for byte.

    Attributes:
        method: ``"GET"``, ``"POST"``, ...
        path: the path as routed, e.g. ``"/api/v1/users"``: the gateway has decoded
            escaped unreserved characters and merged ``//``; other escapes are kept.
        query: the query string without ``?`` (``""`` if none).
        host: the Host the client asked for, port included if it sent one.
        scheme: ``"http"`` or ``"https"`` (of the client's connection).
        version: ``"1.1"``, ``"1.0"`` or ``"2"`` (HTTP/2, h2 or h2c); also
            readable as ``http_version``.
        headers: end-to-end request headers (see :class:`Headers`).
        client_ip / client_port: the TCP peer.
        body: the whole body, only when a filter of the chain set
            ``request_body = True``; otherwise ``None`` (the body streams).
        trace_id: the W3C trace id of this request, 32 lower-case hex digits: the
            client's when it sent a valid ``traceparent``, else a new one the gateway
            made. Read-only. The upstream receives it in a ``traceparent`` the gateway
            writes (with the gateway's span as parent), so ``traceparent`` itself is
            not among ``headers``; ``tracestate`` is, when the client's
            ``traceparent`` was valid. ``""`` in a request built by hand.
        trailers: the fields the client sent after the body (an HTTP/2 client's
            trailing HEADERS, the trailer section of an HTTP/1.1 chunked body), as
            :class:`Headers`, or None without any. They have arrived only when the
            body was read whole, so a filter sees them when a filter of the chain set
            ``request_body = True`` (else None: they come later and pass unchanged).
            Change them (or set a new ``Headers()``) in the request phase: an HTTP/2
            upstream gets them after the body. An HTTP/1.1 upstream gets none, and
            fields that may not be trailers (framing, routing, authentication, the
            gateway's own X-Forwarded-* ...) are dropped (docs/http2.md).
    """

    __slots__ = (
        "_orig_path",
        "_orig_query",
        "body",
        "client_ip",
        "client_port",
        "headers",
        "host",
        "method",
        "path",
        "query",
        "scheme",
        "target",
        "trace_id",
        "trailers",
        "version",
    )

    def __init__(
        self,
        method: str = "GET",
        target: str | bytes = "/",
        *,
        host: str = "",
        headers: Headers | None = None,
        scheme: str = "http",
        version: str = "1.1",
        client_ip: str = "127.0.0.1",
        client_port: int = 0,
        body: bytes | None = None,
        trace_id: str = "",
        trailers: Headers | None = None,
    ) -> None:
        raw = target.encode("latin-1") if isinstance(target, str) else target
        self.method = method
        self.target = raw
        path, _, query = raw.decode("latin-1").partition("?")
        self.path = self._orig_path = path
        self.query = self._orig_query = query
        self.host = host
        self.headers = headers if headers is not None else Headers()
        self.scheme = scheme
        self.version = version
        self.client_ip = client_ip
        self.client_port = client_port
        self.body = body
        self.trace_id = trace_id
        self.trailers = trailers

    def set_target(self, path: str, query: str) -> None:
        """Set path and query at once (the query without ``?``)."""
        self.path = path
        self.query = query

    def wire_target(self) -> bytes:
        """The request target to send upstream (original bytes unless changed)."""
        if self.path is self._orig_path and self.query is self._orig_query:
            return self.target
        target = self.path + ("?" + self.query if self.query else "")
        return target.encode("latin-1")

    @property
    def http_version(self) -> str:
        """The protocol version the client spoke: ``"1.0"``, ``"1.1"`` or ``"2"``."""
        return self.version

    @property
    def url(self) -> str:
        """``scheme://host/path?query`` as the client asked for it."""
        return f"{self.scheme}://{self.host}{self.path}" + (f"?{self.query}" if self.query else "")

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` from the Cookie header(s), or None."""
        for header in self.headers.get_all("cookie"):
            for part in header.split(";"):
                key, sep, value = part.strip().partition("=")
                if sep and key == name:
                    return value
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.host}{self.path}>"


@mypyc_attr(allow_interpreted_subclasses=True)
class Response:
    """The upstream's response (or a local reply) on its way to the client.

    Readable and writable in the response phase. ``body`` is the whole body only
    when a filter of the chain set ``response_body = True``; otherwise ``None``.
    Setting ``body`` to new bytes replaces it (Content-Length is fixed up).

    ``trailers`` are the fields an HTTP/2 upstream sent after the body (a gRPC call's
    ``grpc-status`` and ``grpc-message``, say). They have arrived only when the body
    was read whole, so they are there for a chain with ``response_body = True`` (else
    ``None``, as for a response without trailers). A filter may change them; an
    HTTP/2 client gets them after the body, and so does an HTTP/1.1 client that sent
    ``TE: trailers`` when the response is chunked (others do not).
    """

    __slots__ = ("body", "headers", "status", "trailers")

    def __init__(
        self,
        status: int = 200,
        headers: Headers | None = None,
        body: bytes | None = None,
        trailers: Headers | None = None,
    ) -> None:
        self.status = status
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.trailers = trailers

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


@mypyc_attr(native_class=False)  # a plain dataclass, compiled or not
@dataclass(slots=True)
class LocalReply:
    """Answer the client from the gateway instead of the upstream.

    Return one from ``on_request`` to stop the chain: the upstream is not called,
    filters that already ran still get their response phase (so, for example, CORS
    headers decorate a 401), and the client gets this reply.
    """

    status: int
    headers: dict[str, str] | list[tuple[str, str]] = field(default_factory=dict)
    body: bytes | str = b""

    def header_pairs(self) -> list[tuple[str, str]]:
        h = self.headers
        return list(h.items()) if isinstance(h, dict) else list(h)

    def body_bytes(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body
