"""``proxy_grpc_stream`` and the calls on it: a gRPC stream from a plugin over one of
the gateway's HTTP/2 upstreams, and the ``proxy_on_grpc_*`` callbacks it brings.

As for ``proxy_grpc_call`` (:mod:`core.wasm.grpc_call`), the ``service`` argument
names the upstream (a cluster name; an unknown one fails the open at once with
``PARSE_FAILURE``, as in Envoy, whose SDKs expect that status), and the stream is
``POST /<service name>/<method>`` with ``content-type: application/grpc`` on a stream
of the upstream's own HTTP/2 connections (core/upstream_h2.py: ``protocol = "h2c"``
or ``"h2"``), opened as the call returns. What Envoy does, this does:

- ``proxy_grpc_send(token, message, end_stream)`` sends one length-prefixed gRPC
  message (five bytes: no compression, the length; an empty message too), and with
  ``end_stream`` half-closes the plugin's side. Messages sent before the connection
  is up wait for it, in order; what waits (for it, or for the server's window) is
  bounded by ``max_buffer_bytes``: past it a send gets ``BAD_ARGUMENT``.
- ``proxy_grpc_close(token)`` half-closes the plugin's side (END_STREAM); the
  server's replies still come. On a unary call's token it cancels the call.
  A token lives until both sides are closed (or it is cancelled): after
  ``proxy_on_grpc_close``, a close still answers OK (and a send is dropped).
- ``proxy_grpc_cancel(token)`` resets the stream (RST_STREAM ``CANCEL``); no callback
  follows. On a unary call's token it cancels the call.
- The context that opened the stream (its HTTP context, or the root context) gets
  ``proxy_on_grpc_receive_initial_metadata`` (map 4) once the response head came,
  ``proxy_on_grpc_receive`` for each message (buffer 5),
  ``proxy_on_grpc_receive_trailing_metadata`` (map 5) and ``proxy_on_grpc_close``
  with the ``grpc-status`` (``proxy_get_status`` gives it with ``grpc-message``). A
  stream that fails (no connection, a reset, an HTTP status other than 200) closes
  with UNAVAILABLE (14) and the reason; a message larger than ``max_buffer_bytes``
  resets it and closes with RESOURCE_EXHAUSTED (8). An HTTP context's streams are
  reset when it ends, as Envoy does (its unary calls are cancelled too).

A stream counts against ``max_http_calls`` while it is open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from core.errors import UpstreamError
from core.upstream import ResponseHead, UpstreamPool
from core.wasm.grpc_call import grpc_target
from core.wasm.host import GrpcCallResult
from core.wasm.vm import WasmTrap

if TYPE_CHECKING:
    from core.upstream_h2 import H2UpstreamStream
    from core.wasm.host import Stream
    from core.wasm.plugin import PluginVm
    from core.wasm.sharing import Root

log = logging.getLogger("wasmgate.wasm")
UNKNOWN, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE = 2, 8, 13, 14


class GrpcStream:
    """One stream: the plugin's side (sends, half-close, cancel) and the listener of
    its HTTP/2 stream (core/upstream_h2.py), which turns what comes into callbacks."""

    def __init__(self, vm: PluginVm, token: int, root: Root, owner: Stream | None) -> None:
        self.vm = vm
        self.token = token
        self.root = root
        self.owner = owner  # the HTTP context that opened it, or None (the root's)
        self.conn: H2UpstreamStream | None = None
        self.pending: list[bytes] = []  # frames sent before the connection was up
        self.local_closed = False
        self.over = False  # the server's side closed, or cancelled: no more callbacks
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.initial_seen = False
        self.trailers: list[tuple[bytes, bytes]] | None = None

    # -- the plugin's side

    def send(self, message: bytes, end: bool) -> None:
        if self.over:
            return  # the server's side closed: nothing to send it to
        frame = b"\0" + len(message).to_bytes(4, "big") + message
        if self.conn is None:
            self.pending.append(frame)
        else:
            self.conn.write(frame)
        if end:
            self.half_close()

    @property
    def unsent(self) -> int:
        """Bytes sent by the plugin that have not gone to the server yet."""
        held = sum(map(len, self.pending))
        return held + sum(map(len, self.conn.queue)) if self.conn is not None else held

    def half_close(self) -> None:
        """The plugin's side is done; the token goes once the server's is too."""
        if not self.local_closed:
            self.local_closed = True
            if self.conn is not None and not self.over:
                self.conn.end_body()
        if self.over:
            self.vm.grpc_streams.pop(self.token, None)

    def cancel(self) -> None:
        """Reset the stream; nothing more reaches the plugin."""
        self._finish()
        self.vm.grpc_streams.pop(self.token, None)
        if self.conn is not None:
            self.conn.close()

    def _finish(self) -> None:
        self.over = True
        if self.local_closed:
            self.vm.grpc_streams.pop(self.token, None)
        if not self.done.done():
            self.done.set_result(None)

    # -- ResponseListener (the HTTP/2 stream's events)

    def on_response_head(self, head: ResponseHead) -> None:
        if head.status != 200:
            self._close(UNAVAILABLE, f"upstream answered HTTP {head.status}", reset=True)
            return
        fields = [(n.lower(), v) for n, v in head.headers.raw]
        if any(n == b"grpc-status" for n, _ in fields):
            self.trailers = fields  # trailers-only: all of the response is its head
            return
        self.initial_seen = True
        self._callback("proxy_on_grpc_receive_initial_metadata", len(fields), initial=fields)

    def on_response_body(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        limit = self.vm.limits.max_buffer_bytes
        while len(buf) >= 5 and not self.over:
            size = int.from_bytes(buf[1:5], "big")
            if buf[0] != 0:
                self._close(INTERNAL, "compressed gRPC message (none was asked for)", reset=True)
                return
            if size > limit:
                self._close(RESOURCE_EXHAUSTED, "gRPC message over max_buffer_bytes", reset=True)
                return
            if len(buf) < 5 + size:
                return
            message = bytes(buf[5 : 5 + size])
            del buf[: 5 + size]
            self._callback("proxy_on_grpc_receive", size, message=message)

    def on_response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.trailers = [(n.lower(), v) for n, v in fields]

    def on_response_end(self) -> None:
        if self.over:
            return
        trailers = self.trailers or []
        values = dict(trailers)
        code = values.get(b"grpc-status")
        status = int(code) if code is not None and code.isdigit() else UNKNOWN
        text = values.get(b"grpc-message", b"").decode("utf-8", "replace")
        if trailers:
            self._callback(
                "proxy_on_grpc_receive_trailing_metadata", len(trailers), trailing=trailers
            )
        self._close(status, text)

    def on_upstream_error(self, exc: UpstreamError) -> None:
        self._close(UNAVAILABLE, str(exc))

    def on_upstream_pause(self) -> None:
        pass  # the HTTP/2 stream queues what the window does not take

    def on_upstream_resume(self) -> None:
        pass

    def on_tunnel_data(self, data: bytes) -> None:
        pass

    # -- callbacks into the plugin

    def _close(self, status: int, text: str, *, reset: bool = False) -> None:
        if self.over:
            return
        self._finish()
        if reset and self.conn is not None:
            self.conn.close()
        self._callback("proxy_on_grpc_close", status, status=status, text=text, last=True)

    def _callback(
        self,
        name: str,
        arg: int,
        *,
        initial: list[tuple[bytes, bytes]] | None = None,
        message: bytes | None = None,
        trailing: list[tuple[bytes, bytes]] | None = None,
        status: int = 0,
        text: str = "",
        last: bool = False,
    ) -> None:
        """Call ``name`` on the context that opened the stream, with what it reads."""
        vm = self.vm
        if (self.over and not last) or self.root.context_id not in vm.roots:
            return
        owner = self.owner
        if owner is not None and owner.id not in vm.streams:
            self.cancel()  # its HTTP context ended meanwhile
            return
        host = vm.host
        previous = host.grpc_result
        host.grpc_result = GrpcCallResult(
            initial=initial or [], message=message, trailing=trailing or [], status=status
        )
        host.grpc_result.text = text
        context_id = owner.id if owner is not None else self.root.context_id
        try:
            vm.call(owner, name, context_id, self.token, arg)
        except WasmTrap:
            self.cancel()  # counted and logged by vm.call
        finally:
            host.grpc_result = previous


def open_stream(
    vm: PluginVm,
    cluster: str,
    service: bytes,
    method: bytes,
    metadata: list[tuple[bytes, bytes]],
    owner: Stream | None,
) -> int | str:
    """Open the stream (as a task of ``vm``): its token, or why not ("cluster": an
    unknown one; "head": names or metadata that cannot be sent)."""
    target = grpc_target(vm, cluster, service, method, metadata, "stream")
    if isinstance(target, str):
        return target
    pool, path = target
    token = next(vm.tokens)
    stream = GrpcStream(vm, token, vm.active, owner)
    vm.grpc_streams[token] = stream
    vm.spawn_call(_run(stream, pool, path, metadata))
    return token


async def _run(
    stream: GrpcStream, pool: UpstreamPool, path: bytes, metadata: list[tuple[bytes, bytes]]
) -> None:
    """Connect, send the head and what waits, then hold the stream until it is over."""
    from core.upstream_h2 import H2UpstreamStream, request_fields

    try:
        try:
            ep = pool.pick()
        except UpstreamError as exc:
            stream.on_upstream_error(exc)
            return
        try:
            async with asyncio.timeout(pool.cfg.connect_timeout):
                conn = pool.take_idle(ep) or await pool.connect(ep)
        except TimeoutError:
            pool.report(ep, False)
            stream.on_upstream_error(UpstreamError(f"no connection to '{pool.name}' in time"))
            return
        except UpstreamError as exc:
            pool.report(ep, False)
            stream.on_upstream_error(exc)
            return
        if not isinstance(conn, H2UpstreamStream):
            UpstreamPool.release(conn)
            stream.on_upstream_error(
                UpstreamError(f"upstream '{pool.name}' is not HTTP/2 (h2c or h2)")
            )
            return
        if stream.over:  # cancelled while connecting
            conn.close()
            return
        stream.conn = conn
        conn.begin(stream, head_request=False)
        authority = (pool.cfg.host_header or ep.address).encode("latin-1")
        headers = [(b"content-type", b"application/grpc"), *metadata]
        fields = request_fields("POST", conn.scheme, authority, path, headers, [], None)
        conn.send_head(fields, end=False)
        for frame in stream.pending:
            conn.write(frame)
        stream.pending = []
        if stream.local_closed:
            conn.end_body()
        await stream.done
    finally:
        if not stream.over:  # cancelled under it (the VM closed)
            stream.over = True
            stream.vm.grpc_streams.pop(stream.token, None)
        if stream.conn is not None:
            stream.conn.close()


def close_owned(vm: PluginVm, owner: Stream) -> None:
    """Reset the streams an HTTP context opened, and cancel its unary calls, as it
    ends (Envoy does so when the context is destroyed)."""
    for stream in list(vm.grpc_streams.values()):
        if stream.owner is owner:
            stream.cancel()
    for token, caller in list(vm.grpc_call_owners.items()):
        if caller is owner:
            del vm.grpc_call_owners[token]
            call = vm.grpc_calls.pop(token, None)
            if call is not None:
                call.cancel()
