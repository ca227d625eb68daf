"""Upstream pools: endpoints, load balancing, passive health and keep-alive connections.

(Active health checks, which a pool may have besides, live in :mod:`core.health`.)

An :class:`UpstreamPool` is built once per configuration snapshot from an
``[[upstreams]]`` table. Per request the proxy asks it to :meth:`~UpstreamPool.pick`
an endpoint and for a connection to it: an idle pooled one when there is one (no
await), else a new one. Each :class:`UpstreamConnection` is an asyncio protocol that
parses the upstream's responses with llhttp (httptools) and hands the pieces to
whichever exchange is using it (:class:`ResponseListener`).

A pool with ``tls = true`` holds one client :class:`ssl.SSLContext`, built with the
pool (a CA bundle that cannot be loaded is a :class:`ConfigError`); every connection
it opens is TLS, and a failed handshake is a connect error, never a plain-text retry.

Library errors (``OSError``, ``ssl.SSLError``, ``TimeoutError``, httptools' parser
errors) are turned into the :mod:`core.errors` tree here and nowhere else.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
import os
import random
import re
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, cast

import httptools

import plugin_sdk.http  # noqa: F401  (compiled by mypyc, ResponseHead needs its base's module)
from core.config import Upstream, parse_address
from core.errors import (
    ConfigError,
    NoHealthyUpstream,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from core.headers import CONNECTION_OPTIONS, HOP_BY_HOP, connection_tokens, is_hop_by_hop
from core.metrics import count_ejection
from core.native import mypyc_attr
from plugin_sdk import Headers, Response

if TYPE_CHECKING:
    from core.health import CheckState, HealthChecker
    from core.upstream_h2 import H2Upstream

log = logging.getLogger("wasmgate.upstream")


class ResponseListener(Protocol):
    """What an :class:`UpstreamConnection` reports to the exchange using it."""

    def on_response_head(self, head: ResponseHead) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_end(self) -> None: ...
    def on_response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None: ...
    def on_upstream_error(self, exc: UpstreamError) -> None: ...
    def on_upstream_pause(self) -> None: ...
    def on_upstream_resume(self) -> None: ...
    def on_tunnel_data(self, data: bytes) -> None: ...


class ResponseHead(Response):
    """An upstream response: the SDK's Response that filters see, plus its framing."""

    __slots__ = ("chunked", "codings", "content_length", "keep_alive", "until_close")

    def __init__(self) -> None:
        self.status = 0
        self.headers = Headers([])
        self.body = None
        self.trailers = None
        self.content_length: int | None = None
        self.chunked = False
        self.codings = b""  # transfer codings other than the final chunked (e.g. gzip)
        self.keep_alive = True
        self.until_close = False


_NO_BODY_STATUS: Final = frozenset({204, 304})
# What on_header does with a response header (by lower-cased name); others are forwarded.
_RESPONSE_SPECIAL: Final = {name: 4 for name in HOP_BY_HOP} | {
    b"content-length": 1,
    b"transfer-encoding": 2,
    b"connection": 3,
}


@mypyc_attr(allow_interpreted_subclasses=True)  # core/upstream_h2.py's H2UpstreamStream
class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an endpoint."""

    h2 = False  # True for a stream on an HTTP/2 connection (core/upstream_h2.py)

    def __init__(self, endpoint: EndpointState) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.listener: ResponseListener | None = None
        self.closed = False
        self.head_request = False
        self.tunnel = False
        self._head = ResponseHead()
        self._conn_values: list[bytes] = []
        self._skip_interim = False
        self._in_body = False
        self._done = True

    # -- driven by the exchange

    def begin(self, listener: ResponseListener, *, head_request: bool) -> None:
        self.listener = listener
        self.head_request = head_request
        self._done = False
        self._in_body = False

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def detach(self) -> None:
        self.listener = None

    def close(self) -> None:
        self.listener = None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()

    @property
    def reusable(self) -> bool:
        return self._done and not self.closed and not self.tunnel and self._head.keep_alive

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        listener = self.listener
        if self.tunnel:
            if listener is not None:
                listener.on_tunnel_data(data)
            return
        if listener is None:  # bytes on an idle connection: it cannot be trusted any more
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.tunnel = True
            rest = data[exc.args[0] :]
            if rest and self.listener is not None:
                self.listener.on_tunnel_data(rest)
        except httptools.HttpParserError as exc:
            self.close()
            if self._done:  # the response is whole; only bytes after it were bad
                log.warning("upstream %s sent bytes after a response", self.endpoint.address)
            else:
                listener.on_upstream_error(UpstreamProtocolError(f"invalid response: {exc}"))

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.endpoint.forget(self)
        listener = self.listener
        self.listener = None
        if listener is None:
            return
        if self.tunnel:
            listener.on_response_end()
        elif self._in_body and self._head.until_close and exc is None:
            # The close ends such a body; a reset cuts it (an error below, not an end).
            self._done = True
            listener.on_response_end()
        elif not self._done:
            what = "reset" if exc else "closed"
            where = "in the response body" if self._in_body else "before a response"
            listener.on_upstream_error(
                UpstreamConnectError(f"upstream {what} the connection {where}")
            )

    def pause_writing(self) -> None:
        if self.listener is not None:
            self.listener.on_upstream_pause()

    def resume_writing(self) -> None:
        if self.listener is not None:
            self.listener.on_upstream_resume()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self._done:
            # A response nobody asked for: bytes past the end of the last one (more body
            # than its Content-Length, a body to HEAD). Never parse them as the next
            # response: stop the parser; data_received closes the connection.
            raise UpstreamProtocolError("bytes after the end of a response")
        self._head = ResponseHead()
        self._conn_values = []

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        kind = _RESPONSE_SPECIAL.get(lname)
        if kind is None:
            if not lname.startswith(b"proxy-"):  # hop-by-hop too (core/headers.py)
                self._head.headers.raw.append((name, value))
        elif kind == 1:  # Content-Length: forwarded as received
            self._head.content_length = int(value)
            self._head.headers.raw.append((name, value))
        elif kind == 2:
            head = self._head
            codings = [c.strip() for c in value.split(b",") if c.strip()]
            if codings and codings[-1].lower() == b"chunked":
                head.chunked = True
                codings.pop()
            if codings:
                head.codings = b", ".join([head.codings, *codings] if head.codings else codings)
        elif kind == 3 and value.lower() not in CONNECTION_OPTIONS:
            # (A lone "keep-alive" or "close" names no header to strip; llhttp reads it.)
            self._conn_values.append(value)
        # kind 4: another hop-by-hop header, not forwarded

    def on_headers_complete(self) -> None:
        head = self._head
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._skip_interim = True  # 100 Continue, 103 Early Hints: not forwarded
            return
        head.status = status
        head.keep_alive = self.parser.should_keep_alive()
        if head.chunked and head.content_length is not None:
            # Transfer-Encoding wins (RFC 9112 §6.3); the length is not forwarded.
            head.content_length = None
            head.headers.remove("content-length")
        if self._conn_values:
            drop = connection_tokens(self._conn_values)
            if drop:
                raw = head.headers.raw
                raw[:] = [(n, v) for n, v in raw if n.lower() not in drop]
        no_body = self.head_request or status in _NO_BODY_STATUS or status == 101
        if not no_body and head.content_length is None and not head.chunked:
            head.until_close = True
            head.keep_alive = False
        listener = self.listener
        if listener is None:
            return
        listener.on_response_head(head)
        if status == 101:
            return
        if no_body:
            # llhttp cannot be told that a HEAD response has no body; start afresh.
            self.parser = httptools.HttpResponseParser(self)
            self._done = True
            if self.listener is not None:
                self.listener.on_response_end()
            return
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        if self.listener is not None and self._in_body:
            self.listener.on_response_body(body)

    def on_message_complete(self) -> None:
        if self._skip_interim:
            self._skip_interim = False
            return
        if not self._in_body:
            return
        self._in_body = False
        self._done = True
        if self.listener is not None:
            self.listener.on_response_end()


class EndpointState:
    """One endpoint of a pool: address, weight, idle connections, health.

    It takes traffic while passive health has not ejected it (``ejected_until``) and
    active checks have not found it unhealthy (``down``, kept by :mod:`core.health`).
    """

    __slots__ = (
        "active",
        "address",
        "check",
        "down",
        "ejected_until",
        "failures",
        "host",
        "idle",
        "max_idle",
        "port",
        "weight",
    )

    def __init__(self, address: str, weight: int, max_idle: int) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.weight = weight
        self.idle: list[UpstreamConnection] = []
        self.max_idle = max_idle
        self.active = 0
        self.failures = 0
        self.ejected_until = 0.0
        self.down = False
        self.check: CheckState | None = None  # with active checks

    def healthy(self, now: float) -> bool:
        return self.ejected_until <= now and not self.down

    def forget(self, conn: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def __repr__(self) -> str:
        return f"<endpoint {self.address}>"


def _smooth_weighted_order(weights: list[int]) -> list[int]:
    """Index sequence of one smooth weighted round-robin cycle (as nginx spreads it)."""
    current = [0] * len(weights)
    total = sum(weights)
    order = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        order.append(best)
    return order


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class UpstreamPool:
    """The compiled form of one ``[[upstreams]]`` table."""

    RING_POINTS = 160  # virtual nodes per unit of weight for consistent hashing

    def __init__(self, cfg: Upstream, base_dir: Path = Path()) -> None:
        """Raises OSError (``ssl.SSLError`` included) for a ``tls_ca`` it cannot load."""
        self.cfg = cfg
        self.base_dir = base_dir
        self.name = cfg.name
        self.tls = tls_context(cfg, base_dir)
        self.sni = tls_server_name(cfg)  # None: each endpoint's host
        self.endpoints = [EndpointState(e.address, e.weight, cfg.keepalive) for e in cfg.endpoints]
        self.per_try_timeout = cfg.per_try_timeout or cfg.read_timeout
        self._rr_order = _smooth_weighted_order([e.weight for e in self.endpoints])
        self._rr_next = 0
        cum = 0
        self._cum_weights = []
        for e in self.endpoints:
            cum += e.weight
            self._cum_weights.append(cum)
        self._ring: list[int] = []
        self._ring_owner: list[int] = []
        if cfg.balance == "consistent_hash":
            points = sorted(
                (_hash64(f"{e.address}#{i}"), idx)
                for idx, e in enumerate(self.endpoints)
                for i in range(self.RING_POINTS * e.weight)
            )
            self._ring = [p for p, _ in points]
            self._ring_owner = [o for _, o in points]
        self.hash_header = (
            cfg.hash_on.header.lower() if cfg.hash_on and cfg.hash_on.header else None
        )
        self.hash_cookie = cfg.hash_on.cookie if cfg.hash_on else None
        self.checker: HealthChecker | None = None  # set by core.health.start_checks
        self.closed = False
        # HTTP/2 upstreams: every connection per endpoint address (streams, not
        # connections, are taken and released; core/upstream_h2.py).
        self.h2_conns: dict[str, list[H2Upstream]] | None = None
        self.h2_pending: dict[str, asyncio.Future[None]] = {}  # connects in progress
        if cfg.protocol != "http1":
            self.h2_conns = {}

    # -- choosing

    def pick(
        self, hash_key: str | None = None, exclude: EndpointState | None = None
    ) -> EndpointState:
        """An endpoint for the next try; raises NoHealthyUpstream."""
        now = time.monotonic()
        eps = self.endpoints
        if len(eps) <= 1:
            if eps and eps[0].ejected_until <= now and not eps[0].down:  # .healthy(now)
                return eps[0]
            what = "healthy endpoint" if eps else "endpoint"
            raise NoHealthyUpstream(f"no {what} in upstream '{self.name}'")
        balance = self.cfg.balance
        if balance == "round_robin":
            order = self._rr_order
            n = len(order)
            for _ in range(n):
                ep = eps[order[self._rr_next % n]]
                self._rr_next += 1
                if ep.healthy(now) and ep is not exclude:
                    return ep
        elif balance == "consistent_hash" and hash_key is not None:
            start = bisect.bisect(self._ring, _hash64(hash_key))
            ring_len = len(self._ring)
            for step in range(ring_len):
                ep = eps[self._ring_owner[(start + step) % ring_len]]
                if ep.healthy(now) and ep is not exclude:
                    return ep
        elif balance == "least_request":
            a, b = self._weighted_random(now, exclude), self._weighted_random(now, exclude)
            if a is not None and b is not None:
                return a if a.active / a.weight <= b.active / b.weight else b
        else:  # random, or consistent_hash without a key
            ep_or_none = self._weighted_random(now, exclude)
            if ep_or_none is not None:
                return ep_or_none
        healthy = [e for e in eps if e.healthy(now)]
        if healthy:
            return healthy[0]
        raise NoHealthyUpstream(f"no healthy endpoint in upstream '{self.name}'")

    def _weighted_random(self, now: float, exclude: EndpointState | None) -> EndpointState | None:
        eps = self.endpoints
        for _ in range(4):
            x = random.random() * self._cum_weights[-1]
            ep = eps[bisect.bisect(self._cum_weights, x)]
            if ep.healthy(now) and ep is not exclude:
                return ep
        candidates = [e for e in eps if e.healthy(now) and e is not exclude]
        if not candidates:
            return None
        return random.choices(candidates, weights=[e.weight for e in candidates])[0]

    # -- health

    def report(self, ep: EndpointState, ok: bool) -> None:
        if ok:
            ep.failures = 0
            return
        ep.failures += 1
        if ep.failures >= self.cfg.health.max_failures:
            ep.ejected_until = time.monotonic() + self.cfg.health.eject_seconds
            ep.failures = 0
            count_ejection(self.name, ep.address)

    # -- connections

    def take_idle(self, ep: EndpointState) -> UpstreamConnection | None:
        if self.h2_conns is not None:
            from core.upstream_h2 import take_stream

            return take_stream(self.h2_conns.setdefault(ep.address, []))
        idle = ep.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def connect(self, ep: EndpointState) -> UpstreamConnection:
        if self.h2_conns is not None:
            from core.upstream_h2 import connect_stream

            return await connect_stream(self, ep)
        proto = await self.open_connection(ep, lambda: UpstreamConnection(ep))
        assert isinstance(proto, UpstreamConnection)
        return proto

    async def open_connection(
        self, ep: EndpointState, factory: Callable[[], asyncio.Protocol]
    ) -> asyncio.Protocol:
        """A new connection to ``ep`` (TLS per the pool); raises UpstreamError."""
        loop = asyncio.get_running_loop()
        tls = self.tls
        try:
            async with asyncio.timeout(self.cfg.connect_timeout):  # the handshake included
                _, proto = await loop.create_connection(
                    factory,
                    ep.host,
                    ep.port,
                    ssl=tls,
                    server_hostname=(self.sni or ep.host) if tls is not None else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(f"connect to {ep.address} timed out") from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(
                f"TLS handshake with {ep.address} failed: {ssl_reason(exc)}"
            ) from None
        except OSError as exc:
            # asyncio's loop words a refused connect "Connect call failed (addr)"; the
            # errno's own text ("Connection refused") reads the same on every loop.
            reason = (os.strerror(exc.errno) if exc.errno else exc.strerror) or type(exc).__name__
            raise UpstreamConnectError(f"connect to {ep.address} failed: {reason}") from None
        return proto

    @staticmethod
    def release(conn: UpstreamConnection) -> None:
        """Return a connection after its exchange; pooled if it can be reused."""
        conn.detach()
        ep = conn.endpoint
        if conn.reusable and len(ep.idle) < ep.max_idle:
            ep.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self.closed = True
        if self.checker is not None:
            self.checker.stop()
        for ep in self.endpoints:
            while ep.idle:
                ep.idle.pop().close()
        for conns in (self.h2_conns or {}).values():
            for conn in list(conns):
                conn.close()


def build_pools(
    upstreams: Sequence[Upstream],
    source: str,
    reuse: dict[str, UpstreamPool] | None = None,
) -> dict[str, UpstreamPool]:
    """One pool per ``[[upstreams]]`` table; raises ConfigError naming ``tls_ca``.

    A pool of ``reuse`` (the previous snapshot's) whose table is unchanged is taken
    as it is, with its keep-alive connections, endpoint health and health checker: a
    reload does not make upstreams reconnect or forget an ejected or unhealthy endpoint.
    """
    base_dir = Path(source).parent if source and not source.startswith("<") else Path()
    pools: dict[str, UpstreamPool] = {}
    problems: list[str] = []
    for i, cfg in enumerate(upstreams):
        old = reuse.get(cfg.name) if reuse else None
        if old is not None and old.cfg == cfg and old.base_dir == base_dir:
            pools[cfg.name] = old
            continue
        try:
            pools[cfg.name] = UpstreamPool(cfg, base_dir)
        except OSError as exc:
            field, path, what = _failed_file(cfg, base_dir)
            if isinstance(exc, ssl.SSLError):
                reason = f"not a {what} ({ssl_reason(exc)})"
            else:
                reason = exc.strerror or type(exc).__name__
            problems.append(f"upstreams[{i}].{field}: cannot load {str(path)!r}: {reason}")
    if problems:
        raise ConfigError(source, problems)
    return pools


def _failed_file(cfg: Upstream, base_dir: Path) -> tuple[str, Path, str]:
    """Which TLS file of ``cfg`` could not be loaded: the CA bundle unless it loads."""
    if cfg.tls_ca is not None:
        try:
            ssl.create_default_context(cafile=base_dir / cfg.tls_ca)
        except (OSError, ssl.SSLError):
            return "tls_ca", base_dir / cfg.tls_ca, "PEM CA bundle"
    if cfg.tls_cert is not None and not (base_dir / cfg.tls_cert).is_file():
        return "tls_cert", base_dir / cfg.tls_cert, "PEM certificate"
    if cfg.tls_key is not None and not (base_dir / (cfg.tls_key)).is_file():
        return "tls_key", base_dir / cfg.tls_key, "PEM key"
    return "tls_cert", base_dir / (cfg.tls_cert or ""), "certificate and key pair"


def tls_context(cfg: Upstream, base_dir: Path) -> ssl.SSLContext | None:
    """The client context of a ``tls = true`` pool (None for plain text)."""
    if not cfg.tls:
        return None
    cafile = base_dir / cfg.tls_ca if cfg.tls_ca is not None else None
    ctx = ssl.create_default_context(cafile=cafile)  # no cafile: the system's store
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"] if cfg.protocol == "h2" else ["http/1.1"])
    if not cfg.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.tls_cert is not None and cfg.tls_key is not None:
        ctx.load_cert_chain(base_dir / cfg.tls_cert, base_dir / cfg.tls_key)
    return ctx


def tls_server_name(cfg: Upstream) -> str | None:
    """The SNI name (and the name verified): ``tls_sni``, else host_header's host."""
    if cfg.tls_sni is not None:
        return cfg.tls_sni
    if cfg.host_header:
        try:
            return parse_address(cfg.host_header, default_port=0)[0]
        except ValueError:
            return cfg.host_header
    return None


_SSL_NOISE = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")


def ssl_reason(exc: ssl.SSLError) -> str:
    """``certificate verify failed: Hostname mismatch, ...`` rather than OpenSSL's
    ``[SSL: CERTIFICATE_VERIFY_FAILED] ... (_ssl.c:1006)``."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    return _SSL_NOISE.sub("", text) or str(exc.reason or type(exc).__name__)


# ----------------------------------------------------------------------- calls out


class _Collector:
    """A ResponseListener that keeps a whole (small) response, for :func:`fetch`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: ResponseHead | None = None
        self.body: list[bytes] = []
        self.trailers: list[tuple[bytes, bytes]] = []
        self.done: asyncio.Future[None] = loop.create_future()

    def on_response_head(self, head: ResponseHead) -> None:
        self.head = head

    def on_response_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_response_end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def on_upstream_error(self, exc: UpstreamError) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def on_response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.trailers = fields

    def on_upstream_pause(self) -> None:
        pass

    def on_upstream_resume(self) -> None:
        pass

    def on_tunnel_data(self, data: bytes) -> None:
        pass


_CALL_DROPPED = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})


async def fetch(
    pool: UpstreamPool,
    method: str,
    target: bytes,
    authority: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    timeout: float,
    trailers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through ``pool`` (its endpoints, keep-alive connections and health):
    (status, headers, body). Used for calls a filter makes (Proxy-Wasm's
    ``proxy_http_call`` and ``proxy_grpc_call``); an HTTP/2 upstream's trailers are
    appended to ``trailers`` when given. Raises :class:`UpstreamError`."""
    loop = asyncio.get_running_loop()
    ep = pool.pick()
    try:
        async with asyncio.timeout(timeout):
            conn = pool.take_idle(ep) or await pool.connect(ep)
            listener = _Collector(loop)
            conn.begin(listener, head_request=method == "HEAD")
            if conn.h2:
                from core.upstream_h2 import H2UpstreamStream, request_fields

                assert isinstance(conn, H2UpstreamStream)
                authority = authority or ep.address.encode("latin-1")
                fields = request_fields(
                    method, conn.scheme, authority, target, headers, [], len(body)
                )
                conn.send_head(fields, end=not body)
                if body:
                    conn.write(body)
                    conn.end_body()
                parts: list[bytes] = []
            else:
                parts = [method.encode("latin-1"), b" ", target, b" HTTP/1.1\r\nHost: "]
            if parts:
                parts.append(authority or ep.address.encode("latin-1"))
                parts.append(b"\r\n")
                for name, value in headers:
                    if name.lower() not in _CALL_DROPPED and not is_hop_by_hop(name.lower()):
                        parts += (name, b": ", value, b"\r\n")
                parts += (b"Content-Length: %d\r\n\r\n" % len(body), body)
                conn.write(b"".join(parts))
            try:
                await listener.done
            except BaseException:
                conn.close()
                raise
    except TimeoutError:
        pool.report(ep, False)
        raise UpstreamTimeout(f"call to upstream '{pool.name}' timed out") from None
    except UpstreamError:
        pool.report(ep, False)
        raise
    pool.report(ep, True)
    UpstreamPool.release(conn)
    if trailers is not None:
        trailers += listener.trailers
    head = listener.head
    assert head is not None
    return head.status, head.headers.raw, b"".join(listener.body)
