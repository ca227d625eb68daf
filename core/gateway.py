"""The running gateway: a configuration snapshot, its listeners, and draining.

A :class:`Snapshot` is everything compiled from one configuration (route table,
upstream pools, forwarding rules) and the set of files it was built from
(:mod:`core.inputs`); it is immutable once built, and an exchange keeps
the snapshot it started with. :class:`Gateway` owns the listening sockets, the set of
open client connections and the current snapshot reference.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
from collections.abc import Coroutine
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import executors, metrics, store
from core.accesslog import AccessLog
from core.chain import PluginRegistry, compile_chains, compile_services
from core.config import GatewayConfig, parse_address
from core.errors import ConfigError, UpstreamError
from core.health import start_checks
from core.http1 import ClientConnection
from core.inputs import Inputs, snapshot_inputs
from core.redact import Redactor, declared
from core.router import Router
from core.tls import alpn, build_server_tls, listener_context
from core.upstream import UpstreamPool, build_pools
from core.watch import stamp
from plugin_sdk.chain import FilterInstance

if TYPE_CHECKING:
    from core.http1 import Request
    from core.http2 import ServerConnection
    from core.proxy import Exchange
    from core.tracing import Exporter

log = logging.getLogger("wasmgate")
FLUSH_INTERVAL = 0.2  # seconds between access-log flushes (also the stall watchdog's tick)
STALL_WARNING = 0.1  # a flush this late means the event loop was blocked: log it


def _base_dir(source: str) -> Path:
    return Path(source).parent if source and not source.startswith("<") else Path()


class Snapshot:
    """Everything compiled from one configuration; read-only once built."""

    def __init__(
        self,
        config: GatewayConfig,
        source: str = "<config>",
        registry: PluginRegistry | None = None,
        previous: Snapshot | None = None,
    ) -> None:
        self.config = config
        self.source = source
        # Pools first: they open nothing until used, so a refusal leaves nothing to close.
        # Unchanged ones are the previous snapshot's (borrowed until swap() hands them over).
        self.pools: dict[str, UpstreamPool] = build_pools(
            config.upstreams, source, previous.pools if previous else None
        )
        self._borrowed = {
            name
            for name, pool in self.pools.items()
            if previous and previous.pools.get(name) is pool
        }
        self._given: set[str] = set()  # pools a newer snapshot took over
        # Proxy-Wasm VMs started for this snapshot, by (module digest, vm_id): filters
        # and services sharing a vm_id join one (core/wasm/sharing.py).
        vms: dict[Any, Any] = {}
        store.configure(config)  # before the filters, which may need it
        self.services: list[FilterInstance] = []  # [services.NAME]: root-only, no route
        self.chains = compile_chains(config, registry or PluginRegistry(), source, vms)
        self.router = Router(config, self.chains)
        self.trusted_hops = config.server.trusted_hops
        # Exchanges running on this snapshot; a retired one closes when the last ends.
        self.active = 0
        self.retired = False
        self._closed = False
        try:
            self.services = compile_services(config, source, vms)
        except ConfigError:
            self.close()
            raise
        try:
            query, headers = declared((i.name, i.filter) for i in self.filters())
        except ValueError as exc:
            self.close()
            raise ConfigError(source, [str(exc)]) from None
        self.redactor = Redactor([*config.redact.query, *query], [*config.redact.headers, *headers])
        try:
            self.tls = build_server_tls(config, _base_dir(source))
        except ConfigError as exc:
            self.close()
            raise ConfigError(source, exc.problems) from None
        for warning in self.tls.warnings if self.tls else ():
            log.warning("%s", warning)
        # The files it was built from: what the reloader follows (core/reload.py).
        self.inputs = (
            snapshot_inputs(config, Path(source), self.filters())
            if source and not source.startswith("<")
            else Inputs()
        )
        self.stamp = stamp(self.inputs)  # to tell a change made since

    def release(self) -> None:
        """An exchange that ran on this snapshot has ended."""
        self.active -= 1
        if self.retired and self.active == 0:
            self.close()

    def retire(self) -> None:
        """A newer snapshot serves new requests; close once in-flight ones are done."""
        self.retired = True
        if self.active == 0:
            self.close()

    def filters(self) -> list[FilterInstance]:
        """Every filter instance of the snapshot, once each (services included)."""
        seen: dict[int, FilterInstance] = {}
        for chain in self.chains.values():
            for inst in chain.filters:
                seen.setdefault(id(inst), inst)
        for inst in self.services:
            seen.setdefault(id(inst), inst)
        return list(seen.values())

    def bind(self, listen_address: str) -> None:
        """Called once the event loop runs: pools with active health checks start them
        (a carried-over pool keeps its running checker); filters that call upstreams or
        keep timers (Proxy-Wasm ones) get the pools and start their timers."""
        start_checks(self.pools.values())
        for inst in self.filters():
            bind = getattr(inst.filter, "bind_gateway", None)
            if bind is not None:
                bind(self.pools, listen_address, dict(self.config.wasm.clusters))

    def forwarded(self, req: Request) -> tuple[bytes, bytes, bytes, bytes]:
        """(client address, X-Forwarded-For, -Proto, -Host) to send upstream.

        With ``trusted_hops = 0`` nothing the client says about itself is believed:
        X-Forwarded-For becomes the peer address alone. With N trusted hops the
        incoming chain is kept, the peer is appended, and the client is the address
        N places from the right (the last one our trusted proxies vouch for).
        """
        peer = req.client_ip.encode("latin-1")
        scheme = req.scheme.encode("ascii")
        host = req.orig_host.encode("latin-1")
        if not self.trusted_hops:
            return peer, peer, scheme, host
        chain = self._chain(req, peer)
        return self._trusted(chain), b", ".join(chain), req.xfp or scheme, req.xfh or host

    def client_scheme(self, req: Request) -> str:
        """The scheme the client used, as we trust it: a trusted proxy's
        X-Forwarded-Proto (with ``trusted_hops`` > 0), else our listener's."""
        if self.trusted_hops and req.xfp:
            proto = req.xfp.split(b",")[0].strip().lower()
            if proto in (b"http", b"https"):
                return proto.decode("ascii")
        return req.scheme

    def client_ip(self, req: Request) -> str:
        """The client address as we trust it (see :meth:`forwarded`)."""
        if not self.trusted_hops:
            return req.client_ip
        return self._trusted(self._chain(req, req.client_ip.encode("latin-1"))).decode("latin-1")

    def _trusted(self, chain: list[bytes]) -> bytes:
        """The address ``trusted_hops`` places from the right of the chain (peer last)."""
        hops = self.trusted_hops
        return chain[-(hops + 1)] if len(chain) > hops else chain[0]

    @staticmethod
    def _chain(req: Request, peer: bytes) -> list[bytes]:
        chain = [p.strip() for v in req.xff for p in v.split(b",") if p.strip()]
        chain.append(peer)
        return chain

    def close(self) -> None:
        """Retire the snapshot: idle upstream connections, then each filter's close()."""
        if self._closed:
            return
        self._closed = True
        for name, pool in self.pools.items():
            if name not in self._borrowed and name not in self._given:
                pool.close()
        for inst in self.filters():
            try:
                inst.filter.close()
            except Exception as exc:
                log.error("filter %s (%s) failed in close(): %r", inst.name, inst.plugin, exc)


class Gateway:
    """Listeners, connections and the current snapshot of one process."""

    def __init__(self, snapshot: Snapshot, loop: asyncio.AbstractEventLoop) -> None:
        self.snapshot = snapshot
        self.loop = loop
        self.connections: set[ClientConnection | ServerConnection] = set()
        self.draining = False
        self.servers: list[asyncio.base_events.Server] = []
        self.sockets: list[tuple[str, int]] = []
        server = snapshot.config.server
        executors.configure(snapshot.config)  # per process, read at start like the log
        self.access_log = AccessLog(server.access_log, server.access_log_format)
        # [tracing] is read at start, like the access log. Without an OTLP endpoint no
        # exporter exists and core.tracing (aiohttp's client) is not even imported.
        tracing = snapshot.config.tracing
        self.sample_ratio = tracing.sample_ratio
        self.tracer: Exporter | None = None
        if tracing.otlp_endpoint is not None:
            from core.tracing import Exporter

            self.tracer = Exporter(tracing)
        self._tasks: set[asyncio.Task[None]] = set()
        self.driven = 0  # exchanges run without a Task (core/drive.py), in flight
        self._date = b""
        self._date_at = 0
        self._flusher: asyncio.TimerHandle | None = None
        self._flush_due = 0.0
        self.address = ""
        self.schemes: list[str] = []  # per entry of self.sockets
        self._tls_ctxs: list[ssl.SSLContext] = []  # h2 offered, and http/1.1 only

    # -- lifecycle

    async def start(self, *, reuse_port: bool = False) -> None:
        server_cfg = self.snapshot.config.server
        listeners: list[tuple[str, ssl.SSLContext | None]] = [
            (item, None) for item in server_cfg.listen
        ]
        off = set(server_cfg.http2.off)  # listeners without HTTP/2
        if server_cfg.tls_listen:
            # Two contexts for the HTTPS listeners (h2 offered, or http/1.1 only), across
            # reloads: their SNI callback asks the current snapshot for the certificate.
            h2_ctx = listener_context(lambda: self.snapshot.tls, alpn(server_cfg.http2.tls))
            h1_ctx = listener_context(lambda: self.snapshot.tls, alpn(False))
            self._tls_ctxs = [h2_ctx, h1_ctx]
            listeners += [(i, h1_ctx if i in off else h2_ctx) for i in server_cfg.tls_listen]
        for item, ssl_ctx in listeners:
            host, port = parse_address(item, allow_zero=True)
            scheme = "https" if ssl_ctx is not None else "http"
            h2c = item not in off
            server = await self.loop.create_server(
                lambda scheme=scheme, h2c=h2c: ClientConnection(self, scheme, h2c=h2c),
                host,
                port,
                reuse_address=True,
                reuse_port=reuse_port or None,
                backlog=2048,
                ssl=ssl_ctx,
                ssl_handshake_timeout=server_cfg.limits.request_header_timeout if ssl_ctx else None,
            )
            self.servers.append(server)
            for sock in server.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    addr = sock.getsockname()
                    self.sockets.append((str(addr[0]), int(addr[1])))
                    self.schemes.append(scheme)
        self.address = f"{self.sockets[0][0]}:{self.sockets[0][1]}" if self.sockets else ""
        self.snapshot.bind(self.address)
        self._schedule_flush()
        metrics.attach(self)
        if self.tracer is not None:
            self.tracer.start(self.loop)

    def swap(self, snapshot: Snapshot) -> None:
        """Serve new requests from ``snapshot``; requests in flight finish on the old
        one, which closes when the last of them ends. Listeners and connections stay."""
        old = self.snapshot
        old._given |= snapshot._borrowed
        snapshot._borrowed = set()
        snapshot.bind(self.address)
        if snapshot.tls is not None:
            for ctx in self._tls_ctxs:
                snapshot.tls.configure(ctx)
        self.snapshot = snapshot
        old.retire()

    async def drain(self, timeout: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to ``timeout``), close."""
        if timeout is None:
            timeout = self.snapshot.config.server.limits.drain_timeout
        self.draining = True
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = self.loop.time() + timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        # Exchanges end once their connection is gone: as tasks, or driven without
        # one (core/drive.py), whose wake-ups are scheduled.
        until = self.loop.time() + 1.0
        while (self._tasks or self.driven) and (left := until - self.loop.time()) > 0:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=left)
            else:
                await asyncio.sleep(0.01)
        self.snapshot.close()
        metrics.detach(self)
        if self._flusher is not None:
            self._flusher.cancel()
        self.access_log.close()
        if self.tracer is not None:
            await self.tracer.close()

    def install_signal_handlers(self, stop: asyncio.Event) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)

    # -- services for connections and exchanges

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def http_date(self) -> bytes:
        now = int(time.time())
        if now != self._date_at:
            self._date_at = now
            self._date = formatdate(now, usegmt=True).encode("ascii")
        return self._date

    def _schedule_flush(self) -> None:
        # The flush timer doubles as a watchdog, at no cost per request: running late
        # means something held the event loop (a filter that sleeps or does blocking
        # I/O, a reload compiling modules), and no request was served meanwhile.
        now = self.loop.time()
        late = now - self._flush_due
        if self._flush_due and late > STALL_WARNING:
            log.warning(
                "the event loop was blocked for at least %.0f ms; requests waited (filters "
                "must not block: see docs/writing-plugins.md)",
                late * 1000,
            )
        self.access_log.flush()
        self._flush_due = now + FLUSH_INTERVAL
        self._flusher = self.loop.call_later(FLUSH_INTERVAL, self._schedule_flush)

    # -- logging

    def log_access(self, ex: Exchange) -> None:
        if self.tracer is not None and ex.req.sampled:
            self.tracer.record(ex)
        if not self.access_log.enabled:
            return
        route = ex.route
        self.access_log.write(
            ex.req,
            ex.snapshot.redactor,
            client_ip=ex.req.client_ip,
            status=ex.status,
            bytes_in=ex.bytes_in,
            bytes_out=ex.bytes_out,
            duration=ex.duration,
            route=route.name if route else None,
            # The pool the request went to: a filter (canary) may have picked another.
            upstream=ex.pool.name if ex.pool else (route.upstream if route else None),
            endpoint=ex.endpoint.address if ex.endpoint else None,
            reason=ex.reason,
            upstream_duration=ex.upstream_duration,
            trace_id=ex.req.trace_id,
            stopped_by=ex.stopped_by,
        )

    def log_refused_tls(self, peer: tuple[str, int], reason: str) -> None:
        log.info("refused TLS connection from %s:%d: %s", peer[0], peer[1], reason)

    def log_refused_h2(self, peer: tuple[str, int], reason: str) -> None:
        log.warning("closed HTTP/2 connection from %s:%d: %s", peer[0], peer[1], reason)

    def log_rejected(
        self,
        conn: ClientConnection | ServerConnection,
        status: int,
        reason: str,
        req: Request | None,
        bytes_out: int,
    ) -> None:
        log.info("rejected %s:%d with %d: %s", conn.peer[0], conn.peer[1], status, reason)
        metrics.record_rejected(status, bytes_out, time.monotonic() - req.start if req else None)
        if self.access_log.enabled:
            self.access_log.write(
                req if req is not None and req.method else None,
                self.snapshot.redactor,
                client_ip=conn.peer[0],
                status=status,
                bytes_in=0,
                bytes_out=bytes_out,
                duration=time.monotonic() - req.start if req is not None else 0.0,
                route=None,
                upstream=None,
                endpoint=None,
                reason=reason,
                trace_id=(req.trace_id or None) if req is not None else None,
            )

    def log_upstream_error(self, ex: Exchange, exc: UpstreamError) -> None:
        route = ex.route.name if ex.route else "-"
        endpoint = ex.endpoint.address if ex.endpoint else "-"
        log.warning(
            "%s %s: route %s, endpoint %s: %s (%d)",
            ex.req.method,
            ex.req.path,
            route,
            endpoint,
            exc,
            exc.status,
        )

    def log_error(self, message: str, exc: BaseException) -> None:
        log.error("%s: %s", message, exc, exc_info=exc)
