"""The key-auth plugin: valid, invalid, missing and hidden keys from a header or the
query, consumer forwarding that clients cannot spoof, key files, load-time refusals,
in-process and through the real gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.errors import ConfigError
from plugin_sdk.testing import Result, arun_filter, make_request
from plugins.key_auth import KeyAuth, KeyAuthConfig
from tests.conftest import StartGateway
from tests.harness import InProcessGateway, RecordingUpstream, gateway_toml

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-fedcba9876543210"
BOB_OLD = "bob-old-key-000000000000"
CONSUMERS = [
    {"name": "alice", "key": ALICE},
    {"name": "bob", "key": BOB},
    {"name": "bob", "key": BOB_OLD},
]


async def run(
    config: dict[str, Any], headers: dict[str, str] | None = None, target: str = "/api"
) -> Result:
    config = {"consumers": CONSUMERS, **config}
    return await arun_filter(KeyAuth, make_request("GET", target, headers=headers), config=config)


@pytest.mark.parametrize(
    ("config", "headers", "target", "consumer"),
    [
        pytest.param({}, {"X-Api-Key": ALICE}, "/api", "alice", id="header-alice"),
        pytest.param({}, {"x-api-key": BOB}, "/api", "bob", id="header-any-case"),
        pytest.param({}, {"X-Api-Key": BOB_OLD}, "/api", "bob", id="second-key-of-a-consumer"),
        pytest.param({"header": "apikey"}, {"apikey": ALICE}, "/api", "alice", id="custom-header"),
        pytest.param(
            {"query_param": "apikey"}, {}, f"/api?apikey={ALICE}", "alice", id="query-param"
        ),
        pytest.param(
            {"header": "", "query_param": "k"}, {}, f"/api?x=1&k={BOB}", "bob", id="query-only"
        ),
        pytest.param(
            {"query_param": "apikey"},
            {"X-Api-Key": ""},
            f"/api?apikey={ALICE}",
            "alice",
            id="empty-header-falls-back-to-query",
        ),
    ],
)
async def test_valid_key(
    config: dict[str, Any], headers: dict[str, str], target: str, consumer: str
) -> None:
    result = await run(config, {**headers, "X-Consumer": "root"}, target)
    assert result.reply is None
    assert result.ctx.state["consumer"] == consumer
    assert result.request.headers.get_all("X-Consumer") == [consumer]


@pytest.mark.parametrize(
    ("config", "headers", "target", "message"),
    [
        pytest.param({}, {}, "/api", "required", id="missing"),
        pytest.param({}, {"X-Api-Key": ""}, "/api", "required", id="empty"),
        pytest.param({}, {"X-Api-Key": "wrong-key-0123456789"}, "/api", "invalid", id="wrong"),
        pytest.param({}, {"X-Api-Key": ALICE[:-1]}, "/api", "invalid", id="prefix-of-a-key"),
        pytest.param({}, {"X-Api-Key": ALICE + "x"}, "/api", "invalid", id="key-plus-one"),
        pytest.param({}, {"X-Api-Key": ALICE.upper()}, "/api", "invalid", id="case-matters"),
        pytest.param({}, {}, f"/api?apikey={ALICE}", "required", id="query-not-configured"),
        pytest.param(
            {"header": "apikey"}, {"X-Api-Key": ALICE}, "/api", "required", id="other-header"
        ),
    ],
)
async def test_rejected(
    config: dict[str, Any], headers: dict[str, str], target: str, message: str
) -> None:
    result = await run({"realm": "shop", **config}, {**headers, "X-Consumer": "alice"}, target)
    assert result.status == 401
    assert result.headers.get("www-authenticate") == 'Key realm="shop"'
    assert result.reply is not None
    assert message in result.reply.body_bytes().decode()
    assert "consumer" not in result.ctx.state
    assert "X-Consumer" not in result.request.headers


@pytest.mark.parametrize(
    ("hide", "headers", "target", "forwarded_header", "forwarded_target"),
    [
        pytest.param(True, {"X-Api-Key": ALICE}, "/api", None, b"/api", id="header-hidden"),
        pytest.param(False, {"X-Api-Key": ALICE}, "/api", ALICE, b"/api", id="header-kept"),
        pytest.param(
            True, {}, f"/api?a=1&apikey={ALICE}&b=2", None, b"/api?a=1&b=2", id="query-hidden"
        ),
        pytest.param(
            False,
            {},
            f"/api?a=1&apikey={ALICE}",
            None,
            f"/api?a=1&apikey={ALICE}".encode(),
            id="query-kept",
        ),
    ],
)
async def test_hide_credentials(
    hide: bool,
    headers: dict[str, str],
    target: str,
    forwarded_header: str | None,
    forwarded_target: bytes,
) -> None:
    result = await run({"hide_credentials": hide, "query_param": "apikey"}, headers, target)
    assert result.reply is None
    assert result.request.headers.get("X-Api-Key") == forwarded_header
    assert result.request.wire_target() == forwarded_target


async def test_query_untouched_when_key_came_in_header() -> None:
    result = await run({"query_param": "apikey"}, {"X-Api-Key": ALICE}, "/api?b=2&&a=%2F")
    assert result.reply is None
    assert result.request.wire_target() == b"/api?b=2&&a=%2F"


async def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# team keys\n\ncarol:{'c' * 20}\n dave : {'d' * 20} \n")
    for key, name in [("c" * 20, "carol"), ("d" * 20, "dave"), (ALICE, "alice")]:
        result = await run({"key_file": str(path)}, {"X-Api-Key": key})
        assert result.ctx.state.get("consumer") == name


@pytest.mark.parametrize(
    ("config", "file_text", "error"),
    [
        pytest.param({"consumers": []}, None, "no keys", id="no-consumers"),
        pytest.param(
            {"consumers": [{"name": "a", "key": "short"}]}, None, "at least 16", id="short-key"
        ),
        pytest.param(
            {"consumers": [{"name": "", "key": ALICE}]}, None, "at least 1", id="empty-name"
        ),
        pytest.param(
            {"consumers": [{"name": "a", "key": ALICE}, {"name": "b", "key": ALICE}]},
            None,
            "'a' and 'b' have the same key",
            id="shared-key",
        ),
        pytest.param({"header": ""}, None, "no key source", id="no-source"),
        pytest.param({"consumer_header": "X Consumer"}, None, "invalid header", id="bad-header"),
        pytest.param({"header": "Content-Length"}, None, "managed", id="managed-header"),
        pytest.param({"realm": "a\nb"}, None, "realm", id="bad-realm"),
        pytest.param(
            {"consumers": [{"name": "a\r\nX-Evil: 1", "key": ALICE}]},
            None,
            "header value",
            id="crlf-name",
        ),
        pytest.param(
            {"key_file": "{path}"}, "carol\n", "line 1: expected 'name:key'", id="file-no-colon"
        ),
        pytest.param(
            {"key_file": "{path}"}, "carol:short\n", "line 1: key of 'carol'", id="file-short-key"
        ),
        pytest.param(
            {"key_file": "/nonexistent/keys"}, None, "/nonexistent/keys", id="file-missing"
        ),
    ],
)
def test_bad_config_refused_at_load(
    config: dict[str, Any], file_text: str | None, error: str, tmp_path: Path
) -> None:
    path = tmp_path / "keys"
    if file_text is not None:
        path.write_text(file_text)
    config = {"consumers": CONSUMERS, **config}
    if config.get("key_file") == "{path}":
        config["key_file"] = str(path)
    with pytest.raises(ValueError) as info:
        KeyAuth(KeyAuthConfig.model_validate(config))
    assert error in str(info.value)


# ---------------------------------------------------------------------- real gateway


GATEWAY_CONSUMERS = f'[{{ name = "alice", key = "{ALICE}" }}, {{ name = "bob", key = "{BOB}" }}]'


def gateway_config(
    upstream: RecordingUpstream, extra: str = "", consumers: str = GATEWAY_CONSUMERS
) -> str:
    routes = f"""
[filters.keys]
plugin = "key-auth"
config.consumers = {consumers}
config.query_param = "apikey"
{extra}

[[routes]]
name = "api"
paths = ["/api"]
upstream = "v1"
filters = ["keys"]
"""
    return gateway_toml({"v1": [upstream.address]}, routes, default="v1")


@pytest.mark.parametrize(
    ("headers", "query", "consumer"),
    [
        pytest.param({"X-Api-Key": BOB}, "", "bob", id="header"),
        pytest.param({}, f"?apikey={ALICE}", "alice", id="query"),
    ],
)
async def test_gateway_valid_key_hidden_and_consumer_forwarded(
    headers: dict[str, str],
    query: str,
    consumer: str,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(gateway_config(upstream))
    async with http.get(
        f"{gw.url}/api/x{query}", headers={**headers, "X-Consumer": "root"}
    ) as resp:
        assert resp.status == 200
    seen = upstream.requests[-1]
    assert seen.headers["x-consumer"] == consumer
    assert [v for n, v in seen.raw_headers if n.lower() == "x-consumer"] == [consumer]
    assert "x-api-key" not in seen.headers
    assert seen.path_qs == "/api/x"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"X-Api-Key": "not-a-key-0000000000"}, id="invalid"),
    ],
)
async def test_gateway_rejects_without_calling_upstream(
    headers: dict[str, str],
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(gateway_config(upstream, 'config.realm = "shop"'))
    async with http.get(f"{gw.url}/api/x", headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Key realm="shop"'
    assert upstream.requests == []


async def test_gateway_reports_bad_config_with_filter_name() -> None:
    toml = gateway_config(RecordingUpstream(port=1), consumers="[]")
    with pytest.raises(ConfigError) as info:
        await InProcessGateway(toml).start()
    assert "filters.keys" in str(info.value)
    assert "no keys" in str(info.value)
