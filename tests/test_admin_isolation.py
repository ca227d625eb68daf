"""The admin listener never stalls the data plane: a real ``wasmgate run`` with several
routes and filters, its admin and dashboard reads hammered by concurrent clients while
a client times plain proxied requests through the same process.

Before the fix, ``GET /routes`` and ``GET /plugins`` scanned the installed
distributions once per filter on the event loop, and a proxied request sent meanwhile
waited seconds; the bound below is generous against that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from plugin_sdk.testing import GatewayProcess, free_port

ADMIN_READS = (
    "/routes",
    "/plugins",
    "/config",
    "/metrics",
    "/api/upstreams",
    "/api/traffic",
    "/api/installed",
)
BOUND = 1.0  # seconds: the slowest proxied request; the blocking admin took several


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


def busy_config(port: int, admin: int, up: int) -> str:
    """Six routes of six filters each: 36 filter instances, as a real gateway has."""
    chain = (
        '"cors", "rate-limit", '
        '{ plugin = "headers", config = { request = { set = { x-a = "1" } } } }, '
        '{ plugin = "rewrite", config = { strip_prefix = "/r" } }, '
        '{ plugin = "ip-restriction", config = { allow = ["127.0.0.0/8"] } }, '
        '{ plugin = "canary", config = { upstream = "app", header = "x-c" } }'
    )
    routes = "".join(
        f"""
[[routes]]
name = "r{i}"
paths = ["/r{i}"]
upstream = "app"
filters = [{chain}]
"""
        for i in range(6)
    )
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[admin]
listen = "127.0.0.1:{admin}"

[[upstreams]]
name = "app"
endpoints = ["127.0.0.1:{up}"]

[[routes]]
name = "plain"
paths = ["/plain"]
upstream = "app"
{routes}"""


async def proxied(client: aiohttp.ClientSession, url: str) -> None:
    async with client.get(f"{url}/plain") as resp:
        assert resp.status == 200 and await resp.text() == "ok"


async def test_admin_reads_under_load_leave_proxied_requests_fast(
    tmp_path: Path, upstream: int
) -> None:
    port, admin = free_port(), free_port()
    gw = GatewayProcess(busy_config(port, admin, upstream), workdir=str(tmp_path))
    gw.start(port)
    base = f"http://127.0.0.1:{admin}"
    stop = asyncio.Event()
    answered: dict[str, int] = {}

    async def hammer(http: aiohttp.ClientSession, path: str) -> None:
        while not stop.is_set():
            async with http.get(base + path) as resp:
                await resp.read()
                assert resp.status == 200, (path, resp.status)
                answered[path] = answered.get(path, 0) + 1

    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gw.url}/plain") as resp:
                assert resp.status == 200
            hammers = [asyncio.ensure_future(hammer(http, p)) for p in ADMIN_READS]
            await asyncio.sleep(0.2)  # the admin reads are in flight
            latencies: list[float] = []
            async with aiohttp.ClientSession() as client:  # its own connections
                for _ in range(20):
                    started = time.monotonic()
                    with contextlib.suppress(TimeoutError):  # counted as 5 * BOUND
                        await asyncio.wait_for(proxied(client, gw.url), 5 * BOUND)
                    latencies.append(time.monotonic() - started)
                    if latencies[-1] > BOUND:
                        break  # failed already; do not wait out more stalls
                    await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*hammers)
        assert set(answered) == set(ADMIN_READS)  # every read really ran meanwhile
        assert max(latencies) < BOUND, f"slowest proxied request {max(latencies):.2f}s"
    finally:
        stop.set()
        assert gw.terminate() == 0
