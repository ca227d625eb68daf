"""Who may talk to the admin listener (core/admin_guard.py), against a real ``wasmgate
run``: a foreign ``Host`` (DNS rebinding) gets 421 on every admin call; the listener's
own names, IP literals and ``[admin] allowed_hosts`` pass; off loopback, reads need the
token while ``/live`` and ``/ready`` stay open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from plugin_sdk.testing import GatewayProcess, free_port
from tests.test_admin import _wait_up

TOKEN = "0123456789abcdef-admin"
CALLS = [
    ("GET", "/live"),
    ("GET", "/ready"),
    ("GET", "/config"),
    ("GET", "/routes"),
    ("GET", "/plugins"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/dashboard/app.js"),
    ("GET", "/api/upstreams"),
    ("GET", "/api/traffic"),
    ("GET", "/api/installed"),
    ("POST", "/reload"),
]


def config(port: int, admin_listen: str, extra: str = "") -> str:
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[admin]
listen = "{admin_listen}"
token = "{TOKEN}"
{extra}

[[upstreams]]
name = "app"
endpoints = ["127.0.0.1:9"]

[[routes]]
name = "main"
paths = ["/"]
upstream = "app"
"""


@pytest.fixture(scope="module")
def loopback_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port, admin = free_port(), free_port()
    extra = 'allowed_hosts = ["admin.internal", "*.ops.example"]'
    workdir = str(tmp_path_factory.mktemp("guard"))
    gw = GatewayProcess(config(port, f"127.0.0.1:{admin}", extra), workdir=workdir)
    gw.start(port)
    yield admin
    assert gw.terminate() == 0, gw.log()


@pytest.mark.parametrize(("method", "path"), CALLS, ids=[f"{m} {p}" for m, p in CALLS])
@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:{admin}", "localhost.evil"])
async def test_a_foreign_host_is_refused_on_every_call(
    loopback_admin: int, host: str, method: str, path: str
) -> None:
    admin = loopback_admin
    async with aiohttp.ClientSession() as http:
        await _wait_up(http, f"http://127.0.0.1:{admin}/live")
        headers = {"Host": host.format(admin=admin), "Authorization": f"Bearer {TOKEN}"}
        async with http.request(method, f"http://127.0.0.1:{admin}{path}", headers=headers) as r:
            assert r.status == 421
            assert "allowed_hosts" in (await r.json())["error"]


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{admin}",
        "localhost:{admin}",
        "LOCALHOST",
        "[::1]:{admin}",
        "10.1.2.3",  # an IP literal cannot be rebound
        "admin.internal:{admin}",
        "a.ops.example",
        "b.c.ops.example.",
    ],
)
async def test_own_names_and_allowed_hosts_pass(loopback_admin: int, host: str) -> None:
    admin = loopback_admin
    async with aiohttp.ClientSession() as http:
        await _wait_up(http, f"http://127.0.0.1:{admin}/live")
        headers = {"Host": host.format(admin=admin)}
        async with http.get(f"http://127.0.0.1:{admin}/routes", headers=headers) as resp:
            assert resp.status == 200  # on loopback, reads need no token
            assert (await resp.json())["routes"][0]["name"] == "main"


async def test_off_loopback_reads_need_the_token(tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    gw = GatewayProcess(config(port, f"0.0.0.0:{admin}"), workdir=str(tmp_path)).start(port)
    base = f"http://127.0.0.1:{admin}"
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_up(http, f"{base}/live")
            for path in ("/live", "/ready", "/", "/dashboard/app.js"):
                async with http.get(base + path) as resp:
                    assert resp.status == 200, path
            for path in ("/config", "/routes", "/plugins", "/metrics", "/api/traffic"):
                async with http.get(base + path) as resp:
                    assert resp.status == 401, path
                wrong = {"Authorization": "Bearer wrong-token-wrong-token"}
                async with http.get(base + path, headers=wrong) as resp:
                    assert resp.status == 401, path
                right = {"Authorization": f"Bearer {TOKEN}"}
                async with http.get(base + path, headers=right) as resp:
                    assert resp.status == 200, path
            async with http.get(base + "/routes", headers={"Host": "evil.example"}) as resp:
                assert resp.status == 421
    finally:
        assert gw.terminate() == 0, gw.log()
