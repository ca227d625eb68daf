"""The ``mirror`` plugin through the real gateway: copies reach the mirror in the
background, a share of 0 sends none, and a dead mirror never shows on real traffic."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from core.errors import ConfigError
from tests.conftest import StartGateway
from tests.harness import InProcessGateway, RecordingUpstream, free_port, gateway_toml


def config(main: RecordingUpstream, mirror: str, extra: str = "") -> str:
    routes = (
        '[[routes]]\nname = "r"\nupstream = "main"\nfilters = ["shadow"]\n\n'
        f'[filters.shadow]\nplugin = "mirror"\nconfig.endpoints = ["{mirror}"]\n{extra}'
    )
    return gateway_toml({"main": [main.address]}, routes)


async def test_copies_reach_the_mirror(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
) -> None:
    gw = await start_gateway(config(upstream, upstream2.address))
    async with http.post(gw.url + "/a?b=1", data=b"body", headers={"X-Id": "7"}) as r:
        assert r.status == 200
    for _ in range(100):
        if upstream2.requests:
            break
        await asyncio.sleep(0.02)
    [copy] = upstream2.requests
    assert (copy.method, copy.path_qs, copy.headers["x-id"], copy.body_len) == (
        "POST",
        "/a?b=1",
        "7",
        0,
    )
    assert upstream.requests[0].body_len == 4  # the real request kept its body


async def test_zero_percent_sends_nothing(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
) -> None:
    gw = await start_gateway(config(upstream, upstream2.address, "config.percent = 0\n"))
    for _ in range(5):
        async with http.get(gw.url + "/") as r:
            assert r.status == 200
    await asyncio.sleep(0.2)
    assert len(upstream.requests) == 5
    assert upstream2.requests == []


async def test_dead_mirror_does_not_affect_the_request(
    start_gateway: StartGateway, http: aiohttp.ClientSession, upstream: RecordingUpstream
) -> None:
    gw = await start_gateway(config(upstream, f"127.0.0.1:{free_port()}"))
    async with http.get(gw.url + "/x") as r:
        assert r.status == 200


@pytest.mark.parametrize(
    ("extra", "message"),
    [("config.percent = 101\n", "percent"), ("", "expected host:port")],
)
async def test_bad_config_is_refused(upstream: RecordingUpstream, extra: str, message: str) -> None:
    endpoint = upstream.address if extra else "nope"
    with pytest.raises(ConfigError) as err:
        await InProcessGateway(config(upstream, endpoint, extra)).start()
    assert message in str(err.value)
