"""The Prometheus metric families of :mod:`core.metrics`, from every process's state.

:class:`Collector` sums the states (this process's and the files of the others):
counters over every state, gauges over the live ones only. Where live processes
disagree on a gauge, the table says which value wins. Every name is documented in
docs/metrics.md.

=================================  ===================================================
gauge                              from the live processes
=================================  ===================================================
active_connections                 the sum
upstream_endpoint_healthy          the minimum: 0 once any process holds it out
upstream_endpoint_check_healthy    the minimum: 0 once any process's checks fail it
config_version                     the highest
wasm_filter_gauge                  the sum (each worker's filter sets its own)
config_info                        one series per configuration hash served
certificate_expiry_timestamp_...   the earliest (the certificate served longest)
=================================  ===================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from core.metrics import CODE_CLASSES, LATENCY_BOUNDS, PHASES, WASM_HISTOGRAM_BOUNDS
from plugin_sdk.chain import FilterStats

P = "wasmgate_"
Histogram = tuple[list[int], float]  # counts per bucket (not cumulative), sum


def _add(into: list[int], values: object) -> None:
    if isinstance(values, list) and len(values) == len(into):
        for i, v in enumerate(values):
            into[i] += int(v)


class _Totals:
    """The states summed up."""

    def __init__(self) -> None:
        n, m = len(LATENCY_BOUNDS) + 1, len(FilterStats.BOUNDS) + 1
        self.n, self.m = n, m
        self.codes: dict[tuple[str, str], list[int]] = {}
        self.bytes: dict[str, list[int]] = {}  # route -> [in, out]
        self.latency: dict[str, Histogram] = {}
        self.upstream: dict[str, Histogram] = {}
        self.calls: dict[tuple[str, str], list[int]] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.wasm: dict[str, list[int]] = {}
        self.wasm_exhausted: dict[tuple[str, str], int] = {}
        self.wasm_throttled: dict[str, int] = {}
        self.wasm_refused: dict[tuple[str, str], int] = {}
        self.store_errors: dict[tuple[str, str], int] = {}
        # (filter, metric name) -> counter total / gauge sum / (histogram buckets, sum)
        self.filter_counters: dict[tuple[str, str], int] = {}
        self.filter_gauges: dict[tuple[str, str], int] = {}
        self.filter_histograms: dict[tuple[str, str], Histogram] = {}
        self.ejections: dict[tuple[str, str], int] = {}
        self.checks: dict[tuple[str, str, str], int] = {}
        self.reloads = {"success": 0, "failure": 0}
        self.active = 0
        self.healthy: dict[tuple[str, str], int] = {}
        self.checked: dict[tuple[str, str], int] = {}
        self.version = 0
        self.hashes: set[str] = set()
        self.certificates: dict[str, float] = {}

    def add(self, state: dict[str, Any]) -> None:
        for r in state.get("requests", ()):
            route, upstream = str(r["route"]), str(r["upstream"])
            _add(self.codes.setdefault((route, upstream), [0] * len(CODE_CLASSES)), r["codes"])
            _add(self.bytes.setdefault(route, [0, 0]), [r["bytes_in"], r["bytes_out"]])
            self._observe(self.latency, route, r["latency"], r["latency_sum"], self.n)
            if upstream:
                hist = (r["upstream_latency"], r["upstream_latency_sum"])
                self._observe(self.upstream, upstream, *hist, self.n)
        for f in state.get("filters", ()):
            key = (str(f["filter"]), str(f["plugin"]))
            buckets = f["buckets"]
            if not (isinstance(buckets, list) and len(buckets) == len(PHASES)):
                continue
            _add(self.calls.setdefault(key, [0] * len(PHASES)), [sum(b) for b in buckets])
            self.errors[key] = self.errors.get(key, 0) + int(f["errors"])
            all_phases = [sum(column) for column in zip(*buckets, strict=True)]
            self._observe(self.durations, key[0], all_phases, f["seconds"], self.m)
        for name, counts in state.get("wasm", {}).items():
            _add(self.wasm.setdefault(name, [0, 0]), [counts["traps"], counts["rebuilds"]])
        for name, kind, count in state.get("wasm_exhausted", ()):
            key = (str(name), str(kind))
            self.wasm_exhausted[key] = self.wasm_exhausted.get(key, 0) + int(count)
        for name, count in state.get("wasm_throttled", {}).items():
            self.wasm_throttled[name] = self.wasm_throttled.get(name, 0) + int(count)
        for name, reason, count in state.get("wasm_refused", ()):
            key = (str(name), str(reason))
            self.wasm_refused[key] = self.wasm_refused.get(key, 0) + int(count)
        for user, kind, count in state.get("store_errors", ()):
            key = (str(user), str(kind))
            self.store_errors[key] = self.store_errors.get(key, 0) + int(count)
        self._add_filter_metrics(state.get("wasm_metrics", ()), bool(state.get("live")))
        for upstream, endpoint, count in state.get("ejections", ()):
            key = (upstream, endpoint)
            self.ejections[key] = self.ejections.get(key, 0) + int(count)
        for upstream, endpoint, result, count in state.get("checks", ()):
            ckey = (str(upstream), str(endpoint), str(result))
            self.checks[ckey] = self.checks.get(ckey, 0) + int(count)
        for result in self.reloads:
            self.reloads[result] += int(state.get("reloads", {}).get(result, 0))
        if not state.get("live"):
            return
        gauges = state.get("gauges", {})
        self.active += int(gauges.get("active_connections", 0))
        for upstream, endpoint, healthy in gauges.get("endpoints", ()):
            key = (upstream, endpoint)
            self.healthy[key] = min(self.healthy.get(key, 1), int(healthy))
        for upstream, endpoint, healthy in gauges.get("checked", ()):
            key = (upstream, endpoint)
            self.checked[key] = min(self.checked.get(key, 1), int(healthy))
        self.version = max(self.version, int(gauges.get("config_version", 0)))
        if gauges.get("config_hash"):
            self.hashes.add(str(gauges["config_hash"]))
        for label, expiry in gauges.get("certificates", {}).items():
            self.certificates[label] = min(self.certificates.get(label, expiry), expiry)

    def _add_filter_metrics(self, rows: Iterable[Any], live: bool) -> None:
        size = len(WASM_HISTOGRAM_BOUNDS) + 1
        for name, kind, metric, value, buckets, total in rows:
            key = (str(name), str(metric))
            if kind == "counter":
                self.filter_counters[key] = self.filter_counters.get(key, 0) + int(value)
            elif kind == "gauge" and live:
                self.filter_gauges[key] = self.filter_gauges.get(key, 0) + int(value)
            elif kind == "histogram":
                counts, seconds = self.filter_histograms.get(key) or ([0] * size, 0.0)
                _add(counts, buckets)
                self.filter_histograms[key] = (counts, seconds + float(total))

    @staticmethod
    def _observe(
        into: dict[str, Histogram], key: str, buckets: object, total: Any, size: int
    ) -> None:
        counts, seconds = into.get(key) or ([0] * size, 0.0)
        _add(counts, buckets)
        into[key] = (counts, seconds + float(total))


def totals(states: Iterable[dict[str, Any]]) -> _Totals:
    """The states summed (the admin dashboard reads these too)."""
    t = _Totals()
    for state in states:
        try:
            t.add(state)
        except (KeyError, TypeError, ValueError):
            continue  # a malformed file: the rest of it is left out
    return t


def _histogram(
    name: str, doc: str, label: str, rows: dict[str, Histogram], bounds: Sequence[float]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(P + name, doc, labels=[label])
    for key, (counts, seconds) in sorted(rows.items()):
        if not any(counts):
            continue  # e.g. an upstream that never answered: no series yet
        cumulative, buckets = 0, []
        for bound, count in zip([*bounds, float("inf")], counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), float(cumulative)))
        family.add_metric([key], buckets, seconds)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def wasmgate_version() -> str:
    """The installed wasmgate's version ("0.0.0" when not installed)."""
    try:
        return version("wasmgate")
    except PackageNotFoundError:
        return "0.0.0"


class Collector:
    """A prometheus-client collector over the states of every process."""

    def __init__(self, states: Iterable[dict[str, Any]]) -> None:
        self.states = states

    def collect(self) -> Iterator[Metric]:
        t = totals(self.states)
        info = GaugeMetricFamily(P + "build_info", "The running wasmgate.", labels=["version"])
        info.add_metric([wasmgate_version()], 1)
        yield info

        requests = CounterMetricFamily(
            P + "requests",
            "Requests answered, by route, the upstream it went to and status class.",
            labels=["route", "upstream", "code_class"],
        )
        for (route, upstream), codes in sorted(t.codes.items()):
            for code_class, count in zip(CODE_CLASSES, codes, strict=True):
                if count:
                    requests.add_metric([route, upstream, code_class], count)
        yield requests
        yield _histogram(
            "request_duration_seconds",
            "Whole request, from its head to the last byte of the response.",
            "route",
            t.latency,
            LATENCY_BOUNDS,
        )
        yield _histogram(
            "upstream_duration_seconds",
            "From the request head sent upstream to the response head (or the error).",
            "upstream",
            t.upstream,
            LATENCY_BOUNDS,
        )
        for i, (name, doc) in enumerate(
            [
                ("request_bytes", "Request body bytes received from clients."),
                ("response_bytes", "Response body bytes sent to clients."),
            ]
        ):
            family = CounterMetricFamily(P + name, doc, labels=["route"])
            for route, pair in sorted(t.bytes.items()):
                family.add_metric([route], pair[i])
            yield family
        yield GaugeMetricFamily(P + "active_connections", "Open client connections.", t.active)

        healthy = GaugeMetricFamily(
            P + "upstream_endpoint_healthy",
            "1 when the endpoint takes requests, 0 while passive health has it ejected "
            "or active health checks find it unhealthy.",
            labels=["upstream", "endpoint"],
        )
        for key, value in sorted(t.healthy.items()):
            healthy.add_metric(list(key), value)
        yield healthy
        checked = GaugeMetricFamily(
            P + "upstream_endpoint_check_healthy",
            "Active health checks' verdict: 0 while they find the endpoint unhealthy, else 1 "
            "(only endpoints of upstreams with health_check).",
            labels=["upstream", "endpoint"],
        )
        for key, value in sorted(t.checked.items()):
            checked.add_metric(list(key), value)
        yield checked
        yield _counter(
            "health_checks",
            "Active health checks, by result: success, timeout, connect_error, bad_status, "
            "protocol_error.",
            ["upstream", "endpoint", "result"],
            ((list(k), n) for k, n in sorted(t.checks.items())),
        )
        yield _counter(
            "upstream_endpoint_ejections",
            "Times passive health ejected the endpoint.",
            ["upstream", "endpoint"],
            ((list(k), n) for k, n in sorted(t.ejections.items())),
        )
        yield _counter(
            "plugin_calls",
            "Filter phase calls.",
            ["filter", "plugin", "phase"],
            (
                ([name, plugin, phase], calls[i])
                for (name, plugin), calls in sorted(t.calls.items())
                for i, phase in enumerate(PHASES)
                if calls[i]
            ),
        )
        yield _counter(
            "plugin_errors",
            "Filter phase calls that raised (or returned something else than allowed).",
            ["filter", "plugin"],
            ((list(k), n) for k, n in sorted(t.errors.items())),
        )
        yield _histogram(
            "plugin_duration_seconds",
            "Time spent in each filter phase call (awaits included).",
            "filter",
            t.durations,
            FilterStats.BOUNDS,
        )
        yield _counter(
            "wasm_traps",
            "Traps of a Proxy-Wasm filter's instance.",
            ["filter"],
            (([k], c[0]) for k, c in sorted(t.wasm.items())),
        )
        yield _counter(
            "wasm_instance_rebuilds",
            "Fresh instances of a Proxy-Wasm filter, built after a trap.",
            ["filter"],
            (([k], c[1]) for k, c in sorted(t.wasm.items())),
        )
        yield _counter(
            "wasm_resource_exhausted",
            "Host calls of a Proxy-Wasm filter refused past a memory bound, by kind.",
            ["filter", "kind"],
            ((list(k), n) for k, n in sorted(t.wasm_exhausted.items())),
        )
        yield _counter(
            "wasm_cpu_throttled",
            "Times a Proxy-Wasm filter went over its CPU budget (each starts a cool-down).",
            ["filter"],
            (([k], n) for k, n in sorted(t.wasm_throttled.items())),
        )
        yield _counter(
            "wasm_refused",
            "Requests a Proxy-Wasm filter could not run (over its CPU budget, or backing "
            "off before a rebuild), failed or skipped by its fail strategy.",
            ["filter", "reason"],
            ((list(k), n) for k, n in sorted(t.wasm_refused.items())),
        )
        yield from _filter_metrics(t)
        yield _counter(
            "store_errors",
            "Calls to the shared store ([store] Redis) that failed or timed out, by the "
            "filter that made them; each was answered by that filter's failure policy.",
            ["filter", "kind"],
            ((list(k), n) for k, n in sorted(t.store_errors.items())),
        )
        yield _counter(
            "reloads",
            "Configuration reloads, by result.",
            ["result"],
            (([r], n) for r, n in t.reloads.items()),
        )
        if t.version:
            yield GaugeMetricFamily(
                P + "config_version", "The configuration's version: 1 at start, +1 per reload.",
                t.version,
            )  # fmt: skip
        config = GaugeMetricFamily(
            P + "config_info", "1 per configuration hash served.", labels=["config_hash"]
        )
        for config_hash in sorted(t.hashes):
            config.add_metric([config_hash], 1)
        yield config
        expiry = GaugeMetricFamily(
            P + "certificate_expiry_timestamp_seconds",
            "When each server certificate expires (Unix time).",
            labels=["certificate"],
        )
        for label, when in sorted(t.certificates.items()):
            expiry.add_metric([label], when)
        yield expiry


def _counter(
    name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(P + name, doc, labels=labels)
    for values, count in rows:
        family.add_metric(values, count)
    return family


def _filter_metrics(t: _Totals) -> Iterator[Metric]:
    """The metrics Proxy-Wasm filters define, one family per kind, labelled by the
    filter and the metric's own name."""
    labels = ["filter", "metric"]
    yield _counter(
        "wasm_filter_counter",
        "Counters Proxy-Wasm filters define (proxy_define_metric), summed over workers.",
        labels,
        ((list(k), n) for k, n in sorted(t.filter_counters.items())),
    )
    gauges = GaugeMetricFamily(
        P + "wasm_filter_gauge",
        "Gauges Proxy-Wasm filters define, summed over the live workers.",
        labels=labels,
    )
    for key, value in sorted(t.filter_gauges.items()):
        gauges.add_metric(list(key), value)
    yield gauges
    histograms = HistogramMetricFamily(
        P + "wasm_filter_histogram",
        "Histograms Proxy-Wasm filters define (values in the filter's own unit), summed "
        "over workers.",
        labels=labels,
    )
    for key, (counts, total) in sorted(t.filter_histograms.items()):
        cumulative, buckets = 0, []
        for bound, count in zip([*WASM_HISTOGRAM_BOUNDS, float("inf")], counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), float(cumulative)))
        histograms.add_metric(list(key), buckets, total)
    yield histograms
