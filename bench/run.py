"""Benchmark wasmgate against nginx as a reverse proxy, with wrk.

Starts, on 127.0.0.1 and free ephemeral ports:

* a fast upstream: nginx, 1 worker, ``return 200 "hello\\n"``;
* nginx as a reverse proxy to it (1 worker, ``keepalive 64`` upstream pool);
* wasmgate, 1 worker, default event loop (uvloop);
* wasmgate-pure: the same on pure Python (``WASMGATE_COMPILED=0``); every other wasmgate
  target runs as installed: the mypyc-compiled data path when `make install` could build
  it (core/compiled.py), and the summary says which path each target ran;
* wasmgate, 1 worker, ``--loop asyncio``;
* wasmgate, 1 worker, with the filter chain canary + cors + rewrite + headers (the
  chain must keep 90 % of the no-filter req/s);
* wasmgate, 1 worker, with the as-headers Proxy-Wasm filter (AssemblyScript);
* wasmgate, 1 worker, with the go-headers Proxy-Wasm filter (proxy-wasm-go-sdk, Go >= 1.24);
* wasmgate-ratelimit and wasmgate-redis-ratelimit: wasmgate with the rate-limit filter,
  ``policy = "local"`` and ``policy = "redis"`` (a redis-server started for the run), a
  limit never reached; the Redis policy must keep 70 % of the local one's req/s
  (bench/ratelimit.py);
* nginx-https and wasmgate-https: the nginx proxy and wasmgate (uvloop) again, each
  serving HTTPS (a throwaway EC P-256 self-signed certificate, TLS 1.2+ defaults) to the
  same plain upstream. Their req/s divided by their plain twin's is the share of
  throughput each keeps when it terminates TLS on keep-alive connections.

The proxies under test are pinned to one CPU and wrk plus the upstream to another, and
wrk runs against each proxy in turn (interleaved rounds, each run preceded by a short
warm-up). It prints a table of medians and writes every figure to
``bench/results/<UTC timestamp>.json`` and ``bench/results/latest.json``, and a chart of
req/s and p99 per target (bench/chart.py) to ``<UTC timestamp>.png`` and ``latest.png``.

Run with ``make bench`` or ``.venv/bin/python bench/run.py --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import ratelimit
from compare import last_result, load_figures
from compare import report as report_change
from testcert import write_self_signed

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WASMGATE = ROOT / ".venv" / "bin" / "wasmgate"
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
TARGET_RATIO = 0.35  # wasmgate must reach this share of nginx's req/s (issue 16; was 0.25)
BASELINE = "nginx"
# Also the order of the runs in a round: each HTTPS target right after its plain twin, so
# that the two runs whose req/s are divided are seconds apart.
TARGETS = (
    "nginx",
    "nginx-https",
    "wasmgate",
    "wasmgate-https",
    "wasmgate-pure",
    "wasmgate-asyncio",
    "wasmgate-chain",
    "wasmgate-chain-pure",
    "wasmgate-wasm",
    "wasmgate-wasm-go",
    *ratelimit.TARGETS,
)
# wasmgate and wasmgate-chain on pure Python (WASMGATE_COMPILED=0), the fallback when the
# compiled build is missing or stale; the chain's twin runs only when named in --targets.
PURE_TARGETS = ("wasmgate-pure", "wasmgate-chain-pure")
OPT_IN_TARGETS = ("wasmgate-chain-pure",)
# Each HTTPS target is the plain target it is divided by, plus a TLS listener.
HTTPS_TWINS = {"nginx": "nginx-https", "wasmgate": "wasmgate-https"}
WASM_BUDGET_US = 60.0  # added CPU per request allowed for one Proxy-Wasm header filter
WASM_FILTER = ROOT / "plugins" / "wasm" / "as-headers" / "build" / "filter.wasm"
GO_WASM_FILTER = ROOT / "plugins" / "wasm" / "go-headers" / "build" / "filter.wasm"
# The header-only Proxy-Wasm targets, their filter, and the config they run with.
WASM_TARGETS = {
    "wasmgate-wasm": ("as-headers", WASM_FILTER, ""),
    "wasmgate-wasm-go": (
        "go-headers",
        GO_WASM_FILTER,
        'config = { request_add = { "x-gateway" = "wasmgate" }, '
        'response_add = { "x-filtered" = "go" } }',
    ),
}
WASM_KEPT_RATIO = 0.60  # one header-only Proxy-Wasm filter keeps this share of no-filter req/s
CHAIN_RATIO = 0.90  # the chain canary+cors+rewrite+headers keeps this share of no-filter req/s
# Every target is asked for this path: the chain's rewrite strips /api from it.
BENCH_PATH = "/api/hello"
EXIT_RUN_ERRORS = 3
NOISY_SPREAD = 0.25  # (max - min) / median of req/s over rounds
BUSY_LOAD = 0.5  # 1-minute load average above which the machine is not idle


class BenchError(Exception):
    """A failure that ends the benchmark with a one-line message."""


class Interrupted(Exception):
    """SIGTERM / SIGHUP received; unwinds so every process gets cleaned up."""


# ---------------------------------------------------------------------------- tools


def log(message: str) -> None:
    print(message, flush=True)


def find_tool(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def nginx_package() -> str:
    """``nginx-light`` where the distribution still has it (Debian <= 12), else ``nginx``."""
    probe = subprocess.run(
        ["apt-cache", "show", "nginx-light"], capture_output=True, text=True, check=False
    )
    return "nginx-light" if probe.returncode == 0 and probe.stdout.strip() else "nginx"


def apt_install(packages: Sequence[str]) -> None:
    if os.geteuid() != 0:
        raise BenchError(f"need root to install {' '.join(packages)}; install them and rerun")
    if shutil.which("apt-get") is None:
        raise BenchError(f"no apt-get here; install {' '.join(packages)} by hand and rerun")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [["apt-get", "update"], ["apt-get", "install", "-y", *packages]]
    for cmd in steps:
        log(f"+ {' '.join(cmd)}")
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise BenchError(f"`{' '.join(cmd)}` failed; install {' '.join(packages)} by hand")


def ensure_tools() -> tuple[str, str]:
    """Paths of nginx and wrk, installing whichever is missing from Debian's packages."""
    missing = [name for name in ("nginx", "wrk") if find_tool(name) is None]
    if missing:
        packages = [nginx_package() if name == "nginx" else name for name in missing]
        log(f"{' and '.join(missing)} not found: installing {' '.join(packages)} with apt-get")
        apt_install(packages)
    if find_tool("taskset") is None:
        raise BenchError("taskset not found (package util-linux); it pins processes to CPUs")
    if not WASMGATE.exists():
        raise BenchError(f"{WASMGATE} not found; run `make install` first")
    nginx, wrk = find_tool("nginx"), find_tool("wrk")
    if nginx is None or wrk is None:
        raise BenchError("nginx or wrk still not on PATH after installing them")
    return nginx, wrk


def tool_output(cmd: Sequence[str]) -> str:
    """First line a ``--version``-like command prints (on stdout or stderr)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def tool_output_all(cmd: Sequence[str]) -> str:
    """Everything a command prints, stdout then stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------- configs


def nginx_common(tmp: Path, name: str, nginx_v: str) -> tuple[str, str]:
    """The main-context head and the http-context temp paths, all inside ``tmp``."""
    head = (
        "worker_processes 1;\n"
        "daemon off;\n"
        f"pid {tmp / (name + '.pid')};\n"
        f"error_log {tmp / (name + '.error.log')} warn;\n"
        "events { worker_connections 4096; }\n"
    )
    temp_paths = [f"client_body_temp_path {tmp / (name + '-body')};"]
    for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in nginx_v:
            temp_paths.append(f"{module}_temp_path {tmp / (name + '-' + module)};")
    return head, "\n    ".join(temp_paths)


def upstream_conf(tmp: Path, port: int, nginx_v: str) -> str:
    head, temp_paths = nginx_common(tmp, "upstream", nginx_v)
    return f"""{head}
http {{
    {temp_paths}
    access_log off;
    default_type text/plain;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "hello\\n"; }}
    }}
}}
"""


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def proxy_conf(
    tmp: Path, port: int, upstream_port: int, nginx_v: str, tls: CertFiles | None = None
) -> str:
    """nginx as the reverse proxy; with ``tls``, its listener speaks HTTPS (TLS 1.2/1.3)."""
    head, temp_paths = nginx_common(tmp, "proxy-https" if tls else "proxy", nginx_v)
    listen = f"listen 127.0.0.1:{port} backlog=4096;"
    if tls:
        listen = (
            f"listen 127.0.0.1:{port} ssl backlog=4096;\n"
            f"        ssl_certificate {tls.cert};\n"
            f"        ssl_certificate_key {tls.key};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;"
        )
    return f"""{head}
http {{
    {temp_paths}
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        {listen}
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


WASM_TOML = """filters = ["{name}"]

[filters.{name}]
wasm = "{path}"
{config}
"""


def gateway_toml(
    port: int,
    upstream_port: int,
    *,
    chain: bool = False,
    wasm: str = "",
    tls_port: int | None = None,
    tls: CertFiles | None = None,
    extra: str = "",
) -> str:
    tls_listen = f'tls_listen = ["127.0.0.1:{tls_port}"]\n' if tls_port else ""
    base = f"""[server]
listen = ["127.0.0.1:{port}"]
{tls_listen}access_log = "off"

[server.limits]
drain_timeout = 1

[[upstreams]]
name = "up"
endpoints = ["127.0.0.1:{upstream_port}"]
keepalive = 64

[default]
upstream = "up"
"""
    if wasm:
        name, path, config = WASM_TARGETS[wasm]
        base += WASM_TOML.format(name=name, path=path, config=config)
    elif chain:
        base += CHAIN_TOML.format(upstream_port=upstream_port)
    base += extra
    # Last: the keys above belong to [default], which a [[certificates]] header would end.
    return base + TLS_TOML.format(cert=tls.cert, key=tls.key) if tls else base


# The default certificate (no hosts) for every TLS listener.
TLS_TOML = """
[[certificates]]
hosts = []
cert = "{cert}"
key = "{key}"
"""


# The chain the issue names: canary + cors + rewrite + headers, configured as a real
# deployment would (a 10 % canary, an allowed origin, a prefix strip, a header each way).
CHAIN_TOML = """filters = ["canary", "cors", "rewrite", "headers"]

[[upstreams]]
name = "up-canary"
endpoints = ["127.0.0.1:{upstream_port}"]
keepalive = 64

[filters.canary]
config = {{ upstream = "up-canary", header = "x-canary", weight = 10 }}

[filters.cors]
config = {{ allow_origins = ["https://app.example.com"] }}

[filters.rewrite]
config = {{ strip_prefix = "/api" }}

[filters.headers]
config.request.set = {{ "X-Gateway" = "wasmgate" }}
config.response.set = {{ "X-Frame-Options" = "DENY" }}
"""


# ---------------------------------------------------------------------------- processes


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    tls: CertFiles | None = None  # serves HTTPS with this certificate
    tls_session: str = ""  # what a default client negotiated with it, e.g. "TLSv1.3 TLS_AES_..."
    data_path: str = ""  # wasmgate's: "compiled (14 modules ...)" or "pure Python (why)"

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{BENCH_PATH}"


class Services:
    """Every process the benchmark starts; :meth:`stop_all` ends them, newest first."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Service] = []

    def start(
        self,
        name: str,
        port: int,
        cpu: int,
        cmd: Sequence[str],
        tls: CertFiles | None = None,
        env: dict[str, str] | None = None,
    ) -> Service:
        log_path = self.tmp / f"{name}.out"
        with log_path.open("wb") as out:
            # A session of its own: Ctrl-C in the terminal reaches only us, and we stop
            # the whole group (nginx master and worker) by its id.
            proc = subprocess.Popen(
                ["taskset", "-c", str(cpu), *cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        service = Service(name, port, proc, log_path, tls)
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        # A second Ctrl-C must not cut the clean-up short.
        held = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for service in reversed(self.started):
                stop_group(service.proc)
            self.started.clear()
        finally:
            for signum, handler in held.items():
                signal.signal(signum, handler)


def stop_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Also reap any worker left in the group after its master went away.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def client_context(tls: CertFiles) -> ssl.SSLContext:
    """A client context that trusts only the test certificate (and checks 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(tls.cert))


def http_get(port: int, tls: CertFiles | None = None, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=client_context(tls))
        if tls
        else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    )
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(service: Service, timeout: float = 20.0) -> None:
    """Wait until ``GET /`` through ``service`` answers 200 "hello"."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            break
        try:
            status, body = http_get(service.port, service.tls)
        except OSError as exc:
            last = str(exc)
        else:
            if status == 200 and body == b"hello\n":
                return
            last = f"HTTP {status} {body[:60]!r}"
        time.sleep(0.1)
    tail = service.log_path.read_text(errors="replace")[-2000:]
    raise BenchError(f"{service.name} on port {service.port} not ready ({last}); log:\n{tail}")


def tls_session(service: Service) -> str:
    """The protocol and cipher a default client negotiates with ``service``, for the record."""
    if service.tls is None:
        return ""
    ctx = client_context(service.tls)
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=2.0) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        cipher = conn.cipher()
        return f"{conn.version()} {cipher[0] if cipher else '?'}"


def start_nginx(
    services: Services,
    nginx: str,
    name: str,
    conf_text: str,
    port: int,
    cpu: int,
    tls: CertFiles | None = None,
) -> Service:
    conf = services.tmp / f"{name}.conf"
    conf.write_text(conf_text)
    cmd = [nginx, "-p", str(services.tmp), "-c", str(conf)]
    if "-e filename" in tool_output_all([nginx, "-h"]):
        cmd[1:1] = ["-e", str(services.tmp / f"{name}.startup.log")]
    check = subprocess.run([*cmd, "-t", "-q"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise BenchError(f"nginx rejects {conf}:\n{check.stderr.strip()}")
    return services.start(name, port, cpu, cmd, tls)


def start_wasmgate(
    services: Services,
    name: str,
    loop: str,
    upstream_port: int,
    cpu: int,
    *,
    chain: bool = False,
    wasm: str = "",
    tls: CertFiles | None = None,
    extra: str = "",
    pure: bool = False,
) -> Service:
    """wasmgate on a plain listener; with ``tls``, also on a TLS one, which is then measured.
    As installed (``WASMGATE_COMPILED=auto``), or on pure Python with ``pure``."""
    port = free_port()
    tls_port = free_port() if tls else None
    conf = services.tmp / f"{name}.toml"
    text = gateway_toml(
        port, upstream_port, chain=chain, wasm=wasm, tls_port=tls_port, tls=tls, extra=extra
    )
    conf.write_text(text)
    cmd = [str(WASMGATE), "--log-level", "warning", "run", "-c", str(conf), "--loop", loop]
    env = wasmgate_env(pure)
    path = data_path(env)
    service = services.start(name, tls_port or port, cpu, cmd, tls, env)
    service.data_path = path
    return service


def wasmgate_env(pure: bool) -> dict[str, str]:
    """This environment with WASMGATE_COMPILED=0 (pure) or unset (auto: as installed)."""
    env = {k: v for k, v in os.environ.items() if k != "WASMGATE_COMPILED"}
    if pure:
        env["WASMGATE_COMPILED"] = "0"
    return env


def data_path(env: dict[str, str]) -> str:
    """The data path a wasmgate started with ``env`` runs: core/compiled.py's own
    decision, taken by a Python that imports core as `wasmgate run` does."""
    probe = "from core import compiled; print(compiled.status().describe())"
    done = subprocess.run(
        [str(WASMGATE.with_name("python")), "-c", probe],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"wasmgate cannot start: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Pinning:
    proxy_cpu: int
    load_cpu: int


def start_target(
    services: Services,
    nginx: str,
    nginx_v: str,
    name: str,
    up_port: int,
    cpu: int,
    cert: CertFiles,
    redis_port: int | None = None,
) -> Service:
    tls = cert if name.endswith("-https") else None
    if name.startswith("nginx"):
        port = free_port()
        conf = proxy_conf(services.tmp, port, up_port, nginx_v, tls)
        return start_nginx(services, nginx, "proxy-https" if tls else "proxy", conf, port, cpu, tls)
    loop = "asyncio" if name == "wasmgate-asyncio" else "uvloop"
    chain, wasm = name.startswith("wasmgate-chain"), name if name in WASM_TARGETS else ""
    extra = ratelimit.toml(name, redis_port) if name in ratelimit.TARGETS else ""
    return start_wasmgate(
        services, name, loop, up_port, cpu, chain=chain, wasm=wasm, tls=tls, extra=extra,
        pure=name in PURE_TARGETS,
    )  # fmt: skip


def start_all(
    services: Services, nginx: str, pin: Pinning, targets: Sequence[str]
) -> dict[str, Service]:
    """The upstream, then the proxies under test; returns the proxies by name."""
    nginx_v = tool_output_all([nginx, "-V"])
    up_port = free_port()
    up_conf = upstream_conf(services.tmp, up_port, nginx_v)
    upstream = start_nginx(services, nginx, "upstream", up_conf, up_port, pin.load_cpu)
    wait_ready(upstream)
    cert = CertFiles(*write_self_signed(services.tmp))
    redis_port = None
    if ratelimit.REDIS in targets:
        redis_port = free_port()
        try:
            binary = ratelimit.redis_command(apt_install)
            args = ratelimit.redis_args(binary, redis_port)
            services.start("redis", redis_port, pin.load_cpu, args)
            ratelimit.wait_redis(redis_port)
        except RuntimeError as exc:
            raise BenchError(str(exc)) from None
        log(f"store     {'redis-server':<18}redis://127.0.0.1:{redis_port}  (cpu {pin.load_cpu})")
    proxies = {
        name: start_target(services, nginx, nginx_v, name, up_port, pin.proxy_cpu, cert, redis_port)
        for name in targets
    }
    for service in proxies.values():
        wait_ready(service)
        service.tls_session = tls_session(service)
    log(f"upstream  {'nginx':<18}{upstream.url}  (cpu {pin.load_cpu})")
    for name, service in proxies.items():
        line = f"proxy     {name:<24}{service.url}  (cpu {pin.proxy_cpu})  {service.tls_session}"
        log(line.rstrip())
        if service.data_path:
            log(f"          {'':<24}data path: {service.data_path}")
    return proxies


# ---------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    cpu_us_per_request: float = 0.0  # the proxy process's own CPU (user+system) per request

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Figures from ``wrk --latency`` output; raises BenchError when they are missing."""
    latency = {pct: to_ms(value, unit) for pct, value, unit in _LATENCY.findall(text)}
    rps, requests = _RPS.search(text), _REQUESTS.search(text)
    if rps is None or requests is None or set(latency) != {"50", "99"}:
        raise BenchError(f"cannot parse wrk output:\n{text}")
    result = WrkResult(float(rps[1]), latency["50"], latency["99"], int(requests[1]))
    if non_2xx := _NON_2XX.search(text):
        result.non_2xx_3xx = int(non_2xx[1])
    if sock := _SOCKET.search(text):
        names = ("connect", "read", "write", "timeout")
        result.socket_errors = {n: int(v) for n, v in zip(names, sock.groups(), strict=True)}
    return result


@dataclass(frozen=True)
class Load:
    wrk: str
    cpu: int
    threads: int
    connections: int


def run_wrk(load: Load, url: str, seconds: float) -> WrkResult:
    cmd = [
        "taskset", "-c", str(load.cpu), load.wrk, "--latency",
        "-t", str(load.threads), "-c", str(load.connections), "-d", f"{seconds:g}s", url,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    return parse_wrk(proc.stdout)


# ---------------------------------------------------------------------------- rounds


@dataclass
class Plan:
    rounds: int
    duration: float
    warmup: float


def check_alive(name: str, service: Service) -> None:
    if service.proc.poll() is not None:
        tail = service.log_path.read_text(errors="replace")[-2000:]
        raise BenchError(f"{name} exited ({service.proc.returncode}); log:\n{tail}")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / _CLOCK_TICKS


def measure(name: str, service: Service, load: Load, plan: Plan) -> WrkResult:
    if plan.warmup > 0:
        run_wrk(load, service.url, plan.warmup)
    before = process_cpu_seconds(service.proc.pid)
    result = run_wrk(load, service.url, plan.duration)
    used = process_cpu_seconds(service.proc.pid) - before
    if result.requests:
        result.cpu_us_per_request = used / result.requests * 1e6
    check_alive(name, service)
    return result


def describe(result: WrkResult) -> str:
    text = f"{result.rps:>10,.0f} req/s  p50 {result.p50_ms:.3f} ms  p99 {result.p99_ms:.3f} ms"
    if result.errors:
        text += f"  !!! ERRORS: non-2xx/3xx {result.non_2xx_3xx}, socket {result.socket_errors}"
    return text


def run_rounds(proxies: dict[str, Service], load: Load, plan: Plan) -> dict[str, list[WrkResult]]:
    runs: dict[str, list[WrkResult]] = {name: [] for name in proxies}
    for rnd in range(1, plan.rounds + 1):
        for name, service in proxies.items():
            result = measure(name, service, load, plan)
            runs[name].append(result)
            log(f"round {rnd}/{plan.rounds}: {name:<23} {describe(result)}")
    return runs


# ---------------------------------------------------------------------------- report


Summary = dict[str, dict[str, Any]]


def summarize(runs: dict[str, list[WrkResult]]) -> Summary:
    """Medians per target, the spread of req/s, and the ratio to nginx's median req/s."""
    summary: Summary = {}
    base_runs = runs.get(BASELINE)
    base = statistics.median(r.rps for r in base_runs) if base_runs else 0.0
    for name, results in runs.items():
        rps = [r.rps for r in results]
        median = statistics.median(rps)
        summary[name] = {
            "rps_median": round(median, 1),
            "rps_min": round(min(rps), 1),
            "rps_max": round(max(rps), 1),
            "rps_spread": round((max(rps) - min(rps)) / median, 4) if median else 0.0,
            "p50_ms_median": round(statistics.median(r.p50_ms for r in results), 4),
            "p99_ms_median": round(statistics.median(r.p99_ms for r in results), 4),
            # None when nginx was not among the --targets
            "ratio_vs_nginx": round(median / base, 4) if base else None,
            "ratio_vs_nginx_per_round": (
                [round(r.rps / b.rps, 4) for r, b in zip(results, base_runs, strict=True)]
                if base_runs
                else None
            ),
            "errors": sum(r.errors for r in results),
            "cpu_us_per_request_median": round(
                statistics.median(r.cpu_us_per_request for r in results), 2
            ),
        }
    return summary


def print_table(summary: Summary, plan: Plan) -> None:
    log("")
    log(f"medians over {plan.rounds} rounds of {plan.duration:g} s (spread = (max-min)/median):")
    log(
        f"{'target':<24}{'req/s':>10}{'spread':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'x nginx':>9}{'CPU us/req':>12}{'errors':>8}"
    )
    for name, row in summary.items():
        # nginx's CPU is in its worker, which /proc does not count for the master
        cpu = "-" if name.startswith("nginx") else f"{row['cpu_us_per_request_median']:.1f}"
        ratio = "-" if row["ratio_vs_nginx"] is None else f"{row['ratio_vs_nginx']:.3f}"
        log(
            f"{name:<24}{row['rps_median']:>10,.0f}{row['rps_spread']:>8.0%}"
            f"{row['p50_ms_median']:>9.3f}{row['p99_ms_median']:>9.3f}"
            f"{ratio:>9}{cpu:>12}{row['errors']:>8}"
        )


def verdicts(summary: Summary, runs: dict[str, list[WrkResult]]) -> dict[str, Any]:
    """Each goal and comparison whose targets were all measured (see --targets)."""
    verdict: dict[str, Any] = {}
    if {"nginx", "wasmgate"} <= summary.keys():
        ratio = float(summary["wasmgate"]["ratio_vs_nginx"])
        verdict |= {
            "target_ratio": TARGET_RATIO,
            "wasmgate_ratio": ratio,
            "target_met": ratio >= TARGET_RATIO,
        }
    if "wasmgate" in summary:
        verdict |= variant_verdicts(summary)
    return verdict | ratelimit.verdict(summary) | https_verdict(runs)


def variant_verdicts(summary: Summary) -> dict[str, Any]:
    """The asyncio loop, the filter chain and the wasm filter, each against plain wasmgate."""
    verdict: dict[str, Any] = {}
    uv = float(summary["wasmgate"]["rps_median"])
    if "wasmgate-asyncio" in summary:
        aio = float(summary["wasmgate-asyncio"]["rps_median"])
        verdict["uvloop_speedup_vs_asyncio"] = round(uv / aio, 4) if aio else 0.0
    if "wasmgate-chain" in summary:
        chained = float(summary["wasmgate-chain"]["rps_median"])
        kept = round(chained / uv, 4) if uv else 0.0
        verdict |= {
            "chain_target_ratio": CHAIN_RATIO,
            "chain_kept_ratio": kept,
            "chain_target_met": kept >= CHAIN_RATIO,
        }
    for name in WASM_TARGETS:
        if name in summary:
            verdict |= wasm_verdict(summary, name)
    return verdict | pure_verdict(summary)


def pure_verdict(summary: Summary) -> dict[str, Any]:
    """The pure-Python fallback (wasmgate-pure): the installed wasmgate's speed-up over
    it, its share of nginx, and what its chain keeps. Informational: the goals are the
    installed path's."""
    verdict: dict[str, Any] = {}
    if "wasmgate-pure" not in summary:
        return verdict
    pure = float(summary["wasmgate-pure"]["rps_median"])
    installed = float(summary["wasmgate"]["rps_median"])
    verdict["installed_speedup_vs_pure"] = round(installed / pure, 4) if pure else 0.0
    if "nginx" in summary:
        verdict["pure_ratio"] = float(summary["wasmgate-pure"]["ratio_vs_nginx"])
    if "wasmgate-chain-pure" in summary:
        chained = float(summary["wasmgate-chain-pure"]["rps_median"])
        verdict["pure_chain_kept_ratio"] = round(chained / pure, 4) if pure else 0.0
    return verdict


def wasm_verdict(summary: Summary, name: str) -> dict[str, Any]:
    """One header-only Proxy-Wasm target against plain wasmgate: the CPU it adds per
    request and the share of the no-filter req/s it keeps (keys ``wasm_*`` for
    as-headers, ``wasm_go_*`` for go-headers)."""
    base = summary["wasmgate"]
    wasm = summary[name]
    added = float(wasm["cpu_us_per_request_median"]) - float(base["cpu_us_per_request_median"])
    kept = float(wasm["rps_median"]) / float(base["rps_median"]) if base["rps_median"] else 0.0
    key = "wasm_go" if name == "wasmgate-wasm-go" else "wasm"
    return {
        f"{key}_added_cpu_us_per_request": round(added, 2),
        f"{key}_budget_us": WASM_BUDGET_US,
        f"{key}_target_met": added <= WASM_BUDGET_US,
        f"{key}_kept_ratio": round(kept, 4),
        f"{key}_kept_target": WASM_KEPT_RATIO,
        f"{key}_kept_target_met": kept >= WASM_KEPT_RATIO,
    }


def https_verdict(runs: dict[str, list[WrkResult]]) -> dict[str, Any]:
    """HTTPS req/s / HTTP req/s per proxy, and wasmgate's share next to nginx's.

    The fraction is taken per round, from two back-to-back runs (see TARGETS), so slow
    drift of the machine cancels out; its median over the rounds is the figure.
    """
    fractions: dict[str, Any] = {}
    for plain, https in HTTPS_TWINS.items():
        if plain not in runs or https not in runs:
            continue
        per_round = [
            round(h.rps / p.rps, 4) if p.rps else 0.0
            for p, h in zip(runs[plain], runs[https], strict=True)
        ]
        fractions[plain] = {
            "https_target": https,
            "https_over_http": round(statistics.median(per_round), 4),
            "https_over_http_per_round": per_round,
            "http_rps_median": round(statistics.median(r.rps for r in runs[plain]), 1),
            "https_rps_median": round(statistics.median(r.rps for r in runs[https]), 1),
        }
    if not fractions:
        return {}
    verdict: dict[str, Any] = {"https_fraction": fractions}
    if {"nginx", "wasmgate"} <= fractions.keys():
        ours = fractions["wasmgate"]["https_over_http"]
        theirs = fractions["nginx"]["https_over_http"]
        verdict["https_fraction_wasmgate_vs_nginx"] = round(ours / theirs, 4) if theirs else 0.0
    return verdict


def print_https(verdict: dict[str, Any]) -> None:
    fractions = verdict.get("https_fraction")
    if not fractions:
        return
    log("")
    log("HTTPS req/s / HTTP req/s, keep-alive (median of the per-round fractions):")
    log(f"{'proxy':<18}{'HTTPS/HTTP':>11}{'HTTPS req/s':>13}{'HTTP req/s':>12}  per round")
    for plain, row in fractions.items():
        rounds = " ".join(f"{f:.3f}" for f in row["https_over_http_per_round"])
        log(
            f"{plain:<18}{row['https_over_http']:>11.3f}{row['https_rps_median']:>13,.0f}"
            f"{row['http_rps_median']:>12,.0f}  {rounds}"
        )
    if "https_fraction_wasmgate_vs_nginx" in verdict:
        log(
            "wasmgate's HTTPS/HTTP fraction / nginx's: "
            f"{verdict['https_fraction_wasmgate_vs_nginx']:.3f}"
        )


def print_verdicts(
    verdict: dict[str, Any], summary: Summary, runs: dict[str, list[WrkResult]]
) -> None:
    print_https(verdict)
    if "target_met" in verdict:
        met = "MET" if verdict["target_met"] else "NOT MET"
        ratio = verdict["wasmgate_ratio"]
        log(f"target wasmgate >= {TARGET_RATIO}x nginx req/s: {met} ({ratio:.3f}x)")
    if "uvloop_speedup_vs_asyncio" in verdict:
        log(f"uvloop vs asyncio (wasmgate req/s): {verdict['uvloop_speedup_vs_asyncio']:.3f}x")
    for key, filter_name in (("wasm", "as-headers"), ("wasm_go", "go-headers")):
        if f"{key}_target_met" not in verdict:
            continue
        cpu_met = "MET" if verdict[f"{key}_target_met"] else "NOT MET"
        kept_met = "MET" if verdict[f"{key}_kept_target_met"] else "NOT MET"
        log(
            f"target one Proxy-Wasm header filter ({filter_name}) adds <= {WASM_BUDGET_US:g} us "
            f"CPU per request: {cpu_met} (+{verdict[f'{key}_added_cpu_us_per_request']:.1f} us); "
            f"keeps >= {WASM_KEPT_RATIO:.0%} of the no-filter req/s: {kept_met} "
            f"({verdict[f'{key}_kept_ratio']:.1%})"
        )
    if "chain_target_met" in verdict:
        chain_met = "MET" if verdict["chain_target_met"] else "NOT MET"
        log(
            f"target chain canary+cors+rewrite+headers keeps >= {CHAIN_RATIO:.0%} of no-filter "
            f"req/s: {chain_met} ({verdict['chain_kept_ratio']:.1%})"
        )
    if "installed_speedup_vs_pure" in verdict:
        speedup = verdict["installed_speedup_vs_pure"]
        log(f"wasmgate as installed vs wasmgate-pure req/s: {speedup:.3f}x")
    if "pure_ratio" in verdict:
        log(f"wasmgate-pure (the fallback): {verdict['pure_ratio']:.3f}x nginx req/s")
    if "pure_chain_kept_ratio" in verdict:
        kept = verdict["pure_chain_kept_ratio"]
        log(f"wasmgate-chain-pure keeps {kept:.1%} of wasmgate-pure req/s")
    paths = {name: row["data_path"] for name, row in summary.items() if row.get("data_path")}
    for path in sorted(set(paths.values())):
        names = ", ".join(name for name, p in paths.items() if p == path)
        log(f"data path {path}: {names}")
    if line := ratelimit.describe(verdict):
        log(line)
    noisy = [name for name, row in summary.items() if row["rps_spread"] > NOISY_SPREAD]
    if noisy:
        log(
            f"warning: req/s varied by more than {NOISY_SPREAD:.0%} between rounds for "
            f"{', '.join(noisy)}; something else is using these CPUs? Rerun with more --rounds."
        )
    print_errors(runs)


def print_errors(runs: dict[str, list[WrkResult]]) -> None:
    bad = [(n, i + 1, r) for n, rs in runs.items() for i, r in enumerate(rs) if r.errors]
    if not bad:
        return
    log("")
    log("!" * 72)
    log("!!! SOME RUNS HAD ERRORS: their figures are not comparable")
    for name, rnd, r in bad:
        log(f"!!!   round {rnd} {name}: non-2xx/3xx {r.non_2xx_3xx}, socket {r.socket_errors}")
    log("!" * 72)


def machine_info(nginx: str, wrk: str) -> dict[str, Any]:
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": tool_output(["nproc"]),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "nginx": tool_output([nginx, "-v"]),
        "nginx_openssl": next(
            (line for line in tool_output_all([nginx, "-V"]).splitlines() if "SSL" in line), ""
        ),
        "python_openssl": ssl.OPENSSL_VERSION,
        "wrk": tool_output([wrk, "-v"]),
        "wasmgate_git": git.stdout.strip(),
    }


def write_results(report: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, indent=2) + "\n"
    path = RESULTS / f"{stamp}.json"
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path


def write_chart(results_json: Path) -> Path | None:
    """bench/chart.py: ``<timestamp>.png`` and ``latest.png`` next to the JSON.

    A chart that cannot be drawn (matplotlib missing, say) is a warning, not a failure:
    the figures are in the JSON already.
    """
    try:
        from chart import chart  # bench/chart.py; imports matplotlib

        png = chart(results_json, results_json.with_suffix(".png"))
        shutil.copyfile(png, results_json.parent / "latest.png")
    except ImportError as exc:
        log(f"warning: no chart ({exc}); `.venv/bin/pip install matplotlib` or `make install`")
        return None
    except (OSError, ValueError) as exc:
        log(f"warning: no chart: {exc}")
        return None
    return png


# ---------------------------------------------------------------------------- main


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def target_list(text: str) -> list[str]:
    """``nginx,wasmgate-https`` -> those targets, in the order of TARGETS (run order)."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    if unknown := sorted(names - set(TARGETS)):
        raise argparse.ArgumentTypeError(
            f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}"
        )
    if not names:
        raise argparse.ArgumentTypeError("no target given")
    return [name for name in TARGETS if name in names]


def default_targets() -> list[str]:
    return [name for name in TARGETS if name not in OPT_IN_TARGETS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="wasmgate vs nginx as a reverse proxy in front of a fast nginx upstream, "
        "measured with wrk. Targets: nginx, wasmgate (uvloop), wasmgate-pure (the same on "
        "pure Python, WASMGATE_COMPILED=0; every other wasmgate target runs as installed, "
        "compiled by mypyc when `make install` could build it), wasmgate-asyncio "
        "(--loop asyncio), wasmgate-chain (canary+cors+rewrite+headers), wasmgate-chain-pure, "
        "wasmgate-wasm "
        "(the as-headers Proxy-Wasm filter), wasmgate-wasm-go (the go-headers one, Go SDK), "
        "nginx-https and wasmgate-https (the nginx "
        "proxy and wasmgate serving HTTPS with a throwaway self-signed certificate), "
        "wasmgate-ratelimit and wasmgate-redis-ratelimit (the rate-limit filter with "
        'policy "local" and "redis", against a redis-server started for the run), one '
        "worker each, run in turn in interleaved rounds. "
        "Installs nginx, wrk and redis-server with apt-get if missing.",
        epilog="Pinning: proxies on --proxy-cpu, wrk and the upstream on --load-cpu. "
        f"Results go to {RESULTS.relative_to(ROOT)}/<UTC timestamp>.json and latest.json, "
        "a chart of them (bench/chart.py) to <UTC timestamp>.png and latest.png. "
        f"Exit status: 0 ok, 1 failure, {EXIT_RUN_ERRORS} when some run had HTTP or socket "
        "errors.",
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=3, help="interleaved rounds (default: 3)"
    )
    parser.add_argument(
        "--targets", type=target_list, default=default_targets(), metavar="A,B,...",
        help="comma-separated subset of the targets to run; a goal or ratio is reported "
        "only when all its targets ran (default: all but wasmgate-chain-pure)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=positive_float, default=10.0,
        help="seconds per measured wrk run (default: 10)",
    )  # fmt: skip
    parser.add_argument(
        "--warmup", type=float, default=2.0,
        help="seconds of unmeasured wrk load before each run; 0 = none (default: 2)",
    )  # fmt: skip
    parser.add_argument(
        "--connections", type=positive_int, default=50, help="wrk connections (default: 50)"
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="wrk threads (default: 1)")
    parser.add_argument(
        "--proxy-cpu", type=int, default=0, help="CPU for the proxies under test (default: 0)"
    )
    parser.add_argument(
        "--load-cpu", type=int, default=1, help="CPU for wrk and the upstream (default: 1)"
    )
    return parser


def check_cpus(pin: Pinning) -> None:
    usable = os.sched_getaffinity(0)
    for cpu in (pin.proxy_cpu, pin.load_cpu):
        if cpu not in usable:
            raise BenchError(f"CPU {cpu} is not usable here (usable: {sorted(usable)})")
    if pin.proxy_cpu == pin.load_cpu:
        log("warning: proxies and load share one CPU; figures will be low and noisy")
    load1 = os.getloadavg()[0]
    if load1 > BUSY_LOAD:
        log(f"warning: load average is {load1:.2f}; other work on this machine skews the figures")


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception, as SIGINT already is."""
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ensure_wasm_filter(targets: Sequence[str]) -> None:
    """Build the example Proxy-Wasm filters the wasm targets run (build.py skips what
    is up to date)."""
    wanted = [WASM_TARGETS[t] for t in targets if t in WASM_TARGETS]
    if not wanted:
        return
    names = [name for name, _, _ in wanted]
    log(f"building the example WASM filters ({', '.join(names)}) if needed ...")
    build = subprocess.run(
        [sys.executable, str(ROOT / "plugins" / "wasm" / "build.py"), *names], check=False
    )
    if build.returncode != 0 or not all(path.exists() for _, path, _ in wanted):
        raise BenchError("building the example WASM filter failed (see above; `make wasm`)")


def bench(args: argparse.Namespace) -> int:
    pin = Pinning(args.proxy_cpu, args.load_cpu)
    check_cpus(pin)
    nginx, wrk = ensure_tools()
    targets: list[str] = args.targets
    ensure_wasm_filter(targets)
    plan = Plan(args.rounds, args.duration, max(args.warmup, 0.0))
    load = Load(wrk, pin.load_cpu, args.threads, args.connections)
    log(
        f"{plan.rounds} rounds x {len(targets)} targets x {plan.duration:g} s "
        f"(+{plan.warmup:g} s warm-up each), wrk -t{load.threads} -c{load.connections}"
    )
    with tempfile.TemporaryDirectory(prefix="wasmgate-bench-") as tmp:
        services = Services(Path(tmp))
        try:
            proxies = start_all(services, nginx, pin, targets)
            runs = run_rounds(proxies, load, plan)
        finally:
            services.stop_all()
    summary = summarize(runs)
    for name, service in proxies.items():
        if service.data_path:
            summary[name]["data_path"] = service.data_path
    verdict = verdicts(summary, runs)
    print_table(summary, plan)
    print_verdicts(verdict, summary, runs)
    report = {
        "machine": machine_info(nginx, wrk),
        "settings": {
            **asdict(plan),
            **asdict(pin),
            "wrk_threads": load.threads,
            "wrk_connections": load.connections,
            "targets": targets,
            "tls_sessions": {n: s.tls_session for n, s in proxies.items() if s.tls},
        },
        "summary": summary,
        "verdict": verdict,
        "runs": {name: [asdict(r) for r in results] for name, results in runs.items()},
    }
    previous = last_result(RESULTS, RUN_RESULT_NAME)
    results_json = write_results(report)
    log(f"\nwrote {results_json.relative_to(ROOT)} and latest.json")
    compare_with(summary, previous)
    if png := write_chart(results_json):
        log(f"wrote {png.relative_to(ROOT)} and latest.png")
    return EXIT_RUN_ERRORS if any(r.errors for rs in runs.values() for r in rs) else 0


RUN_RESULT_NAME = r"\d{8}T\d{6}Z\.json"  # what write_results names a run


def compare_with(summary: Summary, previous: Path | None) -> None:
    """Print each target's req/s against the newest earlier run (bench/compare.py)."""
    now = {name: float(row["rps_median"]) for name, row in summary.items()}
    if previous is None:
        report_change(now, {}, lower_is_better=False, unit="req/s", label="none recorded")
        return
    before = load_figures(
        previous, lambda d: {n: float(r["rps_median"]) for n, r in d["summary"].items()}
    )
    rev = load_figures(previous, lambda d: {d["machine"]["wasmgate_git"]: 0.0})
    label = f"{previous.name} ({next(iter(rev), '?')}; req/s varies with the machine's load)"
    report_change(now, before, lower_is_better=False, unit="req/s", label=label)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with interruptible():
            return bench(args)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted):
        print("\nbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
