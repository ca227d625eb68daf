"""``examples/gateway-api/``: its manifests, unchanged, serve what the demo promises.

The services are mapped to free ports here (``[kubernetes.services]`` overrides the
manifests' Endpoints, which name the demo's fixed ports).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import aiohttp

from tests.conftest import StartGateway
from tests.harness import RecordingUpstream

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "gateway-api"


async def test_canary_by_header_and_weight(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
) -> None:
    toml = (
        '[server]\nlisten = ["127.0.0.1:0"]\naccess_log = "off"\n\n'
        f'[kubernetes]\nmanifests = ["{EXAMPLE / "manifests"}"]\n\n'
        f'[kubernetes.services]\n"default/app-v1" = ["{upstream.address}"]\n'
        f'"default/app-v2" = ["{upstream2.address}"]\n'
    )
    gw = await start_gateway(toml)
    assert gw.config.warnings == []

    async def ask(headers: dict[str, str]) -> str:
        async with http.get(gw.url + "/", headers=headers) as r:
            if r.status != 200:
                return str(r.status)
            return str((await r.json())["upstream"])

    assert await ask({"Host": "app.example.com", "x-canary": "always"}) == "v2"
    assert await ask({"Host": "other.example.com"}) == "404"
    counts = Counter([await ask({"Host": "app.example.com"}) for _ in range(200)])
    # 90/10: about 20 of 200 to v2; bounds a wrong split (or none) clearly violates.
    assert set(counts) == {"v1", "v2"}
    assert 4 <= counts["v2"] <= 50
