"""Does ``workers = N`` split the work or add to it? Gateway CPU per request, all workers.

    .venv/bin/python bench/workers_cpu.py [--workers 1,2] [--connections 32]
                                          [--requests 4000] [--warmup 300]

A machine with 2 cores cannot show fairly that N workers serve N times the req/s of
one: wrk and the upstream need CPU as well, and every core is shared. What decides
scaling is whether a request costs the same when N processes share the port, and
whether the kernel spreads the connections over them. This measures both: for each N
it starts ``wasmgate run`` with ``[server] workers = N`` in front of nginx
(``return 200``), opens ``--connections`` keep-alive connections (SO_REUSEPORT hands
each to one worker), warms up, then sends ``--requests`` requests spread evenly over
the connections, one at a time, and reads every process's CPU time before and after
from /proc (as bench/wasm_cost.py does). It prints the CPU per request summed over
the supervisor and its workers, and each worker's share of it. About the same figure
for N = 1 and N = 2, with shares near 1/N, means N free cores serve about N times the
requests of one. (callgrind cannot count the workers: valgrind's gdbserver, which
callgrind_control needs, does not follow a fork.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from instr import ROOT, VENV_PYTHON, InstrError, connect, stop, tools
from run import free_port, gateway_toml, tool_output_all, upstream_conf
from wasm_cost import cpu_seconds


def worker_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def measure(workers: int, args: argparse.Namespace, tmp: Path, up_port: int) -> None:
    port = free_port()
    conf = tmp / f"workers{workers}.toml"
    conf.write_text(
        gateway_toml(port, up_port).replace("[server]\n", f"[server]\nworkers = {workers}\n", 1)
    )
    out = tmp / f"w{workers}.out"
    cmd = [str(VENV_PYTHON), "-c", "import sys; from core.cli import main; sys.exit(main())"]
    cmd += ["--log-level", "warning", "run", "-c", str(conf)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            env=env, cwd=tmp, start_new_session=True,
        )  # fmt: skip
    try:
        name = f"workers={workers}"
        clients = [connect(port, proc, name, out) for _ in range(args.connections)]
        # One worker serves in the process itself; more are its forked children.
        pids = [proc.pid] if workers == 1 else worker_pids(proc.pid)
        if len(pids) != workers:
            raise InstrError(f"expected {workers} worker processes, found {pids}")
        for _ in range(args.warmup):
            for client in clients:
                client.get()
        processes = [proc.pid, *pids] if workers > 1 else pids
        before = [cpu_seconds(pid) for pid in processes]
        per_conn = args.requests // len(clients)
        for _ in range(per_conn):
            for client in clients:
                client.get()
        used = [cpu_seconds(pid) - b for pid, b in zip(processes, before, strict=True)]
        for client in clients:
            client.close()
    finally:
        stop(proc)
    sent = per_conn * len(clients)
    whole = sum(used)
    shares = ", ".join(f"{u / whole:.0%}" for u in used[-workers:])
    print(
        f"workers={workers}: {whole / sent * 1e6:7.1f} µs CPU/request over all processes"
        f" ({sent} requests on {len(clients)} connections; worker shares {shares})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=300, help="requests per connection")
    args = parser.parse_args(argv)
    nginx = tools()[2]
    nginx_v = tool_output_all([nginx, "-V"])
    with tempfile.TemporaryDirectory(prefix="wasmgate-workers-") as tmp_name:
        tmp = Path(tmp_name)
        up_port = free_port()
        (tmp / "upstream.conf").write_text(upstream_conf(tmp, up_port, nginx_v))
        upstream = subprocess.Popen(
            [nginx, "-p", str(tmp), "-c", str(tmp / "upstream.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            for n in (int(w) for w in args.workers.split(",")):
                measure(n, args, tmp, up_port)
        except InstrError as exc:
            print(f"workers_instr: {exc}", file=sys.stderr)
            return 1
        finally:
            stop(upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
