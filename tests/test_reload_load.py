"""Reloading under load (the short form of the `make bench` reload run): while clients
keep requests going over keep-alive connections, the configuration changes eight times
(the route's upstream, a route added and removed, a filter's config, the Proxy-Wasm
module swapped), then a broken configuration is pushed. No request may fail, every
response must come from one consistent snapshot, and a WebSocket and a slow download
opened before the first reload must finish intact."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from wasmtime import wat2wasm

from plugin_sdk.testing import GatewayProcess, free_port

MODULES = Path(__file__).parent / "wasm_modules"
VERSIONS = 8


async def named(name: str) -> tuple[web.AppRunner, int]:
    async def hello(request: web.Request) -> web.StreamResponse:
        return web.Response(text=f"{name} abi={request.headers.get('x-abi', '-')}")

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(25):
            await resp.write(f"{name}-{i:02d}\n".encode())
            await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp

    async def ws(request: web.Request) -> web.StreamResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_str(f"{name}:{msg.data}")
        return sock

    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@pytest.fixture
async def upstreams() -> AsyncIterator[dict[str, int]]:
    runners = {}
    ports = {}
    for name in ("a", "b"):
        runners[name], ports[name] = await named(name)
    yield ports
    for runner in runners.values():
        await runner.cleanup()


def config(version: int, port: int, ups: dict[str, int], modules: dict[str, Path]) -> str:
    """Version k: route "/" to a (k even) or b (odd), module abi 0.2.0 (even) or 0.2.1,
    header x-config = k, and an extra route on every third version."""
    target = "a" if version % 2 == 0 else "b"
    module = modules["0.2.0" if version % 2 == 0 else "0.2.1"]
    extra = (
        f'[[routes]]\nname = "extra{version}"\npaths = ["/extra"]\nupstream = "a"\n'
        if version % 3 == 0
        else ""
    )
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[[upstreams]]
name = "a"
endpoints = ["127.0.0.1:{ups["a"]}"]

[[upstreams]]
name = "b"
endpoints = ["127.0.0.1:{ups["b"]}"]

[filters.stamp]
plugin = "headers"
config = {{ response = {{ set = {{ x-config = "{version}" }} }} }}

[filters.abi]
wasm = "{module}"

[[routes]]
name = "main"
paths = ["/"]
upstream = "{target}"
filters = ["stamp", "abi"]

[[routes]]
name = "pinned"
paths = ["/stream", "/ws"]
upstream = "a"

{extra}
"""


def expected(version: int) -> str:
    return ("a abi=0.2.0") if version % 2 == 0 else ("b abi=0.2.1")


async def test_reloads_under_load_lose_nothing(tmp_path: Path, upstreams: dict[str, int]) -> None:
    modules = {}
    for abi in ("0.2.0", "0.2.1"):
        path = tmp_path / f"abi_{abi}.wasm"
        path.write_bytes(wat2wasm((MODULES / f"abi_{abi.replace('.', '_')}.wat").read_text()))
        modules[abi] = path
    port = free_port()
    gw = GatewayProcess(config(0, port, upstreams, modules), workdir=str(tmp_path)).start(port)
    base = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    seen: list[tuple[int, str]] = []
    failures: list[str] = []

    async def client(http: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                async with http.get(f"{base}/hello") as resp:
                    body = await resp.text()
                    if resp.status != 200:
                        failures.append(f"{resp.status} {body}")
                        continue
                    seen.append((int(resp.headers["x-config"]), body))
            except (aiohttp.ClientError, KeyError, ValueError) as exc:
                failures.append(repr(exc))

    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{base}/ws")
            stream = await http.get(f"{base}/stream")
            clients = [asyncio.ensure_future(client(http)) for _ in range(6)]
            ws_replies = []
            assert gw.proc is not None
            for version in range(1, VERSIONS + 1):
                await asyncio.sleep(0.25)
                gw.config_path.write_text(config(version, port, upstreams, modules))
                gw.proc.send_signal(signal.SIGHUP)
                # One reload at a time: signals sent while a reload runs would merge.
                deadline = asyncio.get_running_loop().time() + 15
                while not seen or seen[-1][0] != version:
                    assert asyncio.get_running_loop().time() < deadline, f"v{version} never served"
                    await asyncio.sleep(0.02)
                await ws.send_str(f"m{version}")
                ws_replies.append((await ws.receive(timeout=5)).data)
            # A broken configuration under load: refused, the last good one keeps serving.
            gw.config_path.write_text("[[routes]]\nname = 'x'\nupstream = 'nowhere'\n")
            gw.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*clients)
            body = await stream.text()
            await ws.close()
    finally:
        assert gw.terminate() == 0
    log = gw.log()
    assert failures == []
    assert len(seen) > 200, len(seen)
    for version, text in seen:
        assert text == expected(version), (version, text)  # one snapshot per response
    versions = {v for v, _ in seen}
    assert {0, VERSIONS} <= versions and len(versions) >= VERSIONS // 2
    assert [v for v, _ in seen[-20:]] == [VERSIONS] * 20  # the broken one never served
    assert ws_replies == [f"a:m{v}" for v in range(1, VERSIONS + 1)]
    assert body == "".join(f"a-{i:02d}\n" for i in range(25))
    assert log.count("reloaded (SIGHUP)") >= VERSIONS
    assert "reload (SIGHUP) failed" in log
