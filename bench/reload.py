"""Reloads under load: wasmgate keeps serving while its configuration changes.

    .venv/bin/python bench/reload.py [--duration 20] [--reloads 20]      (part of make bench)

One wasmgate (1 worker, pinned to CPU 0) proxies to an nginx upstream (CPU 1), and wrk
(CPU 1, ``-t1 -c50``, keep-alive) loads it twice for ``--duration`` seconds: once with
a steady configuration, and once while the configuration file is rewritten
``--reloads`` times at even intervals, each followed by SIGHUP. The versions alternate
what a reload can change: a route added and removed, a filter's config (the response
header the ``headers`` filter sets), and the upstream's load-balancing settings. It
reports requests, errors (wrk's socket errors plus non-2xx answers) and p50/p99 latency
for both runs, and the number of reloads the gateway logged. Results go to
``bench/results/reload-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # bench/run.py: tools, nginx, wrk, parsing

RESULTS = bench.RESULTS


def config(version: int, port: int, upstream_port: int) -> str:
    extra = (
        f'[[routes]]\nname = "extra{version}"\npaths = ["/extra"]\nupstream = "up"\n'
        if version % 2
        else ""
    )
    balance = "least_request" if version % 3 == 1 else "round_robin"
    return f"""[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[[upstreams]]
name = "up"
endpoints = ["127.0.0.1:{upstream_port}"]
keepalive = 64
balance = "{balance}"

[filters.stamp]
plugin = "headers"
config = {{ response = {{ set = {{ x-config = "{version}" }} }} }}

[[routes]]
name = "api"
paths = ["/"]
upstream = "up"
filters = ["stamp"]

{extra}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run (20)")
    parser.add_argument("--reloads", type=int, default=20, help="reloads in the second run (20)")
    args = parser.parse_args(argv)
    nginx, wrk = bench.ensure_tools()
    with tempfile.TemporaryDirectory(prefix="wasmgate-reload-bench-") as tmp_name:
        tmp = Path(tmp_name)
        services = bench.Services(tmp)
        try:
            nginx_v = bench.tool_output_all([nginx, "-v"])
            up_port = bench.free_port()
            upstream = bench.start_nginx(
                services, nginx, "upstream", bench.upstream_conf(tmp, up_port, nginx_v), up_port, 1
            )
            bench.wait_ready(upstream)
            port = bench.free_port()
            conf = tmp / "gateway.toml"
            conf.write_text(config(0, port, up_port))
            cmd = [str(bench.WASMGATE), "--log-level", "info", "run", "-c", str(conf)]
            gateway = services.start("wasmgate", port, 0, cmd)
            bench.wait_ready(gateway)
            load = bench.Load(wrk, 1, 1, 50)
            url = f"http://127.0.0.1:{port}/api/hello"
            bench.run_wrk(load, url, 2.0)  # warm-up
            steady = bench.run_wrk(load, url, args.duration)

            def reloads() -> None:
                gap = args.duration / (args.reloads + 1)
                for version in range(1, args.reloads + 1):
                    time.sleep(gap)
                    conf.write_text(config(version, port, up_port))
                    gateway.proc.send_signal(signal.SIGHUP)

            thread = threading.Thread(target=reloads, daemon=True)
            thread.start()
            during = bench.run_wrk(load, url, args.duration)
            thread.join()
            time.sleep(0.5)
            logged = gateway.log_path.read_text().count("reloaded (SIGHUP)")
        finally:
            services.stop_all()
    report: dict[str, Any] = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": args.duration,
        "reloads_requested": args.reloads,
        "reloads_logged": logged,
        "steady": _figures(steady),
        "during_reloads": _figures(during),
    }
    print(f"{'run':16} {'requests':>10} {'errors':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("steady", "during_reloads"):
        f = report[name]
        print(
            f"{name:16} {f['requests']:>10} {f['errors']:>7} {f['rps']:>9.0f} "
            f"{f['p50_ms']:>8.2f} {f['p99_ms']:>8.2f}"
        )
    print(f"reloads: {logged} of {args.reloads} applied")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"reload-{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out.relative_to(bench.ROOT)}")
    ok = during.errors == 0 and steady.errors == 0 and logged == args.reloads
    return 0 if ok else 1


def _figures(result: bench.WrkResult) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "errors": result.errors,
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
    }


if __name__ == "__main__":
    sys.exit(main())
