"""Hostile HTTP/2 clients (RFC 9113 §10.5 and the published CVEs), as raw frames.

Each case opens one connection to one shared gateway, sends frames made by hand
(hyperframe, hpack) and reads what the gateway answers until it closes: the answer
must be GOAWAY (or RST_STREAM) with the right error code, and the gateway must not
have done the work or held the memory the attack asks for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from core.http2_stream import Stream
from tests.h2client import PREFACE, H2Client, StreamResult, frames
from tests.harness import InProcessGateway, RecordingUpstream, gateway_toml

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROTOCOL_ERROR, FLOW_CONTROL_ERROR, ENHANCE_YOUR_CALM, REFUSED_STREAM = 1, 3, 11, 7


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[tuple[InProcessGateway, RecordingUpstream]]:
    upstream = await RecordingUpstream().start()
    server = (
        "[server.limits]\nidle_timeout = 1.0\n"
        "[server.http2]\nmax_client_resets = 50\nmax_concurrent_streams = 20\n"
        "max_control_frames = 50\n"
    )
    gw = await InProcessGateway(
        gateway_toml({"app": [upstream.address]}, default="app", server=server)
    ).start()
    yield gw, upstream
    await gw.stop()
    await upstream.stop()


def request_block(encoder: Encoder, path: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    fields = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "a")]
    return bytes(encoder.encode(fields + (extra or [])))


def headers(sid: int, block: bytes, *, end_headers: bool = True) -> bytes:
    frame = HeadersFrame(sid, block)
    frame.flags.add("END_STREAM")
    if end_headers:
        frame.flags.add("END_HEADERS")
    return bytes(frame.serialize())


async def attack(
    port: int, payload: bytes, *, settings: dict[int, int] | None = None, timeout: float = 8.0
) -> tuple[list[Frame], bool]:
    """Send the preface, SETTINGS and ``payload``; the frames back, and whether the
    gateway closed the connection within ``timeout``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hello = SettingsFrame(0, settings=settings or {})
    writer.write(PREFACE + hello.serialize() + SettingsFrame(0, flags=["ACK"]).serialize())
    got = bytearray()
    closed = False

    async def send() -> None:
        try:
            for i in range(0, len(payload), 65536):
                writer.write(payload[i : i + 65536])
                await writer.drain()
        except ConnectionError:
            pass

    sender = asyncio.ensure_future(send())
    try:
        async with asyncio.timeout(timeout):
            while True:
                data = await reader.read(65536)
                if not data:
                    closed = True
                    break
                got += data
    except ConnectionError:  # closed while our flood was still arriving: a reset
        closed = True
    except TimeoutError:
        pass
    sender.cancel()
    writer.close()
    return frames(bytes(got)), closed


def goaway(found: list[Frame]) -> int | None:
    codes = [f.error_code for f in found if isinstance(f, GoAwayFrame)]
    return codes[-1] if codes else None


async def test_rapid_reset_gets_goaway_enhance_your_calm(
    served: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    """CVE-2023-44487: open and cancel streams as fast as possible."""
    gw, upstream = served
    before = len(upstream.requests)
    enc = Encoder()
    payload = b"".join(
        headers(sid, request_block(enc, "/delay/1")) + RstStreamFrame(sid, error_code=8).serialize()
        for sid in range(1, 2001, 2)
    )
    found, closed = await attack(gw.port, payload)
    assert goaway(found) == ENHANCE_YOUR_CALM
    assert closed
    # Far fewer of the 1000 requests reached the upstream than were sent.
    assert len(upstream.requests) - before <= 100


async def test_streams_past_the_limit_are_refused(
    served: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, _ = served
    enc = Encoder()
    payload = b"".join(headers(sid, request_block(enc, "/delay/0.5")) for sid in range(1, 61, 2))
    found, _ = await attack(gw.port, payload, timeout=3)
    # max_concurrent_streams = 20: h2 refuses the 21st as a protocol error.
    assert goaway(found) == PROTOCOL_ERROR or any(
        isinstance(f, RstStreamFrame) and f.error_code == REFUSED_STREAM for f in found
    )


async def test_continuation_flood_gets_goaway(
    served: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    """CVE-2024-27316 class: a header block that never ends, one CONTINUATION at a time."""
    gw, upstream = served
    before = len(upstream.requests)
    enc = Encoder()
    first = headers(1, request_block(enc, "/cont"), end_headers=False)
    junk = bytes(Encoder().encode([("x-junk", "j" * 1000)]))
    payload = first + b"".join(ContinuationFrame(1, junk).serialize() for _ in range(2000))
    found, closed = await attack(gw.port, payload)
    assert goaway(found) in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM)
    assert closed
    assert len(upstream.requests) == before


async def test_hpack_bomb_gets_goaway(served: tuple[InProcessGateway, RecordingUpstream]) -> None:
    """A 4 KB value in the dynamic table, referenced 1000 times: a tiny block that would
    decode to 4 MB of headers."""
    gw, upstream = served
    before = len(upstream.requests)
    enc = Encoder()
    block = request_block(enc, "/bomb", [("x-bomb", "b" * 4000)] * 1000)
    assert len(block) < 10_000
    found, closed = await attack(gw.port, headers(1, block))
    assert goaway(found) in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM)
    assert closed
    assert len(upstream.requests) == before


async def test_headers_over_max_header_bytes_get_431_on_their_stream(
    served: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, _ = served
    enc = Encoder()
    block = request_block(enc, "/big", [("x-big", "b" * 20000)])
    found, _ = await attack(gw.port, headers(1, block), timeout=1.5)
    heads = [f for f in found if isinstance(f, HeadersFrame) and f.stream_id == 1]
    assert heads, found
    from hpack import Decoder

    assert (b":status", b"431") in Decoder().decode(heads[0].data, raw=True)


@pytest.mark.parametrize(
    "flood",
    [
        b"".join(SettingsFrame(0, settings={4: 65535}).serialize() for _ in range(3000)),
        b"".join(PingFrame(0, opaque_data=b"12345678").serialize() for _ in range(3000)),
        b"".join(PriorityFrame(2 * i + 1, depends_on=0).serialize() for i in range(3000)),
    ],
    ids=["settings", "ping", "priority"],
)
async def test_control_frame_floods_get_goaway_enhance_your_calm(
    served: tuple[InProcessGateway, RecordingUpstream], flood: bytes
) -> None:
    gw, _ = served
    found, closed = await attack(gw.port, flood)
    assert goaway(found) == ENHANCE_YOUR_CALM
    assert closed


async def test_a_zero_window_stall_is_closed_and_holds_bounded_memory(
    served: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    """The client never opens its window: the response cannot go, the upstream is
    paused with little queued, and the connection ends after idle_timeout."""
    gw, _ = served
    assert gw.gateway is not None
    enc = Encoder()
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            for conn in list(gw.gateway.connections):  # type: ignore[union-attr]
                for stream in getattr(conn, "streams", {}).values():
                    assert isinstance(stream, Stream)
                    peak = max(peak, stream.out_bytes)
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch())
    found, closed = await attack(
        gw.port, headers(1, request_block(enc, "/bytes/5000000")), settings={4: 0}
    )
    watcher.cancel()
    assert closed
    assert goaway(found) == FLOW_CONTROL_ERROR
    assert not [f for f in found if isinstance(f, DataFrame) and f.data]
    assert 0 < peak <= 512 * 1024  # of the 5 MB the upstream had to give


async def test_priority_sent_with_each_request_is_not_a_flood(
    served: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    """Browsers put priority in every HEADERS frame: 60 such requests, past
    max_control_frames (50 here), are served, not taken for a PRIORITY flood."""
    gw, _ = served
    client = await H2Client.open(gw.port)
    try:
        for i in range(60):
            sid = client.conn.get_next_available_stream_id()
            fields = [(":method", "GET"), (":path", f"/p/{i}"), (":scheme", "http")]
            fields.append((":authority", "a"))
            client.conn.send_headers(sid, fields, end_stream=True, priority_weight=32)
            client.streams[sid] = StreamResult()
            await client.flush()
            assert (await client.wait(sid)).status == 200
        assert client.goaway is None
    finally:
        client.close()


REQUEST = [(":method", "GET"), (":path", "/m"), (":scheme", "http"), (":authority", "a")]
MALFORMED = {
    "upper-case-name": [*REQUEST, ("X-Up", "1")],
    "space-in-name": [*REQUEST, ("x y", "1")],
    "colon-in-name": [*REQUEST, ("x:y", "1")],
    "empty-name": [*REQUEST, ("", "1")],
    "del-in-name": [*REQUEST, ("x\x7f", "1")],
    "nul-in-value": [*REQUEST, ("x-v", "a\0b")],
    "cr-in-value": [*REQUEST, ("x-v", "a\rb")],
    "lf-in-value": [*REQUEST, ("x-v", "a\nb")],
    "value-starts-with-space": [*REQUEST, ("x-v", " a")],
    "value-ends-with-tab": [*REQUEST, ("x-v", "a\t")],
    "connection": [*REQUEST, ("connection", "close")],
    "keep-alive": [*REQUEST, ("keep-alive", "5")],
    "proxy-connection": [*REQUEST, ("proxy-connection", "close")],
    "transfer-encoding": [*REQUEST, ("transfer-encoding", "chunked")],
    "upgrade": [*REQUEST, ("upgrade", "websocket")],
    "te-not-trailers": [*REQUEST, ("te", "gzip")],
    "unknown-pseudo": [*REQUEST, (":foo", "x")],
    "status-in-request": [(":status", "200"), *REQUEST],
    "pseudo-twice": [*REQUEST, (":path", "/n")],
    "pseudo-after-regular": [*REQUEST[:3], ("x-v", "1"), REQUEST[3]],
    "no-method": REQUEST[1:],
    "no-path": [f for f in REQUEST if f[0] != ":path"],
    "no-scheme": [f for f in REQUEST if f[0] != ":scheme"],
    "empty-path": [(":method", "GET"), (":path", ""), (":scheme", "http"), (":authority", "a")],
    "connect-with-path": [(":method", "CONNECT"), (":authority", "a:443"), (":path", "/")],
    "protocol-without-connect": [*REQUEST, (":protocol", "websocket")],
    "no-authority-or-host": [f for f in REQUEST if f[0] != ":authority"],
    "authority-and-host-differ": [*REQUEST, ("host", "b")],
    "two-hosts": [*REQUEST[:3], ("host", "a"), ("host", "a")],
}


@pytest.mark.parametrize("fields", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_request_block_ends_the_connection(
    served: tuple[InProcessGateway, RecordingUpstream], fields: list[tuple[str, str]]
) -> None:
    """RFC 9113 §8.2-8.3: GOAWAY PROTOCOL_ERROR, and nothing reaches the upstream."""
    gw, upstream = served
    before = len(upstream.requests)
    found, closed = await attack(gw.port, headers(1, bytes(Encoder().encode(fields))))
    assert goaway(found) == PROTOCOL_ERROR
    assert closed
    assert len(upstream.requests) == before


@pytest.mark.parametrize(
    "trailers",
    [[(":path", "/t")], [("connection", "close")], [("X-Up", "1")], [("x-v", "a\0b")]],
    ids=["pseudo", "connection", "upper-case", "nul"],
)
async def test_malformed_trailers_end_the_connection(
    served: tuple[InProcessGateway, RecordingUpstream], trailers: list[tuple[str, str]]
) -> None:
    gw, _ = served
    enc = Encoder()
    head = HeadersFrame(1, request_block(enc, "/post", [("content-length", "2")]))
    head.flags.add("END_HEADERS")
    body = DataFrame(1, b"hi").serialize()
    tail = headers(1, bytes(enc.encode(trailers)))  # END_STREAM
    found, closed = await attack(gw.port, head.serialize() + body + tail, timeout=3)
    assert goaway(found) == PROTOCOL_ERROR
    assert closed


async def test_a_well_formed_block_with_the_same_kinds_of_fields_is_served(
    served: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    """The counterpart of the cases above: what RFC 9113 allows of the same kinds."""
    gw, upstream = served
    fields = [
        *REQUEST,
        ("host", "a"),
        ("te", "trailers"),
        ("x-v", "a b\tc"),
        ("x-empty", ""),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
        ("x-chars", "!#$%&'*+-.^_`|~"),
    ]
    client = await H2Client.open(gw.port)
    try:
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, fields, end_stream=True)
        client.streams[sid] = StreamResult()
        await client.flush()
        assert (await client.wait(sid)).status == 200
    finally:
        client.close()
    seen = upstream.requests[-1]
    assert seen.headers.get("cookie") == "a=1; b=2"
    assert seen.headers.get("x-v") == "a b\tc"
