"""The client side of the gateway: an HTTP/1.1 server protocol on llhttp (httptools).

One :class:`ClientConnection` per accepted connection. It parses requests, enforces
the ``[server.limits]`` (431 headers, 414 URL, 413 body, 408 slow headers, idle
timeout), strips hop-by-hop and spoofable forwarding headers while parsing, refuses
ambiguous framing, hosts and paths and normalises the path (docs/configuration.md,
"Hostile input"), and hands each request to a :class:`core.proxy.Exchange`.
Exchanges run one at a time per
connection, in order; a pipelined request waits (and reading pauses) until the one
before it has been answered.

Reading is paused for three independent reasons, tracked as bits so that resuming
one does not undo another: the exchange's upstream cannot take the body as fast as it
comes (``PAUSE_UPSTREAM``), body arrives before the exchange has an upstream
(``PAUSE_BUFFER``), or a pipelined request is queued (``PAUSE_PIPELINE``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import re
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, cast

import httptools

import plugin_sdk as sdk
import plugin_sdk.http  # (compiled by mypyc, Request needs its base's module)
from core.deadline import Deadline
from core.headers import HOP_BY_HOP, connection_tokens
from core.tracecontext import start_trace
from core.trailers import accepts_trailers
from plugin_sdk import TLSInfo
from plugin_sdk.headers import Headers

if TYPE_CHECKING:
    from core.gateway import Gateway
    from core.proxy import Exchange

PAUSE_UPSTREAM: Final = 1
PAUSE_BUFFER: Final = 2
PAUSE_PIPELINE: Final = 4

STATUS_LINES: Final = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus
}


TEXT_PLAIN = b"text/plain; charset=utf-8"
# Headers the gateway sets itself on the replies it writes.
_FRAMING = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"date", b"keep-alive"}
)


# Host = uri-host [":" port] (RFC 9110 §7.2): an IP literal or a reg-name, here without
# percent-encoding (no DNS name has one, and the router compares names as sent).
_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=]+)(?::([0-9]{0,5}))?")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
_SLASHES = re.compile("/{2,}")
# Chunk-size lines and the CRLF after a chunk's data: what a chunk may add beyond its
# data before its extensions count against the bound (see ``data_received``).
_CHUNK_FRAMING = 24


# core.proxy imports this module, so Exchange is bound on first use; an import statement
# in on_headers_complete would cost every request a trip through the import machinery.
_exchange: type[Exchange] | None = None


def _exchange_type() -> type[Exchange]:
    global _exchange
    from core.proxy import Exchange

    _exchange = Exchange
    return Exchange


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


class Reject(Exception):
    """Raised inside parser callbacks to stop parsing with a status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Request(sdk.Request):
    """A parsed request: the SDK's view that filters see, plus what the proxy tracks."""

    __slots__ = (
        "chunked",
        "conn_id",
        "conn_values",
        "content_length",
        "expect_continue",
        "has_tracestate",
        "keep_alive",
        "orig_host",
        "parent_id",
        "sampled",
        "span_id",
        "start",
        "te_trailers",
        "tp_in",
        "traceparent",
        "upgrade",
        "upstream_address",
        "xff",
        "xfh",
        "xfp",
    )

    def __init__(self) -> None:  # fields are filled in by the parser callbacks
        self.method = "GET"
        self.target = b"/"
        self.path = self._orig_path = "/"
        self.query = self._orig_query = ""
        self.version = "1.1"
        self.headers = Headers([])
        self.host = ""
        self.scheme = "http"
        self.client_ip = ""
        self.client_port = 0
        self.body = None
        self.trailers = None
        self.te_trailers = False  # the client sent `TE: trailers` (HTTP/1.1)
        self.keep_alive = True
        self.orig_host = ""  # the Host the client sent, whatever filters do to .host
        self.upgrade: bytes | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.conn_values: list[bytes] = []
        self.xff: list[bytes] = []
        self.xfp: bytes | None = None
        self.xfh: bytes | None = None
        self.start = 0.0
        self.conn_id = 0  # the client connection's number in this process
        self.upstream_address = ""  # the endpoint (host:port) of the last try, once picked
        # Trace context (core/tracecontext.py): what the client sent, what we send on.
        self.tp_in: bytes | None = None
        self.has_tracestate = False
        self.trace_id = ""
        self.span_id = ""
        self.parent_id = ""
        self.sampled = False
        self.traceparent = b""

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header(self, name: str) -> str | None:
        """First value of a header (name lower-case; "host" included), or None."""
        if name == "host":
            return self.host
        key = name.encode("latin-1")
        for n, v in self.headers.raw:
            if n.lower() == key:
                return v.decode("latin-1")
        return None


# What each special request header does while parsing; anything else is forwarded.
_SPECIAL: Final = {
    b"host": 1,
    b"content-length": 2,
    b"transfer-encoding": 3,
    b"connection": 4,
    b"upgrade": 5,
    b"expect": 6,
    b"x-forwarded-for": 7,
    b"x-forwarded-proto": 8,
    b"x-forwarded-host": 9,
    b"x-real-ip": 10,
    # Identity the gateway vouches for (core/tls.py): never taken from a client.
    b"x-client-cert-subject": 10,
    b"x-client-cert-san": 10,
    # CGI turns it into HTTP_PROXY, which many HTTP clients take as their proxy (httpoxy).
    b"proxy": 10,
    b"traceparent": 11,
    b"tracestate": 12,
}


CONNECTION_IDS = itertools.count(1)  # connection.id for Proxy-Wasm filters


class ClientConnection(asyncio.Protocol):
    """One client connection: parse, limit, and run exchanges in order."""

    def __init__(self, gateway: Gateway, scheme: str = "http", *, h2c: bool = True) -> None:
        self.gateway = gateway
        self.loop = gateway.loop
        self.scheme = scheme
        self.limits = gateway.snapshot.config.server.limits
        self.max_body_bytes = gateway.snapshot.router.max_body_bytes  # before routing
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ("", 0)
        self.conn_id = next(CONNECTION_IDS)
        self.tls: TLSInfo | None = None  # set for HTTPS connections once the handshake is done
        self.cert_headers = b""  # X-Client-Cert-* lines for the upstream, when forwarded
        self.closing = False
        self.tunnel: Exchange | None = None
        self._upgrade_buffer: bytes | None = None
        self._req: Request | None = None
        self._url = b""
        self._head_bytes = 0
        self._head_seen = 0
        self._in_head = False
        self._framing = 0  # chunked-body bytes received beyond data and plain framing
        self._trailers: list[tuple[bytes, bytes]] = []  # of the body being read
        self._receiving: Exchange | None = None
        self.active: Exchange | None = None
        self._queue: collections.deque[Exchange] = collections.deque()
        self._paused = 0
        self.write_paused = False
        self._deadline = Deadline(self.loop)  # header and idle timeouts, one at a time
        self.exchange_deadline = Deadline(self.loop)  # the running exchange's timeouts
        self._pending_reject: tuple[int, str] | None = None
        self._host_raw: bytes | None = None  # the last Host value found valid, and as str
        self._host = ""
        # The connection's first bytes while they may be HTTP/2's preface (h2c).
        self._first: bytes | None = None
        if scheme == "http" and h2c and gateway.snapshot.config.server.http2.cleartext:
            self._first = b""

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = (str(peer[0]), int(peer[1]))
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            from core.tls import connection_info, header_value

            server_tls = self.gateway.snapshot.tls
            tls = connection_info(sslobj)
            refusal = None
            if server_tls is not None:
                tls, refusal = server_tls.admit(sslobj, tls)
            if refusal is not None:
                self.gateway.log_refused_tls(self.peer, refusal)
                self.gateway.connections.add(self)  # connection_lost discards it
                self.transport.abort()
                return
            self.tls = tls
            if tls.peer_subject and server_tls is not None and server_tls.forward_client_cert:
                self.cert_headers = (
                    b"X-Client-Cert-Subject: " + header_value(tls.peer_subject) + b"\r\n"
                    b"X-Client-Cert-SAN: " + header_value(", ".join(tls.peer_sans)) + b"\r\n"
                )
            if sslobj.selected_alpn_protocol() == "h2":
                self._to_http2(b"")
                return
        self.gateway.connections.add(self)
        # Until its first byte a new connection gets request_header_timeout, as nginx's
        # client_header_timeout; idle_timeout is the wait between requests.
        self._arm(self.limits.request_header_timeout, self._on_idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._first is not None:
            from core.http2 import sniff

            data = self._first + data
            h2c = sniff(data)
            if h2c is None:
                self._first = data
                return
            self._first = None
            if h2c:
                self._to_http2(data)
                return
        if self.tunnel is not None:
            self.tunnel.on_client_tunnel_data(data)
            return
        if self._upgrade_buffer is not None:
            self._upgrade_buffer += data
            return
        receiving = self._receiving
        if receiving is not None and receiving.req.chunked:
            self._framing += len(data)  # on_body and on_chunk_header take back their share
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade_buffer = data[exc.args[0] :]
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Reject):
                self._reject(cause.status, cause.reason)
            else:
                self._reject(400, "bad request")
        except httptools.HttpParserError as exc:
            self._reject(400, f"bad request: {exc}")
        else:
            if self._in_head:
                # httptools holds a partial header line in memory; bound what a head
                # that never ends can cost (the exact check is in on_header).
                self._head_seen += len(data)
                if self._head_seen > self.limits.max_header_bytes + 65536:
                    self._reject(431, "request header fields too large")
            elif self._framing > self.limits.max_header_bytes and self._receiving is not None:
                # llhttp skips chunk extensions and httptools buffers trailers without
                # bound; neither is forwarded, so together they get the head's budget.
                self._reject(400, "chunk extensions or trailers too large")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._deadline.close()
        self.exchange_deadline.close()
        self.gateway.connections.discard(self)
        if self.active is not None:
            self.active.on_client_lost()
        for queued in self._queue:
            queued.on_client_lost()
        self._queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.active is not None:
            self.active.on_client_pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None:
            self.active.on_client_resume()

    def _to_http2(self, data: bytes) -> None:
        """Hand the connection to HTTP/2 (core/http2.py), with the bytes read so far."""
        from core.http2 import ServerConnection

        self._disarm()
        self.closing = True
        self.gateway.connections.discard(self)
        assert self.transport is not None
        conn = ServerConnection(self.gateway, self.scheme, self.peer, self.tls, self.cert_headers)
        self.transport.set_protocol(conn)
        conn.connection_made(self.transport)
        if data:
            conn.data_received(data)

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        req = Request()
        req.client_ip, req.client_port = self.peer
        req.scheme = self.scheme
        req.start = time.monotonic()
        req.conn_id = self.conn_id
        self._req = req
        self._url = b""
        self._in_head = True
        self._head_bytes = 0
        self._head_seen = 0
        self._deadline.arm(self.limits.request_header_timeout, self._on_header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_url_bytes:
            raise Reject(414, "request URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            # A trailer field of a chunked body: kept apart from the head that was
            # checked, and handed over as trailers at the message's end (core/trailers.py).
            self._trailers.append((name, value))
            return
        req = self._req
        assert req is not None
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.limits.max_header_bytes:
            raise Reject(431, "request header fields too large")
        lname = name.lower()
        kind = _SPECIAL.get(lname)
        if kind is None:
            if lname in HOP_BY_HOP or lname.startswith(b"proxy-"):
                if lname == b"te" and accepts_trailers(value):
                    req.te_trailers = True
                return
            # .find, not `in`: `bytes in bytes` first tries the needle as an int, and
            # raising and clearing that TypeError costs more than the search.
            if lname.find(b"_") >= 0 and lname.replace(b"_", b"-") in _SPECIAL:
                return  # X_Real_IP: CGI and WSGI servers read it as X-Real-IP
            req.headers.raw.append((name, value))
        elif kind == 1:
            if req.host:
                raise Reject(400, "duplicate Host header")
            if value != self._host_raw:  # a connection tends to send one Host throughout
                host = _HOST.fullmatch(value)
                if host is None or int(host[1] or 0) > 65535:
                    raise Reject(400, "invalid Host header")
                self._host_raw = value
                self._host = value.decode("latin-1")
            req.host = self._host
        elif kind == 2:
            # llhttp has validated it (digits only, one value); the upstream gets the
            # number we parsed, not the client's spelling of it.
            req.content_length = int(value)
            req.headers.raw.append((name, b"%d" % req.content_length))
        elif kind == 3:
            # Only chunked is decoded; other codings would reach the upstream unlabelled.
            # Without chunked as the final coding the body's length is unknown: 400
            # (RFC 9112 §6.3); with another coding before it: 501 (§6.1).
            codings = value.lower().split(b",")
            if codings[-1].strip() != b"chunked":
                raise Reject(400, "Transfer-Encoding without a final chunked")
            if len(codings) > 1:
                raise Reject(501, "unsupported Transfer-Encoding")
            req.chunked = True
        elif kind == 4:
            req.conn_values.append(value)
        elif kind == 5:
            req.upgrade = value
        elif kind == 6:
            if value.lower() == b"100-continue":
                req.expect_continue = True
            else:
                raise Reject(417, "unsupported Expect")
        elif kind == 7:
            req.xff.append(value)
        elif kind == 8:
            req.xfp = value
        elif kind == 9:
            req.xfh = value
        elif kind == 11:
            # Replaced by ours when the head goes upstream; a second one is invalid.
            req.tp_in = value if req.tp_in is None else b""
        elif kind == 12:
            req.has_tracestate = True
            req.headers.raw.append((name, value))
        # kind 10 (X-Real-IP, X-Client-Cert-*) is dropped: the gateway sets them itself.

    def on_headers_complete(self) -> None:
        req = self._req
        assert req is not None
        self._in_head = False
        self._framing = 0
        self._deadline.disarm()
        parser = self.parser
        req.method = parser.get_method().decode("ascii")
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive() and not self.gateway.draining
        if req.version != "1.1" and req.version != "1.0":  # llhttp also takes 0.9 and 2.0
            raise Reject(505, "HTTP version not supported")
        if req.method == "CONNECT":
            raise Reject(405, "CONNECT is not supported")
        if not req.host and req.version == "1.1":  # with an absolute-form target too
            raise Reject(400, "missing Host header")
        target = self._url
        req.target = target
        if target.find(b"#") >= 0:  # upstreams would cut it off after we routed with it
            raise Reject(400, "fragment in request target")
        if target[:1] != b"/":
            if not self._absolute_form(req, target):
                raise Reject(400, "invalid request target")
        else:
            path, _, query = target.decode("latin-1").partition("?")
            req.path = req._orig_path = path
            req.query = req._orig_query = query
        path = req.path
        if "%" in path or "/." in path or "//" in path or "\\" in path:
            # Route on the path the upstream will see, and send it that very path.
            normal = self._normalise_path(path)
            if normal != path:
                req.target = normal.encode("latin-1") + req.target[len(path) :]
                req.path = req._orig_path = normal
        if req.chunked and req.version != "1.1":
            # RFC 9112 §6.1: faulty framing; a proxy before us may have read it otherwise.
            raise Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        if req.conn_values:
            drop = connection_tokens(req.conn_values)
            if drop:
                raw = req.headers.raw
                raw[:] = [(n, v) for n, v in raw if n.lower() not in drop]
        req.orig_host = req.host
        start_trace(req, self.gateway.sample_ratio)
        has_body = req.has_body
        if has_body and parser.should_upgrade():
            # llhttp hands all that follows an upgrade request's head to the upgrade, so
            # the body would never reach the upstream, which would wait for it (and time
            # out, held against a healthy endpoint).
            raise Reject(400, "request body with Upgrade is not supported")
        if not parser.should_upgrade():
            req.upgrade = None
        elif req.upgrade is None or req.upgrade.strip().lower() != b"websocket":
            # Only WebSocket is tunnelled. Another protocol (h2c above all) would turn
            # the connection into a tunnel to the upstream that no route or filter sees:
            # the request goes on as a plain one, and the connection closes after it.
            req.upgrade = None
        # The largest bound of any route; the exchange applies its route's own.
        limit = self.max_body_bytes
        if limit and req.content_length is not None and req.content_length > limit:
            raise Reject(413, "request body too large")
        if self.closing:  # an exchange answered in this same read closed the connection
            return
        exchange = (_exchange or _exchange_type())(self, req)
        self._receiving = exchange
        if self.active is None:
            self.active = exchange
            # Without a body the exchange's first step runs now, without a Task
            # (core/drive.py); one after another in a pipeline they take Tasks, so a
            # run of answers never nests.
            exchange.start(now=not has_body and req.upgrade is None)
        else:
            self._queue.append(exchange)
            self.pause(PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        self._framing -= len(body)
        if self._receiving is not None:
            self._receiving.on_request_body(body)

    def on_chunk_header(self) -> None:
        self._framing -= _CHUNK_FRAMING

    def on_message_complete(self) -> None:
        if self._trailers:
            fields, self._trailers = self._trailers, []
            if self._receiving is not None:
                self._receiving.on_request_trailers(fields)
        if self._receiving is not None:
            self._receiving.on_request_end()
            self._receiving = None

    # -- helpers for parsing

    @staticmethod
    def _absolute_form(req: Request, target: bytes) -> bool:
        try:
            # Any: httptools' stubs type the fields bytes, but an absent part is None.
            url: Any = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            return False
        if not url.host or url.schema not in (b"http", b"https"):
            return False
        if url.userinfo:  # RFC 9110 §4.2.4: a sign of an authority made to mislead
            raise Reject(400, "userinfo in request target")
        host = url.host.decode("latin-1")
        if ":" in host:
            host = f"[{host}]"
        req.host = f"{host}:{url.port}" if url.port else host
        if _HOST.fullmatch(req.host.encode("latin-1")) is None:
            return False
        req.path = req._orig_path = (url.path or b"/").decode("latin-1")
        req.query = req._orig_query = (url.query or b"").decode("latin-1")
        req.target = (url.path or b"/") + (b"?" + url.query if url.query else b"")
        return True

    @staticmethod
    def _normalise_path(path: str) -> str:
        """The path to route on and to forward: percent-encoded unreserved characters
        decoded (``/%61dmin`` is ``/admin``, RFC 3986 §6.2.2.2) and runs of ``/``
        merged. What upstreams read in different ways is refused (400): a ``\\``, an
        encoded ``/`` or ``\\``, an encoded control character (``%00``), a broken
        ``%`` escape, and a ``.`` or ``..`` segment, also as ``%2e`` or ``..;x``.
        """
        if "\\" in path:
            raise Reject(400, "backslash in path")
        if "%" in path:
            first, *rest = path.split("%")
            out = [first]
            for piece in rest:
                code = piece[:2]
                if len(code) != 2 or not _HEXDIGITS.issuperset(code):
                    raise Reject(400, "invalid percent-encoding in path")
                char = chr(int(code, 16))
                if char in _UNRESERVED:
                    out.append(char + piece[2:])
                elif char == "/" or char == "\\":
                    raise Reject(400, "encoded slash in path")
                elif char < " " or char == "\x7f":
                    raise Reject(400, "encoded control character in path")
                else:
                    out.append("%" + piece)
            path = "".join(out)
        if "//" in path:
            path = _SLASHES.sub("/", path)
        for segment in path.split("/"):
            # "..;x" is ".." to servlet containers, which drop ";" parameters.
            if segment.partition(";")[0] in (".", ".."):
                raise Reject(400, "dot segment in path")
        return path

    # -- used by exchanges

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        if self.transport is not None and not self.closing:
            self.transport.writelines(parts)

    def pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and self.transport is not None and not self.closing:
                self.transport.resume_reading()

    def send_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """Response trailers reach an HTTP/1.1 client in the last chunk, which the
        exchange writes (core/exchange_trailers.py): nothing to do here."""

    def start_tunnel(self, exchange: Exchange) -> None:
        self.tunnel = exchange
        rest, self._upgrade_buffer = self._upgrade_buffer, None
        if rest:
            exchange.on_client_tunnel_data(rest)

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        """The response to ``exchange`` is fully written; run the next or go idle."""
        if exchange is not self.active:
            return
        self.active = None
        if not keep_alive or self.closing or self._upgrade_buffer is not None:
            self.close()
            return
        if self._queue:
            self.active = self._queue.popleft()
            if not self._queue:
                self.resume(PAUSE_PIPELINE)
            self.active.start()
        elif self._pending_reject is not None:
            self._reject(*self._pending_reject)
        elif self.gateway.draining:
            self.close()
        elif not self._in_head:
            self._deadline.arm(self.limits.idle_timeout, self._on_idle_timeout)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self._disarm()
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        self.closing = True
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> None:
        if self.active is None and not self._in_head:
            self.close()

    def _reject(self, status: int, reason: str) -> None:
        """Answer a request that cannot be parsed or is over a limit, then close."""
        self._disarm()
        if self.active is not None and self._receiving is self.active:
            # The body of the request being proxied broke mid-way (a bad chunk): the
            # upstream connection is dropped, and the client gets the status if no
            # response has started (else the connection is cut).
            self.active.refuse_body(status, reason)
            return
        if self.active is not None:
            # A pipelined request is bad: answer it after the response in progress. If
            # its head was fine and its body is not, it is dropped from the queue.
            if self._receiving is not None and self._receiving in self._queue:
                self._queue.remove(self._receiving)
                self._receiving = None
            self._pending_reject = (status, reason)
            self.pause(PAUSE_PIPELINE)
            return
        req = self._req
        if req is not None and self._in_head and self._url:
            req.target = self._url[:2048]  # what we have of it, for the log
        sent = self.local_reply(status, reason, keep_alive=False)
        self.gateway.log_rejected(self, status, reason, req, sent)
        self.close()

    def local_reply(self, status: int, reason: str, *, keep_alive: bool) -> int:
        """Write a short ``text/plain`` reply; returns the body size."""
        body = (reason + "\n").encode("utf-8", "replace")
        return self.write_reply(
            status, [(b"Content-Type", TEXT_PLAIN)], body, keep_alive=keep_alive
        )

    def write_reply(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        keep_alive: bool,
        head_only: bool = False,
        version: str = "1.1",
    ) -> int:
        """Write a whole response from the gateway itself; returns the body size sent.

        Content-Length, Date and Connection are set here; framing headers in
        ``headers`` are dropped.
        """
        lines = [status_line(status)]
        for name, value in headers:
            if name.lower() not in _FRAMING:
                lines += (name, b": ", value, b"\r\n")
        lines += (
            b"Content-Length: %d\r\nDate: " % len(body), self.gateway.http_date(), b"\r\n"
        )  # fmt: skip
        if not keep_alive:
            lines.append(b"Connection: close\r\n\r\n")
        elif version == "1.0":
            lines.append(b"Connection: keep-alive\r\n\r\n")
        else:
            lines.append(b"\r\n")
        if not head_only and status not in (204, 304):
            lines.append(body)
        self.write(b"".join(lines))
        return 0 if head_only else len(body)

    # -- timers

    def _arm(self, delay: float, callback: Callable[[], object]) -> None:
        self._deadline.arm(delay, callback)

    def _disarm(self) -> None:
        self._deadline.disarm()

    def _on_idle_timeout(self) -> None:
        if self.active is None:
            self.close()

    def _on_header_timeout(self) -> None:
        if self._in_head:
            self._reject(408, "request header timeout")
