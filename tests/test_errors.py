"""Local replies: each failure gets its status and a short body naming the reason."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.harness import (
    RecordingUpstream,
    free_port,
    gateway_toml,
    parse_responses,
    raw_request,
    read_response,
)


def request(head: str, body: bytes = b"") -> bytes:
    return head.strip().replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n" + body


def chunked(body: bytes, size: int = 256) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def assert_local_reply(status: int, body: bytes, want_status: int, want_reason: str) -> None:
    assert status == want_status, body
    text = body.decode()
    assert want_reason in text, text
    assert len(body) < 200, "a local reply is short"


# --------------------------------------------------------------------- upstream side


async def test_refused_upstream_is_502(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    gw = await start_gateway(gateway_toml({"dead": [dead]}, default="dead"))
    async with http.get(f"{gw.url}/x") as r:
        assert_local_reply(r.status, await r.read(), 502, "upstream connect error")
        assert r.headers["Content-Type"].startswith("text/plain")


async def test_slow_upstream_is_504(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        gateway_toml(
            {"v1": [upstream.address]},
            default="v1",
            upstream_extra="read_timeout = 0.3\nretries = 0",
        )
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with http.get(f"{gw.url}/delay/1") as r:
        assert_local_reply(r.status, await r.read(), 504, "upstream timeout")
    assert loop.time() - t0 < 0.9, "the 504 came only when the upstream answered"


async def test_ejected_endpoint_gives_503(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    gw = await start_gateway(
        gateway_toml(
            {"dead": [dead]},
            default="dead",
            upstream_extra="retries = 0\nhealth = { max_failures = 1, eject_seconds = 30 }",
        )
    )
    async with http.get(f"{gw.url}/x") as r:
        assert_local_reply(r.status, await r.read(), 502, "upstream connect error")
    async with http.get(f"{gw.url}/x") as r:
        assert_local_reply(r.status, await r.read(), 503, "no healthy upstream")


async def test_no_route_is_404(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    routes = '[[routes]]\nname = "api"\npaths = ["/api"]\nupstream = "v1"\n'
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes))
    async with http.get(f"{gw.url}/elsewhere") as r:
        assert_local_reply(r.status, await r.read(), 404, "no route")
    async with http.get(f"{gw.url}/api/x") as r:
        assert r.status == 200
    assert [s.path_qs for s in upstream.requests] == ["/api/x"]


# --------------------------------------------------------------------- client side


LIMITS = "[server.limits]\nmax_header_bytes = 1024\nmax_body_bytes = 1024\n"
LIMITS += "request_header_timeout = 0.3\n"


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        pytest.param(
            request("GET / HTTP/1.1\nHost: a\nX-Big: " + "b" * 2048),
            431,
            "header fields too large",
            id="header-over-max_header_bytes",
        ),
        pytest.param(
            request(
                "GET / HTTP/1.1\nHost: a\n" + "".join(f"X-H{i}: {'v' * 60}\n" for i in range(30))
            ),
            431,
            "header fields too large",
            id="many-headers-over-max_header_bytes",
        ),
        pytest.param(
            request("GET /" + "u" * 9000 + " HTTP/1.1\nHost: a"),
            414,
            "URI too long",
            id="url-over-max_url_bytes",
        ),
        pytest.param(
            request("POST /upload HTTP/1.1\nHost: a\nContent-Length: 2048", b"z" * 2048),
            413,
            "body too large",
            id="content-length-over-max_body_bytes",
        ),
        pytest.param(
            request(
                "POST /upload HTTP/1.1\nHost: a\nTransfer-Encoding: chunked", chunked(b"z" * 2048)
            ),
            413,
            "body too large",
            id="chunked-over-max_body_bytes",
        ),
        pytest.param(
            request(
                "POST /upload HTTP/1.1\nHost: a\nTransfer-Encoding: gzip, chunked",
                chunked(b"\x1f\x8b" + b"z" * 10),
            ),
            501,
            "unsupported Transfer-Encoding",
            id="transfer-coding-other-than-chunked",
        ),
        pytest.param(b"GET /slo", 408, "header timeout", id="half-a-request-line"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Part", 408, "header timeout", id="half-a-head"
        ),
    ],
)
async def test_client_limits(
    data: bytes,
    status: int,
    reason: str,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1", server=LIMITS))
    reply = await raw_request(gw.port, data, read_timeout=3.0)
    (resp,) = await parse_responses(reply)  # exactly one reply, then the gateway closed
    assert_local_reply(resp.status, resp.body, status, reason)
    assert resp.header("connection") == "close"
    assert upstream.requests == [], "a rejected request reached the upstream"


async def test_body_at_the_limit_is_accepted(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1", server=LIMITS))
    data = request(
        "POST /upload HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nConnection: close",
        chunked(b"z" * 1024),
    )
    (resp,) = await parse_responses(await raw_request(gw.port, data))
    assert resp.status == 200
    assert upstream.requests[-1].body_len == 1024


async def test_chunked_body_over_limit_while_streaming_upstream_is_413(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1", server=LIMITS))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(request("POST /upload HTTP/1.1\nHost: a\nTransfer-Encoding: chunked"))
    await asyncio.sleep(0.1)  # the exchange is connected upstream and streaming by now
    writer.write(chunked(b"z" * 2048))
    try:
        resp = await asyncio.wait_for(read_response(reader), 3.0)
        assert_local_reply(resp.status, resp.body, 413, "body too large")
        assert await reader.read() == b"", "the connection closes after a 413"
    finally:
        writer.close()
    assert upstream.requests == [], "the upstream got a truncated body as a whole request"


# --------------------------------------------------------------------- retries and health


async def test_connect_failure_is_retried_on_the_other_endpoint(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    gw = await start_gateway(
        gateway_toml(
            {"mixed": [dead, upstream.address]}, default="mixed", upstream_extra="retries = 1"
        )
    )
    for i in range(10):
        async with http.post(f"{gw.url}/n/{i}", data=b"payload") as r:
            assert r.status == 200, await r.text()
    assert [s.path_qs for s in upstream.requests] == [f"/n/{i}" for i in range(10)]
    assert all(s.body_len == len(b"payload") for s in upstream.requests)


@pytest.mark.parametrize(
    ("method", "path", "tries"),
    [
        pytest.param("GET", "/status/503", 2, id="get-503-retried"),
        pytest.param("GET", "/status/502", 2, id="get-502-retried"),
        pytest.param("PUT", "/status/503", 2, id="put-503-retried"),
        pytest.param("POST", "/status/503", 1, id="post-503-not-retried"),
        pytest.param("GET", "/status/504", 1, id="get-504-not-retried"),
        pytest.param("GET", "/status/500", 1, id="get-500-not-retried"),
    ],
)
async def test_retry_on_upstream_status(
    method: str,
    path: str,
    tries: int,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        gateway_toml({"v1": [upstream.address]}, default="v1", upstream_extra="retries = 1")
    )
    async with http.request(method, f"{gw.url}{path}") as r:
        want = int(path.rsplit("/", 1)[1])
        assert r.status == want
        assert (await r.text()).startswith(f"status {want} from v1"), "the upstream's own reply"
    assert len(upstream.requests) == tries


async def test_failing_endpoint_is_ejected(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    gw = await start_gateway(
        gateway_toml(
            {"mixed": [dead, upstream.address]},
            default="mixed",
            upstream_extra="retries = 0\nhealth = { max_failures = 2, eject_seconds = 30 }",
        )
    )
    statuses = []
    for _ in range(12):
        async with http.get(f"{gw.url}/x") as r:
            statuses.append(r.status)
    # Round robin alternates until the dead endpoint has failed twice; then it rests.
    assert statuses.count(502) == 2, statuses
    assert statuses[4:] == [200] * 8, statuses
    assert len(upstream.requests) == 10


async def test_keep_alive_connection_survives_a_local_error(
    start_gateway: StartGateway,
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    gw = await start_gateway(
        gateway_toml({"dead": [dead]}, default="dead", upstream_extra="retries = 0")
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        for _ in range(2):
            writer.write(request("GET /x HTTP/1.1\nHost: a"))
            resp = await read_response(reader)
            assert resp.status == 502
            assert resp.header("connection") is None
    finally:
        writer.close()
