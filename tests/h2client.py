"""A small HTTP/2 client for tests, on python-hyper's h2 over a real socket.

:class:`H2Client` sends requests on streams of one connection and collects what
comes back per stream (head, body, trailers, reset code) and for the connection
(GOAWAY). ``send_raw`` writes bytes as they are (hand-made frames for the hostile
input tests); :func:`frames` parses frames out of bytes read from the socket.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass
class StreamResult:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code, if reset

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)


class H2Client:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, auto_ack: bool = True
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.streams: dict[int, StreamResult] = {}
        self.goaway: int | None = None  # the GOAWAY error code, once one came
        self.closed = False
        self.auto_ack = auto_ack
        self.remote_settings: dict[int, int] = {}

    @classmethod
    async def open(
        cls,
        port: int,
        *,
        ssl_ctx: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        auto_ack: bool = True,
        settings: dict[int, int] | None = None,
    ) -> H2Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ssl_ctx, server_hostname=server_hostname if ssl_ctx else None
        )
        client = cls(reader, writer, auto_ack)
        if settings:
            client.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        client.conn.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.writer.write(data)
            try:
                await self.writer.drain()
            except ConnectionError:
                self.closed = True

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def start(
        self,
        method: str,
        path: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        end: bool = True,
        authority: str = "gw.test",
        scheme: str = "http",
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":path", path), (":scheme", scheme)]
        fields.append((":authority", authority))
        fields += headers or []
        self.conn.send_headers(sid, fields, end_stream=end)
        self.streams[sid] = StreamResult()
        return sid

    async def send_body(self, sid: int, data: bytes, *, end: bool = True) -> None:
        """Send ``data`` as the windows allow (reading the server meanwhile)."""
        view = memoryview(data)
        while view:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                await self.read_once()
                continue
            self.conn.send_data(sid, bytes(view[:room]))
            view = view[room:]
            await self.flush()
        if end:
            self.conn.end_stream(sid)
        await self.flush()

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        timeout: float = 10.0,
        **kw: str,
    ) -> StreamResult:
        sid = self.start(method, path, headers=headers, end=not body, **kw)
        await self.flush()
        if body:
            await self.send_body(sid, body)
        return await self.wait(sid, timeout)

    async def wait(self, sid: int, timeout: float = 10.0) -> StreamResult:
        result = self.streams[sid]
        async with asyncio.timeout(timeout):
            while not (result.ended or result.reset is not None or self.closed):
                await self.read_once()
        return result

    async def read_once(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            self.closed = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return
        for ev in events:
            self.on_event(ev)
        await self.flush()

    async def read_until_closed(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.closed:
                await self.read_once()

    def on_event(self, ev: h2.events.Event) -> None:
        sid = getattr(ev, "stream_id", 0)
        result = self.streams.get(sid) if sid else None
        if isinstance(ev, h2.events.ResponseReceived) and result is not None:
            for name, value in ev.headers or []:
                name, value = str(name), str(value)
                if name == ":status":
                    result.status = int(value)
                else:
                    result.headers.append((name, value))
        elif isinstance(ev, h2.events.DataReceived):
            if result is not None:
                result.body += ev.data or b""
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length or 0, sid)
        elif isinstance(ev, h2.events.TrailersReceived) and result is not None:
            result.trailers = [(str(n), str(v)) for n, v in ev.headers or []]
        elif isinstance(ev, h2.events.StreamEnded) and result is not None:
            result.ended = True
        elif isinstance(ev, h2.events.StreamReset) and result is not None:
            result.reset = int(ev.error_code or 0)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = int(ev.error_code or 0)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            changed = ev.changed_settings.items()
            self.remote_settings.update({int(k): v.new_value for k, v in changed})

    def close(self) -> None:
        self.closed = True
        self.writer.close()


def frames(data: bytes) -> list[Frame]:
    """The frames in ``data`` (bytes a server sent, after its preface-less start)."""
    out = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9 : 9 + length]))
        out.append(frame)
        data = data[9 + length :]
    return out
