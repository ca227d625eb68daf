"""HTTP/2 to upstreams (``protocol = "h2"`` or ``"h2c"``), on python-hyper's h2.

:class:`H2Upstream` is one connection to an endpoint, shared by as many requests as
the upstream's SETTINGS_MAX_CONCURRENT_STREAMS allows (and at most
``_MAX_STREAMS``); the pool keeps every such connection of an endpoint and opens
another only when all are full. :class:`H2UpstreamStream` is one request on it: the
exchange holds it as its upstream connection (it subclasses
:class:`~core.upstream.UpstreamConnection`, so the exchange keeps one code path) and
it is its own ``transport``: ``write`` sends DATA as the stream's window allows
(pausing the client's body past ``_HIGH`` queued bytes), and ``pause_reading``
holds back the stream's WINDOW_UPDATEs, so a slow client stops its own stream, not
the connection. Response trailers go to the exchange (``on_response_trailers``).

Errors are translated here: a connection that breaks or a GOAWAY before the response
head is an :class:`~core.errors.UpstreamConnectError` for each stream it ends (the
exchange retries where safe), a RST_STREAM one too, and h2's protocol errors close
the connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import TYPE_CHECKING, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from hpack import NeverIndexedHeaderTuple

from core.errors import UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from core.headers import is_hop_by_hop
from core.http2_fields import Malformed, check_response, check_trailers
from core.http2_hpack import CachingDecoder, CachingEncoder
from core.upstream import ResponseHead, UpstreamConnection

if TYPE_CHECKING:
    from core.http1 import Request
    from core.upstream import EndpointState, ResponseListener, UpstreamPool

_MAX_STREAMS = 100  # streams per connection, whatever the upstream allows
_HIGH = 65536  # request body bytes queued on a stream before the client is paused
_WINDOW = 16 << 20  # our receive window for the whole connection
_DROP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)


class H2Upstream(asyncio.Protocol):
    """One HTTP/2 connection to an endpoint."""

    def __init__(self, endpoint: EndpointState, pooled: list[H2Upstream], scheme: bytes) -> None:
        self.endpoint = endpoint
        self.pooled = pooled  # the pool's connections to this endpoint (self included)
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2UpstreamStream] = {}
        self.closed = False
        self.goaway = False
        self.write_paused = False
        self.settled = False  # the upstream's SETTINGS came (its stream limit is known)
        self._flush_due = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.h2 = h2.connection.H2Connection(
            # Outbound checks off: request_fields builds lower-case names and drops
            # the connection-specific ones. Inbound checks too: core/http2_fields.py
            # makes them in one pass (_dispatch).
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.h2.encoder = CachingEncoder()  # (before any block is coded: core/http2_hpack.py)
        self.h2.decoder = CachingDecoder()

    @property
    def has_room(self) -> bool:
        if self.closed or self.goaway:
            return False
        if not self.settled:  # one stream until the upstream said how many it takes
            return not self.streams
        limit = min(self.h2.remote_settings.max_concurrent_streams, _MAX_STREAMS)
        return len(self.streams) < limit

    def open_stream(self) -> H2UpstreamStream:
        sid = self.h2.get_next_available_stream_id()
        stream = H2UpstreamStream(self, sid)
        self.streams[sid] = stream
        return stream

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW - 65535)
        self.pooled.append(self)
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.flush()
            self._fail(UpstreamProtocolError(f"invalid HTTP/2 from upstream: {exc}"))
            return
        try:
            for event in events:
                self._dispatch(event)
        except Malformed as exc:  # as h2 ends the connection when it checks the fields
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            self.flush()
            self._fail(UpstreamProtocolError(f"invalid HTTP/2 from upstream: {exc}"))
            return
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(UpstreamConnectError("upstream closed the HTTP/2 connection"))

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in list(self.streams.values()):
            if stream.listener is not None:
                stream.listener.on_upstream_pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            stream.flush()
            if stream.listener is not None and len(stream.queue) == 0:
                stream.listener.on_upstream_resume()

    # -- events

    def _dispatch(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", 0)
        stream = self.streams.get(sid) if sid else None
        listener = stream.listener if stream is not None else None
        if isinstance(event, h2.events.DataReceived):
            length = event.flow_controlled_length or 0
            if stream is None or listener is None:
                self.ack(length, sid)
                return
            if stream.paused:
                stream.unacked += length
            else:
                self.ack(length, sid)
            if event.data:
                listener.on_response_body(event.data)
        elif isinstance(event, h2.events.ResponseReceived):
            check_response(cast(list[tuple[bytes, bytes]], event.headers or []))
            if listener is not None:
                listener.on_response_head(
                    _head(cast(list[tuple[bytes, bytes]], event.headers or []))
                )
        elif isinstance(event, h2.events.InformationalResponseReceived):
            check_response(cast(list[tuple[bytes, bytes]], event.headers or []))  # (not passed on)
        elif isinstance(event, h2.events.TrailersReceived):
            check_trailers(event.headers or [])
            if listener is not None:
                fields = cast(list[tuple[bytes, bytes]], event.headers or [])
                listener.on_response_trailers([(n, v) for n, v in fields if n[:1] != b":"])
        elif isinstance(event, h2.events.StreamEnded):
            if stream is not None:
                stream.remote_ended = True
                if listener is not None:
                    listener.on_response_end()
                self._forget(stream)
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                stream.remote_ended = stream.local_ended = True
                if listener is not None:
                    code = event.error_code
                    name = code.name if isinstance(code, h2.errors.ErrorCodes) else str(code)
                    listener.on_upstream_error(
                        UpstreamConnectError(f"upstream reset the stream ({name})")
                    )
                self._forget(stream)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.settled = True
                if not self.ready.done():
                    self.ready.set_result(None)
            for each in list(self.streams.values()):
                if each.queue:
                    each.flush()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True
            if self in self.pooled:
                self.pooled.remove(self)
            last = event.last_stream_id or 0
            for each in list(self.streams.values()):
                if each.id > last and each.listener is not None:
                    each.listener.on_upstream_error(UpstreamConnectError("upstream sent GOAWAY"))
            if not self.streams and self.transport is not None:
                self.transport.close()

    def _fail(self, exc: UpstreamConnectError | UpstreamProtocolError) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # (read: whoever waits raises it; nobody may)
        if self in self.pooled:
            self.pooled.remove(self)
        for stream in list(self.streams.values()):
            stream.closed = True
            if stream.listener is not None and not stream.remote_ended:
                stream.listener.on_upstream_error(exc)
        self.streams.clear()
        if self.transport is not None:
            self.transport.abort()

    # -- used by streams

    def ack(self, length: int, sid: int) -> None:
        if length and not self.closed:
            self.h2.acknowledge_received_data(length, sid)
            self.flush()

    def flush(self) -> None:
        """Write what h2 has queued, once per turn of the loop (see core/http2.py)."""
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_due = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _forget(self, stream: H2UpstreamStream) -> None:
        if stream.local_ended and stream.remote_ended:
            self.streams.pop(stream.id, None)
            if self.goaway and not self.streams and self.transport is not None:
                self.transport.close()

    def close(self) -> None:
        self._fail(UpstreamConnectError("connection closed by the gateway"))


def _head(fields: list[tuple[bytes, bytes]]) -> ResponseHead:
    head = ResponseHead()
    raw = head.headers.raw
    for name, value in fields:
        if name == b":status":
            head.status = int(value)
        elif name == b"content-length":
            head.content_length = int(value) if value.isdigit() else None
            raw.append((name, value))
        elif name[:1] != b":" and name not in _DROP:
            raw.append((name, value))
    return head


class H2UpstreamStream(UpstreamConnection):
    """One request on an :class:`H2Upstream`, as the exchange's upstream connection."""

    def __init__(self, conn: H2Upstream, stream_id: int) -> None:  # no parser: h2 parses
        # Set here, not as a class attribute: compiled by mypyc (make compile), the base
        # class keeps h2 per instance, and that would hide a class attribute here.
        self.h2 = True
        self.endpoint = conn.endpoint
        self.conn = conn
        self.id = stream_id
        self.transport = cast(asyncio.Transport, self)  # pause/resume_reading, write
        self.listener: ResponseListener | None = None
        self.closed = False
        self.head_request = False
        self.tunnel = False
        self.local_ended = False
        self.remote_ended = False
        self.paused = False
        self.unacked = 0
        self.queue: collections.deque[bytes] = collections.deque()
        self._end = False
        self._trailers: list[tuple[bytes, bytes]] = []
        self._client_paused = False

    @property
    def scheme(self) -> bytes:
        return self.conn.scheme

    def begin(self, listener: ResponseListener, *, head_request: bool) -> None:
        self.listener = listener
        self.head_request = head_request

    def send_head(self, fields: list[tuple[bytes, bytes]], *, end: bool) -> None:
        conn = self.conn
        try:
            conn.h2.send_headers(self.id, fields, end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            if self.listener is not None:
                self.listener.on_upstream_error(UpstreamConnectError(f"HTTP/2 stream: {exc}"))
            return
        self.local_ended = end
        conn.flush()

    def write(self, data: bytes) -> None:
        if self.closed or self.local_ended or not data:
            return
        self.queue.append(data)
        self.flush()

    def writelines(self, parts: list[bytes]) -> None:
        self.write(b"".join(parts))

    def end_body(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """End the request once its queued body has gone, with ``trailers`` if any."""
        if not self.local_ended and not self.closed:
            self._end = True
            self._trailers = [(n.lower(), v) for n, v in trailers or ()]
            self.flush()

    def flush(self) -> None:
        conn = self.conn
        h = conn.h2
        queue = self.queue
        try:
            while queue and not conn.write_paused:
                room = min(h.local_flow_control_window(self.id), h.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk = queue[0]
                if len(chunk) > room:
                    h.send_data(self.id, chunk[:room])
                    queue[0] = chunk[room:]
                else:
                    h.send_data(self.id, chunk)
                    queue.popleft()
            if not queue and self._end and not self.local_ended:
                if self._trailers:
                    h.send_headers(self.id, self._trailers, end_stream=True)
                else:
                    h.end_stream(self.id)
                self.local_ended = True
                conn._forget(self)
        except h2.exceptions.ProtocolError:
            queue.clear()
        conn.flush()
        queued = sum(map(len, queue))
        listener = self.listener
        if listener is None:
            return
        if queued > _HIGH and not self._client_paused:
            self._client_paused = True
            listener.on_upstream_pause()
        elif self._client_paused and not queued:
            self._client_paused = False
            listener.on_upstream_resume()

    # -- the "transport" the exchange pauses and resumes for a slow client

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        if self.unacked:
            self.conn.ack(self.unacked, self.id)
            self.unacked = 0

    def is_closing(self) -> bool:
        return self.closed

    # -- UpstreamConnection's ending

    @property
    def reusable(self) -> bool:
        return False  # the connection is pooled, not the stream (UpstreamPool.release)

    def detach(self) -> None:
        self.listener = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.listener = None
        conn = self.conn
        if self.unacked:
            conn.ack(self.unacked, self.id)
            self.unacked = 0
        if not (self.local_ended and self.remote_ended) and not conn.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                conn.h2.reset_stream(self.id, h2.errors.ErrorCodes.CANCEL)
            conn.flush()
        self.local_ended = self.remote_ended = True
        conn._forget(self)


async def connect_stream(pool: UpstreamPool, ep: EndpointState) -> H2UpstreamStream:
    """A stream on a new connection to ``ep``, once the upstream's SETTINGS came.

    Exchanges that need a connection while one is being opened wait for it and take
    streams on it when it has room, rather than each opening its own.
    """
    assert pool.h2_conns is not None
    conns = pool.h2_conns.setdefault(ep.address, [])
    pending = pool.h2_pending
    while (opening := pending.get(ep.address)) is not None:
        await asyncio.shield(opening)
        stream = take_stream(conns)
        if stream is not None:
            return stream
    done = pending[ep.address] = asyncio.get_running_loop().create_future()
    scheme = b"https" if pool.tls is not None else b"http"
    try:
        proto = await pool.open_connection(ep, lambda: H2Upstream(ep, conns, scheme))
        assert isinstance(proto, H2Upstream)
        try:
            async with asyncio.timeout(pool.cfg.connect_timeout):
                await asyncio.shield(proto.ready)
        except TimeoutError:
            proto.close()
            raise UpstreamTimeout(f"no HTTP/2 SETTINGS from {ep.address} in time") from None
    finally:
        del pending[ep.address]
        done.set_result(None)
    return proto.open_stream()


class _Head:
    """A ResponseListener that waits for a response head only (health probes)."""

    def __init__(self) -> None:
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_response_head(self, head: ResponseHead) -> None:
        if not self.done.done():
            self.done.set_result(head.status)

    def on_upstream_error(self, exc: UpstreamError) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def on_response_body(self, data: bytes) -> None:
        pass

    def on_response_end(self) -> None:
        pass

    def on_response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        pass

    def on_upstream_pause(self) -> None:
        pass

    def on_upstream_resume(self) -> None:
        pass

    def on_tunnel_data(self, data: bytes) -> None:
        pass


async def probe_status(pool: UpstreamPool, ep: EndpointState, path: bytes, host: bytes) -> int:
    """The status of ``GET path`` on a connection of its own to ``ep`` (an active
    health check of an HTTP/2 upstream; the caller bounds the time). Raises
    UpstreamError."""
    scheme = b"https" if pool.tls is not None else b"http"
    proto = await pool.open_connection(ep, lambda: H2Upstream(ep, [], scheme))
    assert isinstance(proto, H2Upstream)
    try:
        await asyncio.shield(proto.ready)
        stream = proto.open_stream()
        listener = _Head()
        stream.begin(listener, head_request=False)
        fields = [(b":method", b"GET"), (b":scheme", scheme), (b":authority", host)]
        fields += [(b":path", path), (b"user-agent", b"wasmgate-health-check")]
        stream.send_head(fields, end=True)
        return await listener.done
    finally:
        proto.close()


def take_stream(conns: list[H2Upstream]) -> H2UpstreamStream | None:
    """A new stream on a pooled connection with room, or None."""
    for conn in conns:
        if conn.has_room:
            return conn.open_stream()
    return None


def proxied_fields(
    req: Request,
    scheme: bytes,
    host: bytes,
    forwarded: tuple[bytes, bytes, bytes, bytes],
    cert_headers: bytes,
    length: int | None,
) -> list[tuple[bytes, bytes]]:
    """The HEADERS of a proxied request: its own fields plus what the gateway adds on
    HTTP/1.1 too (X-Forwarded-*, X-Real-IP, traceparent, the client certificate).
    traceparent, new for each request, comes last and never indexed: it would only
    push the fields that repeat out of the HPACK table (see core/http2_hpack.py)."""
    client_ip, xff, xfp, xfh = forwarded
    extra = [
        (b"x-forwarded-for", xff),
        (b"x-forwarded-proto", xfp),
        (b"x-real-ip", client_ip),
    ]
    if xfh:
        extra.append((b"x-forwarded-host", xfh))
    for line in cert_headers.split(b"\r\n"):
        name, _, value = line.partition(b": ")
        if value:
            extra.append((name, value))
    target = req.wire_target()
    fields = request_fields(req.method, scheme, host, target, req.headers.raw, extra, length)
    fields.append(NeverIndexedHeaderTuple(b"traceparent", req.traceparent))
    return fields


def request_fields(
    method: str,
    scheme: bytes,
    authority: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    extra: list[tuple[bytes, bytes]],
    content_length: int | None,
) -> list[tuple[bytes, bytes]]:
    """The HEADERS of a request to an HTTP/2 upstream (names lower-cased, connection
    headers dropped; gRPC's ``te: trailers`` kept or added)."""
    fields = [
        (b":method", method.encode("ascii")),
        (b":scheme", scheme),
        (b":authority", authority),
        (b":path", target),
    ]
    grpc = False
    for name, value in headers:
        lname = name.lower()
        if lname in _DROP or lname == b"content-length" or lname == b"te" or is_hop_by_hop(lname):
            continue
        if lname == b"content-type" and value.startswith(b"application/grpc"):
            grpc = True
        fields.append((lname, value))
    for name, value in extra:
        fields.append((name.lower(), value))
    if content_length is not None:
        fields.append((b"content-length", b"%d" % content_length))
    if grpc:
        fields.append((b"te", b"trailers"))
    return fields
