"""Prometheus metrics (core/metrics.py): known traffic through a real gateway gives
exact counts; WASM traps; files of several workers summed, gauges only from live ones;
a real ``wasmgate run -w 2`` scraped through its admin API, across a reload and the
loss of a worker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from tests.conftest import StartGateway
from tests.harness import GatewayProcess, RecordingUpstream, free_port, gateway_toml
from tests.test_wasm_host import start_wasm

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def scrape(directory: Path | None = None, *, local: bool = True) -> Samples:
    return parse(metrics.render(directory, local=local))


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when it is absent (a series not created yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# The names are this module's own: the counters are process-wide and other tests count
# requests too (those without a route share route="" with ours, hence the deltas).
TRAFFIC = """
[[upstreams]]
name = "m-dead"
endpoints = ["127.0.0.1:{dead}"]
retries = 0
health = {{ max_failures = 1, eject_seconds = 30 }}

[filters.m-boom]
plugin = "boom"
fail = "open"
[filters.m-tag]
plugin = "tag"
config.name = "t"
[filters.m-no]
plugin = "deny"
config.status = 401

[[routes]]
name = "m-ok"
paths = ["/ok"]
upstream = "m-up"
filters = ["m-boom", "m-tag"]

[[routes]]
name = "m-dead"
paths = ["/dead"]
upstream = "m-dead"

[[routes]]
name = "m-deny"
paths = ["/deny"]
upstream = "m-up"
filters = ["m-tag", "m-no"]
"""


async def test_known_traffic_gives_exact_counts(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    dead = free_port()
    toml = gateway_toml({"m-up": [upstream.address]}, TRAFFIC.format(dead=dead))
    gw = await start_gateway(toml)
    before = scrape()
    sent: dict[str, int] = {}  # route -> response body bytes the client got

    async def call(method: str, path: str, route: str, status: int, body: bytes = b"") -> None:
        async with http.request(method, gw.url + path, data=body or None) as r:
            got = await r.read()
            assert r.status == status
        sent[route] = sent.get(route, 0) + len(got)

    await call("GET", "/ok", "m-ok", 200)
    await call("GET", "/ok", "m-ok", 200)
    await call("POST", "/ok", "m-ok", 200, b"x" * 1000)
    await call("GET", "/none", "", 404)
    await call("GET", "/nothing/here", "", 404)
    await call("GET", "/dead", "m-dead", 502)
    await call("GET", "/deny", "m-deny", 401)
    # Counting ends after the reply (and on_log later still): wait for the last of it.
    tag_log = {"filter": "m-tag", "plugin": "tag", "phase": "log"}
    await until(lambda: delta(before, scrape(), "wasmgate_plugin_calls_total", **tag_log) == 4)
    after = scrape()

    def d(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    requests = "wasmgate_requests_total"
    assert d(requests, route="m-ok", upstream="m-up", code_class="2xx") == 3
    assert d(requests, route="", upstream="", code_class="4xx") == 2
    assert d(requests, route="m-dead", upstream="m-dead", code_class="5xx") == 1
    assert d(requests, route="m-deny", upstream="", code_class="4xx") == 1  # a local reply
    assert d("wasmgate_request_duration_seconds_count", route="m-ok") == 3
    assert d("wasmgate_request_duration_seconds_bucket", route="m-ok", le="+Inf") == 3
    assert d("wasmgate_request_duration_seconds_count", route="") == 2
    assert d("wasmgate_upstream_duration_seconds_count", upstream="m-up") == 3
    assert d("wasmgate_upstream_duration_seconds_count", upstream="m-dead") == 0  # no connect
    assert d("wasmgate_request_bytes_total", route="m-ok") == 1000
    for route in ("m-ok", "", "m-dead", "m-deny"):
        assert d("wasmgate_response_bytes_total", route=route) == sent[route], route

    # A filter that raises and fails open is skipped, and counted, on every request.
    calls = "wasmgate_plugin_calls_total"
    for phase in ("request", "response", "log"):
        assert d(calls, filter="m-boom", plugin="boom", phase=phase) == 3, phase
    assert d("wasmgate_plugin_errors_total", filter="m-boom", plugin="boom") == 3
    assert d("wasmgate_plugin_duration_seconds_count", filter="m-boom") == 9
    # m-tag: 3 on m-ok, 1 on m-deny (its response phase sees the 401)
    assert d(calls, filter="m-tag", plugin="tag", phase="request") == 4
    assert d(calls, filter="m-tag", plugin="tag", phase="response") == 4
    assert d(calls, filter="m-no", plugin="deny", phase="request") == 1
    assert d("wasmgate_plugin_errors_total", filter="m-tag", plugin="tag") == 0

    # One failure ejects the dead endpoint (max_failures = 1); the live one stays in.
    dead_ep = {"upstream": "m-dead", "endpoint": f"127.0.0.1:{dead}"}
    assert value(after, "wasmgate_upstream_endpoint_healthy", **dead_ep) == 0
    assert d("wasmgate_upstream_endpoint_ejections_total", **dead_ep) == 1
    live_ep = {"upstream": "m-up", "endpoint": upstream.address}
    assert value(after, "wasmgate_upstream_endpoint_healthy", **live_ep) == 1
    assert value(after, "wasmgate_upstream_endpoint_ejections_total", **live_ep) == 0


async def test_a_wasm_trap_and_the_rebuild_are_counted(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_wasm(
        start_gateway, tmp_path, "trap.wat", {"v1": [upstream.address]}, name="m-trap"
    )
    for headers, status in [({}, 200), ({"x-trap": "1"}, 500), ({}, 200), ({}, 200)]:
        async with http.get(gw.url + "/t", headers=headers) as r:
            assert r.status == status
    samples = scrape()
    assert value(samples, "wasmgate_wasm_traps_total", filter="m-trap") == 1
    assert value(samples, "wasmgate_wasm_instance_rebuilds_total", filter="m-trap") == 1


def worker_file(directory: Path, pid: int, *, age: float, requests: int) -> None:
    """A worker's file as core.metrics writes it: this process's state, reshaped."""
    state = metrics.snapshot_state()
    state.update(pid=pid, written_at=time.time() - age, live=True)
    state.update(filters=[], wasm={}, ejections=[])
    codes = [0, 0, requests, 0, 0, 0]
    bucket = [0] * (len(metrics.LATENCY_BOUNDS) + 1)
    bucket[0] = requests
    state["requests"] = [
        {
            "route": "m-files",
            "upstream": "u",
            "codes": codes,
            "bytes_in": 10 * requests,
            "bytes_out": 0,
            "latency": bucket,
            "latency_sum": 0.0001 * requests,
            "upstream_latency": bucket,
            "upstream_latency_sum": 0.0,
        }
    ]
    state["gauges"] = {
        "active_connections": 2,
        "config_version": 7,
        "config_hash": f"h{pid}",
        "endpoints": [["u", "10.0.0.1:80", 1]],
        "certificates": {},
    }
    (directory / f"metrics-{pid}.json").write_text(json.dumps(state))


def test_files_are_summed_and_gauges_come_from_live_processes_only(tmp_path: Path) -> None:
    # Live: fresh and its process exists (this test's own pid). Not live: a file from
    # 10 s ago, and a fresh one whose process is gone (a pid far above pid_max).
    worker_file(tmp_path, os.getpid(), age=0.5, requests=3)
    worker_file(tmp_path, 4_999_999, age=0.5, requests=5)
    worker_file(tmp_path, os.getppid(), age=10, requests=7)
    (tmp_path / "metrics-junk.json").write_text("{not json")
    samples = scrape(tmp_path, local=False)
    assert (
        value(samples, "wasmgate_requests_total", route="m-files", upstream="u", code_class="2xx")
        == 15
    )
    assert value(samples, "wasmgate_request_bytes_total", route="m-files") == 150
    assert (
        value(samples, "wasmgate_request_duration_seconds_bucket", route="m-files", le="0.0005")
        == 15
    )
    assert value(samples, "wasmgate_active_connections") == 2
    assert value(samples, "wasmgate_config_version") == 7
    hashes = [dict(k[1])["config_hash"] for k in samples if k[0] == "wasmgate_config_info"]
    assert hashes == [f"h{os.getpid()}"]


ADMIN_TOKEN = "metrics-test-token-0123"
WORKERS = """
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[admin]
listen = "127.0.0.1:{admin}"
token = "{token}"

[[upstreams]]
name = "m-w"
endpoints = ["{upstream}"]

[[routes]]
name = "m-w"
upstream = "m-w"
"""


async def test_two_workers_are_summed_across_a_reload_and_a_lost_worker(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    port, admin = free_port(), free_port()
    runtime = tmp_path / "runtime"
    toml = WORKERS.format(port=port, admin=admin, token=ADMIN_TOKEN, upstream=upstream.address)
    gw = GatewayProcess(toml, workdir=str(tmp_path))
    gw.start(port, "--workers", "2", env={metrics.ENV: str(runtime)})
    total = {"route": "m-w", "upstream": "m-w", "code_class": "2xx"}

    def in_files(name: str, **labels: str) -> float:
        """What the workers' files say (the test process adds nothing of its own)."""
        return value(scrape(runtime, local=False), name, **labels)

    try:
        async with aiohttp.ClientSession() as http:

            async def admin_scrape() -> Samples:
                async with http.get(f"http://127.0.0.1:{admin}/metrics") as r:
                    assert r.status == 200
                    assert r.headers["Content-Type"] == metrics.CONTENT_TYPE
                    return parse(await r.read())

            await until(lambda: len(list(runtime.glob("metrics-*.json"))) == 2)
            for _ in range(20):
                # A new connection each time, so the kernel spreads them over the workers.
                async with http.get(gw.url + "/", headers={"Connection": "close"}) as r:
                    assert r.status == 200
            # Each worker's file is at most a second old; the admin worker adds its own.
            await until(lambda: in_files("wasmgate_requests_total", **total) == 20)
            samples = await admin_scrape()
            assert value(samples, "wasmgate_requests_total", **total) == 20
            endpoint = {"upstream": "m-w", "endpoint": upstream.address}
            assert value(samples, "wasmgate_upstream_endpoint_healthy", **endpoint) == 1
            assert value(samples, "wasmgate_config_version") == 1

            async with http.post(
                f"http://127.0.0.1:{admin}/reload",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as r:
                assert r.status == 200, await r.text()  # both workers reload
            await until(lambda: in_files("wasmgate_reloads_total", result="success") == 2)
            samples = scrape(runtime, local=False)
            assert value(samples, "wasmgate_config_version") == 2
            assert value(samples, "wasmgate_reloads_total", result="failure") == 0

            # A worker that dies leaves its file: the total does not go backwards.
            assert gw.proc is not None
            worker = int(sorted(runtime.glob("metrics-*.json"))[0].stem.split("-")[1])
            os.kill(worker, signal.SIGKILL)
            await until(lambda: len(list(runtime.glob("metrics-*.json"))) == 3)
            assert in_files("wasmgate_requests_total", **total) == 20
    finally:
        code = await asyncio.to_thread(gw.terminate)
    assert code == 0, gw.log()
    # Everything stopped: the counters stay, the gauges are gone with the processes.
    samples = scrape(runtime, local=False)
    assert value(samples, "wasmgate_requests_total", **total) == 20
    assert value(samples, "wasmgate_active_connections") == 0
    assert not [k for k in samples if k[0] == "wasmgate_upstream_endpoint_healthy"]
