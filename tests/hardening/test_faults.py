"""Faults the gateway must survive: misbehaving upstreams, failing plugins, bad files.

Upstreams here are raw TCP servers (tests/hardening/rawserver.py) sending exact bytes;
the gateway is the real one, in process or as ``wasmgate run``. Each fault must give
the status docs/configuration.md promises (Status codes), leave no connection or file
descriptor behind, and leave the gateway serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core import metrics
from core.chain import PluginRegistry
from core.config import loads_config
from core.gateway import Gateway, Snapshot
from plugin_sdk import Context, Filter, PluginConfig
from plugin_sdk.chain import FilterInstance
from plugin_sdk.testing import GatewayProcess, RecordingUpstream, free_port
from tests.hardening.rawserver import Behaviour, RawConn, RawUpstream, response, serve_ok
from tests.harness import RawResponse, parse_responses, read_response
from tests.test_wasm_host import wasm_file

# ---------------------------------------------------------------------- helpers


def open_fds(pid: int | str = "self") -> int:
    """File descriptors a process holds (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


async def settled(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Whether ``check`` holds within ``timeout`` (closes finish asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            return False
        gc.collect()
        await asyncio.sleep(0.02)
    return True


@dataclass
class Got:
    """Everything a client read off one connection, up to its end (close or reset)."""

    data: bytes

    async def response(self) -> RawResponse:
        """The one complete response in ``data`` (raises if it is cut short)."""
        responses = await parse_responses(self.data)
        assert len(responses) == 1, responses
        return responses[0]

    @property
    def status(self) -> int:
        return int(self.data.split(b" ", 2)[1])


async def send(
    port: int,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: str = "Connection: close\r\n",
    timeout: float = 5.0,
) -> Got:
    """One request on a new connection; read until it ends (or ``timeout``).
    ``headers``: header lines besides Host and Content-Length, each ending in CRLF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nHost: gw\r\n{headers}"
    writer.write(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    chunks = []
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass  # what arrived before is the result
    writer.close()
    return Got(b"".join(chunks))


class Gateways:
    """Starts in-process gateways (with extra plugins) and stops them after the test."""

    def __init__(self) -> None:
        self.started: list[Gateway] = []

    async def start(
        self, toml: str, plugins: dict[str, type[Filter[Any]]] | None = None
    ) -> Gateway:
        snap = Snapshot(loads_config(toml, "test.toml"), "test.toml", PluginRegistry(plugins))
        gw = Gateway(snap, asyncio.get_running_loop())
        await gw.start()
        self.started.append(gw)
        return gw


@pytest.fixture
async def gateways() -> AsyncIterator[Gateways]:
    gws = Gateways()
    yield gws
    for gw in gws.started:
        await gw.drain(timeout=1.0)


@pytest.fixture
async def raw_upstreams() -> AsyncIterator[Callable[[Behaviour], Awaitable[RawUpstream]]]:
    started: list[RawUpstream] = []

    async def start(behave: Behaviour) -> RawUpstream:
        up = await RawUpstream(behave).start()
        started.append(up)
        return up

    yield start
    for up in started:
        await up.stop()


UPSTREAM_SETTINGS = """\
connect_timeout = 1.0
per_try_timeout = 0.3
read_timeout = 0.3
health = { max_failures = 1000 }
"""


def one_route_toml(address: str, settings: str = UPSTREAM_SETTINGS) -> str:
    return f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"

[[upstreams]]
name = "up"
endpoints = ["{address}"]
{settings}

[[routes]]
name = "all"
upstream = "up"
"""


# ---------------------------------------------------------------------- behaviours


async def reset_before_head(conn: RawConn) -> None:
    await conn.request()
    conn.reset()


async def close_before_head(conn: RawConn) -> None:
    await conn.request()
    conn.close()


async def reset_mid_body(conn: RawConn) -> None:
    await conn.request()
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    await asyncio.sleep(0.05)
    conn.reset()


async def short_body_then_close(conn: RawConn) -> None:
    await conn.request()
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    await asyncio.sleep(0.05)
    conn.close()


async def reset_mid_body_until_close(conn: RawConn) -> None:
    """A body framed by the end of the connection (no length), cut by a reset."""
    await conn.request()
    await conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 100)
    await asyncio.sleep(0.05)
    conn.reset()


async def stall_mid_body(conn: RawConn) -> None:
    await conn.request()
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    await conn.until_closed()


async def too_slow(conn: RawConn) -> None:
    await conn.request()
    await conn.until_closed()  # never answers; the gateway gives up and closes


def sends(data: bytes) -> Behaviour:
    async def behave(conn: RawConn) -> None:
        await conn.request()
        await conn.send(data)
        await conn.until_closed()

    return behave


INVALID = "invalid upstream response: invalid response: "
# (behaviour, status the client gets, start of the reply's body)
ANSWERED = [
    pytest.param(
        reset_before_head,
        502,
        "upstream connect error: upstream reset the connection before a response",
        id="reset-before-head-502",
    ),
    pytest.param(
        close_before_head,
        502,
        "upstream connect error: upstream closed the connection before a response",
        id="close-before-head-502",
    ),
    pytest.param(
        too_slow,
        504,
        "upstream timeout: no response from upstream in time",
        id="slower-than-per-try-timeout-504",
    ),
    pytest.param(sends(b"HTTP/1.1 OK\r\n\r\n"), 502, INVALID, id="status-line-without-code-502"),
    pytest.param(sends(b"HTTP/1.1 2000 OK\r\n\r\n"), 502, INVALID, id="status-code-2000-502"),
    pytest.param(sends(b"HTPT/1.1 200 OK\r\n\r\n"), 502, INVALID, id="not-http-502"),
    pytest.param(sends(b"SSH-2.0-OpenSSH_9.6\r\n"), 502, INVALID, id="other-protocol-502"),
    pytest.param(
        sends(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"), 502, INVALID, id="header-no-colon-502"
    ),
    pytest.param(
        sends(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"), 502, INVALID, id="space-in-name-502"
    ),
    pytest.param(
        sends(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"),
        502,
        INVALID,
        id="length-not-a-number-502",
    ),
    pytest.param(
        sends(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
        502,
        INVALID,
        id="two-lengths-502",
    ),
    pytest.param(
        sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        502,
        INVALID,
        id="bad-chunk-size-with-the-head-502",
    ),
]


@pytest.mark.parametrize(("method", "tries"), [("GET", 2), ("POST", 1)])
@pytest.mark.parametrize(("behave", "status", "reason"), ANSWERED)
async def test_upstream_fault_before_the_head_gets_its_status(
    raw_upstreams: Callable[[Behaviour], Awaitable[RawUpstream]],
    gateways: Gateways,
    behave: Behaviour,
    status: int,
    reason: str,
    method: str,
    tries: int,
) -> None:
    up = await raw_upstreams(behave)
    gw = await gateways.start(one_route_toml(up.address))
    resp = await (await send(gw.sockets[0][1], "/x", method=method)).response()
    assert (resp.status, resp.body[: len(reason)]) == (status, reason.encode())
    # `retries = 1`: a GET is tried again, a POST that reached the upstream never.
    assert up.methods() == [method] * tries


async def test_refused_connect_is_502(gateways: Gateways) -> None:
    gw = await gateways.start(one_route_toml(f"127.0.0.1:{free_port()}"))
    resp = await (await send(gw.sockets[0][1], "/x")).response()
    assert resp.status == 502
    assert b"upstream connect error" in resp.body and b"Connection refused" in resp.body


CUT = [
    pytest.param(reset_mid_body, b"Content-Length: 1000", id="reset-mid-body"),
    pytest.param(short_body_then_close, b"Content-Length: 1000", id="short-body-then-close"),
    pytest.param(stall_mid_body, b"Content-Length: 1000", id="stall-mid-body-read-timeout"),
    pytest.param(
        reset_mid_body_until_close, b"Transfer-Encoding: chunked", id="reset-mid-body-no-length"
    ),
]


@pytest.mark.parametrize(("behave", "framing"), CUT)
async def test_upstream_fault_in_the_body_cuts_the_client_connection(
    raw_upstreams: Callable[[Behaviour], Awaitable[RawUpstream]],
    gateways: Gateways,
    behave: Behaviour,
    framing: bytes,
) -> None:
    """The head is out: the client sees the body end before its framing says it does
    (short of the Content-Length, or no last chunk), never a complete response."""
    up = await raw_upstreams(behave)
    gw = await gateways.start(one_route_toml(up.address))
    got = await send(gw.sockets[0][1], "/x", headers="", timeout=2.0)  # keep-alive
    head, _, body = got.data.partition(b"\r\n\r\n")
    assert got.status == 200
    assert framing in head
    assert b"x" * 100 in body
    with pytest.raises(asyncio.IncompleteReadError):
        await got.response()


# ---------------------------------------------------------------------- keep-alive reuse


async def closes_on_reuse(conn: RawConn) -> None:
    """Answers the first request on a connection, then closes it when the next one
    comes: the race of an upstream closing an idle keep-alive connection as it is reused."""
    await conn.request()
    await conn.send(response(b"first"))
    if await conn.request() is not None:
        conn.close()


@pytest.mark.parametrize(
    ("method", "body", "status", "methods_seen"),
    [
        pytest.param("GET", b"", 200, ["GET", "GET", "GET"], id="get-retried-on-a-new-connection"),
        pytest.param("HEAD", b"", 200, ["GET", "HEAD", "HEAD"], id="head-retried"),
        pytest.param("DELETE", b"", 200, ["GET", "DELETE", "DELETE"], id="delete-retried"),
        pytest.param("PUT", b"data", 502, ["GET", "PUT"], id="put-body-sent-not-replayed-502"),
        pytest.param("POST", b"data", 502, ["GET", "POST"], id="post-with-body-not-retried-502"),
        pytest.param("POST", b"", 502, ["GET", "POST"], id="post-without-body-not-retried-502"),
    ],
)
async def test_pooled_connection_closed_as_it_is_reused(
    raw_upstreams: Callable[[Behaviour], Awaitable[RawUpstream]],
    gateways: Gateways,
    method: str,
    body: bytes,
    status: int,
    methods_seen: list[str],
) -> None:
    up = await raw_upstreams(closes_on_reuse)
    gw = await gateways.start(one_route_toml(up.address))
    port = gw.sockets[0][1]
    assert (await (await send(port, "/warm")).response()).status == 200  # now pooled
    got = await send(port, "/x", method=method, body=body)
    assert got.status == status
    # The request reached the upstream on the pooled connection; a retry is a second
    # copy on a new one. A POST may have been acted on: it is never sent twice.
    assert up.methods() == methods_seen


# ---------------------------------------------------------------------- more body than its length

SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
CHUNKED_HELLO = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"


def overlong(extra: bytes, *, later: bool, first: bytes = response(b"hello")) -> Behaviour:
    """``first`` (``hello`` with ``Content-Length: 5``) followed by ``extra`` bytes, in
    the same write or a moment later on the same connection; then answers on as usual."""

    async def behave(conn: RawConn) -> None:
        while await conn.request() is not None:
            if later:
                await conn.send(first)
                await asyncio.sleep(0.02)
                await conn.send(extra)
            else:
                await conn.send(first + extra)

    return behave


@pytest.mark.parametrize(
    "behave",
    [
        pytest.param(overlong(b"EXTRA BYTES", later=False), id="garbage-same-write"),
        pytest.param(overlong(SMUGGLED, later=False), id="a-second-response-same-write"),
        pytest.param(overlong(b"EXTRA BYTES", later=True), id="garbage-later"),
        pytest.param(overlong(SMUGGLED, later=True), id="a-second-response-later"),
        pytest.param(
            overlong(SMUGGLED, later=False, first=CHUNKED_HELLO), id="after-the-last-chunk"
        ),
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_more_body_than_content_length_is_never_served(
    raw_upstreams: Callable[[Behaviour], Awaitable[RawUpstream]],
    gateways: Gateways,
    behave: Behaviour,
    method: str,
) -> None:
    up = await raw_upstreams(behave)
    gw = await gateways.start(one_route_toml(up.address))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.sockets[0][1])
    head_only = method == "HEAD"
    for i in range(3):  # on one client connection, keep-alive
        writer.write(f"{method} /{i} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        resp = await read_response(reader, head_only=head_only)
        assert (resp.status, resp.body) == (200, b"" if head_only else b"hello")
        assert resp.header("content-length") in ("5", None)  # None: chunked
        await asyncio.sleep(0.05)  # time for any later bytes to arrive
    writer.write(b"GET /last HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    last = await read_response(reader)
    assert (last.status, last.body) == (200, b"hello")
    assert await reader.read() == b""  # nothing after the last response either
    writer.close()
    # The connection that sent too much is never used again: one per request.
    assert up.accepted == len(up.requests) == 4


async def answer_then_close(conn: RawConn) -> None:
    """Answers with keep-alive, then closes the idle connection at once."""
    await conn.request()
    await conn.send(response())
    conn.close()


async def test_idle_connections_the_upstream_closed_are_not_reused(
    raw_upstreams: Callable[[Behaviour], Awaitable[RawUpstream]], gateways: Gateways
) -> None:
    up = await raw_upstreams(answer_then_close)
    gw = await gateways.start(one_route_toml(up.address))
    for method in ("GET", "POST", "GET", "POST"):
        assert (await send(gw.sockets[0][1], "/x", method=method)).status == 200
        await asyncio.sleep(0.02)  # the close arrives; the pool forgets the connection
    assert up.methods() == ["GET", "POST", "GET", "POST"]
    assert up.accepted == 4
    assert gw.snapshot.pools["up"].endpoints[0].idle == []


# ---------------------------------------------------------------------- the process, over time


async def get_then_post(port: int, path: str) -> list[int]:
    return [(await send(port, path)).status, (await send(port, path, method="POST")).status]


async def get_twice(port: int, path: str) -> list[int]:
    return [(await send(port, path)).status for _ in range(2)]


async def outcome(port: int, path: str) -> str:
    """``"502"``, or ``"cut"`` for a 200 whose body ended short of its length."""
    got = await send(port, path)
    try:
        return str((await got.response()).status)
    except asyncio.IncompleteReadError:
        return "cut"


async def test_faulty_upstreams_leak_nothing_in_the_gateway_process(
    raw_upstreams: Callable[[Behaviour], Awaitable[RawUpstream]],
) -> None:
    """``wasmgate run`` (on uvloop; the in-process tests use asyncio's loop) against every
    upstream fault, round after round: the statuses stay the same, the process stays up,
    and its file descriptors come back to where they were after the first round (only
    keep-alive connections to upstreams that answered properly stay open)."""
    behaviours: dict[str, Behaviour] = {
        "ok": serve_ok,
        "reuse-get": closes_on_reuse,
        "reuse-post": closes_on_reuse,
        "reset-before-head": reset_before_head,
        "close-before-head": close_before_head,
        "too-slow": too_slow,
        "bad-status": sends(b"HTTP/1.1 2000 OK\r\n\r\n"),
        "bad-header": sends(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"),
        "reset-mid-body": reset_mid_body,
        "short-body": short_body_then_close,
        "stall-mid-body": stall_mid_body,
        "overlong": overlong(SMUGGLED, later=False),
    }
    ups = {name: await raw_upstreams(b) for name, b in behaviours.items()}
    addresses = {name: up.address for name, up in ups.items()}
    addresses["refused"] = f"127.0.0.1:{free_port()}"
    port = free_port()
    parts = [f'[server]\nlisten = ["127.0.0.1:{port}"]\naccess_log = "off"\n']
    for name, address in addresses.items():
        parts.append(
            f'[[upstreams]]\nname = "{name}"\nendpoints = ["{address}"]\n{UPSTREAM_SETTINGS}\n'
            f'[[routes]]\nname = "{name}"\npaths = ["/{name}"]\nupstream = "{name}"\n'
        )
    gw = GatewayProcess("\n".join(parts))
    await asyncio.to_thread(gw.start, port)
    assert gw.proc is not None
    pid = gw.proc.pid
    expected = {
        "ok": "200",
        "refused": "502",
        "reset-before-head": "502",
        "close-before-head": "502",
        "too-slow": "504",
        "bad-status": "502",
        "bad-header": "502",
        "reset-mid-body": "cut",
        "short-body": "cut",
        "stall-mid-body": "cut",
        "overlong": "200",
    }
    pooled = ("ok", "reuse-get")  # upstreams that answer properly keep a connection

    async def one_round() -> None:
        names = list(expected)
        statuses = await asyncio.gather(
            *(outcome(port, f"/{name}") for name in names),
            get_twice(port, "/reuse-get"),
            get_then_post(port, "/reuse-post"),
        )
        assert dict(zip(names, statuses, strict=False)) == expected
        assert statuses[-2:] == [[200, 200], [200, 502]]

    def leaked_upstream_connections() -> dict[str, int]:
        return {n: up.open for n, up in ups.items() if up.open and n not in pooled}

    try:
        await one_round()
        assert await settled(lambda: not leaked_upstream_connections()), (
            leaked_upstream_connections()
        )
        baseline = open_fds(pid)
        for _ in range(4):
            await one_round()
        assert await settled(lambda: not leaked_upstream_connections()), (
            leaked_upstream_connections()
        )
        assert await settled(lambda: open_fds(pid) <= baseline), (open_fds(pid), baseline)
        assert all(ups[n].open <= 1 for n in pooled)
        assert gw.proc.poll() is None
    finally:
        code = await asyncio.to_thread(gw.terminate)
    log = gw.log()
    assert code == 0, log
    for sign in ("Traceback", "proxy error", "internal gateway error", "Fatal error"):
        assert sign not in log


# ---------------------------------------------------------------------- Python filters


class Raises(Filter[PluginConfig]):
    def on_request(self, ctx: Context) -> None:
        raise RuntimeError("a bug in the filter")


class Sleeps(Filter[PluginConfig]):
    """Blocks the event loop, as a filter calling a synchronous client would."""

    def on_request(self, ctx: Context) -> None:
        time.sleep(0.5)


LEAKED: list[bytes] = []


class Leaks(Filter[PluginConfig]):
    """Keeps 16 KiB per request forever."""

    def on_request(self, ctx: Context) -> None:
        LEAKED.append(bytes(16384))


TEST_PLUGINS: dict[str, type[Filter[Any]]] = {"raises": Raises, "sleeps": Sleeps, "leaks": Leaks}


def filters_toml(upstream: str) -> str:
    routes = {
        "raise-closed": '{ plugin = "raises", fail = "closed" }',
        "raise-open": '{ plugin = "raises", fail = "open" }',
        "sleep": '"sleeps"',
        "leak": '"leaks"',
    }
    parts = [
        f'[server]\nlisten = ["127.0.0.1:0"]\naccess_log = "off"\n'
        f'[[upstreams]]\nname = "v1"\nendpoints = ["{upstream}"]\n'
        '[[routes]]\nname = "plain"\npaths = ["/plain"]\nupstream = "v1"\n'
    ]
    for name, ref in routes.items():
        parts.append(
            f'[[routes]]\nname = "{name}"\npaths = ["/{name}"]\nupstream = "v1"\n'
            f"filters = [{ref}]\n"
        )
    return "\n".join(parts)


def filter_instance(gw: Gateway, route: str) -> FilterInstance:
    return gw.snapshot.chains[route].filters[0]


@pytest.mark.parametrize(
    ("route", "status", "reached_upstream"),
    [
        pytest.param("raise-closed", 500, False, id="fail-closed-500"),
        pytest.param("raise-open", 200, True, id="fail-open-skipped"),
    ],
)
async def test_a_raising_filter_follows_its_fail_strategy_and_is_counted(
    upstream: RecordingUpstream,
    gateways: Gateways,
    route: str,
    status: int,
    reached_upstream: bool,
) -> None:
    gw = await gateways.start(filters_toml(upstream.address), TEST_PLUGINS)
    port = gw.sockets[0][1]
    for n in range(1, 4):
        resp = await (await send(port, f"/{route}/x")).response()
        assert resp.status == status
        if status == 500:
            assert resp.body == f"filter {filter_instance(gw, route).name} failed\n".encode()
        assert filter_instance(gw, route).errors == n
        assert (await (await send(port, "/plain/x")).response()).status == 200
    seen = [r.path_qs for r in upstream.requests].count(f"/{route}/x")
    assert seen == (3 if reached_upstream else 0)


async def test_a_blocking_filter_holds_every_request_then_all_is_well(
    upstream: RecordingUpstream, gateways: Gateways, caplog: pytest.LogCaptureFixture
) -> None:
    """One event loop: while a filter sleeps, no other request moves (documented in
    docs/writing-plugins.md; the gateway logs the stall). Afterwards the gateway
    serves as before, and nothing the stalled requests opened stays open."""
    caplog.set_level(logging.WARNING, logger="wasmgate")
    gw = await gateways.start(filters_toml(upstream.address), TEST_PLUGINS)
    port = gw.sockets[0][1]
    loop = asyncio.get_running_loop()
    assert (await (await send(port, "/plain/warm")).response()).status == 200
    pool = gw.snapshot.pools["v1"]
    gc.collect()
    fds, pooled = open_fds(), len(pool.endpoints[0].idle)

    async def timed(path: str) -> tuple[int, float]:
        started = loop.time()
        got = await send(port, path)
        return (await got.response()).status, loop.time() - started

    for _ in range(2):
        (blocked, _took), (other, waited) = await asyncio.gather(
            timed("/sleep/x"), timed("/plain/x")
        )
        assert (blocked, other) == (200, 200)
        assert waited >= 0.4  # the other route's request waited for the sleep
    statuses = await asyncio.gather(*(timed("/plain/x") for _ in range(20)))
    assert {s for s, _ in statuses} == {200}
    assert any("event loop was blocked for at least" in r.getMessage() for r in caplog.records)
    extra_pooled = len(pool.endpoints[0].idle) - pooled  # each: two fds in this process
    assert await settled(lambda: open_fds() <= fds + 2 * extra_pooled), (open_fds(), fds)


async def test_a_leaking_filter_does_not_take_the_gateway_down(
    upstream: RecordingUpstream, gateways: Gateways
) -> None:
    gw = await gateways.start(filters_toml(upstream.address), TEST_PLUGINS)
    port = gw.sockets[0][1]
    try:
        statuses = [(await send(port, "/leak/x")).status for _ in range(50)]
        assert statuses == [200] * 50
        assert len(LEAKED) == 50
        assert (await (await send(port, "/plain/x")).response()).status == 200
    finally:
        LEAKED.clear()


# ---------------------------------------------------------------------- Proxy-Wasm filters


def wasm_traps_metric(name: str) -> float:
    """``wasmgate_wasm_traps_total`` of filter ``name`` in this process's metrics."""
    prefix = f'wasmgate_wasm_traps_total{{filter="{name}"}} '
    for line in metrics.render().decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


@pytest.mark.parametrize("fail", ["closed", "open"])
@pytest.mark.parametrize(
    ("wat", "limits", "headers"),
    [
        pytest.param("trap.wat", "", "x-trap: 1\r\n", id="trap"),
        pytest.param("loop.wat", "{ deadline_ms = 50 }", "", id="loop-deadline"),
        pytest.param("grow.wat", "{ memory_mb = 1, deadline_ms = 5000 }", "", id="grow-memory-cap"),
    ],
)
async def test_a_failing_wasm_filter_follows_its_fail_strategy_and_is_counted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    upstream: RecordingUpstream,
    gateways: Gateways,
    wat: str,
    limits: str,
    headers: str,
    fail: str,
) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))
    name = f"{Path(wat).stem}-{fail}"  # a name of its own: the metric is process-wide
    toml = (
        f'[server]\nlisten = ["127.0.0.1:0"]\naccess_log = "off"\n'
        f'[[upstreams]]\nname = "v1"\nendpoints = ["{upstream.address}"]\n'
        f'[filters.{name}]\nwasm = "{wasm_file(tmp_path, wat)}"\nfail = "{fail}"\n'
        + (f"limits = {limits}\n" if limits else "")
        + '[[routes]]\nname = "plain"\npaths = ["/plain"]\nupstream = "v1"\n'
        f'[[routes]]\nname = "wasm"\npaths = ["/wasm"]\nupstream = "v1"\nfilters = ["{name}"]\n'
    )
    gw = await gateways.start(toml)
    port = gw.sockets[0][1]
    inst = filter_instance(gw, "wasm")
    traps_before = wasm_traps_metric(name)
    for n in range(1, 3):
        got = await send(port, "/wasm", headers=f"{headers}Connection: close\r\n")
        resp = await got.response()
        assert resp.status == (500 if fail == "closed" else 200)
        assert (inst.errors, inst.filter.traps) == (n, n)  # type: ignore[attr-defined]
        assert wasm_traps_metric(name) == traps_before + n
        assert (await (await send(port, "/plain/x")).response()).status == 200
    assert len(upstream.requests) == (4 if fail == "open" else 2)


# ---------------------------------------------------------------------- files on disk

INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: app, namespace: default}
spec:
  ingressClassName: wasmgate
  rules:
    - http:
        paths:
          - path: /k8s
            pathType: Prefix
            backend: {service: {name: app, port: {number: 80}}}
"""


def disk_toml(port: int, upstream: str) -> str:
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[[upstreams]]
name = "app"
endpoints = ["{upstream}"]

[filters.abi]
wasm = "filter.wasm"

[[routes]]
name = "main"
paths = ["/"]
upstream = "app"

[[routes]]
name = "wasm"
paths = ["/wasm"]
upstream = "app"
filters = ["abi"]

[kubernetes]
manifests = ["k8s/app.yaml"]
services = {{ "default/app" = ["{upstream}"] }}
"""


async def test_reload_of_broken_or_missing_files_keeps_the_old_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upstream: RecordingUpstream
) -> None:
    """SIGHUP while a file is half-written or gone: the reload is refused and logged,
    and the configuration loaded before keeps serving, WASM filter and Ingress routes
    included. Once the files are whole again, the next reload takes."""
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))
    port = free_port()
    toml = disk_toml(port, upstream.address)
    wasm = wasm_file(tmp_path, "abi_0_2_1.wat").read_bytes()
    (tmp_path / "filter.wasm").write_bytes(wasm)
    (tmp_path / "k8s").mkdir()
    manifest = tmp_path / "k8s" / "app.yaml"
    manifest.write_text(INGRESS)
    gw = GatewayProcess(toml, workdir=str(tmp_path))
    await asyncio.to_thread(gw.start, port)
    assert gw.proc is not None
    config, module = gw.config_path, tmp_path / "filter.wasm"

    async def still_serving() -> None:
        for path in ("/x", "/wasm", "/k8s"):
            resp = await (await send(port, path)).response()
            assert resp.status == 200, (path, resp)
        assert upstream.requests[-2].headers.get("x-abi") == "0.2.1"  # the filter ran

    async def sighup(expect: str) -> None:
        before = gw.log().count(expect)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        assert await settled(lambda: gw.log().count(expect) > before, timeout=10), gw.log()

    breakages: list[tuple[str, Callable[[], object], str]] = [
        ("truncated mid-table", lambda: config.write_text(toml[: toml.index("paths")]), "upstream"),
        ("truncated mid-string", lambda: config.write_text(toml[: toml.index("app") + 2]), "TOML"),
        ("empty (being written)", lambda: config.write_text(""), "empty"),
        ("config deleted", config.unlink, "cannot read file"),
        ("wasm module deleted", module.unlink, "filter.wasm"),
        ("wasm module half-written", lambda: module.write_bytes(wasm[: len(wasm) // 2]), "abi"),
        ("manifest deleted", manifest.unlink, "app.yaml"),
    ]
    try:
        await still_serving()
        for what, do, reason in breakages:
            do()
            await sighup("failed; still serving the previous configuration")
            tail = gw.log().rsplit("reload (", 1)[-1]
            assert reason in tail, (what, tail)
            await still_serving()
            config.write_text(toml)
            module.write_bytes(wasm)
            manifest.write_text(INGRESS)
            await sighup("reloaded (SIGHUP)")
            await still_serving()
        assert gw.proc.poll() is None
    finally:
        code = await asyncio.to_thread(gw.terminate)
    assert code == 0, gw.log()
    assert "Traceback" not in gw.log()
