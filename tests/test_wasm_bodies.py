"""Proxy-Wasm bodies as Envoy gives them: body callbacks for every filter that
exports them, per chunk as the body streams, with Envoy's Continue / StopIteration
rules, set_buffer_bytes replace / append / prepend, a Content-Length that follows the
new size, bounded buffering, and no cost for a module without body callbacks.

The module is ``tests/wasm_modules/body_stream.wat``; its mode is the VM
configuration (see its header). The upstream here streams and reads in pieces on
cue, so that a test can tell a chunk that went on at once from one held back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import StartGateway
from tests.harness import InProcessGateway, RecordingUpstream, gateway_toml, read_response
from tests.test_wasm_host import wasm_file


class StreamingUpstream:
    """An upstream that streams its answers and reads request bodies in pieces."""

    def __init__(self) -> None:
        self.go_on = asyncio.Event()  # the test lets a paused stream go on
        self.first = asyncio.Event()  # the upstream got a request body's first piece
        self.seen: list[dict[str, object]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> StreamingUpstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        first = b""
        if request.path == "/pieces-in":  # the first piece, then the rest on cue
            first = await request.content.readany()
            self.first.set()
        body = first + await request.read()
        self.seen.append({"headers": dict(request.headers), "body": body, "first": first})
        if request.path == "/slow":  # one piece, then the rest once the test says so
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b"hello ")
            await asyncio.wait_for(self.go_on.wait(), 5)
            await resp.write(b"world" if request.query.get("x") is None else b"X")
            await resp.write_eof()
            return resp
        if request.path in ("/parts", "/big"):  # pieces, chunked
            resp = web.StreamResponse()
            await resp.prepare(request)
            parts = [b"z" * 1000] * 5 if request.path == "/big" else [b"one ", b"two ", b"three"]
            for part in parts:
                await resp.write(part)
                await asyncio.sleep(0.05)
            await resp.write_eof()
            return resp
        if request.path.startswith("/fixed/"):
            return web.Response(body=b"x" * int(request.path.rsplit("/", 1)[1]))
        if request.path == "/x":
            return web.Response(body=b"abcXdef")
        if request.path == "/empty":
            return web.Response(status=204)
        return web.Response(body=body)  # an echo of the request body

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def streaming() -> AsyncIterator[StreamingUpstream]:
    up = await StreamingUpstream().start()
    yield up
    await up.stop()


async def start(
    start_gateway: StartGateway,
    tmp_path: Path,
    up: StreamingUpstream,
    mode: str,
    extra: str = "",
    module: str = "body_stream.wat",
) -> InProcessGateway:
    path = wasm_file(tmp_path, module)
    return await start_gateway(
        gateway_toml(
            {"v1": [up.address]},
            f"""
[filters.w]
wasm = "{path}"
vm_config = "{mode}"
{extra}

[[routes]]
name = "wasm"
upstream = "v1"
filters = ["w"]
""",
        )
    )


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


# ---------------------------------------------------------------------- streaming


async def test_response_chunks_are_rewritten_as_they_stream(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "u")
    async with aiohttp.ClientSession() as http, http.get(gw.url + "/slow") as resp:
        assert resp.headers["x-resp-headers-eos"] == "0"
        first = b""
        while len(first) < 6:  # the upstream holds "world" until we have read this
            first += await asyncio.wait_for(resp.content.readany(), 5)
        assert first == b"HELLO "
        streaming.go_on.set()
        assert await resp.read() == b"WORLD"


async def test_request_chunks_are_rewritten_as_they_stream(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "u")
    reader, writer = await raw(gw.port)
    writer.write(
        b"POST /pieces-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    # The upstream gets the first piece, upper-cased, before the client sends the rest.
    await asyncio.wait_for(streaming.first.wait(), 5)
    writer.write(b"6\r\n world\r\n0\r\n\r\n")
    resp = await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    assert resp.status == 200
    assert resp.body == b"HELLO WORLD"
    seen = streaming.seen[-1]
    assert seen["first"] == b"HELLO"
    assert seen["headers"]["x-req-headers-eos"] == "0"  # type: ignore[index]


# ---------------------------------------------------------------------- buffering


async def test_stop_iteration_buffers_until_the_end(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "b")
    reader, writer = await raw(gw.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for part in (b"abc", b"def", b"ghi"):  # separate reads: separate body callbacks
        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()
        await asyncio.sleep(0.05)
    writer.write(b"0\r\n\r\n")
    resp = await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    seen = streaming.seen[-1]
    headers: dict[str, str] = seen["headers"]  # type: ignore[assignment]
    # The last callback saw the whole accumulation, replaced it (start 0, length 1:
    # the whole buffer, as in Envoy) and could still add headers: the head waited.
    assert seen["body"] == b"ABCDEFGHI"
    assert headers["x-body-total"] == "9"
    assert int(headers["x-body-calls"]) >= 3
    assert headers["Content-Length"] == "9"  # all of it was there before the head
    assert "Transfer-Encoding" not in headers
    assert resp.status == 200 and resp.body == b"ABCDEFGHI"

    async with aiohttp.ClientSession() as http, http.get(gw.url + "/parts") as got:
        body = await got.read()
        assert body == b"ONE TWO THREE"
        assert got.headers["content-length"] == str(len(body))
        assert got.headers["x-body-total"] == str(len(body))
        assert int(got.headers["x-body-calls"]) >= 2


async def test_append_and_prepend(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "a")
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.url + "/echo", data=b"abc") as resp:
            # request: "<<abc>>" went up; the echo comes back through it: "<<<<abc>>>>"
            assert await resp.read() == b"<<<<abc>>>>"
            assert resp.headers["content-length"] == "11"
        assert streaming.seen[-1]["body"] == b"<<abc>>"
        assert streaming.seen[-1]["headers"]["Content-Length"] == "7"  # type: ignore[index]
        streaming.go_on.set()
        async with http.get(gw.url + "/slow") as resp:  # streamed: chunked, well formed
            assert await resp.read() == b"<<hello world>>"
        async with http.get(gw.url + "/fixed/3") as resp:  # the same connection again
            assert await resp.read() == b"<<xxx>>"


async def test_content_length_follows_a_smaller_body(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "s")
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.url + "/echo", data=b"y" * 1000) as resp:
            assert await resp.read() == b"ok"
            assert resp.headers["content-length"] == "2"
        assert streaming.seen[-1]["body"] == b"ok"
        assert streaming.seen[-1]["headers"]["Content-Length"] == "2"  # type: ignore[index]
        async with http.get(gw.url + "/fixed/5000") as resp:
            assert await resp.read() == b"ok"
            assert resp.headers["content-length"] == "2"
    # An HTTP/1.0 client cannot take chunks: a streamed body ends with the connection.
    reader, writer = await raw(gw.port)
    writer.write(b"GET /parts HTTP/1.0\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert body == b"ok"
    assert b"chunked" not in head.lower()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/echo", 413), ("GET", "/big", 502)],
    ids=["request-413", "response-502"],
)
async def test_holding_past_max_buffer_bytes(
    tmp_path: Path,
    streaming: StreamingUpstream,
    start_gateway: StartGateway,
    method: str,
    path: str,
    status: int,
) -> None:
    gw = await start(
        start_gateway, tmp_path, streaming, "b", "limits = { max_buffer_bytes = 1000 }"
    )
    reader, writer = await raw(gw.port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    if method == "POST":  # held piece by piece, it outgrows the bound
        writer.write(b"3e8\r\n" + b"z" * 1000 + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"3e8\r\n" + b"z" * 1000 + b"\r\n0\r\n\r\n")
    else:
        writer.write(b"0\r\n\r\n")
    resp = await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    assert resp.status == status
    assert b"too large" in resp.body


# ---------------------------------------------------------------------- end_of_stream


@pytest.mark.parametrize(
    ("method", "path", "body", "req_eos", "resp_eos"),
    [
        ("GET", "/echo", None, "1", "1"),  # the echo of no body: Content-Length 0
        ("POST", "/echo", b"abc", "0", "0"),
        ("GET", "/fixed/10", None, "1", "0"),
        ("HEAD", "/fixed/10", None, "1", "1"),
        ("GET", "/empty", None, "1", "1"),  # 204
    ],
    ids=["get", "post", "get-body", "head", "204"],
)
async def test_header_callbacks_see_end_of_stream(
    tmp_path: Path,
    streaming: StreamingUpstream,
    start_gateway: StartGateway,
    method: str,
    path: str,
    body: bytes | None,
    req_eos: str,
    resp_eos: str,
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "n")
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, gw.url + path, data=body) as resp,
    ):
        await resp.read()
        assert resp.headers["x-resp-headers-eos"] == resp_eos
    assert streaming.seen[-1]["headers"]["x-req-headers-eos"] == req_eos  # type: ignore[index]


# ---------------------------------------------------------------------- opting out, cost


async def test_bodies_lists_the_directions_kept(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "u", 'bodies = ["response"]')
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/echo", data=b"abc") as resp:
        assert await resp.read() == b"ABC"  # upper-cased on the way back only
    seen = streaming.seen[-1]
    assert seen["body"] == b"abc"
    assert seen["headers"]["x-req-headers-eos"] == "1"  # type: ignore[index]


async def test_a_module_without_body_callbacks_gets_no_chunk_hook(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "n", module="abi_0_2_1.wat")
    assert gw.gateway is not None
    chains = [r.chain for r in gw.gateway.snapshot.router.routes if r.chain is not None]
    assert chains and all(not c.request_chunks and not c.response_chunks for c in chains)
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/echo", data=b"abc") as resp:
        assert await resp.read() == b"abc"
    # Untouched, the body keeps the client's framing.
    assert streaming.seen[-1]["headers"]["Content-Length"] == "3"  # type: ignore[index]
    gw2 = await start(start_gateway, tmp_path, streaming, "n")
    assert gw2.gateway is not None
    chains = [r.chain for r in gw2.gateway.snapshot.router.routes if r.chain is not None]
    assert all(c.request_chunks and c.response_chunks for c in chains)


# ---------------------------------------------------------------------- stopped at the end


async def test_a_body_held_at_its_end_goes_on_after_proxy_continue_stream(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "-", module="body_hold.wat")
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/echo", data=b"abcdef") as resp:
        # the HTTP call's answer ("xxx") replaced the body the filter held
        assert resp.status == 200
        assert await resp.read() == b"xxx"
    assert streaming.seen[-1]["body"] == b"xxx"
    assert streaming.seen[-1]["headers"]["Content-Length"] == "3"  # type: ignore[index]


async def test_data_held_before_the_end_goes_on_at_proxy_continue_stream(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    """Envoy's rule: a filter that stopped on a chunk before the last one and then calls
    proxy_continue_stream lets the held data go on at once, not with the next chunk."""
    gw = await start(start_gateway, tmp_path, streaming, "e", module="body_hold.wat")
    reader, writer = await raw(gw.port)
    writer.write(
        b"POST /pieces-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    # The filter holds "hello" until its HTTP call answers, then continues: the upstream
    # gets it before the client sends anything more.
    await asyncio.wait_for(streaming.first.wait(), 5)
    writer.write(b"6\r\n world\r\n0\r\n\r\n")
    resp = await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    assert (resp.status, resp.body) == (200, b"hello world")
    assert streaming.seen[-1]["first"] == b"hello"


async def test_a_body_held_forever_ends_at_pause_timeout(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(
        start_gateway,
        tmp_path,
        streaming,
        "h",
        "limits = { pause_timeout = 0.3 }",
        module="body_hold.wat",
    )
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/echo", data=b"abcdef") as resp:
        assert resp.status == 500  # fail_closed
    assert not [s for s in streaming.seen if s["body"] == b"abcdef"]


# ---------------------------------------------------------------------- local replies


async def test_a_body_callback_answers_locally(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start(start_gateway, tmp_path, streaming, "d")
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.url + "/echo", data=b"abcXdef") as resp:
            assert (resp.status, await resp.read()) == (403, b"blocked\n")
        assert streaming.seen == []  # the head waited for the body: nothing went up
        async with http.get(gw.url + "/x") as resp:  # the response head was not out yet
            assert (resp.status, await resp.read()) == (403, b"blocked\n")
        async with http.post(gw.url + "/echo", data=b"fine") as resp:
            assert (resp.status, await resp.read()) == (200, b"fine")

    # Mid-stream, after part of the body went on: the request is cut short, the client
    # gets the reply.
    reader, writer = await raw(gw.port)
    writer.write(
        b"POST /pieces-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    )
    await asyncio.wait_for(streaming.first.wait(), 5)
    writer.write(b"1\r\nX\r\n")
    resp = await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    assert (resp.status, resp.body) == (403, b"blocked\n")

    # After the response head went out, only a broken connection can say it.
    streaming.go_on.set()
    async with aiohttp.ClientSession() as http, http.get(gw.url + "/slow?x=1") as got:
        assert got.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await got.read()


async def test_with_a_python_filter_that_buffers_the_body_callbacks_get_it_whole(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    path = wasm_file(tmp_path, "body_stream.wat")
    gw = await start_gateway(
        gateway_toml(
            {"v1": [streaming.address]},
            f"""
[filters.w]
wasm = "{path}"
vm_config = "a"

[[routes]]
name = "both"
upstream = "v1"
filters = ["body-upper", "w"]
""",
        )
    )
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/echo", data=b"abc") as resp:
        # request: upper-cased whole, then "<<", ">>" in one call; the echo comes back
        # through the callback (in one call again) and is upper-cased after it
        assert await resp.read() == b"<<<<ABC>>>>"
        assert resp.headers["content-length"] == "11"
    assert streaming.seen[-1]["body"] == b"<<ABC>>"


async def test_a_held_request_body_times_out_only_when_the_client_stalls(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    path = wasm_file(tmp_path, "body_stream.wat")
    gw = await start_gateway(
        gateway_toml(
            {"v1": [streaming.address]},
            f"""
[filters.w]
wasm = "{path}"
vm_config = "b"

[[routes]]
name = "wasm"
upstream = "v1"
filters = ["w"]
""",
            server="[server.limits]\nidle_timeout = 0.5",
        )
    )
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    # Steady: a piece every 0.2 s for over a second, all held by the filter until the end.
    reader, writer = await raw(gw.port)
    writer.write(head)
    for _ in range(6):
        writer.write(b"1\r\na\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
    writer.write(b"0\r\n\r\n")
    resp = await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    assert (resp.status, resp.body) == (200, b"AAAAAA")
    # Stalled: one piece, then nothing.
    reader, writer = await raw(gw.port)
    writer.write(head + b"1\r\na\r\n")
    resp = await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    assert resp.status == 408


async def test_header_stop_iteration_with_a_body_to_come_waits_for_the_body_callbacks(
    tmp_path: Path, streaming: StreamingUpstream, start_gateway: StartGateway
) -> None:
    # As in Envoy (and as Higress wasm-go filters expect): the body callbacks still come
    # to a filter whose header callback stopped, and their Continue lets all go on.
    gw = await start(start_gateway, tmp_path, streaming, "p", "limits = { pause_timeout = 2.0 }")
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.url + "/echo", data=b"abc") as resp:
            assert resp.status == 200
            assert await resp.read() == b"ABC"
            assert resp.headers["x-body-total"] == "3"  # set by the response body callback
        assert streaming.seen[-1]["headers"]["x-body-total"] == "3"  # type: ignore[index]
        async with http.get(gw.url + "/parts") as resp:
            assert await resp.read() == b"ONE TWO THREE"
        # No body to come: a stop waits for proxy_continue_stream, as before (none here).
        async with http.get(gw.url + "/empty") as resp:
            assert resp.status == 204


async def test_an_exchange_through_a_body_filter_leaves_no_reference_cycle(
    tmp_path: Path, upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    """A body pipe let go of the exchange when it ended: before, every request through a
    filter with a body callback left a cycle (exchange, pipe, bound methods, partials)
    that only the cycle collector freed, which then ran about every 25 requests."""
    import gc

    from core.bodies import BodyPipe
    from core.proxy import Exchange

    gw = await start(start_gateway, tmp_path, upstream, "n")  # type: ignore[arg-type]  (.address)
    reader, writer = await raw(gw.port)
    request = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n"
    writer.write(request)
    assert (await read_response(reader)).status == 200
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            writer.write(request)
            assert (await read_response(reader)).status == 200
        gc.collect()
        cycles = [o for o in gc.garbage if isinstance(o, BodyPipe | Exchange)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        writer.close()
    assert cycles == []
