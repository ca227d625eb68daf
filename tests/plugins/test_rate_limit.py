"""The rate-limit plugin: token bucket arithmetic (on a fake clock), keys, the bound on
tracked keys, the 429 and RateLimit-* headers, in-process and through the real gateway.

No test depends on wall-clock timing: refill is driven by a clock the test owns, and
the gateway tests use rates so low that nothing refills while they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from plugin_sdk import Context, Filter, Headers, PluginConfig, Response
from plugin_sdk.testing import Result, make_request, run_chain
from plugins.rate_limit import RateLimit, RateLimitConfig
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: FakeClock | None = None, **config: Any) -> RateLimit:
    flt = RateLimit(RateLimitConfig.model_validate(config))
    flt._clock = clock or FakeClock()
    return flt


def send(
    flt: RateLimit,
    *,
    client_ip: str = "192.0.2.1",
    headers: dict[str, str] | None = None,
    before: Sequence[Filter[Any]] = (),
) -> Result:
    request = make_request("GET", "/", headers=headers, client_ip=client_ip)
    return run_chain([*before, flt], request, response=Response(200, Headers()))


def statuses(flt: RateLimit, n: int, **kw: Any) -> list[int]:
    return [send(flt, **kw).status or 0 for _ in range(n)]


# ---------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param({"rate": 0}, "greater than or equal to 1", id="zero-rate"),
        pytest.param({"per": 0}, "greater than 0", id="zero-period"),
        pytest.param({"burst": 0}, "greater than or equal to 1", id="zero-burst"),
        pytest.param({"max_keys": 0}, "greater than or equal to 1", id="zero-keys"),
        pytest.param({"key": "cookie:session"}, "invalid key", id="unknown-key-kind"),
        pytest.param({"key": "header:"}, "invalid key", id="header-without-name"),
        pytest.param({"key": "header:Bad Name"}, "invalid key", id="header-bad-name"),
        pytest.param({"status": 200}, "greater than or equal to 400", id="status-not-error"),
        pytest.param({"requests": 5}, "Extra inputs", id="unknown-field"),
    ],
)
def test_bad_config_is_refused_at_load_time(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        RateLimitConfig.model_validate(config)


def test_defaults() -> None:
    cfg = RateLimitConfig()
    assert (cfg.rate, cfg.per, cfg.capacity, cfg.key, cfg.max_keys) == (60, 60.0, 60, "ip", 100_000)
    assert RateLimitConfig(key="header:X-Api-Key").key == "header:x-api-key"


# ---------------------------------------------------------------------- the bucket


@pytest.mark.parametrize(
    ("config", "allowed"),
    [
        pytest.param({"rate": 3, "per": 60}, 3, id="burst-defaults-to-rate"),
        pytest.param({"rate": 3, "per": 60, "burst": 1}, 1, id="burst-smaller"),
        pytest.param({"rate": 1, "per": 60, "burst": 5}, 5, id="burst-larger"),
    ],
)
def test_a_burst_gets_capacity_then_429(config: dict[str, Any], allowed: int) -> None:
    assert statuses(limiter(**config), allowed + 3) == [200] * allowed + [429] * 3


def test_refill_follows_the_clock() -> None:
    clock = FakeClock()
    flt = limiter(clock, rate=2, per=10)  # one token every 5 s, capacity 2
    assert statuses(flt, 3) == [200, 200, 429]
    clock.now += 4.9
    assert statuses(flt, 1) == [429]
    clock.now += 0.2
    assert statuses(flt, 2) == [200, 429]
    clock.now += 1000  # refills up to capacity, never past it
    assert statuses(flt, 3) == [200, 200, 429]


def test_refused_requests_do_not_take_tokens() -> None:
    clock = FakeClock()
    flt = limiter(clock, rate=1, per=10)
    assert statuses(flt, 5) == [200, 429, 429, 429, 429]
    clock.now += 10
    assert statuses(flt, 1) == [200]


@pytest.mark.parametrize(
    ("config", "advance", "retry_after", "reset"),
    [
        pytest.param({"rate": 1, "per": 10}, 0.0, "10", "10", id="slow-rate"),
        pytest.param({"rate": 1, "per": 10}, 7.5, "3", "3", id="partly-refilled"),
        pytest.param({"rate": 100, "per": 1, "burst": 1}, 0.0, "1", "1", id="at-least-one"),
        pytest.param({"rate": 1, "per": 2, "burst": 4}, 0.0, "2", "8", id="reset-until-full"),
    ],
)
def test_429_headers(config: dict[str, Any], advance: float, retry_after: str, reset: str) -> None:
    clock = FakeClock()
    flt = limiter(clock, **config)
    capacity = RateLimitConfig.model_validate(config).capacity
    statuses(flt, capacity)
    clock.now += advance
    result = send(flt)
    assert result.status == 429
    assert result.reply is not None
    assert result.headers.get("retry-after") == retry_after
    assert result.headers.get("ratelimit-limit") == str(capacity)
    assert result.headers.get("ratelimit-remaining") == "0"
    assert result.headers.get("ratelimit-reset") == reset
    assert result.headers.get_all("ratelimit-limit") == [str(capacity)], "no duplicates"
    assert result.response is not None and result.response.body == b"rate limit exceeded\n"


def test_allowed_responses_carry_ratelimit_headers() -> None:
    flt = limiter(rate=3, per=30)
    remaining = []
    for _ in range(3):
        result = send(flt)
        assert result.status == 200
        assert result.headers.get("ratelimit-limit") == "3"
        remaining.append(result.headers.get("ratelimit-remaining"))
        assert result.headers.get("ratelimit-reset") is not None
    assert remaining == ["2", "1", "0"]


def test_headers_false_skips_the_response_phase() -> None:
    flt = limiter(rate=3, per=30, headers=False)
    assert "on_response" in flt.skip_phases
    result = send(flt)
    assert result.status == 200
    assert "ratelimit-limit" not in result.headers
    statuses(flt, 2)
    assert send(flt).headers.get("ratelimit-remaining") == "0", "429s keep their headers"


def test_existing_ratelimit_headers_are_left_alone() -> None:
    flt = limiter(rate=3, per=30)
    upstream = Response(200, Headers.of({"RateLimit-Limit": "1000", "RateLimit-Remaining": "7"}))
    result = run_chain([flt], make_request(), response=upstream)
    assert result.headers.get_all("ratelimit-limit") == ["1000"]
    assert result.headers.get_all("ratelimit-remaining") == ["7"]


def test_two_limiters_a_429_keeps_the_refusing_filters_headers() -> None:
    wide = limiter(rate=100, per=60)
    narrow = limiter(rate=1, per=60)
    assert run_chain([wide, narrow], make_request(), response=Response(200)).status == 200
    result = run_chain([wide, narrow], make_request(), response=Response(200))
    assert result.status == 429
    assert result.headers.get_all("ratelimit-limit") == ["1"]
    assert result.headers.get_all("ratelimit-remaining") == ["0"]


def test_custom_status_and_message() -> None:
    flt = limiter(rate=1, per=60, status=503, message="slow down")
    send(flt)
    result = send(flt)
    assert result.status == 503
    assert result.response is not None and result.response.body == b"slow down\n"


# ---------------------------------------------------------------------- keys


class SetConsumer(Filter[PluginConfig]):
    """Stands for an auth filter: sets ctx.state["consumer"] from a request header."""

    def on_request(self, ctx: Context) -> None:
        who = ctx.request.headers.get("x-user")
        if who is not None:
            ctx.state["consumer"] = who


@pytest.mark.parametrize(
    ("key", "first", "second", "shared"),
    [
        pytest.param("ip", {"client_ip": "192.0.2.1"}, {"client_ip": "192.0.2.2"}, False, id="ip"),
        pytest.param(
            "ip",
            {"client_ip": "192.0.2.1", "headers": {"x-api-key": "a"}},
            {"client_ip": "192.0.2.1", "headers": {"x-api-key": "b"}},
            True,
            id="ip-ignores-header",
        ),
        pytest.param(
            "header:X-Api-Key",
            {"client_ip": "192.0.2.1", "headers": {"x-api-key": "a"}},
            {"client_ip": "192.0.2.1", "headers": {"x-api-key": "b"}},
            False,
            id="header-values-apart",
        ),
        pytest.param(
            "header:X-Api-Key",
            {"client_ip": "192.0.2.1", "headers": {"X-API-KEY": "a"}},
            {"client_ip": "192.0.2.2", "headers": {"x-api-key": "a"}},
            True,
            id="header-same-value-any-ip",
        ),
        pytest.param(
            "header:X-Api-Key",
            {"client_ip": "192.0.2.1"},
            {"client_ip": "192.0.2.1"},
            True,
            id="no-header-falls-back-to-ip",
        ),
        pytest.param(
            "header:X-Api-Key",
            {"client_ip": "192.0.2.1"},
            {"client_ip": "192.0.2.2"},
            False,
            id="no-header-ips-apart",
        ),
        pytest.param(
            "header:X-Api-Key",
            {"client_ip": "192.0.2.1"},
            {"client_ip": "192.0.2.9", "headers": {"x-api-key": "192.0.2.1"}},
            False,
            id="header-value-cannot-take-an-ip-bucket",
        ),
        pytest.param(
            "consumer",
            {"client_ip": "192.0.2.1", "headers": {"x-user": "alice"}},
            {"client_ip": "192.0.2.2", "headers": {"x-user": "alice"}},
            True,
            id="consumer-same-any-ip",
        ),
        pytest.param(
            "consumer",
            {"client_ip": "192.0.2.1", "headers": {"x-user": "alice"}},
            {"client_ip": "192.0.2.1", "headers": {"x-user": "bob"}},
            False,
            id="consumers-apart",
        ),
        pytest.param(
            "consumer",
            {"client_ip": "192.0.2.1"},
            {"client_ip": "192.0.2.1"},
            True,
            id="no-consumer-falls-back-to-ip",
        ),
    ],
)
def test_keys(key: str, first: dict[str, Any], second: dict[str, Any], shared: bool) -> None:
    flt = limiter(rate=1, per=60, key=key)
    before: list[Filter[Any]] = [SetConsumer(PluginConfig())] if key == "consumer" else []
    assert send(flt, before=before, **first).status == 200
    expected = 429 if shared else 200
    assert send(flt, before=before, **second).status == expected


def test_tracked_keys_are_bounded_least_recently_seen_first() -> None:
    flt = limiter(rate=1, per=60, max_keys=2)
    assert send(flt, client_ip="192.0.2.1").status == 200
    assert send(flt, client_ip="192.0.2.2").status == 200
    assert send(flt, client_ip="192.0.2.1").status == 429  # .1 is now the most recent
    assert send(flt, client_ip="192.0.2.3").status == 200  # evicts .2, the least recent
    assert send(flt, client_ip="192.0.2.1").status == 429, "a recent key keeps its bucket"
    assert send(flt, client_ip="192.0.2.2").status == 200, "an evicted key starts afresh"


def test_a_flood_of_keys_keeps_memory_bounded() -> None:
    flt = limiter(rate=1, per=60, max_keys=50, key="header:X-Api-Key")
    for i in range(500):
        send(flt, headers={"x-api-key": f"{i:04d}" + "k" * 5000})
    assert len(flt._buckets) == 50
    assert max(len(k) for k in flt._buckets) <= 80, "long header values are hashed"


# ---------------------------------------------------------------------- real gateway


def routes(config: str) -> str:
    return f"""
[filters.limit]
plugin = "rate-limit"
config = {config}

[[routes]]
name = "api"
paths = ["/"]
upstream = "v1"
filters = ["limit"]
"""


async def burst(
    http: aiohttp.ClientSession, url: str, n: int, headers: dict[str, str] | None = None
) -> list[tuple[int, dict[str, str]]]:
    out = []
    for _ in range(n):
        async with http.get(url, headers=headers or {}) as r:
            await r.read()
            out.append((r.status, {k.lower(): v for k, v in r.headers.items()}))
    return out


async def test_gateway_limits_a_burst(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    # 3 per hour: nothing refills while the test runs.
    gw = await start_gateway(
        gateway_toml({"v1": [upstream.address]}, routes("{ rate = 3, per = 3600.0 }"))
    )
    replies = await burst(http, f"{gw.url}/echo", 6)
    assert [s for s, _ in replies] == [200, 200, 200, 429, 429, 429]
    assert len(upstream.requests) == 3
    assert [h["ratelimit-remaining"] for _, h in replies[:3]] == ["2", "1", "0"]
    for _, headers in replies[3:]:
        assert int(headers["retry-after"]) >= 1
        assert headers["ratelimit-limit"] == "3"
        assert headers["ratelimit-remaining"] == "0"
        assert int(headers["ratelimit-reset"]) >= int(headers["retry-after"])


async def test_gateway_keys_on_header(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        gateway_toml(
            {"v1": [upstream.address]},
            routes('{ rate = 2, per = 3600.0, key = "header:X-Api-Key" }'),
        )
    )
    a = await burst(http, f"{gw.url}/echo", 3, {"X-Api-Key": "alpha"})
    b = await burst(http, f"{gw.url}/echo", 3, {"X-Api-Key": "beta"})
    assert [s for s, _ in a] == [200, 200, 429]
    assert [s for s, _ in b] == [200, 200, 429]
    assert len(upstream.requests) == 4


async def test_gateway_keys_on_client_ip_with_trusted_hops(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        gateway_toml(
            {"v1": [upstream.address]},
            routes("{ rate = 1, per = 3600.0 }"),
            server="trusted_hops = 1",
        )
    )
    one = await burst(http, f"{gw.url}/echo", 2, {"X-Forwarded-For": "203.0.113.1"})
    two = await burst(http, f"{gw.url}/echo", 2, {"X-Forwarded-For": "203.0.113.2"})
    assert [s for s, _ in one] == [200, 429]
    assert [s for s, _ in two] == [200, 429]
