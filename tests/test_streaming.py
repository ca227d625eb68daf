"""Connections and bodies: keep-alive reuse, streaming in bounded memory, WebSocket,
pipelining, HEAD, and draining on SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.harness import (
    GatewayProcess,
    RecordingUpstream,
    free_port,
    gateway_toml,
    read_response,
)

MiB = 1 << 20
BIG = 200 * MiB
RSS_LIMIT_KIB = 150 * 1024


def request(head: str, body: bytes = b"") -> bytes:
    return head.strip().replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n" + body


@pytest.fixture
def gateway_process() -> Iterator[list[GatewayProcess]]:
    """Append started :class:`GatewayProcess` objects; any still running is killed after."""
    procs: list[GatewayProcess] = []
    yield procs
    for gp in procs:
        if gp.proc is not None and gp.proc.poll() is None:
            gp.proc.kill()
            gp.proc.wait()


async def start_process(procs: list[GatewayProcess], toml: str, port: int) -> GatewayProcess:
    gp = GatewayProcess(toml)
    procs.append(gp)
    await asyncio.to_thread(gp.start, port)
    return gp


# --------------------------------------------------------------------- keep-alive


async def test_keep_alive_reuses_upstream_connections(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        for i in range(20):
            writer.write(request(f"GET /n/{i} HTTP/1.1\nHost: a"))
            resp = await read_response(reader)
            assert resp.status == 200
            assert resp.header("connection") is None
    finally:
        writer.close()
    assert [s.path_qs for s in upstream.requests] == [f"/n/{i}" for i in range(20)]
    assert upstream.connections == 1, f"{upstream.connections} upstream connections for 20"


# --------------------------------------------------------------------- big bodies


async def upload_body() -> AsyncIterator[bytes]:
    piece = b"u" * MiB
    for _ in range(BIG // MiB):
        yield piece


@pytest.mark.parametrize(
    "direction",
    [
        pytest.param("upload-chunked", id="upload-chunked"),
        pytest.param("download-chunked", id="download-chunked"),
        pytest.param("download-content-length", id="download-content-length"),
    ],
)
async def test_200_mb_stream_in_bounded_memory(
    direction: str, upstream: RecordingUpstream, gateway_process: list[GatewayProcess]
) -> None:
    port = free_port()
    toml = gateway_toml(
        {"v1": [upstream.address]},
        default="v1",
        listen=f"127.0.0.1:{port}",
        server="[server.limits]\nmax_body_bytes = 0",
    )
    gp = await start_process(gateway_process, toml, port)
    url = f"http://127.0.0.1:{port}"
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http:
        async with http.get(f"{url}/warm-up") as r:
            assert r.status == 200
        baseline = gp.peak_rss_kib()
        if direction == "upload-chunked":
            async with http.post(f"{url}/upload", data=upload_body()) as r:
                assert r.status == 200
                assert (await r.json())["received"] == BIG
            assert upstream.requests[-1].body_len == BIG
            assert upstream.requests[-1].headers["transfer-encoding"] == "chunked"
        else:
            query = "?length=1" if direction == "download-content-length" else ""
            async with http.get(f"{url}/bytes/{BIG}{query}") as r:
                assert r.status == 200
                if query:
                    assert r.headers["Content-Length"] == str(BIG)
                else:
                    assert r.headers["Transfer-Encoding"] == "chunked"
                received = 0
                async for chunk in r.content.iter_chunked(MiB):
                    assert chunk.count(b"x") == len(chunk)
                    received += len(chunk)
            assert received == BIG
    peak = gp.peak_rss_kib()
    assert peak < RSS_LIMIT_KIB, (
        f"{direction}: gateway peak RSS {peak / 1024:.1f} MiB (baseline {baseline / 1024:.1f} "
        f"MiB) while {BIG // MiB} MiB passed; limit {RSS_LIMIT_KIB // 1024} MiB"
    )
    print(f"{direction}: baseline {baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
    assert await asyncio.to_thread(gp.terminate) == 0


# --------------------------------------------------------------------- WebSocket


async def test_websocket_echo(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    async with http.ws_connect(f"{gw.url}/ws", timeout=aiohttp.ClientWSTimeout(ws_close=3)) as ws:
        await ws.send_str("hello")
        msg = await ws.receive(timeout=3)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.TEXT, "echo: hello")
        payload = bytes(range(256)) * 300  # larger than one socket read
        await ws.send_bytes(payload)
        msg = await ws.receive(timeout=3)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.BINARY, payload)
        assert await ws.close()
        assert ws.close_code == aiohttp.WSCloseCode.OK
    seen = upstream.requests[-1]
    assert (seen.path_qs, seen.headers["upgrade"].lower()) == ("/ws", "websocket")


# --------------------------------------------------------------------- pipelining, HEAD


async def test_pipelined_requests_are_answered_in_order(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        request("GET /delay/0.2 HTTP/1.1\nHost: a")
        + request("POST /upload HTTP/1.1\nHost: a\nContent-Length: 5", b"hello")
        + request("GET /status/201 HTTP/1.1\nHost: a")
        + request("GET /last HTTP/1.1\nHost: a\nConnection: close")
    )
    try:
        responses = [await asyncio.wait_for(read_response(reader), 5) for _ in range(4)]
        assert await reader.read() == b""
    finally:
        writer.close()
    assert [r.status for r in responses] == [200, 200, 201, 200]
    assert responses[0].body == b"delayed by v1\n"
    assert b'"received": 5' in responses[1].body
    assert responses[2].body == b"status 201 from v1\n"
    assert b'"/last"' in responses[3].body
    assert responses[3].header("connection") == "close"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/bytes/5000?length=1", id="content-length"),
        pytest.param("/bytes/5000", id="chunked"),
        pytest.param("/echo", id="json"),
    ],
)
async def test_head_has_no_body_and_keeps_the_connection(
    path: str, upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(request(f"HEAD {path} HTTP/1.1\nHost: a"))
        head = await asyncio.wait_for(read_response(reader, head_only=True), 5)
        assert head.status == 200
        if "length=1" in path:
            assert head.header("content-length") == "5000"
        # A body after the HEAD response would be read here as the next status line.
        writer.write(request("GET /after-head HTTP/1.1\nHost: a"))
        after = await asyncio.wait_for(read_response(reader), 5)
        assert after.status == 200
        assert b'"/after-head"' in after.body
    finally:
        writer.close()
    assert [s.method for s in upstream.requests] == ["HEAD", "GET"]


# --------------------------------------------------------------------- SIGTERM


async def test_sigterm_drains_in_flight_request(
    upstream: RecordingUpstream, gateway_process: list[GatewayProcess]
) -> None:
    port = free_port()
    toml = gateway_toml(
        {"v1": [upstream.address]},
        default="v1",
        listen=f"127.0.0.1:{port}",
        server="[server.limits]\ndrain_timeout = 20",
    )
    gp = await start_process(gateway_process, toml, port)
    # An idle keep-alive connection must not hold the drain up.
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_writer.write(request("GET /idle HTTP/1.1\nHost: a"))
    assert (await read_response(idle_reader)).status == 200

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("GET /delay/1 HTTP/1.1\nHost: a"))
    async with asyncio.timeout(5):
        while not any(s.path_qs == "/delay/1" for s in upstream.requests):
            await asyncio.sleep(0.01)
    exit_code = asyncio.create_task(asyncio.to_thread(gp.terminate, 10))
    resp = await asyncio.wait_for(read_response(reader), 5)
    assert resp.status == 200
    assert resp.body == b"delayed by v1\n"
    assert resp.header("connection") == "close"
    assert await reader.read() == b""
    assert await idle_reader.read() == b"", "the idle connection was closed by the drain"
    assert await exit_code == 0, gp.log()
    writer.close()
    idle_writer.close()


@pytest.mark.parametrize(
    ("head", "framing", "connection"),
    [
        pytest.param(
            "GET /bytes/3000 HTTP/1.0", None, "close", id="chunked-upstream-close-delimited"
        ),
        pytest.param(
            "GET /bytes/3000?length=1 HTTP/1.0\nConnection: keep-alive",
            "3000",
            "keep-alive",
            id="content-length-keep-alive",
        ),
    ],
)
async def test_http10_client_never_gets_chunked(
    head: str,
    framing: str | None,
    connection: str,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(request(head))
        resp = await asyncio.wait_for(read_response(reader), 5)
    finally:
        writer.close()
    assert resp.status == 200
    assert resp.header("transfer-encoding") is None
    assert resp.header("content-length") == framing
    assert resp.header("connection") == connection
    assert resp.body == b"x" * 3000
