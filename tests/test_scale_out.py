"""Several gateway processes, one limit: two ``wasmgate run`` replicas (one of them with
``workers = 2``) behind one redis-server hold a rate limit of L exactly — while one
reloads and after one restarts — and, with Redis stopped mid-run, each
``on_store_error`` policy answers as documented.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp

from tests.harness import GatewayProcess, RecordingUpstream, free_port, gateway_toml
from tests.redis_server import RedisServer

L = 12  # requests per hour: nothing refills while the test runs

FILTERS = (
    """
[filters.limit]
plugin = "rate-limit"
config = {{ rate = {L}, per = 3600.0, policy = "redis", key = "header:X-Client" }}
"""
    + "".join(
        f"""
[filters.{p}]
plugin = "rate-limit"
config = {{{{ rate = 1, per = 3600.0, policy = "redis", on_store_error = "{p}" }}}}
"""
        for p in ("allow", "deny", "local")
    )
    + "".join(
        f'\n[[routes]]\nname = "{p}"\npaths = ["/{p}"]\nupstream = "v1"\nfilters = ["{p}"]\n'
        for p in ("allow", "deny", "local")
    )
    + """
[[routes]]
name = "api"
paths = ["/"]
upstream = "v1"
filters = ["limit"]
"""
)


def config(redis: RedisServer, upstream: RecordingUpstream, port: int, workers: int) -> str:
    # A generous timeout: on a busy test machine a slow answer must not count as an
    # outage (that would fall back to local buckets and let more than L through).
    store = f'[store]\nredis = "{redis.url}"\ntimeout = 3.0\nretry_interval = 0.2\n'
    return gateway_toml(
        {"v1": [upstream.address]},
        store + FILTERS.format(L=L),
        listen=f"127.0.0.1:{port}",
        server=f"workers = {workers}",
    )


async def get(http: aiohttp.ClientSession, gw: GatewayProcess, path: str = "/x") -> int:
    # A new connection each time, so that the kernel spreads them over the workers.
    headers = {"Connection": "close", "X-Client": "c1"}
    async with http.get(f"{gw.url}{path}", headers=headers) as r:
        await r.read()
        return r.status


async def logged(gw: GatewayProcess, text: str, times: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while gw.log().count(text) < times:
        assert time.monotonic() < deadline, gw.log()
        await asyncio.sleep(0.05)


async def test_two_replicas_hold_one_limit_across_reload_restart_and_outage(
    redis_server: RedisServer, upstream: RecordingUpstream
) -> None:
    ports = free_port(), free_port()
    a = GatewayProcess(config(redis_server, upstream, ports[0], 2)).start(ports[0])
    b = GatewayProcess(config(redis_server, upstream, ports[1], 1)).start(ports[1])
    statuses: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(4):  # both replicas, both of a's workers
                statuses.append(await get(http, (a, b)[i % 2]))
            assert statuses == [200] * 4

            # Replica a reloads (both its workers) while requests go on.
            assert a.proc is not None
            a.proc.send_signal(signal.SIGHUP)
            statuses += await asyncio.gather(*(get(http, (a, b)[i % 2]) for i in range(4)))
            await logged(a, "reloaded (SIGHUP): configuration 2", 2)
            statuses.append(await get(http, a))

            # Replica b restarts: its buckets were never its own.
            assert b.terminate() == 0
            b.start(ports[1])
            for i in range(8):
                statuses.append(await get(http, (a, b)[i % 2]))
            assert statuses.count(200) == L, (statuses, a.log(), b.log())
            assert statuses[-(len(statuses) - L) :] == [429] * (len(statuses) - L)
            assert len(upstream.requests) == L
            assert "store error" not in a.log() + b.log()

            # Redis goes away mid-run: each failure policy answers, on every replica.
            redis_server.stop()
            seen = {
                p: [await get(http, gw, f"/{p}") for gw in (a, b, a, b)]
                for p in ("allow", "deny", "local")
            }
            assert seen["allow"] == [200] * 4
            assert seen["deny"] == [429] * 4
            # A local bucket (rate 1) per process: a's two workers and b each allow one.
            assert seen["local"].count(200) in (2, 3) and seen["local"][:2] == [200, 200]
            redis_server.start()  # an empty Redis: counting starts over
            await asyncio.sleep(0.3)  # past retry_interval
            assert [await get(http, gw, "/deny") for gw in (a, b)] == [200, 429]
    finally:
        codes = a.terminate(), b.terminate()
    assert codes == (0, 0), a.log() + b.log()
    assert "store error (unavailable)" in a.log() + b.log()
