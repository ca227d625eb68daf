"""Routing through the real gateway: which of two real upstreams a request reaches.

The rules themselves are covered in ``test_router.py``; here a handful of them are
checked end to end, from the client's request line and headers to the upstream
that records the request (or the gateway's own 404).
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml

ROUTES = """
[[routes]]
name = "api-host"
hosts = ["api.shop.test"]
paths = ["/api"]
upstream = "v2"

[[routes]]
name = "shop-wildcard"
hosts = ["*.shop.test"]
upstream = "v1"

[[routes]]
name = "health"
paths = [{ path = "/healthz", match = "exact" }]
upstream = "v2"

[[routes]]
name = "app"
paths = ["/app"]
upstream = "v1"

[[routes]]
name = "app-canary"
paths = ["/app"]
headers = [{ name = "X-Canary", value = "1" }]
upstream = "v2"

[[routes]]
name = "versioned"
paths = [{ path = "/v[0-9]+/", match = "regex" }]
upstream = "v2"
"""

# (Host header or None for the client's default, path, extra headers, upstream or None = 404)
CASES = [
    pytest.param(None, "/app", {}, "v1", id="prefix-matches-itself"),
    pytest.param(None, "/app/cart?x=1", {}, "v1", id="prefix-matches-subpath-with-query"),
    pytest.param(None, "/appx", {}, None, id="prefix-not-string-prefix-404"),
    pytest.param(None, "/healthz", {}, "v2", id="exact-matches"),
    pytest.param(None, "/healthz/", {}, None, id="exact-not-with-slash-404"),
    pytest.param(None, "/v3/items", {}, "v2", id="regex-matches"),
    pytest.param(None, "/x/v3/", {}, None, id="regex-anchored-404"),
    pytest.param(None, "/APP", {}, None, id="path-case-sensitive-404"),
    pytest.param(None, "/app/x", {"X-Canary": "1"}, "v2", id="header-matcher-route"),
    pytest.param(None, "/app/x", {"x-canary": "1"}, "v2", id="header-name-case-ignored"),
    pytest.param(None, "/app/x", {"X-Canary": "0"}, "v1", id="header-mismatch-falls-back"),
    pytest.param("api.shop.test", "/api/items", {}, "v2", id="exact-host"),
    pytest.param("API.Shop.TEST:8443", "/api/items", {}, "v2", id="host-port-and-case-ignored"),
    pytest.param("www.shop.test", "/api/items", {}, "v1", id="wildcard-host"),
    pytest.param("WWW.shop.test:80", "/x", {}, "v1", id="wildcard-host-port-and-case"),
    pytest.param("api.shop.test", "/app", {}, None, id="host-group-no-fall-through-404"),
    pytest.param("a.b.shop.test", "/healthz", {}, "v2", id="wildcard-one-label-only"),
]


@pytest.mark.parametrize(("host", "path", "headers", "expected"), CASES)
async def test_request_reaches_the_routed_upstream(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    host: str | None,
    path: str,
    headers: dict[str, str],
    expected: str | None,
) -> None:
    gw = await start_gateway(
        gateway_toml({"v1": [upstream.address], "v2": [upstream2.address]}, ROUTES)
    )
    sent = dict(headers)
    if host is not None:
        sent["Host"] = host
    async with http.get(f"{gw.url}{path}", headers=sent) as r:
        status, body = r.status, await r.text()

    reached = {up.name: len(up.requests) for up in (upstream, upstream2)}
    if expected is None:
        assert status == 404
        assert "no route" in body
        assert reached == {"v1": 0, "v2": 0}
    else:
        assert status == 200, body
        assert reached == {"v1": int(expected == "v1"), "v2": int(expected == "v2")}
        seen = (upstream if expected == "v1" else upstream2).requests[0]
        assert seen.path_qs == path
        if host is not None:
            assert seen.headers["host"] == host


async def test_unmatched_request_goes_to_default_route(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        gateway_toml({"v1": [upstream.address], "v2": [upstream2.address]}, ROUTES, default="v2")
    )
    async with http.get(f"{gw.url}/nowhere") as r:
        assert r.status == 200
        assert (await r.json())["upstream"] == "v2"
    # The host group matched but its paths did not: default, not the host-less /app.
    async with http.get(f"{gw.url}/app", headers={"Host": "api.shop.test"}) as r:
        assert r.status == 200
        assert (await r.json())["upstream"] == "v2"
    async with http.get(f"{gw.url}/app") as r:
        assert (await r.json())["upstream"] == "v1"
    assert [s.path_qs for s in upstream2.requests] == ["/nowhere", "/app"]
    assert [s.path_qs for s in upstream.requests] == ["/app"]


async def test_no_route_and_no_default_is_404_for_every_method(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    routes = '[[routes]]\nname = "get-only"\npaths = ["/x"]\nmethods = ["GET"]\nupstream = "v1"\n'
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes))
    async with http.get(f"{gw.url}/x") as r:
        assert r.status == 200
    async with http.post(f"{gw.url}/x", data=b"payload") as r:
        assert r.status == 404
        assert "no route" in await r.text()
    async with http.delete(f"{gw.url}/y") as r:
        assert r.status == 404
        assert "no route" in await r.text()
    assert [(s.method, s.path_qs) for s in upstream.requests] == [("GET", "/x")]
