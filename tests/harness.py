"""Real servers for the tests: a recording upstream and the gateway itself.

Nothing here fakes our own code. :class:`RecordingUpstream` is a real aiohttp server
on 127.0.0.1 that records what reached it and answers as the path asks:

    /status/<code>      reply with that status
    /delay/<seconds>    wait, then reply
    /bytes/<n>          stream n bytes of b"x" (chunked, or with Content-Length when
                        the query has ``length=1``)
    /upload             read the body in pieces, reply {"received": n}
    /ws                 WebSocket echo
    /headers/<name>=<v>[&...]  add response headers (query form: ?h=Name:value)
    anything else       JSON echo of method, path, headers and body length

:class:`InProcessGateway` builds the real gateway from a TOML string on the test's
event loop; :class:`GatewayProcess` runs ``wasmgate run`` as a child process (for
peak-RSS and signal tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from core.config import loads_config
from core.gateway import Gateway, Snapshot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body_len: int
    peer: tuple[str, int]


@dataclass
class RecordingUpstream:
    """A real upstream server that records every request it receives."""

    name: str = "upstream"
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Distinct TCP connections that carried at least one request."""
        return len(self.peers)

    async def start(self) -> RecordingUpstream:
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/ws", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _record(self, request: web.Request, body_len: int) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        peer_t = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        self.peers.add(peer_t)
        self.requests.append(
            Seen(
                request.method,
                request.path_qs,
                {k.lower(): v for k, v in request.headers.items()},
                list(request.raw_headers and [(k.decode(), v.decode()) for k, v in request.raw_headers]),
                body_len,
                peer_t,
            )
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/upload":
            n = 0
            async for chunk in request.content.iter_chunked(1 << 16):
                n += len(chunk)
            self._record(request, n)
            return web.json_response({"received": n, "upstream": self.name})
        body = await request.read()
        self._record(request, len(body))
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            return web.Response(status=code, text=f"status {code} from {self.name}\n")
        if path.startswith("/delay/"):
            await asyncio.sleep(float(path.split("/")[2]))
            return web.Response(text=f"delayed by {self.name}\n")
        if path.startswith("/bytes/"):
            n = int(path.split("/")[2])
            resp = web.StreamResponse()
            if request.query.get("length") == "1":
                resp.content_length = n
            else:
                resp.enable_chunked_encoding()
            await resp.prepare(request)
            piece = b"x" * (1 << 16)
            left = n
            while left > 0:
                await resp.write(piece[: min(left, len(piece))])
                left -= len(piece)
            await resp.write_eof()
            return resp
        extra = {}
        for item in request.query.getall("h", []):
            k, _, v = item.partition(":")
            extra[k] = v
        payload = {
            "upstream": self.name,
            "method": request.method,
            "path": request.path_qs,
            "headers": dict(request.headers),
            "body_len": len(body),
        }
        return web.json_response(payload, headers=extra)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        self._record(request, 0)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(f"echo: {msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws


class InProcessGateway:
    """The real gateway, built from a TOML string, serving on the test's loop."""

    def __init__(self, toml: str) -> None:
        self.config = loads_config(toml, "test.toml")
        self.gateway: Gateway | None = None

    async def start(self) -> InProcessGateway:
        loop = asyncio.get_running_loop()
        self.gateway = Gateway(Snapshot(self.config, "test.toml"), loop)
        await self.gateway.start()
        return self

    @property
    def port(self) -> int:
        assert self.gateway is not None
        return self.gateway.sockets[0][1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.drain(timeout=1.0)


def gateway_toml(
    upstreams: dict[str, list[str]],
    routes: str = "",
    *,
    default: str | None = None,
    server: str = "",
    upstream_extra: str = "",
    listen: str = "127.0.0.1:0",
) -> str:
    """A config with the given upstreams (name -> endpoints) plus extra TOML."""
    parts = [f'[server]\nlisten = ["{listen}"]\naccess_log = "off"\n{server}\n']
    for name, endpoints in upstreams.items():
        eps = ", ".join(f'"{e}"' for e in endpoints)
        parts.append(f'[[upstreams]]\nname = "{name}"\nendpoints = [{eps}]\n{upstream_extra}\n')
    parts.append(routes)
    if default:
        parts.append(f'\n[default]\nupstream = "{default}"\n')
    return "\n".join(parts)


async def raw_request(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send exact bytes, read until the server closes (or the timeout); the reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    chunks = []
    try:
        async with asyncio.timeout(read_timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except TimeoutError:
        pass
    writer.close()
    return b"".join(chunks)


class GatewayProcess:
    """``wasmgate run`` in a child process, for RSS and signal behaviour."""

    def __init__(self, toml: str, *, workdir: str | None = None) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="wasmgate-test-"))
        self.config_path = self.dir / "gateway.toml"
        self.config_path.write_text(toml)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "gateway.log"

    def start(self, port: int, *extra: str) -> GatewayProcess:
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run", "-c", str(self.config_path), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not start: {self.log_path.read_text()}")

    def peak_rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text()


def parse_json(body: bytes) -> Any:
    return json.loads(body)
