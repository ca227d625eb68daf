"""OpenTelemetry export of the gateway's spans, as OTLP/HTTP with JSON bodies.

Off unless ``[tracing] otlp_endpoint`` is set; only then does the gateway import this
module (and with it aiohttp's client) and build an :class:`Exporter`. Each sampled
exchange becomes one SERVER span whose ids are those of the ``traceparent`` sent
upstream (:mod:`core.tracecontext`): same trace, the gateway's span id, the client's
span as parent.

On the request path, :meth:`Exporter.record` appends one tuple to a bounded queue; a
full queue drops the span and counts it (``dropped``). A background task turns what
has queued into OTLP JSON every ``batch_seconds`` and POSTs it. A collector that
fails or cannot be reached costs the batch (counted in ``failed``) and a warning at
most once a minute; requests never wait on it. aiohttp's client errors are caught
and translated in :meth:`Exporter._post`, and nowhere else.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp

from core.wording import plural

if TYPE_CHECKING:
    from core.config import Tracing
    from core.proxy import Exchange
    from core.redact import Redactor

log = logging.getLogger("wasmgate.tracing")

BATCH_MAX = 2048  # spans per POST
POST_TIMEOUT = 10.0  # seconds for one POST
CLOSE_TIMEOUT = 2.0  # seconds the last export may take when the gateway stops
WARN_EVERY = 60.0  # seconds between two warnings about a failing collector
_SERVER = 2  # SpanKind SPAN_KIND_SERVER
_ERROR = 2  # StatusCode STATUS_CODE_ERROR


class SpanRecord(NamedTuple):
    """What one exchange leaves for the exporter (times are ``time.monotonic()``)."""

    trace_id: str
    span_id: str
    parent_id: str  # "" for a trace the gateway started
    start: float
    end: float
    method: str
    target: bytes
    route: str | None
    status: int
    host: str
    upstream: str | None
    peer: str
    redactor: Redactor  # the exchange's snapshot's: hides credentials in url.query


class Exporter:
    """Queues spans and POSTs them to an OTLP/HTTP collector in batches."""

    def __init__(self, cfg: Tracing) -> None:
        assert cfg.otlp_endpoint is not None
        self.endpoint = cfg.otlp_endpoint
        self.batch_seconds = cfg.batch_seconds
        self.max_queue = cfg.max_queue
        self.queue: collections.deque[SpanRecord] = collections.deque()
        self.exported = 0  # spans the collector accepted
        self.dropped = 0  # spans not queued: the queue was full
        self.failed = 0  # spans lost with a batch the collector did not take
        self._resource = {
            "attributes": [_attr("service.name", cfg.service_name)],
        }
        self._scope = {"name": "wasmgate"}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned_at = -WARN_EVERY

    # -- on the request path

    def record(self, ex: Exchange) -> None:
        """Queue the span of a finished exchange (sampled ones only: the caller checks)."""
        if len(self.queue) >= self.max_queue:
            self.dropped += 1
            return
        req = ex.req
        route = ex.route
        self.queue.append(
            SpanRecord(
                req.trace_id,
                req.span_id,
                req.parent_id,
                req.start,
                time.monotonic(),
                req.method,
                req.target,
                route.name if route else None,
                ex.status,
                req.orig_host,
                ex.pool.name if ex.pool else (route.upstream if route else None),
                req.client_ip,
                ex.snapshot.redactor,
            )
        )

    # -- lifecycle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._run())

    async def close(self) -> None:
        """Stop the task and export what is queued (bounded by CLOSE_TIMEOUT)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.flush()
        except TimeoutError:
            pass
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.batch_seconds)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug of ours must not end the export
                log.exception("tracing: export failed: %r", exc)

    async def flush(self) -> None:
        """Export everything queued now, BATCH_MAX spans per POST."""
        queue = self.queue
        while queue:
            batch = [queue.popleft() for _ in range(min(len(queue), BATCH_MAX))]
            error = await self._post(self.encode(batch))
            if error is None:
                self.exported += len(batch)
            else:
                self.failed += len(batch)
                self._warn(error, len(batch))

    # -- the wire

    def encode(self, batch: list[SpanRecord]) -> bytes:
        """An OTLP ExportTraceServiceRequest in the protobuf JSON mapping."""
        # Monotonic to wall clock, measured now: NTP may have moved the clock since.
        offset = time.time_ns() - time.monotonic_ns()
        spans = [_span(s, offset) for s in batch]
        body = {
            "resourceSpans": [
                {
                    "resource": self._resource,
                    "scopeSpans": [{"scope": self._scope, "spans": spans}],
                }
            ]
        }
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    async def _post(self, body: bytes) -> str | None:
        """POST one batch; None when the collector took it, else why not."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT))
        try:
            async with self._session.post(
                self.endpoint, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                await resp.read()
                if resp.status >= 300:
                    return f"collector answered {resp.status}"
        except TimeoutError:
            return f"no answer in {POST_TIMEOUT:.0f}s"
        except (aiohttp.ClientError, OSError) as exc:
            return str(exc) or type(exc).__name__
        return None

    def _warn(self, error: str, spans: int) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "tracing: %s not exported to %s: %s (%d lost so far; logged at most once a minute)",
                plural(spans, "span"),
                self.endpoint,
                error,
                self.failed,
            )


def _attr(key: str, value: str | int) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _split_host(host: str) -> tuple[str, int | None]:
    """``("example.com", 8080)`` from ``example.com:8080`` (or ``[::1]:8080``)."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:]
    else:
        name, sep, port = host.rpartition(":")
        if not sep:
            return host, None
    return name, int(port) if port.isdigit() else None


def _span(s: SpanRecord, offset: int) -> dict[str, Any]:
    path, sep, query = s.target.decode("latin-1").partition("?")
    attributes = [
        _attr("http.request.method", s.method),
        _attr("url.path", path),
        _attr("http.response.status_code", s.status),
        _attr("network.peer.address", s.peer),
    ]
    if sep:
        attributes.append(_attr("url.query", s.redactor.query_string(query)))
    if s.route is not None:
        attributes.append(_attr("http.route", s.route))
    if s.upstream is not None:
        attributes.append(_attr("upstream", s.upstream))
    if s.host:
        address, port = _split_host(s.host)
        attributes.append(_attr("server.address", address))
        if port is not None:
            attributes.append(_attr("server.port", port))
    span: dict[str, Any] = {
        "traceId": s.trace_id,
        "spanId": s.span_id,
        "name": f"{s.method} {s.route}" if s.route is not None else s.method,
        "kind": _SERVER,
        "startTimeUnixNano": str(int(s.start * 1e9) + offset),
        "endTimeUnixNano": str(int(s.end * 1e9) + offset),
        "attributes": attributes,
    }
    if s.parent_id:
        span["parentSpanId"] = s.parent_id
    if s.status >= 500:
        span["status"] = {"code": _ERROR}
    return span
