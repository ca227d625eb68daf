"""The access log of a real ``wasmgate run``: one JSON line per request on stdout."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import GatewayProcess, RecordingUpstream, free_port, gateway_toml, raw_request

ROUTES = """
[[routes]]
name = "api"
paths = ["/api"]
upstream = "v1"

[[routes]]
name = "down"
paths = ["/down"]
upstream = "dead"
"""


@pytest.fixture
def processes() -> Iterator[list[GatewayProcess]]:
    procs: list[GatewayProcess] = []
    yield procs
    for gp in procs:
        if gp.proc is not None and gp.proc.poll() is None:
            gp.proc.kill()
            gp.proc.wait()


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON lines among the process output (event logs on stderr are not JSON)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


async def test_json_access_log_line_per_request(
    upstream: RecordingUpstream, processes: list[GatewayProcess]
) -> None:
    port = free_port()
    toml = gateway_toml(
        {"v1": [upstream.address], "dead": [f"127.0.0.1:{free_port()}"]},
        ROUTES,
        listen=f"127.0.0.1:{port}",
        access_log="stdout",
        upstream_extra="retries = 0",
    )
    gp = GatewayProcess(toml)
    processes.append(gp)
    await asyncio.to_thread(gp.start, port)
    sent = [
        (b"GET /api/items?page=2 HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
        (
            b"POST /api/orders HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n"
            b"Content-Length: 3\r\n\r\nabc"
        ),
        (b"GET /down HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
        (b"DELETE /nowhere HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
        (b"GET /api/a%2Fb HTTP/1.1\r\nHost: shop.test\r\n\r\n"),  # rejected while parsing
    ]
    for data in sent:
        assert await raw_request(port, data)
    assert await asyncio.to_thread(gp.terminate) == 0
    lines = json_lines(gp.log())
    picked = [
        {k: line[k] for k in ("method", "path", "status", "route", "upstream", "host")}
        for line in lines
    ]
    assert picked == [
        {
            "method": "GET",
            "path": "/api/items?page=2",
            "status": 200,
            "route": "api",
            "upstream": "v1",
            "host": "shop.test",
        },
        {
            "method": "POST",
            "path": "/api/orders",
            "status": 200,
            "route": "api",
            "upstream": "v1",
            "host": "shop.test",
        },
        {
            "method": "GET",
            "path": "/down",
            "status": 502,
            "route": "down",
            "upstream": "dead",
            "host": "shop.test",
        },
        {
            "method": "DELETE",
            "path": "/nowhere",
            "status": 404,
            "route": None,
            "upstream": None,
            "host": "shop.test",
        },
        {
            "method": "GET",
            "path": "/api/a%2Fb",
            "status": 400,
            "route": None,
            "upstream": None,
            "host": "shop.test",
        },
    ]
    assert lines[0]["endpoint"] == upstream.address
    assert lines[1]["bytes_in"] == 3
    assert lines[0]["bytes_out"] > 0
    assert lines[2]["reason"].startswith("upstream connect error")
    assert lines[4]["reason"] == "encoded slash in path"
    assert all(line["client"] == "127.0.0.1" for line in lines)
    assert all(line["duration_ms"] >= 0 for line in lines)


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACED_ROUTES = """
[filters.key-auth]
config.consumers = [{ name = "alice", key = "k-3f9a1c0e5b7d2a4f" }]

[[routes]]
name = "api"
paths = ["/api"]
upstream = "v1"
filters = ["key-auth"]

[[routes]]
name = "open"
paths = ["/status"]
upstream = "v1"

[[routes]]
name = "down"
paths = ["/down"]
upstream = "dead"
"""


def traced(path: str, *headers: str) -> bytes:
    lines = "".join(h + "\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n{lines}\r\n".encode()


async def test_json_access_log_has_trace_upstream_time_and_stopping_filter(
    upstream: RecordingUpstream, processes: list[GatewayProcess]
) -> None:
    port = free_port()
    toml = gateway_toml(
        {"v1": [upstream.address], "dead": [f"127.0.0.1:{free_port()}"]},
        TRACED_ROUTES,
        listen=f"127.0.0.1:{port}",
        access_log="stdout",
        upstream_extra="retries = 0",
    )
    gp = GatewayProcess(toml)
    processes.append(gp)
    await asyncio.to_thread(gp.start, port)
    sent = [
        traced("/api/a", "X-Api-Key: k-3f9a1c0e5b7d2a4f", f"traceparent: 00-{TRACE}-{'1' * 16}-01"),
        traced("/status/503"),
        traced("/api/b"),  # no key: key-auth answers 401
        traced("/nowhere"),
        traced("/down"),  # connect refused: nothing reached an upstream
    ]
    for data in sent:
        assert await raw_request(port, data)
    assert await asyncio.to_thread(gp.terminate) == 0
    lines = json_lines(gp.log())
    assert [line["status"] for line in lines] == [200, 503, 401, 404, 502]
    assert lines[0]["trace_id"] == TRACE
    assert all(re.fullmatch("[0-9a-f]{32}", line["trace_id"]) for line in lines)
    assert len({line["trace_id"] for line in lines}) == 5
    # The trace id in the log is the one the upstream was given.
    for line, seen in zip(lines[:2], upstream.requests, strict=True):
        assert seen.headers["traceparent"].split("-")[1] == line["trace_id"]
    for line in lines[:2]:
        assert 0 <= line["upstream_duration_ms"] <= line["duration_ms"]
    assert [line["upstream_duration_ms"] for line in lines[2:]] == [None, None, None]
    assert [line["stopped_by"] for line in lines] == [None, None, "key-auth", None, None]
    assert list(lines[0]) == [
        "time",
        "client",
        "method",
        "host",
        "path",
        "protocol",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream_duration_ms",
        "route",
        "upstream",
        "endpoint",
        "trace_id",
        "stopped_by",
    ]


async def test_combined_access_log_ends_with_the_trace_id(
    upstream: RecordingUpstream, processes: list[GatewayProcess]
) -> None:
    port = free_port()
    toml = gateway_toml(
        {"v1": [upstream.address]},
        '[[routes]]\nname = "api"\nupstream = "v1"\n',
        listen=f"127.0.0.1:{port}",
        access_log="stdout",
        server='access_log_format = "combined"',
    )
    gp = GatewayProcess(toml)
    processes.append(gp)
    await asyncio.to_thread(gp.start, port)
    request = traced("/api/x", "User-Agent: probe/1", f"traceparent: 00-{TRACE}-{'2' * 16}-01")
    assert await raw_request(port, request)
    assert await raw_request(port, b"GET /api/%2F HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    assert await asyncio.to_thread(gp.terminate) == 0
    lines = [line for line in gp.log().splitlines() if line.startswith("127.0.0.1 - - [")]
    assert len(lines) == 2
    assert re.fullmatch(
        rf'127\.0\.0\.1 - - \[[^]]+\] "GET /api/x HTTP/1\.1" 200 \d+ "-" "probe/1" {TRACE}',
        lines[0],
    )
    assert lines[1].endswith('" 400 22 "-" "-" -')  # rejected while parsing: no trace
