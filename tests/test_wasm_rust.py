"""The Rust example filter (plugins/wasm/rust-headers), built from its sources with the
Rust Proxy-Wasm SDK (the ``proxy-wasm`` crate, pinned in its Cargo.lock) for
wasm32-wasip1 by ``plugins/wasm/build.py``, then run unchanged through the real gateway
against real upstreams on 127.0.0.1: headers both ways, an auth callout that pauses the
request (allowed, denied, and a cluster the gateway does not know), its counters in
:func:`core.metrics.wasm_metrics` and on /metrics, and bad configurations refused at
load, by the manifest's JSON Schema and by the filter's own ``on_configure``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core import metrics
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, build_example_filters, free_port
from tests.test_wasm_examples import load_problems
from tests.test_wasm_go import lower, toml_value
from tests.test_wasm_host import wasm_toml

MODULE = Path(__file__).resolve().parent.parent / "plugins" / "wasm" / "rust-headers"
WASM = MODULE / "build" / "filter.wasm"


def rust_tool(name: str) -> str | None:
    """Where plugins/wasm/build.py looks for cargo and rustup: $NAME, PATH, ~/.cargo/bin."""
    for candidate in (
        os.environ.get(name.upper()),
        shutil.which(name),
        str(Path.home() / ".cargo" / "bin" / name),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def wasip1_available() -> bool:
    """Whether rustc has the wasm32-wasip1 target, or rustup is there to add it."""
    if rust_tool("rustup") is not None:
        return True
    rustc = rust_tool("rustc")
    if rustc is None:
        return False
    sysroot = subprocess.run(
        [rustc, "--print", "sysroot"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return bool(sysroot) and (Path(sysroot) / "lib" / "rustlib" / "wasm32-wasip1").is_dir()


@pytest.fixture(scope="session")
def rust_filter() -> None:
    """Builds rust-headers once per session (build.py skips it when up to date; the
    cargo caches in .cache/cargo/ make a cold build take seconds once crates are
    fetched)."""
    if rust_tool("cargo") is None:
        pytest.skip("Rust is not installed (no $CARGO, no `cargo` on PATH or in ~/.cargo/bin)")
    if not wasip1_available():
        pytest.skip("rustc lacks the wasm32-wasip1 target and there is no rustup to add it")
    build_example_filters("rust-headers", timeout=600)


@pytest.fixture(scope="session")
def _session_module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("module-cache")


@pytest.fixture(autouse=True)
def _module_cache(
    rust_filter: None, _session_module_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(_session_module_cache))
    yield


def unique() -> str:
    # Metrics are kept per filter name for the whole process: a fresh name counts from 0.
    return f"rust-{uuid.uuid4().hex[:8]}"


def rust_toml(
    upstreams: dict[str, list[str]],
    config: dict[str, Any],
    *,
    name: str = "w",
    module: Path = WASM,
    extra: str = "",
) -> str:
    lines = f"config = {toml_value(config)}\n{extra}" if config else extra
    return wasm_toml(upstreams, module, name=name, extra=lines)


def counter(filter_name: str, name: str) -> int:
    found = metrics.wasm_metrics(filter_name).get(("counter", name))
    return found.value if found is not None else 0


def test_the_module_is_a_rust_sdk_build() -> None:
    """What the crate exports: ABI 0.2.1 and WASI's reactor entry point, which the
    gateway must call before any proxy_on_* callback."""
    from core.wasm.vm import compile_module

    compiled, _ = compile_module(WASM.read_bytes(), source="rust-headers")
    exports = {e.name for e in compiled.exports}
    assert {"memory", "_initialize", "proxy_abi_version_0_2_1"} <= exports
    assert {"proxy_on_memory_allocate", "proxy_on_http_call_response"} <= exports
    imports = {(i.module, i.name) for i in compiled.imports}
    assert ("env", "proxy_set_effective_context") in imports


async def test_headers_are_set_and_removed_both_ways(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    config = {
        "request_add": {"x-team": "blue", "x-env": "prod"},
        "request_remove": ["x-secret"],
        "response_add": {"x-served-by": "rust-headers"},
        "response_remove": ["x-internal"],
    }
    gw = await start_gateway(rust_toml({"v1": [upstream.address]}, config))
    async with http.get(
        gw.url + "/orders?h=x-internal:yes", headers={"x-secret": "s3", "x-env": "dev"}
    ) as resp:
        assert resp.status == 200
        client = lower(resp.headers)
    seen = upstream.requests[-1].headers
    assert (seen.get("x-team"), seen.get("x-env"), seen.get("x-secret")) == ("blue", "prod", None)
    assert client.get("x-served-by") == "rust-headers"
    assert "x-internal" not in client


@pytest.mark.parametrize(
    ("check_path", "status", "reaches_upstream"),
    [
        pytest.param("/status/200", 200, True, id="200-resumes"),
        pytest.param("/status/401", 403, False, id="401-denies-403"),
    ],
)
async def test_the_auth_callout_pauses_then_resumes_or_denies(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    check_path: str,
    status: int,
    reaches_upstream: bool,
) -> None:
    name = unique()
    config = {
        "request_add": {"x-checked": "yes"},
        "response_add": {"x-served-by": "rust-headers"},
        "auth_cluster": "auth",
        "auth_path": check_path,
        "auth_timeout_ms": 2000,
    }
    gw = await start_gateway(
        rust_toml(
            {"v1": [upstream.address], "auth": [upstream2.address]},
            config,
            name=name,
            extra="limits = { pause_timeout = 3 }",
        )
    )
    timeout = aiohttp.ClientTimeout(total=5)
    async with http.get(gw.url + "/orders/1", timeout=timeout) as resp:
        assert resp.status == status
        body = await resp.read()
        client = lower(resp.headers)
    check = upstream2.requests
    assert [(r.method, r.path_qs, r.headers.get("host")) for r in check] == [
        ("GET", check_path, "auth")
    ]
    if reaches_upstream:
        assert [r.path_qs for r in upstream.requests] == ["/orders/1"]
        assert upstream.requests[0].headers.get("x-checked") == "yes"
        assert client.get("x-served-by") == "rust-headers"
        assert counter(name, "rust_headers_denied") == 0
    else:
        assert upstream.requests == []
        assert body == b"forbidden by rust-headers\n"
        assert client.get("x-rust-headers") == "denied"
        assert counter(name, "rust_headers_denied") == 1
    assert counter(name, "rust_headers_requests") == 1


@pytest.mark.parametrize(
    "cluster",
    [
        pytest.param("nowhere", id="unknown-cluster"),
        pytest.param("down", id="nothing-listening"),
    ],
)
async def test_a_callout_that_cannot_be_answered_gives_503_without_hanging(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    cluster: str,
) -> None:
    name = unique()
    config = {"auth_cluster": cluster, "auth_path": "/check", "auth_timeout_ms": 1000}
    gw = await start_gateway(
        rust_toml(
            {"v1": [upstream.address], "down": [f"127.0.0.1:{free_port()}"]},
            config,
            name=name,
            extra="limits = { pause_timeout = 3 }",
        )
    )
    for _ in range(2):  # the filter's instance survives the first one
        async with http.get(gw.url + "/orders/1", timeout=aiohttp.ClientTimeout(total=5)) as resp:
            assert resp.status == 503
            assert await resp.read() == b"auth service unavailable\n"
            assert resp.headers.get("x-rust-headers") == "denied"
    assert upstream.requests == []
    assert counter(name, "rust_headers_denied") == 2


async def test_the_counter_shows_on_the_metrics_endpoint(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    name = unique()
    gw = await start_gateway(rust_toml({"v1": [upstream.address]}, {}, name=name))
    for _ in range(3):
        async with http.get(gw.url + "/abc") as resp:
            assert resp.status == 200
    assert counter(name, "rust_headers_requests") == 3
    text = metrics.render(None, local=True).decode()
    series = f'wasmgate_wasm_filter_counter_total{{filter="{name}",metric="rust_headers_requests"}}'
    values = [line.rpartition(" ")[2] for line in text.splitlines() if line.startswith(series)]
    assert [float(v) for v in values] == [3.0], text


def test_a_config_outside_the_manifest_schema_is_refused_at_load(tmp_path: Path) -> None:
    toml = rust_toml({"v1": ["127.0.0.1:9"]}, {"request_add": {"Bad Name": "x"}})
    problems = load_problems(tmp_path, toml)
    assert len(problems) == 1 and problems[0].startswith("filters.w:"), problems
    assert "config.request_add" in problems[0]


def test_a_config_the_filter_rejects_in_on_configure_is_refused_at_load(tmp_path: Path) -> None:
    """Without its manifest (a bare copy of the module) only the filter itself checks
    the config: its on_configure returns false, and the load fails."""
    bare = tmp_path / "bare.wasm"
    shutil.copyfile(WASM, bare)
    toml = rust_toml({"v1": ["127.0.0.1:9"]}, {"auth_timeout_ms": 0}, module=bare)
    problems = load_problems(tmp_path, toml)
    assert len(problems) == 1 and problems[0].startswith("filters.w:"), problems
    assert "configur" in problems[0], problems


async def test_a_client_gone_while_paused_does_not_trap_the_filter(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client leaves while its request waits for the callout; when the answer
    comes, the SDK must not be handed a context the host has already forgotten (its
    ``set_effective_context(..).unwrap()`` would panic and trap)."""
    caplog.set_level("WARNING")
    name = unique()
    config = {"auth_cluster": "auth", "auth_path": "/delay/0.5", "auth_timeout_ms": 3000}
    gw = await start_gateway(
        rust_toml(
            {"v1": [upstream.address], "auth": [upstream2.address]},
            config,
            name=name,
            extra="limits = { pause_timeout = 5 }",
        )
    )
    with pytest.raises(TimeoutError):
        async with http.get(gw.url + "/gone", timeout=aiohttp.ClientTimeout(total=0.2)):
            pass
    await asyncio.sleep(1.0)  # the callout answers after 0.5 s
    async with http.get(gw.url + "/next", timeout=aiohttp.ClientTimeout(total=5)) as resp:
        assert resp.status == 200
    assert [r.path_qs for r in upstream2.requests] == ["/delay/0.5", "/delay/0.5"]
    assert [r.path_qs for r in upstream.requests] == ["/next"]
    traps = [r.getMessage() for r in caplog.records if "trap" in r.getMessage().lower()]
    assert traps == []
