"""The frames of an HTTP/2 response (core/http2.py, core/http2_stream.py), as read off
the socket: a response whose body is all there goes out as HEADERS and one DATA frame
that carries END_STREAM, not an empty DATA frame after it; many streams' frames share
writes. One gateway and one recording upstream serve the module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, Frame, HeadersFrame, SettingsFrame

from tests.h2client import PREFACE, frames
from tests.harness import InProcessGateway, RecordingUpstream, gateway_toml

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def port() -> AsyncIterator[int]:
    upstream = await RecordingUpstream().start()
    routes = '[[routes]]\nname = "api"\npaths = ["/api/", "/status/"]\nupstream = "app"\n'
    gw = await InProcessGateway(gateway_toml({"app": [upstream.address]}, routes)).start()
    yield gw.port
    await gw.stop()
    await upstream.stop()


async def exchange(port: int, requests: dict[int, tuple[str, str]]) -> dict[int, list[Frame]]:
    """Send requests (stream id -> method, path) at once; each stream's frames until its
    end (a HEADERS frame's ``data`` decoded into its fields)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    enc = Encoder()
    out = PREFACE + SettingsFrame(0).serialize()
    for sid, (method, path) in requests.items():
        fields = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "a")]
        frame = HeadersFrame(sid, enc.encode(fields), flags=["END_STREAM", "END_HEADERS"])
        out += frame.serialize()
    writer.write(out)
    got = bytearray()
    ended: set[int] = set()
    try:
        async with asyncio.timeout(5):
            while len(ended) < len(requests):
                data = await reader.read(65536)
                assert data, "the gateway closed the connection"
                got += data
                ended = {f.stream_id for f in frames(bytes(got)) if "END_STREAM" in f.flags}
    finally:
        writer.close()
    per_stream: dict[int, list[Frame]] = {}
    dec = Decoder()  # in the order the blocks came
    for f in frames(bytes(got)):
        if isinstance(f, HeadersFrame):
            f.data = dict(dec.decode(f.data, raw=True))  # type: ignore[assignment]
        if f.stream_id:
            per_stream.setdefault(f.stream_id, []).append(f)
    return per_stream


async def test_a_whole_body_ends_the_stream_with_its_data(port: int) -> None:
    found = await exchange(port, {1: ("GET", "/api/a"), 3: ("GET", "/api/b"), 5: ("GET", "/nope")})
    for sid, path in ((1, "/api/a"), (3, "/api/b"), (5, "/nope")):
        head, *rest = found[sid]
        assert isinstance(head, HeadersFrame)
        assert "END_STREAM" not in head.flags
        assert len(rest) == 1, (path, rest)  # no empty DATA frame to end it
        assert isinstance(rest[0], DataFrame)
        assert "END_STREAM" in rest[0].flags
        fields: dict[bytes, bytes] = head.data  # type: ignore[assignment]
        assert int(fields[b"content-length"]) == len(rest[0].data) > 0
        if path == "/nope":
            assert fields[b":status"] == b"404"
        else:
            assert path.encode() in rest[0].data  # the upstream's echo


async def test_a_bodiless_response_is_one_headers_frame(port: int) -> None:
    found = await exchange(port, {1: ("HEAD", "/api/h"), 3: ("GET", "/status/204")})
    for sid in (1, 3):
        assert len(found[sid]) == 1, found[sid]
        assert isinstance(found[sid][0], HeadersFrame)
        assert "END_STREAM" in found[sid][0].flags
