"""Active health checks: a pool with ``[upstreams.health_check]`` probes its endpoints.

Each such pool gets one :class:`HealthChecker` per process: one asyncio task that, every
``interval``, probes all the pool's endpoints at once, each on a short connection of its
own (never one of the pool's keep-alive connections), bounded by ``timeout`` from the
connect to the response head. The first round waits a random part of the interval (of
``MAX_JITTER`` at most, so a long interval does not leave a dead endpoint unnoticed
that long), so that workers and pools started together do not probe in step.

An endpoint's active state (:class:`CheckState`) moves like Envoy's and Kong's::

    unknown  --first check passes-->  healthy   (takes traffic meanwhile)
    unknown  --first check fails--->  unhealthy
    healthy  --unhealthy_threshold failures in a row-->  unhealthy
    unhealthy  --healthy_threshold passes in a row-->  healthy

While unhealthy, :attr:`~core.upstream.EndpointState.down` is set and the pool picks
the endpoint no more than an endpoint that passive health ejected; the two are
independent, and an endpoint takes traffic only when neither holds it out. When no
endpoint of a pool can take traffic, requests get 503 (no "panic mode" spreading them
over endpoints known to be failing).

The checker starts when a snapshot holding the pool is bound to a running gateway and
stops when the pool is closed; a pool a reload carries over keeps its checker and its
state. Probe errors (``OSError``, ``ssl.SSLError``, timeouts, malformed responses) end
here as a check result; nothing leaves this module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import ssl
import time
from collections.abc import Iterable

from core.config import HealthCheck, status_ranges
from core.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout
from core.metrics import count_check
from core.upstream import EndpointState, UpstreamPool, ssl_reason

log = logging.getLogger("wasmgate.health")

MAX_HEAD = 16384  # bytes of a response head a probe reads at most
MAX_JITTER = 1.0  # seconds: the first round's delay is at most this
PASSED = "success"
# Results of a failed check (the `result` label of wasmgate_health_checks_total).
TIMEOUT, CONNECT_ERROR, BAD_STATUS, PROTOCOL_ERROR = (
    "timeout",
    "connect_error",
    "bad_status",
    "protocol_error",
)
_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})(?: |\r\n)")


class CheckState:
    """What active checks know of one endpoint."""

    __slots__ = ("error", "failures", "last_at", "result", "state", "successes")

    def __init__(self) -> None:
        self.state = "unknown"  # "healthy", "unhealthy"
        self.successes = 0  # in a row
        self.failures = 0  # in a row
        self.last_at = 0.0  # time.time() of the last check; 0: none yet
        self.result = ""  # PASSED or a failure kind
        self.error = ""  # why the last failed check failed


class HealthChecker:
    """The active checks of one pool in this process."""

    def __init__(self, pool: UpstreamPool, cfg: HealthCheck) -> None:
        self.pool = pool
        self.cfg = cfg
        self.ranges = status_ranges(cfg.expected_statuses)
        self.task: asyncio.Task[None] | None = None
        for ep in pool.endpoints:
            ep.check = CheckState()

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"health-check {self.pool.name}"
            )

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0, min(self.cfg.interval, MAX_JITTER)))
        while True:
            began = loop.time()
            await asyncio.gather(*(self.check(ep) for ep in self.pool.endpoints))
            await asyncio.sleep(max(0.0, self.cfg.interval - (loop.time() - began)))

    async def check(self, ep: EndpointState) -> None:
        """Probe ``ep`` once and move its state."""
        try:
            result, error = await self.probe(ep)
        except Exception as exc:  # a defect of ours: fail the check, keep checking
            log.exception("health check of %s in upstream %s", ep.address, self.pool.name)
            result, error = PROTOCOL_ERROR, f"internal error: {exc!r}"
        self.record(ep, result, error)

    def record(self, ep: EndpointState, result: str, error: str) -> None:
        st = ep.check
        assert st is not None
        st.last_at, st.result, st.error = time.time(), result, error
        count_check(self.pool.name, ep.address, result)
        cfg = self.cfg
        if result == PASSED:
            st.successes += 1
            st.failures = 0
            if st.state == "unknown" or (
                st.state == "unhealthy" and st.successes >= cfg.healthy_threshold
            ):
                if st.state == "unhealthy":
                    log.warning(
                        "upstream %s: endpoint %s passed %d health checks: healthy again",
                        self.pool.name,
                        ep.address,
                        st.successes,
                    )
                st.state = "healthy"
                ep.down = False
            return
        st.failures += 1
        st.successes = 0
        if st.state == "unknown" or (
            st.state == "healthy" and st.failures >= cfg.unhealthy_threshold
        ):
            log.warning(
                "upstream %s: endpoint %s failed %d health check%s (%s): no traffic until it "
                "passes %d",
                self.pool.name,
                ep.address,
                st.failures,
                "" if st.failures == 1 else "s",
                error,
                cfg.healthy_threshold,
            )
            st.state = "unhealthy"
            ep.down = True

    async def probe(self, ep: EndpointState) -> tuple[str, str]:
        """(result, why it failed or "") of one check of ``ep``."""
        cfg = self.cfg
        http = cfg.type == "http"
        if http and self.pool.cfg.protocol != "http1":
            return await self.probe_h2(ep)
        tls = self.pool.tls if http else None
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(cfg.timeout):
                reader, writer = await asyncio.open_connection(
                    ep.host,
                    ep.port,
                    ssl=tls,
                    server_hostname=(self.pool.sni or ep.host) if tls is not None else None,
                    limit=MAX_HEAD,
                )
                if not http:
                    return PASSED, ""
                writer.write(self.request(ep))
                status = await read_status(reader)
        except TimeoutError:
            return TIMEOUT, f"no answer within {cfg.timeout:g}s"
        except ssl.SSLError as exc:
            return CONNECT_ERROR, f"TLS handshake failed: {ssl_reason(exc)}"
        except OSError as exc:
            reason = (os.strerror(exc.errno) if exc.errno else exc.strerror) or type(exc).__name__
            return CONNECT_ERROR, f"connect failed: {reason}"
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            what = "closed before a response" if isinstance(exc, EOFError) else str(exc)
            return PROTOCOL_ERROR, f"invalid response: {what}"
        finally:
            if writer is not None:
                writer.transport.abort()
        if any(low <= status <= high for low, high in self.ranges):
            return PASSED, ""
        return BAD_STATUS, f"status {status}"

    async def probe_h2(self, ep: EndpointState) -> tuple[str, str]:
        """The http check of an HTTP/2 upstream: the same GET, as an HTTP/2 stream."""
        from core.upstream_h2 import probe_status

        cfg = self.cfg
        host = (cfg.host or self.pool.cfg.host_header or ep.address).encode("latin-1")
        try:
            async with asyncio.timeout(cfg.timeout):
                status = await probe_status(self.pool, ep, cfg.path.encode("latin-1"), host)
        except (TimeoutError, UpstreamTimeout):
            return TIMEOUT, f"no answer within {cfg.timeout:g}s"
        except UpstreamProtocolError as exc:
            return PROTOCOL_ERROR, f"invalid response: {exc}"
        except UpstreamError as exc:
            return CONNECT_ERROR, str(exc)
        if any(low <= status <= high for low, high in self.ranges):
            return PASSED, ""
        return BAD_STATUS, f"status {status}"

    def request(self, ep: EndpointState) -> bytes:
        host = self.cfg.host or self.pool.cfg.host_header or ep.address
        return (
            f"GET {self.cfg.path} HTTP/1.1\r\nHost: {host}\r\n"
            "User-Agent: wasmgate-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")


async def read_status(reader: asyncio.StreamReader) -> int:
    """The status of the final response head on ``reader`` (1xx interim ones skipped)."""
    for _ in range(8):
        head = await reader.readuntil(b"\r\n\r\n")
        m = _STATUS_LINE.match(head)
        if m is None:
            raise ValueError("not an HTTP/1.x status line")
        status = int(m.group(1))
        if not 100 <= status < 200 or status == 101:
            return status
    raise ValueError("too many interim responses")


def start_checks(pools: Iterable[UpstreamPool]) -> None:
    """Start the checker of every pool that has ``health_check`` (once per pool)."""
    for pool in pools:
        cfg = pool.cfg.health_check
        if cfg is None or pool.closed:
            continue
        if pool.checker is None:
            pool.checker = HealthChecker(pool, cfg)
        pool.checker.start()
