"""W3C Trace Context propagation and OTLP/HTTP span export.

A real gateway on 127.0.0.1 between the test's requests and a recording upstream; the
OTLP collector is a real aiohttp server on 127.0.0.1 that records what is posted.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web

from core.chain import PluginRegistry
from core.config import loads_config
from core.gateway import Gateway, Snapshot
from core.tracecontext import parse_traceparent
from plugin_sdk import Context, Filter, PluginConfig
from tests.harness import RecordingUpstream, free_port, parse_responses, raw_request

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


class TraceEcho(Filter[PluginConfig]):
    """Shows the upstream what a filter sees as the request's trace id."""

    def on_request(self, ctx: Context) -> None:
        ctx.request.headers.set("x-seen-trace-id", ctx.request.trace_id)


class Collector:
    """A fake OTLP/HTTP collector: records each JSON body posted to /v1/traces."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> Collector:
        app = web.Application()
        app.router.add_post("/v1/traces", self._post)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        assert sockets
        self.port = int(sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    async def _post(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        self.posts.append(await request.json())
        return web.Response(status=self.status)

    def spans(self) -> list[dict[str, Any]]:
        return [
            span
            for post in self.posts
            for rs in post["resourceSpans"]
            for ss in rs["scopeSpans"]
            for span in ss["spans"]
        ]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.spans()) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.spans()


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    c = await Collector().start()
    yield c
    await c.stop()


Serve = Callable[[str], Awaitable[Gateway]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    started: list[Gateway] = []

    async def start(toml: str) -> Gateway:
        registry = PluginRegistry({"trace-echo": TraceEcho})
        snap = Snapshot(loads_config(toml, "test.toml"), "test.toml", registry)
        gw = Gateway(snap, asyncio.get_running_loop())
        await gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        if not gw.draining:
            await gw.drain(timeout=1.0)


def config(upstream: RecordingUpstream, tracing: str = "") -> str:
    return f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"

[[upstreams]]
name = "v1"
endpoints = ["{upstream.address}"]

[[routes]]
name = "api"
paths = ["/api"]
upstream = "v1"
filters = ["trace-echo"]

[[routes]]
name = "status"
paths = ["/status"]
upstream = "v1"

{tracing}
"""


async def get(gw: Gateway, path: str, headers: Sequence[tuple[str, str]] = ()) -> int:
    lines = "".join(f"{n}: {v}\r\n" for n, v in headers)
    data = f"GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n{lines}\r\n"
    (resp,) = await parse_responses(await raw_request(gw.sockets[0][1], data.encode()))
    return resp.status


def sent_traceparent(upstream: RecordingUpstream) -> tuple[str, str, str]:
    """(trace id, parent id, flags) of the one traceparent the upstream received."""
    seen = upstream.requests[-1]
    values = [v for n, v in seen.raw_headers if n.lower() == "traceparent"]
    assert len(values) == 1, values
    version, trace_id, parent_id, flags = values[0].split("-")
    assert version == "00"
    assert HEX32.match(trace_id) and trace_id != "0" * 32
    assert HEX16.match(parent_id) and parent_id != "0" * 16
    return trace_id, parent_id, flags


# ---------------------------------------------------------------------- parsing

PARSE_CASES = [
    pytest.param(VALID, (TRACE, PARENT, "01"), id="valid-sampled"),
    pytest.param(f"00-{TRACE}-{PARENT}-00", (TRACE, PARENT, "00"), id="valid-not-sampled"),
    pytest.param(f" {VALID}\t", (TRACE, PARENT, "01"), id="surrounding-whitespace"),
    pytest.param(f"cc-{TRACE}-{PARENT}-01", (TRACE, PARENT, "01"), id="future-version"),
    pytest.param(f"cc-{TRACE}-{PARENT}-01-extra", (TRACE, PARENT, "01"), id="future-with-more"),
    pytest.param(f"cc-{TRACE}-{PARENT}-01extra", None, id="future-without-dash"),
    pytest.param(f"00-{TRACE}-{PARENT}-01-extra", None, id="version-00-too-long"),
    pytest.param(VALID[:-1], None, id="too-short"),
    pytest.param("", None, id="empty"),
    pytest.param(f"ff-{TRACE}-{PARENT}-01", None, id="version-ff"),
    pytest.param(f"00-{'0' * 32}-{PARENT}-01", None, id="zero-trace-id"),
    pytest.param(f"00-{TRACE}-{'0' * 16}-01", None, id="zero-parent-id"),
    pytest.param(f"00-{TRACE.upper()}-{PARENT}-01", None, id="upper-case-hex"),
    pytest.param(f"00-{TRACE[:-1]}g-{PARENT}-01", None, id="non-hex-trace-id"),
    pytest.param(f"00-{TRACE}-{PARENT}-0x", None, id="non-hex-flags"),
    pytest.param(f"0x-{TRACE}-{PARENT}-01", None, id="non-hex-version"),
    pytest.param(f"00-{TRACE[:-1]}-{PARENT}0-01", None, id="dash-in-wrong-place"),
    pytest.param(f"00_{TRACE}_{PARENT}_01", None, id="wrong-separators"),
    pytest.param(f"00-{TRACE[:16]}-{TRACE[17:]}-{PARENT}-01", None, id="extra-dash-in-hex"),
]


@pytest.mark.parametrize(("value", "expected"), PARSE_CASES)
def test_parse_traceparent(value: str, expected: tuple[str, str, str] | None) -> None:
    parsed = parse_traceparent(value.encode("latin-1"))
    if expected is None:
        assert parsed is None
    else:
        assert parsed == tuple(p.encode() for p in expected)


# ---------------------------------------------------------------------- propagation

KEPT = [
    pytest.param([("traceparent", VALID)], "01", id="sampled"),
    pytest.param([("traceparent", f"00-{TRACE}-{PARENT}-00")], "00", id="not-sampled"),
    pytest.param([("TraceParent", VALID), ("tracestate", TRACESTATE)], "01", id="with-tracestate"),
    pytest.param([("tracestate", TRACESTATE), ("traceparent", VALID)], "01", id="tracestate-first"),
    pytest.param([("traceparent", f"cc-{TRACE}-{PARENT}-01-x")], "01", id="future-version"),
]


@pytest.mark.parametrize(("headers", "flags"), KEPT)
async def test_a_valid_traceparent_keeps_its_trace_with_the_gateways_span(
    upstream: RecordingUpstream, serve: Serve, headers: list[tuple[str, str]], flags: str
) -> None:
    gw = await serve(config(upstream))
    assert await get(gw, "/api/x", headers) == 200
    trace_id, parent_id, sent_flags = sent_traceparent(upstream)
    assert (trace_id, sent_flags) == (TRACE, flags)
    assert parent_id != PARENT  # the gateway's own span is the upstream's parent
    seen = upstream.requests[-1]
    assert seen.headers["x-seen-trace-id"] == TRACE
    sent_state = [v for n, v in headers if n == "tracestate"]
    assert [v for n, v in seen.raw_headers if n.lower() == "tracestate"] == sent_state


REPLACED = [
    pytest.param([], id="absent"),
    pytest.param([("traceparent", VALID[:-1])], id="wrong-length"),
    pytest.param([("traceparent", VALID.replace("4bf9", "4bg9"))], id="non-hex"),
    pytest.param([("traceparent", f"00-{'0' * 32}-{PARENT}-01")], id="zero-trace-id"),
    pytest.param([("traceparent", f"00-{TRACE}-{'0' * 16}-01")], id="zero-parent-id"),
    pytest.param([("traceparent", f"ff-{TRACE}-{PARENT}-01")], id="version-ff"),
    pytest.param(
        [("traceparent", VALID), ("traceparent", f"00-{TRACE}-{PARENT}-00")], id="two-headers"
    ),
    pytest.param([("tracestate", TRACESTATE)], id="tracestate-alone"),
    pytest.param(
        [("traceparent", f"00-{'0' * 32}-{PARENT}-00"), ("tracestate", TRACESTATE)],
        id="invalid-with-tracestate",
    ),
]


@pytest.mark.parametrize("headers", REPLACED)
async def test_an_absent_or_invalid_traceparent_starts_a_new_sampled_trace(
    upstream: RecordingUpstream, serve: Serve, headers: list[tuple[str, str]]
) -> None:
    gw = await serve(config(upstream))
    assert await get(gw, "/api/x", headers) == 200
    trace_id, _, flags = sent_traceparent(upstream)
    assert trace_id != TRACE
    assert flags == "01"
    seen = upstream.requests[-1]
    assert seen.headers["x-seen-trace-id"] == trace_id
    assert "tracestate" not in seen.headers  # it belonged to the trace we did not take


async def test_each_request_gets_its_own_span_and_new_traces_differ(
    upstream: RecordingUpstream, serve: Serve
) -> None:
    gw = await serve(config(upstream))
    sent = []
    for headers in ([("traceparent", VALID)], [("traceparent", VALID)], [], []):
        assert await get(gw, "/api/x", headers) == 200
        sent.append(sent_traceparent(upstream))
    assert sent[0][0] == sent[1][0] == TRACE
    assert len({s[1] for s in sent}) == 4  # four spans
    assert len({s[0] for s in sent}) == 3  # the client's trace and two new ones


# ---------------------------------------------------------------------- OTLP export


def attributes(span: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for attr in span["attributes"]:
        ((kind, value),) = attr["value"].items()
        out[attr["key"]] = int(value) if kind == "intValue" else value
    return out


async def test_each_exchange_is_exported_as_one_server_span(
    upstream: RecordingUpstream, collector: Collector, serve: Serve
) -> None:
    tracing = f"""
[tracing]
otlp_endpoint = "{collector.url}"
service_name = "edge"
batch_seconds = 0.05
"""
    gw = await serve(config(upstream, tracing))
    before = time.time_ns()
    assert await get(gw, "/api/items?page=2", [("traceparent", VALID)]) == 200
    first = sent_traceparent(upstream)
    assert await get(gw, "/status/503") == 503
    second = sent_traceparent(upstream)
    assert await get(gw, "/nowhere") == 404
    after = time.time_ns()
    spans = await collector.wait_for(3)
    assert len(spans) == 3
    assert set(collector.content_types) == {"application/json"}
    resource = collector.posts[0]["resourceSpans"][0]["resource"]
    assert {"key": "service.name", "value": {"stringValue": "edge"}} in resource["attributes"]
    by_trace = {s["traceId"]: s for s in spans}

    ok = by_trace[TRACE]
    assert ok["spanId"] == first[1]  # the parent id the upstream was given
    assert ok["parentSpanId"] == PARENT
    assert ok["name"] == "GET api"
    assert ok["kind"] == 2
    assert "status" not in ok
    assert attributes(ok) == {
        "http.request.method": "GET",
        "url.path": "/api/items",
        "url.query": "page=2",  # credentials would read [REDACTED] (tests/test_redact.py)
        "http.route": "api",
        "http.response.status_code": 200,
        "server.address": "shop.test",
        "upstream": "v1",
        "network.peer.address": "127.0.0.1",
    }
    start, end = int(ok["startTimeUnixNano"]), int(ok["endTimeUnixNano"])
    assert before - 50_000_000 <= start <= end <= after + 50_000_000

    failed = by_trace[second[0]]
    assert failed["spanId"] == second[1]
    assert "parentSpanId" not in failed
    assert failed["status"] == {"code": 2}
    assert attributes(failed)["http.response.status_code"] == 503

    (no_route,) = [s for s in spans if s["traceId"] not in (TRACE, second[0])]
    assert HEX32.match(no_route["traceId"]) and HEX16.match(no_route["spanId"])
    assert no_route["name"] == "GET"
    assert attributes(no_route) == {
        "http.request.method": "GET",
        "url.path": "/nowhere",
        "http.response.status_code": 404,
        "server.address": "shop.test",
        "network.peer.address": "127.0.0.1",
    }
    assert gw.tracer is not None and gw.tracer.exported == 3


async def test_sampling_ratio_applies_to_new_traces_and_the_clients_flag_to_its_own(
    upstream: RecordingUpstream, collector: Collector, serve: Serve
) -> None:
    tracing = f"""
[tracing]
otlp_endpoint = "{collector.url}"
sample_ratio = 0.0
batch_seconds = 0.05
"""
    gw = await serve(config(upstream, tracing))
    assert await get(gw, "/api/new") == 200
    assert sent_traceparent(upstream)[2] == "00"
    assert await get(gw, "/api/unsampled", [("traceparent", f"00-{TRACE}-{PARENT}-00")]) == 200
    assert sent_traceparent(upstream)[2] == "00"
    sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert await get(gw, "/api/sampled", [("traceparent", sampled)]) == 200
    await gw.drain(timeout=1.0)  # exports what is queued, then stops
    assert [s["traceId"] for s in collector.spans()] == ["0af7651916cd43dd8448eb211c80319c"]


async def test_a_full_queue_drops_spans_and_counts_them(
    upstream: RecordingUpstream, collector: Collector, serve: Serve
) -> None:
    tracing = f"""
[tracing]
otlp_endpoint = "{collector.url}"
batch_seconds = 3600
max_queue = 2
"""
    gw = await serve(config(upstream, tracing))
    for i in range(5):
        assert await get(gw, f"/api/{i}") == 200
    assert gw.tracer is not None
    assert (len(gw.tracer.queue), gw.tracer.dropped) == (2, 3)
    await gw.drain(timeout=1.0)
    assert [attributes(s)["url.path"] for s in collector.spans()] == ["/api/0", "/api/1"]


@pytest.mark.parametrize("down", ["unreachable", "answers-503"])
async def test_a_failing_collector_never_affects_requests_and_warns_once_a_minute(
    upstream: RecordingUpstream,
    collector: Collector,
    serve: Serve,
    caplog: pytest.LogCaptureFixture,
    down: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="wasmgate.tracing")
    if down == "unreachable":
        url = f"http://127.0.0.1:{free_port()}/v1/traces"
    else:
        collector.status = 503
        url = collector.url
    gw = await serve(config(upstream, f'[tracing]\notlp_endpoint = "{url}"\nbatch_seconds = 0.05'))
    tracer = gw.tracer
    assert tracer is not None
    for batch in (1, 2, 3):
        assert await get(gw, "/api/x") == 200
        deadline = time.monotonic() + 5
        while tracer.failed < batch and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert tracer.failed == batch
    warnings = [r for r in caplog.records if r.name == "wasmgate.tracing"]
    assert len(warnings) == 1
    assert "not exported" in warnings[0].getMessage()
    assert tracer.exported == 0


@pytest.mark.parametrize(
    "tracing", ["", "[tracing]\nsample_ratio = 0.5"], ids=["no-table", "no-endpoint"]
)
async def test_without_an_otlp_endpoint_nothing_is_exported_or_running(
    upstream: RecordingUpstream, serve: Serve, tracing: str
) -> None:
    gw = await serve(config(upstream, tracing))
    assert gw.tracer is None
    assert await get(gw, "/api/x") == 200
    sent_traceparent(upstream)  # propagation does not depend on export
    running = [t.get_coro() for t in asyncio.all_tasks()]
    assert not [c for c in running if "Exporter" in getattr(c, "__qualname__", "")]
