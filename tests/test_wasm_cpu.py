"""CPU isolation of Proxy-Wasm filters: a CPU budget per filter over a sliding window
(over it, the filter fails its requests by its fail strategy for a cool-down), rebuilds
after traps off the event loop and with back-off, and a floor on tick periods."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import aiohttp
import pytest

from core import metrics
from tests.conftest import StartGateway
from tests.harness import InProcessGateway, RecordingUpstream
from tests.test_wasm_host import start_wasm, wasm_vm


@pytest.fixture(autouse=True)
def _module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))


async def get(http: aiohttp.ClientSession, gw: InProcessGateway, path: str, **kw: str) -> int:
    async with http.get(gw.url + path, headers=kw or None) as resp:
        await resp.read()
        return resp.status


async def latencies(http: aiohttp.ClientSession, gw: InProcessGateway, until: float) -> list[float]:
    """Route B (no filter), one request at a time until ``until``: the durations."""
    out = []
    while time.monotonic() < until:
        started = time.monotonic()
        assert await get(http, gw, "/plain/ok") == 200
        out.append(time.monotonic() - started)
        await asyncio.sleep(0.02)
    return out


def metric(name: str, labels: str) -> float:
    prefix = f"wasmgate_{name}{{{labels}}} "
    for row in metrics.render(local=True).decode().splitlines():
        if row.startswith(prefix):
            return float(row[len(prefix) :])
    return 0.0


async def test_a_looping_filter_over_its_cpu_budget_is_cut_off_for_a_cooldown(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "loop.wat",
        {"v1": [upstream.address]},
        extra="limits = { deadline_ms = 100, cpu_budget = 0.2, cpu_window = 1.0, cooldown = 30, "
        "rebuild_backoff = 0 }",  # the budget alone: no back-off after traps
    )
    before = metric("wasm_cpu_throttled_total", 'filter="w"')
    until = time.monotonic() + 3.0
    statuses: list[int] = []

    async def client() -> None:
        while time.monotonic() < until:
            statuses.append(await get(http, gw, "/loop"))

    clients = [asyncio.create_task(client()) for _ in range(20)]
    b = await latencies(http, gw, until)
    await asyncio.gather(*clients)
    # Without a budget, 20 clients keep the loop in 100 ms callbacks: B waits ~2 s.
    assert statistics.median(b) < 0.3, b
    assert set(statuses) <= {500, 503}
    assert statuses.count(503) > len(statuses) // 2  # cut off, not trapping
    vm = wasm_vm(gw)
    assert vm.traps <= 6  # ~0.2 s of guest time, then the cool-down
    assert metric("wasm_cpu_throttled_total", 'filter="w"') - before == 1
    assert metric("wasm_refused_total", 'filter="w",reason="cpu_budget"') >= statuses.count(503)


async def test_a_slow_starting_module_is_rebuilt_off_the_loop_with_backoff(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "slow_start_trap.wat",
        {"v1": [upstream.address]},
        extra="limits = { deadline_ms = 3000 }",
    )
    until = time.monotonic() + 4.0
    statuses: list[int] = []

    async def client() -> None:
        while time.monotonic() < until:
            statuses.append(await get(http, gw, "/t"))
            await asyncio.sleep(0.02)

    a = asyncio.create_task(client())
    b = await latencies(http, gw, until)
    await a
    # On the loop, every request rebuilt it for 1.2 s (B waited ~0.6 s on average).
    assert statistics.median(b) < 0.3, b
    assert set(statuses) <= {500, 503}
    assert len(statuses) >= 20
    assert wasm_vm(gw).rebuilds <= 3


@pytest.mark.parametrize(
    ("fail", "expected"),
    [pytest.param("closed", {500, 503}, id="fail-closed"), pytest.param("open", {200}, id="open")],
)
async def test_rebuilds_after_repeated_traps_back_off(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    fail: str,
    expected: set[int],
) -> None:
    gw = await start_wasm(
        start_gateway, tmp_path, "trap.wat", {"v1": [upstream.address]}, extra=f'fail = "{fail}"'
    )
    before = metric("wasm_refused_total", 'filter="w",reason="rebuild_backoff"')
    statuses = [await get(http, gw, "/t", **{"x-trap": "1"}) for _ in range(50)]
    assert set(statuses) == expected
    vm = wasm_vm(gw)
    assert vm.rebuilds <= 3  # a rebuild per trap would be 49
    refused = metric("wasm_refused_total", 'filter="w",reason="rebuild_backoff"') - before
    assert refused >= 40


async def test_tick_periods_are_clamped(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(start_gateway, tmp_path, "tick_fast.wat", {"v1": [upstream.address]})
    await asyncio.sleep(1.0)
    assert await get(http, gw, "/t") == 200
    ticks = int(upstream.requests[-1].headers["x-ticks"])
    assert 10 <= ticks <= 150  # min_tick_ms = 10 by default; asked for 1 ms


async def test_a_spinning_tick_is_cut_off_by_the_cpu_budget(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "tick_spin.wat",
        {"v1": [upstream.address]},
        extra="limits = { deadline_ms = 100, cooldown = 30 }",
    )
    await asyncio.sleep(3.0)  # no traffic
    vm = wasm_vm(gw)
    # Unbounded, ~60 ticks of 45 ms ran in 3 s (the loop busy 90 % of the time); with
    # half a CPU per second, ~11 run, then the cool-down skips them.
    assert 5 <= vm.ticks <= 25
    assert vm.throttles == 1
    assert await get(http, gw, "/t") == 503  # still cooling down
