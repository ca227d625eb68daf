"""One request's trip through the gateway: route, pick an upstream, stream both ways.

An :class:`Exchange` is created by :class:`core.http1.ClientConnection` when a
request's headers are complete and runs as one coroutine: an asyncio Task, or, for a
request without a body, stepped from callbacks without a Task until it needs one
(core/drive.py). Bodies never pass through the coroutine: request body chunks are
written to the upstream connection from the client's ``data_received``, and response
body chunks to the client from the upstream's, with reading paused on whichever side
is ahead (so a 200 MB upload or download holds at most a few socket buffers). The
coroutine only waits for the response head and the end.

Retries (``upstreams.retries``) happen only where safe: after a connect failure for
any method; after a reset, timeout, 502 or 503 before the response head for
idempotent methods only (also on a reused keep-alive connection the upstream closed:
a POST that reached the upstream may have been acted on); and never once a part of
a request body that cannot be replayed has been sent.

Filters that take body chunks as they stream (a Proxy-Wasm module's body callbacks)
get them through a :class:`~core.bodies.BodyPipe` per direction, set up once the
filters' header phase ran; the proxy forwards what comes out of it. The message head
waits for the pipe's first bytes (or its end), so a filter that holds the body may
still change the headers; the forwarded body is then framed by the gateway: with its
exact ``Content-Length`` when the whole of it came out before the head went, else
chunked (or, to an HTTP/1.0 client, delimited by closing the connection). A response
body that is all here when the response phase ends (one chunk) goes through the hooks
without a pipe (:func:`~core.bodies.through_whole`), unless a hook holds its end.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

from core.bodies import BodyPipe, through_whole
from core.drive import IN_TASK, Driven
from core.errors import (
    NoHealthyUpstream,
    RequestBodyTimeout,
    UpstreamError,
    UpstreamTimeout,
)
from core.exchange_trailers import TrailerSide
from core.http1 import PAUSE_BUFFER, PAUSE_UPSTREAM, TEXT_PLAIN, status_line
from core.metrics import record_exchange
from core.native import mypyc_attr
from core.upstream import ResponseHead, UpstreamConnection, UpstreamPool
from plugin_sdk import Context, Headers, LocalReply, Response
from plugin_sdk.chain import Chain, reply_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from core.client_side import ClientSide
    from core.gateway import Snapshot
    from core.http1 import Request
    from core.router import RouteTarget
    from core.upstream import EndpointState
    from plugin_sdk.chain import FilterInstance
    from plugin_sdk.filter import ChunkHook

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
BUFFER_LIMIT: Final = 256 * 1024  # body bytes held before an upstream is attached / head written
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})  # 14 and 17 long
# "Content-Length: n\r\n" by n, for a filtered head (bodies of the same size recur).
_LENGTH_LINES: Final[dict[int, bytes]] = {}


def _framing(name: bytes) -> bool:
    """Whether a header name 14 or 17 bytes long is Content-Length or Transfer-Encoding:
    as usually spelled by a byte compare, else in any case (one ``.lower()``)."""
    return name == b"Content-Length" or name == b"Transfer-Encoding" or name.lower() in _FRAMING


def _response_of(ctx: Context) -> Response | None:
    """``ctx.response`` after the response phase. A call of its own: right after
    ``ctx.response = head`` mypy narrows it to ResponseHead, and code compiled by mypyc
    (make compile) would trust that even when a filter replaced it."""
    return ctx.response


class ClientGone(Exception):
    """The client went away; stop and log 499."""


class Abandon(Exception):
    """A local reply was already given mid-exchange (e.g. 413); stop quietly."""


@mypyc_attr(allow_interpreted_subclasses=True)  # core/http2_stream.py's H2Exchange
class Exchange(TrailerSide):
    """Proxies one request; see the module docstring (trailers: core/exchange_trailers.py)."""

    __slots__ = (
        "_abandoned",
        "_body_buffer",
        "_body_buffered",
        "_body_done",
        "_body_limit",
        "_body_sent",
        "_buffer_limit",
        "_client_gone",
        "_collect",
        "_fwd_done",
        "_head",
        "_head_at",
        "_last_read",
        "_ran",
        "_rechunk",
        "_replied",
        "_req_pipe",
        "_resp_buffer",
        "_resp_buffered",
        "_resp_done",
        "_resp_early",
        "_resp_paused",
        "_resp_pipe",
        "_resp_reply",
        "_resp_seen",
        "_sent_at",
        "_streaming",
        "_try_sent",
        "_upstream_error",
        "_waiter",
        "bytes_in",
        "bytes_out",
        "client",
        "conn",
        "ctx",
        "endpoint",
        "keep_alive",
        "pool",
        "reason",
        "req",
        "route",
        "snapshot",
        "status",
    )

    def __init__(self, client: ClientSide, req: Request) -> None:
        self.client = client
        self.req = req
        self.snapshot: Snapshot = client.gateway.snapshot
        self.route: RouteTarget | None = None
        self.pool: UpstreamPool | None = None
        self.endpoint: EndpointState | None = None
        self.conn: UpstreamConnection | None = None
        self.ctx: Context | None = None
        self._ran = 0  # filters whose request phase ran (they get the response phase)
        self._replied = False  # a response head went to the client
        self._collect = False  # a filter wants the whole body: buffer, do not stream
        self._buffer_limit = BUFFER_LIMIT
        self.status = 0
        self.reason = ""
        self.bytes_in = 0
        self.bytes_out = 0
        self.keep_alive = req.keep_alive
        self._body_buffer: list[bytes] = []
        self._body_buffered = 0
        self._body_done = not req.has_body
        self._fwd_done = self._body_done  # the body's end went (or may go) upstream
        self._req_pipe: BodyPipe | None = None
        self._req_trailers_ran = False  # the filters that take request trailers ran
        self._chunk_end_due = False  # the last chunk waits for the trailer filters
        self._end_held = False  # a trailer filter holds the request's end
        self._try_deadline: float | None = None  # the route's deadline, for the try timer
        self._resp_pipe: BodyPipe | None = None
        self._resp_reply: LocalReply | None = None
        self._resp_early: tuple[bytes | LocalReply | Exception, bool] | None = None
        self._resp_seen = 0  # response body bytes fed to the filters
        self._body_limit = client.max_body_bytes  # the route's own once it is known
        self._body_sent = False
        self._client_gone = False
        self._abandoned = False
        self._try_sent = False
        self._head: ResponseHead | None = None
        self._upstream_error: UpstreamError | None = None
        self._sent_at = 0.0  # monotonic: this try's request head went upstream
        self._head_at = 0.0  # ... and its response head (or error) came back
        self._resp_buffer: list[bytes] = []
        self._resp_buffered = 0
        self._resp_done = False
        self._resp_paused = False
        self._streaming = False
        self._rechunk = False
        self._last_read = 0.0
        self._waiter: asyncio.Future[None] | None = None

    def start(self, *, now: bool = False) -> None:
        """Run the exchange: as a Task, or (``now``) stepped at once, without a Task
        until it needs one (core/drive.py)."""
        if now:
            Driven(self.run(), self.client.gateway, self.client.loop)
        else:
            self.client.gateway.spawn(self.run())

    # ------------------------------------------------------------------ the task

    async def run(self) -> None:
        # The snapshot current when the request starts serves it to the end, even if a
        # reload swaps in a newer one meanwhile.
        snap = self.snapshot = self.client.gateway.snapshot
        snap.active += 1
        try:
            await self._run()
        finally:
            snap.release()

    async def _run(self) -> None:
        try:
            await self._proxy()
        except ClientGone:
            self.status = self.status or 499
            self.keep_alive = False
        except Abandon:
            self.keep_alive = False
        except Exception as exc:  # a bug of ours: answer 500, keep serving
            self.client.gateway.log_error("proxy error", exc)
            self.keep_alive = False
            if not self._replied and not self._client_gone:
                self._local_now(500, "internal gateway error")
            else:
                self.client.abort()
        finally:
            self.client.exchange_deadline.disarm()
            for pipe in (self._req_pipe, self._resp_pipe):
                if pipe is not None:
                    pipe.close()
            self._finish_upstream()
            if not self._body_done:
                self.keep_alive = False  # unread body would be taken for the next request
            self.client.gateway.log_access(self)
            record_exchange(self)
            self.client.exchange_done(self, self.keep_alive)
        chain = self.route.chain if self.route is not None else None
        if self.ctx is not None and chain is not None and chain.logs:
            if chain.inline:
                chain.run_log_sync(self.ctx)
            else:
                await chain.run_log(self.ctx)

    async def _proxy(self) -> None:
        req = self.req
        snap = self.snapshot
        route = snap.router.match(req.host, req.path, req.method, req.header, req.query)
        if route is None:
            await self._local(404, "no route")
            return
        self.route = route
        limit = self._body_limit = route.max_body_bytes
        if limit and (self.bytes_in > limit or (req.content_length or 0) > limit):
            if not self._abandoned:  # else the 413 is out already
                self._request_too_large()
            return
        if self._abandoned:  # the body was refused before this task ran
            raise Abandon
        if req.expect_continue and not self._body_done:
            self.client.write(_CONTINUE)
        upstream = route.upstream
        chain = route.chain
        if chain is not None:
            tls = self.client.tls
            if snap.trusted_hops:
                ctx = Context(
                    req, route.name, upstream, snap.client_ip(req), snap.client_scheme(req), tls
                )
            else:
                ctx = Context(req, route.name, upstream, req.client_ip, req.scheme, tls)
            self.ctx = ctx
            if not chain.inline:
                await IN_TASK  # an async phase may need asyncio.current_task()
            if chain.request_body:
                await self._collect_request_body()
            if chain.requests:
                if chain.native_requests:  # (compiled: a direct call of the loop)
                    done = chain.loop_requests(ctx)
                    reply, self._ran = done if isinstance(done, tuple) else await done
                    if self._client_gone:
                        raise ClientGone
                elif chain.sync_requests:
                    reply, self._ran = chain.run_request_sync(ctx)
                elif chain.inline:  # a coroutine only when a phase waits
                    done = chain.run_request_inline(ctx)
                    reply, self._ran = done if isinstance(done, tuple) else await done
                    if self._client_gone:
                        raise ClientGone
                else:
                    reply, self._ran = await chain.run_request(ctx)
                    if self._client_gone:
                        raise ClientGone
                if reply is not None:
                    self.reason = "local reply"
                    await self._send_reply(reply)
                    return
            else:
                self._ran = len(chain.filters)
            if req.body is not None:
                self._reframe_request_body(req.body)
            elif chain.request_chunks and req.has_body:
                await self._open_request_pipe(chain, ctx)
            upstream = ctx.upstream
        pool = snap.pools.get(upstream)
        if pool is None:
            await self._local(500, f"a filter chose upstream {upstream!r}, which does not exist")
            return
        self.pool = pool
        tries = 1 + pool.cfg.retries
        deadline = self.client.loop.time() + route.timeout if route.timeout else None
        hash_key = self._hash_key(pool)
        last: EndpointState | None = None
        for attempt in range(tries):
            last_try = attempt == tries - 1
            try:
                ep = pool.pick(hash_key, exclude=last)
            except NoHealthyUpstream as exc:
                await self._local(exc.status, exc.reason)
                return
            last = ep
            self.endpoint = ep
            req.upstream_address = ep.address
            try:
                head = await self._try(pool, ep, deadline)
            except UpstreamError as exc:
                if not isinstance(exc, RequestBodyTimeout):
                    pool.report(ep, False)
                self._drop_upstream()
                if last_try or not self._may_retry():
                    await self._fail(exc)
                    return
                continue
            if head.status in (502, 503, 504):
                pool.report(ep, False)
                if head.status != 504 and not last_try and self._replayable_idempotent():
                    self._drop_upstream()
                    continue
            else:
                pool.report(ep, True)
            break
        await self._respond()

    async def _try(
        self, pool: UpstreamPool, ep: EndpointState, deadline: float | None
    ) -> ResponseHead:
        """Send the request to ``ep`` and wait for the response head."""
        loop = self.client.loop
        self._try_sent = False
        conn = pool.take_idle(ep)
        if conn is None:
            await IN_TASK  # connecting runs under asyncio.timeout
            conn = await pool.connect(ep)
        if self._client_gone or self._abandoned:
            pool.release(conn)
            raise ClientGone if self._client_gone else Abandon
        self.conn = conn
        self._no_head_yet()
        ep.active += 1
        conn.begin(self, head_request=self.req.method == "HEAD")
        self._sent_at = time.monotonic()
        self._head_at = 0.0
        self._send_request_head(pool, conn)
        self._try_sent = True
        timeout = pool.per_try_timeout
        self._try_deadline = deadline
        if deadline is not None:
            timeout = min(timeout, deadline - loop.time())
        timer = self.client.exchange_deadline  # (what _arm and _cancel_timer use)
        timer.arm(timeout, self._on_try_timeout)
        while self._head is None and self._upstream_error is None:
            await self._wait()
        timer.disarm()
        if self._upstream_error is not None:
            raise self._upstream_error
        assert self._head is not None
        return self._head

    def _no_head_yet(self) -> None:
        # A method of its own: assigned in _try, None would be the narrowed type of both
        # fields after _try's await, and code compiled by mypyc (make compile) trusts it.
        self._head = None
        self._upstream_error = None

    def _may_retry(self) -> bool:
        if self._client_gone or self._abandoned:
            return False
        if not self._try_sent:
            return True  # the connect itself failed: nothing reached the upstream
        if not self._replayable():
            return False
        # Idempotent methods only, also on a pooled connection the upstream closed as it
        # was reused: that looks the same as an upstream that read the request, acted on
        # it and closed without answering, so a replayed POST could run twice. As with
        # nginx and Go's client, the client gets the 502 and decides.
        return self.req.method in IDEMPOTENT

    def _replayable(self) -> bool:
        return not self.req.has_body or not self._body_sent

    def _replayable_idempotent(self) -> bool:
        return self._replayable() and self.req.method in IDEMPOTENT

    def _hash_key(self, pool: UpstreamPool) -> str | None:
        if pool.hash_header is not None:
            return self.req.header(pool.hash_header)
        if pool.hash_cookie is not None:
            cookies = self.req.header("cookie")
            if cookies:
                for part in cookies.split(";"):
                    name, _, value = part.strip().partition("=")
                    if name == pool.hash_cookie:
                        return value
        return None

    # ------------------------------------------------------------------ request out

    def _send_request_head(self, pool: UpstreamPool, conn: UpstreamConnection) -> None:
        req = self.req
        cfg = pool.cfg
        snap = self.snapshot
        if cfg.preserve_host and req.host:
            host = req.host.encode("latin-1")
        else:
            host = (cfg.host_header or conn.endpoint.address).encode("latin-1")
        if conn.h2:
            self._send_h2_request_head(conn, host)
            return
        parts = [
            req.method.encode("ascii"),
            b" ",
            req.wire_target(),
            b" HTTP/1.1\r\nHost: ",
            host,
            b"\r\n",
        ]
        piped = self._req_pipe is not None
        for name, value in req.headers.raw:
            if piped and (len(name) == 14 or len(name) == 17) and _framing(name):
                continue  # the filters' body has its own length
            # Four appends, not `+= (...)`: compiled, no tuple made and no generic concat.
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
        client_ip, xff, xfp, xfh = snap.forwarded(req)
        parts += (
            b"X-Forwarded-For: ", xff, b"\r\nX-Forwarded-Proto: ", xfp,
            b"\r\nX-Real-IP: ", client_ip, b"\r\ntraceparent: ", req.traceparent, b"\r\n",
        )  # fmt: skip
        if xfh:
            parts += (b"X-Forwarded-Host: ", xfh, b"\r\n")
        if self.client.cert_headers:
            parts.append(self.client.cert_headers)
        if req.upgrade is not None:
            parts += (b"Connection: upgrade\r\nUpgrade: ", req.upgrade, b"\r\n\r\n")
        elif piped:
            # All of the filtered body is here: its exact length; else chunks as they come.
            req.chunked = not self._fwd_done
            if req.chunked:
                parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
            else:
                parts.append(b"Content-Length: %d\r\n\r\n" % self._body_buffered)
        elif req.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
        else:
            parts.append(b"\r\n")
        if self._body_buffer:
            for chunk in self._body_buffer:
                parts.extend(self._frame(chunk))
            self._body_buffer = []
            self._body_buffered = 0
            self._body_sent = True
            self.client.resume(PAUSE_BUFFER)
        hooks = self._fwd_done and self._request_hooks_due()
        if self._fwd_done and req.chunked and not hooks:
            parts.append(b"0\r\n\r\n")
        conn.write(b"".join(parts))
        if hooks:
            self._end_request(conn)

    def _send_h2_request_head(self, conn: UpstreamConnection, host: bytes) -> None:
        """The request head as HEADERS on an HTTP/2 upstream stream, then what of the
        body is here (DATA frames carry it: no chunked framing)."""
        from core.upstream_h2 import H2UpstreamStream, proxied_fields

        assert isinstance(conn, H2UpstreamStream)
        req = self.req
        length = req.content_length
        if self._req_pipe is not None:  # the filters' body: its length once all is here
            length = self._body_buffered if self._fwd_done else None
        forwarded = self.snapshot.forwarded(req)
        fields = proxied_fields(req, conn.scheme, host, forwarded, self.client.cert_headers, length)
        body = self._body_buffer
        trailers = req.trailers is not None
        conn.send_head(fields, end=self._fwd_done and not body and not trailers)
        if body:
            for chunk in body:
                conn.write(chunk)
            self._body_buffer = []
            self._body_buffered = 0
            self._body_sent = True
            self.client.resume(PAUSE_BUFFER)
        if self._fwd_done and (body or trailers):
            self._end_request(conn)

    def _frame(self, chunk: bytes) -> tuple[bytes, ...]:
        if self.req.chunked:
            return (b"%x\r\n" % len(chunk), chunk, b"\r\n")
        return (chunk,)

    def on_request_body(self, data: bytes) -> None:
        if self._abandoned or self._client_gone:
            return
        self.bytes_in += len(data)
        limit = self._body_limit
        if limit and self.bytes_in > limit:
            self._request_too_large()
            return
        pipe = self._req_pipe
        if pipe is not None:
            # The last bytes of a body of known length carry end_of_stream, as in Envoy;
            # over HTTP/2 trailers may follow them: there END_STREAM ends the body.
            length = self.req.content_length
            self._last_read = self.client.loop.time()
            ends = length is not None and self.bytes_in >= length and self.req.version != "2"
            pipe.feed(data, ends)
        else:
            self._send_body(data)

    def _send_body(self, data: bytes) -> None:
        """Forward request body bytes, or keep them until the head goes upstream."""
        conn = self.conn
        if conn is not None and not conn.closed:
            assert conn.transport is not None
            self._body_sent = True
            if self.req.chunked and not conn.h2:
                conn.transport.writelines([b"%x\r\n" % len(data), data, b"\r\n"])
            else:
                conn.transport.write(data)
            return
        if self.status:  # a reply was already given (e.g. 404): discard the body
            return
        self._body_buffer.append(data)
        self._body_buffered += len(data)
        if self._body_buffered > self._buffer_limit:
            if self._collect:  # a filter wants it whole, and it is larger than we keep
                self._request_too_large("request body too large for the filters to inspect")
            else:
                self.client.pause(PAUSE_BUFFER)

    def on_request_end(self) -> None:
        if self._body_done and not self.req.trailers:
            return  # no body (and no trailers): nothing to end, and nobody waits for it
        self._body_done = True
        pipe = self._req_pipe
        if pipe is not None:
            pipe.feed(b"", True)
        else:
            self._end_body()
        self._wake()

    def _end_body(self) -> None:
        self._fwd_done = True
        conn = self.conn
        if conn is None or conn.closed or self._abandoned:
            return
        self._end_request(conn)

    async def _open_request_pipe(self, chain: Chain, ctx: Context) -> None:
        """Send the request body through the filters that take it as it streams."""
        stages = [(inst, hook) for pos, inst, hook in chain.request_chunks if pos <= self._ran]
        if not stages:
            return
        pipe = self._req_pipe = BodyPipe(
            ctx, stages, self._piped_request, self._request_reply, response=False
        )
        self._fwd_done = False
        raw = self._body_buffer
        self._body_buffer = []
        self._body_buffered = 0
        for i, chunk in enumerate(raw, 1):
            pipe.feed(chunk, self._body_done and i == len(raw))
        if self._body_done:
            pipe.feed(b"", True)  # (nothing, when the last chunk said it)
        if self._abandoned:  # a filter answered already
            raise Abandon
        if self._body_buffered <= self._buffer_limit:
            self.client.resume(PAUSE_BUFFER)
        if not (pipe.emitted or pipe.ended):
            self._last_read = self.client.loop.time()
            self._arm(self.client.limits.idle_timeout, self._on_body_wait_timeout)
            while not (pipe.emitted or pipe.ended):
                await self._wait()
            self._cancel_timer()

    def _on_body_wait_timeout(self) -> None:
        """The client sent no body for idle_timeout while the filters hold what came."""
        limit = self.client.limits.idle_timeout
        idle = self.client.loop.time() - self._last_read
        if idle < limit:
            self._arm(limit - idle, self._on_body_wait_timeout)
            return
        self.refuse_body(408, "request body timeout")

    def _piped_request(self, data: bytes, end: bool) -> None:
        if data:
            self._send_body(data)
        if end:
            self._end_body()
        self._wake()

    def _request_reply(self, reply: LocalReply) -> None:
        """A filter answered from a body callback: the reply goes out, nothing more in."""
        self.reason = "local reply"
        self._abandoned = True
        self._drop_upstream()
        self.keep_alive = False
        if self._replied:
            self.client.abort()
        else:
            headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in reply.header_pairs()]
            self._write_reply(reply.status, headers, reply.body_bytes())
            self.client.pause(PAUSE_BUFFER)
        self._wake()

    async def _collect_request_body(self) -> None:
        """Buffer the whole request body for filters that declared they need it."""
        self._collect = True
        self._buffer_limit = self.client.limits.max_buffer_bytes
        if self._body_buffered > self._buffer_limit:
            self._request_too_large("request body too large for the filters to inspect")
        self.client.resume(PAUSE_BUFFER)
        while not self._body_done:
            await self._wait()
        self.req.body = b"".join(self._body_buffer)
        self._collect = False

    def _reframe_request_body(self, body: bytes) -> None:
        """Forward the (possibly rewritten) buffered body with a Content-Length."""
        req = self.req
        self._body_buffer = [body] if body else []
        self._body_buffered = len(body)
        req.chunked = False
        req.content_length = len(body)
        req.headers.remove("content-length")
        req.headers.raw.append((b"Content-Length", b"%d" % len(body)))

    def _request_too_large(self, reason: str = "request body too large") -> None:
        self.refuse_body(413, reason)

    def refuse_body(self, status: int, reason: str) -> None:
        """The request body cannot be taken (too large, or its framing broke)."""
        self._abandoned = True
        self._drop_upstream()
        if not self._replied and not self.status:
            self.keep_alive = False
            self._local_now(status, reason)
            self.client.pause(PAUSE_BUFFER)  # read no more; the connection closes after
        else:
            self.status = self.status or status
            self.client.abort()
        self._wake()

    # ------------------------------------------------------------------ response back

    async def _respond(self) -> None:
        head = self._head
        assert head is not None and self.conn is not None
        req = self.req
        if head.status == 101:
            self.status = 101
            await self._tunnel(head)
            return
        chain = self.route.chain if self.route is not None else None
        if self.ctx is not None and chain is not None and chain.responses:
            if chain.response_body and await self._filter_whole_response(chain, head):
                return
            self.ctx.response = head  # the filters edit the very head we forward
            if chain.native_responses:
                waits = chain.loop_responses(self.ctx, self._ran)
                if waits is not None:
                    await waits
            elif chain.sync_responses:
                chain.run_response_sync(self.ctx, self._ran)
            elif chain.inline:
                waits = chain.run_response_inline(self.ctx, self._ran)
                if waits is not None:
                    await waits
            else:
                await chain.run_response(self.ctx, self._ran)
            final = _response_of(self.ctx)
            if final is not head and final is not None:  # a filter failed closed: 500
                self._drop_upstream()
                self._resp_done = True
                self.keep_alive = False
                self._write_reply(final.status, final.headers.raw, final.body or b"")
                return
            filtered = True
        else:
            filtered = False
        no_body = req.method == "HEAD" or head.status in (204, 304)
        length = head.content_length
        pipe = None
        if filtered and chain is not None and chain.response_chunks and not no_body:
            if length != 0 and not head.codings:
                if self._resp_done and len(self._resp_buffer) < 2:  # one chunk: no pipe
                    pipe, length = self._whole_response(chain, head, length)
                else:
                    pipe = self._open_response_pipe(chain)
                if pipe is not None and not (pipe.emitted or pipe.ended or pipe.stopped):
                    pipe = await self._first_from_pipe(pipe)
                if self._replied:
                    return
            if self._resp_reply is not None:  # a body callback answered instead
                reply = self._resp_reply
                self._resp_done = True
                headers = [
                    (n.encode("latin-1"), v.encode("latin-1")) for n, v in reply.header_pairs()
                ]
                self._write_reply(reply.status, headers, reply.body_bytes())
                return
            if pipe is not None:  # (chunked when trailers can follow: they need the last chunk)
                whole = pipe.ended and (head.trailers is None or not req.te_trailers)
                length = sum(map(len, self._resp_buffer)) if whole else None
        if not self._write_head(head, filtered, length, no_body, pipe):
            return
        self._replied = True
        self._streaming = True
        if self._resp_paused and not self.client.write_paused:
            self._resume_upstream()
        if not (self._resp_done if pipe is None else pipe.ended):
            self._last_read = self.client.loop.time()
            self._arm(self.pool.cfg.read_timeout if self.pool else 60.0, self._on_read_timeout)
            while (
                not (self._resp_done if pipe is None else pipe.ended)
                and self._upstream_error is None
            ):
                await self._wait()
            self._cancel_timer()
            if self._upstream_error is not None:
                self.reason = str(self._upstream_error)
                self.client.gateway.log_upstream_error(self, self._upstream_error)
                self.client.abort()  # the head is out; only a broken connection says so
                raise ClientGone
        hooks = filtered and chain is not None and bool(chain.response_trailers)
        hooks = hooks and self._response_trailers_came()  # (else no coroutine to run)
        if hooks and chain is not None and not await self._response_trailer_hooks(chain, True):
            self.reason = "a filter answered after the response head: reset"
            raise ClientGone
        if self._chunk_end_due:
            self._late_end_chunk()

    def _write_head(
        self,
        head: ResponseHead,
        filtered: bool,
        length: int | None,
        no_body: bool,
        pipe: BodyPipe | None,
    ) -> bool:
        """Write the response head (and the body bytes already here) to the client.

        ``length`` is the body length to announce when ``filtered`` (None: unknown).
        Returns False when the response cannot be carried and a 502 went instead.
        An HTTP/2 stream writes its head its own way (core/http2.py).
        """
        req = self.req
        self.status = head.status
        parts = [status_line(head.status)]
        if filtered:
            # The body's framing is the gateway's: whatever a filter did to Content-Length
            # (or added as Transfer-Encoding), the upstream's length goes out again, or,
            # past body callbacks, the length of what they let through (or chunks).
            for name, value in head.headers.raw:
                size = len(name)  # (compiled: integer compares; most names go on here)
                if (size == 14 or size == 17) and _framing(name):
                    continue
                parts.append(name)  # (appends: see _send_request_head)
                parts.append(b": ")
                parts.append(value)
                parts.append(b"\r\n")
            if length is not None:
                line = _LENGTH_LINES.get(length)
                if line is None:
                    line = b"Content-Length: %d\r\n" % length
                    if len(_LENGTH_LINES) < 4096:
                        _LENGTH_LINES[length] = line
                parts.append(line)
        else:
            for name, value in head.headers.raw:
                parts.append(name)
                parts.append(b": ")
                parts.append(value)
                parts.append(b"\r\n")
        if head.codings and not no_body:
            # A coding such as gzip applied by the transfer layer stays with the body;
            # an HTTP/1.0 client cannot be sent one.
            if req.version != "1.1":
                self._drop_upstream()
                self._local_now(502, "upstream used a transfer coding HTTP/1.0 cannot carry")
                return False
            self._rechunk = True
            parts += (b"Transfer-Encoding: ", head.codings, b", chunked\r\n")
        elif not no_body and length is None:
            # Chunked also on a closing connection to a client that takes trailers.
            if req.version == "1.1" and (self.keep_alive or req.te_trailers):
                self._rechunk = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False
        if self.client.gateway.draining:
            self.keep_alive = False
        if not self.keep_alive:
            parts.append(b"Connection: close\r\n\r\n")
        elif req.version == "1.0":
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        for chunk in self._resp_buffer:
            self.bytes_out += len(chunk)
            if self._rechunk:
                parts += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
            else:
                parts.append(chunk)
        self._resp_buffer = []
        self._resp_buffered = 0
        if (self._resp_done if pipe is None else pipe.ended) and self._rechunk:
            parts.append(self._end_chunk())
        self.client.write(b"".join(parts))
        return True

    async def _filter_whole_response(self, chain: Chain, head: ResponseHead) -> bool:
        """Buffer the body for filters that asked for it, run them, write it all.

        Returns False (stream as usual) for bodies that cannot be buffered: HEAD,
        204/304, or ones larger than ``max_buffer_bytes`` (those are passed on
        unchanged, with the response phase run on the head only).
        """
        assert self.ctx is not None and self.pool is not None
        if self.req.method == "HEAD" or head.status in (204, 304):
            return False
        limit = self.client.limits.max_buffer_bytes
        if head.content_length is not None and head.content_length > limit:
            return False
        self._collect = True
        self._buffer_limit = limit
        self._last_read = self.client.loop.time()
        self._arm(self.pool.cfg.read_timeout, self._on_read_timeout)
        while not self._resp_done and self._upstream_error is None and self._collect:
            await self._wait()
        self._cancel_timer()
        if self._upstream_error is not None:
            await self._fail(self._upstream_error)
            return True
        if not self._collect:  # over the bound while reading: stream the rest
            return False
        self._collect = False
        body = b"".join(self._resp_buffer)
        self._resp_buffer = []
        self._resp_buffered = 0
        head.body = body
        self.ctx.response = head
        await chain.run_response(self.ctx, self._ran)
        if self.ctx.response.trailers is not None:  # as the filters left them
            if chain.response_trailers:
                await self._response_trailer_hooks(chain, False)
            else:
                self.client.send_trailers(self.ctx.response.trailers.raw)
        resp = self.ctx.response
        self.status = resp.status
        sent = self.client.write_reply(
            resp.status,
            resp.headers.raw,
            resp.body or b"",
            keep_alive=self.keep_alive and not self.client.gateway.draining,
            version=self.req.version,
        )
        self.bytes_out += sent
        self._replied = True
        return True

    def on_response_head(self, head: ResponseHead) -> None:
        self._head = head
        self._head_at = time.monotonic()
        self._wake()

    def _response_stages(self, chain: Chain) -> list[tuple[FilterInstance, ChunkHook]]:
        """The response-body hooks of the filters whose response phase runs."""
        found = chain.response_chunks
        if len(found) == 1:  # (one filter takes the body: no comprehension to call)
            pos, inst, hook = found[0]
            return [(inst, hook)] if pos <= self._ran else []
        return [(inst, hook) for pos, inst, hook in found if pos <= self._ran]

    def _open_response_pipe(self, chain: Chain) -> BodyPipe | None:
        """Send the response body through the filters that take it as it streams; the
        head waits for the first bytes out of them (or the end, or their reply: see
        :meth:`_first_from_pipe`)."""
        assert self.ctx is not None and self.pool is not None
        stages = self._response_stages(chain)
        if not stages:
            return None
        pipe = self._resp_pipe = BodyPipe(
            self.ctx, stages, self._piped_response, self._response_reply, response=True
        )
        raw = self._resp_buffer
        self._resp_buffer = []
        self._resp_buffered = 0
        self._resp_seen = 0
        for i, chunk in enumerate(raw, 1):
            self._resp_seen += len(chunk)
            pipe.feed(chunk, self._resp_ends(i == len(raw)))
        if self._resp_done and not pipe.ended:  # (ended: the last chunk said so)
            pipe.feed(b"", True)
        if self._resp_buffered <= BUFFER_LIMIT and not self.client.write_paused:
            self._resume_upstream()
        return pipe

    def _whole_response(
        self, chain: Chain, head: ResponseHead, length: int | None
    ) -> tuple[BodyPipe | None, int | None]:
        """The response body, all here in one chunk, through the chunk hooks without a
        pipe (core.bodies.through_whole): the pipe only when a hook holds the end, and
        the length to announce."""
        assert self.ctx is not None
        stages = self._response_stages(chain)
        if not stages:
            return None, length
        raw = self._resp_buffer
        k, out = through_whole(self.ctx, stages, raw[0] if raw else b"", self._resp_resumed)
        if out is None:  # stage k holds the end: a pipe from there on
            pipe = self._resp_pipe = BodyPipe(
                self.ctx, stages, self._piped_response, self._response_reply, response=True
            ).held_at(k)
            self._resp_buffer = []
            self._resp_buffered = 0
            if self._resp_early is not None:  # (it resumed before it returned)
                pipe.resume_held(*self._resp_early)
            return pipe, length
        if isinstance(out, LocalReply):
            self.ctx.stopped_by = stages[k][0].name
            self._response_reply(out)
            return None, length
        self._resp_buffer = [out] if out else []
        self._resp_buffered = 0
        if self._resp_paused and not self.client.write_paused:
            self._resume_upstream()
        return None, len(out) if head.trailers is None or not self.req.te_trailers else None

    def _resp_resumed(self, result: bytes | LocalReply | Exception, end: bool = True) -> None:
        """The ``resume`` of a hook on the one-chunk path (see _whole_response)."""
        pipe = self._resp_pipe
        if pipe is not None:
            pipe.resume_held(result, end)
        elif self._resp_early is None:
            self._resp_early = (result, end)

    async def _first_from_pipe(self, pipe: BodyPipe) -> BodyPipe | None:
        """Wait for the first bytes out of the response pipe (or its end or reply)."""
        assert self.pool is not None
        if not (pipe.emitted or pipe.ended or pipe.stopped):
            self._last_read = self.client.loop.time()
            self._arm(self.pool.cfg.read_timeout, self._on_read_timeout)
            while not (pipe.emitted or pipe.ended or pipe.stopped):
                if self._upstream_error is not None:
                    self._cancel_timer()
                    exc = self._upstream_error
                    self._drop_upstream()
                    await self._fail(exc)
                    return None  # answered: a 502 or the like
                await self._wait()
            self._cancel_timer()
        return pipe

    def _resp_ends(self, last_read: bool) -> bool:
        """Whether the response body bytes seen so far are all of it."""
        if self._resp_done:
            return last_read
        head = self._head
        length = head.content_length if head is not None else None
        if length is None or (self.conn is not None and self.conn.h2):
            return False  # the end of the stream says it (trailers may come first)
        return self._resp_seen >= length

    def _piped_response(self, data: bytes, end: bool) -> None:
        if self._streaming:
            if data:
                self.bytes_out += len(data)
                if self._rechunk:
                    self.client.writelines([b"%x\r\n" % len(data), data, b"\r\n"])
                else:
                    self.client.write(data)
            if end and self._rechunk:
                self.client.write(self._end_chunk())
        elif data:  # the head is not out yet
            self._resp_buffer.append(data)
            self._resp_buffered += len(data)
            if self._resp_buffered > BUFFER_LIMIT:
                self._pause_upstream()
        self._wake()

    def _response_reply(self, reply: LocalReply) -> None:
        """A filter answered from a response body callback."""
        self._resp_reply = reply
        self.reason = "local reply"
        self._drop_upstream()
        if self._replied:  # the head is out: only a broken connection can say it
            self._abandoned = True
            self.client.abort()
        self._wake()

    def on_response_body(self, data: bytes) -> None:
        pipe = self._resp_pipe
        if pipe is not None:
            self._last_read = self.client.loop.time()
            self._resp_seen += len(data)
            pipe.feed(data, self._resp_ends(True))
            return
        if self._streaming:
            self.bytes_out += len(data)
            self._last_read = self.client.loop.time()
            if self._rechunk:
                self.client.writelines([b"%x\r\n" % len(data), data, b"\r\n"])
            else:
                self.client.write(data)
            return
        self._resp_buffer.append(data)
        self._resp_buffered += len(data)
        if self._resp_buffered > self._buffer_limit:
            if self._collect:  # too large to hand to the filters: stream it instead
                self._collect = False
                self._buffer_limit = BUFFER_LIMIT
                self._wake()
            self._pause_upstream()

    def on_response_end(self) -> None:
        self._resp_done = True
        pipe = self._resp_pipe
        if pipe is not None:
            pipe.feed(b"", True)
        elif self._streaming and self._rechunk:
            self.client.write(self._end_chunk())
        self._wake()

    def on_response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """An HTTP/2 upstream's trailers: on to the client if it can carry them (and
        to the filters, when they read the body whole and so see the response end)."""
        if self._head is not None:
            self._head.trailers = Headers(list(fields))
        self.client.send_trailers(fields)

    def on_upstream_error(self, exc: UpstreamError) -> None:
        if self._upstream_error is None:
            self._upstream_error = exc
        if not self._head_at:
            self._head_at = time.monotonic()
        self._wake()

    # ------------------------------------------------------------------ flow control

    def on_upstream_pause(self) -> None:  # upstream cannot take more request body
        self.client.pause(PAUSE_UPSTREAM)

    def on_upstream_resume(self) -> None:
        self.client.resume(PAUSE_UPSTREAM)

    def on_client_pause(self) -> None:  # client cannot take more response body
        self._pause_upstream()

    def on_client_resume(self) -> None:
        if self._streaming or self._head is None:
            self._resume_upstream()

    def _pause_upstream(self) -> None:
        conn = self.conn
        if not self._resp_paused and conn is not None and conn.transport is not None:
            self._resp_paused = True
            conn.transport.pause_reading()

    def _resume_upstream(self) -> None:
        conn = self.conn
        if self._resp_paused and conn is not None and conn.transport is not None:
            self._resp_paused = False
            if not conn.closed:
                conn.transport.resume_reading()
                self._last_read = self.client.loop.time()

    def on_client_lost(self) -> None:
        self._client_gone = True
        self._drop_upstream()
        self._wake()
        chain = self.route.chain if self.route is not None else None
        if chain is not None and chain.client_gone and self.ctx is not None:
            chain.run_client_gone(self.ctx)  # Proxy-Wasm contexts end now (Envoy's rule)

    # ------------------------------------------------------------------ WebSocket

    async def _tunnel(self, head: ResponseHead) -> None:
        assert self.conn is not None and self.req.upgrade is not None
        parts = [status_line(101)]
        for name, value in head.headers.raw:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"Connection: upgrade\r\nUpgrade: ", self.req.upgrade, b"\r\n\r\n")
        parts += self._resp_buffer
        self._resp_buffer = []
        self.client.write(b"".join(parts))
        self._streaming = True
        self.keep_alive = False
        self.client.start_tunnel(self)
        while not self._resp_done and not self._client_gone:
            await self._wait()

    def on_tunnel_data(self, data: bytes) -> None:
        self.bytes_out += len(data)
        if self._streaming:
            self.client.write(data)
        else:  # arrived with the 101, before the task wrote the 101 to the client
            self._resp_buffer.append(data)

    def on_client_tunnel_data(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.conn is not None and not self.conn.closed:
            self.conn.write(data)

    # ------------------------------------------------------------------ endings

    async def _local(self, status: int, reason: str) -> None:
        """Answer from the gateway with a short text reply (through the response phase)."""
        self.reason = reason
        body = (reason + "\n").encode("utf-8", "replace")
        await self._send_reply(
            LocalReply(status, [("Content-Type", "text/plain; charset=utf-8")], body)
        )

    async def _send_reply(self, reply: LocalReply) -> None:
        """Write a local reply; filters whose request phase ran see it first."""
        chain = self.route.chain if self.route is not None else None
        if self.ctx is not None and chain is not None and chain.responses and self._ran:
            self.ctx.response = reply_response(reply)
            await chain.run_response(self.ctx, self._ran)
            resp = self.ctx.response
            status, headers, body = resp.status, resp.headers.raw, resp.body or b""
        else:
            status = reply.status
            headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in reply.header_pairs()]
            body = reply.body_bytes()
        self._write_reply(status, headers, body)

    def _local_now(self, status: int, reason: str) -> None:
        """A text reply written at once, without the response phase (from callbacks)."""
        self.reason = reason
        body = (reason + "\n").encode("utf-8", "replace")
        self._write_reply(status, [(b"Content-Type", TEXT_PLAIN)], body)

    def _write_reply(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        if self._client_gone or self._replied:
            return
        if self.req.upgrade is not None or not self._body_done:
            self.keep_alive = False
        self._replied = True
        self.bytes_out += self.client.write_reply(
            status,
            headers,
            body,
            keep_alive=self.keep_alive,
            head_only=self.req.method == "HEAD",
            version=self.req.version,
        )

    async def _fail(self, exc: UpstreamError) -> None:
        if self._client_gone:
            raise ClientGone
        self.client.gateway.log_upstream_error(self, exc)
        await self._local(exc.status, f"{exc.reason}: {exc}")

    def _drop_upstream(self) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.endpoint.active -= 1
            conn.close()
        self._resp_buffer = []
        self._resp_buffered = 0
        self._resp_paused = False

    def _finish_upstream(self) -> None:
        conn = self.conn
        if conn is None:
            return
        # Reading was paused for a slow client as the last bytes came: a pooled
        # connection must read again, or the next exchange on it never gets its head.
        self._resume_upstream()
        self.conn = None
        conn.endpoint.active -= 1
        # _fwd_done: a filter may still hold the end of the request body (the upstream
        # answered early); that connection's request is unfinished and cannot be reused.
        if self._resp_done and self._body_done and self._fwd_done and not self._client_gone:
            UpstreamPool.release(conn)
        else:
            conn.close()

    # ------------------------------------------------------------------ waiting

    async def _wait(self) -> None:
        if self._client_gone:
            raise ClientGone
        if self._abandoned:
            raise Abandon
        waiter = self.client.loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
        if self._client_gone:
            raise ClientGone
        if self._abandoned:
            raise Abandon

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # The connection's one timer for its exchanges (core/deadline.py), which run one
    # at a time: re-arming it per request costs no new loop timer.
    def _arm(self, delay: float, callback: Callable[[], object]) -> None:
        self.client.exchange_deadline.arm(delay, callback)

    def _cancel_timer(self) -> None:
        self.client.exchange_deadline.disarm()

    def _on_try_timeout(self) -> None:
        if self._try_timer_held():
            return  # restarted once the filter lets the end go (core/exchange_trailers.py)
        if not self._fwd_done:
            # Still waiting on the client's body (or a filter holding its end): a few
            # stalled uploads must not eject a healthy upstream.
            self.on_upstream_error(RequestBodyTimeout("the request body was not complete in time"))
            return
        self.on_upstream_error(UpstreamTimeout("no response from upstream in time"))

    def _on_read_timeout(self) -> None:
        loop = self.client.loop
        assert self.pool is not None
        limit = self.pool.cfg.read_timeout
        idle = loop.time() - self._last_read
        if self._resp_paused or idle < limit:  # the client is slow, or data came lately
            self._arm(limit - idle if not self._resp_paused else limit, self._on_read_timeout)
            return
        self.on_upstream_error(UpstreamTimeout("upstream stopped sending the response"))

    # ------------------------------------------------------------------ logging view

    @property
    def duration(self) -> float:
        return time.monotonic() - self.req.start

    @property
    def upstream_duration(self) -> float | None:
        """Seconds from sending the (last try's) request head upstream to its response
        head or error; None when no request reached an upstream."""
        if not self._sent_at:
            return None
        return (self._head_at or time.monotonic()) - self._sent_at

    @property
    def stopped_by(self) -> str | None:
        """The filter that answered the request itself (see Context.stopped_by)."""
        return self.ctx.stopped_by if self.ctx is not None else None
