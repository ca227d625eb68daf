"""The simplest proof that the whole path works: client → gateway → upstream → client."""

from __future__ import annotations

import aiohttp

from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml


async def test_get_is_proxied_with_path_query_and_host(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1"))
    async with http.get(f"{gw.url}/some/path?a=1&b=%20x", headers={"Host": "shop.test"}) as r:
        assert r.status == 200
        body = await r.json()
    assert body["upstream"] == "v1"
    seen = upstream.requests[-1]
    assert seen.path_qs == "/some/path?a=1&b=%20x"
    assert seen.headers["host"] == "shop.test"
