"""A real ``redis-server`` (Debian package ``redis-server``) on a free 127.0.0.1 port.

Tests that need the shared store use the ``redis_server`` fixture (tests/conftest.py):
one server per test module, emptied before each test. It can be stopped and started
again on the same port (a Redis outage and its end), or paused with SIGSTOP (a Redis
that accepts connections and never answers).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from plugin_sdk.testing import free_port


class RedisServer:
    def __init__(self, *, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.port = free_port()
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="wasmgate-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        if self.password:
            args += ["--requirepass", self.password]
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()}")
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def command(self, *args: str) -> str:
        """One command over a fresh connection (RESP, blocking: for setup only)."""
        parts = [*(["AUTH", self.password] if self.password else []), *args]
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            replies = []
            for cmd in [parts[:2], parts[2:]] if self.password else [parts]:
                payload = f"*{len(cmd)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in cmd)
                sock.sendall(payload.encode())
                replies.append(sock.recv(65536).decode())
            return replies[-1]

    def ping(self) -> bool:
        try:
            return "PONG" in self.command("PING")
        except OSError:
            return False

    def flush(self) -> None:
        self.command("FLUSHALL")

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
