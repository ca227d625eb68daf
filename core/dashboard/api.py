"""The dashboard's JSON calls and its static files, mounted on the admin listener.

=================================  ===================================================
``GET /``                          the dashboard (``index.html``, ``app.js``, ``style.css``)
``GET /api/upstreams``             every pool's endpoints: health, active connections,
                                   failures in a row, ejections
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

if TYPE_CHECKING:
    from core.admin import Admin
    from core.gateway import Snapshot

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


class Market(Protocol):
    """What a ``wasmgate.admin_market`` entry returns for a configuration file."""

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
        now = time.monotonic()
        t = totals(metrics.states())
        out = []
        for pool in self.admin.snap.pools.values():
            endpoints = []
            for ep in pool.endpoints:
                healthy = ep.healthy(now)
                endpoints.append(
                    {
                        "address": ep.address,
                        "weight": ep.weight,
                        "health": "healthy" if healthy else "ejected",
                        "ejected_for_seconds": 0 if healthy else round(ep.ejected_until - now, 1),
                        "active": ep.active,
                        "idle": len(ep.idle),
                        "failures": ep.failures,
                        "ejections": t.ejections.get((pool.name, ep.address), 0),
                    }
                )
            codes = [0] * len(CODE_CLASSES)
            for (_, upstream), counts in t.codes.items():
                if upstream == pool.name:
                    codes = [x + y for x, y in zip(codes, counts, strict=True)]
            out.append(
                {
                    "name": pool.name,
                    "endpoints": endpoints,
                    "responses": {c: n for c, n in zip(CODE_CLASSES, codes, strict=True) if c},
                }
            )
        return web.json_response({"upstreams": out})

    async def series(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.traffic.series())

    async def installed(self, request: web.Request) -> web.StreamResponse:
        # Reads the lockfile and checks each package's digest on disk: off the loop.
        body = await asyncio.to_thread(_installed, self.admin.snap)
        return web.json_response(body)

    def _market(self) -> Market | None:
        for ep in entry_points(group=MARKET_GROUP):
            opener = ep.load()
            market: Market = opener(Path(self.admin.snap.source))
            return market
        return None

    async def market(self, request: web.Request) -> web.StreamResponse:
        text = request.query.get("q", "")
        try:
            market = await asyncio.to_thread(self._market)  # metadata scan, file read
            if market is None:
                raise web.HTTPNotFound(text="the market is not installed\n")
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(None, market.search, text)
        except web.HTTPException:
            raise
        except Exception as exc:
            return web.json_response({"error": str(exc)}, status=502)
        return web.json_response(body)

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
        try:
            market = await asyncio.to_thread(self._market)  # metadata scan, file read
            if market is None:
                raise web.HTTPNotFound(text="the market is not installed\n")
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(None, market.install, name, constraint)
        except web.HTTPException:
            raise
        except Exception as exc:
            return web.json_response({"error": str(exc)}, status=409)
        reload, status = await self.admin.reload_now()
        return web.json_response({**body, "reload": reload}, status=status)


def _installed(snap: Snapshot) -> dict[str, Any]:
    """What ``gateway.lock`` pins, verified on disk (blocking)."""
    out: list[dict[str, Any]] = []
    try:
        source = open_installed(snap.config, Path(snap.source).parent)
    except Exception as exc:
        return {"plugins": out, "error": str(exc)}
    for name in source.names() if source else []:
        try:
            p = source.load(name) if source else None
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


_STATIC: dict[str, bytes] = {name: (STATIC / name).read_bytes() for name in FILES}


def _file(name: str) -> web.StreamResponse:
    return web.Response(
        body=_STATIC[name],
        headers={"Content-Type": f"{FILES[name]}; charset=utf-8", "Cache-Control": "no-cache"},
    )
