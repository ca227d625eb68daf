"""The rate-limit targets of bench/run.py: the same rate-limit filter with each policy.

* ``wasmgate-ratelimit``: ``policy = "local"`` (buckets in the process);
* ``wasmgate-redis-ratelimit``: ``policy = "redis"``, against a ``redis-server`` this
  module starts for the run (Debian's package, installed with apt-get if missing),
  pinned with wrk and the upstream, so that the proxy's CPU is the gateway's alone.

The limit is far above what the load reaches (10^9 a second), so every request is let
through and both targets do the same work but for where the bucket lives. The goal:
the Redis policy keeps at least :data:`REDIS_KEPT_RATIO` of the local policy's req/s
in the same run.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

LOCAL = "wasmgate-ratelimit"
REDIS = "wasmgate-redis-ratelimit"
TARGETS = (LOCAL, REDIS)
REDIS_KEPT_RATIO = 0.70

# Appended to the gateway's config right after its [default] route (whose filters it sets).
FILTER_TOML = """filters = ["limit"]

[filters.limit]
plugin = "rate-limit"
config = {{ rate = 1000000000, per = 1.0, key = "ip", policy = "{policy}" }}
"""
# A timeout well above any answer, so that a stall of a busy machine is not taken for
# an outage (that would measure the fallback bucket instead of Redis).
STORE_TOML = """
[store]
redis = "redis://127.0.0.1:{port}/0"
timeout = 2.0
"""


def toml(name: str, redis_port: int | None) -> str:
    """The config fragment of target ``name``."""
    if name == LOCAL:
        return FILTER_TOML.format(policy="local")
    assert redis_port is not None
    return FILTER_TOML.format(policy="redis") + STORE_TOML.format(port=redis_port)


def redis_command(apt_install: Callable[[Sequence[str]], None]) -> str:
    """Where redis-server is, installing Debian's package when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        apt_install(["redis-server"])
        found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed (Debian package redis-server)")
    return found


def redis_args(binary: str, port: int) -> list[str]:
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def wait_redis(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                if b"PONG" in sock.recv(64):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port}")


def script_calls(port: int) -> int:
    """EVALSHA calls the redis-server on ``port`` has run so far (INFO commandstats)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        head = b""
        while b"\r\n" not in head:
            head += sock.recv(4096)
        size = int(head.split(b"\r\n", 1)[0][1:])
        text = head.split(b"\r\n", 1)[1]
        while len(text) < size:
            text += sock.recv(65536)
    for line in text.decode().splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def verdict(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Redis policy's req/s against the local policy's, when both ran."""
    if not set(TARGETS) <= summary.keys():
        return {}
    local = float(summary[LOCAL]["rps_median"])
    kept = float(summary[REDIS]["rps_median"]) / local if local else 0.0
    return {
        "redis_ratelimit_kept_ratio": round(kept, 4),
        "redis_ratelimit_kept_target": REDIS_KEPT_RATIO,
        "redis_ratelimit_kept_target_met": kept >= REDIS_KEPT_RATIO,
    }


def describe(verdict: dict[str, Any]) -> str | None:
    if "redis_ratelimit_kept_target_met" not in verdict:
        return None
    met = "MET" if verdict["redis_ratelimit_kept_target_met"] else "NOT MET"
    return (
        f"target rate-limit policy redis keeps >= {REDIS_KEPT_RATIO:.0%} of policy local's "
        f"req/s: {met} ({verdict['redis_ratelimit_kept_ratio']:.1%})"
    )
