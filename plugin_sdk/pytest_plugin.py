"""pytest fixtures for plugin authors (loaded automatically: the ``pytest11`` entry point).

``recording_upstream``
    A started :class:`~plugin_sdk.testing.RecordingUpstream` (async fixture).

``wasmgate_gateway``
    A function: give it a gateway.toml string (``{port}`` becomes a free port,
    ``{upstream}`` the recording upstream's address) and get a running
    :class:`~plugin_sdk.testing.GatewayProcess`; it is stopped after the test::

        async def test_my_plugin(wasmgate_gateway, recording_upstream):
            gw = wasmgate_gateway(CONFIG)
            async with aiohttp.ClientSession() as s, s.get(gw.url + "/x") as r:
                assert r.status == 200
            assert recording_upstream.requests[-1].headers["x-added"] == "1"
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from plugin_sdk.testing import GatewayProcess, RecordingUpstream, start_gateway


@pytest.fixture
async def recording_upstream() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream("upstream").start()
    yield up
    await up.stop()


@pytest.fixture
def wasmgate_gateway(request: pytest.FixtureRequest) -> Iterator[Callable[[str], GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(toml: str) -> GatewayProcess:
        if "{upstream}" in toml:
            up: RecordingUpstream = request.getfixturevalue("recording_upstream")
            toml = toml.replace("{upstream}", up.address)
        gw = start_gateway(toml)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.terminate()
