"""Testing tools for plugin authors.

In-process, no sockets — run one filter, or a chain, exactly as the gateway would::

    from plugin_sdk.testing import make_request, run_filter
    from my_plugin import AddHeader

    def test_adds_header():
        result = run_filter(AddHeader, make_request("GET", "/x"), config={"value": "1"})
        assert result.request.headers.get("x-added") == "1"

``run_filter``/``run_chain`` are synchronous (for plain tests); ``arun_filter`` and
``arun_chain`` are their ``async`` twins for async tests. Both use the gateway's own
chain runner (:mod:`plugin_sdk.chain`), so ordering and fail strategies are the real ones.

Against the real gateway — a :class:`RecordingUpstream` (a real HTTP server on
127.0.0.1 that records what reaches it) and :func:`start_gateway`, which runs the
installed ``wasmgate`` with your config. The pytest fixtures ``recording_upstream``
and ``wasmgate_gateway`` (see :mod:`plugin_sdk.pytest_plugin`) wrap both.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from plugin_sdk.chain import Chain, FilterInstance
from plugin_sdk.context import Context
from plugin_sdk.filter import Filter
from plugin_sdk.headers import Headers
from plugin_sdk.http import LocalReply, Request, Response, TLSInfo

__all__ = [
    "GatewayProcess",
    "RecordingUpstream",
    "Result",
    "Seen",
    "arun_chain",
    "arun_filter",
    "free_port",
    "make_filter",
    "make_request",
    "make_wasm_filter",
    "run_chain",
    "run_filter",
    "start_gateway",
]

# ---------------------------------------------------------------------- in-process


def make_request(
    method: str = "GET",
    target: str = "/",
    *,
    host: str = "example.com",
    headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
    body: bytes | None = None,
    client_ip: str = "127.0.0.1",
    scheme: str = "http",
    trailers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
) -> Request:
    """A request as the gateway would hand it to a filter (``trailers``: what the
    client sent after the body, as a filter that reads the body sees it)."""
    return Request(
        method,
        target,
        host=host,
        headers=Headers.of(headers or {}),
        scheme=scheme,
        client_ip=client_ip,
        body=body,
        trailers=Headers.of(trailers) if trailers is not None else None,
    )


def make_filter(
    plugin: type[Filter[Any]] | Filter[Any] | FilterInstance,
    config: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    fail_open: bool = False,
) -> FilterInstance:
    """A configured filter instance (config validated by the plugin's model)."""
    if isinstance(plugin, FilterInstance):
        return plugin
    if isinstance(plugin, Filter):
        flt = plugin
    else:
        flt = plugin(plugin.Config.model_validate(config or {}))
    flt.name = name or flt.name or type(flt).__name__
    flt.plugin = flt.plugin or flt.name
    return FilterInstance(flt.name, flt.plugin, flt, fail_open)


def make_wasm_filter(
    path: str | Path,
    config: dict[str, Any] | str | None = None,
    *,
    name: str | None = None,
    root_id: str = "",
    fail_open: bool = False,
    limits: dict[str, Any] | None = None,
    bodies: Sequence[str] | None = None,
    vm_config: str | dict[str, Any] = "",
    properties: dict[str, Any] | None = None,
) -> FilterInstance:
    """A Proxy-Wasm filter (a ``.wasm`` file built with any Proxy-Wasm SDK), loaded by
    the installed gateway's runtime exactly as ``[filters.NAME] wasm = ...`` loads it;
    use it with :func:`run_filter` / :func:`run_chain` like a Python filter::

        flt = make_wasm_filter("build/filter.wasm", {"header": "x-a"})
        result = run_filter(flt, make_request("GET", "/"), response=Response(200))

    ``config`` and ``vm_config`` are a dict (handed over as JSON) or a string (handed
    over verbatim); ``properties`` are what ``proxy_get_property`` reads by key path.
    """
    eps = entry_points(group="wasmgate.runtimes", name="wasm")
    if not eps:
        raise RuntimeError("no Proxy-Wasm runtime is installed (install wasmgate)")
    load = next(iter(eps)).load()
    inst: FilterInstance = load(
        path,
        config,
        name=name,
        root_id=root_id,
        fail_open=fail_open,
        limits=limits,
        bodies=None if bodies is None else tuple(bodies),
        vm_config=vm_config,
        **({"properties": properties} if properties else {}),
    )
    return inst


@dataclass
class Result:
    """What a chain did to one request.

    ``reply`` is the local reply if a filter answered (else None); ``request`` and
    ``upstream`` are as the filters left them; ``response`` is the response after
    the response phase (the local reply, or the ``response`` you passed in).
    """

    ctx: Context
    reply: LocalReply | None
    response: Response | None

    @property
    def request(self) -> Request:
        return self.ctx.request

    @property
    def upstream(self) -> str:
        return self.ctx.upstream

    @property
    def status(self) -> int | None:
        return self.response.status if self.response is not None else None

    @property
    def headers(self) -> Headers:
        """Response headers after the response phase (empty if there is none)."""
        return self.response.headers if self.response is not None else Headers()


async def arun_chain(
    filters: Sequence[FilterInstance | Filter[Any] | type[Filter[Any]]],
    request: Request | None = None,
    *,
    response: Response | None = None,
    upstream: str = "upstream",
    route: str = "test",
    tls: TLSInfo | None = None,
) -> Result:
    """Run the request phase, then (with ``response`` or a local reply) the response
    phase and ``on_log``, as the gateway does."""
    chain = Chain(f if isinstance(f, FilterInstance) else make_filter(f) for f in filters)
    ctx = Context(request or make_request(), route=route, upstream=upstream, tls=tls)
    reply, ran = await chain.run_request(ctx)
    if reply is not None:
        ctx.response = Response(reply.status, Headers.of(reply.header_pairs()), reply.body_bytes())
    else:
        ctx.response = response
    if ctx.response is not None:
        await chain.run_response(ctx, ran)
        await chain.run_log(ctx)
    return Result(ctx, reply, ctx.response)


async def arun_filter(
    plugin: type[Filter[Any]] | Filter[Any] | FilterInstance,
    request: Request | None = None,
    *,
    config: dict[str, Any] | None = None,
    response: Response | None = None,
    upstream: str = "upstream",
    route: str = "test",
) -> Result:
    """:func:`arun_chain` with one filter built from ``plugin`` and ``config``."""
    inst = make_filter(plugin, config)
    return await arun_chain([inst], request, response=response, upstream=upstream, route=route)


def run_chain(
    filters: Sequence[FilterInstance | Filter[Any] | type[Filter[Any]]],
    request: Request | None = None,
    **kwargs: Any,
) -> Result:
    """Synchronous :func:`arun_chain` (not for use inside a running event loop)."""
    return asyncio.run(arun_chain(filters, request, **kwargs))


def run_filter(
    plugin: type[Filter[Any]] | Filter[Any] | FilterInstance,
    request: Request | None = None,
    **kwargs: Any,
) -> Result:
    """Synchronous :func:`arun_filter` (not for use inside a running event loop)."""
    return asyncio.run(arun_filter(plugin, request, **kwargs))


# ---------------------------------------------------------------------- real servers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seen:
    """One request as it reached the :class:`RecordingUpstream`."""

    method: str
    path_qs: str
    headers: dict[str, str]  #: lower-cased names, last value wins
    raw_headers: list[tuple[str, str]]
    body_len: int
    peer: tuple[str, int]
    raw_path: str = ""  #: the request target exactly as it arrived (path_qs is normalised)


@dataclass
class RecordingUpstream:
    """A real upstream server on 127.0.0.1 that records every request it receives.

    It answers as the path asks::

        /status/<code>      that status
        /delay/<seconds>    wait, then 200
        /bytes/<n>          n bytes of b"x", chunked (``?length=1``: Content-Length)
        /upload             read the body in pieces, reply {"received": n}
        /ws                 WebSocket echo
        anything else       JSON echo of method, path, headers and body length;
                            ``?h=Name:value`` (repeatable) adds response headers
    """

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
        sockets = getattr(server, "sockets", None)
        assert sockets, "the upstream did not bind"
        self.port = int(sockets[0].getsockname()[1])
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
                # obs-text (bytes >= 0x80 that are not UTF-8) is legal in a value
                [(k.decode(), v.decode(errors="surrogateescape")) for k, v in request.raw_headers],
                body_len,
                peer_t,
                request.raw_path,
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
            return await self._bytes(request, int(path.split("/")[2]))
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

    @staticmethod
    async def _bytes(request: web.Request, n: int) -> web.StreamResponse:
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


def _wasmgate_command() -> list[str]:
    beside = Path(sys.executable).with_name("wasmgate")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("wasmgate")
    if found:
        return [found]
    raise RuntimeError("the wasmgate command is not installed in this environment")


class GatewayProcess:
    """The installed ``wasmgate run`` in a child process, with its own config file."""

    def __init__(self, toml: str, *, workdir: str | None = None) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="wasmgate-test-"))
        self.config_path = self.dir / "gateway.toml"
        self.config_path.write_text(toml)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "gateway.log"
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int, *extra: str, env: dict[str, str] | None = None) -> GatewayProcess:
        """Start it and wait until ``port`` accepts connections (15 s at most)."""
        self.port = port
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*_wasmgate_command(), "run", "-c", str(self.config_path), *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.terminate()
        raise RuntimeError(f"gateway did not start: {self.log()}")

    def peak_rss_kib(self) -> int:
        """The process's peak resident memory (VmHWM), in KiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM (a graceful drain) and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gateway(toml: str, *, env: dict[str, str] | None = None) -> GatewayProcess:
    """Run ``wasmgate`` with ``toml``; ``{port}`` in it is replaced by a free port."""
    port = free_port()
    return GatewayProcess(toml.replace("{port}", str(port))).start(port, env=env)
