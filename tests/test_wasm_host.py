"""Proxy-Wasm host functions, one module per family, through the real gateway.

Each module in ``tests/wasm_modules/host_*.wat`` calls host functions and reports
the statuses and values it got as request (or response) headers, which the
RecordingUpstream (or the client) then sees. The other wasm test files import the
helpers defined here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
import wasmtime

from core.wasm.plugin import PluginVm
from tests.conftest import StartGateway
from tests.harness import InProcessGateway, RecordingUpstream, gateway_toml, read_response

MODULES = Path(__file__).parent / "wasm_modules"


def wasm_file(tmp_path: Path, wat: str) -> Path:
    """Compile ``tests/wasm_modules/<wat>`` to a .wasm file under ``tmp_path``."""
    out = tmp_path / f"{Path(wat).stem}.wasm"
    out.write_bytes(wasmtime.wat2wasm((MODULES / wat).read_text()))
    return out


def wasm_toml(
    upstreams: dict[str, list[str]], module: Path, *, name: str = "w", extra: str = ""
) -> str:
    """Filter ``name`` (the module, plus ``extra`` TOML lines in its table) on every
    path but ``/plain``, which is proxied to v1 with no filter."""
    return gateway_toml(
        upstreams,
        f"""
[filters.{name}]
wasm = "{module}"
{extra}

[[routes]]
name = "plain"
paths = ["/plain"]
upstream = "v1"

[[routes]]
name = "wasm"
upstream = "v1"
filters = ["{name}"]
""",
    )


async def start_wasm(
    start_gateway: StartGateway,
    tmp_path: Path,
    wat: str,
    upstreams: dict[str, list[str]],
    *,
    name: str = "w",
    extra: str = "",
) -> InProcessGateway:
    return await start_gateway(
        wasm_toml(upstreams, wasm_file(tmp_path, wat), name=name, extra=extra)
    )


def wasm_vm(gw: InProcessGateway, name: str = "w") -> PluginVm:
    """The running PluginVm of filter ``name`` (to read its trap and rebuild counts)."""
    assert gw.gateway is not None
    for inst in gw.gateway.snapshot.filters():
        if inst.name == name:
            vm = inst.filter.vm  # type: ignore[attr-defined]
            assert isinstance(vm, PluginVm)
            return vm
    raise AssertionError(f"no filter {name!r}")


def plugin_log(caplog: pytest.LogCaptureFixture, name: str = "w") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == f"wasmgate.wasm.{name}"]


def picked(headers: dict[str, str], expected: dict[str, str]) -> dict[str, str | None]:
    """``headers`` restricted to the names in ``expected`` (for a readable diff)."""
    return {k: headers.get(k) for k in expected}


@pytest.fixture(autouse=True)
def _module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))


# ---------------------------------------------------------------------- logging, time


@pytest.mark.parametrize(
    ("level", "wasm_level"),
    [
        pytest.param(logging.DEBUG, "1", id="debug"),
        pytest.param(logging.INFO, "2", id="info"),
        pytest.param(logging.WARNING, "3", id="warn"),
        pytest.param(logging.ERROR, "4", id="error"),
    ],
)
async def test_log_level_and_time(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    level: int,
    wasm_level: str,
) -> None:
    caplog.set_level(level, logger="wasmgate.wasm.w")
    gw = await start_wasm(start_gateway, tmp_path, "host_log.wat", {"v1": [upstream.address]})
    async with http.get(gw.url + "/log") as resp:
        assert resp.status == 200
    seen = upstream.requests[-1].headers
    expected = {
        "x-log-ok": "0",
        "x-log-bad-level": "2",
        "x-log-level-status": "0",
        "x-log-level": wasm_level,
        "x-time-status": "0",
    }
    assert picked(seen, expected) == expected
    assert abs(int(seen["x-time-ns"]) - time.time_ns()) < 10 * 10**9
    logged = plugin_log(caplog)
    assert ("hello from host_log" in logged) == (level <= logging.INFO)
    assert "never logged" not in logged


# ---------------------------------------------------------------------- header maps


async def test_request_header_map(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(start_gateway, tmp_path, "host_headers.wat", {"v1": [upstream.address]})
    headers = {"x-in": "original", "x-drop": "gone"}
    async with http.get(gw.url + "/hm?a=1", headers=headers) as resp:
        assert resp.status == 200
    seen = upstream.requests[-1].headers
    expected = {
        "x-pairs-status": "0",
        "x-size-status": "0",
        "x-val-method": "GET",
        "x-val-path": "/hm?a=1",
        "x-val-authority": f"127.0.0.1:{gw.port}",
        "x-val-scheme": "http",
        "x-val-in": "original",
        "x-val-upper": "original",
        "x-missing-status": "1",
        "x-bad-map-status": "2",
        "x-add-status": "0",
        "x-replace-status": "0",
        "x-replace-new": "0",
        "x-remove-status": "0",
        "x-remove-absent": "0",
        "x-crlf-status": "2",
        # the changes themselves
        "x-added": "1",
        "x-in": "replaced",
        "x-new": "created",
    }
    assert picked(seen, expected) == expected
    assert "x-drop" not in seen
    assert "x-crlf" not in seen
    keys = seen["x-keys"].split(",")
    assert keys[:4] == [":method", ":path", ":authority", ":scheme"]
    assert {"x-in", "x-drop"} <= set(keys)
    assert seen["x-size"] == seen["x-pairs-size"] != "0"


async def test_pseudo_headers_rewrite_request_line_and_status(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(start_gateway, tmp_path, "host_rewrite.wat", {"v1": [upstream.address]})
    async with http.get(gw.url + "/original") as resp:
        status, client = resp.status, {k.lower(): v for k, v in resp.headers.items()}
    seen = upstream.requests[-1]
    assert (seen.method, seen.path_qs) == ("PUT", "/rewritten/path?h=x-resp-drop:1")
    assert seen.headers["host"] == "rewritten.test"
    statuses = {"x-path-status": "0", "x-method-status": "0", "x-authority-status": "0"}
    assert picked(seen.headers, statuses) == statuses
    assert status == 201
    expected = {
        "x-status-set": "0",
        "x-status-now": "201",
        "x-status-bad": "2",
        "x-resp-added": "yes",
        "x-resp-remove-status": "0",
    }
    assert picked(client, expected) == expected
    assert "x-resp-drop" not in client


async def test_set_header_map_pairs_replaces_the_map(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(start_gateway, tmp_path, "host_set_pairs.wat", {"v1": [upstream.address]})
    async with http.get(gw.url + "/before", headers={"x-in": "client"}) as resp:
        assert resp.status == 200
    seen = upstream.requests[-1]
    assert seen.path_qs == "/set-pairs"
    expected = {"x-only": "yes", "x-set-bad": "4", "x-set-status": "0"}
    assert picked(seen.headers, expected) == expected
    assert "x-in" not in seen.headers
    assert "user-agent" not in seen.headers


# ---------------------------------------------------------------------- buffers


@pytest.mark.parametrize(
    ("config", "config_json"),
    [
        pytest.param(
            'config = { greeting = "hi", n = 2 }', '{"greeting": "hi", "n": 2}', id="json"
        ),
        pytest.param("", "", id="no-config-is-empty"),
    ],
)
async def test_configuration_buffers(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    config: str,
    config_json: str,
) -> None:
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "host_buffers.wat",
        {"v1": [upstream.address]},
        extra=f'{config}\nvm_config = "vm-cfg"',
    )
    async with http.get(gw.url + "/cfg") as resp:
        assert resp.status == 200
    seen = upstream.requests[-1].headers
    if config_json:
        assert json.loads(seen["x-config"]) == json.loads(config_json)
    size = str(len(config_json))
    expected = {
        "x-config": config_json,
        "x-config-status": "0",
        "x-config-size": size,
        "x-config-buffer-len": size,
        "x-vm-config": "vm-cfg",
        "x-vm-config-status": "0",
        "x-bad-buffer": "2",
        "x-headers-eos": "1",
    }
    assert picked(seen, expected) == expected


async def test_bodies_are_given_and_rewritten(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "host_buffers.wat",
        {"v1": [upstream.address]},
        extra='bodies = ["request", "response"]',
    )
    body = b"original body 123"
    async with http.post(gw.url + "/body", data=body) as resp:
        status, client_body = resp.status, await resp.read()
        client = {k.lower(): v for k, v in resp.headers.items()}
    seen = upstream.requests[-1]
    expected = {
        "x-headers-eos": "0",
        "x-body-size": str(len(body)),
        "x-body-eos": "1",
        "x-body-get-status": "0",
        "x-body-seen": body.decode(),
        "x-body-set-status": "0",
    }
    assert picked(seen.headers, expected) == expected
    assert seen.body_len == len(b"rewritten request body")
    assert status == 200
    assert client_body == b"new response body"
    assert client["content-length"] == str(len(b"new response body"))
    resp_expected = {"x-resp-body-eos": "1", "x-resp-body-set-status": "0"}
    assert picked(client, resp_expected) == resp_expected
    assert int(client["x-resp-body-size"]) > 0  # the upstream's JSON echo, given whole


async def test_bodies_stream_past_when_opted_out(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(
        start_gateway, tmp_path, "host_buffers.wat", {"v1": [upstream.address]}, extra="bodies = []"
    )
    body = b"original body 123"
    async with http.post(gw.url + "/body", data=body) as resp:
        echo = json.loads(await resp.read())
        assert "x-resp-body-size" not in resp.headers
    seen = upstream.requests[-1]
    # Opted out (`bodies = []`), the body is not the filter's: its headers callback is
    # told that no body follows (end_of_stream = 1), so it cannot wait for one.
    assert seen.headers["x-headers-eos"] == "1"
    assert "x-body-size" not in seen.headers
    assert seen.body_len == echo["body_len"] == len(body)


# ---------------------------------------------------------------------- local response


async def test_send_local_response_reaches_client_not_upstream(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(
        start_gateway, tmp_path, "host_local_response.wat", {"v1": [upstream.address]}
    )
    async with http.get(gw.url + "/tea") as resp:
        assert resp.status == 418
        assert resp.headers["x-local"] == "yes"
        assert resp.headers["content-type"] == "text/plain"
        assert await resp.read() == b"short and stout"
    assert upstream.requests == []


# ---------------------------------------------------------------------- properties


async def test_properties(
    tmp_path: Path, upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "host_properties.wat",
        {"v1": [upstream.address]},
        name="props",
        extra='root_id = "my-root"',
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    client_port = writer.get_extra_info("sockname")[1]
    writer.write(b"GET /props/x?y=1 HTTP/1.1\r\nHost: props.test\r\nConnection: close\r\n\r\n")
    resp = await read_response(reader)
    writer.close()
    seen = upstream.requests[-1].headers
    expected = {
        "x-p-name-status": "0",
        "x-p-name": "props",
        "x-p-root": "my-root",
        "x-p-path": "/props/x?y=1",
        "x-p-method": "GET",
        "x-p-port-status": "0",
        "x-p-port-size": "8",
        "x-p-port": str(client_port),
        "x-p-code-status": "1",  # no response yet
        "x-p-unknown-status": "1",
    }
    assert picked(seen, expected) == expected
    assert resp.status == 200
    on_response = {
        "x-p-code-status": resp.header("x-p-code-status"),
        "x-p-code-size": resp.header("x-p-code-size"),
        "x-p-code": resp.header("x-p-code"),
    }
    assert on_response == {"x-p-code-status": "0", "x-p-code-size": "8", "x-p-code": "200"}


# ---------------------------------------------------------------------- shared state, metrics


async def test_shared_data_and_queues(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    name = f"shared-{uuid.uuid4().hex[:8]}"  # shared data outlives a gateway: fresh keys
    gw = await start_wasm(
        start_gateway, tmp_path, "host_shared.wat", {"v1": [upstream.address]}, name=name
    )
    for _ in range(2):
        async with http.get(gw.url + "/shared") as resp:
            assert resp.status == 200
    first, second = (r.headers for r in upstream.requests)
    expected = {
        "x-get-missing": "1",
        "x-set": "0",
        "x-get": "0",
        "x-get-value": "v1",
        "x-cas-mismatch": "8",
        "x-cas-ok": "0",
        "x-final-value": "v3",
        "x-ready-before": "0",
        "x-q-register": "0",
        "x-q-resolve": "0",
        "x-q-same-id": "1",
        "x-q-resolve-missing": "1",
        "x-q-empty": "7",
        "x-q-enqueue": "0",
        "x-q-dequeue": "0",
        "x-q-item": "item-1",
        "x-q-enqueue-bad": "1",
    }
    assert picked(first, expected) == expected
    # The key now exists (from the first request), and the host told the root
    # context about the first request's enqueue.
    assert second["x-get-missing"] == "0"
    assert second["x-final-value"] == "v3"
    assert int(second["x-ready-before"]) >= 1


async def test_metrics(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(start_gateway, tmp_path, "host_metrics.wat", {"v1": [upstream.address]})
    for _ in range(2):
        async with http.get(gw.url + "/metrics") as resp:
            assert resp.status == 200
    first, second = (r.headers for r in upstream.requests)
    expected = {
        "x-m-define": "0",
        "x-m-inc": "0",
        "x-m-dec": "2",
        "x-m-get": "0",
        "x-m-gauge-define": "0",
        "x-m-record": "0",
        "x-m-gauge-dec": "0",
        "x-m-gauge": "40",
        "x-m-histogram": "0",
        "x-m-bad-type": "2",
        "x-m-missing": "1",
    }
    assert picked(first, expected) == expected
    assert int(second["x-m-counter"]) == int(first["x-m-counter"]) + 1
