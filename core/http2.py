"""HTTP/2 from clients: h2 over TLS (ALPN) and h2c with prior knowledge, on python-hyper's h2.

A connection starts as an HTTP/1.1 :class:`core.http1.ClientConnection`; it hands
the transport to a :class:`ServerConnection` when TLS negotiated ``h2`` or the first
bytes on a plain listener are the HTTP/2 preface (``[server.http2]`` may turn either
off). h2 (the only module that imports it) does the framing, HPACK and the protocol
state; this module maps its events onto the same :class:`core.proxy.Exchange` an
HTTP/1.1 request gets, one per stream, through a :class:`Stream` that plays the
client connection's part (:class:`core.client_side.ClientSide`).

Flow control is back-pressure both ways. Request body bytes are acknowledged to the
client (WINDOW_UPDATE) only while the exchange takes them, so a stream whose upstream
is slow stops its client at one window. Response bytes go out as the client's windows
allow; a stream with more than 64 KiB queued pauses its upstream, as a full
socket does on HTTP/1.1, and while the socket itself is full nothing more is read.

Hostile input (RFC 9113 §10.5): h2 refuses malformed frames, oversized header blocks
and CONTINUATION floods with GOAWAY, core/http2_fields.py malformed header blocks
(h2's own, slower checks of them are off); here, streams are bounded by exchanges still
running (not only open streams), clients that cancel streams (rapid reset) or send
control frames (PING, SETTINGS, PRIORITY, empty DATA) faster than the configured
rates get GOAWAY ENHANCE_YOUR_CALM, and a connection idle, or stalled on a zero
window, for ``server.limits.idle_timeout`` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from core.http1 import CONNECTION_IDS, Reject, Request
from core.http2_fields import Malformed, check_request, check_trailers
from core.http2_hpack import CachingDecoder, CachingEncoder
from core.http2_request import parse_request
from core.http2_stream import H2Exchange, Stream
from core.tracecontext import start_trace

if TYPE_CHECKING:
    from core.gateway import Gateway
    from plugin_sdk import TLSInfo

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_WINDOW = 10.0  # seconds over which resets and control frames are counted
_S = h2.settings.SettingCodes
_E = h2.errors.ErrorCodes


def sniff(data: bytes) -> bool | None:
    """Whether ``data`` starts with the HTTP/2 preface; None while too short to say."""
    n = min(len(data), len(PREFACE))
    if data[:n] != PREFACE[:n]:
        return False
    return True if n == len(PREFACE) else None


class ServerConnection(asyncio.Protocol):
    """One HTTP/2 client connection: streams in, exchanges out."""

    def __init__(
        self,
        gateway: Gateway,
        scheme: str,
        peer: tuple[str, int],
        tls: TLSInfo | None,
        cert_headers: bytes,
    ) -> None:
        snap = gateway.snapshot
        self.gateway = gateway
        self.loop = gateway.loop
        self.scheme = scheme
        self.peer = peer
        self.conn_id = next(CONNECTION_IDS)  # connection.id, numbered with HTTP/1.1's
        self.tls = tls
        self.cert_headers = cert_headers
        self.limits = snap.config.server.limits
        self.settings = snap.config.server.http2
        self.max_body_bytes = snap.router.max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.write_paused = False
        self.streams: dict[int, Stream] = {}
        self.exchanges = 0  # exchange tasks not over, also of streams already reset
        self._goaway = False
        self._resets = 0
        self._control = 0
        self._count_from = self.loop.time()
        self._last_active = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._flush_due = False
        self._due: list[Stream] = []  # streams to send for at the flush
        self._opened = 0  # the stream the last HEADERS opened
        cfg = self.settings
        self.h2 = h2.connection.H2Connection(
            # Outbound checks off: the gateway builds the fields itself (lower-case
            # names, no connection-specific ones), and they cost a third of a request.
            # Inbound checks too: core/http2_fields.py makes them in one pass, and
            # parse_request joins cookie fields.
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        local = {
            _S.MAX_CONCURRENT_STREAMS: cfg.max_concurrent_streams,
            _S.MAX_HEADER_LIST_SIZE: cfg.max_header_list_size,
            _S.MAX_FRAME_SIZE: cfg.max_frame_size,
            _S.INITIAL_WINDOW_SIZE: cfg.initial_window_size,
            _S.ENABLE_PUSH: 0,
        }
        self.h2.encoder = CachingEncoder()  # (before any block is coded: see core/http2_hpack.py)
        self.h2.decoder = CachingDecoder()
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=local)
        self.h2.max_inbound_frame_size = cfg.max_frame_size
        self.h2.decoder.max_header_list_size = cfg.max_header_list_size

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.gateway.connections.add(self)
        self.h2.initiate_connection()
        extra = self.settings.connection_window_size - 65535
        if extra > 0:
            self.h2.increment_flow_control_window(extra)
        self.flush()
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._shut()  # h2 queued the GOAWAY naming the error
            return
        for event in events:
            self._dispatch(event)
            if self.closing:
                return
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._disarm()
        self.gateway.connections.discard(self)
        for stream in list(self.streams.values()):
            if not stream.reset:
                stream.on_reset()
        self.streams.clear()

    def pause_writing(self) -> None:
        # The client does not read: read nothing more from it either (its PINGs and
        # SETTINGS would queue answers), and let each stream pause its upstream.
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()
        for stream in list(self.streams.values()):
            stream.flush()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()
        for stream in list(self.streams.values()):
            stream.flush()

    # -- events

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            length = event.flow_controlled_length or 0
            if stream is None:
                self.ack(length, event.stream_id)
                return
            if event.data:
                self._last_active = self.loop.time()
            elif not event.stream_ended:
                self._count_control()
            stream.on_data(event.data or b"", length)
        elif isinstance(event, h2.events.RequestReceived):
            self._on_request(event)
            self._opened = event.stream_id or 0
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.on_end()
                self._forget(stream)
        elif isinstance(event, h2.events.TrailersReceived):
            if self._malformed(check_trailers, event.headers or []):
                return
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.exchange is not None and not stream.done:
                fields = cast(list[tuple[bytes, bytes]], event.headers or [])
                stream.exchange.on_request_trailers([(n, v) for n, v in fields if n[:1] != b":"])
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                if not stream.done:
                    self._resets += 1
                    self._check_rates()
                stream.on_reset()
                self._forget(stream)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0:
                for stream in list(self.streams.values()):
                    if stream.blocked:
                        stream.flush()
            else:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.flush()
        elif isinstance(
            event,
            h2.events.PingReceived | h2.events.RemoteSettingsChanged | h2.events.PriorityUpdated,
        ):
            if not (
                isinstance(event, h2.events.PriorityUpdated) and event.stream_id == self._opened
            ):  # (a HEADERS frame's own priority, which browsers send with each request)
                self._count_control()
            if isinstance(event, h2.events.RemoteSettingsChanged):
                for stream in list(self.streams.values()):
                    if stream.blocked:
                        stream.flush()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway = True
            if not self.exchanges:
                self.close()

    def _malformed(
        self,
        check: Callable[[list[tuple[bytes, bytes]]], None],
        fields: list[tuple[bytes, bytes]],
    ) -> bool:
        """End the connection (GOAWAY PROTOCOL_ERROR) if ``check`` refuses ``fields``,
        as h2 does when it checks them itself."""
        try:
            check(fields)
        except Malformed:
            self.goaway(_E.PROTOCOL_ERROR)
            self._shut()
            return True
        return False

    def _count_control(self) -> None:
        self._control += 1
        self._check_rates()

    def _check_rates(self) -> None:
        now = self.loop.time()
        if now - self._count_from > _WINDOW:
            self._count_from = now
            self._resets = self._control = 0
            return
        cfg = self.settings
        if self._resets > cfg.max_client_resets or self._control > cfg.max_control_frames:
            self.gateway.log_refused_h2(self.peer, "too many stream resets or control frames")
            self.goaway(_E.ENHANCE_YOUR_CALM)
            self._shut()

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        fields = cast(list[tuple[bytes, bytes]], event.headers or [])
        if self._malformed(check_request, fields):
            return
        sid = event.stream_id
        stream = Stream(self, sid)
        self.streams[sid] = stream
        self._last_active = self.loop.time()
        if self._goaway or self.gateway.draining:
            stream.done = True  # no exchange: forgotten once reset
            self.reset_stream(stream, _E.REFUSED_STREAM)
            return
        if self.exchanges >= self.settings.max_concurrent_streams:
            # Streams the client reset whose exchanges have not finished yet still
            # count: resetting does not buy room for more work (CVE-2023-44487).
            self._resets += 1
            self._check_rates()
            stream.done = True
            if not self.closing:
                self.reset_stream(stream, _E.REFUSED_STREAM)
            return
        req = Request()
        req.version = "2"
        req.conn_id = self.conn_id
        req.client_ip, req.client_port = self.peer
        req.scheme = self.scheme
        req.start = time.monotonic()
        try:
            parse_request(
                req,
                fields,
                ended=event.stream_ended is not None,
                limits=self.limits,
                max_body_bytes=self.max_body_bytes,
            )
        except Reject as exc:
            self.exchanges += 1
            stream.done = True
            sent = stream.write_reply(
                exc.status,
                [(b"content-type", b"text/plain; charset=utf-8")],
                (exc.reason + "\n").encode(),
                keep_alive=True,
            )
            self.gateway.log_rejected(self, exc.status, exc.reason, req, sent)
            self.exchange_done(stream)
            return
        start_trace(req, self.gateway.sample_ratio)
        exchange = H2Exchange(stream, req)
        stream.exchange = exchange
        self.exchanges += 1
        exchange.start()

    # -- used by streams

    def ack(self, length: int, stream_id: int) -> None:
        if length and not self.closing:
            self.h2.acknowledge_received_data(length, stream_id)

    def send_headers(self, stream: Stream, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        if self.closing:
            return
        try:
            self.h2.send_headers(stream.id, fields, end_stream=end)
        except h2.exceptions.ProtocolError:  # the stream or connection is gone
            stream.sent_end = True
            return
        if end:
            self._ended(stream)
        self.flush()

    def send_body(self, stream: Stream) -> None:
        """DATA as the windows allow; END_STREAM with the last of it if the stream is
        to end and has no trailers."""
        h = self.h2
        out = stream.out
        sent = 0
        ended = False
        try:
            while out:
                room = min(h.local_flow_control_window(stream.id), h.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk = out[0]
                if len(chunk) > room:
                    h.send_data(stream.id, chunk[:room])
                    out[0] = chunk[room:]
                    sent += room
                else:
                    ended = len(out) == 1 and stream.ending
                    h.send_data(stream.id, chunk, end_stream=ended)
                    out.popleft()
                    sent += len(chunk)
        except h2.exceptions.ProtocolError:
            out.clear()
            stream.sent_end = True
        stream.out_bytes = stream.out_bytes - sent if out else 0
        if sent:
            self._last_active = self.loop.time()
        if ended:
            stream.sent_end = True
            self._ended(stream)

    def end_stream(self, stream: Stream) -> None:
        if self.closing:
            return
        try:
            if stream.trailers:
                self.h2.send_headers(stream.id, stream.trailers, end_stream=True)
            else:
                self.h2.end_stream(stream.id)
        except h2.exceptions.ProtocolError:
            pass
        self._ended(stream)

    def _ended(self, stream: Stream) -> None:
        if not stream.received_end and not stream.reset:
            # The response is complete before the request (RFC 9113 §8.1): stop the
            # rest of its body.
            self.reset_stream(stream, _E.NO_ERROR)
        self._forget(stream)

    def reset_stream(self, stream: Stream, code: h2.errors.ErrorCodes) -> None:
        stream.reset = stream.sent_end = True
        stream.out.clear()
        stream.out_bytes = 0
        stream.give_back()
        if not self.closing:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.reset_stream(stream.id, code)
            self.flush()
        if stream.exchange is not None and not stream.done:
            # Not from inside the exchange's own call (abort): as a lost socket would.
            self.loop.call_soon(stream.exchange.on_client_lost)
        self._forget(stream)

    def exchange_done(self, stream: Stream) -> None:
        self.exchanges -= 1
        self._forget(stream)
        if not self.exchanges and self._goaway:
            self.close()

    def _forget(self, stream: Stream) -> None:
        """Drop a stream both sides have finished with (and whose exchange is over)."""
        if stream.done and stream.sent_end and (stream.received_end or stream.reset):
            self.streams.pop(stream.id, None)

    def send_later(self, stream: Stream) -> None:
        """Have ``stream`` send what it has at the flush."""
        self._due.append(stream)
        self.flush()

    def flush(self) -> None:
        """Write what h2 has queued, once per turn of the loop: the frames of many
        streams (and a stream's HEADERS, DATA and end) go out in one write."""
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        while self._due:  # (a stream's flush may wake an exchange that writes more)
            due, self._due = self._due, []
            for stream in due:
                stream.flush()
        self._flush_due = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def goaway(self, code: h2.errors.ErrorCodes = _E.NO_ERROR) -> None:
        """GOAWAY: no stream after the last one that came. With an error the
        connection is over; without, the streams running still finish, so the frame
        is written past h2 (whose state machine would refuse to send anything more)."""
        last = self.h2.highest_inbound_stream_id
        if code != _E.NO_ERROR:
            self._goaway = True
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection(code, last_stream_id=last)
            self.flush_now()
        elif not self._goaway:
            self._goaway = True
            self.flush_now()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(GoAwayFrame(0, last_stream_id=last, error_code=0).serialize())

    # -- closing, as the gateway asks of every client connection

    def _shut(self) -> None:
        """Send what is queued (a GOAWAY) and close."""
        self.close()

    def close(self) -> None:
        if not self.closing:
            self.flush_now()
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
        """Draining: no new streams (GOAWAY); close once the running ones are done."""
        self.goaway()
        if not self.exchanges:
            self.close()

    # -- timers: idle, or stalled on the client's windows

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self.limits.idle_timeout, self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.closing:
            return
        limit = self.limits.idle_timeout
        quiet = self.loop.time() - self._last_active
        if quiet < limit:
            self._timer = self.loop.call_later(limit - quiet, self._on_timer)
            return
        if not self.exchanges:
            self.goaway()
            self.close()
            return
        if any(s.blocked for s in self.streams.values()) or self.write_paused:
            # Responses wait on a window the client does not open: end the connection.
            self.gateway.log_refused_h2(self.peer, "stalled on a closed flow-control window")
            self.goaway(_E.FLOW_CONTROL_ERROR)
            self.abort()
            return
        self._timer = self.loop.call_later(limit, self._on_timer)
