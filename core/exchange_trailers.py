"""An exchange's trailers, both ways: :class:`TrailerSide`, a part of
:class:`core.proxy.Exchange`.

Request trailers (an HTTP/2 client's trailing HEADERS, an HTTP/1.1 chunked body's
trailer section) are kept in ``req.trailers``, where a filter that read the body
whole sees and changes them. When the request's end is to go upstream, the filters
that take trailers (a Proxy-Wasm module's ``proxy_on_request_trailers``) run first,
once, in chain order; one that stops (StopIteration) holds the end until it goes on,
and one that answers replaces the exchange with its reply. Then an HTTP/2 upstream
gets the trailers with the end of the stream; an HTTP/1.1 upstream gets the last
chunk only (core/trailers.py says why).

While a filter holds the request's end, the upstream is not waited on: the per-try
timeout stops, and starts again, whole, once the end has gone (Envoy starts it when
the request is complete). The hold itself is bounded by the filter's own timeout
(``limits.pause_timeout`` for a Proxy-Wasm module), past which the filter has
failed, which its fail strategy answers; the upstream is not blamed.

Response trailers run the filters that take them (in response order) once they
came, before they and the response's end go to the client: an HTTP/2 client gets
them with END_STREAM, an HTTP/1.1 client that sent ``TE: trailers`` in the last
chunk of a chunked response (other HTTP/1.1 clients get the last chunk without
them). A filter that stops holds that end until it goes on; one that answers, or
fails closed, once the head has gone resets the response (Envoy's rule: a local
reply cannot follow a response head), or replaces it while the gateway still holds
it whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from core.drive import IN_TASK
from core.native import mypyc_attr
from core.trailers import allowed, last_chunk
from plugin_sdk import Headers, LocalReply
from plugin_sdk.chain import reply_response

if TYPE_CHECKING:
    from core.client_side import ClientSide
    from core.http1 import Request
    from core.router import RouteTarget
    from core.upstream import ResponseHead, UpstreamConnection, UpstreamPool
    from plugin_sdk import Context
    from plugin_sdk.chain import Chain


@mypyc_attr(allow_interpreted_subclasses=True)  # as Exchange (core/proxy.py)
class TrailerSide:
    """Trailer handling of an exchange (see the module docstring)."""

    __slots__ = ("_chunk_end_due", "_end_held", "_req_trailers_ran", "_try_deadline")

    # What the exchange has (core/proxy.py).
    client: ClientSide
    req: Request
    route: RouteTarget | None
    ctx: Context | None
    conn: UpstreamConnection | None
    pool: UpstreamPool | None
    _ran: int
    _try_deadline: float | None
    _head: ResponseHead | None
    _upstream_error: Exception | None

    # Exchange's own (core/proxy.py); real methods rather than declarations under
    # TYPE_CHECKING, which mypyc (make compile) cannot compile in a class body.
    def _request_reply(self, reply: LocalReply) -> None:
        raise NotImplementedError

    def _arm(self, delay: float, callback: Callable[[], object]) -> None:
        raise NotImplementedError

    def _on_try_timeout(self) -> None:
        raise NotImplementedError

    # -- request trailers

    def on_request_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """The client's trailers came (before the end of its body)."""
        self.req.trailers = Headers(allowed(fields))

    def _request_hooks_due(self) -> bool:
        """Whether filters still have to see the request's trailers before its end."""
        if self.req.trailers is None or self._req_trailers_ran or self.ctx is None:
            return False
        route = self.route
        return route is not None and route.chain is not None and bool(route.chain.request_trailers)

    def _end_request(self, conn: UpstreamConnection) -> None:
        """Send the request's end upstream, once the trailer filters let it go."""
        if self._request_hooks_due():
            self._req_trailers_ran = True
            assert self.route is not None and self.route.chain is not None
            assert self.ctx is not None
            result = self.route.chain.run_request_trailers(self.ctx, self._ran)
            if isinstance(result, LocalReply):
                self._request_reply(result)
                return
            if isinstance(result, Awaitable):
                self._end_held = True
                self.client.gateway.spawn(self._end_after(result))
                return
        self._send_end(conn)

    async def _end_after(self, held: Awaitable[LocalReply | None]) -> None:
        try:
            reply = await held
        finally:
            self._end_held = False
        if reply is not None:
            self._request_reply(reply)
            return
        conn = self.conn
        if conn is not None and not conn.closed:
            self._send_end(conn)
            self._restart_try_timer()

    def _try_timer_held(self) -> bool:
        """The per-try timer fired: whether a filter holds the request's end (then the
        timer waits for it, see :meth:`_restart_try_timer`)."""
        return self._end_held

    def _restart_try_timer(self) -> None:
        """The request's end went after a hold: the upstream gets a whole per-try
        timeout from now (bounded by the route's timeout) to answer."""
        pool = self.pool
        if pool is None or self._head is not None or self._upstream_error is not None:
            return
        timeout = pool.per_try_timeout
        if self._try_deadline is not None:
            timeout = min(timeout, self._try_deadline - self.client.loop.time())
        self._arm(max(timeout, 0.0), self._on_try_timeout)

    def _send_end(self, conn: UpstreamConnection) -> None:
        if conn.h2:
            from core.upstream_h2 import H2UpstreamStream

            assert isinstance(conn, H2UpstreamStream)
            trailers = self.req.trailers
            conn.end_body(allowed(trailers.raw) if trailers is not None else None)
        elif self.req.chunked:
            conn.write(b"0\r\n\r\n")  # HTTP/1.1 upstreams get no request trailers

    # -- response trailers

    def _response_trailers_came(self) -> bool:
        """Whether the response (as the filters left it) has trailers."""
        ctx = self.ctx
        resp = ctx.response if ctx is not None else None
        return resp is not None and resp.trailers is not None

    async def _response_trailer_hooks(self, chain: Chain, head_sent: bool) -> bool:
        """Run the filters that take the response's trailers (once they came), then
        hand the trailers to the client. False: the response was reset (a filter
        answered, or failed closed, after its head went)."""
        ctx = self.ctx
        resp = ctx.response if ctx is not None else None
        if ctx is None or resp is None or resp.trailers is None:
            return True
        result = chain.run_response_trailers(ctx, self._ran)
        if isinstance(result, Awaitable):
            await IN_TASK  # (a filter's wait may need asyncio.current_task())
            result = await result
        if result is None:
            trailers = ctx.response.trailers if ctx.response is not None else None
            self.client.send_trailers(trailers.raw if trailers is not None else [])
            return True
        if head_sent:
            self._chunk_end_due = False
            self.client.abort()
            return False
        ctx.response = reply_response(result)
        self.client.send_trailers([])  # (an HTTP/2 stream keeps the upstream's until now)
        return True

    def _end_chunk(self) -> bytes:
        """The last chunk of a chunked response to an HTTP/1.1 client: with the
        upstream's trailers when the client takes them; b"" when it has to wait for
        the filters that take trailers (then :meth:`_late_end_chunk` writes it)."""
        head = self._head
        if head is None or head.trailers is None:
            return b"0\r\n\r\n"
        route, ctx = self.route, self.ctx
        chain = route.chain if route is not None else None
        if chain is not None and chain.response_trailers and ctx is not None and ctx.response:
            self._chunk_end_due = True
            return b""
        return last_chunk(head.trailers.raw if self.req.te_trailers else None)

    def _late_end_chunk(self) -> None:
        """The last chunk, with the trailers as the filters left them."""
        self._chunk_end_due = False
        resp = self.ctx.response if self.ctx is not None else None
        trailers = resp.trailers if resp is not None and self.req.te_trailers else None
        self.client.write(last_chunk(trailers.raw if trailers is not None else None))
