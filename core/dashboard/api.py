"""The dashboard's JSON calls and its static files, mounted on the admin listener.

=================================  ===================================================
``GET /``                          the dashboard (``index.html``, ``app.js``, ``style.css``)
``GET /api/upstreams``             every pool's endpoints: health (``healthy``,
                                   ``ejected`` by passive health, ``unhealthy`` by active
                                   checks), active connections, failures in a row,
                                   ejections, the active checks' state and last result
``GET /api/traffic``               a time series (``WINDOW`` samples, ``STEP`` s apart)
                                   of deltas of the in-process metrics (:class:`Traffic`)
``GET /api/installed``             the plugins ``gateway.lock`` pins, verified on disk
``GET /api/market?q=``             the registry's catalogue (``[market]`` of the config)
``POST /api/market/install``       ``{name, constraint}``: install, then reload; token
=================================  ===================================================

The market is reached through the ``wasmgate.admin_market`` entry-point group (the
market registers one), so ``core/`` does not import ``market/``; without it, the
market calls answer 404.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from core import metrics
from core.chain import open_installed
from core.metrics import CODE_CLASSES, LATENCY_BOUNDS
from core.metrics_render import totals
from plugin_sdk import pools

if TYPE_CHECKING:
    from core.admin import Admin
    from core.config import GatewayConfig
    from core.health import CheckState

STATIC = Path(__file__).parent
FILES = {
    "index.html": "text/html",
    "app.js": "application/javascript",
    "style.css": "text/css",
}
STEP = 2.0  # seconds between samples
WINDOW = 300  # samples kept: ten minutes
MARKET_GROUP = "wasmgate.admin_market"
QUANTILES = (0.5, 0.95, 0.99)
REGISTRY = "registry"  # the offload pool of the market calls


class Market(Protocol):
    """What a ``wasmgate.admin_market`` entry returns for a configuration file (called
    as ``opener(config_path, timeout=seconds)``, the timeout of each registry I/O)."""

    def search(self, text: str) -> dict[str, Any]: ...

    def install(self, name: str, constraint: str) -> dict[str, Any]: ...


def quantile(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (seconds) of a histogram's per-bucket counts, interpolated
    linearly inside its bucket; the +Inf bucket answers with the last bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(LATENCY_BOUNDS):
                return LATENCY_BOUNDS[-1]
            low = LATENCY_BOUNDS[i - 1] if i else 0.0
            return low + (LATENCY_BOUNDS[i] - low) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS[-1]


class Traffic:
    """A ring buffer of what changed between two readings of the metrics, every STEP s."""

    def __init__(self, read: Callable[[], Any] | None = None) -> None:
        self.read = read or (lambda: totals(metrics.states()))
        self.points: deque[dict[str, Any]] = deque(maxlen=WINDOW)
        self.last: dict[str, Any] | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(STEP)

    def sample(self) -> None:
        now = time.time()
        t = self.read()
        reading: dict[str, Any] = {
            "at": now,
            "codes": {},
            "latency": {r: list(counts) for r, (counts, _) in t.latency.items()},
            "calls": {k[0]: sum(v) for k, v in t.calls.items()},
            "errors": {k[0]: n for k, n in t.errors.items()},
            "traps": {k: c[0] for k, c in t.wasm.items()},
        }
        for (route, _), codes in t.codes.items():
            per = reading["codes"].setdefault(route, [0] * len(CODE_CLASSES))
            for i, n in enumerate(codes):
                per[i] += n
        last, self.last = self.last, reading
        if last is not None:
            self.points.append(_delta(last, reading))

    def series(self) -> dict[str, Any]:
        return {"step": STEP, "window": WINDOW, "points": list(self.points)}


def _delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    seconds = max(b["at"] - a["at"], 1e-3)

    def diff(x: list[int], y: list[int] | None) -> list[int]:
        return [max(n - (y[i] if y else 0), 0) for i, n in enumerate(x)]

    classes = [0] * len(CODE_CLASSES)
    routes: dict[str, dict[str, Any]] = {}
    overall = [0] * (len(LATENCY_BOUNDS) + 1)
    for route, codes in b["codes"].items():
        d = diff(codes, a["codes"].get(route))
        classes = [x + y for x, y in zip(classes, d, strict=True)]
        lat = diff(b["latency"].get(route, overall), a["latency"].get(route))
        overall = [x + y for x, y in zip(overall, lat, strict=True)]
        routes[route or "(unrouted)"] = {
            "rps": round(sum(d) / seconds, 2),
            **{f"p{round(q * 100)}": _ms(quantile(lat, q)) for q in QUANTILES},
        }
    plugins = {
        name: {
            "calls": max(n - a["calls"].get(name, 0), 0),
            "errors": max(b["errors"].get(name, 0) - a["errors"].get(name, 0), 0),
            "traps": max(b["traps"].get(name, 0) - a["traps"].get(name, 0), 0),
        }
        for name, n in b["calls"].items()
    }
    return {
        "t": round(b["at"], 3),
        "requests": sum(classes),
        "rps": round(sum(classes) / seconds, 2),
        "codes": {c: n for c, n in zip(CODE_CLASSES, classes, strict=True) if c},
        **{f"p{round(q * 100)}": _ms(quantile(overall, q)) for q in QUANTILES},
        "routes": routes,
        "plugins": plugins,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class Dashboard:
    """The dashboard's routes on ``admin``'s application."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.traffic = Traffic()

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_get("/dashboard/{file}", self.static)
        app.router.add_get("/api/upstreams", self.upstreams)
        app.router.add_get("/api/traffic", self.series)
        app.router.add_get("/api/installed", self.installed)
        app.router.add_get("/api/market", self.market)
        app.router.add_post("/api/market/install", self.install)

    async def page(self, request: web.Request) -> web.StreamResponse:
        return _file("index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if name not in FILES:
            raise web.HTTPNotFound()
        return _file(name)

    async def upstreams(self, request: web.Request) -> web.StreamResponse:
        now, wall = time.monotonic(), time.time()
        t = totals(metrics.states())
        out = []
        for pool in self.admin.snap.pools.values():
            endpoints = []
            for ep in pool.endpoints:
                ejected = ep.ejected_until > now
                endpoints.append(
                    {
                        "address": ep.address,
                        "weight": ep.weight,
                        "health": "unhealthy" if ep.down else "ejected" if ejected else "healthy",
                        "ejected_for_seconds": round(ep.ejected_until - now, 1) if ejected else 0,
                        "active": ep.active,
                        "idle": len(ep.idle),
                        "failures": ep.failures,
                        "ejections": t.ejections.get((pool.name, ep.address), 0),
                        "check": _check(ep.check, wall),
                    }
                )
            codes = [0] * len(CODE_CLASSES)
            for (_, upstream), counts in t.codes.items():
                if upstream == pool.name:
                    codes = [x + y for x, y in zip(codes, counts, strict=True)]
            hc = pool.cfg.health_check
            out.append(
                {
                    "name": pool.name,
                    "health_check": None
                    if hc is None
                    else {"type": hc.type, "path": hc.path if hc.type == "http" else None}
                    | hc.model_dump(
                        include={"interval", "timeout", "healthy_threshold", "unhealthy_threshold"}
                    ),
                    "endpoints": endpoints,
                    "responses": {c: n for c, n in zip(CODE_CLASSES, codes, strict=True) if c},
                }
            )
        return web.json_response({"upstreams": out})

    async def series(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.traffic.series())

    async def installed(self, request: web.Request) -> web.StreamResponse:
        snap = self.admin.snap
        try:
            body = await pools.offload("files", _installed, snap.config, Path(snap.source))
        except pools.OffloadError as exc:
            return web.json_response({"plugins": [], "error": str(exc)}, status=503)
        return web.json_response(body)

    def _market(self, timeout: float) -> Market | None:
        # In a worker thread: reading entry points and the configuration is file I/O.
        for ep in entry_points(group=MARKET_GROUP):
            opener = ep.load()
            market: Market = opener(Path(self.admin.snap.source), timeout=timeout)
            return market
        return None

    async def _on_market(
        self, call: Callable[[Market], dict[str, Any]], failed: int
    ) -> dict[str, Any] | web.Response:
        """``call`` on the market in the ``"registry"`` pool: its result, or the error
        response (503 pool full, 504 no answer in time, ``failed`` for the market's own)."""
        timeout = pools.settings(REGISTRY).timeout

        def run() -> dict[str, Any] | None:
            market = self._market(timeout)
            return None if market is None else call(market)

        try:
            body = await pools.offload(REGISTRY, run)
        except pools.OffloadBusy as exc:
            return web.json_response({"error": f"registry: {exc}"}, status=503)
        except pools.OffloadTimeout:
            return web.json_response(
                {"error": f"the registry did not answer within {timeout:g} s"}, status=504
            )
        except Exception as exc:
            return web.json_response({"error": str(exc)}, status=failed)
        if body is None:
            raise web.HTTPNotFound(text="the market is not installed\n")
        return body

    async def market(self, request: web.Request) -> web.StreamResponse:
        text = request.query.get("q", "")
        body = await self._on_market(lambda m: m.search(text), 502)
        return body if isinstance(body, web.Response) else web.json_response(body)

    async def install(self, request: web.Request) -> web.StreamResponse:
        refused = self.admin._authorized(request)
        if refused is not None:
            return refused
        try:
            data = await request.json()
            name = str(data["name"])
            constraint = str(data.get("constraint") or "")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected JSON {name, constraint}"}, status=400)
        # A timed-out install goes on in its thread; the reloader sees the lockfile change.
        body = await self._on_market(lambda m: m.install(name, constraint), 409)
        if isinstance(body, web.Response):
            return body
        reload, status = await self.admin.reload_now()
        return web.json_response({**body, "reload": reload}, status=status)


def _check(st: CheckState | None, wall: float) -> dict[str, Any] | None:
    """An endpoint's active-check state for /api/upstreams (None: no active checks)."""
    if st is None:
        return None
    return {
        "state": st.state,
        "last_result": st.result or None,
        "last_error": st.error or None,
        "last_check_seconds_ago": round(wall - st.last_at, 1) if st.last_at else None,
        "passes_in_a_row": st.successes,
        "failures_in_a_row": st.failures,
    }


_STATIC: dict[str, bytes] = {name: (STATIC / name).read_bytes() for name in FILES}


def _file(name: str) -> web.StreamResponse:
    return web.Response(
        body=_STATIC[name],
        headers={"Content-Type": f"{FILES[name]}; charset=utf-8", "Cache-Control": "no-cache"},
    )


def _installed(config: GatewayConfig, source: Path) -> dict[str, Any]:
    """What ``gateway.lock`` pins, each package verified on disk (file reads, digests)."""
    out: list[dict[str, Any]] = []
    try:
        installed = open_installed(config, source.parent)
    except Exception as exc:
        return {"plugins": out, "error": str(exc)}
    for name in installed.names() if installed else []:
        try:
            p = installed.load(name) if installed else None
        except Exception as exc:
            out.append({"name": name, "error": str(exc)})
            continue
        if p is not None:
            out.append(
                {
                    "name": p.name,
                    "version": p.version,
                    "kind": p.kind,
                    "signer": p.signer,
                    "digest": p.digest,
                }
            )
    return {"plugins": out}
