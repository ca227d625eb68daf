"""The pytest fixtures plugin authors get (plugin_sdk.pytest_plugin, via pytest11)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from plugin_sdk.testing import GatewayProcess, RecordingUpstream

CONFIG = """
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"
[[upstreams]]
name = "app"
endpoints = ["{upstream}"]
[[routes]]
name = "app"
upstream = "app"
filters = [{ plugin = "headers", config = { request = { set = { "X-Stamp" = "1" } } } }]
"""


async def test_documented_fixture_example(
    wasmgate_gateway: Callable[[str], GatewayProcess], recording_upstream: RecordingUpstream
) -> None:
    gw = wasmgate_gateway(CONFIG)
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/x") as r:
        assert r.status == 200
    assert recording_upstream.requests[-1].headers["x-stamp"] == "1"
    assert recording_upstream.requests[-1].path_qs == "/x"
