"""The ``rewrite`` plugin: prefix strip/replace, regex rewrite-target, Host rewrite.

The path table runs in-process through :mod:`plugin_sdk.testing`; the gateway tests
check what the recording upstream saw on the wire (request target and Host).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from core.errors import ConfigError
from plugin_sdk.testing import make_request, run_filter
from plugins.rewrite import Rewrite
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml

STRIP = {"strip_prefix": "/user"}
STRIP_SLASH = {"strip_prefix": "/user/"}
REPLACE = {"replace_prefix": {"from": "/old", "to": "/new"}}
REPLACE_TO_ROOT = {"replace_prefix": {"from": "/old", "to": "/"}}
REPLACE_FROM_ROOT = {"replace_prefix": {"from": "/", "to": "/api"}}
TARGET = {"regex": "/something(/|$)(.*)", "replacement": "/$2"}
SWAP = {"regex": "/(\\w+)/(\\w+)", "replacement": "/$2/$1"}
CONSTANT = {"regex": "/legacy", "replacement": "/v2"}
OPTIONAL = {"regex": "/x(/y)?", "replacement": "/z$1"}
RELATIVE = {"regex": "/p/(.*)", "replacement": "$1"}


@pytest.mark.parametrize(
    ("config", "target", "expected"),
    [
        pytest.param(STRIP, "/user/api/x", "/api/x", id="strip-subpath"),
        pytest.param(STRIP, "/user", "/", id="strip-exact-to-root"),
        pytest.param(STRIP, "/user/", "/", id="strip-trailing-slash"),
        pytest.param(STRIP, "/username", "/username", id="strip-not-partial-element"),
        pytest.param(STRIP, "/other/user/x", "/other/user/x", id="strip-only-at-start"),
        pytest.param(STRIP, "/user/a?q=1&r=2", "/a?q=1&r=2", id="strip-keeps-query"),
        pytest.param(STRIP_SLASH, "/user/a", "/a", id="strip-config-trailing-slash-ignored"),
        pytest.param(REPLACE, "/old/x/y", "/new/x/y", id="replace-subpath"),
        pytest.param(REPLACE, "/old", "/new", id="replace-exact"),
        pytest.param(REPLACE, "/older", "/older", id="replace-not-partial-element"),
        pytest.param(REPLACE, "/old/x?a=1", "/new/x?a=1", id="replace-keeps-query"),
        pytest.param(REPLACE_TO_ROOT, "/old/x", "/x", id="replace-to-root"),
        pytest.param(REPLACE_TO_ROOT, "/old", "/", id="replace-to-root-exact"),
        pytest.param(REPLACE_FROM_ROOT, "/x", "/api/x", id="replace-from-root-adds-prefix"),
        pytest.param(TARGET, "/something", "/", id="regex-bare-to-root"),
        pytest.param(TARGET, "/something/", "/", id="regex-slash-to-root"),
        pytest.param(TARGET, "/something/new", "/new", id="regex-capture"),
        pytest.param(TARGET, "/something/new/deep", "/new/deep", id="regex-capture-deep"),
        pytest.param(TARGET, "/something/new?x=1", "/new?x=1", id="regex-keeps-query"),
        pytest.param(TARGET, "/somethingelse", "/somethingelse", id="regex-no-match-unchanged"),
        pytest.param(TARGET, "/a/something/new", "/a/something/new", id="regex-anchored-start"),
        pytest.param(SWAP, "/a/b", "/b/a", id="regex-groups-reordered"),
        pytest.param(CONSTANT, "/legacy/thing", "/v2", id="regex-replaces-whole-path"),
        pytest.param(OPTIONAL, "/x", "/z", id="regex-unmatched-group-empty"),
        pytest.param(OPTIONAL, "/x/y", "/z/y", id="regex-optional-group-matched"),
        pytest.param(RELATIVE, "/p/q", "/q", id="regex-result-gets-leading-slash"),
    ],
)
def test_path_rewrite(config: dict[str, Any], target: str, expected: str) -> None:
    result = run_filter(Rewrite, make_request("GET", target), config=config)
    assert result.reply is None
    assert result.request.wire_target() == expected.encode()


def test_untouched_path_keeps_original_target_bytes() -> None:
    result = run_filter(Rewrite, make_request("GET", "/other?x=%20"), config=STRIP)
    assert result.request.wire_target() == b"/other?x=%20"


def test_host_rewrite_in_process() -> None:
    config = {"host": "internal.svc:8080", **STRIP}
    result = run_filter(Rewrite, make_request("GET", "/user/a", host="shop.test"), config=config)
    assert (result.request.host, result.request.path) == ("internal.svc:8080", "/a")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"strip_prefix": "user"}, "must start with '/'", id="strip-relative"),
        pytest.param({"strip_prefix": "/"}, "changes nothing", id="strip-root"),
        pytest.param({"strip_prefix": "/a?b"}, "plain path", id="strip-query"),
        pytest.param(
            {"replace_prefix": {"from": "/a", "to": "/a/"}}, "same prefix", id="replace-same"
        ),
        pytest.param(
            {"replace_prefix": {"from": "/a", "to": "b"}}, "must start with", id="replace-relative"
        ),
        pytest.param({"replace_prefix": {"from": "/a", "too": "/b"}}, "Extra", id="replace-typo"),
        pytest.param({"regex": "/(a", "replacement": "/"}, "invalid regular", id="bad-regex"),
        pytest.param({"regex": "/a"}, "go together", id="regex-without-replacement"),
        pytest.param({"replacement": "/a"}, "go together", id="replacement-without-regex"),
        pytest.param({"regex": "/(a)", "replacement": "/$2"}, "has 1 group", id="group-too-high"),
        pytest.param({"regex": "/(a)", "replacement": "/$x"}, "only \\$1", id="dollar-not-group"),
        pytest.param({"regex": "/(a)", "replacement": "/$0"}, "only \\$1", id="dollar-zero"),
        pytest.param({"regex": "/a", "replacement": "/b?c=1"}, "plain path", id="replacement-qs"),
        pytest.param(
            {"strip_prefix": "/a", "regex": "/b", "replacement": "/"}, "choose one", id="two-modes"
        ),
        pytest.param({"host": "bad host"}, "invalid host", id="host-space"),
        pytest.param({"host": "a/b"}, "invalid host", id="host-slash"),
    ],
)
def test_bad_config_is_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rewrite.Config.model_validate(config)


def test_empty_config_skips_the_request_phase() -> None:
    assert Rewrite(Rewrite.Config()).skip_phases == {"on_request"}
    assert Rewrite(Rewrite.Config.model_validate(STRIP)).skip_phases == set()


# --------------------------------------------------------------------- through the gateway


def toml(v1: RecordingUpstream, config: str, *, upstream_extra: str = "") -> str:
    return gateway_toml(
        {"v1": [v1.address]},
        f"""
[filters.rw]
plugin = "rewrite"
{config}

[[routes]]
name = "app"
paths = ["/"]
upstream = "v1"
filters = ["rw"]
""",
        upstream_extra=upstream_extra,
    )


@pytest.mark.parametrize(
    ("config", "target", "expected"),
    [
        pytest.param('config.strip_prefix = "/user"', "/user/api/x", "/api/x", id="strip"),
        pytest.param('config.strip_prefix = "/user"', "/user", "/", id="strip-exact"),
        pytest.param('config.strip_prefix = "/user"', "/username", "/username", id="strip-no"),
        pytest.param(
            'config.replace_prefix = { from = "/old", to = "/new" }', "/old/a?b=1", "/new/a?b=1",
            id="replace-keeps-query",
        ),
        pytest.param(
            'config = { regex = "/something(/|$)(.*)", replacement = "/$2" }', "/something", "/",
            id="regex-bare",
        ),
        pytest.param(
            'config = { regex = "/something(/|$)(.*)", replacement = "/$2" }',
            "/something/new?q=%20x", "/new?q=%20x", id="regex-capture-keeps-query",
        ),
    ],
)  # fmt: skip
async def test_gateway_upstream_sees_rewritten_target(
    config: str,
    target: str,
    expected: str,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(toml(upstream, config))
    async with http.get(gw.url + target) as resp:
        assert resp.status == 200
        assert (await resp.json())["path"] == expected
    assert [s.raw_path for s in upstream.requests] == [expected]


async def test_gateway_host_rewrite_is_the_upstream_host(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        toml(upstream, 'config = { host = "internal.svc", strip_prefix = "/user" }')
    )
    async with http.get(gw.url + "/user/me?x=1", headers={"Host": "shop.test"}) as resp:
        assert resp.status == 200
    (seen,) = upstream.requests
    assert seen.headers["host"] == "internal.svc"
    assert seen.raw_path == "/me?x=1"
    # X-Forwarded-Host still tells the upstream what the client asked for.
    assert seen.headers["x-forwarded-host"] == "shop.test"


async def test_gateway_host_rewrite_needs_preserve_host(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    config = 'config.host = "internal.svc"'
    extra = 'preserve_host = false\nhost_header = "fixed.svc"'
    gw = await start_gateway(toml(upstream, config, upstream_extra=extra))
    async with http.get(gw.url + "/", headers={"Host": "shop.test"}) as resp:
        assert resp.status == 200
    assert upstream.requests[0].headers["host"] == "fixed.svc"


async def test_gateway_refuses_bad_regex_at_load(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    with pytest.raises(ConfigError) as info:
        await start_gateway(toml(upstream, 'config = { regex = "/(x", replacement = "/" }'))
    assert "filters.rw" in str(info.value)
    assert "config.regex" in str(info.value)
