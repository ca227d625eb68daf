"""Soak test: mixed traffic through a real ``wasmgate run`` for minutes, with reloads.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 40] [--workers 1]   (make soak)

Starts, on 127.0.0.1 and free ports, two small aiohttp upstreams (``v1`` and ``v2``:
a JSON echo naming the service, ``?mirror`` bodies, ``/ws`` WebSocket echo, ``/stream``
slow chunked download; this same script with ``--serve``) and ``wasmgate run`` in front
of them, then drives a steady, moderate mix of traffic from asyncio tasks (aiohttp
client): keep-alive and ``Connection: close`` GETs, POST bodies of 2 KiB to 1 MiB
(some chunked, half mirrored back), a canary route by header, cookie and weight,
key-auth successes and 401s, a rate-limited route (429s), the as-headers Proxy-Wasm
filter (built with plugins/wasm/build.py; left out with a warning if that fails),
404s, a route that reloads add and remove, short and long-lived WebSockets and now and
then a slow streaming download. Every ``--reload-every`` seconds the configuration is
rewritten (the wasm filter's and a headers filter's config change, the extra route
comes or goes) and the gateway gets SIGHUP.

Every outcome is classified: expected (2xx, and 401 / 404 / 429 where the route should
give them) or unexpected (any other status, connection errors, timeouts, WebSocket
drops, bodies or headers that do not match). The gateway's RSS and open fds are read
from /proc when traffic is quiet after a 20 s warm-up (start), every minute under load,
and when it is quiet again at the end (client connections closed, then 5 s). Targets:
no unexpected outcome, every SIGHUP applied and no failed reload, RSS growth under
10 %, and fds back to the start figure: every fd that is not an upstream connection
within +2 of it, upstream connections at most what the keep-alive pools may hold.

Writes bench/results/soak-<UTC timestamp>.json, prints a table, exits 1 when a target
is missed (2 when it could not run). Not part of ``make test``: run ``make soak``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WASM_FILTER = ROOT / "plugins" / "wasm" / "as-headers" / "build" / "filter.wasm"
API_KEY = "soak-key-0123456789abcdef"
KEEPALIVE = 8  # the gateway's idle connections per upstream endpoint
RSS_GROWTH_MAX = 0.10
OTHER_FDS_SLACK = 2
WARMUP_S = 20.0
SETTLE_S = 5.0
GATEWAY_IDLE_S = 4.0  # server.limits.idle_timeout: below SETTLE_S, above the client's
CLIENT_KEEPALIVE_S = 2.0
STREAM_CHUNKS, STREAM_CHUNK, STREAM_DELAY = 40, 32 * 1024, 0.25  # 1.25 MiB over 10 s
WASM_VALUES = ("soak-a", "soak-b")  # the as-headers response header, alternating by reload

# ---------------------------------------------------------------------------- upstream


def stream_bytes(chunks: int, size: int) -> list[bytes]:
    block = bytes(range(251)) * (size // 251 + 2)
    return [block[i % 251 : i % 251 + size] for i in range(chunks)]


def upstream_app(name: str) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
            return ws
        if request.path.endswith("/stream"):
            q = request.query
            resp = web.StreamResponse(headers={"X-Upstream": name})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for chunk in stream_bytes(int(q["chunks"]), int(q["size"])):
                await resp.write(chunk)
                await asyncio.sleep(float(q["delay"]))
            await resp.write_eof()
            return resp
        body = await request.read()
        if "mirror" in request.query:
            return web.Response(body=body, headers={"X-Upstream": name})
        return web.json_response(
            {
                "name": name,
                "version": {"v1": "1.0", "v2": "2.0"}.get(name, "0"),
                "method": request.method,
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            },
            headers={"X-Upstream": name},
        )

    app = web.Application(client_max_size=8 << 20)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


# ---------------------------------------------------------------------------- gateway


def gateway_toml(version: int, port: int, ups: dict[str, int], tmp: Path, wasm: bool) -> str:
    """Configuration ``version``: odd ones have the /extra route; the stamp and the wasm
    filter's config change with every version."""
    toml = f"""global_filters = ["stamp"]

[server]
listen = ["127.0.0.1:{port}"]
access_log = "{tmp / "access.log"}"

[server.limits]
idle_timeout = {GATEWAY_IDLE_S}
drain_timeout = 5

[[upstreams]]
name = "v1"
endpoints = ["127.0.0.1:{ups["v1"]}"]
keepalive = {KEEPALIVE}

[[upstreams]]
name = "v2"
endpoints = ["127.0.0.1:{ups["v2"]}"]
keepalive = {KEEPALIVE}

[filters.stamp]
plugin = "headers"
config.response.set = {{ "X-Config" = "{version}" }}

[filters.keys]
plugin = "key-auth"
config.consumers = [{{ name = "alice", key = "{API_KEY}" }}]

[filters.limit]
plugin = "rate-limit"
config = {{ rate = 2, per = 1.0, burst = 4 }}

[filters.split]
plugin = "canary"
config = {{ upstream = "v2", header = "x-canary", cookie = "canary", weight = 20 }}

[[routes]]
name = "api"
paths = ["/api"]
upstream = "v1"

[[routes]]
name = "checkout"
paths = ["/checkout"]
upstream = "v1"
filters = ["split"]

[[routes]]
name = "private"
paths = ["/private"]
upstream = "v1"
filters = ["keys"]

[[routes]]
name = "limited"
paths = ["/limited"]
upstream = "v1"
filters = ["limit"]

[[routes]]
name = "ws"
paths = ["/ws"]
upstream = "v1"

[[routes]]
name = "stream"
paths = ["/stream"]
upstream = "v2"
"""
    if version % 2:
        toml += '\n[[routes]]\nname = "extra"\npaths = ["/extra"]\nupstream = "v2"\n'
    if wasm:
        value = WASM_VALUES[version % 2]
        toml += f"""
[[routes]]
name = "wasm"
paths = ["/wasm"]
upstream = "v1"
filters = ["as-headers"]

[filters.as-headers]
wasm = "{WASM_FILTER}"
config = {{ request_value = "soak", response_value = "{value}" }}
"""
    return toml


def ensure_wasm() -> bool:
    build = subprocess.run(
        [sys.executable, str(ROOT / "plugins" / "wasm" / "build.py"), "as-headers"], check=False
    )
    if build.returncode == 0 and WASM_FILTER.exists():
        return True
    log("warning: the as-headers WASM filter could not be built (`make wasm`); no wasm traffic")
    return False


# ---------------------------------------------------------------------------- /proc probes


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the workers when it is a supervisor)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(entry.name))
    return pids


def tcp_sockets() -> dict[str, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) of every TCP socket."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                out[f[9]] = (int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16), f[3])
    return out


def probe(pid: int, port: int, upstream_ports: set[int]) -> dict[str, Any]:
    """RSS, peak RSS, CPU seconds and open fds (by kind) of the gateway's processes."""
    rss = hwm = 0
    cpu = 0.0
    kinds: Counter[str] = Counter()
    sockets = tcp_sockets()
    tick = os.sysconf("SC_CLK_TCK")
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{p}/status").read_text().splitlines()
            )
            rss += int(status["VmRSS"].split()[0])
            hwm += int(status["VmHWM"].split()[0])
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{p}/fd/{fd}")
                    kinds[fd_kind(target, sockets, port, upstream_ports)] += 1
    return {
        "rss_kib": rss,
        "hwm_kib": hwm,
        "cpu_s": round(cpu, 2),
        "fds": sum(kinds.values()),
        "fd_kinds": dict(sorted(kinds.items())),
    }


def fd_kind(target: str, sockets: dict[str, tuple[int, int, str]], port: int, ups: set[int]) -> str:
    """What an fd is, from its /proc/PID/fd link: TCP sockets by role, files by kind."""
    if not target.startswith("socket:["):
        if target.endswith(".cwasm"):
            return "wasm module"  # a compiled module from the cache, mapped by wasmtime
        if target.startswith("/"):
            return "file"
        return target.split(":", 1)[0]  # pipe, anon_inode
    entry = sockets.get(target[8:-1])
    if entry is None:
        return "unix socket"
    local, remote, state = entry
    if state == "0A":
        return "listener"
    if local == port:
        return "client"
    return "upstream" if remote in ups else "tcp other"


# ---------------------------------------------------------------------------- outcomes


EXPECTED: dict[str, set[str]] = {
    "auth fail": {"401"},
    "rate-limited": {"200", "429"},
    "not found": {"404"},
    "extra route": {"200", "404"},
    "websocket": {"ok"},
    "websocket long": {"ok"},
}


@dataclass
class Tally:
    by_class: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    ws_messages: int = 0
    canary_weight: Counter[str] = field(default_factory=Counter)
    configs_seen: set[str] = field(default_factory=set)
    framing_upstream: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def add(self, cls: str, result: str, detail: str = "") -> None:
        self.by_class[cls][result] += 1
        if result not in EXPECTED.get(cls, {"200"}):
            t = round(time.monotonic() - self.started, 1)
            self.unexpected.append({"t": t, "class": cls, "result": result, "detail": detail[:300]})

    def totals(self) -> tuple[int, int]:
        total = sum(sum(c.values()) for c in self.by_class.values())
        return total, len(self.unexpected)


Check = Callable[[aiohttp.ClientResponse, bytes], str | None]


def echo_check(name: str, **headers: str) -> Check:
    """The JSON echo came from upstream ``name`` and saw ``headers`` ("": absent)."""

    def check(resp: aiohttp.ClientResponse, body: bytes) -> str | None:
        got = json.loads(body)
        if got["name"] != name:
            return f"answered by {got['name']}, expected {name}"
        for key, want in headers.items():
            seen = got["headers"].get(key.replace("_", "-"))
            if seen != (want or None):
                return f"upstream saw {key}={seen!r}, expected {want!r}"
        return None

    return check


# ---------------------------------------------------------------------------- traffic


class Client:
    """The traffic generator: one phase at a time, every outcome into ``tally``."""

    def __init__(self, base: str, tally: Tally, wasm: bool, rate: float, seed: int) -> None:
        self.base = base
        self.tally = tally
        self.wasm = wasm
        self.rate = rate
        self.seed = seed
        self.stop = asyncio.Event()
        self.keepalive: aiohttp.ClientSession | None = None
        self.closing: aiohttp.ClientSession | None = None  # Connection: close
        self.ws: aiohttp.ClientSession | None = None  # no total timeout
        self.ops: list[tuple[int, Callable[[random.Random], Awaitable[None]]]] = [
            (30, self.op_get),
            (8, self.op_get_close),
            (10, self.op_post),
            (12, self.op_canary),
            (10, self.op_auth),
            (8, self.op_limited),
            (8 if wasm else 0, self.op_wasm),
            (5, self.op_not_found),
            (3, self.op_extra),
            (4, self.op_websocket),
        ]

    def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=60, sock_read=20)
        jar = aiohttp.DummyCookieJar()
        conn = aiohttp.TCPConnector(keepalive_timeout=CLIENT_KEEPALIVE_S)
        self.keepalive = aiohttp.ClientSession(connector=conn, timeout=timeout, cookie_jar=jar)
        conn = aiohttp.TCPConnector(force_close=True)
        self.closing = aiohttp.ClientSession(connector=conn, timeout=timeout, cookie_jar=jar)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        self.ws = aiohttp.ClientSession(timeout=timeout, cookie_jar=jar)

    async def shut(self) -> None:
        for session in (self.keepalive, self.closing, self.ws):
            if session is not None:
                await session.close()
        self.keepalive = self.closing = self.ws = None

    async def http(
        self,
        cls: str,
        method: str,
        path: str,
        *,
        check: Check | None = None,
        session: aiohttp.ClientSession | None = None,
        **kw: Any,
    ) -> None:
        session = session or self.keepalive
        assert session is not None
        detail = ""
        try:
            async with session.request(method, self.base + path, **kw) as resp:
                body = await resp.read()
                result = str(resp.status)
                routed = 200 <= resp.status < 300 or resp.status in (401, 429)
                if config := resp.headers.get("X-Config"):
                    self.tally.configs_seen.add(config)
                elif routed:  # every route runs the stamp filter
                    result, detail = "mismatch", f"{resp.status} without X-Config"
                if 200 <= resp.status < 300 and check is not None and result != "mismatch":
                    try:
                        problem = check(resp, body)
                    except (ValueError, KeyError, TypeError) as exc:
                        problem = f"unreadable answer {exc!r}: {body[:100]!r}"
                    if problem:
                        result, detail = "mismatch", problem
                elif result not in EXPECTED.get(cls, {"200"}):
                    detail = body[:200].decode(errors="replace")
        except TimeoutError as exc:
            result, detail = "timeout", repr(exc)
        except (aiohttp.ClientError, OSError) as exc:
            result, detail = f"error:{type(exc).__name__}", str(exc)
        self.tally.add(cls, result, f"{method} {path}: {detail}" if detail else "")

    # -- the operations of the mix

    async def op_get(self, rng: random.Random) -> None:
        path = f"/api/items/{rng.randrange(10**6)}"
        await self.http("get keep-alive", "GET", path, check=echo_check("v1"))

    async def op_get_close(self, rng: random.Random) -> None:
        path = f"/api/items/{rng.randrange(10**6)}"
        await self.http(
            "get close", "GET", path, check=echo_check("v1"), session=self.closing,
            headers={"Connection": "close"},
        )  # fmt: skip

    async def op_post(self, rng: random.Random) -> None:
        size = int(2048 * (512 ** rng.random()))  # log-uniform, 2 KiB .. 1 MiB
        data = rng.randbytes(size)
        chunked = rng.random() < 0.35
        mirror = rng.random() < 0.5
        cls = "post chunked" if chunked else "post"
        path = "/api/upload?mirror=1" if mirror else "/api/upload"
        digest = hashlib.sha256(data).hexdigest()

        def check(resp: aiohttp.ClientResponse, body: bytes) -> str | None:
            if mirror:
                return None if body == data else f"mirrored {len(body)} bytes of {size}, differ"
            got = json.loads(body)
            seen = got["headers"].get("transfer-encoding", "content-length")
            sent = "chunked" if chunked else "content-length"
            self.tally.framing_upstream[f"{sent} -> {seen}"] += 1
            if got["body_len"] != size or got["body_sha256"] != digest:
                return f"upstream got {got['body_len']} bytes of {size} (or a different digest)"
            return None

        async def pieces() -> Any:
            for i in range(0, size, 64 * 1024):
                yield data[i : i + 64 * 1024]

        await self.http(cls, "POST", path, check=check, data=pieces() if chunked else data)

    async def op_canary(self, rng: random.Random) -> None:
        how = rng.choice(["header", "header", "cookie", "weight", "weight"])
        side = rng.choice(["always", "never"])
        want = "v2" if side == "always" else "v1"
        path = f"/checkout/{rng.randrange(1000)}"
        if how == "header":
            await self.http("canary header", "GET", path, check=echo_check(want),
                            headers={"X-Canary": side})  # fmt: skip
        elif how == "cookie":
            await self.http("canary cookie", "GET", path, check=echo_check(want),
                            headers={"Cookie": f"canary={side}"})  # fmt: skip
        else:

            def check(resp: aiohttp.ClientResponse, body: bytes) -> str | None:
                name = str(json.loads(body)["name"])
                self.tally.canary_weight[name] += 1
                return None if name in ("v1", "v2") else f"answered by {name}"

            await self.http("canary weight", "GET", path, check=check)

    async def op_auth(self, rng: random.Random) -> None:
        if rng.random() < 0.6:
            check = echo_check("v1", x_consumer="alice", x_api_key="")
            await self.http("auth ok", "GET", "/private/me", check=check,
                            headers={"X-Api-Key": API_KEY})  # fmt: skip
        else:
            headers = rng.choice([{}, {"X-Api-Key": "soak-wrong-key-000000000"}])
            await self.http("auth fail", "GET", "/private/me", headers=headers)

    async def op_limited(self, rng: random.Random) -> None:
        await self.http("rate-limited", "GET", "/limited", check=echo_check("v1"))

    async def op_wasm(self, rng: random.Random) -> None:
        def check(resp: aiohttp.ClientResponse, body: bytes) -> str | None:
            if resp.headers.get("x-wasm-filter") not in WASM_VALUES:
                return f"x-wasm-filter: {resp.headers.get('x-wasm-filter')!r}"
            return echo_check("v1", x_wasm="soak")(resp, body)

        await self.http("wasm", "GET", f"/wasm/{rng.randrange(1000)}", check=check)

    async def op_not_found(self, rng: random.Random) -> None:
        await self.http("not found", "GET", f"/nowhere/{rng.randrange(1000)}")

    async def op_extra(self, rng: random.Random) -> None:
        await self.http("extra route", "GET", "/extra", check=echo_check("v2"))

    async def op_websocket(self, rng: random.Random) -> None:
        await self.websocket("websocket", rng, messages=rng.randint(3, 10), gap=0.05)

    async def websocket(self, cls: str, rng: random.Random, messages: int, gap: float) -> None:
        assert self.ws is not None
        result, detail = "ok", ""
        try:
            async with self.ws.ws_connect(self.base + "/ws/echo") as ws:
                for i in range(messages):
                    if i and self.stop.is_set():
                        break
                    if rng.random() < 0.7:
                        sent: str | bytes = f"{cls} {i} " + "x" * rng.randrange(2000)
                        await ws.send_str(sent)
                    else:
                        sent = rng.randbytes(rng.randrange(1, 64 * 1024))
                        await ws.send_bytes(sent)
                    msg = await ws.receive(timeout=15)
                    if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        result, detail = "ws-drop", f"message {i}: {msg.type.name} {msg.data!r}"
                        break
                    if msg.data != sent:
                        result, detail = "mismatch", f"message {i} came back different"
                        break
                    self.tally.ws_messages += 1
                    await self.pause(gap)
                await ws.close()
                if result == "ok" and ws.close_code != 1000:
                    result, detail = "ws-close", f"close code {ws.close_code}"
        except TimeoutError as exc:
            result, detail = "timeout", repr(exc)
        except aiohttp.WSServerHandshakeError as exc:
            result, detail = f"ws-handshake:{exc.status}", str(exc)
        except (aiohttp.ClientError, OSError) as exc:
            result, detail = f"error:{type(exc).__name__}", str(exc)
        self.tally.add(cls, result, detail)

    async def stream(self) -> None:
        expected = hashlib.sha256(b"".join(stream_bytes(STREAM_CHUNKS, STREAM_CHUNK))).hexdigest()
        query = f"chunks={STREAM_CHUNKS}&size={STREAM_CHUNK}&delay={STREAM_DELAY}"

        def check(resp: aiohttp.ClientResponse, body: bytes) -> str | None:
            ok = hashlib.sha256(body).hexdigest() == expected
            return None if ok else f"{len(body)} bytes, not the {STREAM_CHUNKS} chunks sent"

        await self.http("stream", "GET", f"/stream/dl/stream?{query}", check=check)

    # -- the tasks

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def worker(self, index: int, workers: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        weights = [w for w, _ in self.ops]
        interval = workers / self.rate
        await self.pause(rng.random() * interval)
        next_at = time.monotonic()
        while not self.stop.is_set():
            op = rng.choices([op for _, op in self.ops], weights)[0]
            try:
                await op(rng)
            except Exception as exc:  # a bug of this script: count it, keep going
                self.tally.add("client", "bug", f"{op.__name__}: {exc!r}")
            next_at = max(time.monotonic(), next_at + interval * rng.uniform(0.5, 1.5))
            await self.pause(next_at - time.monotonic())

    async def long_websockets(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + 500 + index)
        while not self.stop.is_set():
            await self.websocket("websocket long", rng, messages=rng.randint(60, 180), gap=1.0)

    async def streams(self) -> None:
        rng = random.Random(self.seed * 1000 + 900)
        await self.pause(rng.uniform(2, 10))
        while not self.stop.is_set():
            await self.stream()
            await self.pause(rng.uniform(15, 30))

    async def run(self, seconds: float, extra: list[Awaitable[None]], workers: int = 8) -> None:
        """Traffic for ``seconds``, then stop and wait for what is in flight to finish."""
        self.stop.clear()
        self.open()
        tasks = [asyncio.ensure_future(self.worker(i, workers)) for i in range(workers)]
        tasks += [asyncio.ensure_future(self.long_websockets(i)) for i in range(2)]
        tasks += [asyncio.ensure_future(self.streams())]
        tasks += [asyncio.ensure_future(e) for e in extra]
        await self.pause(seconds)
        self.stop.set()
        _, stuck = await asyncio.wait(tasks, timeout=60)
        for task in stuck:
            task.cancel()
            self.tally.add("client", "stuck", f"a task did not finish in 60 s: {task!r}")
        for task in tasks:
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
        await self.shut()


# ---------------------------------------------------------------------------- the run


def log(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupError(f"{what} exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SetupError(f"{what} did not listen on port {port}")


class SetupError(Exception):
    """The soak could not start; the message says why."""


@dataclass
class Gateway:
    """The ``wasmgate run`` under test, its configuration file and the reloads sent."""

    proc: subprocess.Popen[bytes]
    config: Path
    log_path: Path
    port: int
    upstreams: dict[str, int]
    wasm: bool
    version: int = 0
    sighups: int = 0

    @classmethod
    def start(cls, tmp: Path, upstreams: dict[str, int], wasm: bool, workers: int) -> Gateway:
        wasmgate = str(ROOT / ".venv" / "bin" / "wasmgate")
        port, config = free_port(), tmp / "gateway.toml"
        config.write_text(gateway_toml(0, port, upstreams, tmp, wasm))
        check = subprocess.run(
            [wasmgate, "check", "-c", str(config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise SetupError(f"the configuration does not load:\n{check.stdout}{check.stderr}")
        log_path = tmp / "gateway.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [wasmgate, "--log-level", "info", "run", "-c", str(config), "-w", str(workers)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        gateway = cls(proc, config, log_path, port, upstreams, wasm)
        wait_port(port, proc, "the gateway")
        return gateway

    def reload(self) -> None:
        """Write the next configuration version whole, then SIGHUP."""
        self.version += 1
        staged = self.config.with_suffix(".next")
        staged.write_text(
            gateway_toml(self.version, self.port, self.upstreams, self.config.parent, self.wasm)
        )
        os.replace(staged, self.config)  # the file watcher never sees half a file
        self.proc.send_signal(signal.SIGHUP)
        self.sighups += 1

    async def reloads(self, stop: asyncio.Event, first: float, every: float) -> None:
        delay = first
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
                return
            self.reload()
            delay = every

    def probe(self) -> dict[str, Any]:
        return probe(self.proc.pid, self.port, set(self.upstreams.values()))


async def watch(gw: Gateway, client: Client, samples: list[dict[str, Any]]) -> None:
    """A sample every minute under load; ends the traffic early if the gateway exits."""
    began = time.monotonic()
    due = began + 60
    while not client.stop.is_set():
        await client.pause(1)
        if gw.proc.poll() is not None:
            client.tally.add("gateway", "exited", f"exit status {gw.proc.returncode}")
            client.stop.set()
            return
        if time.monotonic() >= due and not client.stop.is_set():
            due += 60
            sample = {"t_s": round(time.monotonic() - began), "phase": "load", **gw.probe()}
            samples.append(sample)
            total, bad = client.tally.totals()
            log(
                f"  {sample['t_s'] / 60:4.1f} min: RSS {sample['rss_kib'] / 1024:.1f} MiB, "
                f"{sample['fds']} fds, {total} outcomes ({bad} unexpected), "
                f"{gw.sighups} reloads"
            )


async def soak(args: argparse.Namespace, gw: Gateway, tally: Tally) -> dict[str, Any]:
    client = Client(f"http://127.0.0.1:{gw.port}", tally, gw.wasm, args.rate, args.seed)
    log(f"warm-up: {WARMUP_S:g} s of traffic with one reload, then {SETTLE_S:g} s quiet")
    await client.run(WARMUP_S, [gw.reloads(client.stop, WARMUP_S / 2, 3600)])
    await asyncio.sleep(SETTLE_S)
    start = {"t_s": 0, "phase": "quiet", **gw.probe()}
    samples = [start]
    log(f"start: RSS {start['rss_kib'] / 1024:.1f} MiB, {start['fds']} fds {start['fd_kinds']}")
    warm_total, warm_bad = tally.totals()
    log(
        f"soak: {args.minutes:g} min at about {args.rate:g} operations/s, a reload every "
        f"{args.reload_every:g} s"
    )
    began = time.monotonic()
    reloads = gw.reloads(client.stop, args.reload_every, args.reload_every)
    await client.run(args.minutes * 60, [reloads, watch(gw, client, samples)])
    traffic_s = time.monotonic() - began
    await asyncio.sleep(SETTLE_S)  # client connections are closed; the gateway's idle ones time out
    end = {"t_s": round(time.monotonic() - began), "phase": "quiet", **gw.probe()}
    samples.append(end)
    log(f"end: RSS {end['rss_kib'] / 1024:.1f} MiB, {end['fds']} fds {end['fd_kinds']}")
    return {
        "traffic_s": round(traffic_s, 1),
        "warmup": {"outcomes": warm_total, "unexpected": warm_bad},
        "samples": samples,
    }


# ---------------------------------------------------------------------------- the report


def gateway_log_figures(text: str, gw: Gateway, workers: int) -> dict[str, Any]:
    lines = text.splitlines()
    problems = [
        ln for ln in lines if any(w in ln for w in ("ERROR", "Traceback", "CRITICAL", "WARNING"))
    ]
    return {
        "sighups_sent": gw.sighups,
        "applied": sum("reloaded (" in ln for ln in lines),
        "applied_sighup": sum("reloaded (SIGHUP)" in ln for ln in lines),
        "applied_files_changed": sum("reloaded (files changed)" in ln for ln in lines),
        "failed": sum("reload (" in ln and "failed" in ln for ln in lines),
        "sighup_applied_expected": gw.sighups * workers,
        "log_problem_lines": len(problems),
        "log_problems_first": problems[:30],
    }


def verdicts(report: dict[str, Any]) -> dict[str, bool]:
    rss, fds, reloads = report["rss_kib"], report["fds"], report["reloads"]
    start, end = fds["start"], fds["end"]
    upstream_end = end["kinds"].get("upstream", 0)
    checks = {
        "zero_unexpected": report["requests"]["unexpected"] == 0,
        "every_reload_applied": reloads["applied_sighup"] >= reloads["sighup_applied_expected"]
        and reloads["failed"] == 0,
        "rss_growth_under_10pct": rss["end"] - rss["start"] < RSS_GROWTH_MAX * rss["start"],
        "fds_back_to_baseline": (
            end["total"] - upstream_end
            <= start["total"] - start["kinds"].get("upstream", 0) + OTHER_FDS_SLACK
        )
        and upstream_end <= fds["upstream_pool_capacity"],
    }
    return {**checks, "pass": all(checks.values())}


def machine_info() -> dict[str, Any]:
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return {
        "nproc": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "wasmgate_git": git.stdout.strip(),
    }


def build_report(
    args: argparse.Namespace, gw: Gateway, tally: Tally, run: dict[str, Any]
) -> dict[str, Any]:
    samples = run["samples"]
    start, end = samples[0], samples[-1]
    total, unexpected = tally.totals()
    weight = tally.canary_weight
    report: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "minutes": args.minutes,
            "rate_ops_per_s": args.rate,
            "reload_every_s": args.reload_every,
            "workers": args.workers,
            "seed": args.seed,
            "wasm": gw.wasm,
            "warmup_s": WARMUP_S,
            "settle_s": SETTLE_S,
            "gateway_idle_timeout_s": GATEWAY_IDLE_S,
            "client_keepalive_s": CLIENT_KEEPALIVE_S,
            "upstream_keepalive": KEEPALIVE,
        },
        "duration_s": run["traffic_s"],
        "warmup": run["warmup"],
        "requests": {
            "total": total,
            "expected": total - unexpected,
            "unexpected": unexpected,
            "by_class": {k: dict(sorted(v.items())) for k, v in sorted(tally.by_class.items())},
        },
        "websocket": {
            "sessions": sum(tally.by_class[c].total() for c in ("websocket", "websocket long")),
            "long_lived_sessions": tally.by_class["websocket long"].total(),
            "messages_echoed": tally.ws_messages,
        },
        "canary_weight": {
            "v1": weight["v1"],
            "v2": weight["v2"],
            "v2_share": round(weight["v2"] / max(1, weight.total()), 3),
            "configured": 0.2,
        },
        "post_framing_seen_upstream": dict(tally.framing_upstream),
        "config_versions_seen": len(tally.configs_seen),
        "reloads": gateway_log_figures(gw.log_path.read_text(errors="replace"), gw, args.workers),
        "rss_kib": {
            "start": start["rss_kib"],
            "end": end["rss_kib"],
            "peak_sampled": max(s["rss_kib"] for s in samples),
            "vm_hwm": end["hwm_kib"],
            "growth_pct": round(100 * (end["rss_kib"] - start["rss_kib"]) / start["rss_kib"], 2),
        },
        "fds": {
            "start": {"total": start["fds"], "kinds": start["fd_kinds"]},
            "end": {"total": end["fds"], "kinds": end["fd_kinds"]},
            "upstream_pool_capacity": KEEPALIVE * 2 * args.workers,
            "allowance": f"fds other than upstream connections: at most {OTHER_FDS_SLACK} "
            f"over the start; upstream connections: at most the pools' capacity, {KEEPALIVE} "
            f"idle per upstream x 2 upstreams x {args.workers} worker(s)",
        },
        "gateway_cpu_pct": round(100 * (end["cpu_s"] - start["cpu_s"]) / max(1, end["t_s"]), 1),
        "samples": samples,
        "unexpected_first": tally.unexpected[:100],
    }
    report["verdict"] = verdicts(report)
    return report


def print_report(r: dict[str, Any]) -> None:
    log(f"\n{'class':16} {'total':>7}  outcomes")
    for cls, counts in r["requests"]["by_class"].items():
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        log(f"{cls:16} {sum(counts.values()):>7}  {shown}")
    q, ws, cw, rl = r["requests"], r["websocket"], r["canary_weight"], r["reloads"]
    m, f = r["rss_kib"], r["fds"]
    for line in (
        f"\n{q['total']} outcomes in {r['duration_s']:g} s of traffic (after the warm-up): "
        f"{q['expected']} expected, {q['unexpected']} unexpected",
        f"websockets: {ws['sessions']} sessions ({ws['long_lived_sessions']} long-lived), "
        f"{ws['messages_echoed']} messages echoed",
        f"canary by weight: {cw['v2_share']:.1%} of {cw['v1'] + cw['v2']} to v2 (configured 20 %)",
        f"reloads: {rl['sighups_sent']} SIGHUPs, {rl['applied']} applied ({rl['applied_sighup']} "
        f"by SIGHUP, {rl['applied_files_changed']} by the file watcher), {rl['failed']} failed",
        f"RSS: start {m['start'] / 1024:.1f} MiB, end {m['end'] / 1024:.1f} MiB, peak sampled "
        f"{m['peak_sampled'] / 1024:.1f} MiB (VmHWM {m['vm_hwm'] / 1024:.1f}), growth "
        f"{m['growth_pct']:+.2f} %",
        f"fds: start {f['start']['total']} {f['start']['kinds']}, "
        f"end {f['end']['total']} {f['end']['kinds']}",
        f"fd allowance: {f['allowance']}",
        f"gateway CPU: {r['gateway_cpu_pct']} % of one core on average",
        "",
    ):
        log(line)
    for name, ok in r["verdict"].items():
        if name != "pass":
            log(f"target {name}: {'MET' if ok else 'NOT MET'}")
    for item in r["unexpected_first"][:10]:
        log(f"  unexpected at {item['t']} s: {item['class']} {item['result']} {item['detail']}")
    for line in rl["log_problems_first"][:10]:
        log(f"  gateway log: {line[:200]}")


# ---------------------------------------------------------------------------- main


def start_upstreams(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> dict[str, int]:
    ports = {name: free_port() for name in ("v1", "v2")}
    for name, port in ports.items():
        with (tmp / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", f"{name}:{port}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(proc)
        wait_port(port, proc, f"upstream {name}")
    return ports


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/soak.py",
        description=__doc__.split("\n\n")[0],
        epilog="Results: bench/results/soak-<UTC timestamp>.json. Exit status: 0 every "
        "target met, 1 a target missed, 2 could not run, 130 interrupted.",
    )
    add = parser.add_argument
    add("--minutes", type=float, default=10.0, help="traffic after the warm-up (default: 10)")
    add("--rate", type=float, default=40.0, help="operations a second (default: 40)")
    add("--reload-every", type=float, default=20.0, help="seconds between reloads (default: 20)")
    add("--workers", type=int, default=1, help="gateway worker processes (default: 1)")
    add("--seed", type=int, default=1, help="random seed of the traffic mix (default: 1)")
    add("--no-wasm", action="store_true", help="leave out the Proxy-Wasm route")
    add("--keep", action="store_true", help="keep the logs and config even when it passes")
    add("--serve", metavar="NAME:PORT", help=argparse.SUPPRESS)  # an upstream, for the run
    return parser


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        name, port = args.serve.split(":")
        web.run_app(upstream_app(name), host="127.0.0.1", port=int(port), print=None)
        return 0
    if not (ROOT / ".venv" / "bin" / "wasmgate").exists():
        log("soak: .venv/bin/wasmgate not found; run `make install`")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="wasmgate-soak-"))
    procs: list[subprocess.Popen[bytes]] = []
    tally = Tally()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        ups = start_upstreams(tmp, procs)
        wasm = not args.no_wasm and ensure_wasm()
        gw = Gateway.start(tmp, ups, wasm, args.workers)
        procs.append(gw.proc)
        run = asyncio.run(soak(args, gw, tally))
    except SetupError as exc:
        log(f"soak: {exc}; logs in {tmp}")
        return 2
    except KeyboardInterrupt:
        log(f"\nsoak: interrupted; logs in {tmp}")
        return 130
    finally:
        stop_all(procs)
    report = build_report(args, gw, tally, run)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"soak-{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    ok = report["verdict"]["pass"]
    log(f"\nverdict: {'PASS' if ok else 'FAIL'}; results: {out.relative_to(ROOT)}")
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log(f"gateway log, access log and configuration kept in {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
