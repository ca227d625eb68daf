"""A filter built with proxy-wasm-go-sdk (``tests/go_modules/config_props``), unchanged,
through the real gateway: a string ``config``, its own ``properties``, ``[node]``,
Envoy attributes read through the SDK's typed ``properties`` package, a deployment's
foreign function (``reverse`` from tests/fixtures/site) and the metrics it defines on
``/metrics``.

Needs Go >= 1.24 (``/usr/local/go/bin/go`` or on PATH) and the SDK in the module cache
or from the module proxy; skipped without them. A Go c-shared module imports
``wasi_snapshot_preview1.fd_write`` twice, which the loader links once the repeated-import
fix (issue 15, Go item) is in: until then the module cannot load and the test says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from core.errors import ConfigError
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml
from tests.test_metrics import scrape, value

SOURCE = Path(__file__).parent / "go_modules" / "config_props"


def go_binary() -> str | None:
    found = shutil.which("go")
    if found is None and Path("/usr/local/go/bin/go").is_file():
        found = "/usr/local/go/bin/go"
    return found


@pytest.fixture(scope="module")
def go_filter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = go_binary()
    if go is None:
        pytest.skip("no Go toolchain")
    out = tmp_path_factory.mktemp("go") / "filter.wasm"
    env = {**os.environ, "GOOS": "wasip1", "GOARCH": "wasm", "GOFLAGS": "-mod=mod"}
    done = subprocess.run(
        [go, "build", "-buildmode=c-shared", "-o", str(out), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot build the Go filter (Go >= 1.24 and the SDK needed): {done.stderr}")
    return out


async def test_a_go_sdk_filter_reads_config_properties_foreign_and_metrics(
    go_filter: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    toml = gateway_toml(
        {"v1": [upstream.address]},
        f"""
[node]
id = "gw-go"

[filters.go-config]
wasm = "{go_filter}"
config = "plain words"
properties = {{ team = "blue" }}

[[routes]]
name = "go-route"
upstream = "v1"
filters = ["go-config"]
""",
    )
    try:
        gw = await start_gateway(toml)
    except ConfigError as err:
        if "cannot define wasi_snapshot_preview1.fd_write" in str(err):
            pytest.skip("the loader does not link Go's repeated fd_write import yet")
        raise
    for _ in range(2):
        async with http.get(gw.url + "/some/path") as resp:
            assert resp.status == 200
    seen = upstream.requests[-1].headers
    got = {k: v for k, v in seen.items() if k.startswith("x-go-") and k != "x-go-port"}
    assert got == {
        "x-go-config": "plain words",
        "x-go-team": "blue",
        "x-go-node": "gw-go",
        "x-go-route": "go-route",
        "x-go-url-path": "/some/path",
        "x-go-mtls": "false",
        "x-go-foreign": "cba",
        "x-go-foreign-missing": "error status returned by host: not found",
    }
    assert int(seen["x-go-port"]) > 0
    samples = scrape()
    labels = {"filter": "go-config", "metric": "go_requests"}
    assert value(samples, "wasmgate_wasm_filter_counter_total", **labels) == 2
    hist = {"filter": "go-config", "metric": "go_path_bytes"}
    assert value(samples, "wasmgate_wasm_filter_histogram_sum", **hist) == 20  # twice "/some/path"
