"""The ``canary`` plugin: header > cookie > weight, stickiness, and load-time checks.

In-process through :mod:`plugin_sdk.testing` for the decision table, then through the
real gateway with two recording upstreams (``v1`` mainline, ``v2`` canary).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import aiohttp
import pytest

from core.errors import ConfigError
from plugin_sdk import Response
from plugin_sdk.testing import make_request, run_filter
from plugins.canary import Canary
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml

MAIN = "v1"
CANARY = "v2"


def decide(config: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    """The upstream the canary filter leaves for one request."""
    result = run_filter(
        Canary, make_request("GET", "/", headers=headers), config=config, upstream=MAIN
    )
    assert result.reply is None
    return result.upstream


# --------------------------------------------------------------------- decision table

HEADER = {"upstream": CANARY, "header": "x-canary", "cookie": "canary"}
VALUE = {**HEADER, "header_value": "beta"}
PATTERN = {**HEADER, "header_pattern": "^(beta|gamma)-[0-9]+$"}
UNANCHORED = {**HEADER, "header_pattern": "beta"}
ALL_IN = {"weight": 100}  # what falls through everything goes to the canary


@pytest.mark.parametrize(
    ("config", "headers", "expected"),
    [
        pytest.param(HEADER, {"x-canary": "always"}, CANARY, id="header-always"),
        pytest.param(
            {**HEADER, **ALL_IN}, {"x-canary": "never"}, MAIN, id="header-never-beats-weight"
        ),
        pytest.param(
            HEADER, {"x-canary": "never", "cookie": "canary=always"}, MAIN,
            id="header-never-beats-cookie",
        ),
        pytest.param(HEADER, {"x-canary": "yes"}, MAIN, id="header-other-falls-to-weight-0"),
        pytest.param(
            {**HEADER, **ALL_IN}, {"x-canary": "yes"}, CANARY, id="header-other-falls-to-weight"
        ),
        pytest.param(
            HEADER, {"x-canary": "yes", "cookie": "canary=always"}, CANARY,
            id="header-other-falls-to-cookie",
        ),
        pytest.param(HEADER, {"X-CANARY": "always"}, CANARY, id="header-name-case-insensitive"),
        pytest.param(HEADER, {"x-canary": "Always"}, MAIN, id="header-value-case-sensitive"),
        pytest.param(HEADER, {}, MAIN, id="no-header-no-cookie-mainline"),
        pytest.param(VALUE, {"x-canary": "beta"}, CANARY, id="value-match"),
        pytest.param(VALUE, {"x-canary": "always"}, MAIN, id="value-set-always-not-special"),
        pytest.param(
            {**VALUE, **ALL_IN}, {"x-canary": "never"}, CANARY, id="value-set-never-not-special"
        ),
        pytest.param(
            VALUE, {"x-canary": "alpha", "cookie": "canary=always"}, CANARY,
            id="value-mismatch-falls-to-cookie-always",
        ),
        pytest.param(
            {**VALUE, **ALL_IN}, {"x-canary": "alpha", "cookie": "canary=never"}, MAIN,
            id="value-mismatch-falls-to-cookie-never",
        ),
        pytest.param(PATTERN, {"x-canary": "gamma-42"}, CANARY, id="pattern-match"),
        pytest.param(PATTERN, {"x-canary": "gamma-42x"}, MAIN, id="pattern-mismatch"),
        pytest.param(
            PATTERN, {"x-canary": "delta", "cookie": "canary=always"}, CANARY,
            id="pattern-mismatch-falls-to-cookie",
        ),
        pytest.param(UNANCHORED, {"x-canary": "pre-beta-1"}, CANARY, id="pattern-is-a-search"),
        pytest.param(HEADER, {"cookie": "canary=always"}, CANARY, id="cookie-always"),
        pytest.param({**HEADER, **ALL_IN}, {"cookie": "canary=never"}, MAIN, id="cookie-never"),
        pytest.param(
            {**HEADER, **ALL_IN}, {"cookie": "a=1; canary=never; b=2"}, MAIN,
            id="cookie-among-others",
        ),
        pytest.param(HEADER, {"cookie": "canary=maybe"}, MAIN, id="cookie-other-to-weight-0"),
        pytest.param(
            {**HEADER, **ALL_IN}, {"cookie": "canary=maybe"}, CANARY,
            id="cookie-other-to-weight-100",
        ),
        pytest.param(
            {**HEADER, **ALL_IN}, {"cookie": "other=never"}, CANARY, id="other-cookie-ignored"
        ),
    ],
)  # fmt: skip
def test_decision(config: dict[str, Any], headers: dict[str, str], expected: str) -> None:
    assert decide(config, headers) == expected


@pytest.mark.parametrize(
    ("weight", "total", "expected"),
    [
        pytest.param(0, 100, {MAIN}, id="weight-0-mainline-only"),
        pytest.param(100, 100, {CANARY}, id="weight-100-canary-only"),
        pytest.param(3, 3, {CANARY}, id="weight-equals-custom-total"),
    ],
)
def test_weight_extremes(weight: int, total: int, expected: set[str]) -> None:
    config = {"upstream": CANARY, "weight": weight, "weight_total": total}
    assert {decide(config) for _ in range(200)} == expected


def test_weight_split_in_process() -> None:
    config = {"upstream": CANARY, "weight": 1, "weight_total": 4}
    counts = Counter(decide(config) for _ in range(800))
    assert 100 <= counts[CANARY] <= 300, counts


def test_header_beats_a_partial_weight() -> None:
    """The header decides first also when only a weighted draw would be left (no
    cookie, no stickiness: the filter's shortest path); without it, the draw does."""
    config = {"upstream": CANARY, "header": "x-canary", "weight": 50}
    assert {decide(config, {"X-Canary": "always"}) for _ in range(100)} == {CANARY}
    assert {decide(config, {"x-canary": "never"}) for _ in range(100)} == {MAIN}
    assert {decide(config, {"x-canary": "maybe"}) for _ in range(200)} == {MAIN, CANARY}
    assert {decide(config, {"x-other": "always"}) for _ in range(200)} == {MAIN, CANARY}


# --------------------------------------------------------------------- stickiness

STICKY = {"upstream": CANARY, "weight": 50, "sticky_cookie": "side", "sticky_max_age": 3600}


def sticky_run(config: dict[str, Any], cookie: str | None = None) -> tuple[str, list[str]]:
    """(upstream chosen, Set-Cookie values on the response)."""
    headers = {"cookie": cookie} if cookie else {}
    result = run_filter(
        Canary,
        make_request("GET", "/", headers=headers),
        config=config,
        upstream=MAIN,
        response=Response(200),
    )
    return result.upstream, result.headers.get_all("set-cookie")


def test_sticky_weighted_decision_sets_cookie_naming_the_side() -> None:
    sides = set()
    for _ in range(60):
        chosen, cookies = sticky_run(STICKY)
        side = "canary" if chosen == CANARY else "mainline"
        assert cookies == [f"side={side}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600"]
        sides.add(side)
    assert sides == {"canary", "mainline"}


@pytest.mark.parametrize(
    ("config", "cookie", "expected", "sets_cookie"),
    [
        pytest.param(STICKY, "side=canary", CANARY, False, id="sticky-canary"),
        pytest.param(STICKY, "side=mainline", MAIN, False, id="sticky-mainline"),
        pytest.param(
            {**STICKY, "cookie": "force"}, "side=canary; force=never", MAIN, False,
            id="forcing-cookie-beats-sticky",
        ),
        pytest.param({**STICKY, "weight": 0}, "side=canary", MAIN, False, id="weight-0-rollback"),
        pytest.param(
            {**STICKY, "weight": 100}, "side=mainline", CANARY, False, id="weight-100-all-in"
        ),
    ],
)  # fmt: skip
def test_sticky_cookie_decides(
    config: dict[str, Any], cookie: str, expected: str, sets_cookie: bool
) -> None:
    for _ in range(30):
        chosen, cookies = sticky_run(config, cookie)
        assert chosen == expected
        assert bool(cookies) == sets_cookie


def test_sticky_cookie_with_unknown_value_is_rewritten() -> None:
    _, cookies = sticky_run(STICKY, "side=bogus")
    assert len(cookies) == 1
    assert re.match(r"side=(canary|mainline);", cookies[0])


def test_no_sticky_cookie_without_sticky_config() -> None:
    config = {"upstream": CANARY, "weight": 50}
    assert all(sticky_run(config)[1] == [] for _ in range(30))


# --------------------------------------------------------------------- config checks


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({}, "upstream", id="upstream-required"),
        pytest.param(
            {**HEADER, "header_value": "a", "header_pattern": "a"}, "mutually exclusive",
            id="value-and-pattern",
        ),
        pytest.param(
            {"upstream": "v2", "header_value": "a"}, "need 'header'", id="value-no-header"
        ),
        pytest.param({**HEADER, "header_pattern": "(beta"}, "invalid regular", id="bad-pattern"),
        pytest.param({"upstream": "v2", "weight": 101}, "exceeds", id="weight-over-total"),
        pytest.param({"upstream": "v2", "weight": -1}, "greater than", id="weight-negative"),
        pytest.param({"upstream": "v2", "weight_total": 0}, "greater than", id="total-zero"),
        pytest.param({"upstream": "v2", "header": "x canary"}, "invalid header", id="bad-header"),
        pytest.param({"upstream": "v2", "cookie": "a;b"}, "invalid cookie", id="bad-cookie"),
        pytest.param(
            {"upstream": "v2", "cookie": "c", "sticky_cookie": "c"}, "differ", id="same-cookies"
        ),
        pytest.param({"upstream": "v2", "sticky_max_age": 5}, "needs sticky", id="age-alone"),
        pytest.param({"upstream": "v2", "weigth": 5}, "Extra inputs", id="unknown-field"),
    ],
)  # fmt: skip
def test_bad_config_is_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Canary.Config.model_validate(config)


def test_phases_skipped_when_config_makes_them_no_ops() -> None:
    assert Canary(Canary.Config.model_validate({"upstream": "v2"})).skip_phases == {
        "on_request",
        "on_response",
    }
    assert Canary(Canary.Config.model_validate(STICKY)).skip_phases == set()
    weighted = Canary(Canary.Config.model_validate({"upstream": "v2", "weight": 5}))
    assert weighted.skip_phases == {"on_response"}


# --------------------------------------------------------------------- through the gateway


def toml(v1: RecordingUpstream, v2: RecordingUpstream, config: str) -> str:
    return gateway_toml(
        {"v1": [v1.address], "v2": [v2.address]},
        f"""
[filters.shop-canary]
plugin = "canary"
{config}

[[routes]]
name = "shop"
paths = ["/"]
upstream = "v1"
filters = ["shop-canary"]
""",
    )


async def reached(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> str:
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200
        body = await resp.json()
        return str(body["upstream"])


HEADER_TOML = """config = { upstream = "v2", header = "x-canary", cookie = "canary" }"""
PATTERN_TOML = """config.upstream = "v2"
config.header = "x-canary"
config.header_pattern = "^v2-"
config.cookie = "canary"
"""
VALUE_TOML = """config.upstream = "v2"
config.header = "x-canary"
config.header_value = "beta"
config.cookie = "canary"
config.weight = 100
"""


@pytest.mark.parametrize(
    ("config", "headers", "expected"),
    [
        pytest.param(HEADER_TOML, {}, "v1", id="nothing-mainline"),
        pytest.param(HEADER_TOML, {"X-Canary": "always"}, "v2", id="header-always"),
        pytest.param(
            HEADER_TOML, {"X-Canary": "never", "Cookie": "canary=always"}, "v1", id="header-never"
        ),
        pytest.param(
            HEADER_TOML, {"X-Canary": "other", "Cookie": "canary=always"}, "v2",
            id="header-other-to-cookie-always",
        ),
        pytest.param(HEADER_TOML, {"Cookie": "canary=always"}, "v2", id="cookie-always"),
        pytest.param(HEADER_TOML, {"Cookie": "canary=never"}, "v1", id="cookie-never"),
        pytest.param(VALUE_TOML, {"X-Canary": "beta"}, "v2", id="value-match"),
        pytest.param(
            VALUE_TOML, {"X-Canary": "alpha", "Cookie": "canary=never"}, "v1",
            id="value-mismatch-to-cookie",
        ),
        pytest.param(VALUE_TOML, {"X-Canary": "alpha"}, "v2", id="value-mismatch-to-weight"),
        pytest.param(PATTERN_TOML, {"X-Canary": "v2-rc1"}, "v2", id="pattern-match"),
        pytest.param(PATTERN_TOML, {"X-Canary": "x-v2-rc1"}, "v1", id="pattern-mismatch"),
    ],
)  # fmt: skip
async def test_gateway_routes_to_the_chosen_upstream(
    config: str,
    headers: dict[str, str],
    expected: str,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(toml(upstream, upstream2, config))
    assert await reached(http, gw.url + "/shop/item?id=7", headers) == expected
    seen = (upstream if expected == "v1" else upstream2).requests
    assert [s.path_qs for s in seen] == ["/shop/item?id=7"]
    other = upstream2 if expected == "v1" else upstream
    assert other.requests == []


@pytest.mark.parametrize(
    ("weight", "low", "high"),
    [
        pytest.param(0, 0, 0, id="weight-0-mainline-only"),
        pytest.param(100, 400, 400, id="weight-100-canary-only"),
        pytest.param(50, 140, 260, id="weight-50-split-35-65-percent"),
    ],
)
async def test_gateway_weight(
    weight: int,
    low: int,
    high: int,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        toml(upstream, upstream2, f'config = {{ upstream = "v2", weight = {weight} }}')
    )
    counts = Counter([await reached(http, gw.url + "/", {}) for _ in range(400)])
    assert low <= counts["v2"] <= high, counts
    assert counts["v1"] + counts["v2"] == 400
    assert (len(upstream.requests), len(upstream2.requests)) == (counts["v1"], counts["v2"])


async def test_gateway_stickiness(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        toml(
            upstream, upstream2, 'config = { upstream = "v2", weight = 50, sticky_cookie = "side" }'
        )
    )
    firsts: set[str] = set()
    for _ in range(40):  # a fresh client each time: a random side, and a cookie naming it
        async with http.get(gw.url + "/") as resp:
            first = (await resp.json())["upstream"]
            cookie = resp.headers.getall("Set-Cookie")
        side = "canary" if first == "v2" else "mainline"
        assert cookie == [f"side={side}; Path=/; HttpOnly; SameSite=Lax"]
        firsts.add(first)
        for _ in range(5):  # the same client, sending the cookie back, stays there
            async with http.get(gw.url + "/", headers={"Cookie": f"side={side}"}) as resp:
                assert (await resp.json())["upstream"] == first
                assert "Set-Cookie" not in resp.headers
    assert firsts == {"v1", "v2"}


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        pytest.param(
            'config = { upstream = "v2", header = "x-canary", header_pattern = "([a-z" }',
            ["filters.shop-canary", "config.header_pattern", "invalid regular expression"],
            id="invalid-pattern",
        ),
        pytest.param(
            'config = { upstream = "v22", weight = 10 }',
            ["filters.shop-canary", "unknown upstream 'v22'", "did you mean 'v2'"],
            id="unknown-upstream",
        ),
        pytest.param(
            'config = { upstream = "v2", weight = 200 }',
            ["filters.shop-canary", "exceeds weight_total"],
            id="weight-over-total",
        ),
    ],
)
async def test_gateway_refuses_bad_config_at_load(
    config: str,
    fragments: list[str],
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
) -> None:
    with pytest.raises(ConfigError) as info:
        await start_gateway(toml(upstream, upstream2, config))
    for fragment in fragments:
        assert fragment in str(info.value)
