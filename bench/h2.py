"""HTTP/2 benchmarks with h2load: wasmgate against nginx (``http2``), and gRPC unary calls.

Starts, on 127.0.0.1 and free ports (the processes and helpers of bench/run.py):

* a fast upstream: nginx, 1 worker, ``return 200 "hello\\n"`` over HTTP/1.1;
* nginx as an HTTPS reverse proxy with HTTP/2 to clients (1 worker, keep-alive pool of
  ``KEEPALIVE`` idle connections, as wasmgate's);
* wasmgate, 1 worker, HTTPS with h2 by ALPN, to the same upstream;
* a grpcio server (Python, raw-bytes unary echo) and wasmgate on h2c in front of it
  (``protocol = "h2c"`` upstream).

The proxies are pinned to one CPU, h2load and the upstreams to another. h2load runs
``-c 10 -m 10`` (100 concurrent streams over 10 connections) against each proxy in
turn for ``--duration`` seconds per round, and reports req/s (median over rounds) and
the ratio wasmgate/nginx (target: >= 0.25), and each proxy's CPU time per request (from
/proc, over the measured run), the figure a busy machine disturbs least. For gRPC it
posts one framed message per call with h2load, through the gateway and directly to the
grpcio server, and reports calls/s of each. Results go to
``bench/results/h2-<UTC timestamp>.json`` and ``h2-latest.json``.

Run with ``make bench`` (after bench/run.py) or ``.venv/bin/python bench/h2.py --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from run import (
    RESULTS,
    ROOT,
    WASMGATE,
    BenchError,
    CertFiles,
    Services,
    apt_install,
    find_tool,
    free_port,
    log,
    nginx_common,
    process_cpu_seconds,
    start_nginx,
    tool_output,
    tool_output_all,
    upstream_conf,
    wait_ready,
)
from testcert import write_self_signed

TARGET_RATIO = 0.25
# Idle upstream connections each proxy keeps: more than the 100 streams in flight, so
# that neither opens and closes upstream connections all the time (with 64, a sixth
# of wasmgate's requests opened one).
KEEPALIVE = 128
PY = ROOT / ".venv" / "bin" / "python"
GRPC_SERVER = """
import sys, time
from concurrent import futures
import grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
handler = grpc.method_handlers_generic_handler(
    "bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)})
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
server.wait_for_termination()
"""


def nginx_h2_conf(tmp: Path, port: int, up_port: int, nginx_v: str, tls: CertFiles) -> str:
    head, temp_paths = nginx_common(tmp, "proxy-h2", nginx_v)
    version = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", nginx_v)
    modern = version is not None and tuple(map(int, version.groups())) >= (1, 25, 1)
    listen = f"listen 127.0.0.1:{port} ssl backlog=4096;" + (" http2 on;" if modern else "")
    if not modern:
        listen = f"listen 127.0.0.1:{port} ssl http2 backlog=4096;"
    return f"""{head}
http {{
    {temp_paths}
    access_log off;
    keepalive_requests 10000000;
    http2_max_requests 10000000;
    upstream backend {{
        server 127.0.0.1:{up_port};
        keepalive {KEEPALIVE};
    }}
    server {{
        {listen}
        ssl_certificate {tls.cert};
        ssl_certificate_key {tls.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def gateway_toml(tls_port: int, grpc_port: int, up_port: int, grpc_up: int, tls: CertFiles) -> str:
    return f"""[server]
listen = ["127.0.0.1:{grpc_port}"]
tls_listen = ["127.0.0.1:{tls_port}"]
access_log = "off"

[server.limits]
drain_timeout = 1

[[upstreams]]
name = "up"
endpoints = ["127.0.0.1:{up_port}"]
keepalive = {KEEPALIVE}

[[upstreams]]
name = "grpc"
endpoints = ["127.0.0.1:{grpc_up}"]
protocol = "h2c"

[[routes]]
name = "grpc"
paths = ["/bench.Echo/"]
upstream = "grpc"

[default]
upstream = "up"

[[certificates]]
hosts = []
cert = "{tls.cert}"
key = "{tls.key}"
"""


@dataclass
class Run:
    rps: float
    requests: int  # succeeded
    cpu_us: float  # CPU time of the proxy per succeeded request, microseconds


def group_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live children (an nginx master and its worker)."""
    total = process_cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        total += sum(group_cpu_seconds(int(child)) for child in children)
    return total


def h2load(
    h2load_bin: str, cpu: int, url: str, seconds: float, extra: Sequence[str], pid: int
) -> Run:
    """req/s h2load reports for ``url`` (-c 10 -m 10 for ``seconds``, after a 1 s warm-up
    run of its own), and the CPU time process ``pid`` spent per request meanwhile."""
    cmd = ["taskset", "-c", str(cpu), h2load_bin, "-c", "10", "-m", "10", "-t", "1", *extra]
    subprocess.run([*cmd, "-D", "1", url], capture_output=True, check=False, timeout=60)
    before = group_cpu_seconds(pid)
    proc = subprocess.run(
        [*cmd, "-D", f"{seconds:g}", url],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    used = group_cpu_seconds(pid) - before
    found = re.search(r"finished in [^,]+, ([\d.]+) req/s", proc.stdout)
    succeeded = re.search(r"(\d+) succeeded", proc.stdout)
    failed = re.search(r"(\d+) failed", proc.stdout)
    if found is None or succeeded is None:
        raise BenchError(f"h2load {url}: no result:\n{proc.stdout[-1500:]}{proc.stderr[-500:]}")
    if failed and int(failed[1]) and float(found[1]) == 0:
        raise BenchError(f"h2load {url}: every request failed:\n{proc.stdout[-1500:]}")
    done = int(succeeded[1])
    return Run(float(found[1]), done, used / done * 1e6 if done else 0.0)


def ensure_tools() -> tuple[str, str]:
    missing = [
        p for p, tool in (("nginx", "nginx"), ("nghttp2-client", "h2load")) if not find_tool(tool)
    ]
    if missing:
        apt_install(missing)
    nginx, h2 = find_tool("nginx"), find_tool("h2load")
    if nginx is None or h2 is None or find_tool("taskset") is None:
        raise BenchError("nginx, h2load (nghttp2-client) and taskset (util-linux) are needed")
    if not WASMGATE.exists():
        raise BenchError(f"{WASMGATE} not found; run `make install` first")
    return nginx, h2


def bench(args: argparse.Namespace) -> dict[str, object]:
    nginx, h2load_bin = ensure_tools()
    proxy_cpu, load_cpu = args.proxy_cpu, args.load_cpu
    with tempfile.TemporaryDirectory(prefix="wasmgate-h2bench-") as tmp_name:
        tmp = Path(tmp_name)
        services = Services(tmp)
        try:
            nginx_v = tool_output_all([nginx, "-V"])
            cert = CertFiles(*write_self_signed(tmp))
            up_port = free_port()
            upstream = start_nginx(
                services, nginx, "upstream", upstream_conf(tmp, up_port, nginx_v), up_port, load_cpu
            )
            wait_ready(upstream)
            n_port = free_port()
            conf = nginx_h2_conf(tmp, n_port, up_port, nginx_v, cert)
            proxy = start_nginx(services, nginx, "proxy-h2", conf, n_port, proxy_cpu, cert)
            wait_ready(proxy)
            grpc_up = free_port()
            script = tmp / "grpc_server.py"
            script.write_text(GRPC_SERVER)
            grpc_server = services.start(
                "grpc", grpc_up, load_cpu, [str(PY), str(script), str(grpc_up)]
            )
            tls_port, grpc_port = free_port(), free_port()
            gw_conf = tmp / "gateway.toml"
            gw_conf.write_text(gateway_toml(tls_port, grpc_port, up_port, grpc_up, cert))
            cmd = [str(WASMGATE), "--log-level", "warning", "run", "-c", str(gw_conf)]
            gateway = services.start("wasmgate-h2", tls_port, proxy_cpu, cmd, cert)
            wait_ready(gateway)
            urls = {
                "nginx-h2": f"https://127.0.0.1:{n_port}/",
                "wasmgate-h2": f"https://127.0.0.1:{tls_port}/",
            }
            body = tmp / "grpc.bin"
            body.write_bytes(b"\0\0\0\0\x05hello")
            grpc_args = ["-d", str(body), "-H", "content-type: application/grpc"]
            grpc_args += ["-H", "te: trailers"]
            grpc_urls = {
                "grpc-direct": f"http://127.0.0.1:{grpc_up}/bench.Echo/Unary",
                "grpc-via-wasmgate": f"http://127.0.0.1:{grpc_port}/bench.Echo/Unary",
            }
            pids = {
                "nginx-h2": proxy.proc.pid,
                "wasmgate-h2": gateway.proc.pid,
                "grpc-direct": grpc_server.proc.pid,
                "grpc-via-wasmgate": gateway.proc.pid,
            }
            runs: dict[str, list[Run]] = {name: [] for name in [*urls, *grpc_urls]}
            for i in range(args.rounds):
                for name, url in [*urls.items(), *grpc_urls.items()]:
                    extra = grpc_args if name in grpc_urls else []
                    run = h2load(h2load_bin, load_cpu, url, args.duration, extra, pids[name])
                    runs[name].append(run)
                    unit = "calls/s" if name in grpc_urls else "req/s"
                    log(
                        f"round {i + 1}: {name:<18} {run.rps:>10.0f} {unit:<7}"
                        f" {run.cpu_us:>7.1f} CPU us/request"
                    )
        finally:
            services.stop_all()
    median = {name: statistics.median(r.rps for r in values) for name, values in runs.items()}
    cpu = {name: statistics.median(r.cpu_us for r in values) for name, values in runs.items()}
    ratio = median["wasmgate-h2"] / median["nginx-h2"] if median["nginx-h2"] else 0.0
    grpc_ratio = median["grpc-via-wasmgate"] / median["grpc-direct"] if median["grpc-direct"] else 0
    per_round = [
        w.rps / n.rps if n.rps else 0.0
        for w, n in zip(runs["wasmgate-h2"], runs["nginx-h2"], strict=True)
    ]
    log("")
    for name, value in median.items():
        log(
            f"{name:<20} {value:>10.0f} /s (median of {args.rounds})"
            f"  {cpu[name]:>7.1f} CPU us/request"
        )
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    rounds = ", ".join(f"{r:.2f}" for r in per_round)
    log(f"wasmgate-h2 / nginx-h2 = {ratio:.2f} ({verdict} the {TARGET_RATIO} target)")
    log(f"  per round: {rounds}")
    if cpu["wasmgate-h2"]:
        log(f"CPU per request, nginx-h2 / wasmgate-h2 = {cpu['nginx-h2'] / cpu['wasmgate-h2']:.2f}")
    log(f"gRPC unary through wasmgate / direct = {grpc_ratio:.2f}")
    return {
        "settings": {**vars(args), "h2load": tool_output([h2load_bin, "--version"])},
        "median": median,
        "cpu_us_per_request": cpu,
        "runs": {name: [r.rps for r in values] for name, values in runs.items()},
        "cpu_us_per_request_runs": {
            name: [round(r.cpu_us, 1) for r in values] for name, values in runs.items()
        },
        "ratio": ratio,
        "ratio_per_round": per_round,
        "target_ratio": TARGET_RATIO,
        "grpc_ratio": grpc_ratio,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target (default 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--proxy-cpu", type=int, default=0, help="CPU of the proxies")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU of h2load and upstreams")
    args = parser.parse_args(argv)
    try:
        report = bench(args)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    revision = tool_output(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    report["machine"] = {"date": stamp, "git": revision, "loadavg": os.getloadavg()}
    text = json.dumps(report, indent=2) + "\n"
    for out in (RESULTS / f"h2-{stamp}.json", RESULTS / "h2-latest.json"):
        out.write_text(text)
        log(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
