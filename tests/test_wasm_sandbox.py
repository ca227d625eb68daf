"""The Proxy-Wasm sandbox: CPU deadline, memory cap, traps and rebuilds, bad guest
pointers, and the compiled-module cache."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import aiohttp
import pytest
import wasmtime

from core.wasm.plugin import PluginVm
from core.wasm.vm import ENGINE_TAG, WASMTIME_VERSION, compile_module
from tests.conftest import StartGateway
from tests.harness import InProcessGateway, RecordingUpstream
from tests.test_wasm_host import MODULES, picked, start_wasm, wasm_vm


@pytest.fixture(autouse=True)
def _module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))


async def get(http: aiohttp.ClientSession, gw: InProcessGateway, path: str, **kw: str) -> int:
    async with http.get(gw.url + path, headers=kw or None) as resp:
        await resp.read()
        return resp.status


# ---------------------------------------------------------------------- guest pointers


async def test_bad_pointers_get_invalid_memory_access(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(start_gateway, tmp_path, "badptr.wat", {"v1": [upstream.address]})
    assert await get(http, gw, "/bad") == 200
    expected = {
        "x-badptr-ok": "0",
        "x-badptr-oob": "6",
        "x-badptr-straddle": "6",
        "x-badptr-wrap": "6",
        "x-badptr-write": "6",
    }
    assert picked(upstream.requests[-1].headers, expected) == expected
    assert wasm_vm(gw).traps == 0


# ---------------------------------------------------------------------- CPU deadline


@pytest.mark.parametrize(
    ("fail", "status"),
    [pytest.param("closed", 500, id="fail-closed-500"), pytest.param("open", 200, id="fail-open")],
)
async def test_infinite_loop_hits_the_deadline(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    fail: str,
    status: int,
) -> None:
    caplog.set_level(logging.ERROR, logger="wasmgate.wasm")
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "loop.wat",
        {"v1": [upstream.address]},
        extra=f'fail = "{fail}"\nlimits = {{ deadline_ms = 50 }}',
    )
    for _ in range(2):  # the second request runs on a rebuilt instance
        started = time.monotonic()
        assert await get(http, gw, "/loop") == status
        assert time.monotonic() - started < 1.0
        assert await get(http, gw, "/plain/ok") == 200
    vm = wasm_vm(gw)
    assert (vm.traps, vm.rebuilds) == (2, 1)
    assert len(upstream.requests) == (4 if fail == "open" else 2)
    assert any("deadline" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------- memory cap


async def test_unbounded_growth_traps_at_the_memory_cap(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="wasmgate.wasm")
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "grow.wat",
        {"v1": [upstream.address]},
        extra="limits = { memory_mb = 1, deadline_ms = 5000, rebuild_backoff = 0 }",
    )
    for _ in range(3):
        assert await get(http, gw, "/grow") == 500
        assert await get(http, gw, "/plain/ok") == 200
    vm = wasm_vm(gw)
    assert (vm.traps, vm.rebuilds) == (3, 2)
    traps = [r.getMessage() for r in caplog.records if r.name == "wasmgate.wasm"]
    assert len(traps) == 3
    assert all("unreachable" in m and "deadline" not in m for m in traps)


@pytest.mark.parametrize("memory_mb", [1, 2], ids=["1-MiB", "2-MiB"])
async def test_memory_grow_fails_at_the_cap(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    memory_mb: int,
) -> None:
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "grow_report.wat",
        {"v1": [upstream.address]},
        extra=f"limits = {{ memory_mb = {memory_mb}, deadline_ms = 5000 }}",
    )
    assert await get(http, gw, "/grow") == 200
    assert upstream.requests[-1].headers["x-pages"] == str(memory_mb * 16)  # 64 KiB pages


async def test_memory_grown_between_host_calls_is_seen(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    # The host may remember where the memory is between its calls (a speed-up), but
    # never past guest code, which may have grown it: the header read from the new page
    # arrives. Twice, so the second request starts with what the first left behind.
    gw = await start_wasm(start_gateway, tmp_path, "grow_between.wat", {"v1": [upstream.address]})
    for _ in range(2):
        assert await get(http, gw, "/grow") == 200
        seen = upstream.requests[-1].headers
        assert (seen.get("x-before"), seen.get("x-grown"), seen.get("x-grown-status")) == (
            "1",
            "yes",
            "0",
        )


# ---------------------------------------------------------------------- traps


async def test_trap_answers_500_and_the_instance_is_rebuilt(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(start_gateway, tmp_path, "trap.wat", {"v1": [upstream.address]})
    # (headers, expected status, x-instance-requests seen upstream or None)
    steps = [
        ({}, 200, "1"),
        ({}, 200, "2"),
        ({"x-trap": "1"}, 500, None),
        ({}, 200, "1"),  # a fresh instance
        ({}, 200, "2"),
    ]
    for headers, status, count in steps:
        before = len(upstream.requests)
        assert await get(http, gw, "/t", **headers) == status
        if count is None:
            assert len(upstream.requests) == before
        else:
            assert upstream.requests[-1].headers["x-instance-requests"] == count
        assert await get(http, gw, "/plain/ok") == 200
    vm = wasm_vm(gw)
    assert (vm.traps, vm.rebuilds) == (1, 1)


# ---------------------------------------------------------------------- module cache


def test_compiled_module_is_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(cache))
    wasm = bytes(wasmtime.wat2wasm((MODULES / "abi_0_2_1.wat").read_text()))
    _first, digest = compile_module(wasm)
    entries = list(cache.glob("*.cwasm"))
    assert [e.name for e in entries] == [f"{digest}-wasmtime{WASMTIME_VERSION}-{ENGINE_TAG}.cwasm"]

    class NoCompiling(wasmtime.Module):
        def __init__(self, *_args: object) -> None:
            raise AssertionError("compiled again instead of loading the cache")

    monkeypatch.setattr(wasmtime, "Module", NoCompiling)
    module, digest2 = compile_module(wasm)
    assert digest2 == digest
    vm = PluginVm("cached", module, config=b"")  # the cached module runs
    assert vm.abi == "0.2.1"
    vm.close()


def test_unusable_cache_entry_is_recompiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(cache))
    wasm = bytes(wasmtime.wat2wasm((MODULES / "abi_0_2_1.wat").read_text()))
    _module, digest = compile_module(wasm)
    entry = cache / f"{digest}-wasmtime{WASMTIME_VERSION}-{ENGINE_TAG}.cwasm"
    entry.write_bytes(b"not a compiled module")
    module, _digest = compile_module(wasm)
    assert PluginVm("recompiled", module, config=b"").abi == "0.2.1"
    assert "ignoring unusable cached module" in caplog.text
    assert entry.read_bytes() != b"not a compiled module"  # written again
