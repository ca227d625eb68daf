"""A Proxy-Wasm HTTP context ends when its client leaves, as Envoy destroys a stream
(core/wasm/context_end.py): whatever the filter waits for, ``proxy_on_done``,
``proxy_on_log`` and ``proxy_on_delete`` run at once, the HTTP call it made is
cancelled (its upstream sees the connection closed), and no live context or task is
left in the VM.

Modules built by the public SDKs where possible: go-auth (proxy-wasm-go-sdk,
``DispatchHttpCall`` then pause) and go-body (body callbacks on a streaming
response); tests/wasm_modules/client_gone.wat logs which callbacks reach which
context. The gRPC cases are in tests/test_wasm_grpc_rust.py (rust-grpc).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, build_example_filters
from tests.test_wasm_go import go_binary, go_toml
from tests.test_wasm_host import plugin_log, start_wasm, wasm_vm


@pytest.fixture(scope="module")
def _go_filters(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if go_binary() is None:
        pytest.skip("Go >= 1.24 is not installed (no $GO, no `go` on PATH, no /usr/local/go)")
    build_example_filters("go-auth", "go-body", timeout=600)
    mp = pytest.MonkeyPatch()
    mp.setenv("WASMGATE_CACHE_DIR", str(tmp_path_factory.mktemp("module-cache")))
    yield
    mp.undo()


class SilentAuth:
    """An auth service that reads each request and never answers: it records the
    requests and when the gateway closed their connection."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.closed: list[float] = []
        self.got = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> SilentAuth:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            self.got.set()
            await reader.read()  # until the gateway closes it: b"" at EOF
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.closed.append(time.monotonic())
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def settle(check: Any, seconds: float = 2.0) -> bool:
    """Whether ``check()`` becomes true within ``seconds`` (generous: the bug waits
    for the callout's timeout or pause_timeout, 10 s and more)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return bool(check())


@pytest.fixture
async def auth() -> AsyncIterator[SilentAuth]:
    server = await SilentAuth().start()
    yield server
    await server.stop()


async def test_client_leaving_a_paused_callout_ends_the_context_and_cancels_the_call(
    _go_filters: None, auth: SilentAuth, upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    """go-auth pauses the request for its DispatchHttpCall; the client leaves. The
    context ends at once (no live context in the VM), the call's connection to the
    auth service is closed, nothing goes upstream, no call task is left; the filter
    still serves the next request."""
    config = {"cluster": "auth", "path": "/check", "timeout_ms": 20000}
    gw = await start_gateway(
        go_toml(
            {"v1": [upstream.address], "auth": [auth.address]},
            "go-auth",
            config,
            extra="limits = { pause_timeout = 20 }",
        )
    )
    vm = wasm_vm(gw)
    _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /orders/1 HTTP/1.1\r\nHost: t\r\n\r\n")
    await asyncio.wait_for(auth.got.wait(), 5)
    assert len(vm.streams) == 1  # paused on the call
    left = time.monotonic()
    writer.close()
    assert await settle(lambda: not vm.streams), "the HTTP context outlived its client"
    assert await settle(lambda: auth.closed), "the callout was not cancelled"
    assert auth.closed[0] - left < 2.0
    assert await settle(lambda: not vm.calls and not vm.http_call_owners)
    assert upstream.requests == []
    assert vm.traps == 0
    # The filter is whole: the next request pauses on its own call as before.
    auth.got.clear()
    _reader2, writer2 = await asyncio.open_connection("127.0.0.1", gw.port)
    writer2.write(b"GET /orders/2 HTTP/1.1\r\nHost: t\r\n\r\n")
    await asyncio.wait_for(auth.got.wait(), 5)
    assert len(vm.streams) == 1
    writer2.close()
    assert await settle(lambda: not vm.streams)


class Drip:
    """An upstream whose response never ends: a chunk every 50 ms; it records when
    the gateway stopped taking it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        self.started.set()
        try:
            for _ in range(600):
                await resp.write(b"drip " * 20)
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            self.stopped.set()
            raise
        return resp


async def test_client_leaving_a_streaming_response_ends_the_body_filter_context(
    _go_filters: None, start_gateway: StartGateway
) -> None:
    """The response streams through go-body's body callbacks; the client reads a bit
    and leaves: the context ends at once and the upstream is let go."""
    drip = Drip()
    app = web.Application()
    app.router.add_get("/{tail:.*}", drip.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        gw = await start_gateway(
            go_toml(
                {"v1": [f"127.0.0.1:{port}"]},
                "go-body",
                {"from": "drip", "to": "DROP"},
            )
        )
        vm = wasm_vm(gw)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /long HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"DROP" not in data:
            data += await asyncio.wait_for(reader.read(4096), 5)
        assert len(vm.streams) == 1
        writer.close()
        assert await settle(lambda: not vm.streams), "the HTTP context outlived its client"
        await asyncio.wait_for(drip.stopped.wait(), 5)
        assert vm.traps == 0
    finally:
        await runner.cleanup()


async def test_no_callback_reaches_the_context_after_its_client_left(
    auth: SilentAuth,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """client_gone.wat pauses on an HTTP call and logs its callbacks: when the client
    leaves, the context gets done, log and delete at once; the cancelled call then
    reaches the root context as a failed call, and the deleted stream cannot be made
    effective again. No stream callback comes after delete."""
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))
    caplog.set_level(logging.INFO, logger="wasmgate.wasm")
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "client_gone.wat",
        {"v1": [upstream.address], "auth": [auth.address]},
        extra="limits = { pause_timeout = 20 }",
    )
    vm = wasm_vm(gw)
    _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    await asyncio.wait_for(auth.got.wait(), 5)
    writer.close()
    assert await settle(lambda: "effective-refused" in plugin_log(caplog)), plugin_log(caplog)
    await asyncio.sleep(0.1)  # (room for a stray callback to show)
    assert plugin_log(caplog) == [
        "paused",
        "done",
        "log",
        "delete",
        "response-root",
        "failed",
        "effective-refused",
    ]
    assert not vm.streams and not vm.calls and auth.closed
    assert upstream.requests == []
