"""The cors plugin: config checks, origin matching, preflights, decoration of responses
(local replies from later filters included), in-process and through the real gateway."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from plugin_sdk import Headers, Response
from plugin_sdk.testing import Result, make_filter, make_request, run_chain, run_filter
from plugins.cors import Cors, CorsConfig
from plugins.ip_restriction import IpRestriction
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml

APP = "https://app.example.com"


def actual(
    config: dict[str, Any],
    origin: str | None,
    *,
    method: str = "GET",
    upstream_headers: dict[str, str] | None = None,
) -> Headers:
    """Response headers after cors decorated an upstream 200 to a non-preflight request."""
    headers = {"Origin": origin} if origin is not None else {}
    result = run_filter(
        Cors,
        make_request(method, "/api", headers=headers),
        config=config,
        response=Response(200, Headers.of(upstream_headers or {})),
    )
    assert result.reply is None, "a non-preflight request must go on to the upstream"
    return result.headers


def preflight(
    config: dict[str, Any], origin: str, method: str, req_headers: str | None = None
) -> Result:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if req_headers is not None:
        headers["Access-Control-Request-Headers"] = req_headers
    return run_filter(Cors, make_request("OPTIONS", "/api", headers=headers), config=config)


# ---------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param(
            {"allow_origins": ["*"], "allow_credentials": True},
            "allow_credentials",
            id="credentials-with-star-origin",
        ),
        pytest.param(
            {"allow_origins": [APP], "allow_credentials": True, "expose_headers": ["*"]},
            "expose_headers",
            id="credentials-with-star-expose",
        ),
        pytest.param({"allow_origins": ["null"]}, "null", id="null-origin"),
        pytest.param({"allow_origins": ["https://app.example.com/"]}, "invalid origin", id="slash"),
        pytest.param({"allow_origins": ["https://a.example.com/x"]}, "invalid origin", id="path"),
        pytest.param({"allow_origins": ["app.example.com"]}, "invalid origin", id="no-scheme"),
        pytest.param({"allow_origins": ["https://a.*.example.com"]}, "invalid", id="mid-wildcard"),
        pytest.param({"allow_origins": ["https://*.[::1]"]}, "IP literal", id="wildcard-ip"),
        pytest.param({"allow_origins": ["*", APP]}, "only origin", id="star-mixed"),
        pytest.param({"allow_methods": ["GET", "BAD METHOD"]}, "invalid method", id="bad-method"),
        pytest.param({"allow_headers": ["X-Ok", "Bad:Name"]}, "invalid header", id="bad-header"),
        pytest.param({"max_age": -1}, "greater than or equal", id="negative-max-age"),
        pytest.param({"allow_origin": [APP]}, "Extra inputs", id="unknown-field"),
    ],
)
def test_bad_config_is_refused_at_load_time(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        CorsConfig.model_validate(config)


def test_config_is_normalised() -> None:
    cfg = CorsConfig.model_validate(
        {"allow_origins": ["HTTPS://App.Example.com", APP], "allow_methods": ["get", "Post"]}
    )
    assert cfg.allow_origins == [APP]
    assert cfg.allow_methods == ["GET", "POST"]


def test_defaults_allow_any_origin_without_credentials() -> None:
    cfg = CorsConfig()
    assert cfg.allow_origins == ["*"]
    assert cfg.allow_credentials is False
    assert "DELETE" in cfg.allow_methods
    assert actual({}, APP).get("access-control-allow-origin") == "*"


# ---------------------------------------------------------------------- actual requests

LISTED = {"allow_origins": [APP, "https://*.example.org", "http://localhost:3000"]}


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        pytest.param(APP, APP, id="exact"),
        pytest.param("HTTPS://APP.EXAMPLE.COM", "HTTPS://APP.EXAMPLE.COM", id="exact-any-case"),
        pytest.param("http://app.example.com", None, id="other-scheme"),
        pytest.param("https://app.example.com:8443", None, id="other-port"),
        pytest.param("https://evil.example.com", None, id="not-listed"),
        pytest.param("https://a.example.org", "https://a.example.org", id="wildcard-one-label"),
        pytest.param("https://a.b.example.org", None, id="wildcard-two-labels"),
        pytest.param("https://example.org", None, id="wildcard-not-apex"),
        pytest.param("https://evilexample.org", None, id="wildcard-suffix-trick"),
        pytest.param("https://a.example.org.evil.com", None, id="wildcard-as-prefix"),
        pytest.param("https://a.example.org:444", None, id="wildcard-other-port"),
        pytest.param("http://localhost:3000", "http://localhost:3000", id="exact-with-port"),
        pytest.param("null", None, id="null"),
    ],
)
def test_origin_matching(origin: str, expected: str | None) -> None:
    headers = actual(LISTED, origin)
    assert headers.get("access-control-allow-origin") == expected
    # The answer depends on the origin, so caches must key on it, allowed or not.
    assert headers.get_all("vary") == ["Origin"]


def test_request_without_origin_is_left_alone() -> None:
    headers = actual(LISTED | {"allow_credentials": True, "expose_headers": ["X-Id"]}, None)
    assert list(headers.items()) == []


def test_refused_origin_gets_no_cors_headers() -> None:
    headers = actual(
        LISTED | {"allow_credentials": True, "expose_headers": ["X-Id"]}, "https://evil.com"
    )
    assert [n for n in headers if n.lower().startswith("access-control-")] == []


def test_star_policy_sends_star_and_no_vary() -> None:
    headers = actual({"allow_origins": ["*"], "expose_headers": ["X-Id", "X-Trace"]}, APP)
    assert headers.get("access-control-allow-origin") == "*"
    assert headers.get("access-control-expose-headers") == "X-Id, X-Trace"
    assert "vary" not in headers
    assert "access-control-allow-credentials" not in headers


def test_credentials_echo_the_origin_and_expose_headers() -> None:
    headers = actual(
        {"allow_origins": [APP], "allow_credentials": True, "expose_headers": ["X-Id"]}, APP
    )
    assert headers.get("access-control-allow-origin") == APP
    assert headers.get("access-control-allow-credentials") == "true"
    assert headers.get("access-control-expose-headers") == "X-Id"
    assert "access-control-max-age" not in headers, "max-age belongs to preflights"


@pytest.mark.parametrize(
    ("upstream_vary", "expected"),
    [
        pytest.param(None, ["Origin"], id="none"),
        pytest.param("Accept-Encoding", ["Accept-Encoding", "Origin"], id="appended"),
        pytest.param("accept-encoding, origin", ["accept-encoding, origin"], id="already-there"),
        pytest.param("*", ["*"], id="star"),
    ],
)
def test_vary_origin_is_merged(upstream_vary: str | None, expected: list[str]) -> None:
    up = {"Vary": upstream_vary} if upstream_vary else {}
    assert actual(LISTED, APP, upstream_headers=up).get_all("vary") == expected


def test_upstream_cors_headers_are_replaced_not_duplicated() -> None:
    up = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": "false"}
    headers = actual({"allow_origins": [APP], "allow_credentials": True}, APP, upstream_headers=up)
    assert headers.get_all("access-control-allow-origin") == [APP]
    assert headers.get_all("access-control-allow-credentials") == ["true"]


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        pytest.param("OPTIONS", {}, id="options-without-request-method"),
        pytest.param("GET", {"Access-Control-Request-Method": "PUT"}, id="get-with-request-method"),
    ],
)
def test_not_a_preflight_goes_on_to_the_upstream(method: str, extra: dict[str, str]) -> None:
    request = make_request(method, "/api", headers={"Origin": APP, **extra})
    result = run_filter(Cors, request, config=LISTED, response=Response(200))
    assert result.reply is None
    assert result.headers.get("access-control-allow-origin") == APP
    assert "access-control-allow-methods" not in result.headers


# ---------------------------------------------------------------------- preflight


@pytest.mark.parametrize(
    ("config", "origin", "method", "req_headers", "status", "allow_headers"),
    [
        pytest.param(LISTED, APP, "PUT", None, 204, None, id="allowed"),
        pytest.param(LISTED, "https://evil.com", "PUT", None, 403, None, id="origin-refused"),
        pytest.param(
            {"allow_origins": [APP], "allow_methods": ["GET", "POST"]},
            APP,
            "DELETE",
            None,
            403,
            None,
            id="method-refused",
        ),
        pytest.param(LISTED, APP, "PUT", "x-secret", 403, None, id="header-refused"),
        pytest.param(
            LISTED, APP, "POST", "content-type", 204, "content-type", id="safelisted-header"
        ),
        pytest.param(
            LISTED | {"allow_headers": ["Authorization", "X-Request-Id"]},
            APP,
            "GET",
            "authorization,x-request-id",
            204,
            "authorization, x-request-id",
            id="configured-headers-any-case",
        ),
        pytest.param(
            LISTED | {"allow_headers": ["Authorization"]},
            APP,
            "GET",
            "authorization,x-other",
            403,
            None,
            id="one-header-refused-refuses-all",
        ),
        pytest.param(
            LISTED | {"allow_headers": ["*"]},
            APP,
            "GET",
            "x-anything, x-else",
            204,
            "x-anything, x-else",
            id="any-header-reflected",
        ),
    ],
)
def test_preflight(
    config: dict[str, Any],
    origin: str,
    method: str,
    req_headers: str | None,
    status: int,
    allow_headers: str | None,
) -> None:
    result = preflight(config, origin, method, req_headers)
    assert result.reply is not None, "a preflight is answered by the gateway"
    assert result.status == status
    headers = result.headers
    if status == 204:
        assert headers.get("access-control-allow-origin") == origin
        assert headers.get("access-control-allow-headers") == allow_headers
        assert method in (headers.get("access-control-allow-methods") or "").split(", ")
        assert headers.get("access-control-max-age") == "600"
        assert headers.get_all("vary") == ["Origin"]
    else:
        assert [n for n in headers if n.lower().startswith("access-control-")] == []
        assert result.response is not None and result.response.body
        assert result.response.body.startswith(b"CORS preflight refused")


NGINX_STYLE = {
    "allow_origins": [APP],
    "allow_headers": ["DNT", "Authorization"],
    "preflight_headers": "list",
    "refused_preflight_status": 204,
}


@pytest.mark.parametrize(
    ("origin", "req_headers", "allow_headers"),
    [
        pytest.param(APP, "authorization", "DNT, Authorization", id="listed-not-reflected"),
        pytest.param(APP, None, "DNT, Authorization", id="listed-without-request"),
        pytest.param("https://evil.com", None, None, id="refused-origin-empty-204"),
        pytest.param(APP, "x-secret", None, id="refused-header-empty-204"),
    ],
)
def test_preflight_as_nginx_ingress_answers(
    origin: str, req_headers: str | None, allow_headers: str | None
) -> None:
    result = preflight(NGINX_STYLE, origin, "PUT", req_headers)
    assert result.status == 204
    assert result.headers.get("access-control-allow-headers") == allow_headers
    if allow_headers is None:  # refused: nothing for the browser to go on
        assert [n for n in result.headers if n.lower().startswith("access-control-")] == []
        assert result.response is not None and not result.response.body
    else:
        assert result.headers.get("access-control-allow-origin") == APP


def test_preflight_with_credentials_and_max_age() -> None:
    result = preflight(
        {"allow_origins": [APP], "allow_credentials": True, "max_age": 86400}, APP, "PATCH"
    )
    assert result.status == 204
    assert result.headers.get("access-control-allow-origin") == APP
    assert result.headers.get("access-control-allow-credentials") == "true"
    assert result.headers.get("access-control-max-age") == "86400"
    assert result.headers.get("access-control-allow-methods") == (
        "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    )


def test_any_method_reflects_the_requested_one() -> None:
    result = preflight({"allow_methods": ["*"]}, APP, "PROPFIND")
    assert result.status == 204
    assert result.headers.get("access-control-allow-methods") == "PROPFIND"
    assert result.headers.get("access-control-allow-origin") == "*"


def test_preflight_headers_are_not_added_twice_by_the_response_phase() -> None:
    result = preflight({"allow_origins": [APP], "expose_headers": ["X-Id"]}, APP, "PUT")
    assert result.headers.get_all("access-control-allow-origin") == [APP]
    assert result.headers.get_all("vary") == ["Origin"]
    assert "access-control-expose-headers" not in result.headers


def test_local_reply_of_a_later_filter_is_decorated() -> None:
    chain = [
        make_filter(Cors, {"allow_origins": [APP]}),
        make_filter(IpRestriction, {"deny": ["127.0.0.0/8"]}),
    ]
    result = run_chain(chain, make_request("GET", "/", headers={"Origin": APP}))
    assert result.status == 403
    assert result.headers.get("access-control-allow-origin") == APP
    assert result.headers.get_all("vary") == ["Origin"]


# ---------------------------------------------------------------------- real gateway


def routes(cors_config: str, *, second: str = "") -> str:
    chain = '["cors"' + (f', "{second}"' if second else "") + "]"
    return f"""
[filters.cors]
plugin = "cors"
config = {cors_config}

[filters.deny-local]
plugin = "ip-restriction"
config.deny = ["127.0.0.0/8"]

[[routes]]
name = "api"
paths = ["/"]
upstream = "v1"
filters = {chain}
"""


CONFIG = (
    '{ allow_origins = ["https://app.example.com", "https://*.example.org"], '
    'allow_credentials = true, expose_headers = ["X-Request-Id"], '
    'allow_headers = ["Authorization"], max_age = 120 }'
)


async def test_gateway_answers_preflight_without_upstream(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes(CONFIG)))
    headers = {
        "Origin": "https://a.example.org",
        "Access-Control-Request-Method": "DELETE",
        "Access-Control-Request-Headers": "authorization",
    }
    async with http.options(f"{gw.url}/items/1", headers=headers) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://a.example.org"
        assert r.headers["Access-Control-Allow-Credentials"] == "true"
        assert r.headers["Access-Control-Allow-Headers"] == "authorization"
        assert r.headers["Access-Control-Max-Age"] == "120"
        assert "DELETE" in r.headers["Access-Control-Allow-Methods"]
    headers["Origin"] = "https://evil.example.com"
    async with http.options(f"{gw.url}/items/1", headers=headers) as r:
        assert r.status == 403
        assert "Access-Control-Allow-Origin" not in r.headers
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("method", "origin", "expected"),
    [
        pytest.param("GET", APP, APP, id="get-allowed"),
        pytest.param("POST", APP, APP, id="post-allowed"),
        pytest.param("OPTIONS", APP, APP, id="options-not-preflight"),
        pytest.param("GET", "https://evil.example.com", None, id="get-refused"),
    ],
)
async def test_gateway_decorates_upstream_responses(
    method: str,
    origin: str,
    expected: str | None,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes(CONFIG)))
    async with http.request(method, f"{gw.url}/echo", headers={"Origin": origin}) as r:
        assert r.status == 200
        assert r.headers.get("Access-Control-Allow-Origin") == expected
        assert r.headers.getall("Vary") == ["Origin"]
        if expected:
            assert r.headers["Access-Control-Expose-Headers"] == "X-Request-Id"
            assert r.headers["Access-Control-Allow-Credentials"] == "true"
        else:
            assert "Access-Control-Allow-Credentials" not in r.headers
    assert [s.method for s in upstream.requests] == [method]
    assert upstream.requests[0].headers["origin"] == origin


async def test_gateway_without_origin_adds_nothing(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes(CONFIG)))
    async with http.get(f"{gw.url}/echo") as r:
        assert r.status == 200
        names = {n.lower() for n in r.headers}
    assert not {n for n in names if n.startswith("access-control-")}
    assert "vary" not in names


async def test_gateway_cors_decorates_a_later_filters_local_reply(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        gateway_toml({"v1": [upstream.address]}, routes(CONFIG, second="deny-local"))
    )
    async with http.get(f"{gw.url}/echo", headers={"Origin": APP}) as r:
        assert r.status == 403
        assert r.headers["Access-Control-Allow-Origin"] == APP
        assert r.headers["Access-Control-Allow-Credentials"] == "true"
        assert r.headers.getall("Vary") == ["Origin"]
    assert upstream.requests == []


async def test_gateway_refuses_credentials_with_star(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    toml = gateway_toml(
        {"v1": [upstream.address]},
        routes('{ allow_origins = ["*"], allow_credentials = true }'),
    )
    with pytest.raises(ConfigError, match=r"filters\.cors.*allow_credentials"):
        await start_gateway(toml)
