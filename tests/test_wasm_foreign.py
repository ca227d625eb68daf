"""``proxy_call_foreign_function``: the functions of the ``wasmgate.wasm_foreign_functions``
entry-point group, built-in (``compress``, ``uncompress``) and a deployment's own
(``reverse`` and ``explode`` from tests/fixtures/site), called by
``tests/wasm_modules/probe.wat`` for the name in a request's ``x-ff`` header."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.harness import InProcessGateway, RecordingUpstream
from tests.test_wasm_host import start_wasm, wasm_file, wasm_toml


@pytest.fixture
async def gw(
    tmp_path: Path, upstream: RecordingUpstream, start_gateway: StartGateway
) -> InProcessGateway:
    return await start_wasm(
        start_gateway,
        tmp_path,
        "probe.wat",
        {"v1": [upstream.address]},
        extra="limits = { max_buffer_bytes = 4096 }",
    )


async def call(
    gw: InProcessGateway,
    upstream: RecordingUpstream,
    http: aiohttp.ClientSession,
    name: str,
    args: str,
) -> tuple[str, bytes | None]:
    async with http.get(gw.url + "/x", headers={"x-ff": name, "x-ff-args": args}) as resp:
        assert resp.status == 200
    seen = upstream.requests[-1].headers
    value = seen.get("x-ff-value")
    return seen["x-ff-status"], bytes.fromhex(value) if value is not None else None


async def test_a_deployment_function_is_called(
    gw: InProcessGateway, upstream: RecordingUpstream, http: aiohttp.ClientSession
) -> None:
    assert await call(gw, upstream, http, "reverse", "abc") == ("0", b"cba")


async def test_compress_is_built_in(
    gw: InProcessGateway, upstream: RecordingUpstream, http: aiohttp.ClientSession
) -> None:
    status, value = await call(gw, upstream, http, "compress", "hello hello hello")
    assert status == "0" and value is not None
    assert zlib.decompress(value) == b"hello hello hello"  # zlib format, as Envoy's


@pytest.mark.parametrize(
    ("name", "args", "status"),
    [
        pytest.param("no_such_function", "x", "1", id="unknown-not-found"),
        pytest.param("uncompress", "not zlib data", "2", id="bad-input-bad-argument"),
        pytest.param("explode", "x", "10", id="raises-internal-failure"),
        pytest.param("reverse", "y" * 5000, "2", id="args-past-max-buffer-bytes"),
    ],
)
async def test_failures_are_statuses(
    gw: InProcessGateway,
    upstream: RecordingUpstream,
    http: aiohttp.ClientSession,
    name: str,
    args: str,
    status: str,
) -> None:
    assert await call(gw, upstream, http, name, args) == (status, None)
    assert await call(gw, upstream, http, "reverse", "ok") == ("0", b"ko")  # still serving


def test_a_broken_entry_point_is_a_config_error(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "broken_ff-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-ff\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[wasmgate.wasm_foreign_functions]\nbroken = broken_ff_nope:fn\n"
    )
    module = wasm_file(tmp_path, "probe.wat")
    config = tmp_path / "gateway.toml"
    config.write_text(wasm_toml({"v1": ["127.0.0.1:1"]}, module))
    env = {**os.environ, "PYTHONPATH": str(site), "WASMGATE_CACHE_DIR": str(tmp_path / "c")}
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0
    assert (
        "filters.w: wasm foreign function 'broken' (broken_ff_nope:fn): cannot load: "
        "No module named 'broken_ff_nope'" in done.stderr
    ), done.stderr
