"""The Go example filters (plugins/wasm/go-*, higress-demo): built from their sources
with Go >= 1.24 (wasip1, c-shared) by ``plugins/wasm/build.py``, then run through the
real gateway against real upstreams on 127.0.0.1: headers, bodies rewritten per chunk
as they stream, an auth callout that pauses, ticks, metrics on /metrics, shared data
with CAS, and a Higress wasm-go plugin calling services by their Envoy cluster names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core import metrics
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, build_example_filters, free_port
from tests.test_wasm_host import wasm_toml

EXAMPLES = Path(__file__).resolve().parent.parent / "plugins" / "wasm"
GO_FILTERS = ("go-headers", "go-body", "go-auth", "go-tick", "go-metrics", "go-shared")
ALL = (*GO_FILTERS, "higress-demo")


def go_binary() -> str | None:
    """Where plugins/wasm/build.py looks for Go: $GO, PATH, /usr/local/go/bin/go."""
    for candidate in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def module(name: str) -> Path:
    return EXAMPLES / name / "build" / "filter.wasm"


@pytest.fixture(scope="session")
def go_filters() -> None:
    """Builds every Go filter once per session (build.py skips up-to-date ones; the Go
    caches in .cache/go/ make a rebuild take seconds)."""
    if go_binary() is None:
        pytest.skip("Go >= 1.24 is not installed (no $GO, no `go` on PATH, no /usr/local/go)")
    build_example_filters(*ALL, timeout=600)


@pytest.fixture(scope="session")
def _session_module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("module-cache")


@pytest.fixture(autouse=True)
def _module_cache(
    go_filters: None, _session_module_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # One compiled-module cache for the file: each 3-6 MB module compiles once.
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(_session_module_cache))
    yield


def go_toml(
    upstreams: dict[str, list[str]],
    name: str,
    config: dict[str, Any],
    *,
    filter_name: str = "w",
    extra: str = "",
) -> str:
    """Go filter ``name`` as ``[filters.<filter_name>]`` on every path but /plain."""
    lines = f"config = {toml_value(config)}\n{extra}" if config else extra
    return wasm_toml(upstreams, module(name), name=filter_name, extra=lines)


def toml_value(value: Any) -> str:
    """``value`` as one line of TOML (inline tables, arrays, strings, numbers)."""
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def unique(prefix: str) -> str:
    # Shared data is keyed by the VM (the filter's name) and outlives one gateway.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class BodyUpstream:
    """An upstream that echoes request bodies (POST /echo), streams a response in two
    chunks with a pause between them (GET /stream, the second chunk once ``release``
    is set), and answers GET /tag with a one-line tag."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.bodies: list[bytes] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> BodyUpstream:
        app = web.Application()
        app.router.add_post("/echo", self._echo)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/tag", self._tag)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        return web.Response(body=body, content_type="text/plain")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"hello world\n")
        # A buffering host: the client never sees the first chunk, so stop waiting.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), 5)
        await resp.write(b"bye world\n")
        await resp.write_eof()
        return resp

    async def _tag(self, request: web.Request) -> web.Response:
        self.bodies.append(b"")
        return web.Response(text="gold\nignored second line\n")


@pytest.fixture
async def bodies_upstream() -> AsyncIterator[BodyUpstream]:
    up = await BodyUpstream().start()
    yield up
    await up.stop()


def lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


# ====================================================================== loading


@pytest.mark.parametrize("name", ALL)
def test_every_go_module_loads_and_exports_the_abi(name: str) -> None:
    """Each module loads in the gateway's own loader, Go's repeated WASI imports and
    all (before the loader fix every one was refused: 'cannot define
    wasi_snapshot_preview1.fd_write')."""
    from core.wasm.vm import Instance, compile_module

    wasm = module(name).read_bytes()
    compiled, _ = compile_module(wasm, source=name)
    imports = [(i.module, i.name) for i in compiled.imports]
    assert ("wasi_snapshot_preview1", "fd_write") in imports
    marker = "proxy_abi_version_0_2_100" if name == "higress-demo" else "proxy_abi_version_0_2_0"
    exports = {e.name for e in compiled.exports}
    assert {"memory", marker, "proxy_on_request_headers"} <= exports
    instance = Instance(compiled, lambda *_: None, memory_limit=64 << 20, deadline_ms=1000)
    assert instance.has("proxy_on_context_create")
    instance.close()


# ====================================================================== go-headers


async def test_go_headers_adds_and_removes_headers_both_ways(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="wasmgate.wasm.w")
    config = {
        "request_add": {"x-team": "blue", "x-env": "prod"},
        "request_remove": ["x-secret"],
        "response_add": {"x-served-by": "go-headers"},
        "response_remove": ["x-internal"],
    }
    gw = await start_gateway(go_toml({"v1": [upstream.address]}, "go-headers", config))
    async with http.get(
        gw.url + "/orders?h=x-internal:yes", headers={"x-secret": "s3", "x-env": "dev"}
    ) as resp:
        assert resp.status == 200
        client = lower(resp.headers)
    seen = upstream.requests[-1].headers
    assert (seen.get("x-team"), seen.get("x-env"), seen.get("x-secret")) == ("blue", "prod", None)
    assert client.get("x-served-by") == "go-headers"
    assert "x-internal" not in client
    logs = [r.getMessage() for r in caplog.records if r.name == "wasmgate.wasm.w"]
    assert "go-headers: GET /orders?h=x-internal:yes" in logs


def test_go_headers_bad_config_is_refused_at_load(tmp_path: Path) -> None:
    from tests.test_wasm_examples import load_problems

    toml = go_toml({"v1": ["127.0.0.1:9"]}, "go-headers", {"request_add": {"Bad Name": "x"}})
    problems = load_problems(tmp_path, toml)
    assert len(problems) == 1 and problems[0].startswith("filters.w:"), problems
    assert "config.request_add" in problems[0]


# ====================================================================== go-body


async def test_go_body_rewrites_buffered_request_and_response_bodies(
    bodies_upstream: BodyUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    config = {"from": "world", "to": "there"} | {
        "request_trailer": "+req",
        "response_trailer": "+resp",
    }
    gw = await start_gateway(
        go_toml(
            {"v1": [bodies_upstream.address]},
            "go-body",
            config,
            extra='bodies = ["request", "response"]',
        )
    )
    async with http.post(gw.url + "/echo", data=b"hello world, world") as resp:
        assert resp.status == 200
        body = await resp.read()
    assert bodies_upstream.bodies == [b"hello there, there+req"]
    assert body == b"hello there, there+req+resp"


async def test_go_body_rewrites_each_chunk_as_the_response_streams(
    bodies_upstream: BodyUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    config = {"from": "world", "to": "there", "response_trailer": "-- end\n"}
    gw = await start_gateway(
        go_toml({"v1": [bodies_upstream.address]}, "go-body", config, extra='bodies = ["response"]')
    )
    # The headers and the first chunk, rewritten, arrive while the upstream still holds
    # the second chunk (it waits up to 5 s for the client to have read the first).
    async with asyncio.timeout(3):
        resp = await http.get(gw.url + "/stream")
        first = await resp.content.readuntil(b"\n")
    bodies_upstream.release.set()
    async with resp:
        assert resp.status == 200
        rest = await resp.content.read()
    assert (first, rest) == (b"hello there\n", b"bye there\n-- end\n")


# ====================================================================== go-auth


@pytest.mark.parametrize(
    ("check_path", "status", "reaches_upstream"),
    [
        pytest.param("/status/200", 200, True, id="200-resumes"),
        pytest.param("/status/401", 403, False, id="401-denies-403"),
    ],
)
async def test_go_auth_pauses_for_the_callout_then_resumes_or_denies(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    check_path: str,
    status: int,
    reaches_upstream: bool,
) -> None:
    config = {"cluster": "auth", "path": check_path, "timeout_ms": 2000}
    gw = await start_gateway(
        go_toml(
            {"v1": [upstream.address], "auth": [upstream2.address]},
            "go-auth",
            config,
            extra="limits = { pause_timeout = 3 }",
        )
    )
    async with http.get(gw.url + "/orders/1", headers={"authorization": "Bearer t0k"}) as resp:
        assert resp.status == status
        body = await resp.read()
        client = lower(resp.headers)
    check = upstream2.requests
    assert [(r.method, r.path_qs, r.headers.get("host")) for r in check] == [
        ("GET", check_path, "auth")
    ]
    assert check[0].headers.get("authorization") == "Bearer t0k"
    if reaches_upstream:
        assert [r.path_qs for r in upstream.requests] == ["/orders/1"]
    else:
        assert upstream.requests == []
        assert body == b"forbidden by go-auth\n"
        assert client.get("x-go-auth") == "denied"


async def test_go_auth_without_an_answer_gives_503(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    config = {"cluster": "auth", "path": "/check", "timeout_ms": 1000}
    gw = await start_gateway(
        go_toml(
            {"v1": [upstream.address], "auth": [f"127.0.0.1:{free_port()}"]},
            "go-auth",
            config,
            extra="limits = { pause_timeout = 3 }",
        )
    )
    async with http.get(gw.url + "/orders/1") as resp:
        assert resp.status == 503
    assert upstream.requests == []


def metric_value(filter_name: str, kind: str, name: str) -> int:
    """What filter ``filter_name`` counts in its metric ``name`` (0 before it defines it)."""
    found = metrics.wasm_metrics(filter_name).get((kind, name))
    return found.value if found is not None else 0


# ====================================================================== go-tick


async def test_go_tick_counts_ticks_in_shared_data_and_a_metric(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        go_toml(
            {"v1": [upstream.address]},
            "go-tick",
            {"tick_ms": 20, "header": "x-ticks"},
            filter_name=(name := unique("tick")),
        )
    )
    before = metric_value(name, "counter", "go_tick_ticks")
    await asyncio.sleep(0.4)
    async with http.get(gw.url + "/x") as resp:
        assert resp.status == 200
        ticks = int(resp.headers["x-ticks"])
    assert ticks >= 5  # 20 periods in 0.4 s; a loaded machine still gets 5
    assert metric_value(name, "counter", "go_tick_ticks") - before >= 5


# ====================================================================== go-metrics


async def test_go_metrics_updates_its_metrics_per_request(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    prefix = "gm_" + uuid.uuid4().hex[:8]
    gw = await start_gateway(go_toml({"v1": [upstream.address]}, "go-metrics", {"prefix": prefix}))
    seen = []
    for _ in range(3):
        async with http.get(gw.url + "/abc") as resp:
            assert resp.status == 200
            seen.append(resp.headers["x-go-metrics-requests"])
    assert seen == ["1", "2", "3"]  # read back from the host with proxy_get_metric
    assert metric_value("w", "counter", f"{prefix}_requests") == 3
    assert metric_value("w", "gauge", f"{prefix}_in_flight") == 0  # +1 per request, -1 when done


async def test_go_metrics_show_on_the_metrics_endpoint(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    prefix = "gm_" + uuid.uuid4().hex[:8]
    gw = await start_gateway(go_toml({"v1": [upstream.address]}, "go-metrics", {"prefix": prefix}))
    async with http.get(gw.url + "/abc") as resp:
        assert resp.status == 200
    text = metrics.render(None, local=True).decode()
    assert f"{prefix}_requests" in text


# ====================================================================== go-shared


async def test_go_shared_numbers_concurrent_requests_once_each(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    key = unique("requests")
    gw = await start_gateway(go_toml({"v1": [upstream.address]}, "go-shared", {"key": key}))

    async def one() -> str:
        async with http.get(gw.url + "/n") as resp:
            assert resp.status == 200
            return resp.headers["x-go-shared-count"]

    answered = await asyncio.gather(*(one() for _ in range(20)))
    upstream_saw = [r.headers["x-go-shared-count"] for r in upstream.requests]
    assert sorted(map(int, answered)) == list(range(1, 21))
    assert sorted(answered) == sorted(upstream_saw)


async def test_go_shared_counter_is_shared_by_filters_of_one_vm_id(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    """Two gateways' filters with the same name (one vm_id) count in one place."""
    key = unique("requests")
    name = unique("shared")
    toml = go_toml({"v1": [upstream.address]}, "go-shared", {"key": key}, filter_name=name)
    first = await start_gateway(toml)
    second = await start_gateway(toml)
    counts = []
    for gw in (first, second, first):
        async with http.get(gw.url + "/n") as resp:
            counts.append(resp.headers["x-go-shared-count"])
    assert counts == ["1", "2", "3"]


# ====================================================================== higress-demo


async def test_higress_demo_tags_requests_from_its_callout(
    upstream: RecordingUpstream,
    bodies_upstream: BodyUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="wasmgate.wasm.w")
    config = {
        "service": {"type": "target", "name": "tags"},
        "path": "/tag",
        "header": "x-tier",
        "block_paths": ["/admin"],
    }
    gw = await start_gateway(
        go_toml(
            {"v1": [upstream.address], "tags": [bodies_upstream.address]},
            "higress-demo",
            config,
            extra="limits = { pause_timeout = 3 }",
        )
    )
    async with http.get(gw.url + "/orders") as resp:
        assert resp.status == 200
    assert upstream.requests[-1].headers.get("x-tier") == "gold"
    async with http.get(gw.url + "/admin/users") as resp:
        assert resp.status == 403
        assert resp.headers.get("x-higress-demo") == "blocked"
    assert [r.path_qs for r in upstream.requests] == ["/orders"]
    logs = [r.getMessage() for r in caplog.records if r.name == "wasmgate.wasm.w"]
    assert any("higress-demo: calling /tag on tags" in m for m in logs), logs
    assert any('higress-demo: /orders tagged "gold"' in m for m in logs), logs


async def test_higress_demo_denies_when_the_service_refuses(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    config = {"service": {"name": "tags"}, "path": "/status/500"}
    gw = await start_gateway(
        go_toml(
            {"v1": [upstream.address], "tags": [upstream2.address]},
            "higress-demo",
            config,
            extra="limits = { pause_timeout = 3 }",
        )
    )
    async with http.get(gw.url + "/orders") as resp:
        assert resp.status == 403
        assert resp.headers.get("x-higress-demo") == "denied"
    assert upstream.requests == []


@pytest.mark.parametrize("kind", ["fqdn", "static"])
async def test_higress_demo_reaches_a_service_by_its_envoy_cluster_name(
    upstream: RecordingUpstream,
    bodies_upstream: BodyUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    kind: str,
) -> None:
    config = {"service": {"type": kind, "name": "tags", "port": 80}, "path": "/tag"}
    gw = await start_gateway(
        go_toml(
            {"v1": [upstream.address], "tags": [bodies_upstream.address]},
            "higress-demo",
            config,
            extra="limits = { pause_timeout = 3 }",
        )
    )
    async with http.get(gw.url + "/orders") as resp:
        assert resp.status == 200
    assert upstream.requests[-1].headers.get("x-higress-demo") == "gold"
