"""gRPC from Proxy-Wasm, proven with a module the Rust SDK built: plugins/wasm/rust-grpc
(the ``proxy-wasm`` crate from crates.io, built in the test run like rust-headers).

One gateway, one grpcio server behind an ``h2c`` upstream, and the filter driven by
request headers (see its lib.rs): a unary ``dispatch_grpc_call`` whose reply becomes a
request header (a gRPC error: 403); streams opened with ``open_grpc_stream``, messages
sent, the local side ended by an end_stream send or ``close_grpc_stream``, replies,
metadata and the close status answered back; a stream the filter cancels; one the
server ends with an error; an unknown cluster; a unary call cancelled with the HTTP
context that made it; request trailers, held (StopIteration) for a gRPC call, under
a short per_try_timeout and past pause_timeout; body and trailer callbacks in
Envoy's order both ways; response trailers held for a call, and a local reply after
the response head (a reset).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core.chain import PluginRegistry
from core.gateway import Gateway, Snapshot
from plugin_sdk import Filter, PluginConfig
from tests.h2client import H2Client
from tests.harness import InProcessGateway, RecordingUpstream, build_example_filters, free_port
from tests.test_upstream_h2 import TrailerEcho
from tests.test_wasm_rust import rust_tool, wasip1_available

grpc = pytest.importorskip("grpc")

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODULE = Path(__file__).resolve().parent.parent / "plugins" / "wasm" / "rust-grpc"
WASM = MODULE / "build" / "filter.wasm"


def wait_while_active(context: Any, seconds: float = 8) -> None:
    """Until the call is cancelled (or ``seconds`` passed)."""
    deadline = time.monotonic() + seconds
    while context.is_active() and time.monotonic() < deadline:
        time.sleep(0.02)


@dataclass
class Backend:
    """pkg.Echo on grpcio: what it saw, and whether a stream was cancelled under it."""

    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    slow_started: threading.Event = field(default_factory=threading.Event)
    slow_cancelled: threading.Event = field(default_factory=threading.Event)

    def _note(self, name: str, context: Any) -> None:
        self.seen.append((name, dict(context.invocation_metadata())))

    def unary(self, request: bytes, context: Any) -> bytes:
        self._note("Unary", context)
        if request == b"fail":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no entry")
        if request.startswith(b"sleep:"):  # a slow reply: "sleep:<seconds>"
            time.sleep(float(request[6:]))
        return b"hello " + request

    def bidi(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        self._note("Bidi", context)
        context.send_initial_metadata((("x-hello", "hi"),))
        for r in requests:
            yield r.upper()
        context.set_trailing_metadata((("x-trail", "done"),))

    def fail(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        self._note("Fail", context)
        for r in requests:
            yield b"got " + r
            break
        context.abort(grpc.StatusCode.NOT_FOUND, "gone away")

    def slow(self, request: bytes, context: Any) -> bytes:
        self.slow_started.set()
        wait_while_active(context)
        if not context.is_active():
            self.slow_cancelled.set()
        return b"late"

    def feed(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for r in requests:
            yield b"feed:" + r

    def after_slow(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        self.slow_started.wait(5)  # so the unary call is in flight when both are cancelled
        yield from self.forever(requests, context)

    def forever(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        self._note("Forever", context)
        try:
            yield b"first"
            wait_while_active(context)
        finally:  # (grpcio drops the generator of a cancelled call at the yield)
            if not context.is_active():
                self.cancelled.set()

    def handler(self) -> Any:
        return grpc.method_handlers_generic_handler(
            "pkg.Echo",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
                "Feed": grpc.stream_stream_rpc_method_handler(self.feed),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
                "Fail": grpc.stream_stream_rpc_method_handler(self.fail),
                "Forever": grpc.stream_stream_rpc_method_handler(self.forever),
                "AfterSlow": grpc.stream_stream_rpc_method_handler(self.after_slow),
            },
        )


class WholeBody(Filter[PluginConfig]):
    """A Python filter that reads both bodies whole: the Proxy-Wasm filter after it then
    gets each body in one body callback."""

    request_body = True
    response_body = True


TOML = """
[server]
listen = ["127.0.0.1:0"]
access_log = "off"

[[upstreams]]
name = "grpc"
endpoints = ["127.0.0.1:{grpc}"]
protocol = "h2c"

[[upstreams]]
name = "rec"
endpoints = ["{rec}"]

[[upstreams]]
name = "echo"
endpoints = ["127.0.0.1:{echo}"]
protocol = "h2c"

[[upstreams]]
name = "echo-len"
endpoints = ["127.0.0.1:{echo_len}"]
protocol = "h2c"

[[upstreams]]
name = "echo-quick"
endpoints = ["127.0.0.1:{echo}"]
protocol = "h2c"
per_try_timeout = 0.3

[[upstreams]]
name = "down"
endpoints = ["127.0.0.1:{dead}"]
protocol = "h2c"
retries = 0

[[routes]]
name = "trailers"
paths = ["/t"]
upstream = "echo"
filters = ["rg"]

[[routes]]
name = "with-length"
paths = ["/tl"]
upstream = "echo-len"
filters = ["rg"]

[[routes]]
name = "held-quick"
paths = ["/held"]
upstream = "echo-quick"
filters = ["rg"]

[[routes]]
name = "held-short"
paths = ["/short"]
upstream = "echo-quick"
filters = ["rg-short"]

[[routes]]
name = "whole"
paths = ["/whole"]
upstream = "echo"
filters = ["whole-body", "rg"]

[[routes]]
name = "all"
paths = ["/"]
upstream = "rec"
filters = ["rg"]

[filters.rg]
wasm = "{wasm}"
config = {{ cluster = "grpc", service = "pkg.Echo", feed = "Feed" }}

[filters.rg-short]
wasm = "{wasm}"
config = {{ cluster = "grpc", service = "pkg.Echo" }}
limits = {{ pause_timeout = 0.5 }}
"""


class LengthTrailerEcho(TrailerEcho):
    """TrailerEcho whose responses carry a content-length and trailers after it."""

    with_length = True


@dataclass
class Served:
    gw: InProcessGateway
    backend: Backend
    rec: RecordingUpstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    if rust_tool("cargo") is None:
        pytest.skip("Rust is not installed (no $CARGO, no `cargo` on PATH or in ~/.cargo/bin)")
    if not wasip1_available():
        pytest.skip("rustc lacks the wasm32-wasip1 target and there is no rustup to add it")
    await asyncio.to_thread(build_example_filters, "rust-grpc", timeout=600)
    base = tmp_path_factory.mktemp("rust-grpc")
    cache = os.environ.get("WASMGATE_CACHE_DIR")
    os.environ["WASMGATE_CACHE_DIR"] = str(base / "module-cache")
    backend = Backend()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((backend.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    rec = await RecordingUpstream().start()
    echo = await asyncio.get_running_loop().create_server(TrailerEcho, "127.0.0.1", 0)
    echo_len = await asyncio.get_running_loop().create_server(LengthTrailerEcho, "127.0.0.1", 0)
    text = TOML.format(
        grpc=port,
        rec=rec.address,
        echo=echo.sockets[0].getsockname()[1],
        echo_len=echo_len.sockets[0].getsockname()[1],
        wasm=WASM,
        dead=free_port(),
    )
    gw = InProcessGateway(text)
    registry = PluginRegistry({"whole-body": WholeBody})
    gw.gateway = Gateway(Snapshot(gw.config, "test.toml", registry), asyncio.get_running_loop())
    await gw.gateway.start()
    yield Served(gw, backend, rec)
    await gw.stop()
    await rec.stop()
    echo.close()
    echo_len.close()
    server.stop(0)
    if cache is None:
        del os.environ["WASMGATE_CACHE_DIR"]
    else:
        os.environ["WASMGATE_CACHE_DIR"] = cache


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


async def get(served: Served, headers: dict[str, str]) -> Reply:
    """GET / over HTTP/1.1 with ``headers``: the filter's cue."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.gw.port)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET /r HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{lines}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    first, *rest = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in rest:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return Reply(int(first.split()[1]), fields, body)


# -- unary: dispatch_grpc_call


async def test_a_unary_call_reply_becomes_a_request_header(served: Served) -> None:
    reply = await get(served, {"x-grpc-call": "unary", "x-grpc-name": "bob"})
    assert reply.status == 200
    assert served.rec.requests[-1].headers["x-grpc-reply"] == "hello bob"
    name, metadata = served.backend.seen[-1]
    assert name == "Unary" and metadata["x-from"] == "rust-grpc"


async def test_a_unary_call_is_cancelled_when_its_http_context_ends(served: Served) -> None:
    """As in Envoy, a call an HTTP context made is cancelled when the context ends:
    here the filter calls pkg.Echo/Slow, then answers 503 itself (its stream to an
    unknown cluster fails), and the request is over while the call is in flight."""
    served.backend.slow_started.clear()
    served.backend.slow_cancelled.clear()
    cue = {"x-grpc-call": "stream", "x-grpc-also-slow": "1", "x-grpc-cluster": "nope"}
    reply = await get(served, cue)
    assert reply.status == 503
    cancelled = await asyncio.to_thread(served.backend.slow_cancelled.wait, 1.5)
    # Cancelled on the server, or before it reached it (without the cancel, Slow runs
    # for 8 s).
    assert cancelled or not served.backend.slow_started.is_set()


async def test_a_unary_call_error_status_answers_403(served: Served) -> None:
    reply = await get(served, {"x-grpc-call": "unary", "x-grpc-name": "fail"})
    assert reply.status == 403
    assert reply.body == b"denied: 7 no entry\n"


# -- streams: open_grpc_stream and the rest


@pytest.mark.parametrize(
    ("cue", "body", "status", "initial", "trailing"),
    [
        pytest.param(
            # An empty send with end_stream is an empty message, then END_STREAM (Envoy).
            {"x-grpc-send": "one,two,three"},
            b"ONE|TWO|THREE|",
            "0",
            "hi",
            "done",
            id="end-stream",
        ),
        pytest.param(
            {"x-grpc-send": "a,b", "x-grpc-end": "close"}, b"A|B", "0", "hi", "done", id="close"
        ),
        pytest.param({"x-grpc-send": ""}, b"", "0", "hi", "done", id="no-messages"),
        pytest.param(
            {"x-grpc-send": "x,y", "x-grpc-method": "Fail"},
            b"got x",
            "5",
            "",
            "",
            id="server-error",
        ),
        # Its side still open when the server closed: it closes it then (OK, as in Envoy).
        pytest.param(
            {"x-grpc-send": "z", "x-grpc-method": "Fail", "x-grpc-end": "none"},
            b"got z",
            "5",
            "",
            "",
            id="server-error-close-after",
        ),
    ],
)
async def test_a_stream_sends_and_receives(
    served: Served, cue: dict[str, str], body: bytes, status: str, initial: str, trailing: str
) -> None:
    reply = await get(served, {"x-grpc-call": "stream", **cue})
    assert reply.status == 200, reply.body
    assert reply.body == body
    assert reply.headers["x-stream-status"] == status
    assert reply.headers["x-stream-initial"] == initial
    assert reply.headers["x-stream-trailing"] == trailing
    if status == "5":
        assert reply.headers["x-stream-message"] == "gone away"
    assert served.backend.seen[-1][1]["x-from"] == "rust-grpc"


async def test_a_stream_the_filter_cancels_is_reset_upstream(served: Served) -> None:
    served.backend.cancelled.clear()
    cue = {"x-grpc-call": "stream", "x-grpc-method": "Forever", "x-grpc-end": "none"}
    reply = await get(served, {**cue, "x-grpc-cancel-after": "1"})
    assert reply.status == 200
    assert reply.body == b"first"
    assert reply.headers["x-stream-message"] == "cancelled by the filter"
    assert await asyncio.to_thread(served.backend.cancelled.wait, 5)


async def test_cancelling_a_unary_call_resets_it_upstream(served: Served) -> None:
    """cancel_grpc_call on a call in flight (pkg.Echo/Slow, cancelled with the stream)."""
    served.backend.slow_started.clear()
    served.backend.slow_cancelled.clear()
    cue = {"x-grpc-call": "stream", "x-grpc-method": "AfterSlow", "x-grpc-end": "none"}
    reply = await get(served, {**cue, "x-grpc-cancel-after": "1", "x-grpc-also-slow": "1"})
    assert reply.status == 200
    assert reply.body == b"first"
    assert await asyncio.to_thread(served.backend.slow_cancelled.wait, 5)


async def test_the_root_context_streams_from_plugin_start(served: Served) -> None:
    """With `feed` set, the root context opens pkg.Echo/Feed on its first tick and
    sends "start"; its reply reaches the root context's on_grpc_stream_message."""
    deadline = time.monotonic() + 5
    while True:
        reply = await get(served, {"x-grpc-call": "feed"})
        if reply.body or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert reply.status == 200
    assert reply.body == b"feed:start"


async def test_a_stream_that_cannot_connect_closes_unavailable(served: Served) -> None:
    reply = await get(served, {"x-grpc-call": "stream", "x-grpc-cluster": "down"})
    assert reply.status == 200
    assert reply.headers["x-stream-status"] == "14"
    assert reply.body == b""


async def test_a_stream_to_an_unknown_cluster_fails_at_once(served: Served) -> None:
    """As in Envoy, the open itself fails (ParseFailure: the name is neither a cluster
    nor a serialized GrpcService), not a later close."""
    reply = await get(served, {"x-grpc-call": "stream", "x-grpc-cluster": "nope"})
    assert reply.status == 503
    assert reply.body == b"grpc stream failed: ParseFailure\n"


# -- request trailers, in a real SDK build


async def test_request_trailers_read_edited_and_held_for_a_grpc_call(served: Served) -> None:
    """on_http_request_trailers copies x-check; with x-hold it stops the trailers
    (StopIteration) until a unary call's reply is added to them."""
    client = await H2Client.open(served.gw.port)
    try:
        for trailers, expected in (
            ([("x-check", "1")], {"echo-x-check": "1", "echo-x-check-seen": "1"}),
            ([("x-hold", "ann")], {"echo-x-hold": "ann", "echo-x-held-reply": "hello ann"}),
        ):
            sid = client.start("POST", "/t", end=False)
            await client.send_body(sid, b"abc", end=False)
            client.conn.send_headers(sid, trailers, end_stream=True)
            await client.flush()
            result = await client.wait(sid)
            assert result.status == 200
            assert bytes(result.body) == b"3"
            assert dict(result.trailers) == expected
    finally:
        client.close()


# -- body and trailer callbacks in Envoy's order, both ways


async def trailer_exchange(
    served: Served,
    trailers: list[tuple[str, str]],
    headers: list[tuple[str, str]] | None = None,
    path: str = "/t",
    pause: float = 0.0,
) -> Any:
    """POST ``abc`` over HTTP/2 with ``trailers`` after it; the stream's result.
    ``pause``: seconds between the head, the body and the trailers (so that the
    body reaches the body callbacks as it streams, and the trailers later)."""
    client = await H2Client.open(served.gw.port)
    try:
        sid = client.start("POST", path, headers=headers or [], end=False)
        if pause:
            await client.flush()
            await asyncio.sleep(pause)
        await client.send_body(sid, b"abc", end=False)
        if pause:
            await client.flush()
            await asyncio.sleep(pause)
        client.conn.send_headers(sid, trailers, end_stream=True)
        await client.flush()
        return await client.wait(sid)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("headers", "request_calls", "response_calls"),
    [
        pytest.param([], "3/false", "1/false", id="continue"),
        # StopIterationAndBuffer on every chunk before the end: the last data is held
        # for the trailer callback, whose Continue lets body and trailers go.
        pytest.param(
            [("x-buffer-body", "1"), ("x-buffer-resp-body", "1")],
            "3/false",
            "1/false",
            id="buffered",
        ),
    ],
)
@pytest.mark.parametrize(
    "path", ["/t", "/whole", "/tl"], ids=["streamed", "read-whole", "content-length"]
)
async def test_trailers_follow_a_body_as_in_envoy(
    served: Served,
    headers: list[tuple[str, str]],
    request_calls: str,
    response_calls: str,
    path: str,
) -> None:
    """With trailers after the body, the last body callback says end_of_stream =
    false and the trailer callback comes after it (no body callback for the end):
    on_http_request_trailers and on_http_response_trailers list the body callbacks
    they saw before them. The same when a Python filter read the bodies whole, and
    when both bodies have a content-length (the HTTP/2 request, and the h2 upstream's
    response): the last byte of the length is not the end, END_STREAM is."""
    pause = 0.0
    if path == "/tl":  # the trailers a moment after the body, both ways
        headers, pause = [*headers, ("content-length", "3")], 0.05
    result = await trailer_exchange(served, [("x-order", "1")], headers, path, pause)
    assert result.status == 200
    assert bytes(result.body) == b"3"  # the upstream got the whole body
    trailers = dict(result.trailers)
    assert trailers["echo-x-body-calls"] == request_calls
    assert trailers["x-resp-body-calls"] == response_calls


async def test_response_trailers_held_for_a_grpc_call(served: Served) -> None:
    """StopIteration from on_http_response_trailers holds the trailers and the end of
    the response until the filter resumes it (after a unary call's reply)."""
    result = await trailer_exchange(served, [("x-hold-resp", "zoe")])
    assert result.status == 200 and result.reset is None
    assert bytes(result.body) == b"3"
    assert dict(result.trailers)["x-held-resp-reply"] == "hello zoe"


async def test_response_trailers_held_over_http1_chunked(served: Served) -> None:
    """The same hold to an HTTP/1.1 client that takes trailers: the last chunk waits."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.gw.port)
    writer.write(
        b"POST /t HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTE: trailers\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-hold-resp: amy\r\n\r\n"
    )
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200"), data
    _, _, trailer_section = data.partition(b"\r\n0\r\n")
    assert b"x-held-resp-reply: hello amy\r\n" in trailer_section, data


async def test_a_local_reply_from_response_trailers_resets_the_response(served: Served) -> None:
    """The head went already: as in Envoy, the stream is reset, not given a 403."""
    result = await trailer_exchange(served, [("x-deny-resp", "1")])
    assert result.status == 200
    assert result.reset is not None
    assert not result.ended


# -- a request whose end a filter holds: bounded by pause_timeout, not the upstream's


async def test_a_held_request_end_does_not_run_the_per_try_timeout(served: Served) -> None:
    """The trailers wait 0.8 s for a gRPC call on an upstream whose per_try_timeout is
    0.3 s: the upstream is timed from the moment the end went, not blamed for the hold."""
    result = await trailer_exchange(served, [("x-hold", "sleep:0.8")], path="/held")
    assert result.status == 200, bytes(result.body)
    assert dict(result.trailers)["echo-x-held-reply"] == "hello sleep:0.8"
    assert served.gw.gateway is not None
    pool = served.gw.gateway.snapshot.pools["echo-quick"]
    assert [ep.failures for ep in pool.endpoints] == [0]  # not blamed


async def test_a_hold_past_pause_timeout_fails_the_filter(served: Served) -> None:
    """Held past the filter's pause_timeout (0.5 s): the filter failed (fail closed:
    500 naming it), not the upstream (no 504)."""
    result = await trailer_exchange(served, [("x-hold", "sleep:1.5")], path="/short")
    assert result.status == 500
    assert bytes(result.body) == b"filter rg-short failed\n"


# -- the client leaves: the HTTP context ends at once, as in Envoy


def rg_vm(served: Served) -> Any:
    assert served.gw.gateway is not None
    for inst in served.gw.gateway.snapshot.filters():
        if inst.name == "rg":
            return inst.filter.vm
    raise AssertionError("no filter rg")


async def settle(check: Any, seconds: float = 2.0) -> bool:
    """Whether ``check()`` becomes true within ``seconds`` (the bug waits for the
    call or stream to end: 4 to 8 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return bool(check())


async def test_a_client_leaving_a_paused_request_cancels_its_grpc_call_and_stream(
    served: Served,
) -> None:
    """The filter pauses the request on an open stream (AfterSlow, which the server
    keeps open for 8 s) and a unary call (Slow, 8 s); the client leaves. The context
    ends at once: the stream is reset and the call cancelled on the server, and the
    VM keeps no context, call or stream."""
    backend = served.backend
    backend.cancelled.clear()
    backend.slow_cancelled.clear()
    backend.slow_started.clear()
    seen = len(backend.seen)
    vm = rg_vm(served)
    cue = {
        "x-grpc-call": "stream",
        "x-grpc-method": "AfterSlow",
        "x-grpc-also-slow": "1",
        "x-grpc-end": "none",
    }
    _reader, writer = await asyncio.open_connection("127.0.0.1", served.gw.port)
    lines = "".join(f"{k}: {v}\r\n" for k, v in cue.items())
    writer.write(f"GET /r HTTP/1.1\r\nHost: t\r\n{lines}\r\n".encode())
    await writer.drain()
    assert await settle(lambda: any(n == "Forever" for n, _ in backend.seen[seen:]), 5)
    assert backend.slow_started.is_set()
    owned = [s for s in vm.grpc_streams.values() if s.owner is not None]  # (not the root's)
    assert len(vm.streams) == 1 and len(owned) == 1 and vm.grpc_calls
    writer.close()
    assert await settle(lambda: not vm.streams), "the HTTP context outlived its client"
    cancelled = await asyncio.to_thread(backend.cancelled.wait, 2)
    slow_cancelled = await asyncio.to_thread(backend.slow_cancelled.wait, 2)
    assert cancelled and slow_cancelled
    assert not [s for s in vm.grpc_streams.values() if s.owner is not None]
    assert not vm.grpc_calls and not vm.grpc_call_owners


async def test_a_client_leaving_held_response_trailers_ends_the_context(served: Served) -> None:
    """Response trailers held (StopIteration) for a unary call that takes 4 s; the
    HTTP/2 client goes away: the context ends at once, and the call with it."""
    vm = rg_vm(served)
    seen = len(served.backend.seen)
    client = await H2Client.open(served.gw.port)
    try:
        sid = client.start("POST", "/t", end=False)
        await client.send_body(sid, b"abc", end=False)
        client.conn.send_headers(sid, [("x-hold-resp", "sleep:4")], end_stream=True)
        await client.flush()

        def calling() -> bool:
            return any(n == "Unary" for n, _ in served.backend.seen[seen:])

        assert await settle(calling, 5)
        assert len(vm.streams) == 1 and vm.grpc_calls
    finally:
        client.close()
    assert await settle(lambda: not vm.streams), "the HTTP context outlived its client"
    assert await settle(lambda: not vm.grpc_calls and not vm.grpc_call_owners)
