"""Instructions per request, counted by valgrind's callgrind: a figure machine noise cannot move.

    .venv/bin/python bench/instr.py [--targets nginx,wasmgate,wasmgate-chain,wasmgate-wasm,...]
                                    [--requests 2000] [--warmup 2000] [--concurrency 1]
                                    [--tree DIR] [--results DIR] [--keep DIR]

req/s (bench/run.py) moves with whatever else the machine runs, and this project's
machines have no hardware counters. Instead each proxy under test runs under
``valgrind --tool=callgrind`` (Debian's ``valgrind`` package), which counts the
instructions it executes (``Ir``), and only that process is instrumented: the client
(this script) and the upstream (nginx, ``return 200``) run natively.

For each target, in turn:

1. start it under callgrind with instrumentation off (``--instr-atstart=no``), wait
   until ``GET /api/hello`` through it answers 200 ``hello``;
2. send ``--warmup`` requests, one after another on one keep-alive connection
   (imports, caches, Python's specialising interpreter and the upstream pool settle);
3. ``callgrind_control -i on``, 100 more requests, ``callgrind_control -z`` (zero the
   counters);
4. send ``--requests`` requests on the same connection, then ``callgrind_control -d``
   (dump): the dump's total, divided by ``--requests``, is the figure.

Targets: ``nginx`` (the nginx reverse proxy of bench/run.py, with
``master_process off``: one process), ``wasmgate`` (no filters), ``wasmgate-chain``
(canary + cors + rewrite + headers), ``wasmgate-wasm-go`` (the go-headers filter, Go
SDK) and ``wasmgate-wasm`` (the as-headers Proxy-Wasm
filter), configured exactly as bench/run.py configures them; on request also
``wasmgate-ratelimit`` and ``wasmgate-redis-ratelimit`` (bench/ratelimit.py: the
rate-limit filter with policy "local" and "redis"; a ``redis-server`` of the run's own,
not instrumented; the run fails if the gateway logged a store error or Redis ran no
script call, so that no request was counted by the fallback bucket). The wasmgate
targets run as installed (``WASMGATE_COMPILED=auto``, core/compiled.py: the tree's
mypyc build in ``build/compiled/`` when it matches its sources); each has a ``-pure``
twin (``wasmgate-pure``, ``wasmgate-chain-pure``, ...; only when named) on pure Python
(``WASMGATE_COMPILED=0``). The run prints and records which path each target ran.
The gateway runs with
``PYTHONHASHSEED=0``; a rerun of the same tree agrees to well under 1 %.

``--concurrency K`` opens K keep-alive connections and sends one request on each
before reading the K replies (``--requests`` is rounded up to whole steps): a model of
a loaded gateway, where the Redis policy's script calls of one loop turn share a write.
With the default 1 every request is alone, the Redis policy's worst case.

Every run is written to ``bench/results/instr-<UTC timestamp>.json`` (``--results``
elsewhere) with the git revision, and the change against the newest earlier
``instr-*.json`` there is printed, naming the targets that got worse by more than 3 %.
``--tree DIR`` measures the gateway from another source tree (for instance
``git worktree add /tmp/old 3b663c3``), with this venv's packages. ``--keep DIR`` keeps
the callgrind dumps for ``callgrind_annotate``. Run with ``make bench-instr``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ratelimit
from compare import last_result, load_figures, report
from run import (
    WASM_FILTER,
    apt_install,
    ensure_wasm_filter,
    find_tool,
    free_port,
    gateway_toml,
    proxy_conf,
    tool_output,
    tool_output_all,
    upstream_conf,
)
from wasm_cost import Client

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
DEFAULT_TARGETS = ("nginx", "wasmgate", "wasmgate-chain", "wasmgate-wasm", "wasmgate-wasm-go")
TARGETS = (*DEFAULT_TARGETS, *ratelimit.TARGETS)
# The same gateways on pure Python (WASMGATE_COMPILED=0); asked for by name only.
PURE = tuple(f"{name}-pure" for name in TARGETS if name != "nginx")
INSTR_WARMUP = 100  # requests after instrumentation is on, before the counters are zeroed
RESULT_NAME = r"instr-\d{8}T\d{6}Z\.json"
START_TIMEOUT = 180.0  # seconds; a gateway starting under valgrind imports slowly


class InstrError(Exception):
    """Ends the run with a one-line message."""


def log(message: str) -> None:
    print(message, flush=True)


def tools() -> tuple[str, str, str]:
    found = {name: find_tool(name) for name in ("valgrind", "callgrind_control", "nginx")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        debs = " and ".join(sorted({"nginx" if n == "nginx" else "valgrind" for n in missing}))
        raise InstrError(f"{', '.join(missing)} not found: install the Debian package(s) {debs}")
    return found["valgrind"] or "", found["callgrind_control"] or "", found["nginx"] or ""


def git_revision(tree: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(tree), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.stdout.strip()


def control(callgrind_control: str, pid: int, *args: str) -> None:
    proc = subprocess.run(
        [callgrind_control, *args, str(pid)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0 or "OK" not in proc.stdout:
        raise InstrError(f"callgrind_control {' '.join(args)} failed: {proc.stdout}{proc.stderr}")


def dump_total(prefix: Path, before: set[Path]) -> int:
    """The ``totals:`` line of the dump callgrind wrote after ``before`` was listed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in sorted(set(prefix.parent.glob(prefix.name + "*")) - before):
            text = path.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.1)
    raise InstrError(f"callgrind wrote no dump under {prefix}*")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def target_command(
    name: str,
    tmp: Path,
    nginx: str,
    nginx_v: str,
    up_port: int,
    tree: Path,
    redis_port: int | None = None,
) -> tuple[list[str], int, dict[str, str] | None]:
    """The command line of ``name``, its port, and the environment it runs with."""
    port = free_port()
    if name == "nginx":
        conf = tmp / "proxy.conf"
        conf.write_text("master_process off;\n" + proxy_conf(tmp, port, up_port, nginx_v))
        return [nginx, "-p", str(tmp), "-c", str(conf)], port, None
    env = target_env(name, tree)
    name = name.removesuffix("-pure")
    conf = tmp / f"{name}.toml"
    conf.write_text(
        gateway_toml(
            port,
            up_port,
            chain=name == "wasmgate-chain",
            wasm=name if name.startswith("wasmgate-wasm") else "",
            extra=ratelimit.toml(name, redis_port) if name in ratelimit.TARGETS else "",
        )
    )
    budgeted = "cpu_budget" in (tree / "core" / "config.py").read_text()
    if name.startswith("wasmgate-wasm") and budgeted:
        # Under valgrind the guest's callbacks take most of the wall time: past the
        # default CPU budget (half a CPU) the filter would be cut off with 503s.
        conf.write_text(conf.read_text() + "limits.cpu_budget = 1.0\n")
    cmd = [str(VENV_PYTHON), "-c", "import sys; from core.cli import main; sys.exit(main())"]
    cmd += ["--log-level", "warning", "run", "-c", str(conf)]
    return cmd, port, env


def target_env(name: str, tree: Path) -> dict[str, str]:
    """The environment of a wasmgate target: the tree's build as installed, or pure."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree)}
    env["WASMGATE_COMPILED"] = "0" if name in PURE else "auto"
    env["WASMGATE_COMPILED_DIR"] = str(tree / "build" / "compiled")
    return env


def data_path(env: dict[str, str]) -> str:
    """What core/compiled.py chooses for a gateway started with ``env``."""
    probe = "from core import compiled; print(compiled.status().describe())"
    done = subprocess.run(
        [str(VENV_PYTHON), "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise InstrError(f"wasmgate cannot start: {done.stderr.strip()}")
    return done.stdout.strip()


def connect(port: int, proc: subprocess.Popen[bytes], name: str, out: Path) -> Client:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            client = Client(port)
            client.sock.settimeout(120)
            status, _, body = client.get()
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = out.read_text(errors="replace")[-2000:]
                raise InstrError(f"{name} did not start; its output:\n{tail}") from None
            time.sleep(0.5)
            continue
        if status != 200 or body != b"hello\n":
            raise InstrError(f"{name}: unexpected reply {status} {body!r}")
        return client


def measure(
    name: str,
    args: argparse.Namespace,
    tmp: Path,
    nginx: str,
    nginx_v: str,
    up_port: int,
    redis_port: int | None,
) -> tuple[int, int]:
    """Instructions the target executed, and for how many requests (``args.requests``
    rounded up to whole steps of ``args.concurrency``)."""
    valgrind, callgrind_control, _ = tools()
    cmd, port, env = target_command(name, tmp, nginx, nginx_v, up_port, args.tree, redis_port)
    prefix = tmp / f"callgrind.{name}.{free_port()}"  # unique per run: dumps count from .1
    out = tmp / f"{name}.out"
    vg = [valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={prefix}"]
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*vg, *cmd], stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            env=env, cwd=tmp, start_new_session=True,
        )  # fmt: skip
    steps = -(-args.requests // args.concurrency)
    try:
        clients = [connect(port, proc, name, out)]
        try:
            clients += [connect(port, proc, name, out) for _ in range(args.concurrency - 1)]
            send(clients, -(-args.warmup // args.concurrency), name)
            control(callgrind_control, proc.pid, "-i", "on")
            send(clients, -(-INSTR_WARMUP // args.concurrency), name)
            control(callgrind_control, proc.pid, "-z")
            before = set(prefix.parent.glob(prefix.name + "*"))
            asks_redis = name == ratelimit.REDIS and redis_port is not None
            calls = ratelimit.script_calls(redis_port) if asks_redis else 0
            send(clients, steps, name)
            control(callgrind_control, proc.pid, "-d")
            total = dump_total(prefix, before)
            # Every request asked Redis: none was counted by the fallback bucket (each
            # store error is logged) and script calls were made (one per key and turn).
            if asks_redis and (
                "store error" in out.read_text(errors="replace")
                or ratelimit.script_calls(redis_port) == calls
            ):
                raise InstrError(f"{name}: store calls failed or were not made; see {out}")
        finally:
            for client in clients:
                client.close()
    finally:
        stop(proc)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        for path in sorted(prefix.parent.glob(prefix.name + "*")):
            shutil.copy(path, args.keep / path.name)
    return total, steps * args.concurrency


def send(clients: list[Client], steps: int, name: str) -> None:
    """``steps`` times: one request on every connection at once, then every reply."""
    for _ in range(steps):
        for client in clients:
            client.send()
        for client in clients:
            status, _, _ = client.receive()
            if status != 200:
                raise InstrError(f"{name}: HTTP {status} during the measured requests")


def run(args: argparse.Namespace) -> int:
    _, _, nginx = tools()
    wasm_targets = [t for t in args.targets if t.startswith("wasmgate-wasm")]
    if wasm_targets:
        ensure_wasm_filter(wasm_targets)
        if not WASM_FILTER.exists():
            raise InstrError(f"{WASM_FILTER} missing; `make wasm`")
    nginx_v = tool_output_all([nginx, "-V"])
    per_request: dict[str, float] = {}
    paths = {t: data_path(target_env(t, args.tree)) for t in args.targets if t != "nginx"}
    for name, path in paths.items():
        log(f"{name}: data path {path}")
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="wasmgate-instr-") as tmp_name:
        tmp = Path(tmp_name)
        up_port = free_port()
        conf = tmp / "upstream.conf"
        conf.write_text(upstream_conf(tmp, up_port, nginx_v))
        upstream = subprocess.Popen(
            [nginx, "-p", str(tmp), "-c", str(conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        redis = None
        try:
            redis_port = None
            if ratelimit.REDIS in args.targets:
                redis_port = free_port()
                binary = ratelimit.redis_command(apt_install)
                redis = subprocess.Popen(
                    ratelimit.redis_args(binary, redis_port),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
                ratelimit.wait_redis(redis_port)
            for rnd in range(args.runs):
                for name in args.targets:
                    started = time.monotonic()
                    total, count = measure(name, args, tmp, nginx, nginx_v, up_port, redis_port)
                    figure = total / count
                    runs.setdefault(name, []).append(figure)
                    log(
                        f"run {rnd + 1}/{args.runs}: {name:<16}{figure:>14,.0f} "
                        f"instructions/request  ({time.monotonic() - started:.0f} s)"
                    )
        finally:
            stop(upstream)
            if redis is not None:
                stop(redis)
    for name, figures in runs.items():
        per_request[name] = statistics.median(figures)
    base = per_request.get("nginx")
    log(
        f"\ninstructions per request (callgrind Ir, {args.requests} keep-alive requests, "
        f"{args.concurrency} at a time):"
    )
    for name, figure in per_request.items():
        ratio = f"  {figure / base:6.1f}x nginx" if base else ""
        log(f"  {name:<16}{figure:>14,.0f}{ratio}")
    args.results.mkdir(parents=True, exist_ok=True)
    previous = last_result(args.results, RESULT_NAME)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.results / f"instr-{stamp}.json"
    record: dict[str, Any] = {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wasmgate_git": git_revision(args.tree),
        "tree": str(args.tree),
        "python": sys.version.split()[0],
        "valgrind": tool_output(["valgrind", "--version"]),
        "nginx": tool_output([nginx, "-v"]),
        "settings": {
            "requests": args.requests,
            "warmup": args.warmup,
            "runs": args.runs,
            "concurrency": args.concurrency,
        },
        "instructions_per_request": {k: round(v, 1) for k, v in per_request.items()},
        "data_path": paths,
        "runs": runs,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    log(f"wrote {path}")
    if previous is not None:
        before = load_figures(previous, lambda d: d["instructions_per_request"])
        rev = json.loads(previous.read_text()).get("wasmgate_git", "?")
        report(
            per_request,
            before,
            lower_is_better=True,
            unit="Ir/req",
            label=f"{previous.name} ({rev})",
        )
    else:
        report(per_request, {}, lower_is_better=True, unit="Ir/req", label="none recorded")
    return 0


def target_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in TARGETS + PURE]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown target(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(TARGETS + PURE)}"
        )
    return names


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Instructions per request of nginx and wasmgate, counted by callgrind.",
        epilog="See the module docstring (bench/instr.py) and bench/README.md.",
    )
    parser.add_argument(
        "--targets",
        type=target_list,
        default=list(DEFAULT_TARGETS),
        help=f"comma-separated, of {', '.join(TARGETS + PURE)} "
        f"(default: {','.join(DEFAULT_TARGETS)})",
    )
    parser.add_argument("--requests", type=positive_int, default=2000, help="measured requests")
    parser.add_argument("--warmup", type=int, default=2000, help="requests before counting")
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=1,
        help="keep-alive connections; each step sends one request on each, then reads "
        "every reply (default 1: one request at a time)",
    )
    parser.add_argument("--runs", type=positive_int, default=1, help="runs per target (median)")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree to measure")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--keep", type=Path, help="copy the callgrind dumps here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.tree = args.tree.resolve()
    try:
        return run(args)
    except InstrError as exc:
        print(f"bench-instr: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench-instr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
