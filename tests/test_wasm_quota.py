"""What a Proxy-Wasm filter can make the host hold: shared data, queues, header maps and
bodies are bounded per filter (``limits.max_*``), refused with BAD_ARGUMENT past the
bound and counted; shared data and queues are freed with the last filter of the vm_id."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from core import metrics
from core.config import loads_config
from core.gateway import Snapshot
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml
from tests.test_wasm_host import start_wasm, wasm_toml, wasm_vm

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def exhausted(kind: str) -> float:
    text = metrics.render(local=True).decode()
    line = f'wasmgate_wasm_resource_exhausted_total{{filter="w",kind="{kind}"}} '
    for row in text.splitlines():
        if row.startswith(line):
            return float(row[len(line) :])
    return 0.0


async def test_host_held_memory_is_bounded_and_freed_when_the_filter_goes(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    from core.wasm import shared

    limits = (
        f"memory_mb = 16, max_shared_bytes = {16 * MIB}, max_queue_bytes = {8 * MIB}, "
        f"max_header_bytes = {64 * 1024}, max_buffer_bytes = {4 * MIB}"
    )
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "hog.wat",
        {"v1": [upstream.address]},
        extra=f'bodies = ["request"]\nlimits = {{ {limits} }}',
    )
    before = {k: exhausted(k) for k in ("shared", "queue", "headers", "body")}
    base = rss()
    for _ in range(10):  # unbounded, 160 MiB held after these
        async with http.post(gw.url + "/hog", data=b"0123456789") as resp:
            assert resp.status == 200
    first, last = upstream.requests[0].headers, upstream.requests[-1].headers
    # 12 MiB fit in 16 MiB, one 4 MiB item in 8 MiB (with its name), ~15 4-KiB headers
    # in 64 KiB, three 1 MiB prepends to the 10-byte body in 4 MiB.
    assert (first["x-shared-fails"], first["x-queue-status"]) == ("0", "0")
    assert (last["x-shared-fails"], last["x-shared-status"], last["x-queue-status"]) == (
        "3",
        "2",
        "2",
    )
    assert 80 <= int(last["x-header-fails"]) <= 90
    assert last["x-body-fails"] == "9"
    assert "x-pad" not in last
    held = shared.usage("w")
    assert 0 < held["shared"] <= 16 * MIB
    assert 0 < held["queue"] <= 8 * MIB
    after = {k: exhausted(k) for k in before}
    assert after["shared"] - before["shared"] == 3 * 10 - 3
    assert after["queue"] - before["queue"] >= 8
    assert after["headers"] - before["headers"] >= 800
    assert after["body"] - before["body"] == 90

    # A reload that keeps the filter keeps what its vm_id holds (a new VM attaches
    # before the old one is closed); one that drops the filter frees it.
    assert gw.gateway is not None
    same = wasm_toml(
        {"v1": [upstream.address]},
        tmp_path / "hog.wasm",
        name="w",
        extra=f'bodies = ["request"]\nlimits = {{ {limits} }}',
    )
    old = wasm_vm(gw)
    gw.gateway.swap(Snapshot(loads_config(same, "test.toml"), "test.toml"))
    assert wasm_vm(gw) is not old and old.closed
    assert shared.usage("w") == held
    plain = gateway_toml(
        {"v1": [upstream.address]}, '[[routes]]\nname = "plain"\nupstream = "v1"\n'
    )
    gw.gateway.swap(Snapshot(loads_config(plain, "test.toml"), "test.toml"))
    assert shared.usage("w") == {"shared": 0, "queue": 0}
    assert rss() - base < 80 * MIB  # generous: unbounded and never freed, it was 160 MiB


async def test_http_calls_in_flight_and_their_bodies_are_bounded(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "callout_flood.wat",
        {"v1": [upstream.address]},
        extra="limits = { max_http_calls = 64, max_buffer_bytes = 1024 }",
    )
    async with http.get(gw.url + "/flood") as resp:
        assert resp.status == 200
    seen = next(r for r in upstream.requests if r.path_qs == "/flood").headers
    expected = {"x-call-fails": "36", "x-call-status": "2", "x-big-body": "2"}
    assert {k: seen.get(k) for k in expected} == expected
