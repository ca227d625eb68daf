"""The admin API: a separate listener (``[admin]``, 127.0.0.1 by default) served by aiohttp.

=================  =========================================================================
``GET /live``      200 while the process runs
``GET /ready``     200 once listeners are up and a configuration serves; 503 while draining
``GET /config``    the active configuration (secrets redacted), its version and hash, when
                   it was loaded, the last reload's result (with its error), and the
                   load's warnings (e.g. Ingresses skipped or annotations that fell back),
                   and the data path (``data_path``: mypyc-compiled or pure Python, why)
``GET /routes``    every route with its resolved filter chain, in execution order
``GET /plugins``   loaded filter instances: plugin, kind, version, fail strategy, errors
``GET /metrics``   Prometheus text format, aggregated across workers (:mod:`core.metrics`)
``POST /reload``   reload now; needs ``Authorization: Bearer TOKEN`` (``[admin] token``):
                   401 with a wrong or missing token, 403 when no token is configured,
                   503 while draining (the listener stays up until the drain ends)
``GET /``          the dashboard and its ``/api/...`` calls (:mod:`core.dashboard.api`)
=================  =========================================================================

Every request passes :mod:`core.admin_guard` first (the ``Host`` check against DNS
rebinding; the token for reads when the listener is not on loopback). What ``/config``,
``/routes`` and ``/plugins`` show is computed once per snapshot in a worker thread
(:mod:`core.admin_view`): no admin call blocks the event loop the data plane runs on.

With several workers, the first one serves the admin listener; ``POST /reload`` then
signals the supervisor, which has every worker reload, and answers with this worker's
result. Responses are JSON (``/metrics`` excepted). Nothing here is on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from core import compiled
from core.admin_guard import Guard, is_loopback
from core.admin_view import Views, filter_info
from core.config import parse_address
from core.dashboard.api import Dashboard

if TYPE_CHECKING:
    from core.gateway import Gateway, Snapshot
    from core.reload import Reloader

log = logging.getLogger("wasmgate.admin")


class Admin:
    """The admin listener of one process."""

    def __init__(
        self,
        gateway: Gateway,
        reloader: Reloader | None,
        *,
        token: str | None,
        supervised: bool = False,
        render_metrics: Callable[[], tuple[bytes, str]] | None = None,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self.gateway = gateway
        self.reloader = reloader
        self.token = token
        self.supervised = supervised
        self.render_metrics = render_metrics
        self.allowed_hosts = tuple(allowed_hosts)
        self.views = Views()
        self.started = time.time()
        self.runner: web.AppRunner | None = None
        self.dashboard = Dashboard(self)

    # ------------------------------------------------------------ lifecycle

    async def start(self, listen: str) -> None:
        host, port = parse_address(listen, allow_zero=True)
        self.guard = Guard(host, self.allowed_hosts, self.token)
        if not is_loopback(host) and self.token is None:
            log.warning(
                "admin.listen %s is not loopback and [admin] token is not set: every "
                "admin call but /live, /ready and the dashboard's page is refused",
                listen,
            )
        app = web.Application(middlewares=[self.guard.middleware])
        app.router.add_get("/live", self.live)
        app.router.add_get("/ready", self.ready)
        app.router.add_get("/config", self.config)
        app.router.add_get("/routes", self.routes)
        app.router.add_get("/plugins", self.plugins)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/reload", self.reload)
        self.dashboard.mount(app)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        self.dashboard.traffic.start()

    async def stop(self) -> None:
        await self.dashboard.traffic.stop()
        if self.runner is not None:
            await self.runner.cleanup()

    # ------------------------------------------------------------ read-only

    @property
    def snap(self) -> Snapshot:
        return self.gateway.snapshot

    async def live(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "live", "pid": os.getpid()})

    async def ready(self, request: web.Request) -> web.StreamResponse:
        if self.gateway.draining or not self.gateway.sockets:
            return web.json_response({"status": "not ready"}, status=503)
        return web.json_response({"status": "ready"})

    async def config(self, request: web.Request) -> web.StreamResponse:
        reloader = self.reloader
        snap = self.snap
        view = await self.views.get(snap)
        body: dict[str, Any] = {
            "version": reloader.version if reloader else 1,
            "hash": view.hash,
            "source": snap.source,
            "loaded_at": _iso(reloader.loaded_at if reloader else self.started),
            "last_reload": reloader.last_result if reloader else None,
            "watching": reloader.watching() if reloader else {"mode": "off", "files": []},
            "wasmgate": view.wasmgate,
            "data_path": compiled.status().as_dict(),  # mypyc-compiled or pure Python
            "uptime_seconds": round(time.time() - self.started, 1),
            "listeners": [
                f"{scheme}://{h}:{p}"
                for (h, p), scheme in zip(self.gateway.sockets, self.gateway.schemes, strict=True)
            ],
            "config": view.config,
            # What loading noticed but did not refuse (an Ingress skipped, an annotation
            # that fell back to its default), one line each.
            "warnings": list(snap.config.warnings),
        }
        return web.json_response(body)

    async def routes(self, request: web.Request) -> web.StreamResponse:
        snap = self.snap
        view = await self.views.get(snap)
        router = snap.router
        targets = list(router.routes)
        if router.default is not None:
            targets.append(router.default)
        by_name = {r.name: r for r in snap.config.routes}
        out = []
        for target in targets:
            route = by_name.get(target.name)
            chain = target.chain.filters if target.chain else []
            out.append(
                {
                    "name": target.name,
                    "hosts": route.hosts if route else [],
                    "paths": [p.model_dump() for p in route.paths] if route else [],
                    "methods": route.methods if route else [],
                    "upstream": target.upstream,
                    "chain": [filter_info(inst, view) for inst in chain],
                }
            )
        return web.json_response({"routes": out})

    async def plugins(self, request: web.Request) -> web.StreamResponse:
        snap = self.snap
        view = await self.views.get(snap)
        return web.json_response({"filters": [filter_info(f, view) for f in snap.filters()]})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        if self.render_metrics is None:
            raise web.HTTPNotFound(text="metrics are not available\n")
        body, content_type = self.render_metrics()
        return web.Response(body=body, headers={"Content-Type": content_type})

    # ------------------------------------------------------------ state-changing

    def _authorized(self, request: web.Request) -> web.StreamResponse | None:
        return self.guard.authorized(request)

    async def reload(self, request: web.Request) -> web.StreamResponse:
        refused = self._authorized(request)
        if refused is not None:
            return refused
        body, status = await self.reload_now()
        return web.json_response(body, status=status)

    async def reload_now(self) -> tuple[dict[str, Any], int]:
        """Reload (every worker, when supervised); the answer and its HTTP status."""
        if self.reloader is None:
            return {"error": "this process cannot reload"}, 409
        if self.gateway.draining:
            return {"error": "draining: this process is stopping"}, 503
        if self.supervised:
            # Every worker reloads on the supervisor's SIGHUP; answer with ours.
            before = self.reloader.attempts
            os.kill(os.getppid(), signal.SIGHUP)
            deadline = time.monotonic() + 10
            while self.reloader.attempts == before and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        else:
            await self.reloader.reload("admin API")
        result = self.reloader.last_result
        status = 200 if result and result.get("ok") else 500
        return {"version": self.reloader.version, "result": result}, status


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def read_token(token: str | None, token_file: str | None, base: Path) -> str | None:
    if token_file is not None:
        return (base / token_file).read_text().strip() or None
    return token
