"""A route's own ``max_body_bytes``: it replaces ``server.limits.max_body_bytes`` for that
route, smaller or larger; routes without one keep the server's bound."""

from __future__ import annotations

import asyncio

import pytest

from core.config import loads_config
from core.errors import ConfigError
from tests.conftest import StartGateway
from tests.harness import (
    RawResponse,
    RecordingUpstream,
    gateway_toml,
    parse_responses,
    raw_request,
    read_response,
)

# Server-wide 1024; /small 100, /big 4096, /plain none of its own, [default] 2048.
ROUTES = """
[[routes]]
name = "small"
paths = ["/small"]
upstream = "v1"
max_body_bytes = 100

[[routes]]
name = "big"
paths = ["/big"]
upstream = "v1"
max_body_bytes = 4096

[[routes]]
name = "plain"
paths = ["/plain"]
upstream = "v1"

[default]
upstream = "v1"
max_body_bytes = 2048
"""
SERVER = "[server.limits]\nmax_body_bytes = 1024"


def head(path: str, *lines: str) -> bytes:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: a", *lines, "", ""]).encode()


def chunked(body: bytes, size: int = 256) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def post(port: int, path: str, size: int, *, chunk: bool = False) -> RawResponse:
    """One POST with a ``size``-byte body, whole; the one reply."""
    body = b"z" * size
    if chunk:
        data = head(path, "Transfer-Encoding: chunked", "Connection: close") + chunked(body)
    else:
        data = head(path, f"Content-Length: {size}", "Connection: close") + body
    (resp,) = await parse_responses(await raw_request(port, data, read_timeout=3.0))
    return resp


def assert_413(resp: RawResponse) -> None:
    assert resp.status == 413, resp.body
    assert resp.body == b"request body too large\n"
    assert resp.header("connection") == "close"


@pytest.fixture
async def port(upstream: RecordingUpstream, start_gateway: StartGateway) -> int:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, ROUTES, server=SERVER))
    return gw.port


@pytest.mark.parametrize("chunk", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("path", "size", "accepted"),
    [
        pytest.param("/small", 100, True, id="small-at-its-bound"),
        pytest.param("/small", 101, False, id="small-over-its-bound"),
        pytest.param("/big", 3000, True, id="big-over-the-server-bound"),
        pytest.param("/big", 4097, False, id="big-over-its-bound"),
        pytest.param("/plain", 1024, True, id="plain-at-the-server-bound"),
        pytest.param("/plain", 1025, False, id="plain-over-the-server-bound"),
        pytest.param("/other", 2000, True, id="default-over-the-server-bound"),
        pytest.param("/other", 2049, False, id="default-over-its-bound"),
    ],
)
async def test_route_bound(
    path: str, size: int, accepted: bool, chunk: bool, port: int, upstream: RecordingUpstream
) -> None:
    resp = await post(port, path, size, chunk=chunk)
    if accepted:
        assert resp.status == 200, resp.body
        assert [(s.path_qs, s.body_len) for s in upstream.requests] == [(path, size)]
    else:
        assert_413(resp)
        assert upstream.requests == [], "a request over its route's bound reached the upstream"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param((), id="body-under-way"),
        pytest.param(("Expect: 100-continue",), id="expect-100-continue"),
    ],
)
async def test_declared_length_over_the_route_bound_is_refused_before_the_body(
    extra: tuple[str, ...], port: int, upstream: RecordingUpstream
) -> None:
    # 500 passes the server's bound and the one held before routing (the largest
    # route's, 4096): the route's own refuses it, with most of the body never sent.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head("/small", "Content-Length: 500", *extra))
    if not extra:
        writer.write(b"z" * 50)
    try:
        resp = await asyncio.wait_for(read_response(reader), 3.0)
        assert_413(resp)
        assert await asyncio.wait_for(reader.read(), 3.0) == b"", "the connection closes"
    finally:
        writer.close()
    assert upstream.requests == []


async def test_chunked_body_over_the_route_bound_while_streaming_upstream_is_413(
    port: int, upstream: RecordingUpstream
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head("/small", "Transfer-Encoding: chunked"))
    await asyncio.sleep(0.1)  # the exchange is connected upstream and streaming by now
    writer.write(chunked(b"z" * 300))
    try:
        resp = await asyncio.wait_for(read_response(reader), 3.0)
        assert_413(resp)
        assert await asyncio.wait_for(reader.read(), 3.0) == b"", "the connection closes"
    finally:
        writer.close()
    assert upstream.requests == [], "the upstream got a truncated body as a whole request"


async def test_declared_length_over_every_bound_is_refused_before_routing(
    port: int, upstream: RecordingUpstream
) -> None:
    resp = await post(port, "/big", 5000)
    assert_413(resp)
    assert upstream.requests == []


@pytest.mark.parametrize("chunk", [False, True], ids=["content-length", "chunked"])
async def test_zero_means_no_bound(
    chunk: bool, upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    routes = (
        '[[routes]]\nname = "free"\npaths = ["/free"]\nupstream = "v1"\nmax_body_bytes = 0\n'
        '[[routes]]\nname = "plain"\npaths = ["/plain"]\nupstream = "v1"\n'
    )
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes, server=SERVER))
    resp = await post(gw.port, "/free", 300_000, chunk=chunk)
    assert resp.status == 200, resp.body
    assert upstream.requests[-1].body_len == 300_000
    assert_413(await post(gw.port, "/plain", 1025, chunk=chunk))
    assert len(upstream.requests) == 1


def test_negative_bound_is_a_config_error() -> None:
    toml = gateway_toml({"v1": ["127.0.0.1:1"]}, ROUTES.replace("= 100", "= -1"))
    with pytest.raises(ConfigError, match=r"routes\[0\]\.max_body_bytes: Input should be greater"):
        loads_config(toml)
