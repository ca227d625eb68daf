"""The admin API (core/admin.py) of a real ``wasmgate run``: health, the redacted
configuration, routes with their chains, plugins, reload through the API (token
required), a failed reload visible there; and the SIGTERM drain of a slow request."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from core.config_redact import redact
from core.dashboard.api import quantile
from plugin_sdk.testing import GatewayProcess, free_port

TOKEN = "0123456789abcdef-admin"


async def slow_app() -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/slow":
            await asyncio.sleep(1.0)
        return web.Response(text=f"up {request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@pytest.fixture
async def up() -> AsyncIterator[int]:
    runner, port = await slow_app()
    yield port
    await runner.cleanup()


def config(port: int, admin: int, up: int, route: str = "main", token: str = TOKEN) -> str:
    token_line = f'token = "{token}"' if token else ""
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[admin]
listen = "127.0.0.1:{admin}"
{token_line}

[[upstreams]]
name = "app"
endpoints = ["127.0.0.1:{up}"]

[filters.keys]
plugin = "key-auth"
config.consumers = [{{ name = "alice", key = "secret-key-of-alice-0123" }}]
fail = "open"

[[routes]]
name = "{route}"
paths = ["/"]
upstream = "app"
filters = ["keys", {{ plugin = "headers", config = {{ response = {{ set = {{ x-v = "1" }} }} }} }}]
"""


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


async def test_health_config_routes_and_plugins(
    tmp_path: Path, up: int, ports: tuple[int, int]
) -> None:
    port, admin = ports
    gw = GatewayProcess(config(port, admin, up), workdir=str(tmp_path)).start(port)
    base = f"http://127.0.0.1:{admin}"
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_up(http, f"{base}/live")
            async with http.get(f"{base}/ready") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/config") as resp:
                body = await resp.json()
            assert body["version"] == 1 and len(body["hash"]) == 16
            assert body["listeners"] == [f"http://127.0.0.1:{port}"]
            # What a reload follows (docs/admin.md#which-files-are-followed).
            assert body["watching"] == {
                "mode": "auto",
                "files": [str(tmp_path / "gateway.lock"), str(tmp_path / "gateway.toml")],
            }
            keys = body["config"]["filters"]["keys"]["config"]["consumers"][0]
            assert keys == {"name": "alice", "key": "<redacted>"}
            assert TOKEN not in str(body) and "secret-key-of-alice" not in str(body)
            async with http.get(f"{base}/routes") as resp:
                (route,) = (await resp.json())["routes"]
            assert route["name"] == "main" and route["upstream"] == "app"
            assert [(f["name"], f["plugin"], f["kind"]) for f in route["chain"]] == [
                ("keys", "key-auth", "python"),
                ("main.headers", "headers", "python"),
            ]
            async with http.get(f"{base}/plugins") as resp:
                filters = (await resp.json())["filters"]
            assert {f["name"]: f["fail"] for f in filters} == {
                "keys": "open",
                "main.headers": "closed",
            }
            assert all(f["version"] for f in filters)  # the wasmgate distribution's
            async with http.get(f"{base}/") as resp:
                assert resp.status == 200 and "/dashboard/app.js" in await resp.text()
            async with http.get(f"{base}/api/upstreams") as resp:
                (pool,) = (await resp.json())["upstreams"]
            assert pool["name"] == "app"
            assert [(e["address"], e["health"]) for e in pool["endpoints"]] == [
                (f"127.0.0.1:{up}", "healthy")
            ]
            key = {"X-Api-Key": "secret-key-of-alice-0123"}
            for _ in range(5):
                async with http.get(f"http://127.0.0.1:{port}/x", headers=key) as resp:
                    assert resp.status == 200
            deadline = time.monotonic() + 10
            while True:  # a sample every 2 s
                async with http.get(f"{base}/api/traffic") as resp:
                    points = (await resp.json())["points"]
                if sum(p["requests"] for p in points) >= 5 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert sum(p["codes"].get("2xx", 0) for p in points) == 5
            assert any(p["routes"].get("main", {}).get("p99") for p in points)
    finally:
        assert gw.terminate() == 0


async def _wait_up(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never answered")
        await asyncio.sleep(0.05)


async def test_reload_through_the_api_needs_the_token_and_reports_failures(
    tmp_path: Path, up: int, ports: tuple[int, int]
) -> None:
    port, admin = ports
    gw = GatewayProcess(config(port, admin, up), workdir=str(tmp_path)).start(port)
    base = f"http://127.0.0.1:{admin}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_up(http, f"{base}/live")
            async with http.post(f"{base}/reload") as resp:
                assert resp.status == 401
            async with http.post(f"{base}/reload", headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401
            install = {"name": "tagger", "constraint": ""}
            async with http.post(f"{base}/api/market/install", json=install) as resp:
                assert resp.status == 401
            # A new route name, written without waiting for the file watcher.
            gw.config_path.write_text(config(port, admin, up, route="renamed"))
            async with http.post(f"{base}/reload", headers=auth) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            assert body["result"]["ok"] is True and body["version"] >= 2
            async with http.get(f"{base}/routes") as resp:
                assert [r["name"] for r in (await resp.json())["routes"]] == ["renamed"]
            # A broken file: refused, the old configuration serves, the error is shown.
            gw.config_path.write_text(
                config(port, admin, up).replace('"app"\nfilters', '"nope"\nfilters')
            )
            async with http.post(f"{base}/reload", headers=auth) as resp:
                assert resp.status == 500
                failed = await resp.json()
            assert failed["result"]["ok"] is False
            assert "routes[0].upstream" in failed["result"]["error"]
            async with http.get(f"{base}/config") as resp:
                shown = await resp.json()
            assert shown["last_reload"]["ok"] is False
            assert [r["name"] for r in shown["config"]["routes"]] == ["renamed"]
            key = {"X-Api-Key": "secret-key-of-alice-0123"}
            async with http.get(f"http://127.0.0.1:{port}/x", headers=key) as resp:
                assert resp.status == 200
    finally:
        assert gw.terminate() == 0


async def test_without_a_token_state_changing_calls_are_refused(
    tmp_path: Path, up: int, ports: tuple[int, int]
) -> None:
    port, admin = ports
    gw = GatewayProcess(config(port, admin, up, token=""), workdir=str(tmp_path)).start(port)
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_up(http, f"http://127.0.0.1:{admin}/live")
            async with http.post(f"http://127.0.0.1:{admin}/reload") as resp:
                assert resp.status == 403
                assert "set [admin] token" in (await resp.json())["error"]
            install = {"name": "tagger", "constraint": ""}
            async with http.post(f"http://127.0.0.1:{admin}/api/market/install", json=install) as r:
                assert r.status == 403
    finally:
        assert gw.terminate() == 0


async def test_sigterm_lets_a_slow_request_finish_and_exits_0(
    tmp_path: Path, up: int, ports: tuple[int, int]
) -> None:
    port, admin = ports
    gw = GatewayProcess(config(port, admin, up), workdir=str(tmp_path)).start(port)
    async with aiohttp.ClientSession() as http:
        key = {"X-Api-Key": "secret-key-of-alice-0123"}
        slow = asyncio.ensure_future(http.get(f"http://127.0.0.1:{port}/slow", headers=key))
        await asyncio.sleep(0.3)  # in flight at the upstream
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        resp = await slow
        assert resp.status == 200 and await resp.text() == "up /slow"
        resp.release()
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, gw.proc.wait, 10) == 0


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ({"password": "x", "user": "u"}, {"password": "<redacted>", "user": "u"}),
        ({"token": "t", "token_file": "f"}, {"token": "<redacted>", "token_file": "<redacted>"}),
        (
            {"cert": "a.crt", "key": "a.key", "key_pem": "PEM"},
            {"cert": "a.crt", "key": "<redacted>", "key_pem": "<redacted>"},
        ),
        (
            {"consumers": [{"name": "a", "key": "k", "hash": "h"}]},
            {"consumers": [{"name": "a", "key": "<redacted>", "hash": "<redacted>"}]},
        ),
        ({"secret": None}, {"secret": None}),
    ],
    ids=["password", "token", "tls-key", "consumers", "unset"],
)
def test_secrets_are_redacted(value: dict, shown: dict) -> None:
    assert redact(value) == shown


@pytest.mark.parametrize(
    ("counts", "q", "seconds"),
    [
        ([0] * 16, 0.5, None),
        ([0, 10] + [0] * 14, 0.5, 0.00075),  # halfway through (0.0005, 0.001]
        ([10] + [0] * 15, 0.99, 0.000495),
        ([0] * 15 + [4], 0.5, 30.0),  # +Inf: the last bound
        ([90, 0, 0, 0, 0, 0, 0, 10] + [0] * 8, 0.95, 0.075),
    ],
    ids=["empty", "interpolated", "first-bucket", "overflow", "tail"],
)
def test_dashboard_quantiles_from_bucket_counts(
    counts: list[int], q: float, seconds: float | None
) -> None:
    assert quantile(counts, q) == (None if seconds is None else pytest.approx(seconds))


async def test_the_market_without_a_registry_says_how_to_set_one(
    tmp_path: Path, up: int, ports: tuple[int, int]
) -> None:
    port, admin = ports
    gw = GatewayProcess(config(port, admin, up), workdir=str(tmp_path)).start(port)
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_up(http, f"http://127.0.0.1:{admin}/live")
            async with http.get(f"http://127.0.0.1:{admin}/api/market?q=") as resp:
                assert resp.status == 200
                body = await resp.json()
        assert body["registry"] is None and body["plugins"] == []
        assert f"set [market] registry in {gw.config_path}" in body["note"]
        assert "pass [market]" not in body["note"]
    finally:
        assert gw.terminate() == 0
