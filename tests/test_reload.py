"""Reloading a running ``wasmgate run`` (core/reload.py): when gateway.toml or a
Kubernetes manifest it reads changes, or on SIGHUP, a new snapshot serves new requests
while a request in flight finishes on the old one; a configuration that fails to load
is refused and the old one keeps serving."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from plugin_sdk.testing import GatewayProcess, free_port

TOML = """
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[[upstreams]]
name = "a"
endpoints = ["127.0.0.1:{a}"]

[[upstreams]]
name = "b"
endpoints = ["127.0.0.1:{b}"]

[[routes]]
name = "main"
paths = ["/"]
upstream = "{target}"
"""


async def named_server(name: str) -> tuple[web.AppRunner, int]:
    async def hello(request: web.Request) -> web.StreamResponse:
        if request.path == "/slow":
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(10):
                await resp.write(f"{name}\n".encode())
                await asyncio.sleep(0.15)
            await resp.write_eof()
            return resp
        return web.Response(text=name)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, int]]:
    runners = {}
    ports = {}
    for name in ("a", "b"):
        runners[name], ports[name] = await named_server(name)
    yield ports
    for runner in runners.values():
        await runner.cleanup()


async def eventually(check: Callable[[], object], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():  # type: ignore[misc]
                return
        except (aiohttp.ClientError, AssertionError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def body(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as resp:
        return await resp.text()


async def test_an_edited_config_is_served_and_a_request_in_flight_finishes_on_the_old_one(
    tmp_path: Path, servers: dict[str, int]
) -> None:
    port = free_port()
    gw = GatewayProcess(TOML.format(port=port, target="a", **servers), workdir=str(tmp_path)).start(
        port
    )
    try:
        async with aiohttp.ClientSession() as http:
            assert await body(http, f"{gw.url}/") == "a"
            async with http.get(f"{gw.url}/slow") as slow:
                first = await slow.content.readline()
                gw.config_path.write_text(TOML.format(port=port, target="b", **servers))

                async def switched() -> bool:
                    return await body(http, f"{gw.url}/") == "b"

                await eventually(switched)
                rest = await slow.read()
            assert first == b"a\n"
            assert rest == b"a\n" * 9  # the old snapshot's upstream, to the end
        assert "reloaded (files changed)" in gw.log()
    finally:
        assert gw.terminate() == 0


async def test_a_broken_config_is_refused_and_the_old_one_keeps_serving(
    tmp_path: Path, servers: dict[str, int]
) -> None:
    port = free_port()
    gw = GatewayProcess(TOML.format(port=port, target="a", **servers), workdir=str(tmp_path)).start(
        port
    )
    try:
        gw.config_path.write_text(TOML.format(port=port, target="nowhere", **servers))
        await eventually(lambda: _logged(gw, "reload (files changed) failed"))
        assert "routes[0].upstream" in gw.log()
        async with aiohttp.ClientSession() as http:
            assert await body(http, f"{gw.url}/") == "a"
            gw.config_path.write_text("this is = not [valid toml")
            await eventually(lambda: _logged(gw, "TOML syntax error"))
            assert await body(http, f"{gw.url}/") == "a"
            gw.config_path.write_text(TOML.format(port=port, target="b", **servers))

            async def fixed() -> bool:
                return await body(http, f"{gw.url}/") == "b"

            await eventually(fixed)
    finally:
        assert gw.terminate() == 0


async def _logged(gw: GatewayProcess, text: str) -> bool:
    return text in gw.log()


async def test_sighup_reloads(tmp_path: Path, servers: dict[str, int]) -> None:
    port = free_port()
    gw = GatewayProcess(TOML.format(port=port, target="a", **servers), workdir=str(tmp_path)).start(
        port
    )
    try:
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        await eventually(lambda: _logged(gw, "reloaded (SIGHUP): configuration 2"))
    finally:
        assert gw.terminate() == 0


INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: default}}
spec:
  ingressClassName: nginx
  rules:
    - http:
        paths:
          - path: {path}
            pathType: Prefix
            backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}
"""


async def test_changed_and_added_manifests_are_read_again(
    tmp_path: Path, servers: dict[str, int]
) -> None:
    k8s = tmp_path / "k8s"
    k8s.mkdir()
    (k8s / "one.yaml").write_text(INGRESS.format(name="one", path="/one", svc="svc-a"))
    port = free_port()
    toml = (
        f'[server]\nlisten = ["127.0.0.1:{port}"]\naccess_log = "off"\n'
        f'[kubernetes]\nmanifests = ["k8s"]\ningress_class = "nginx"\n'
        f'services = {{ "default/svc-a" = ["127.0.0.1:{servers["a"]}"], '
        f'"default/svc-b" = ["127.0.0.1:{servers["b"]}"] }}\n'
    )
    gw = GatewayProcess(toml, workdir=str(tmp_path)).start(port)
    try:
        async with aiohttp.ClientSession() as http:
            assert await body(http, f"{gw.url}/one") == "a"
            (k8s / "one.yaml").write_text(INGRESS.format(name="one", path="/one", svc="svc-b"))

            async def moved() -> bool:
                return await body(http, f"{gw.url}/one") == "b"

            await eventually(moved)
            (k8s / "two.yaml").write_text(INGRESS.format(name="two", path="/two", svc="svc-a"))

            async def added() -> bool:
                return await body(http, f"{gw.url}/two") == "a"

            await eventually(added)
    finally:
        assert gw.terminate() == 0


SLOW = (
    TOML
    + """
[[routes]]
name = "slow"
paths = ["/slow-build"]
upstream = "b"
filters = [{{ plugin = "slow-build", config = {{ seconds = {seconds} }} }}]
"""
)


async def test_a_slow_reload_build_does_not_hold_up_proxied_requests(
    tmp_path: Path, servers: dict[str, int]
) -> None:
    """Building the new snapshot (here a filter whose construction blocks for 2 s, as
    compiling a large Wasm module does) runs off the event loop: requests keep being
    answered at their usual pace while it runs, and the swap follows."""
    from tests.conftest import THIRD_PARTY_SITE

    port = free_port()
    config = tmp_path / "gateway.toml"
    gw = GatewayProcess(
        SLOW.format(port=port, target="a", seconds=0, **servers), workdir=str(tmp_path)
    ).start(port, env={"PYTHONPATH": str(THIRD_PARTY_SITE)})
    try:
        assert gw.proc is not None
        config.write_text(SLOW.format(port=port, target="a", seconds=2, **servers))
        gw.proc.send_signal(signal.SIGHUP)
        worst = 0.0
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            deadline = time.monotonic() + 12
            while not await _logged(gw, "reloaded (SIGHUP)"):
                assert time.monotonic() < deadline, "the reload never finished"
                started = time.monotonic()
                assert await body(http, f"{gw.url}/") == "a"
                worst = max(worst, time.monotonic() - started)
                await asyncio.sleep(0.02)
        # Blocking the loop for the build would hold a request for about 2 s.
        assert worst < 1.0, f"a proxied request took {worst:.2f}s during the reload"
    finally:
        assert gw.terminate() == 0
