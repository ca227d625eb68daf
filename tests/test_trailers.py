"""Trailers through the gateway, both ways, with real peers over sockets.

One gateway serves every case: an HTTP/2 upstream (a bare h2 server that echoes the
request trailers it got as response trailers ``echo-<name>``), a raw HTTP/1.1
upstream that records the bytes it read, a Python filter that reads the body whole
(so it sees and edits the request trailers), and Proxy-Wasm modules with
``proxy_on_request_trailers`` and ``proxy_on_response_trailers``. Clients are the h2
client helper, raw HTTP/1.1 over a socket, and curl.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import pytest_asyncio

from core.chain import PluginRegistry
from core.gateway import Gateway, Snapshot
from plugin_sdk import Context, Filter, PluginConfig
from plugin_sdk.testing import arun_filter, make_request
from tests.h2client import H2Client
from tests.harness import InProcessGateway
from tests.test_upstream_h2 import TrailerEcho
from tests.test_wasm_host import wasm_file

pytestmark = pytest.mark.asyncio(loop_scope="module")


class TrailerEdit(Filter[PluginConfig]):
    """Reads the body whole, so the request's trailers are there: records them, then
    changes one and adds one."""

    request_body = True
    seen: ClassVar[list[list[tuple[str, str]] | None]] = []

    def on_request(self, ctx: Context) -> None:
        trailers = ctx.request.trailers
        TrailerEdit.seen.append(list(trailers.items()) if trailers is not None else None)
        if trailers is not None:
            trailers.set("x-check", "changed")
            trailers.add("x-added", "yes")


class RawUpstream(asyncio.Protocol):
    """An HTTP/1.1 upstream that keeps the bytes of each request and answers ``ok``
    once a chunked body's end came."""

    got: ClassVar[list[bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        _, sep, rest = self.buf.partition(b"\r\n\r\n")
        if sep and (b"0\r\n" in rest and rest.endswith(b"\r\n\r\n")):
            RawUpstream.got.append(self.buf)
            self.buf = b""
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            self.transport.write(reply)  # type: ignore[attr-defined]


TOML = """
[server]
listen = ["127.0.0.1:0"]
access_log = "off"

[[upstreams]]
name = "echo"
endpoints = ["127.0.0.1:{echo}"]
protocol = "h2c"

[[upstreams]]
name = "raw"
endpoints = ["127.0.0.1:{raw}"]

[[routes]]
name = "plain"
paths = ["/plain"]
upstream = "echo"

[[routes]]
name = "py"
paths = ["/py"]
upstream = "echo"
filters = ["trailer-edit"]

[[routes]]
name = "wasm-req"
paths = ["/wasm-req"]
upstream = "echo"
filters = ["reqt"]

[filters.reqt]
wasm = "{reqt}"

[[routes]]
name = "wasm-resp"
paths = ["/wasm-resp"]
upstream = "echo"
filters = ["respt"]

[filters.respt]
wasm = "{respt}"

[[routes]]
name = "h1"
paths = ["/h1"]
upstream = "raw"
"""


@dataclass
class Served:
    gw: InProcessGateway

    @property
    def port(self) -> int:
        return self.gw.port


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    base = tmp_path_factory.mktemp("trailers")
    cache = os.environ.get("WASMGATE_CACHE_DIR")
    os.environ["WASMGATE_CACHE_DIR"] = str(base / "module-cache")
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(TrailerEcho, "127.0.0.1", 0)
    raw = await loop.create_server(RawUpstream, "127.0.0.1", 0)
    text = TOML.format(
        echo=echo.sockets[0].getsockname()[1],
        raw=raw.sockets[0].getsockname()[1],
        reqt=wasm_file(base, "request_trailers.wat"),
        respt=wasm_file(base, "trailers.wat"),
    )
    gw = InProcessGateway(text)
    registry = PluginRegistry({"trailer-edit": TrailerEdit})
    gw.gateway = Gateway(Snapshot(gw.config, "test.toml", registry), loop)
    await gw.gateway.start()
    yield Served(gw)
    await gw.stop()
    echo.close()
    raw.close()
    if cache is None:
        del os.environ["WASMGATE_CACHE_DIR"]
    else:
        os.environ["WASMGATE_CACHE_DIR"] = cache


async def h2_post(port: int, path: str, trailers: list[tuple[str, str]]) -> dict[str, str]:
    """POST a body and ``trailers`` over HTTP/2; the response trailers, as a dict."""
    client = await H2Client.open(port)
    try:
        sid = client.start("POST", path, end=False)
        await client.send_body(sid, b"x" * 1000, end=False)
        client.conn.send_headers(sid, trailers, end_stream=True)
        await client.flush()
        result = await client.wait(sid)
        assert result.status == 200, bytes(result.body)
        assert bytes(result.body) == b"1000"
        return dict(result.trailers)
    finally:
        client.close()


@dataclass
class Chunked:
    """An HTTP/1.1 response read off the wire, with its trailer section."""

    head: str
    body: bytes
    trailers: dict[str, str]


async def h1_post(port: int, path: str, trailer_lines: bytes, *, te: bool) -> Chunked:
    """A chunked POST with ``trailer_lines`` after its last chunk, over HTTP/1.1."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    te_line = b"TE: trailers\r\n" if te else b""
    writer.write(
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + te_line
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"5\r\nhello\r\n6\r\n world\r\n0\r\n" + trailer_lines + b"\r\n"
    )  # fmt: skip
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    body = b""
    trailers: dict[str, str] = {}
    if b"transfer-encoding: chunked" in head.lower():
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                section, _, _ = rest.partition(b"\r\n\r\n")
                for line in section.split(b"\r\n") if section else []:
                    name, _, value = line.decode().partition(":")
                    trailers[name.strip().lower()] = value.strip()
                break
            body += rest[:size]
            rest = rest[size + 2 :]
    else:
        body = rest
    return Chunked(head.decode("latin-1"), body, trailers)


async def test_http1_request_trailers_reach_an_http2_upstream_and_back(served: Served) -> None:
    """A chunked body's trailer section goes on as trailing HEADERS (fields that may
    not be trailers dropped); the upstream's trailers come back in the last chunk to a
    client that sent ``TE: trailers``."""
    lines = b"X-Check: 7\r\nAuthorization: Basic eA==\r\nX-Forwarded-For: 6.6.6.6\r\n"
    resp = await h1_post(served.port, "/plain", lines, te=True)
    assert resp.head.startswith("HTTP/1.1 200")
    assert resp.body == b"11"
    assert resp.trailers == {"echo-x-check": "7"}


async def test_an_http1_client_without_te_trailers_gets_none(served: Served) -> None:
    resp = await h1_post(served.port, "/plain", b"X-Check: 8\r\n", te=False)
    assert resp.body == b"11"
    assert resp.trailers == {}


async def test_http2_request_trailers_lose_the_fields_trailers_may_not_carry(
    served: Served,
) -> None:
    trailers = [("x-check", "5"), ("authorization", "Bearer x"), ("traceparent", "00-1-2-01")]
    got = await h2_post(served.port, "/plain", trailers)
    assert got == {"echo-x-check": "5"}


@pytest.mark.parametrize("protocol", ["h2", "h1"])
async def test_a_python_filter_that_reads_the_body_reads_and_changes_request_trailers(
    served: Served, protocol: str
) -> None:
    TrailerEdit.seen.clear()
    if protocol == "h2":
        got = await h2_post(served.port, "/py", [("x-check", "1"), ("x-keep", "k")])
    else:
        resp = await h1_post(served.port, "/py", b"X-Check: 1\r\nX-Keep: k\r\n", te=True)
        got = resp.trailers
    assert TrailerEdit.seen == [[("x-check", "1"), ("x-keep", "k")]]
    assert got == {"echo-x-check": "changed", "echo-x-keep": "k", "echo-x-added": "yes"}


async def test_proxy_on_request_trailers_reads_and_edits_the_request_trailer_map(
    served: Served,
) -> None:
    """tests/wasm_modules/request_trailers.wat: map 1 read, added to, removed from,
    replaced in; the upstream gets what the module left."""
    trailers = [("x-check", "3"), ("x-drop", "1"), ("x-swap", "a")]
    got = await h2_post(served.port, "/wasm-req", trailers)
    assert got == {"echo-x-check": "3", "echo-x-swap": "swapped", "echo-x-wasm-saw": "3"}


async def test_response_trailers_edited_by_a_wasm_filter_reach_an_http1_client(
    served: Served,
) -> None:
    """The last chunk waits for proxy_on_response_trailers (tests/wasm_modules/trailers.wat)."""
    resp = await h1_post(served.port, "/wasm-resp", b"X-Check: 9\r\n", te=True)
    assert resp.trailers == {"echo-x-check": "9", "x-wasm-saw": "none"}


async def test_an_http1_upstream_gets_no_request_trailers(served: Served) -> None:
    """As Envoy's HTTP/1 codec does by default: the body and its last chunk, no trailer
    section (an HTTP/1.1 server may merge it into the headers the filters checked)."""
    RawUpstream.got.clear()
    resp = await h1_post(served.port, "/h1", b"X-Check: 7\r\n", te=False)
    assert resp.body == b"ok"
    sent = RawUpstream.got[-1]
    assert sent.endswith(b"0\r\n\r\n")
    assert b"hello" in sent and b"x-check" not in sent.lower()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (Debian package curl)")
async def test_curl_sees_response_trailers_over_http1(served: Served, tmp_path: Path) -> None:
    """curl (HTTP/1.1, ``TE: trailers``) reads the upstream's trailers, as edited by the
    Proxy-Wasm filter, from the chunked response."""
    url = f"http://127.0.0.1:{served.port}/wasm-resp"
    cmd = ["curl", "-s", "--http1.1", "-H", "TE: trailers", "-D", "-", "--data-binary", "abc", url]
    done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, timeout=20)
    out = done.stdout.decode("latin-1").lower()
    assert done.returncode == 0, done.stderr
    assert "transfer-encoding: chunked" in out
    assert "echo-none: 1" in out and "x-wasm-saw: none" in out


async def test_the_sdk_harness_hands_request_trailers_to_a_filter() -> None:
    """plugin_sdk.testing.make_request(trailers=...): a filter's unit test sees them as
    the gateway hands them over."""
    TrailerEdit.seen.clear()
    request = make_request("POST", "/", body=b"x", trailers={"x-check": "1"})
    result = await arun_filter(TrailerEdit, request)
    assert TrailerEdit.seen == [[("x-check", "1")]]
    assert result.request.trailers is not None
    assert list(result.request.trailers.items()) == [("x-check", "changed"), ("x-added", "yes")]
