"""Metrics a Proxy-Wasm filter defines (``proxy_define_metric``) on ``/metrics``.

``tests/wasm_modules/probe.wat`` defines, for a request with ``x-metric: N``, the
counter ``probe_requests`` (+1), the gauge ``probe_gauge`` (set to N) and the histogram
``probe_hist`` (records N); for ``x-many: N`` the counters ``many_0`` .. ``many_{N-1}``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import aiohttp

from core import metrics
from core.config import loads_config
from core.gateway import Snapshot
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml
from tests.test_metrics import Samples, scrape, value
from tests.test_wasm_host import start_wasm, wasm_file, wasm_toml


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"  # metrics are process-wide: fresh labels


def series(samples: Samples, filter_name: str) -> dict[str, float]:
    """The filter's samples: ``NAME{metric,le}`` -> value."""
    out = {}
    for (name, labels), v in samples.items():
        tags = dict(labels)
        if tags.get("filter") == filter_name and name.startswith("wasmgate_wasm_filter_"):
            extra = f",le={tags['le']}" if "le" in tags else ""
            out[f"{name}{{{tags['metric']}{extra}}}"] = v
    return out


async def test_counters_gauges_and_histograms_are_exported(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    name = unique("fm")
    gw = await start_wasm(
        start_gateway, tmp_path, "probe.wat", {"v1": [upstream.address]}, name=name
    )
    for n in ("7", "300"):
        async with http.get(gw.url + "/x", headers={"x-metric": n}) as resp:
            assert resp.status == 200
    assert upstream.requests[-1].headers["x-metric-status"] == "0"
    got = series(scrape(), name)
    assert got["wasmgate_wasm_filter_counter_total{probe_requests}"] == 2
    assert got["wasmgate_wasm_filter_gauge{probe_gauge}"] == 300
    assert got["wasmgate_wasm_filter_histogram_count{probe_hist}"] == 2
    assert got["wasmgate_wasm_filter_histogram_sum{probe_hist}"] == 307
    buckets = {le: got[f"wasmgate_wasm_filter_histogram_bucket{{probe_hist,le={le}}}"]
               for le in ("5.0", "10.0", "250.0", "500.0", "+Inf")}  # fmt: skip
    assert buckets == {"5.0": 0, "10.0": 1, "250.0": 1, "500.0": 2, "+Inf": 2}


async def test_each_filter_has_its_own_metrics(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    one, two = unique("fm-one"), unique("fm-two")
    module = wasm_file(tmp_path, "probe.wat")
    gw = await start_gateway(
        gateway_toml(
            {"v1": [upstream.address]},
            f"""
[filters.{one}]
wasm = "{module}"

[filters.{two}]
wasm = "{module}"

[[routes]]
name = "both"
paths = ["/both"]
upstream = "v1"
filters = ["{one}", "{two}"]

[[routes]]
name = "one"
upstream = "v1"
filters = ["{one}"]
""",
        )
    )
    for path in ("/both", "/x", "/x"):
        async with http.get(gw.url + path, headers={"x-metric": "1"}) as resp:
            assert resp.status == 200
    samples = scrape()
    counter = "wasmgate_wasm_filter_counter_total{probe_requests}"
    assert (series(samples, one)[counter], series(samples, two)[counter]) == (3, 1)


async def test_workers_are_summed(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    name = unique("fm-workers")
    gw = await start_wasm(
        start_gateway, tmp_path, "probe.wat", {"v1": [upstream.address]}, name=name
    )
    async with http.get(gw.url + "/x", headers={"x-metric": "40"}) as resp:
        assert resp.status == 200
    # Another live worker that counted the same: this process's state under the pid of
    # a process that exists (our parent), written just now.
    other = metrics.snapshot_state() | {"pid": os.getppid(), "written_at": time.time()}
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / f"metrics-{os.getppid()}.json").write_text(json.dumps(other))
    got = series(scrape(runtime), name)
    assert got["wasmgate_wasm_filter_counter_total{probe_requests}"] == 2
    assert got["wasmgate_wasm_filter_gauge{probe_gauge}"] == 80  # gauges: the sum
    assert got["wasmgate_wasm_filter_histogram_count{probe_hist}"] == 2
    assert got["wasmgate_wasm_filter_histogram_sum{probe_hist}"] == 80


async def test_a_filter_may_define_so_many_metrics(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    name = unique("fm-many")
    gw = await start_wasm(
        start_gateway,
        tmp_path,
        "probe.wat",
        {"v1": [upstream.address]},
        name=name,
        extra="limits = { max_metrics = 3 }",
    )
    for many in ("5", "3"):  # the second: the same three again, no new definition
        async with http.get(gw.url + "/x", headers={"x-many": many}) as resp:
            assert resp.status == 200
    first, second = (r.headers for r in upstream.requests)
    assert (first["x-many-status"], first["x-many-ok"]) == ("2", "3")  # BAD_ARGUMENT
    assert (second["x-many-status"], second["x-many-ok"]) == ("0", "3")
    samples = scrape()
    assert (
        value(samples, "wasmgate_wasm_resource_exhausted_total", filter=name, kind="metrics") == 1
    )
    assert len(series(samples, name)) == 3


async def test_a_filters_metrics_go_with_its_vm(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    name = unique("fm-gone")
    gw = await start_wasm(
        start_gateway, tmp_path, "probe.wat", {"v1": [upstream.address]}, name=name
    )
    async with http.get(gw.url + "/x", headers={"x-many": "50"}) as resp:
        assert resp.status == 200
    assert len(series(scrape(), name)) == 50
    await gw.stop()
    assert series(scrape(), name) == {}


async def test_a_reload_that_keeps_the_filter_keeps_its_metrics_one_that_drops_it_drops_them(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    name = unique("fm-reload")
    module = wasm_file(tmp_path, "probe.wat")
    with_filter = wasm_toml({"v1": [upstream.address]}, module, name=name)
    without = gateway_toml({"v1": [upstream.address]}, '[[routes]]\nname = "r"\nupstream = "v1"\n')
    gw = await start_gateway(with_filter)
    assert gw.gateway is not None
    counter = "wasmgate_wasm_filter_counter_total{probe_requests}"

    async def request() -> None:
        async with http.get(gw.url + "/x", headers={"x-metric": "1"}) as resp:
            assert resp.status == 200

    await request()
    gw.gateway.swap(Snapshot(loads_config(with_filter, "test.toml"), "test.toml"))
    await request()  # the new snapshot's VM, the old one closed
    assert series(scrape(), name)[counter] == 2
    gw.gateway.swap(Snapshot(loads_config(without, "test.toml"), "test.toml"))
    await request()
    assert series(scrape(), name) == {}
