"""The respond plugin: a fixed answer, through a real gateway, with the chain before it."""

from __future__ import annotations

import aiohttp
import pytest

from plugin_sdk.testing import make_request, run_filter
from plugins.respond import Respond
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml


def test_it_answers_with_the_configured_response() -> None:
    result = run_filter(
        Respond,
        make_request("GET", "/old-api"),
        config={"status": 410, "body": "gone\n", "headers": {"X-Why": "retired"}},
    )
    assert result.reply is not None
    assert (result.reply.status, result.reply.body_bytes()) == (410, b"gone\n")
    assert dict(result.reply.header_pairs())["X-Why"] == "retired"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"status": 99}, "status"),
        ({"headers": {"Content-Length": "3"}}, "the gateway sets it"),
        ({"headers": {"X-A": "a\r\nb"}}, "invalid name or value"),
    ],
)
def test_bad_config_is_refused(config: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Respond.Config.model_validate(config)


async def test_through_the_gateway_after_the_filters_before_it(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(
        gateway_toml(
            {"v1": [upstream.address]},
            """
[filters.key]
plugin = "key-auth"
config.consumers = [{ name = "ops", key = "k-0123456789abcdef" }]

[filters.maintenance]
plugin = "respond"
config = { status = 503, body = "down for maintenance\\n", headers = { "Retry-After" = "60" } }

[[routes]]
name = "m"
upstream = "v1"
filters = ["key", "maintenance"]
""",
        )
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url + "/x") as resp:  # no key: the filter before answers
            assert resp.status == 401
        headers = {"X-Api-Key": "k-0123456789abcdef"}
        async with http.get(gw.url + "/x", headers=headers) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "60"
            assert await resp.read() == b"down for maintenance\n"
    assert upstream.requests == []
