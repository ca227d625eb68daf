"""The access log of a real ``wasmgate run``: one JSON line per request on stdout."""

from __future__ import annotations

import asyncio
import json
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
