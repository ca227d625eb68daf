"""Blocking work cannot starve other blocking work (issue 14, item 14).

A registry that accepts connections and never answers, many unauthenticated dashboard
market calls against it, and meanwhile a basic-auth request through the same gateway
process: bcrypt runs in its own pool, so the request is served at once; the market
calls come back with a clear 503/504 instead of piling up without bound.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from plugin_sdk.testing import GatewayProcess, RecordingUpstream, free_port

MARKET_CALLS = 64  # more than the default executor's 32 threads on any machine


@pytest.fixture
async def hanging_registry() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0, backlog=512)
    yield server.sockets[0].getsockname()[1]
    for w in held:
        w.close()
    server.close()


def config(port: int, admin: int, up: str, registry: int, password_hash: str, extra: str) -> str:
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[admin]
listen = "127.0.0.1:{admin}"

[market]
registry = "http://127.0.0.1:{registry}"

[[upstreams]]
name = "app"
endpoints = ["{up}"]

[filters.staff]
plugin = "basic-auth"
config.users = {{ alice = "{password_hash}" }}
config.cache_size = 0

[[routes]]
name = "main"
paths = ["/"]
upstream = "app"
filters = ["staff"]
{extra}
"""


async def test_hanging_registry_does_not_delay_basic_auth(
    tmp_path: Path, upstream: RecordingUpstream, hanging_registry: int
) -> None:
    port, admin = free_port(), free_port()
    hashed = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode()
    extra = "\n[executors.registry]\nworkers = 2\nqueue = 4\ntimeout = 1.0\n"
    toml = config(port, admin, upstream.address, hanging_registry, hashed, extra)
    gw = await asyncio.to_thread(
        GatewayProcess(toml, workdir=str(tmp_path)).start,
        port,
        env={"WASMGATE_HOME": str(tmp_path / "home")},
    )
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:wonderland").decode()}
    try:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def market(i: int) -> tuple[int, str]:
                url = f"http://127.0.0.1:{admin}/api/market?q=x{i}"
                async with http.get(url) as resp:
                    return resp.status, await resp.text()

            calls = [asyncio.create_task(market(i)) for i in range(MARKET_CALLS)]
            await asyncio.sleep(0.5)  # the market calls are in, the registry holds them
            started = time.monotonic()
            status = 0
            try:
                async with http.get(
                    f"http://127.0.0.1:{port}/x",
                    headers=auth,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    status = resp.status
            except TimeoutError:
                pass  # asserted below
            took = time.monotonic() - started
            results = await asyncio.gather(*calls)
    finally:
        code = await asyncio.to_thread(gw.terminate)
    assert took < 2.0, f"basic-auth took {took:.1f} s behind the registry calls"
    assert status == 200
    statuses = {s for s, _ in results}
    assert statuses <= {503, 504}, results[:3]
    assert 504 in statuses and 503 in statuses  # some timed out, the rest were refused
    for _, text in results:
        assert "registry" in text
    assert code == 0
