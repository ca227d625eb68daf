"""Prometheus metrics: counted in each worker, summed across workers at scrape time.

The request path only increments plain Python counters of this process (no lock, no
prometheus-client call): :func:`record_exchange` once per request, the filter chain
its :class:`~plugin_sdk.chain.FilterStats`, and the rare events (an ejection, an
active health check, a WASM trap, a reload) a dict entry each. The metrics a
Proxy-Wasm filter defines (:class:`WasmMetric`) are kept here too, per filter.

Across workers: every worker writes its counters and gauges as JSON to
``<runtime dir>/metrics-<pid>.json`` once a second, from a timer on its loop, and
when it stops (written to a temporary file and renamed, so a reader never sees half
a file). :func:`render` sums every file there plus the live state of the calling
process (whose own file it skips). A worker that died leaves its file, which keeps
counting, so no counter goes backwards when a worker is replaced (a new process that
gets a dead one's pid moves its file aside first); gauges (active
connections, endpoint health, configuration, certificates, the gauges Proxy-Wasm
filters define) come only from live processes: the caller, and files written in the
last ``LIVE_SECONDS`` by a process that still exists.

The runtime dir is ``$WASMGATE_RUNTIME_DIR`` when set, else a temporary directory
that the process calling :func:`init_runtime` (the supervisor, or the single
process) creates before forking and removes when it exits. Starting clears the
``metrics-*.json`` files a previous run left: counters start from zero.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugin_sdk import store
from plugin_sdk.chain import FilterInstance, FilterStats

if TYPE_CHECKING:
    from core.gateway import Gateway, Snapshot
    from core.proxy import Exchange

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the Prometheus text format
ENV = "WASMGATE_RUNTIME_DIR"
FORMAT = 1  # of the JSON files; bump when a field or a bucket bound changes
LIVE_SECONDS = 5.0
FLUSH_SECONDS = 1.0
#: Bucket bounds (seconds) of the request and upstream duration histograms.
LATENCY_BOUNDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
CODE_CLASSES = ("", "1xx", "2xx", "3xx", "4xx", "5xx")  # by status // 100; 0 unused
PHASES = ("request", "response", "log")  # FilterStats.buckets order


class RequestStats:
    """The counters of one (route, upstream) pair in this process."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "codes",
        "latency",
        "latency_sum",
        "upstream",
        "upstream_sum",
    )

    def __init__(self) -> None:
        self.codes = [0] * 6  # requests by status // 100 (out of range: 5, a gateway fault)
        self.bytes_in = 0
        self.bytes_out = 0
        # Histograms as counts per bucket (not cumulative), the last one +Inf.
        self.latency = [0] * (len(LATENCY_BOUNDS) + 1)
        self.latency_sum = 0.0
        self.upstream = [0] * (len(LATENCY_BOUNDS) + 1)
        self.upstream_sum = 0.0


#: Bucket bounds of the histograms Proxy-Wasm filters define: Envoy's default buckets
#: (the values are the filter's own, milliseconds in most filters).
WASM_HISTOGRAM_BOUNDS = (
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    30000.0, 60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
)  # fmt: skip
WASM_METRIC_KINDS = ("counter", "gauge", "histogram")  # proxy_define_metric's types 0, 1, 2


class WasmMetric:
    """One metric a Proxy-Wasm filter defined: a counter's or gauge's value, or a
    histogram's counts per bucket (not cumulative, the last one +Inf) and sum."""

    __slots__ = ("buckets", "kind", "sum", "value")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.value = 0
        self.buckets = [0] * (len(WASM_HISTOGRAM_BOUNDS) + 1) if kind == "histogram" else []
        self.sum = 0.0

    def observe(self, value: int) -> None:
        self.buckets[bisect_left(WASM_HISTOGRAM_BOUNDS, value)] += 1
        self.sum += value


class _State:
    """Everything this process counted (process-wide: one gateway per process)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], RequestStats] = {}
        self.filters: dict[tuple[str, str], FilterStats] = {}
        self.wasm: dict[str, list[int]] = {}  # filter -> [traps, rebuilds]
        self.wasm_exhausted: dict[tuple[str, str], int] = {}  # (filter, kind) -> count
        self.wasm_throttled: dict[str, int] = {}  # filter -> times over its CPU budget
        self.wasm_refused: dict[tuple[str, str], int] = {}  # (filter, reason) -> requests
        # filter -> (kind, metric name) -> what the filter's proxy_*_metric calls made
        self.wasm_metrics: dict[str, dict[tuple[str, str], WasmMetric]] = {}
        self.ejections: dict[tuple[str, str], int] = {}
        self.checks: dict[tuple[str, str, str], int] = {}  # (upstream, endpoint, result)
        self.reloads = {"success": 0, "failure": 0}
        self.config_version = 1
        self.config_hash = ""  # "": hash the served snapshot's configuration
        self.gateways: weakref.WeakSet[Gateway] = weakref.WeakSet()
        self.runtime: Path | None = None
        self.timer: asyncio.TimerHandle | None = None


_state = _State()
_requests = _state.requests  # bound once for record_exchange


# ---------------------------------------------------------------------- counting


def record_exchange(ex: Exchange) -> None:
    """Count one finished request (the request path: keep it cheap)."""
    route = ex.route
    pool = ex.pool
    key = (route.name if route is not None else "", pool.name if pool is not None else "")
    stats = _requests.get(key)
    if stats is None:
        stats = _requests[key] = RequestStats()
    status = ex.status
    stats.codes[status // 100 if 100 <= status < 600 else 5] += 1
    stats.bytes_in += ex.bytes_in
    stats.bytes_out += ex.bytes_out
    seconds = time.monotonic() - ex.req.start
    stats.latency[bisect_left(LATENCY_BOUNDS, seconds)] += 1
    stats.latency_sum += seconds
    upstream = ex.upstream_duration
    if upstream is not None:
        stats.upstream[bisect_left(LATENCY_BOUNDS, upstream)] += 1
        stats.upstream_sum += upstream


def record_rejected(status: int, bytes_out: int, seconds: float | None) -> None:
    """Count a request refused before it could be routed (a 400, 408, 414, 431); its
    duration when its head had begun (``None`` otherwise)."""
    stats = _requests.get(("", ""))
    if stats is None:
        stats = _requests["", ""] = RequestStats()
    stats.codes[status // 100 if 100 <= status < 600 else 5] += 1
    stats.bytes_out += bytes_out
    if seconds is not None:
        stats.latency[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        stats.latency_sum += seconds


def count_ejection(upstream: str, endpoint: str) -> None:
    key = (upstream, endpoint)
    _state.ejections[key] = _state.ejections.get(key, 0) + 1


def count_check(upstream: str, endpoint: str, result: str) -> None:
    """An active health check of ``endpoint`` ended with ``result``."""
    key = (upstream, endpoint, result)
    _state.checks[key] = _state.checks.get(key, 0) + 1


def count_wasm(filter_name: str, *, rebuild: bool = False) -> None:
    """A Proxy-Wasm filter trapped (or, with ``rebuild``, got a fresh instance)."""
    counts = _state.wasm.setdefault(filter_name, [0, 0])
    counts[1 if rebuild else 0] += 1


def count_wasm_exhausted(filter_name: str, kind: str) -> None:
    """A Proxy-Wasm filter was refused host memory past one of its bounds (``kind``:
    shared, queue, body, headers, properties, http_calls)."""
    key = (filter_name, kind)
    _state.wasm_exhausted[key] = _state.wasm_exhausted.get(key, 0) + 1


def count_wasm_throttled(filter_name: str) -> None:
    """A Proxy-Wasm filter went over its CPU budget (a cool-down starts)."""
    _state.wasm_throttled[filter_name] = _state.wasm_throttled.get(filter_name, 0) + 1


def count_wasm_refused(filter_name: str, reason: str) -> None:
    """A request met a Proxy-Wasm filter that could not run (``reason``: cpu_budget,
    rebuild_backoff) and was failed or skipped by its fail strategy."""
    key = (filter_name, reason)
    _state.wasm_refused[key] = _state.wasm_refused.get(key, 0) + 1


def wasm_metrics(filter_name: str) -> dict[tuple[str, str], WasmMetric]:
    """The metrics Proxy-Wasm filter ``filter_name`` defined, by (kind, name); the
    host adds to it (core/wasm/metrics.py)."""
    return _state.wasm_metrics.setdefault(filter_name, {})


def drop_wasm_metrics(filter_name: str) -> None:
    """The filter is gone (its last VM closed): its metrics leave /metrics."""
    _state.wasm_metrics.pop(filter_name, None)


def record_reload(ok: bool, version: int, config_hash: str) -> None:
    """A reload ended; ``version`` and ``config_hash`` are what serves now."""
    _state.reloads["success" if ok else "failure"] += 1
    _state.config_version = version
    _state.config_hash = config_hash


def adopt(filters: Iterable[FilterInstance]) -> list[FilterInstance]:
    """Give each instance the stats of its (name, plugin), shared with the instances of
    earlier configurations, so its counts go on across reloads. Call it before the
    instances' :class:`~plugin_sdk.chain.Chain` is built (the chain binds the stats)."""
    out = []
    for inst in filters:
        key = (inst.name, plugin_label(inst.plugin))
        stats = _state.filters.get(key)
        if stats is None:
            stats = _state.filters[key] = inst.stats
        inst.stats = stats
        out.append(inst)
    return out


def plugin_label(plugin: str) -> str:
    """The plugin's name without the version an installed one carries (``key-auth@1.2``)."""
    return plugin.partition("@")[0]


def config_hash(snapshot: Snapshot) -> str:
    """A short hash of a configuration: the admin API's and ``config_info``'s."""
    data = json.dumps(snapshot.config.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:16]


# ---------------------------------------------------------------------- lifecycle


def attach(gateway: Gateway) -> None:
    """Read ``gateway``'s gauges (connections, endpoint health, certificates)."""
    _state.gateways.add(gateway)


def detach(gateway: Gateway) -> None:
    _state.gateways.discard(gateway)


def init_runtime(directory: Path | None = None) -> Path:
    """Choose (and create) the runtime dir before workers are forked; see the module doc."""
    created = False
    if directory is None:
        env = os.environ.get(ENV)
        if env:
            directory = Path(env)
        else:
            directory = Path(tempfile.mkdtemp(prefix="wasmgate-"))
            created = True
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("metrics-*.json"):
        old.unlink(missing_ok=True)
    _state.runtime = directory
    if created:
        atexit.register(_remove_runtime, directory, os.getpid())
    return directory


def _remove_runtime(directory: Path, owner: int) -> None:
    if os.getpid() == owner:  # not a forked worker that happens to run atexit
        shutil.rmtree(directory, ignore_errors=True)


def start(loop: asyncio.AbstractEventLoop) -> None:
    """Write this process's file now and every second (when a runtime dir is set)."""
    if _state.runtime is None:
        return
    own = own_file(_state.runtime)
    with contextlib.suppress(FileNotFoundError):  # a dead worker's, whose pid we got
        own.rename(own.with_name(f"metrics-{os.getpid()}-{time.time_ns()}.json"))

    def tick() -> None:
        _state.timer = loop.call_later(FLUSH_SECONDS, tick)
        write()

    tick()


def stop() -> None:
    """Stop the timer and write the file one last time."""
    if _state.timer is not None:
        _state.timer.cancel()
        _state.timer = None
    if _state.runtime is not None:
        write()


def write() -> None:
    """Write this process's counters to its file in the runtime dir, atomically."""
    if _state.runtime is None:
        return
    path = own_file(_state.runtime)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(snapshot_state(), separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:  # the dir went away: the next tick tries again
        with contextlib.suppress(OSError):
            tmp.unlink()


def own_file(directory: Path) -> Path:
    return directory / f"metrics-{os.getpid()}.json"


# ---------------------------------------------------------------------- state as JSON


def snapshot_state() -> dict[str, Any]:
    """This process's counters and gauges, in the format of the files."""
    s = _state
    now = time.monotonic()
    endpoints: dict[tuple[str, str], int] = {}
    checked: dict[tuple[str, str], int] = {}  # active checks' own verdict
    certificates: dict[str, float] = {}
    active = 0
    config = ""
    for gw in list(s.gateways):
        active += len(gw.connections)
        snap = gw.snapshot
        config = config or s.config_hash or _hash_of(snap)
        for pool in snap.pools.values():
            for ep in pool.endpoints:
                key = (pool.name, ep.address)
                endpoints[key] = min(endpoints.get(key, 1), int(ep.healthy(now)))
                if ep.check is not None:
                    checked[key] = min(checked.get(key, 1), int(ep.check.state != "unhealthy"))
        for label, not_after in (snap.tls.expiries if snap.tls else {}).items():
            certificates[label] = min(certificates.get(label, 1e18), not_after.timestamp())
    return {
        "format": FORMAT,
        "pid": os.getpid(),
        "written_at": time.time(),
        "requests": [
            {
                "route": route,
                "upstream": upstream,
                "codes": r.codes,
                "bytes_in": r.bytes_in,
                "bytes_out": r.bytes_out,
                "latency": r.latency,
                "latency_sum": r.latency_sum,
                "upstream_latency": r.upstream,
                "upstream_latency_sum": r.upstream_sum,
            }
            for (route, upstream), r in list(s.requests.items())
        ],
        "filters": [
            {
                "filter": name,
                "plugin": plugin,
                "errors": f.errors,
                "buckets": f.buckets,
                "seconds": f.seconds,
            }
            for (name, plugin), f in list(s.filters.items())
        ],
        "wasm": {name: {"traps": t, "rebuilds": r} for name, (t, r) in s.wasm.items()},
        "wasm_exhausted": [[f, k, n] for (f, k), n in list(s.wasm_exhausted.items())],
        "wasm_throttled": dict(s.wasm_throttled),
        "wasm_refused": [[f, r, n] for (f, r), n in list(s.wasm_refused.items())],
        "wasm_metrics": [
            [f, kind, name, m.value, m.buckets, m.sum]
            for f, table in list(s.wasm_metrics.items())
            for (kind, name), m in list(table.items())
        ],
        "store_errors": [[u, k, n] for (u, k), n in store.error_counts().items()],
        "ejections": [[u, e, n] for (u, e), n in s.ejections.items()],
        "checks": [[u, e, r, n] for (u, e, r), n in list(s.checks.items())],
        "reloads": dict(s.reloads),
        "gauges": {
            "active_connections": active,
            "config_version": s.config_version,
            "config_hash": config,
            "endpoints": [[u, e, h] for (u, e), h in endpoints.items()],
            "checked": [[u, e, h] for (u, e), h in checked.items()],
            "certificates": certificates,
        },
        "live": bool(s.gateways),
    }


_hashed: tuple[object, str] | None = None


def _hash_of(snapshot: Snapshot) -> str:
    global _hashed
    if _hashed is None or _hashed[0] is not snapshot.config:
        _hashed = (snapshot.config, config_hash(snapshot))
    return _hashed[1]


def read_files(directory: Path, *, skip: Path | None = None) -> Iterator[dict[str, Any]]:
    """The states in ``directory``'s files but ``skip``, each with ``live`` set as the
    module doc says."""
    now = time.time()
    for path in sorted(directory.glob("metrics-*.json")):
        if path == skip:
            continue
        try:
            state = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            continue
        pid = state.get("pid")
        fresh = now - float(state.get("written_at", 0)) <= LIVE_SECONDS
        state["live"] = bool(state.get("live")) and fresh and _alive(pid)
        yield state


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------- rendering


def render(directory: Path | None = None, *, local: bool = True) -> bytes:
    """Every worker's metrics in the Prometheus text format (:data:`CONTENT_TYPE`).

    Sums the files in ``directory`` (default: the runtime dir, when there is one) and,
    with ``local``, this process's live state instead of its own file.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    from core.metrics_render import Collector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(states(directory, local=local)))
    return generate_latest(registry)


def states(directory: Path | None = None, *, local: bool = True) -> list[dict[str, Any]]:
    """What :func:`render` sums: the files in ``directory`` (default: the runtime dir)
    and, with ``local``, this process's live state instead of its own file."""
    directory = directory if directory is not None else _state.runtime
    out = [snapshot_state()] if local else []
    if directory is not None:
        out += read_files(directory, skip=own_file(directory) if local else None)
    return out
