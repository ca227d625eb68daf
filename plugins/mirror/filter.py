"""The ``mirror`` plugin: copy requests to a shadow service, fire and forget.

What the Gateway API's ``RequestMirror`` filter does::

    [filters.shadow]
    plugin = "mirror"
    config.endpoints = ["10.0.0.7:8080"]   # round robin
    config.percent = 10                    # default 100

Rules:

* The copy is sent when the request phase reaches this filter (so it carries the
  changes of the filters before it), in the background: the client's request never
  waits for it, and the mirror's answer is read and dropped.
* The copy has the request's method, target (path and query), Host and end-to-end
  headers, and **no body** (``Content-Length: 0``): the client's body streams to the
  real upstream and is not held back for a copy.
* At most ``max_in_flight`` copies are on their way at once (further ones are
  skipped, not queued); each gives up after ``timeout`` seconds. Failures are logged
  at debug level only: a broken mirror never shows on the real traffic.
"""

from __future__ import annotations

import asyncio
import itertools
import random

from pydantic import Field, field_validator

from plugin_sdk import Context, Filter, PluginConfig

_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
        "expect",
    }
)


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


class MirrorConfig(PluginConfig):
    endpoints: list[str] = Field(
        min_length=1, description="host:port addresses that receive the copies (round robin)."
    )
    percent: float = Field(100.0, ge=0, le=100, description="Share of requests copied.")
    timeout: float = Field(5.0, gt=0, le=300, description="Seconds a copy may take in all.")
    max_in_flight: int = Field(
        64, ge=1, le=10_000, description="Copies on their way at once; more are skipped."
    )

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for address in value:
            _split(address)
        return value


class Mirror(Filter[MirrorConfig]):
    """Send a bodiless copy of each (sampled) request to the mirror endpoints."""

    Config = MirrorConfig

    def __init__(self, config: MirrorConfig) -> None:
        super().__init__(config)
        self._targets = itertools.cycle([_split(a) for a in config.endpoints])
        self._share = config.percent / 100
        self._tasks: set[asyncio.Task[None]] = set()
        self.skip_phases.update({"on_response", "on_log"})

    def on_request(self, ctx: Context) -> None:
        if self._share < 1 and random.random() >= self._share:
            return
        if len(self._tasks) >= self.config.max_in_flight:
            return
        request = ctx.request
        lines = [f"{request.method} ".encode() + request.wire_target() + b" HTTP/1.1"]
        lines.append(b"Host: " + request.host.encode("latin-1"))
        for name, value in request.headers.items():
            if name.lower() not in _HOP:
                lines.append(f"{name}: {value}".encode("latin-1"))
        lines += [b"Content-Length: 0", b"Connection: close", b"", b""]
        task = asyncio.get_running_loop().create_task(
            self._send(next(self._targets), b"\r\n".join(lines), ctx)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, target: tuple[str, int], data: bytes, ctx: Context) -> None:
        try:
            async with asyncio.timeout(self.config.timeout):
                reader, writer = await asyncio.open_connection(*target)
                try:
                    writer.write(data)
                    await writer.drain()
                    while await reader.read(65536):
                        pass
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            ctx.log.debug("mirror to %s:%d failed: %s", *target, exc)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
