"""``shared_data = "redis"``: a Proxy-Wasm filter's shared data kept in a real
redis-server — written through, values of other writers taken within the refresh
interval, loaded before a fresh gateway's first request, CAS conflicts settled by
Redis, and requests served from the local copy while Redis is down.

The filter is the Go example go-shared (a request counter with get + CAS set).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from core.errors import GatewayError
from core.wasm import shared, shared_redis
from plugin_sdk import store
from tests.conftest import StartGateway
from tests.harness import GatewayProcess, RecordingUpstream, build_example_filters, free_port
from tests.redis_server import RedisServer
from tests.test_wasm_go import go_binary, go_toml


@pytest.fixture(scope="module", autouse=True)
def go_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if go_binary() is None:
        pytest.skip("Go >= 1.24 is not installed (no $GO, no `go` on PATH, no /usr/local/go)")
    build_example_filters("go-shared", timeout=600)
    with pytest.MonkeyPatch.context() as mp:  # the module compiles once for the file
        mp.setenv("WASMGATE_CACHE_DIR", str(tmp_path_factory.mktemp("module-cache")))
        yield


@pytest.fixture(autouse=True)
def no_store() -> Iterator[None]:
    yield
    store.configure(None)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def toml(redis: RedisServer, upstream: RecordingUpstream, vm: str, key: str) -> str:
    store_table = f'[store]\nredis = "{redis.url}"\nretry_interval = 0.1\ntimeout = 3\n'
    extra = 'shared_data = "redis"\n'
    return store_table + go_toml(
        {"v1": [upstream.address]}, "go-shared", {"key": key}, filter_name=vm, extra=extra
    )


async def count(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url + "/n") as resp:
        assert resp.status == 200
        return resp.headers["x-go-shared-count"]


async def test_shared_data_lives_in_redis_for_every_gateway(
    redis_server: RedisServer,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    vm, key = f"w-{uuid.uuid4().hex[:6]}", "requests"
    values, cases = f"wasmgate:wasm:{{{vm}}}", f"wasmgate:wasm:{{{vm}}}:cas"
    gw = await start_gateway(toml(redis_server, upstream, vm, key))
    assert [await count(http, gw.url) for _ in range(3)] == ["1", "2", "3"]
    # Written through: Redis holds the value and its CAS.
    await eventually(lambda: "$1\r\n3" in redis_server.command("HGET", cases, key))
    assert "$1\r\n3" in redis_server.command("HGET", values, key)

    # Another replica writes a newer version: this gateway takes it within the interval.
    redis_server.command("HSET", values, key, "100")
    redis_server.command("HSET", cases, key, "50")
    home = shared._homes[vm.encode()]
    await eventually(lambda: home.get(key.encode()) == (b"100", 50))
    assert await count(http, gw.url) == "101"

    # A gateway started afresh (a restart) loads it before its first request.
    await gw.stop()
    fresh = await start_gateway(toml(redis_server, upstream, vm, key))
    assert await count(http, fresh.url) == "102"

    # Redis down: the filter goes on with the local copy, no request waits long.
    before = store.error_counts()
    redis_server.stop()
    started = time.monotonic()
    assert [await count(http, fresh.url) for _ in range(2)] == ["103", "104"]
    assert time.monotonic() - started < 2.0
    await eventually(lambda: store.error_counts() != before)


async def test_a_conflicting_write_is_settled_by_redis(redis_server: RedisServer) -> None:
    store.configure(store.StoreSettings(redis=redis_server.url, timeout=3.0))
    vm = f"c-{uuid.uuid4().hex[:6]}"
    owner = object()
    home = shared.attach(vm, owner, max_shared=1 << 16, max_queue=1 << 16)
    try:
        mirror = shared_redis.bind(home)
        # Another replica wrote first (CAS 5); this process, not yet in step, writes
        # the key as new (CAS 0): locally that succeeds, Redis refuses it.
        redis_server.command("HSET", f"wasmgate:wasm:{{{vm}}}", "k", "theirs")
        redis_server.command("HSET", f"wasmgate:wasm:{{{vm}}}:cas", "k", "5")
        assert home.set(b"k", b"ours", 0) == shared.Status.OK
        mirror.start()
        await eventually(lambda: home.get(b"k") == (b"theirs", 5))
        assert store.error_counts().get((vm, "conflict")) == 1
        # The next write from the settled CAS goes through.
        assert home.set(b"k", b"ours", 5) == shared.Status.OK
        await eventually(
            lambda: "ours" in redis_server.command("HGET", f"wasmgate:wasm:{{{vm}}}", "k")
        )
    finally:
        shared.detach(home, owner)


async def test_shared_data_redis_without_a_store_is_refused(
    upstream: RecordingUpstream, start_gateway: StartGateway, tmp_path: Path
) -> None:
    text = go_toml(
        {"v1": [upstream.address]}, "go-shared", {}, filter_name="w", extra='shared_data = "redis"'
    )
    with pytest.raises(GatewayError, match=r'shared_data = "redis" needs a \[store\]'):
        await start_gateway(text)


async def test_two_processes_and_their_workers_count_in_one_place(
    redis_server: RedisServer, upstream: RecordingUpstream
) -> None:
    """Two ``wasmgate run`` replicas, one with two workers: spaced requests through any
    of the three processes number on from one another (each sees the others' writes)."""
    vm, key = f"p-{uuid.uuid4().hex[:6]}", "requests"
    cases = f"wasmgate:wasm:{{{vm}}}:cas"
    gateways = []
    for workers in (2, 1):
        port = free_port()
        text = toml(redis_server, upstream, vm, key).replace(
            'listen = ["127.0.0.1:0"]', f'listen = ["127.0.0.1:{port}"]\nworkers = {workers}'
        )
        gateways.append(GatewayProcess(text).start(port))
    try:
        seen = []
        async with aiohttp.ClientSession() as http:
            for i in range(4):
                gw = gateways[i % 2]
                async with http.get(gw.url + "/n", headers={"Connection": "close"}) as resp:
                    seen.append(resp.headers["x-go-shared-count"])
                # Written through to Redis, then time for every process to refresh
                # (every 0.25 s; generous, as the machine may be busy).
                n = len(seen)
                await eventually(
                    lambda n=n: f"\r\n{n}\r\n" in redis_server.command("HGET", cases, key)
                )
                await asyncio.sleep(0.75)
        assert seen == ["1", "2", "3", "4"]
    finally:
        codes = [gw.terminate() for gw in gateways]
    assert codes == [0, 0], [gw.log() for gw in gateways]
