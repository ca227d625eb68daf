"""Load balancing and passive health of upstream pools."""

from __future__ import annotations

import collections
import time

import aiohttp
import pytest

from core.config import Upstream
from core.errors import NoHealthyUpstream
from core.upstream import UpstreamPool, _smooth_weighted_order
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream


def pool(
    balance: str = "round_robin", weights: tuple[int, ...] = (1, 1, 1), **extra: object
) -> UpstreamPool:
    endpoints = [{"address": f"127.0.0.1:{9000 + i}", "weight": w} for i, w in enumerate(weights)]
    return UpstreamPool(
        Upstream.model_validate({"name": "u", "endpoints": endpoints, "balance": balance, **extra})
    )


def shares(p: UpstreamPool, n: int, key: object = None) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for i in range(n):
        k = key(i) if callable(key) else key
        counts[p.pick(k).address] += 1
    return counts


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        pytest.param((1, 1, 1), [0, 1, 2], id="equal-weights-take-turns"),
        pytest.param((5, 1, 1), [0, 0, 1, 0, 2, 0, 0], id="nginx-smooth-5-1-1"),
        pytest.param((2, 1), [0, 1, 0], id="two-to-one"),
    ],
)
def test_smooth_weighted_round_robin_order(weights: tuple[int, ...], expected: list[int]) -> None:
    assert _smooth_weighted_order(list(weights)) == expected


def test_round_robin_respects_weights_exactly() -> None:
    counts = shares(pool(weights=(3, 1)), 400)
    assert counts == {"127.0.0.1:9000": 300, "127.0.0.1:9001": 100}


@pytest.mark.parametrize("balance", ["random", "least_request"])
def test_randomised_policies_follow_weights(balance: str) -> None:
    counts = shares(pool(balance, weights=(9, 1)), 5000)
    share = counts["127.0.0.1:9000"] / 5000
    assert 0.85 < share < 0.95, counts


def test_least_request_prefers_idle_endpoint() -> None:
    p = pool("least_request", weights=(1, 1))
    p.endpoints[0].active = 50
    counts = shares(p, 200)
    # Two random choices: the busy one wins only when both draws land on it (~1/4).
    assert counts["127.0.0.1:9001"] > 120, counts


def test_consistent_hash_is_sticky_and_spreads() -> None:
    p = pool("consistent_hash", weights=(1, 1, 1), hash_on={"header": "x-user"})
    first = {f"user-{i}": p.pick(f"user-{i}").address for i in range(300)}
    again = {f"user-{i}": p.pick(f"user-{i}").address for i in range(300)}
    assert first == again
    spread = collections.Counter(first.values())
    assert len(spread) == 3 and min(spread.values()) > 50, spread


def test_consistent_hash_moves_only_keys_of_an_ejected_endpoint() -> None:
    p = pool("consistent_hash", weights=(1, 1, 1), hash_on={"cookie": "sid"})
    before = {k: p.pick(k).address for k in map(str, range(300))}
    p.endpoints[1].ejected_until = time.monotonic() + 60
    after = {k: p.pick(k).address for k in map(str, range(300))}
    moved = [k for k in before if before[k] != after[k]]
    assert moved and all(before[k] == "127.0.0.1:9001" for k in moved)
    assert "127.0.0.1:9001" not in after.values()


def test_passive_health_ejects_after_consecutive_failures_and_recovers() -> None:
    p = pool(weights=(1, 1), health={"max_failures": 2, "eject_seconds": 0.2})
    bad = p.endpoints[0]
    p.report(bad, False)
    p.report(bad, True)  # a success resets the count
    p.report(bad, False)
    assert bad.healthy(time.monotonic())
    p.report(bad, False)
    assert not bad.healthy(time.monotonic())
    assert set(shares(p, 10)) == {"127.0.0.1:9001"}
    time.sleep(0.25)
    assert set(shares(p, 10)) == {"127.0.0.1:9000", "127.0.0.1:9001"}


def test_no_healthy_endpoint_raises() -> None:
    p = pool(weights=(1, 1))
    for ep in p.endpoints:
        ep.ejected_until = time.monotonic() + 60
    with pytest.raises(NoHealthyUpstream, match="no healthy endpoint in upstream 'u'"):
        p.pick()


async def test_weighted_split_through_the_gateway(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        f"""
        [server]
        listen = ["127.0.0.1:0"]
        access_log = "off"
        [[upstreams]]
        name = "split"
        endpoints = [{{address = "{upstream.address}", weight = 3}},
                     {{address = "{upstream2.address}", weight = 1}}]
        [default]
        upstream = "split"
        """
    )
    for _ in range(40):
        async with http.get(f"{gw.url}/") as r:
            assert r.status == 200
    assert (len(upstream.requests), len(upstream2.requests)) == (30, 10)


async def test_consistent_hash_by_header_through_the_gateway(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        f"""
        [server]
        listen = ["127.0.0.1:0"]
        access_log = "off"
        [[upstreams]]
        name = "sticky"
        endpoints = ["{upstream.address}", "{upstream2.address}"]
        balance = "consistent_hash"
        hash_on = {{ header = "X-User" }}
        [default]
        upstream = "sticky"
        """
    )
    seen: dict[str, set[str]] = collections.defaultdict(set)
    for i in range(60):
        user = f"user-{i % 12}"
        async with http.get(f"{gw.url}/", headers={"X-User": user}) as r:
            seen[user].add((await r.json())["upstream"])
    assert all(len(v) == 1 for v in seen.values()), seen
    assert {next(iter(v)) for v in seen.values()} == {"v1", "v2"}
