"""The example Proxy-Wasm filters in ``plugins/wasm/`` — ``as-headers`` (AssemblyScript,
proxy-runtime 0.1.8, ABI 0.2.0) and ``c-filter`` (C with zig, ABI 0.2.1) — built from
their sources by ``plugins/wasm/build.py`` and run end to end through the real gateway,
then in process through :func:`plugin_sdk.testing.make_wasm_filter`, as plugin authors
test theirs. Each filter's ``manifest.json`` (its config's JSON Schema) is found beside
its ``build/`` folder, as the gateway finds it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core import metrics
from core.config import loads_config
from core.errors import ConfigError, PluginError
from core.gateway import Snapshot
from core.metrics import WasmMetric
from plugin_sdk import Response
from plugin_sdk.testing import make_request, make_wasm_filter, run_filter
from tests.conftest import StartGateway
from tests.harness import (
    RecordingUpstream,
    build_example_filters,
    free_port,
    parse_responses,
    raw_request,
)
from tests.test_wasm_host import wasm_toml

EXAMPLES = Path(__file__).resolve().parent.parent / "plugins" / "wasm"
AS_HEADERS = EXAMPLES / "as-headers" / "build" / "filter.wasm"
C_FILTER = EXAMPLES / "c-filter" / "build" / "filter.wasm"


@pytest.fixture(scope="session")
def example_filters() -> None:
    """Builds both examples once per session (build.py skips up-to-date ones)."""
    build_example_filters("as-headers", "c-filter")


@pytest.fixture(scope="session")
def _session_module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("module-cache")


@pytest.fixture(autouse=True)
def _module_cache(
    example_filters: None, _session_module_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # One cache for the file: each example compiles once, later loads deserialize.
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(_session_module_cache))
    yield


def toml_config(config: dict[str, Any]) -> str:
    """``config = { ... }`` as a TOML line (strings and integers only)."""
    items = ", ".join(f"{k} = {json.dumps(v)}" for k, v in config.items())
    return f"config = {{ {items} }}"


def example_toml(
    upstreams: dict[str, list[str]],
    module: Path,
    config: dict[str, Any],
    *,
    name: str = "w",
    extra: str = "",
) -> str:
    """Filter ``name`` on every path but ``/plain`` (see :func:`wasm_toml`)."""
    return wasm_toml(upstreams, module, name=name, extra=f"{toml_config(config)}\n{extra}")


def load_problems(tmp_path: Path, toml: str) -> list[str]:
    """The problems a configuration is refused with ([] if it loads)."""
    source = tmp_path / "gateway.toml"
    source.write_text(toml)
    try:
        snapshot = Snapshot(loads_config(toml, str(source)), str(source))
    except ConfigError as err:
        return list(err.problems)
    snapshot.close()
    return []


def filter_counter(filter_name: str, name: str) -> WasmMetric:
    """The counter ``name`` filter ``filter_name`` defined (what /metrics exports)."""
    found = metrics.wasm_metrics(filter_name).get(("counter", name))
    assert found is not None, f"filter {filter_name!r} has no counter {name!r}"
    return found


def unique(prefix: str) -> str:
    # Shared data is keyed by the plugin's vm_id (its name) and outlives a gateway.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ====================================================================== as-headers


@pytest.mark.parametrize(
    ("config", "request_headers", "response_headers"),
    [
        pytest.param({}, {"x-wasm": "as"}, {"x-wasm-filter": "as-headers"}, id="defaults"),
        pytest.param(
            {
                "request_header": "x-team",
                "request_value": "blue",
                "response_header": "x-served-by",
                "response_value": "edge-7",
            },
            {"x-team": "blue", "x-wasm": None},
            {"x-served-by": "edge-7", "x-wasm-filter": None},
            id="configured",
        ),
    ],
)
async def test_as_headers_adds_request_and_response_headers(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    config: dict[str, Any],
    request_headers: dict[str, str | None],
    response_headers: dict[str, str | None],
) -> None:
    gw = await start_gateway(example_toml({"v1": [upstream.address]}, AS_HEADERS, config))
    async with http.get(gw.url + "/hello") as resp:
        assert resp.status == 200
        client = {k.lower(): v for k, v in resp.headers.items()}
    seen = upstream.requests[-1].headers
    assert {k: seen.get(k) for k in request_headers} == request_headers
    assert {k: client.get(k) for k in response_headers} == response_headers
    async with http.get(gw.url + "/plain") as resp:  # the route without the filter
        assert resp.status == 200
        assert not {k for k in response_headers if k in resp.headers}
    assert not {k for k in request_headers if k in upstream.requests[-1].headers}


async def test_as_headers_denies_a_path_prefix_locally(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        example_toml({"v1": [upstream.address]}, AS_HEADERS, {"deny_path_prefix": "/admin"})
    )
    async with http.get(gw.url + "/admin/users") as resp:
        assert resp.status == 403
        assert resp.headers["content-type"].startswith("text/plain")
        assert await resp.text() == "denied by as-headers: path /admin/users is denied\n"
    assert upstream.requests == []
    async with http.get(gw.url + "/public") as resp:
        assert resp.status == 200
    assert [r.path_qs for r in upstream.requests] == ["/public"]


@pytest.mark.parametrize(
    ("call_path", "status", "reaches_upstream"),
    [
        pytest.param("/status/200", 200, True, id="2xx-continues"),
        pytest.param("/status/500", 403, False, id="500-denies"),
    ],
)
async def test_as_headers_http_call_gates_the_request(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    call_path: str,
    status: int,
    reaches_upstream: bool,
) -> None:
    config = {"call_upstream": "auth", "call_path": call_path, "call_timeout_ms": 2000}
    gw = await start_gateway(
        example_toml(
            {"v1": [upstream.address], "auth": [upstream2.address]},
            AS_HEADERS,
            config,
            extra="limits = { pause_timeout = 3 }",  # a lost resume fails fast
        )
    )
    async with http.get(gw.url + "/orders/1") as resp:
        assert resp.status == status
        body = await resp.text()
    # The call went through the gateway's upstream "auth": the second server.
    assert [(r.method, r.path_qs, r.headers["host"]) for r in upstream2.requests] == [
        ("GET", call_path, "auth")
    ]
    if reaches_upstream:
        assert [r.path_qs for r in upstream.requests] == ["/orders/1"]
        assert upstream.requests[0].headers["x-wasm"] == "as"
    else:
        assert upstream.requests == []
        assert body == "denied by as-headers: upstream check returned 500\n"


async def test_as_headers_http_call_to_a_dead_upstream_gives_503(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    config = {"call_upstream": "auth", "call_path": "/check", "call_timeout_ms": 1000}
    gw = await start_gateway(
        example_toml(
            {"v1": [upstream.address], "auth": [f"127.0.0.1:{free_port()}"]},
            AS_HEADERS,
            config,
            extra="limits = { pause_timeout = 3 }",
        )
    )
    async with http.get(gw.url + "/orders/1") as resp:
        assert resp.status == 503
        assert await resp.text() == "denied by as-headers: upstream check unavailable\n"
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param(
            {"request_header": "X Bad"},
            "config.request_header: 'X Bad' does not match",
            id="pattern",
        ),
        pytest.param(
            {"call_timeout_ms": 0}, "config.call_timeout_ms: 0 is less than", id="minimum"
        ),
        pytest.param({"tick_ms": "1s"}, "config.tick_ms: '1s' is not of type 'integer'", id="type"),
        pytest.param({"call_path": "check"}, "config.call_path: 'check' does not match", id="path"),
        pytest.param({"deny": "/x"}, "'deny' was unexpected", id="unknown-field"),
    ],
)
def test_as_headers_bad_config_is_refused_at_load(
    tmp_path: Path, config: dict[str, Any], error: str
) -> None:
    problems = load_problems(tmp_path, example_toml({"v1": ["127.0.0.1:9"]}, AS_HEADERS, config))
    assert len(problems) == 1, problems
    assert problems[0].startswith("filters.w:")
    assert error in problems[0]


async def test_as_headers_ticks_count_while_the_gateway_runs(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    name = unique("as")
    gw = await start_gateway(
        example_toml({"v1": [upstream.address]}, AS_HEADERS, {"tick_ms": 10}, name=name)
    )
    ticks = filter_counter(name, "as_headers_ticks")
    before = ticks.value
    await asyncio.sleep(0.3)
    async with http.get(gw.url + "/alive") as resp:  # ticks do not get in the way
        assert resp.status == 200
    during = ticks.value
    assert during - before >= 5  # 30 periods in 0.3 s; a slow machine still gets 5
    await gw.stop()
    stopped = ticks.value
    await asyncio.sleep(0.1)
    assert ticks.value == stopped  # the timer went with the gateway
    assert metrics.wasm_metrics(name) == {}  # and its metrics with its VM


# ====================================================================== c-filter


@pytest.mark.parametrize(
    ("config", "header"),
    [
        pytest.param({}, "x-block", id="default-header"),
        pytest.param({"deny_header": "x-evil"}, "x-evil", id="configured-header"),
    ],
)
async def test_c_filter_denies_a_header_with_its_body(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    config: dict[str, Any],
    header: str,
) -> None:
    gw = await start_gateway(
        example_toml({"v1": [upstream.address]}, C_FILTER, config, name=unique("c"))
    )
    async with http.get(gw.url + "/x", headers={header: "1"}) as resp:
        assert resp.status == 403
        assert resp.headers["content-type"] == "text/plain"
        assert await resp.read() == b"blocked by c-filter\n"
    assert upstream.requests == []
    async with http.get(gw.url + "/x") as resp:
        assert resp.status == 200
        assert resp.headers["x-c-filter"] == "c-filter"
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("body_to", "bodies"),
    [
        pytest.param("UPSTREAM", '["response"]', id="same-length"),
        pytest.param("UPSTREAM-REWRITTEN", '["response"]', id="longer"),
        pytest.param("up", '["response"]', id="shorter"),
        pytest.param("UPSTREAM-REWRITTEN", None, id="default-bodies-go-to-its-callbacks"),
        pytest.param("UPSTREAM", "[]", id="not-asked-streams-unchanged"),
        # c-filter removes Content-Length (it expects to change the length) but the body
        # streams unchanged: the gateway must still frame it with the upstream's length.
        pytest.param("up", "[]", id="not-asked-shorter-streams-unchanged"),
    ],
)
async def test_c_filter_rewrites_the_response_body(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    body_to: str,
    bodies: str | None,
) -> None:
    config = {"body_from": "upstream", "body_to": body_to}
    gw = await start_gateway(
        example_toml(
            {"v1": [upstream.address]},
            C_FILTER,
            config,
            name=unique("c"),
            extra="" if bodies is None else f"bodies = {bodies}",
        )
    )
    # Two requests on one keep-alive connection: each response must be framed exactly.
    get = b"GET /echo HTTP/1.1\r\nHost: example.test\r\n"
    raw = await raw_request(gw.port, get + b"\r\n" + get + b"Connection: close\r\n\r\n")
    responses = await parse_responses(raw)
    assert [r.status for r in responses] == [200, 200]
    for resp in responses:
        echo = json.loads(resp.body)
        if bodies == "[]":
            assert echo["upstream"] == "v1"  # streamed past the filter, unchanged
        else:
            assert echo[body_to] == "v1"
            assert b"upstream" not in resp.body
            # the gateway sets Content-Length for a body that a filter changed
            assert resp.header("content-length") == str(len(resp.body))
        assert resp.header("x-c-filter") == "c-filter"


async def test_c_filter_counts_requests_in_shared_data(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        example_toml(
            {"v1": [upstream.address]}, C_FILTER, {"count_header": "x-count"}, name=unique("c")
        )
    )
    for _ in range(3):
        async with http.get(gw.url + "/n") as resp:
            assert resp.status == 200
    assert [r.headers.get("x-count") for r in upstream.requests] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param(
            {"deny_header": "X-Block"}, "config.deny_header: 'X-Block' does not match", id="pattern"
        ),
        pytest.param({"tick_ms": -1}, "config.tick_ms: -1 is less than the minimum", id="minimum"),
        pytest.param({"body_from": "x" * 256}, "config.body_from: ", id="too-long"),
    ],
)
def test_c_filter_bad_config_is_refused_by_the_schema(
    tmp_path: Path, config: dict[str, Any], error: str
) -> None:
    problems = load_problems(tmp_path, example_toml({"v1": ["127.0.0.1:9"]}, C_FILTER, config))
    assert len(problems) == 1, problems
    assert problems[0].startswith("filters.w:")
    assert error in problems[0]


def test_c_filter_bad_config_is_refused_by_the_module(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A manifest without a schema lets the config through to proxy_on_configure.
    (tmp_path / "no-schema.json").write_text("{}")
    toml = example_toml(
        {"v1": ["127.0.0.1:9"]}, C_FILTER, {"deny_header": 5}, extra='manifest = "no-schema.json"'
    )
    problems = load_problems(tmp_path, toml)
    assert len(problems) == 1, problems
    assert problems[0].startswith("filters.w:")
    assert "rejected its configuration" in problems[0]
    logged = [r.getMessage() for r in caplog.records if r.name == "wasmgate.wasm.w"]
    assert any(m.startswith("c-filter: invalid configuration") for m in logged), logged


# ====================================================================== in process


def test_as_headers_in_process() -> None:
    flt = make_wasm_filter(AS_HEADERS, {"deny_path_prefix": "/admin"}, root_id="as-headers")
    ok = run_filter(flt, make_request("GET", "/hello"), response=Response(200))
    assert ok.reply is None
    assert ok.request.headers.get("x-wasm") == "as"
    assert ok.headers.get("x-wasm-filter") == "as-headers"
    denied = run_filter(flt, make_request("GET", "/admin/x"))
    assert denied.reply is not None
    assert denied.status == 403
    assert denied.reply.body_bytes() == b"denied by as-headers: path /admin/x is denied\n"


def test_as_headers_in_process_has_no_upstreams_to_call() -> None:
    # In process there are no gateway upstreams: proxy_http_call is refused (BAD_ARGUMENT)
    # and the filter answers as it does for a failed call.
    flt = make_wasm_filter(AS_HEADERS, {"call_upstream": "auth"})
    result = run_filter(flt, make_request("GET", "/x"), response=Response(200))
    assert result.status == 503
    assert result.reply is not None
    assert result.reply.body_bytes() == b"denied by as-headers: upstream check unavailable\n"


def test_c_filter_in_process() -> None:
    flt = make_wasm_filter(C_FILTER, {"count_header": "x-count"}, name=unique("c"))
    counts = []
    for _ in range(2):
        result = run_filter(flt, make_request("GET", "/x"), response=Response(200))
        assert result.reply is None
        assert result.headers.get("x-c-filter") == "c-filter"
        counts.append(result.request.headers.get("x-count"))
    assert counts == ["1", "2"]
    denied = run_filter(flt, make_request("GET", "/x", headers={"x-block": "1"}))
    assert denied.status == 403
    assert denied.reply is not None
    assert denied.reply.body_bytes() == b"blocked by c-filter\n"


@pytest.mark.parametrize(
    ("path", "config", "error"),
    [
        pytest.param(AS_HEADERS, {"tick_ms": -5}, "config.tick_ms", id="as-headers"),
        pytest.param(C_FILTER, {"count_header": "X Y"}, "config.count_header", id="c-filter"),
    ],
)
def test_bad_config_in_process(path: Path, config: dict[str, Any], error: str) -> None:
    with pytest.raises(PluginError) as err:
        make_wasm_filter(path, config)
    assert error in str(err.value)
