"""gRPC through the gateway, end to end with grpcio on both sides.

A grpcio server (generic handlers, raw bytes: no generated code) sits behind an
``h2c`` upstream; grpcio clients call it through the gateway's h2c listener. Every
call kind, trailers (status, message, trailing metadata), deadlines, cancellation,
and local replies turned into trailers-only gRPC errors.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from core.chain import PluginRegistry
from core.gateway import Gateway, Snapshot
from plugin_sdk import Context, Filter, Headers, PluginConfig
from tests.h2client import H2Client
from tests.harness import InProcessGateway, RecordingUpstream, free_port
from tests.test_wasm_host import wasm_file

grpc = pytest.importorskip("grpc")

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Service:
    """pkg.Echo: what it saw, and whether calls were cancelled under it."""

    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def _note(self, name: str, context: Any) -> None:
        self.seen.append((name, dict(context.invocation_metadata())))

    def unary(self, request: bytes, context: Any) -> bytes:
        self._note("Unary", context)
        if request == b"fail":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        context.set_trailing_metadata((("x-trail", "yes"),))
        return b"echo:" + request

    def slow(self, request: bytes, context: Any) -> bytes:
        context.add_callback(self.cancelled.set)
        deadline = time.monotonic() + 5
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)
        return b"late"

    def server_stream(self, request: bytes, context: Any) -> Iterator[bytes]:
        context.add_callback(self.cancelled.set)
        for i in range(int(request)):
            yield b"%d" % i
            if int(request) > 100:
                time.sleep(0.01)

    def client_stream(self, requests: Iterator[bytes], context: Any) -> bytes:
        return b"%d" % sum(len(r) for r in requests)

    def bidi(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for r in requests:
            yield r.upper()

    def handler(self) -> Any:
        return grpc.method_handlers_generic_handler(
            "pkg.Echo",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
                "Tapped": grpc.unary_unary_rpc_method_handler(self.unary),
                "Wasm": grpc.unary_unary_rpc_method_handler(self.unary),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
            },
        )


class TrailerTap(Filter[PluginConfig]):
    """Reads the upstream's trailers (it asks for the body, so they are there) and
    adds one."""

    Config = PluginConfig
    response_body = True
    seen: ClassVar[list[list[tuple[str, str]]]] = []
    versions: ClassVar[list[str]] = []

    def on_response(self, ctx: Context) -> None:
        TrailerTap.versions.append(ctx.request.http_version)
        trailers = ctx.response.trailers
        TrailerTap.seen.append(list(trailers.items()) if trailers is not None else [])
        if trailers is None:
            trailers = ctx.response.trailers = Headers()
        trailers.set("x-tapped", "yes")


@dataclass
class Served:
    gw: InProcessGateway
    service: Service
    direct: int  # the grpcio server's own port
    rec: RecordingUpstream  # an HTTP/1.1 upstream, for what a filter sends on

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gw.port}"


TOML = """
[server]
listen = ["127.0.0.1:0"]
access_log = "off"

[[upstreams]]
name = "grpc"
endpoints = ["127.0.0.1:{port}"]
protocol = "h2c"

[[upstreams]]
name = "down"
endpoints = ["127.0.0.1:{dead}"]
protocol = "h2c"
retries = 0

[[routes]]
name = "echo"
paths = ["/pkg.Echo/"]
upstream = "grpc"

[[routes]]
name = "tapped"
paths = [{{ path = "/pkg.Echo/Tapped", match = "exact" }}]
upstream = "grpc"
filters = ["trailer-tap"]

[[routes]]
name = "wasm"
paths = [{{ path = "/pkg.Echo/Wasm", match = "exact" }}]
upstream = "grpc"
filters = ["trailers"]

[filters.trailers]
wasm = "{wasm}"

[[upstreams]]
name = "rec"
endpoints = ["{rec}"]

[[routes]]
name = "wasm-grpc"
paths = ["/wasm-grpc"]
upstream = "rec"
filters = ["grpccall"]

[filters.grpccall]
wasm = "{grpccall}"

[[routes]]
name = "wasm-flood"
paths = ["/wasm-flood"]
upstream = "rec"
filters = ["flood"]

[filters.flood]
wasm = "{flood}"
limits = {{ max_buffer_bytes = 262144 }}

[[routes]]
name = "keyed"
paths = ["/pkg.Keyed/"]
upstream = "grpc"
filters = ["keys"]

[filters.keys]
plugin = "key-auth"
config.consumers = [{{ name = "a", key = "k-1234567890abcdef" }}]

[[routes]]
name = "denied"
paths = ["/pkg.Denied/"]
upstream = "grpc"
filters = [{{ plugin = "ip-restriction", config = {{ deny = ["127.0.0.0/8"] }} }}]

[[routes]]
name = "limited"
paths = ["/pkg.Limited/"]
upstream = "grpc"
filters = [{{ plugin = "rate-limit", config = {{ rate = 1, per = 60.0 }} }}]

[[routes]]
name = "down"
paths = ["/pkg.Down/"]
upstream = "down"
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    base = tmp_path_factory.mktemp("grpc")
    cache = os.environ.get("WASMGATE_CACHE_DIR")
    os.environ["WASMGATE_CACHE_DIR"] = str(base / "module-cache")
    wasm = wasm_file(base, "trailers.wat")
    grpccall = wasm_file(base, "grpc_call.wat")
    flood = wasm_file(base, "stream_flood.wat")
    rec = await RecordingUpstream().start()
    service = Service()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    text = TOML.format(
        port=port, dead=free_port(), wasm=wasm, grpccall=grpccall, flood=flood, rec=rec.address
    )
    gw = InProcessGateway(text)
    registry = PluginRegistry({"trailer-tap": TrailerTap})
    gw.gateway = Gateway(Snapshot(gw.config, "test.toml", registry), asyncio.get_running_loop())
    await gw.gateway.start()
    yield Served(gw, service, port, rec)
    await gw.stop()
    await rec.stop()
    server.stop(0)
    if cache is None:
        del os.environ["WASMGATE_CACHE_DIR"]
    else:
        os.environ["WASMGATE_CACHE_DIR"] = cache


async def call(target: str, fn: Callable[[Any], Any]) -> Any:
    """Run a blocking grpcio client call off the loop the gateway serves on."""

    def run() -> Any:
        with grpc.insecure_channel(target) as channel:
            return fn(channel)

    return await asyncio.to_thread(run)


async def test_unary_with_trailing_metadata(served: Served) -> None:
    def fn(ch: Any) -> Any:
        method = ch.unary_unary("/pkg.Echo/Unary")
        return method.with_call(b"hi", metadata=(("x-in", "1"),), timeout=5)

    reply, rpc = await call(served.target, fn)
    assert reply == b"echo:hi"
    assert ("x-trail", "yes") in tuple(rpc.trailing_metadata())
    assert rpc.code() == grpc.StatusCode.OK
    name, metadata = served.service.seen[-1]
    assert name == "Unary" and metadata["x-in"] == "1"
    assert metadata["x-forwarded-for"] == "127.0.0.1"


async def test_an_error_status_and_message_pass_through(served: Served) -> None:
    def fn(ch: Any) -> Any:
        try:
            ch.unary_unary("/pkg.Echo/Unary")(b"fail", timeout=5)
        except grpc.RpcError as err:
            return err.code(), err.details()
        return None

    assert await call(served.target, fn) == (grpc.StatusCode.NOT_FOUND, "no such thing")


async def test_server_streaming(served: Served) -> None:
    got = await call(
        served.target, lambda ch: list(ch.unary_stream("/pkg.Echo/ServerStream")(b"50", timeout=5))
    )
    assert got == [b"%d" % i for i in range(50)]


async def test_client_streaming(served: Served) -> None:
    chunks = [b"x" * 1000] * 300  # 300 kB up: past the windows
    method = "/pkg.Echo/ClientStream"
    got = await call(served.target, lambda ch: ch.stream_unary(method)(iter(chunks), timeout=10))
    assert got == b"300000"


async def test_bidirectional_streaming(served: Served) -> None:
    words = [b"a", b"bb", b"ccc"] * 20
    got = await call(
        served.target, lambda ch: list(ch.stream_stream("/pkg.Echo/Bidi")(iter(words), timeout=5))
    )
    assert got == [w.upper() for w in words]


async def test_a_deadline_ends_the_call_and_cancels_it_upstream(served: Served) -> None:
    served.service.cancelled.clear()

    def fn(ch: Any) -> Any:
        try:
            ch.unary_unary("/pkg.Echo/Slow")(b"", timeout=0.3)
        except grpc.RpcError as err:
            return err.code()
        return None

    assert await call(served.target, fn) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await asyncio.to_thread(served.service.cancelled.wait, 3)


async def test_cancelling_a_stream_cancels_it_upstream(served: Served) -> None:
    served.service.cancelled.clear()

    def fn(ch: Any) -> Any:
        stream = ch.unary_stream("/pkg.Echo/ServerStream")(b"1000", timeout=10)
        first = [next(stream) for _ in range(3)]
        stream.cancel()
        return first

    assert await call(served.target, fn) == [b"0", b"1", b"2"]
    assert await asyncio.to_thread(served.service.cancelled.wait, 3)


@pytest.mark.parametrize(
    ("method", "metadata", "code"),
    [
        ("/pkg.Keyed/Unary", (), "UNAUTHENTICATED"),
        ("/pkg.Denied/Unary", (), "PERMISSION_DENIED"),
        ("/pkg.Nowhere/Unary", (), "UNIMPLEMENTED"),
        ("/pkg.Down/Unary", (), "UNAVAILABLE"),
    ],
    ids=["401-key-auth", "403-ip-restriction", "404-no-route", "502-upstream-down"],
)
async def test_local_replies_are_trailers_only_grpc_errors(
    served: Served, method: str, metadata: tuple[tuple[str, str], ...], code: str
) -> None:
    def fn(ch: Any) -> Any:
        try:
            ch.unary_unary(method)(b"x", metadata=metadata, timeout=5)
        except grpc.RpcError as err:
            return err.code(), err.details()
        return None

    got, details = await call(served.target, fn)
    assert got == getattr(grpc.StatusCode, code), details
    # The gateway's reason in grpc-message, not grpcio's guess from an HTTP status.
    assert details and "http2 header with status" not in details


async def test_rate_limit_is_resource_exhausted(served: Served) -> None:
    def fn(ch: Any) -> Any:
        codes = []
        for _ in range(2):
            try:
                ch.unary_unary("/pkg.Limited/Unary")(b"x", timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                codes.append(err.code())
        return codes

    assert await call(served.target, fn) == [
        grpc.StatusCode.UNIMPLEMENTED,  # passed the limit; pkg.Limited is not served
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ]


def grpc_frame(message: bytes) -> bytes:
    return b"\0" + len(message).to_bytes(4, "big") + message


@pytest.mark.parametrize("path", ["/pkg.Echo/Slow", "/pkg.Echo/ServerStream"])
async def test_the_gateway_enforces_grpc_timeout(served: Served, path: str) -> None:
    """A client that sends grpc-timeout but does not enforce it itself: the gateway
    answers DEADLINE_EXCEEDED and cancels the call upstream."""
    served.service.cancelled.clear()
    client = await H2Client.open(served.gw.port)
    try:
        headers = [("content-type", "application/grpc"), ("te", "trailers")]
        headers.append(("grpc-timeout", "300m"))
        sid = client.start("POST", path, headers=headers, end=False)
        await client.send_body(sid, grpc_frame(b"100000" if "Stream" in path else b""))
        result = await client.wait(sid, timeout=5)
    finally:
        client.close()
    fields = dict(result.headers + result.trailers)
    assert fields["grpc-status"] == "4", result
    assert "grpc-timeout" in fields["grpc-message"]
    assert await asyncio.to_thread(served.service.cancelled.wait, 3)


async def test_a_filter_that_reads_the_body_sees_and_changes_the_trailers(served: Served) -> None:
    def fn(ch: Any) -> Any:
        return ch.unary_unary("/pkg.Echo/Tapped").with_call(b"t", timeout=5)

    reply, rpc = await call(served.target, fn)
    assert reply == b"echo:t"
    trailing = dict(rpc.trailing_metadata())
    assert trailing["x-trail"] == "yes"  # the upstream's
    assert trailing["x-tapped"] == "yes"  # the filter's
    assert ("grpc-status", "0") in TrailerTap.seen[-1]
    assert TrailerTap.versions[-1] == "2"  # the filter sees which protocol the client spoke


async def test_a_proxy_wasm_filter_reads_and_adds_response_trailers(served: Served) -> None:
    """proxy_on_response_trailers runs with the trailer map (tests/wasm_modules/trailers.wat
    copies grpc-status into x-wasm-saw)."""

    def fn(ch: Any) -> Any:
        return ch.unary_unary("/pkg.Echo/Wasm").with_call(b"w", timeout=5)

    reply, rpc = await call(served.target, fn)
    assert reply == b"echo:w"
    trailing = dict(rpc.trailing_metadata())
    assert trailing["x-wasm-saw"] == "0"
    assert trailing["x-trail"] == "yes"


@pytest.mark.parametrize(
    ("message", "callbacks", "status", "reply"),
    [
        pytest.param("hi", "Rh", "0", "echo:hi", id="ok-receive-only"),
        pytest.param("fail", "Ch", "5", None, id="error-close-only"),
    ],
)
async def test_a_proxy_wasm_filter_makes_a_grpc_call(
    served: Served, message: str, callbacks: str, status: str, reply: str | None
) -> None:
    """proxy_grpc_call through the h2c upstream "grpc" (tests/wasm_modules/grpc_call.wat):
    the request waits for the call, then carries its status and reply. As in Envoy, a
    unary call gets proxy_on_grpc_receive alone when it succeeds and proxy_on_grpc_close
    alone when it fails (no metadata callbacks), on the HTTP context that made it."""
    url = f"http://{served.target}/wasm-grpc"

    def get() -> int:
        import urllib.request

        request = urllib.request.Request(url, headers={"x-msg": message})
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)

    assert await asyncio.to_thread(get) == 200
    raw = served.rec.requests[-1].raw_headers

    def values(name: str) -> list[str]:
        return [v for n, v in raw if n.lower() == name]

    assert values("x-grpc-callbacks") == [callbacks]
    assert values("x-grpc-status") == [status]
    assert values("x-grpc-reply") == ([reply] if reply else [])
    assert served.service.seen[-1][0] == "Unary"


async def test_a_grpc_stream_holds_at_most_max_buffer_bytes_unsent(served: Served) -> None:
    """tests/wasm_modules/stream_flood.wat sends twenty 64 KiB messages at once with
    max_buffer_bytes = 256 KiB: three fit (with their 5-byte prefixes), the rest get
    BAD_ARGUMENT, and the request goes on."""
    url = f"http://{served.target}/wasm-flood"

    def get() -> int:
        import urllib.request

        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)

    assert await asyncio.to_thread(get) == 200
    seen = served.rec.requests[-1]
    assert (seen.headers["x-sent"], seen.headers["x-refused"]) == ("3", "17")
