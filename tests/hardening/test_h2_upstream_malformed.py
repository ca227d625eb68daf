"""A malformed HTTP/2 response from an upstream (RFC 9113 §8.2-8.3) never reaches the
client: a bare h2 server, its own checks off, answers each path with one kind of
malformed header block; the gateway (core/upstream_h2.py) ends that connection and
the client gets 502 (or a reset stream, had the response begun).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.events
import pytest
import pytest_asyncio

from tests.h2client import H2Client
from tests.harness import InProcessGateway, raw_request

pytestmark = pytest.mark.asyncio(loop_scope="module")

OK = [(b":status", b"200"), (b"content-type", b"text/plain")]
HEADS: dict[str, list[tuple[bytes, bytes]]] = {
    "crlf-in-value": [*OK, (b"x-v", b"a\r\nset-cookie: evil=1")],
    "lf-in-value": [*OK, (b"x-v", b"a\nset-cookie: evil=1")],
    "nul-in-value": [*OK, (b"x-v", b"a\0b")],
    "space-around-value": [*OK, (b"x-v", b" a")],
    "upper-case-name": [*OK, (b"X-Up", b"1")],
    "space-in-name": [*OK, (b"x y", b"1")],
    "connection": [*OK, (b"connection", b"close")],
    "transfer-encoding": [*OK, (b"transfer-encoding", b"chunked")],
    "no-status": [(b"content-type", b"text/plain")],
    "two-statuses": [*OK, (b":status", b"201")],
    "status-after-a-field": [(b"content-type", b"text/plain"), (b":status", b"200")],
    "request-pseudo-header": [*OK, (b":path", b"/")],
}
BAD_TRAILERS = [(b":status", b"200")]


class Malformed(asyncio.Protocol):
    """Answers ``/<case>`` with HEADS[case] and a body; ``/ok`` well; ``/trailers``
    well but with BAD_TRAILERS after the body."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.paths: dict[int, bytes] = {}
        transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                assert ev.stream_id is not None
                self.paths[ev.stream_id] = dict(ev.headers or [])[b":path"]
            elif isinstance(ev, h2.events.StreamEnded):
                sid = ev.stream_id or 0
                case = self.paths[sid].decode()[1:]
                self.conn.send_headers(sid, HEADS.get(case, OK))
                if case == "trailers":
                    self.conn.send_data(sid, b"hello")
                    self.conn.send_headers(sid, BAD_TRAILERS, end_stream=True)
                else:
                    self.conn.send_data(sid, b"hello", end_stream=True)
        self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def port() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Malformed, "127.0.0.1", 0)
    up = server.sockets[0].getsockname()[1]
    gw = await InProcessGateway(
        f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"
[[upstreams]]
name = "bad"
endpoints = ["127.0.0.1:{up}"]
protocol = "h2c"
retries = 0
health.max_failures = 1000
[default]
upstream = "bad"
"""
    ).start()
    yield gw.port
    await gw.stop()
    server.close()


async def get(port: int, path: str) -> bytes:
    request = f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
    return await raw_request(port, request)


async def test_a_well_formed_response_is_served(port: int) -> None:
    reply = await get(port, "/ok")
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"hello")


@pytest.mark.parametrize("case", list(HEADS))
async def test_a_malformed_response_head_is_a_502(port: int, case: str) -> None:
    reply = await get(port, f"/{case}")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 "), reply[:200]
    assert b"evil" not in head
    assert b"hello" not in body


async def test_malformed_trailers_do_not_reach_the_client(port: int) -> None:
    """All of this response comes in one read: the gateway has not answered yet, and
    answers 502 (had the head gone out, the stream would be reset)."""
    client = await H2Client.open(port)
    try:
        sid = client.start("GET", "/trailers")
        await client.flush()
        result = await client.wait(sid)
    finally:
        client.close()
    assert result.status == 502 or result.reset is not None
    assert b"hello" not in result.body
    assert not result.trailers
