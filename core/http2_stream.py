"""An HTTP/2 stream as its exchange sees it: the client side of one request.

:class:`Stream` is the :class:`core.client_side.ClientSide` of an exchange whose
request came on HTTP/2 (core/http2.py owns the connection): body bytes written to it
queue per stream and go out as DATA frames as the client's windows allow; past
``_HIGH`` queued bytes it tells the exchange to pause its upstream (as a full
socket does on HTTP/1.1). :class:`H2Exchange` writes the response head as HEADERS.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, cast

import h2.errors

from core import grpc
from core.deadline import Deadline
from core.proxy import Exchange

if TYPE_CHECKING:
    from core.bodies import BodyPipe
    from core.http2 import ServerConnection
    from core.upstream import ResponseHead

_HIGH = 65536  # response bytes queued on a stream before its upstream pauses
_LOW = 16384
# Not carried by HTTP/2 (RFC 9113 §8.2.2), or framing the gateway sets itself.
DROP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te"}
)
_E = h2.errors.ErrorCodes


class Stream:
    """One request stream, seen by its exchange as its client connection."""

    __slots__ = (
        "_end",
        "_paused",
        "_queued",
        "_unacked",
        "cert_headers",
        "conn",
        "done",
        "exchange",
        "exchange_deadline",
        "gateway",
        "head_sent",
        "id",
        "limits",
        "loop",
        "max_body_bytes",
        "out",
        "out_bytes",
        "received_end",
        "reset",
        "sent_end",
        "tls",
        "trailers",
        "write_paused",
    )

    def __init__(self, conn: ServerConnection, stream_id: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.gateway = conn.gateway
        self.loop = conn.loop
        self.limits = conn.limits
        self.max_body_bytes = conn.max_body_bytes
        self.tls = conn.tls
        self.cert_headers = conn.cert_headers
        self.exchange: Exchange | None = None
        self.exchange_deadline = Deadline(self.loop)  # the exchange's timeouts
        self.write_paused = False
        self.head_sent = False
        self.sent_end = False  # END_STREAM (or RST_STREAM) went out
        self.received_end = False
        self.reset = False
        self.done = False  # the exchange is over
        self.trailers: list[tuple[bytes, bytes]] | None = None  # to send after the body
        self.out: collections.deque[bytes] = collections.deque()
        self.out_bytes = 0
        self._end = False  # end the stream once out has gone
        self._paused = 0
        self._queued = False  # waits for the connection's flush (send_later)
        self._unacked = 0

    # -- from the connection

    def on_data(self, data: bytes, flow_length: int) -> None:
        if self._paused:
            self._unacked += flow_length
        else:
            self.conn.ack(flow_length, self.id)
        exchange = self.exchange
        if exchange is not None and data and not self.done:
            exchange.on_request_body(data)

    def on_end(self) -> None:
        self.received_end = True
        if self.exchange is not None and not self.done:
            self.exchange.on_request_end()

    def on_reset(self) -> None:
        self.reset = self.sent_end = True
        self.out.clear()
        self.out_bytes = 0
        self.give_back()
        if self.exchange is not None and not self.done:
            self.exchange.on_client_lost()

    def give_back(self) -> None:
        if self._unacked:
            self.conn.ack(self._unacked, self.id)
            self._unacked = 0

    # -- the ClientSide an exchange uses

    def write(self, data: bytes) -> None:
        if self.sent_end or not data:
            return
        self.out.append(data)
        self.out_bytes += len(data)
        if self.out_bytes > _HIGH:
            self.flush()  # now: its upstream may have to pause
        else:
            self._send_later()

    def writelines(self, parts: list[bytes]) -> None:
        self.write(b"".join(parts))

    def pause(self, reason: int) -> None:
        self._paused |= reason

    def resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused:
                self.give_back()
                self.conn.flush()

    def abort(self) -> None:
        """The response cannot be completed: RST_STREAM, the connection stays."""
        if not self.sent_end:
            self.conn.reset_stream(self, _E.INTERNAL_ERROR)

    def send_head(self, fields: list[tuple[bytes, bytes]], *, end: bool = False) -> None:
        if self.sent_end or self.head_sent:
            return
        self.head_sent = True
        if end:
            self.sent_end = True
        self.conn.send_headers(self, fields, end)

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
        fields = [(b":status", b"%d" % status)]
        for name, value in headers:
            lname = name.lower()
            if lname not in DROP and lname != b"content-length" and lname != b"date":
                fields.append((lname, value))
        fields += ((b"content-length", b"%d" % len(body)), (b"date", self.gateway.http_date()))
        bodiless = head_only or status in (204, 304)
        self.send_head(fields, end=bodiless or not (body or self.trailers))
        if bodiless:
            return 0
        self.write(body)
        self.finish()
        return len(body)

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        self.done = True
        self.exchange_deadline.close()
        self.finish()
        self.conn.exchange_done(self)

    def send_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """Sent with END_STREAM once the body has gone."""
        self.trailers = [(n.lower(), v) for n, v in fields]

    def start_tunnel(self, exchange: Exchange) -> None:  # no Upgrade on HTTP/2
        self.abort()

    # -- sending

    def finish(self) -> None:
        """End the stream once the queued body has gone (with trailers, if any)."""
        if not self.sent_end:
            self._end = True
            self._send_later()

    def _send_later(self) -> None:
        """Send at the connection's flush, at the end of this turn of the loop: by then
        the exchange has often finished, and the last DATA frame carries END_STREAM."""
        if not self._queued:
            self._queued = True
            self.conn.send_later(self)

    def flush(self) -> None:
        """Send what the windows allow; pause or resume the upstream accordingly."""
        self._queued = False
        if self.sent_end:
            return
        conn = self.conn
        if self.out and not conn.write_paused:
            conn.send_body(self)
        if not self.out and self._end and not self.sent_end:
            if not self.head_sent:  # (cannot happen: the exchange replied first)
                self.send_head([(b":status", b"502")])
            self.sent_end = True
            conn.end_stream(self)
        conn.flush()
        exchange = self.exchange
        paused = self.out_bytes > _HIGH or conn.write_paused
        if paused and not self.write_paused:
            self.write_paused = True
            if exchange is not None and not self.done:
                exchange.on_client_pause()
        elif self.write_paused and self.out_bytes <= _LOW and not conn.write_paused:
            self.write_paused = False
            if exchange is not None and not self.done:
                exchange.on_client_resume()

    @property
    def ending(self) -> bool:
        """The stream ends with the last of its queued body (no trailers follow)."""
        return self._end and not self.trailers

    @property
    def blocked(self) -> bool:
        """Body bytes wait for the client's window."""
        return bool(self.out)


class H2Exchange(Exchange):
    """An exchange whose client is an HTTP/2 stream: the head goes out as HEADERS,
    and a local reply to a gRPC call as a trailers-only gRPC error (core/grpc.py)."""

    __slots__ = ()

    async def run(self) -> None:
        seconds = None
        if grpc.is_grpc(self.req.headers):
            seconds = grpc.timeout(self.req.headers.get("grpc-timeout"))
        if seconds is None:
            await super().run()
            return
        timer = self.client.loop.call_later(seconds, self._grpc_deadline)
        try:
            await super().run()
        finally:
            timer.cancel()

    def _grpc_deadline(self) -> None:
        """The call's grpc-timeout passed: DEADLINE_EXCEEDED, and the upstream cancelled."""
        if self._client_gone or self._abandoned:
            return
        reason = b"deadline exceeded (grpc-timeout)"
        if not self._replied:
            self._write_reply(504, [], reason)
        else:
            stream = cast(Stream, self.client)
            stream.trailers = [
                (b"grpc-status", b"4"),
                (b"grpc-message", grpc.message(reason.decode())),
            ]
            stream.finish()
        self.reason = "grpc-timeout"
        self._abandoned = True
        self._drop_upstream()
        self._wake()

    def _write_reply(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if status < 300 or not grpc.is_grpc(self.req.headers):
            super()._write_reply(status, headers, body)
            return
        self.status = status
        if self._client_gone or self._replied:
            return
        self._replied = True
        cast(Stream, self.client).send_head(grpc.trailers_only(status, headers, body), end=True)

    def _write_head(
        self,
        head: ResponseHead,
        filtered: bool,
        length: int | None,
        no_body: bool,
        pipe: BodyPipe | None,
    ) -> bool:
        stream = cast(Stream, self.client)
        self.status = head.status
        if head.codings and not no_body:
            self._drop_upstream()
            self._local_now(502, "upstream used a transfer coding HTTP/2 cannot carry")
            return False
        fields = [(b":status", b"%d" % head.status)]
        for name, value in head.headers.raw:
            lname = name.lower()
            if lname in DROP or (filtered and lname == b"content-length"):
                continue
            fields.append((lname, value))
        if filtered and length is not None:
            fields.append((b"content-length", b"%d" % length))
        if self._resp_done and not self._resp_buffer and not stream.trailers:
            # All of the response is its head (gRPC's trailers-only): END_STREAM on it.
            stream.send_head(fields, end=True)
            return True
        stream.send_head(fields)
        for chunk in self._resp_buffer:
            self.bytes_out += len(chunk)
            stream.write(chunk)
        self._resp_buffer = []
        self._resp_buffered = 0
        return True
