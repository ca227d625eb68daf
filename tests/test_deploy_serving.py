"""The ConfigMap's gateway.toml on a real gateway, as the Deployment runs it.

It passes `wasmgate check`; served on 127.0.0.1 (ports, token and upstream moved
there) it answers the Deployment's probe paths, proxies with its rate limit, reloads
when its ConfigMap volume is updated the way the kubelet does it, and drains on SIGTERM
while reporting not ready.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.deploy_kit import (
    CONTAINER,
    STORE_READY,
    gateway_toml,
    kubelet_write,
    loadable,
    local_copy,
    wait_for_port,
)
from tests.harness import GatewayProcess, RecordingUpstream, free_port


def _check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    wasmgate = Path(sys.executable).with_name("wasmgate")
    return subprocess.run(
        [str(wasmgate), "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_configmap_gateway_toml_passes_wasmgate_check(tmp_path: Path) -> None:
    text = gateway_toml()
    done = _check(loadable(text), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 route" in done.stdout
    if not STORE_READY:
        refused = _check(text, tmp_path)
        assert refused.returncode != 0
        problems = [line.strip() for line in refused.stderr.splitlines()[2:]]
        assert problems == ["store: unknown field 'store'"], refused.stderr


@pytest.fixture(scope="module")
def app() -> Iterator[RecordingUpstream]:
    """A recording upstream on a loop of its own thread (every test's loop reaches it)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    upstream = asyncio.run_coroutine_threadsafe(RecordingUpstream("app").start(), loop).result(10)
    try:
        yield upstream
    finally:
        asyncio.run_coroutine_threadsafe(upstream.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def store() -> Iterator[str | None]:
    """A real redis-server on 127.0.0.1 in place of deploy/redis.yaml's, where this
    checkout has the Redis store; None where it has not (see loadable())."""
    if not STORE_READY:
        yield None
        return
    program = shutil.which("redis-server")
    if program is None:
        pytest.skip("redis-server not installed (Debian package: redis-server)")
    port = free_port()
    args = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([program, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, lambda: f"redis-server exited with {proc.poll()}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, app: RecordingUpstream, store: str | None
) -> Iterator[tuple[GatewayProcess, int]]:
    """The ConfigMap's gateway.toml served on 127.0.0.1."""
    work = tmp_path_factory.mktemp("served")
    text, port, admin = local_copy(gateway_toml(), work, app.address, store)
    gw = GatewayProcess(text, workdir=str(work)).start(port)
    try:
        wait_for_port(admin, gw.log)  # the admin listener comes up just after the data port
        yield gw, admin
    finally:
        assert gw.terminate() == 0, gw.log()


PROBES = ["startupProbe", "livenessProbe", "readinessProbe"]


@pytest.mark.parametrize("probe", PROBES)
async def test_probe_paths_answer_on_the_admin_listener(
    served: tuple[GatewayProcess, int], probe: str
) -> None:
    _, admin = served
    path = CONTAINER[probe]["httpGet"]["path"]
    # The kubelet connects to the pod's address and sends it as Host.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{admin}{path}", headers={"Host": f"10.244.1.7:{admin}"}) as r,
    ):
        assert r.status == 200, await r.text()


async def test_the_configmap_config_proxies_and_limits(served: tuple[GatewayProcess, int]) -> None:
    gw, _ = served
    async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/hello") as r:
        assert r.status == 200, gw.log()
        assert (await r.json())["path"] == "/hello"
        assert r.headers["RateLimit-Limit"] == "600"


async def test_a_stopping_pod_reports_not_ready_while_it_drains(
    tmp_path: Path, app: RecordingUpstream, store: str | None
) -> None:
    # What a rollout sees: after SIGTERM the gateway finishes the requests in flight;
    # meanwhile /ready says 503 (so no load balancer sends more) and /live stays 200
    # (so the kubelet does not kill it mid-drain).
    text, port, admin = local_copy(gateway_toml(), tmp_path, app.address, store)
    gw = GatewayProcess(text, workdir=str(tmp_path)).start(port)
    base = f"http://127.0.0.1:{admin}"
    try:
        wait_for_port(admin, gw.log)
        async with aiohttp.ClientSession() as http:
            seen = len(app.requests)
            slow = asyncio.create_task(http.get(f"{gw.url}/delay/2"))
            deadline = time.monotonic() + 10
            while not any(r.path_qs == "/delay/2" for r in app.requests[seen:]):
                assert time.monotonic() < deadline, gw.log()
                await asyncio.sleep(0.02)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while True:
                try:
                    async with http.get(f"{base}/ready") as r:
                        if r.status == 503:
                            break
                except aiohttp.ClientError as exc:
                    raise AssertionError(f"the admin listener went away: {exc}") from None
                assert time.monotonic() < deadline, gw.log()
                await asyncio.sleep(0.02)
            async with http.get(f"{base}/live") as r:
                assert r.status == 200
            # Nothing new is built for a process on its way out.
            auth = {"Authorization": f"Bearer {(tmp_path / 'token').read_text()}"}
            async with http.post(f"{base}/reload", headers=auth) as r:
                assert r.status == 503, await r.text()
                assert "draining" in (await r.json())["error"]
            reply = await slow
            assert reply.status == 200 and "delayed" in await reply.text()
            reply.release()
        assert gw.proc.wait(30) == 0, gw.log()
    finally:
        gw.terminate()


async def test_a_configmap_update_reaches_the_running_gateway(
    tmp_path: Path, app: RecordingUpstream, store: str | None
) -> None:
    text, port, _ = local_copy(gateway_toml(), tmp_path, app.address, store)
    volume = tmp_path / "etc-wasmgate"
    kubelet_write(volume, {"gateway.toml": text})
    gw = GatewayProcess("", workdir=str(tmp_path))
    gw.config_path = volume / "gateway.toml"
    gw.start(port)
    try:
        async with aiohttp.ClientSession() as http:

            async def limit() -> str:
                async with http.get(f"{gw.url}/") as r:
                    assert r.status == 200, gw.log()
                    return r.headers["RateLimit-Limit"]

            assert await limit() == "600"
            kubelet_write(volume, {"gateway.toml": text.replace("rate = 600", "rate = 900")})
            deadline = time.monotonic() + 10
            while await limit() != "900":
                assert time.monotonic() < deadline, f"not reloaded: {gw.log()}"
                await asyncio.sleep(0.1)
            # A second update (the first timestamped folder is gone by now) too.
            kubelet_write(volume, {"gateway.toml": text.replace("rate = 600", "rate = 300")})
            deadline = time.monotonic() + 10
            while await limit() != "300":
                assert time.monotonic() < deadline, f"not reloaded: {gw.log()}"
                await asyncio.sleep(0.1)
    finally:
        assert gw.terminate() == 0, gw.log()
