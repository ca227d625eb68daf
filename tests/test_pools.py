"""plugin_sdk.pools: bounded worker pools per purpose (issue 14, item 14).

Each test uses purposes of its own: the pools are per process. Blocking functions
wait on a threading.Event the test sets, so no test depends on how fast it runs.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from core.config import loads_config
from core.errors import ConfigError
from core.executors import pool_settings
from plugin_sdk import OffloadBusy, OffloadTimeout, offload
from plugin_sdk.pools import PoolSettings, configure, settings
from plugin_sdk.testing import GatewayProcess, RecordingUpstream, free_port


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Set at the end of the test, so no worker thread outlives it."""
    event = threading.Event()
    yield event
    event.set()


async def test_a_full_pool_refuses_at_once(gate: threading.Event) -> None:
    configure({"t-busy": PoolSettings(workers=1, queue=1, timeout=30)})
    held = [asyncio.create_task(offload("t-busy", gate.wait)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(OffloadBusy, match=r"'t-busy' pool is full \(1 workers busy, 1 calls"):
        await offload("t-busy", lambda: "never")
    gate.set()
    assert await asyncio.gather(*held) == [True, True]
    assert await offload("t-busy", lambda: "again") == "again"  # slots freed


async def test_one_purpose_cannot_starve_another(gate: threading.Event) -> None:
    configure(
        {
            "t-stuck": PoolSettings(workers=2, queue=0, timeout=30),
            "t-free": PoolSettings(workers=1, queue=0, timeout=30),
        }
    )
    held = [asyncio.create_task(offload("t-stuck", gate.wait)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(OffloadBusy):
        await offload("t-stuck", lambda: 0)
    assert await offload("t-free", sum, [1, 2, 3]) == 6
    gate.set()
    await asyncio.gather(*held)


async def test_timeout_gives_a_clear_error_and_drops_queued_calls(
    gate: threading.Event,
) -> None:
    configure({"t-slow": PoolSettings(workers=1, queue=4, timeout=0.2)})
    ran: list[str] = []
    running = asyncio.create_task(offload("t-slow", gate.wait))
    await asyncio.sleep(0.05)
    with pytest.raises(OffloadTimeout, match=r"'t-slow' call did not finish within 0\.2 s"):
        await offload("t-slow", ran.append, "queued")
    with pytest.raises(OffloadTimeout, match=r"within 0\.05 s"):
        await offload("t-slow", ran.append, "queued", timeout=0.05)  # a call's own timeout
    with pytest.raises(OffloadTimeout):
        await running
    gate.set()
    await asyncio.sleep(0.1)
    assert await offload("t-slow", lambda: "after") == "after"
    assert ran == []  # the calls that timed out in the queue never ran


async def test_the_functions_own_errors_pass_through() -> None:
    def fails() -> None:
        raise TimeoutError("socket timed out")  # not the pool's timeout

    with pytest.raises(TimeoutError, match="socket timed out") as info:
        await offload("t-errors", fails)
    assert not isinstance(info.value, OffloadTimeout)


def test_settings_are_checked_and_defaults_apply() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        PoolSettings(workers=0)
    assert settings("t-never-configured") == PoolSettings()
    assert settings("crypto").timeout > 0 and settings("registry").workers >= 1


@pytest.mark.parametrize(
    ("table", "error"),
    [
        pytest.param("[executors.crypto]\nworkers = 0", "executors.crypto.workers", id="workers"),
        pytest.param("[executors.files]\ntimeout = -1", "executors.files.timeout", id="timeout"),
        pytest.param("[executors.crypto]\nthreads = 2", "executors.crypto.threads", id="unknown"),
        pytest.param("[executors.Bad]\nworkers = 2", "invalid executor name 'Bad'", id="name"),
    ],
)
def test_bad_executor_config_names_the_field(table: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(table, "gw.toml")
    assert "gw.toml" in str(info.value) and error in str(info.value)


def test_executor_config_overrides_only_what_it_sets() -> None:
    cfg = loads_config("[executors.registry]\ntimeout = 2.5\n[executors.mine]\nworkers = 3\n")
    got = pool_settings(cfg)
    assert got["registry"].timeout == 2.5
    assert got["registry"].workers == settings("registry").workers  # built-in kept
    assert got["mine"] == PoolSettings(workers=3)


async def test_basic_auth_past_the_crypto_timeout_fails_closed(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    """A bcrypt check slower than [executors.crypto] timeout: the filter's fail
    strategy answers (fail closed: 503), and the upstream never sees the request."""
    port = free_port()
    hashed = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(12)).decode()
    toml = f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[executors.crypto]
timeout = 0.01

[[upstreams]]
name = "app"
endpoints = ["{upstream.address}"]

[filters.staff]
plugin = "basic-auth"
config.users = {{ alice = "{hashed}" }}

[[routes]]
name = "main"
paths = ["/"]
upstream = "app"
filters = ["staff"]
"""
    gw = await asyncio.to_thread(GatewayProcess(toml, workdir=str(tmp_path)).start, port)
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:wonderland").decode()}
    try:
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            async with http.get(f"http://127.0.0.1:{port}/x", headers=auth) as resp:
                status, body = resp.status, await resp.text()
    finally:
        code = await asyncio.to_thread(gw.terminate)
    assert (status, body) == (503, "filter staff failed\n"), time.monotonic() - started
    assert upstream.requests == []
    assert "'crypto' call did not finish within 0.01 s" in gw.log()
    assert code == 0
