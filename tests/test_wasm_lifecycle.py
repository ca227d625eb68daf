"""Proxy-Wasm plugin lifecycle through the real gateway: ABI versions, callback
order, configuration at load (on_configure, manifest schema), pause and resume on
an HTTP call, ticks, root-only plugins."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path

import aiohttp
import pytest

from core.config import loads_config
from core.errors import ConfigError
from core.gateway import Snapshot
from core.wasm.plugin import describe
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, Seen
from tests.test_wasm_host import (
    picked,
    plugin_log,
    start_wasm,
    wasm_file,
    wasm_toml,
    wasm_vm,
)


@pytest.fixture(autouse=True)
def _module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))


# ---------------------------------------------------------------------- ABI versions

ABI_CASES = [
    pytest.param(
        "abi_0_1_0.wat", "0.1.0", {"x-abi": "0.1.0"}, {"x-abi-response": "0.1.0"}, id="abi-0.1.0"
    ),
    pytest.param(
        "abi_0_2_0.wat",
        "0.2.0",
        {"x-abi": "0.2.0", "x-end-of-stream": "1"},
        {"x-abi-response": "0.2.0"},
        id="abi-0.2.0",
    ),
    pytest.param(
        "abi_0_2_1.wat",
        "0.2.1",
        {"x-abi": "0.2.1", "x-end-of-stream": "1"},
        {"x-abi-response": "0.2.1"},
        id="abi-0.2.1",
    ),
    pytest.param(
        "go_early.wat",
        "0.1.0",
        {"x-abi": "go-early", "x-end-of-stream": "1"},
        {"x-abi-response": "go-early"},
        id="go-early-0.1.0-marker-3-param-callbacks",
    ),
    pytest.param(
        "unknown_import.wat", "0.2.1", {"x-unknown-import": "ok"}, {}, id="unknown-imports"
    ),
    pytest.param(
        "stubbed_imports.wat",
        "0.2.1",
        {"x-wasi-stub": "52", "x-env-stub": "12"},
        {},
        id="unimplemented-wasi-nosys-env-unimplemented",
    ),
    pytest.param(
        "repeated_imports.wat",
        "0.2.1",
        {"x-first": "1", "x-second": "2"},
        {},
        id="repeated-imports-as-go-builds",
    ),
]


@pytest.mark.parametrize(("wat", "abi", "request_headers", "response_headers"), ABI_CASES)
async def test_abi_versions(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    wat: str,
    abi: str,
    request_headers: dict[str, str],
    response_headers: dict[str, str],
) -> None:
    gw = await start_wasm(start_gateway, tmp_path, wat, {"v1": [upstream.address]})
    assert describe(wasm_vm(gw))["abi"] == abi
    async with http.get(gw.url + "/abi") as resp:
        assert resp.status == 200
        client = {k.lower(): v for k, v in resp.headers.items()}
    assert picked(upstream.requests[-1].headers, request_headers) == request_headers
    assert picked(client, response_headers) == response_headers


async def test_wasi_unstable_fd_write_logs(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wasmgate.wasm.w")
    gw = await start_wasm(start_gateway, tmp_path, "wasi_unstable.wat", {"v1": [upstream.address]})
    async with http.get(gw.url + "/wasi") as resp:
        assert resp.status == 200
    expected = {
        "x-wasi-clock-errno": "0",
        "x-wasi-time-nonzero": "1",
        "x-wasi-write-errno": "0",
        "x-wasi-written": "25",
    }
    assert picked(upstream.requests[-1].headers, expected) == expected
    lines = [r for r in caplog.records if r.getMessage() == "hello from wasi_unstable"]
    assert [r.levelno for r in lines] == [logging.INFO]


async def test_each_copy_of_a_repeated_wasi_import_reaches_the_host(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wasmgate.wasm.w")
    gw = await start_wasm(
        start_gateway, tmp_path, "repeated_imports.wat", {"v1": [upstream.address]}
    )
    async with http.get(gw.url + "/twice") as resp:
        assert resp.status == 200
    assert [m for m in plugin_log(caplog) if "fd_write" in m] == [
        "first fd_write",
        "second fd_write",
    ]


@pytest.mark.parametrize(
    ("wat", "reasons"),
    [
        pytest.param(
            "import_memory.wat", ["env.memory", "memory", "only functions"], id="memory-import"
        ),
        pytest.param(
            "import_clash.wat",
            ["env.proxy_log", "(i32, i32, i32) -> i32", "(i64) -> i32"],
            id="one-name-two-types",
        ),
    ],
)
def test_an_import_that_cannot_be_satisfied_is_named_at_load(
    tmp_path: Path, wat: str, reasons: list[str]
) -> None:
    toml = wasm_toml({"v1": ["127.0.0.1:9"]}, wasm_file(tmp_path, wat))
    with pytest.raises(ConfigError) as err:
        load_snapshot(tmp_path, toml)
    problems = err.value.problems
    assert len(problems) == 1
    assert problems[0].startswith("filters.w:")
    for reason in reasons:
        assert reason in problems[0]


# ---------------------------------------------------------------------- root-only plugins


async def test_root_only_plugin_passes_requests_untouched(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wasmgate.wasm.w")
    gw = await start_wasm(start_gateway, tmp_path, "root_only.wat", {"v1": [upstream.address]})
    assert plugin_log(caplog)[:2] == ["root_only: vm started", "root_only: configured"]
    for path in ("/plain/x", "/filtered/x"):  # without, then with the filter
        async with http.get(gw.url + path, headers={"x-client": "1"}) as resp:
            assert resp.status == 200
    without, with_filter = upstream.requests

    def headers(seen: Seen) -> list[tuple[str, str]]:  # traceparent: a new span per request
        return [(n, v) for n, v in seen.raw_headers if n != "traceparent"]

    assert headers(with_filter) == headers(without)
    assert len(headers(without)) == len(without.raw_headers) - 1
    assert describe(wasm_vm(gw))["root_only"] is True


async def test_root_only_plugin_gets_no_http_context(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wasmgate.wasm.w")
    gw = await start_wasm(start_gateway, tmp_path, "root_ctx_log.wat", {"v1": [upstream.address]})
    for _ in range(2):
        async with http.get(gw.url + "/x") as resp:
            assert resp.status == 200
    await asyncio.sleep(0.05)  # on_log runs after the response is sent
    creates = [m for m in plugin_log(caplog) if m.startswith("context_create")]
    assert creates == ["context_create 1 0"]
    assert len(upstream.requests) == 2


# ---------------------------------------------------------------------- callback order


async def test_callback_order(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wasmgate.wasm.w")
    gw = await start_wasm(start_gateway, tmp_path, "lifecycle.wat", {"v1": [upstream.address]})
    at_load = [m.split() for m in plugin_log(caplog)]
    async with http.get(gw.url + "/life") as resp:
        assert resp.status == 200
    for _ in range(50):  # on_done, on_log, on_delete follow the response
        if plugin_log(caplog)[-1].startswith("on_delete"):
            break
        await asyncio.sleep(0.01)
    calls = [m.split() for m in plugin_log(caplog)]
    assert calls[0] == ["_initialize"]
    root = calls[1][1]
    assert at_load == [
        ["_initialize"],
        ["on_context_create", root, "0"],
        ["on_vm_start", root],
        ["on_configure", root],
    ]
    per_request = calls[len(at_load) :]
    stream = per_request[0][1]
    assert stream != root
    assert per_request == [
        ["on_context_create", stream, root],
        ["on_request_headers", stream],
        ["on_response_headers", stream],
        ["on_done", stream],
        ["on_log", stream],
        ["on_delete", stream],
    ]


def load_snapshot(tmp_path: Path, toml: str) -> Snapshot:
    source = tmp_path / "gateway.toml"
    source.write_text(toml)
    return Snapshot(loads_config(toml, str(source)), str(source))


def test_rejected_configuration_refuses_the_filter_at_load(tmp_path: Path) -> None:
    toml = wasm_toml({"v1": ["127.0.0.1:9"]}, wasm_file(tmp_path, "reject_config.wat"))
    with pytest.raises(ConfigError) as err:
        load_snapshot(tmp_path, toml)
    problems = err.value.problems
    assert len(problems) == 1
    assert problems[0].startswith("filters.w:")
    assert "rejected its configuration" in problems[0]


SCHEMA = {
    "type": "object",
    "properties": {"header": {"type": "string", "description": "Header to add."}},
    "required": ["header"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param('config = { header = "x-bot" }', None, id="valid"),
        pytest.param("config = { header = 5 }", "config.header: 5 is not of type", id="wrong-type"),
        pytest.param("", "'header' is a required property", id="missing-field"),
        pytest.param(
            'config = { header = "x", extra = 1 }', "'extra' was unexpected", id="unknown-field"
        ),
    ],
)
def test_manifest_config_schema(tmp_path: Path, config: str, error: str | None) -> None:
    folder = tmp_path / "filter"
    folder.mkdir()
    module = wasm_file(folder, "abi_0_2_1.wat")
    (folder / "manifest.json").write_text(json.dumps({"config_schema": SCHEMA}))
    toml = wasm_toml({"v1": ["127.0.0.1:9"]}, module, extra=config)
    if error is None:
        snapshot = load_snapshot(tmp_path, toml)
        assert [inst.name for inst in snapshot.filters()] == ["w"]
        snapshot.close()
        return
    with pytest.raises(ConfigError) as err:
        load_snapshot(tmp_path, toml)
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith("filters.w:")
    assert error in err.value.problems[0]


# ---------------------------------------------------------------------- HTTP calls


@pytest.mark.parametrize("concurrent", [1, 5], ids=["one-request", "five-concurrent"])
async def test_pause_until_http_call_response(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    concurrent: int,
) -> None:
    # pause.wat calls the upstream named "upstream": here, the second server.
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "pause.wat",
        {"v1": [upstream.address], "upstream": [upstream2.address]},
        extra="limits = { pause_timeout = 2 }",  # a lost resume fails fast
    )

    async def one(i: int) -> int:
        async with http.get(f"{gw.url}/paused/{i}") as resp:
            return resp.status

    assert await asyncio.gather(*(one(i) for i in range(concurrent))) == [200] * concurrent
    assert [(r.method, r.path_qs, r.headers["host"]) for r in upstream2.requests] == [
        ("GET", "/pause", "pause.test")
    ] * concurrent
    assert sorted(r.path_qs for r in upstream.requests) == sorted(
        f"/paused/{i}" for i in range(concurrent)
    )
    for seen in upstream.requests:
        assert "x-call-error" not in seen.headers
        assert seen.headers["x-call-status"] == "200"
        assert seen.headers["x-call-body"].startswith('{"upstream": "v2"')


async def test_local_response_from_http_call_denies(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "pause_deny.wat",
        {"v1": [upstream.address], "auth": [upstream2.address]},
        extra="limits = { pause_timeout = 2 }",
    )
    async with http.get(gw.url + "/secret") as resp:
        assert resp.status == 403
        assert resp.headers["x-denied"] == "by-call"
        # proxy_get_status: OK, and the call's status code
        assert await resp.read() == b"0 418"
    assert [r.path_qs for r in upstream2.requests] == ["/status/418"]
    assert upstream.requests == []


async def test_http_call_to_unknown_upstream_is_refused(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(start_gateway, tmp_path, "pause_deny.wat", {"v1": [upstream.address]})
    async with http.get(gw.url + "/secret") as resp:
        assert resp.status == 200
    assert upstream.requests[-1].headers["x-call-error"] == "2"  # BAD_ARGUMENT


# ---------------------------------------------------------------------- ticks


async def test_tick_runs_while_the_gateway_serves(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    name = f"tick-{uuid.uuid4().hex[:8]}"  # shared data outlives a gateway: fresh keys
    gw = await start_wasm(
        start_gateway, tmp_path, "tick_shared.wat", {"v1": [upstream.address]}, name=name
    )
    counts = []
    for _ in range(2):
        await asyncio.sleep(0.2)  # the tick is 20 ms
        async with http.get(gw.url + "/ticks") as resp:
            assert resp.status == 200
        counts.append(int(upstream.requests[-1].headers["x-ticks"]))
    assert counts[0] >= 2
    assert counts[1] >= counts[0] + 2
    assert upstream.requests[-1].headers["x-stale-cas"] == "8"


async def test_plugin_that_traps_creating_an_http_context_runs_root_only(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    # A Rust SDK plugin with only a root context exports the HTTP callbacks but panics
    # when the host creates an HTTP context; the host learns that once, then stops.
    gw = await start_wasm(start_gateway, tmp_path, "rust_root_only.wat", {"v1": [upstream.address]})
    vm = wasm_vm(gw)
    assert describe(vm)["root_only"] is False  # nothing in its exports says otherwise
    for _ in range(3):
        async with http.get(gw.url + "/x") as resp:
            assert resp.status == 200
    assert len(upstream.requests) == 3
    assert all("x-should-not-run" not in seen.headers for seen in upstream.requests)
    assert describe(vm) == {"abi": "0.2.1", "root_only": True, "traps": 1, "rebuilds": 1}


# ---------------------------------------------------------------------- releasing


def test_closed_and_trapped_instances_are_freed(tmp_path: Path) -> None:
    """A reload closes the old snapshot's filters and a trap replaces an instance: both
    must free the Store and the compiled module's mapping (an fd), or every reload and
    every trap leaks them (the soak test caught this)."""
    import gc
    import os
    import weakref

    from core.wasm import filter_for_testing, vm

    module = wasm_file(tmp_path, "trap.wat")

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    warm = filter_for_testing(module)
    warm.filter.close()
    del warm
    gc.collect()
    base_fds, base_funcs = fds(), len(vm._HOST_FUNCS)
    alive = []
    for _ in range(5):
        inst = filter_for_testing(module)
        plugin_vm = inst.filter.vm  # type: ignore[attr-defined]
        alive.append(weakref.ref(plugin_vm.instance))
        plugin_vm._trapped(RuntimeError("test"))  # what a trap does to the instance
        plugin_vm.ensure()  # the rebuild
        alive.append(weakref.ref(plugin_vm.instance))
        inst.filter.close()
        del inst, plugin_vm
    gc.collect()
    assert [r() for r in alive] == [None] * len(alive)
    assert len(vm._HOST_FUNCS) == base_funcs
    assert fds() <= base_fds


def test_a_filter_no_route_uses_is_closed_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload that drops the last route using a [filters.NAME] keeps the table: the
    filter must still be released (the soak test found the instance leaking)."""
    from core.wasm import vm

    module = wasm_file(tmp_path, "trap.wat")
    before = len(vm._HOST_FUNCS)
    toml = f"""
[[upstreams]]
name = "u"
endpoints = ["127.0.0.1:9"]
[filters.idle]
wasm = "{module}"
[[routes]]
name = "r"
upstream = "u"
"""
    with caplog.at_level(logging.WARNING):
        snap = Snapshot(loads_config(toml, str(tmp_path / "g.toml")), str(tmp_path / "g.toml"))
    assert any("filters.idle is not used by any route" in r.getMessage() for r in caplog.records)
    assert len(vm._HOST_FUNCS) == before  # its instance is released already
    snap.close()
