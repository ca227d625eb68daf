"""The ``redirect`` plugin: plain redirects, HTTP to HTTPS, app root.

In-process through :mod:`plugin_sdk.testing` for the Location table; through the real
gateway to check the status and Location a client gets, and that the upstream is
not called for a redirected request (and is for the others).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from core.errors import ConfigError
from plugin_sdk.testing import make_request, run_filter
from plugins.redirect import Redirect
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml


def redirect(
    config: dict[str, Any], target: str, *, host: str = "shop.test", scheme: str = "http"
) -> tuple[int, str | None]:
    """(status, Location) of the reply; (0, None) when the request passes."""
    request = make_request("GET", target, host=host, scheme=scheme)
    result = run_filter(Redirect, request, config=config)
    if result.reply is None:
        return 0, None
    assert result.headers.get("content-type") == "text/plain; charset=utf-8"
    location = result.headers.get("location")
    assert result.reply.body_bytes() == f"redirecting to {location}\n".encode()
    return result.reply.status, location


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_each_code(code: int) -> None:
    assert redirect({"to": "/new", "code": code}, "/old") == (code, "/new")


HTTPS = {"https": True}
APP = {"app_root": "/app"}
NGINX_APP = {"app_root": "/app", "app_root_absolute": True, "app_root_keep_query": False}
TO_SITE = {"to": "https://new.example.com", "keep_path": True, "keep_query": True}


@pytest.mark.parametrize(
    ("config", "target", "kwargs", "expected"),
    [
        pytest.param({"to": "/new"}, "/old?a=1", {}, (302, "/new"), id="to-default-302"),
        pytest.param(
            {"to": "https://x.test/landing"}, "/a", {}, (302, "https://x.test/landing"),
            id="to-absolute-url",
        ),
        pytest.param(TO_SITE, "/a/b?x=1", {}, (302, "https://new.example.com/a/b?x=1"),
                     id="to-keep-path-and-query"),
        pytest.param(TO_SITE, "/", {}, (302, "https://new.example.com/"), id="to-keep-root"),
        pytest.param(
            {"to": "https://n.test/", "keep_path": True}, "/a?x=1", {}, (302, "https://n.test/a"),
            id="to-keep-path-drops-query-and-double-slash",
        ),
        pytest.param(
            {"to": "/search?src=old", "keep_query": True}, "/s?q=cats", {},
            (302, "/search?src=old&q=cats"), id="to-keep-query-appends-with-amp",
        ),
        pytest.param(
            {"to": "/", "keep_path": True}, "//evil.test/x", {}, (302, "/evil.test/x"),
            id="to-keep-path-never-protocol-relative",
        ),
        pytest.param(HTTPS, "/a/b?x=1&y=2", {}, (308, "https://shop.test/a/b?x=1&y=2"),
                     id="https-keeps-path-and-query"),
        pytest.param(
            HTTPS, "/a", {"host": "shop.test:8080"}, (308, "https://shop.test/a"),
            id="https-drops-port",
        ),
        pytest.param(
            {**HTTPS, "https_port": 8443}, "/a", {"host": "shop.test:8080"},
            (308, "https://shop.test:8443/a"), id="https-port",
        ),
        pytest.param(
            {**HTTPS, "https_port": 443}, "/a", {}, (308, "https://shop.test/a"),
            id="https-port-443-omitted",
        ),
        pytest.param(
            HTTPS, "/a", {"host": "[::1]:8080"}, (308, "https://[::1]/a"), id="https-ipv6-host"
        ),
        pytest.param(HTTPS, "/a", {"scheme": "https"}, (0, None), id="https-request-passes"),
        pytest.param({**HTTPS, "code": 301}, "/a", {}, (301, "https://shop.test/a"),
                     id="https-code-override"),
        pytest.param(APP, "/", {}, (302, "/app"), id="app-root"),
        pytest.param(APP, "/?lang=fr", {}, (302, "/app?lang=fr"), id="app-root-keeps-query"),
        pytest.param(APP, "/other", {}, (0, None), id="app-root-other-path-passes"),
        pytest.param(APP, "/app", {}, (0, None), id="app-root-target-passes"),
        pytest.param({**APP, "code": 307}, "/", {}, (307, "/app"), id="app-root-code"),
        pytest.param({**APP, **HTTPS}, "/", {}, (308, "https://shop.test/"),
                     id="https-before-app-root"),
        pytest.param({**APP, **HTTPS}, "/", {"scheme": "https"}, (302, "/app"),
                     id="app-root-after-https"),
        pytest.param(NGINX_APP, "/?x=1", {"host": "shop.test:8080"},
                     (302, "http://shop.test:8080/app"), id="app-root-absolute-no-query"),
        pytest.param(NGINX_APP, "/", {"scheme": "https"}, (302, "https://shop.test/app"),
                     id="app-root-absolute-scheme"),
        pytest.param(NGINX_APP, "/", {"host": "[::1]:8080"}, (302, "http://[::1]:8080/app"),
                     id="app-root-absolute-ipv6"),
        pytest.param(NGINX_APP, "/", {"host": "a.test@evil.test"}, (302, "/app"),
                     id="app-root-absolute-odd-host-gets-the-path"),
        pytest.param({**APP, "app_root_absolute": True}, "/?x=1", {},
                     (302, "http://shop.test/app?x=1"), id="app-root-absolute-keeps-query"),
    ],
)  # fmt: skip
def test_location(
    config: dict[str, Any], target: str, kwargs: dict[str, str], expected: tuple[int, str | None]
) -> None:
    assert redirect(config, target, **kwargs) == expected


def test_https_without_host_is_refused() -> None:
    result = run_filter(Redirect, make_request("GET", "/", host=""), config=HTTPS)
    assert result.reply is not None
    assert result.reply.status == 400


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({}, "set one of", id="no-mode"),
        pytest.param({"to": "/x", "code": 200}, "not a redirect code", id="code-200"),
        pytest.param({"to": "/x", "code": 304}, "not a redirect code", id="code-304"),
        pytest.param({"to": "/x", "code": 300}, "not a redirect code", id="code-300"),
        pytest.param({"to": "x"}, "http\\(s\\)://", id="to-relative"),
        pytest.param({"to": "ftp://x.test/"}, "http\\(s\\)://", id="to-ftp"),
        pytest.param({"to": "/a b"}, "http\\(s\\)://", id="to-space"),
        pytest.param({"to": "/x", "https": True}, "cannot be combined", id="to-and-https"),
        pytest.param({"to": "/x", "app_root": "/a"}, "cannot be combined", id="to-and-app-root"),
        pytest.param({"https": True, "keep_path": True}, "apply to 'to'", id="keep-without-to"),
        pytest.param({"to": "/x?a=1", "keep_path": True}, "without a query", id="keep-path-qs"),
        pytest.param({"https_port": 8443, "app_root": "/a"}, "needs https", id="port-alone"),
        pytest.param({"https": True, "https_port": 0}, "greater than", id="port-zero"),
        pytest.param({"app_root": "/"}, "other than", id="app-root-slash"),
        pytest.param({"app_root": "app"}, "other than", id="app-root-relative"),
        pytest.param({"app_root": "//evil.test"}, "other than", id="app-root-protocol-relative"),
        pytest.param({"app_root": "/a?b"}, "plain path", id="app-root-query"),
        pytest.param({"to": "/x", "app_root_absolute": True}, "'app_root' only", id="abs-to"),
        pytest.param(
            {"https": True, "app_root_keep_query": False},
            "'app_root' only",
            id="keep-query-without-app-root",
        ),
    ],
)
def test_bad_config_is_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Redirect.Config.model_validate(config)


# --------------------------------------------------------------------- through the gateway


def toml(v1: RecordingUpstream, config: str) -> str:
    return gateway_toml(
        {"v1": [v1.address]},
        f"""
[filters.redir]
plugin = "redirect"
{config}

[[routes]]
name = "app"
paths = ["/"]
upstream = "v1"
filters = ["redir"]
""",
    )


@pytest.mark.parametrize(
    ("config", "target", "host", "status", "location"),
    [
        pytest.param('config = { to = "/new", code = 301 }', "/old", "shop.test", 301, "/new",
                     id="to-301"),
        pytest.param(
            'config = { to = "https://n.test", keep_path = true, keep_query = true, code = 307 }',
            "/a/b?x=1", "shop.test", 307, "https://n.test/a/b?x=1", id="to-site-307",
        ),
        pytest.param("config.https = true", "/a/b?x=1&y=%20", "shop.test:8080", 308,
                     "https://shop.test/a/b?x=1&y=%20", id="https-keeps-path-and-query"),
        pytest.param('config.app_root = "/app"', "/?q=1", "shop.test", 302, "/app?q=1",
                     id="app-root"),
        pytest.param('config = { to = "/x", code = 303 }', "/", "shop.test", 303, "/x",
                     id="to-303"),
        pytest.param('config = { to = "/x", code = 308 }', "/", "shop.test", 308, "/x",
                     id="to-308"),
        pytest.param('config = { to = "/x" }', "/", "shop.test", 302, "/x", id="to-302-default"),
    ],
)  # fmt: skip
async def test_gateway_redirects_without_calling_upstream(
    config: str,
    target: str,
    host: str,
    status: int,
    location: str,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(toml(upstream, config))
    async with http.get(gw.url + target, headers={"Host": host}, allow_redirects=False) as resp:
        assert resp.status == status
        assert resp.headers["Location"] == location
        assert await resp.text() == f"redirecting to {location}\n"
    assert upstream.requests == []


async def test_gateway_app_root_passes_other_paths(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(toml(upstream, 'config.app_root = "/app"'))
    async with http.get(gw.url + "/app/page?x=1", allow_redirects=False) as resp:
        assert resp.status == 200
        assert (await resp.json())["path"] == "/app/page?x=1"
    assert [s.path_qs for s in upstream.requests] == ["/app/page?x=1"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        pytest.param('config = { to = "/x", code = 200 }', "config.code", id="bad-code"),
        pytest.param('config.to = "nowhere"', "config.to", id="bad-to"),
        pytest.param("config = {}", "set one of", id="no-mode"),
    ],
)
async def test_gateway_refuses_bad_config_at_load(
    config: str, field: str, upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    with pytest.raises(ConfigError) as info:
        await start_gateway(toml(upstream, config))
    assert "filters.redir" in str(info.value)
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("trusted_hops", "forwarded_proto", "redirected"),
    [
        pytest.param(0, "https", True, id="untrusted-proto-header-is-ignored"),
        pytest.param(1, "https", False, id="trusted-balancer-terminated-tls"),
        pytest.param(1, "http", True, id="trusted-balancer-says-plain-http"),
    ],
)
async def test_https_redirect_honours_a_trusted_forwarded_proto(
    trusted_hops: int,
    forwarded_proto: str,
    redirected: bool,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    text = toml(upstream, "config.https = true").replace(
        'access_log = "off"', f'access_log = "off"\ntrusted_hops = {trusted_hops}'
    )
    gw = await start_gateway(text)
    headers = {"Host": "shop.test", "X-Forwarded-Proto": forwarded_proto}
    async with http.get(gw.url + "/a?b=1", headers=headers, allow_redirects=False) as resp:
        if redirected:
            assert (resp.status, resp.headers["Location"]) == (308, "https://shop.test/a?b=1")
        else:
            assert resp.status == 200
    assert len(upstream.requests) == (0 if redirected else 1)
