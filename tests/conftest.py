"""Shared fixtures: real upstreams and a real gateway on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.harness import InProcessGateway, RecordingUpstream
from tests.redis_server import RedisServer

StartGateway = Callable[[str], Awaitable[InProcessGateway]]

# A third-party plugin distribution (tests/fixtures/site/*.dist-info) registered
# through entry points, as an installed one would be.
THIRD_PARTY_SITE = Path(__file__).parent / "fixtures" / "site"
sys.path.insert(0, str(THIRD_PARTY_SITE))


def pytest_report_header() -> str:
    """Which data path the run tests: the mypyc-compiled one or pure Python, and why."""
    from core import compiled

    return f"wasmgate data path: {compiled.status().describe()}"


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream("v1").start()
    yield up
    await up.stop()


@pytest.fixture
async def upstream2() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream("v2").start()
    yield up
    await up.stop()


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """Call with a TOML string; the gateway is stopped after the test."""
    started: list[InProcessGateway] = []

    async def start(toml: str) -> InProcessGateway:
        gw = await InProcessGateway(toml).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        await gw.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture(scope="module")
def redis_module() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_server(redis_module: RedisServer) -> RedisServer:
    """A real redis-server for this test module, running and empty at the start of each test."""
    if redis_module.proc is None or redis_module.proc.poll() is not None:
        redis_module.start()
    redis_module.resume()
    redis_module.flush()
    return redis_module
