"""What the gateway changes in headers on the way through, and what it leaves exactly."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import StartGateway
from tests.harness import (
    RecordingUpstream,
    gateway_toml,
    parse_responses,
    raw_request,
    read_response,
)


def request(head: str, body: bytes = b"") -> bytes:
    """A raw request from ``head`` lines written with plain newlines."""
    return head.strip().replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n" + body


# --------------------------------------------------------------------- hop-by-hop


@pytest.mark.parametrize(
    ("sent", "dropped"),
    [
        pytest.param(
            "Connection: close, X-Hop-One, x-hop-two\nX-Hop-One: 1\nX-Hop-Two: 2",
            {"connection", "x-hop-one", "x-hop-two"},
            id="connection-and-the-headers-it-names",
        ),
        pytest.param(
            "Connection: close\nConnection: X-Hop-One\nX-Hop-One: 1",
            {"connection", "x-hop-one"},
            id="second-connection-header",
        ),
        pytest.param("Connection: close\nKeep-Alive: timeout=5", {"keep-alive"}, id="keep-alive"),
        pytest.param("Connection: close\nTE: trailers", {"te"}, id="te"),
        pytest.param("Connection: close\nTrailer: X-Checksum", {"trailer"}, id="trailer"),
        pytest.param("Connection: close\nUpgrade: h2c", {"upgrade"}, id="upgrade-not-asked-for"),
        pytest.param(
            "Connection: close\nProxy-Authorization: Basic Zm9vOmJhcg==\n"
            "Proxy-Connection: keep-alive\nProxy-Foo: x",
            {"proxy-authorization", "proxy-connection", "proxy-foo"},
            id="proxy-star",
        ),
    ],
)
async def test_hop_by_hop_request_headers_are_not_forwarded(
    sent: str, dropped: set[str], upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    data = request(f"GET /echo HTTP/1.1\nHost: shop.test\n{sent}\nX-End-To-End: kept")
    (resp,) = await parse_responses(await raw_request(gw.port, data))
    assert resp.status == 200
    seen = upstream.requests[-1].headers
    assert seen["x-end-to-end"] == "kept"
    assert dropped & seen.keys() == set(), f"hop-by-hop headers reached the upstream: {seen}"


async def test_chunked_request_body_is_reframed_not_passed_through(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    data = request(
        "POST /upload HTTP/1.1\nHost: shop.test\nTransfer-Encoding: chunked\nConnection: close",
        body,
    )
    (resp,) = await parse_responses(await raw_request(gw.port, data))
    assert resp.status == 200
    seen = upstream.requests[-1]
    assert seen.body_len == len(b"hello world")
    te = [v for n, v in seen.raw_headers if n.lower() == "transfer-encoding"]
    assert te == ["chunked"]


async def test_chunked_response_is_reframed_once(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(request("GET /bytes/100000 HTTP/1.1\nHost: shop.test"))
    resp = await read_response(reader)
    writer.close()
    assert resp.status == 200
    assert [v for n, v in resp.headers if n.lower() == "transfer-encoding"] == ["chunked"]
    assert resp.body == b"x" * 100000


@pytest.mark.parametrize(
    ("query", "dropped"),
    [
        pytest.param("h=Keep-Alive:timeout%3D5", {"keep-alive"}, id="keep-alive"),
        pytest.param("h=Proxy-Foo:x", {"proxy-foo"}, id="proxy-foo"),
        pytest.param("h=Proxy-Authenticate:Basic", {"proxy-authenticate"}, id="proxy-authenticate"),
        pytest.param("h=Trailer:X-Checksum", {"trailer"}, id="trailer"),
        pytest.param("h=Upgrade:h2c", {"upgrade"}, id="upgrade"),
        pytest.param(
            "h=Connection:X-Secret&h=X-Secret:1", {"x-secret"}, id="header-named-by-connection"
        ),
    ],
)
async def test_hop_by_hop_response_headers_are_not_forwarded(
    query: str, dropped: set[str], upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    data = request(f"GET /echo?{query}&h=X-End-To-End:kept HTTP/1.1\nHost: shop.test")
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(data)
    resp = await read_response(reader)
    writer.close()
    assert resp.status == 200
    assert resp.header("x-end-to-end") == "kept"
    assert dropped & resp.names == set(), f"hop-by-hop headers reached the client: {resp.headers}"
    # The gateway speaks for itself on its own hop: keep-alive, no Connection header.
    assert resp.header("connection") is None


# --------------------------------------------------------------------- X-Forwarded-*


@pytest.mark.parametrize(
    ("trusted_hops", "sent", "want"),
    [
        pytest.param(
            0,
            "X-Forwarded-For: 6.6.6.6\nX-Real-IP: 6.6.6.6\n"
            "X-Forwarded-Proto: https\nX-Forwarded-Host: evil.test",
            ("127.0.0.1", "127.0.0.1", "http", "shop.test"),
            id="untrusted-spoof-replaced",
        ),
        pytest.param(
            0, "", ("127.0.0.1", "127.0.0.1", "http", "shop.test"), id="untrusted-nothing-sent"
        ),
        pytest.param(
            1,
            "X-Forwarded-For: 6.6.6.6, 10.0.0.7\nX-Real-IP: 6.6.6.6\n"
            "X-Forwarded-Proto: https\nX-Forwarded-Host: public.test",
            ("6.6.6.6, 10.0.0.7, 127.0.0.1", "10.0.0.7", "https", "public.test"),
            id="one-trusted-hop-keeps-chain",
        ),
        pytest.param(
            1,
            "X-Forwarded-For: 6.6.6.6\nX-Forwarded-For: 10.0.0.7",
            ("6.6.6.6, 10.0.0.7, 127.0.0.1", "10.0.0.7", "http", "shop.test"),
            id="one-trusted-hop-two-headers",
        ),
        pytest.param(
            2,
            "X-Forwarded-For: 6.6.6.6, 10.0.0.7",
            ("6.6.6.6, 10.0.0.7, 127.0.0.1", "6.6.6.6", "http", "shop.test"),
            id="two-trusted-hops",
        ),
        pytest.param(
            1, "", ("127.0.0.1", "127.0.0.1", "http", "shop.test"), id="trusted-nothing-sent"
        ),
    ],
)
async def test_forwarding_headers(
    trusted_hops: int,
    sent: str,
    want: tuple[str, str, str, str],
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway(
        gateway_toml(
            {"v1": [upstream.address]}, default="v1", server=f"trusted_hops = {trusted_hops}"
        )
    )
    data = request(f"GET /echo HTTP/1.1\nHost: shop.test\nConnection: close\n{sent}")
    (resp,) = await parse_responses(await raw_request(gw.port, data))
    assert resp.status == 200
    seen = upstream.requests[-1]
    got = tuple(
        seen.headers.get(h)
        for h in ("x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host")
    )
    assert got == want
    for name in ("x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host"):
        copies = [n for n, _ in seen.raw_headers if n.lower() == name]
        assert len(copies) == 1, f"{name} sent {len(copies)} times"


# --------------------------------------------------------------------- Host


@pytest.mark.parametrize(
    ("options", "want"),
    [
        pytest.param("", "shop.test:8080", id="preserved-by-default"),
        pytest.param("preserve_host = false", "{address}", id="endpoint-address"),
        pytest.param(
            'preserve_host = false\nhost_header = "internal.svc"', "internal.svc", id="host-header"
        ),
    ],
)
async def test_host_sent_upstream(
    options: str, want: str, upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(
        gateway_toml({"v1": [upstream.address]}, default="v1", upstream_extra=options)
    )
    data = request("GET /echo HTTP/1.1\nHost: shop.test:8080\nConnection: close")
    (resp,) = await parse_responses(await raw_request(gw.port, data))
    assert resp.status == 200
    hosts = [v for n, v in upstream.requests[-1].raw_headers if n.lower() == "host"]
    assert hosts == [want.format(address=upstream.address)]


# --------------------------------------------------------------------- request line


@pytest.mark.parametrize(
    ("method", "target"),
    [
        pytest.param("GET", "/p%20q?x=%41&y=a+b", id="encoded-path-and-query"),
        pytest.param("DELETE", "/items/7?force=1&force=2", id="delete-repeated-param"),
        pytest.param("PATCH", "/a/b/?", id="empty-query"),
        pytest.param("OPTIONS", "/caf%C3%A9;v=1?q=%E2%9C%93", id="params-and-utf8"),
        pytest.param("PURGE", "/cache/key", id="extension-method"),
    ],
)
async def test_method_path_and_query_forwarded_exactly(
    method: str, target: str, upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    data = request(f"{method} {target} HTTP/1.1\nHost: shop.test\nConnection: close")
    (resp,) = await parse_responses(await raw_request(gw.port, data))
    assert resp.status == 200
    seen = upstream.requests[-1]
    assert (seen.method, seen.raw_path) == (method, target)
