"""HTTP/1.1 exchanges without a body run without an asyncio Task (core/drive.py).

What a client and the upstream see must not change: the real gateway on 127.0.0.1,
requests as raw bytes or through aiohttp. The test plugins ``task-probe``,
``async-timeout-probe`` and ``maybe-wait-probe`` (tests/fixtures/site) tell the
upstream, in a request header, whether the request phase ran in a Task and whether
``asyncio.timeout`` worked there.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml, parse_responses, raw_request

ROUTES = """
[[routes]]
name = "sync"
paths = ["/sync"]
upstream = "v1"
filters = ["task-probe"]

[[routes]]
name = "async"
paths = ["/async"]
upstream = "v1"
filters = ["async-timeout-probe", "task-probe"]

[[routes]]
name = "maybe"
paths = ["/maybe"]
upstream = "v1"
filters = ["maybe-wait-probe", "task-probe"]

[[routes]]
name = "slow"
paths = ["/delay"]
upstream = "v1"
filters = ["task-probe"]
"""


def config(upstream: RecordingUpstream, extra: str = "", access_log: str = "off") -> str:
    return gateway_toml({"v1": [upstream.address]}, ROUTES + extra, access_log=access_log)


CASES = [
    # (method, path, body, X-In-Task the upstream saw, X-Async-Probe)
    pytest.param("GET", "/sync/a", None, "no", None, id="get-first-opens-a-connection"),
    pytest.param("GET", "/sync/b", None, "no", None, id="get-pooled-connection"),
    pytest.param("DELETE", "/sync/c", None, "no", None, id="delete-no-body"),
    pytest.param("POST", "/sync/d", b"x" * 100, "yes", None, id="post-with-body-in-a-task"),
    pytest.param("GET", "/async/e", None, "yes", "ok", id="async-phase-gets-a-task"),
    # A maybe_async phase (the Proxy-Wasm adapter's) that answers at once needs no
    # Task; one that returns an awaitable gets one before it is awaited.
    pytest.param("GET", "/maybe/f", None, "no", None, id="maybe-async-answering-at-once"),
    pytest.param("GET", "/maybe/g", None, "yes", "ok", id="maybe-async-waiting-gets-a-task"),
]


async def test_which_requests_run_without_a_task(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(config(upstream))
    for case in CASES:
        method, path, body, in_task, probe = case.values
        wait = {"x-wait": "1"} if path.endswith("/g") else {}
        async with http.request(method, gw.url + path, data=body, headers=wait) as resp:
            assert resp.status == 200, case.id
            seen = json.loads(await resp.read())
        assert seen["path"] == path, case.id
        got = upstream.requests[-1].headers
        assert got.get("x-in-task") == in_task, case.id
        assert got.get("x-async-probe") == probe, case.id
    assert gw.gateway is not None and gw.gateway.driven == 0


async def test_pipelined_requests_answered_in_order(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(config(upstream))
    data = b"".join(b"GET /sync/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3))
    raw = await raw_request(gw.port, data + b"GET /sync/end HTTP/1.1\r\nHost: a\r\n" + CLOSE)
    replies = await parse_responses(raw)
    assert [r.status for r in replies] == [200] * 4
    assert [json.loads(r.body)["path"] for r in replies] == [
        "/sync/0",
        "/sync/1",
        "/sync/2",
        "/sync/end",
    ]
    # The first one's step ran at once; those queued behind it were started as Tasks.
    assert [s.headers["x-in-task"] for s in upstream.requests] == ["no", "yes", "yes", "yes"]


CLOSE = b"Connection: close\r\n\r\n"


async def test_a_long_pipeline_of_local_replies_does_not_nest(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    # No route matches: each 404 is answered within the step that started it.
    gw = await start_gateway(config(upstream))
    many = 600
    data = (
        b"GET /none HTTP/1.1\r\nHost: a\r\n\r\n" * many
        + b"GET /none HTTP/1.1\r\nHost: a\r\n"
        + CLOSE
    )
    replies = await parse_responses(await raw_request(gw.port, data))
    assert [r.status for r in replies] == [404] * (many + 1)


async def test_no_request_is_proxied_after_a_reply_closed_the_connection(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    # While the gateway drains, a reply closes its connection. A 404 is answered, and
    # the connection closed, while the rest of the same read is still being parsed:
    # the request pipelined behind it must not reach the upstream.
    gw = await start_gateway(config(upstream))
    assert gw.gateway is not None
    await raw_request(gw.port, b"GET /sync/warm HTTP/1.1\r\nHost: a\r\n" + CLOSE)  # pooled
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    gw.gateway.draining = True  # what Gateway.drain sets first
    writer.write(b"GET /none HTTP/1.1\r\nHost: a\r\n\r\nGET /sync/x HTTP/1.1\r\nHost: a\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    replies = await parse_responses(raw)
    assert [(r.status, r.header("connection")) for r in replies] == [(404, "close")]
    await asyncio.sleep(0.1)
    assert [s.path_qs for s in upstream.requests] == ["/sync/warm"]


async def test_drain_waits_for_an_exchange_running_without_a_task(
    upstream: RecordingUpstream, start_gateway: StartGateway, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    gw = await start_gateway(config(upstream, access_log=str(log)))
    assert gw.gateway is not None
    await raw_request(gw.port, b"GET /sync/warm HTTP/1.1\r\nHost: a\r\n" + CLOSE)  # pooled
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /delay/1 HTTP/1.1\r\nHost: a\r\n\r\n")
    await writer.drain()
    for _ in range(100):  # until the upstream has it
        if len(upstream.requests) == 2:
            break
        await asyncio.sleep(0.02)
    assert upstream.requests[1].headers["x-in-task"] == "no"
    assert gw.gateway.driven == 1
    # The connection is aborted; the exchange ends on its next wake-up, before the
    # snapshot and the access log close.
    await gw.gateway.drain(timeout=0.05)
    writer.close()
    assert gw.gateway.driven == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["path"], e["status"]) for e in entries] == [("/sync/warm", 200), ("/delay/1", 499)]
