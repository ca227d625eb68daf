"""rate-limit with ``policy = "redis"``: one budget in a real redis-server shared by
several gateways, the same headers as the local policy, the keys, and each
``on_store_error`` policy while Redis is down or hung.

Rates are per hour, so nothing refills while a test runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import aiohttp
import pytest

from core import metrics
from core.errors import GatewayError
from plugin_sdk import store
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml
from tests.plugins.test_rate_limit import burst
from tests.redis_server import RedisServer


@pytest.fixture(autouse=True)
def no_store() -> Iterator[None]:
    yield
    store.configure(None)


# A generous timeout: on a busy test machine a slow answer must not count as an outage.
def config(redis: RedisServer, filters: str, *, store_extra: str = "timeout = 3") -> str:
    return f'[store]\nredis = "{redis.url}"\n{store_extra}\n{filters}'


LIMIT = """
[filters.limit]
plugin = "rate-limit"
config = {{ rate = 4, per = 3600.0, policy = "redis"{extra} }}

[[routes]]
name = "api"
paths = ["/"]
upstream = "v1"
filters = ["limit"]
"""


async def test_redis_policy_without_a_store_is_refused_at_load(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    toml = gateway_toml({"v1": [upstream.address]}, LIMIT.format(extra=""))
    with pytest.raises(GatewayError) as info:
        await start_gateway(toml)
    assert "filter 'limit' (plugin 'rate-limit')" in str(info.value)
    assert 'policy "redis" needs a [store]' in str(info.value)


async def test_gateways_share_one_budget_with_the_local_policys_headers(
    redis_server: RedisServer,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    toml = gateway_toml({"v1": [upstream.address]}, config(redis_server, LIMIT.format(extra="")))
    one, two = await start_gateway(toml), await start_gateway(toml)
    replies = []
    for i in range(8):  # alternating between the two gateways
        replies += await burst(http, f"{(one, two)[i % 2].url}/x", 1)
    assert [s for s, _ in replies] == [200] * 4 + [429] * 4
    assert len(upstream.requests) == 4
    assert [h["ratelimit-remaining"] for _, h in replies[:4]] == ["3", "2", "1", "0"]
    assert {h["ratelimit-limit"] for _, h in replies} == {"4"}
    for _, headers in replies[4:]:
        assert headers["ratelimit-remaining"] == "0"
        # One token back every 900 s.
        assert 890 <= int(headers["retry-after"]) <= 900
        assert int(headers["ratelimit-reset"]) >= 3590
    # A gateway started afresh (a restart) finds the same, spent budget.
    three = await start_gateway(toml)
    assert [s for s, _ in await burst(http, f"{three.url}/x", 2)] == [429, 429]


async def test_keys_by_header_and_by_route(
    redis_server: RedisServer,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    filters = """
[filters.by-key]
plugin = "rate-limit"
config = { rate = 2, per = 3600.0, policy = "redis", key = "header:X-Api-Key" }

[filters.by-route]
plugin = "rate-limit"
config = { rate = 2, per = 3600.0, policy = "redis", key = "route" }

[[routes]]
name = "keyed"
paths = ["/keyed"]
upstream = "v1"
filters = ["by-key"]

[[routes]]
name = "a"
paths = ["/a"]
upstream = "v1"
filters = ["by-route"]

[[routes]]
name = "b"
paths = ["/b"]
upstream = "v1"
filters = ["by-route"]
"""
    gw = await start_gateway(
        gateway_toml({"v1": [upstream.address]}, config(redis_server, filters))
    )
    cases = {
        "alpha": await burst(http, f"{gw.url}/keyed", 3, {"X-Api-Key": "alpha"}),
        "beta": await burst(http, f"{gw.url}/keyed", 3, {"X-Api-Key": "beta"}),
        # Every client of route a shares its bucket; route b has its own.
        "route a": await burst(http, f"{gw.url}/a", 3, {"X-Forwarded-For": "198.51.100.1"}),
        "route b": await burst(http, f"{gw.url}/b", 3),
    }
    assert {k: [s for s, _ in v] for k, v in cases.items()} == {k: [200, 200, 429] for k in cases}
    keys = redis_server.command("KEYS", "wasmgate:rl:*")
    for key in (
        "wasmgate:rl:by-key:h:alpha",
        "wasmgate:rl:by-route:r:a",
        "wasmgate:rl:by-route:r:b",
    ):
        assert key in keys


POLICIES = """
[filters.allow]
plugin = "rate-limit"
config = { rate = 2, per = 3600.0, policy = "redis", on_store_error = "allow" }

[filters.deny]
plugin = "rate-limit"
config = { rate = 2, per = 3600.0, policy = "redis", on_store_error = "deny" }

[filters.local]
plugin = "rate-limit"
config = { rate = 2, per = 3600.0, policy = "redis", on_store_error = "local" }
""" + "".join(
    f'\n[[routes]]\nname = "{p}"\npaths = ["/{p}"]\nupstream = "v1"\nfilters = ["{p}"]\n'
    for p in ("allow", "deny", "local")
)


@pytest.mark.parametrize("outage", ["stopped", "hung"])
async def test_each_failure_policy_while_redis_fails(
    outage: str,
    redis_server: RedisServer,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    toml = config(redis_server, POLICIES, store_extra="timeout = 0.5\nretry_interval = 5")
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, toml))
    # Redis up: each filter spends one of its two tokens in Redis.
    for name in ("allow", "deny", "local"):
        assert [s for s, _ in await burst(http, f"{gw.url}/{name}", 1)] == [200]
    before = store.error_counts()
    (redis_server.stop if outage == "stopped" else redis_server.pause)()
    try:
        caplog.set_level(logging.WARNING, "wasmgate.plugin")
        seen: dict[str, list[int]] = {}
        slowest = 0.0
        for name in ("allow", "deny", "local"):
            for _ in range(3):
                started = time.monotonic()
                seen.setdefault(name, []).extend(
                    s for s, _ in await burst(http, f"{gw.url}/{name}", 1)
                )
                slowest = max(slowest, time.monotonic() - started)
    finally:
        redis_server.resume() if outage == "hung" else redis_server.start()
    assert seen == {
        "allow": [200, 200, 200],  # let through
        "deny": [429, 429, 429],  # refused, with Retry-After
        "local": [200, 200, 429],  # a fresh bucket of this process: 2 tokens
    }
    assert slowest < 2.0  # each request waited at most about [store].timeout (0.5 s)
    after = store.error_counts()
    for name in ("allow", "deny", "local"):
        kinds = {k: n - before.get((u, k), 0) for (u, k), n in after.items() if u == name}
        assert sum(kinds.values()) == 3, (name, kinds)
    assert b'wasmgate_store_errors_total{filter="deny",kind=' in metrics.render()
    # Logged once per filter and interval, not once per request.
    logged = [r.getMessage() for r in caplog.records if "store error" in r.getMessage()]
    assert sorted(m.split("]")[0] for m in logged) == ["[allow", "[deny", "[local"], logged


def script_calls(redis: RedisServer) -> int:
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def test_takes_of_one_turn_for_one_key_are_one_script_call(
    redis_server: RedisServer,
) -> None:
    from plugins.rate_limit.redis_policy import RedisBuckets

    store.configure(store.StoreSettings(redis=redis_server.url, timeout=3.0))
    s = store.get()
    buckets = RedisBuckets(4.0, 4 / 3600)  # 4 at once, then one every 900 s

    async def take(key: str) -> tuple[bool, float]:
        answer, place = buckets.take(s, s.key("rl", "t", key))
        return buckets.outcome(await answer, place)

    await take("warm")  # Redis has the script (no NOSCRIPT round below)
    before = script_calls(redis_server)
    takes = [take("a") for _ in range(7)]
    takes.append(take("b"))  # another key: its own bucket
    answers = await asyncio.gather(*takes)
    # Decided as seven calls one after another would be, in the order they were made.
    assert [(allowed, int(tokens)) for allowed, tokens in answers] == [
        (True, 3), (True, 2), (True, 1), (True, 0), (False, 0), (False, 0), (False, 0),
        (True, 3),
    ]  # fmt: skip
    assert script_calls(redis_server) - before == 2  # one per key
    # The bucket in Redis holds exactly the four tokens taken.
    assert (await take("a"))[0] is False
    assert (await take("b"))[0] is True

    # A request that goes away (its task cancelled) takes no answer from the others.
    tasks = [asyncio.create_task(take("c")) for _ in range(3)]
    await asyncio.sleep(0)  # the three took their places; the call is not made yet
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert [results[0], results[2]] == [(True, 3.0), (True, 1.0)], results


async def test_concurrent_requests_draw_exactly_the_budget(
    redis_server: RedisServer,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    toml = gateway_toml({"v1": [upstream.address]}, config(redis_server, LIMIT.format(extra="")))
    gw = await start_gateway(toml)

    async def one() -> tuple[int, str | None]:
        async with http.get(f"{gw.url}/x") as r:
            await r.read()
            return r.status, r.headers.get("RateLimit-Remaining")

    replies = await asyncio.gather(*(one() for _ in range(10)))
    assert sorted(s for s, _ in replies) == [200] * 4 + [429] * 6
    assert sorted(rem for s, rem in replies if s == 200) == ["0", "1", "2", "3"]
    assert len(upstream.requests) == 4
