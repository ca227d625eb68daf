"""The gateway's own CPU time per request, with and without a header-only Proxy-Wasm filter.

    .venv/bin/python bench/wasm_cost.py [--requests 3000] [--warmup 500] [--runs 3]
                                        [--targets none,as-headers,go-headers]
                                        [--baseline DIR] [--tree DIR]

Unlike bench/run.py (wrk, req/s, sensitive to whatever else the machine runs), this
counts the CPU the gateway process itself spends: for each target it starts
``wasmgate run`` as a child process in front of a trivial upstream (an asyncio server
in this process, answering ``200 hello``), sends ``--warmup`` requests, then
``--requests`` more, one after another on one keep-alive connection, and reads the
gateway's CPU time before and after from /proc: the sum of the ``schedstat`` run time
of its threads (nanoseconds), or ``utime + stime`` of ``/proc/PID/stat`` (clock ticks)
where schedstat is missing. The client and the upstream run in this process, so their
CPU is not counted. Each target runs ``--runs`` times, interleaved, and the best
(lowest) figure is reported, in µs per request, with what the filter adds over no filter.

``--baseline DIR`` also runs every target from another source tree (for instance
``git archive main | tar -x -C /tmp/base``: the gateway is then started as
``python -m core.cli`` with ``PYTHONPATH=DIR``, this venv's packages), interleaved with
this tree's runs, so a before/after comparison sees the same machine noise; it also
prints the median of the per-run differences (this tree minus baseline), the figure to
trust on a busy machine. ``--tree DIR`` measures another source tree (the same way)
in place of the one this script is in.

The filters are the example modules under plugins/wasm (as-headers: AssemblyScript;
go-headers: proxy-wasm-go-sdk), built first with plugins/wasm/build.py when missing.
Linux only (/proc); everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WASMGATE = ROOT / ".venv" / "bin" / "wasmgate"
FILTERS = {
    "as-headers": "",
    "go-headers": (
        'config = { request_add = { "x-gateway" = "wasmgate" }, '
        'response_add = { "x-filtered" = "go" } }'
    ),
}
REQUEST = b"GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: wasm-cost\r\n\r\n"
UPSTREAM_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nhello\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Upstream(asyncio.Protocol):
    """Answers every request (head only, no bodies expected) with UPSTREAM_REPLY."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            self.buf = self.buf[end + 4 :]
            self.transport.write(UPSTREAM_REPLY)  # type: ignore[attr-defined]


def start_upstream(port: int) -> None:
    ready = threading.Event()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(loop.create_server(_Upstream, "127.0.0.1", port))
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(5)


class Client:
    """One keep-alive HTTP/1.1 connection; reads Content-Length and chunked replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line, self.buf = self.buf[:end], self.buf[end + 2 :]
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def get(self) -> tuple[int, dict[str, str], bytes]:
        self.send()
        return self.receive()

    def send(self) -> None:
        """Send one GET (its reply is read by :meth:`receive`)."""
        self.sock.sendall(REQUEST)

    def receive(self) -> tuple[int, dict[str, str], bytes]:
        """The reply to the oldest GET sent and not yet read."""
        status = int(self._line().split()[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int(self._line().split(b";")[0], 16):
                body += self._take(size)
                self._take(2)
            while self._line():  # trailers
                pass
        else:
            body = self._take(int(headers.get("content-length", "0")))
        return status, headers, body

    def close(self) -> None:
        self.sock.close()


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used so far (all its threads)."""
    total, found = 0, False
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
                found = True
    except FileNotFoundError:
        found = False
    if found:
        return total / 1e9
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_toml(port: int, upstream_port: int, target: str) -> str:
    text = f"""[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[server.limits]
drain_timeout = 1

[[upstreams]]
name = "up"
endpoints = ["127.0.0.1:{upstream_port}"]
keepalive = 16

[default]
upstream = "up"
"""
    if target != "none":
        path = ROOT / "plugins" / "wasm" / target / "build" / "filter.wasm"
        text += f'filters = ["{target}"]\n\n[filters.{target}]\nwasm = "{path}"\n'
        text += FILTERS[target] + "\n"
    return text


def measure(
    target: str, upstream_port: int, tmp: Path, warmup: int, requests: int, source: Path | None
) -> float:
    """One run: the gateway's CPU µs per request for ``target`` (from ``source``, a
    source tree, or this one)."""
    port = free_port()
    conf = tmp / f"{target}.toml"
    conf.write_text(gateway_toml(port, upstream_port, target))
    args = ["--log-level", "warning", "run", "-c", str(conf)]
    env = None
    if source is None:
        cmd = [str(WASMGATE), *args]
    else:
        cmd = [sys.executable, "-c", "import sys; from core.cli import main; sys.exit(main())"]
        cmd += args
        env = {**os.environ, "PYTHONPATH": str(source)}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=env, cwd=source)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = Client(port)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{target}: the gateway did not start") from None
                time.sleep(0.1)
        try:
            status, headers, body = client.get()
            if status != 200 or body != b"hello\n":
                raise SystemExit(f"{target}: unexpected reply {status} {body!r}")
            if target != "none" and not any(h.startswith("x-") for h in headers):
                raise SystemExit(f"{target}: the filter added no header: {headers}")
            for _ in range(warmup):
                client.get()
            before = cpu_seconds(proc.pid)
            for _ in range(requests):
                client.get()
            after = cpu_seconds(proc.pid)
        finally:
            client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return (after - before) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--targets", default="none,as-headers,go-headers")
    parser.add_argument("--baseline", type=Path, help="another source tree to compare with")
    parser.add_argument(
        "--tree", type=Path, help="measure this source tree instead of the one holding the script"
    )
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t != "none" and t not in FILTERS:
            parser.error(f"unknown target {t!r}: choose from none, {', '.join(FILTERS)}")
    missing = [
        t
        for t in targets
        if t != "none" and not (ROOT / "plugins" / "wasm" / t / "build" / "filter.wasm").exists()
    ]
    if missing:
        build = [sys.executable, str(ROOT / "plugins" / "wasm" / "build.py"), *missing]
        subprocess.run(build, check=True)
    upstream_port = free_port()
    start_upstream(upstream_port)
    tree = args.tree.resolve() if args.tree is not None else None
    trees: dict[str, Path | None] = {"": tree}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), "this tree": tree}
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="wasm-cost-") as tmp:
        for run in range(args.runs):
            for t in targets:
                for label, source in trees.items():
                    us = measure(t, upstream_port, Path(tmp), args.warmup, args.requests, source)
                    results.setdefault((label, t), []).append(us)
                    name = f"{label}: {t}" if label else t
                    print(f"run {run + 1}/{args.runs}: {name:<22} {us:7.1f} µs/request", flush=True)
    print(f"\nbest of {args.runs}, {args.requests} requests each (gateway CPU only):")
    for label in trees:
        if label:
            print(f"{label}:")
        base = min(results[(label, "none")]) if "none" in targets else None
        for t in targets:
            us = min(results[(label, t)])
            extra = (
                f"  (+{us - base:.1f} over no filter)" if base is not None and t != "none" else ""
            )
            print(f"  {t:<11} {us:7.1f} µs/request{extra}")
    if args.baseline is not None:
        # Each run measured both trees back to back: the median of those differences
        # is steadier than the difference of two minimums on a busy machine.
        print("this tree - baseline, median of the per-run differences:")
        for t in targets:
            pairs = zip(results[("this tree", t)], results[("baseline", t)], strict=True)
            print(f"  {t:<11} {statistics.median(a - b for a, b in pairs):+7.1f} µs/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
