"""One access-log line per request, as JSON lines or in the combined format.

Lines are written to a buffered stream and flushed at most every 200 ms (at once when
the stream is a terminal), so logging costs no system call per request; the time stamp
is formatted once a second. The fields are described in docs/configuration.md.
Credentials in the request target and logged headers are replaced by the snapshot's
:class:`~core.redact.Redactor`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.http1 import Request
    from core.redact import Redactor

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class AccessLog:
    def __init__(self, target: str, fmt: str) -> None:
        self.fmt = fmt
        self.enabled = target != "off"
        self._own = False
        self.stream: IO[str] | None
        if target == "off":
            self.stream = None
        elif target == "stdout":
            self.stream = sys.stdout
        elif target == "stderr":
            self.stream = sys.stderr
        else:
            self.stream = open(target, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
            self._own = True
        self._tty = bool(self.stream is not None and self.stream.isatty())
        self._dirty = False
        self._second = -1
        self._stamp = ""  # the time stamp of self._second, without the milliseconds

    def write(
        self,
        req: Request | None,
        redactor: Redactor,
        *,
        client_ip: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        duration: float,
        route: str | None,
        upstream: str | None,
        endpoint: str | None,
        reason: str,
        upstream_duration: float | None = None,
        trace_id: str | None = None,
        stopped_by: str | None = None,
    ) -> None:
        if self.stream is None:
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            if self.fmt == "json":
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            else:
                t = time.localtime(second)
                self._stamp = time.strftime(f"%d/{_MONTHS[t.tm_mon - 1]}/%Y:%H:%M:%S %z", t)
        if self.fmt == "json":
            entry: dict[str, Any] = {
                "time": f"{self._stamp}.{int(now * 1000) % 1000:03d}Z",
                "client": client_ip,
                "method": req.method if req else None,
                "host": req.host if req else None,
                "path": redactor.target(req.target) if req else None,
                "protocol": f"HTTP/{req.version}" if req else None,
                "status": status,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_ms": round(duration * 1000, 3),
                "upstream_duration_ms": (
                    round(upstream_duration * 1000, 3) if upstream_duration is not None else None
                ),
                "route": route,
                "upstream": upstream,
                "endpoint": endpoint,
                "trace_id": trace_id,
                "stopped_by": stopped_by,
            }
            if reason:
                entry["reason"] = reason
            line = json.dumps(entry, separators=(",", ":"))
        else:
            if req is not None:
                request = f"{req.method} {redactor.target(req.target)} HTTP/{req.version}"
                referer = redactor.header("referer", req.header("referer") or "-")
                agent = redactor.header("user-agent", req.header("user-agent") or "-")
            else:
                request, referer, agent = "-", "-", "-"
            line = (
                f'{client_ip} - - [{self._stamp}] "{request}" {status} {bytes_out} '
                f'"{referer}" "{agent}" {trace_id or "-"}'
            )
        self.stream.write(line + "\n")
        if self._tty:
            self.stream.flush()
        else:
            self._dirty = True

    def flush(self) -> None:
        if self._dirty and self.stream is not None:
            self._dirty = False
            with contextlib.suppress(OSError, ValueError):
                self.stream.flush()

    def close(self) -> None:
        self.flush()
        if self._own and self.stream is not None:
            self.stream.close()
