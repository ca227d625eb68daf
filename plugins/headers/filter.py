"""The ``headers`` plugin: edit request headers on the way in, response headers on the way out.

Per direction, operations apply in this order: ``remove``, then ``set`` (replace every
value), then ``add`` (append one more value)::

    [filters.security-headers]
    plugin = "headers"
    config.response.set = { "Strict-Transport-Security" = "max-age=31536000" }
    config.request.remove = ["X-Debug"]
"""

from __future__ import annotations

from typing import Any

from plugin_sdk import Context, Filter, Headers
from plugins.headers.config import HeaderOps, HeadersConfig

_REMOVE, _SET, _ADD = 0, 1, 2


def _compile(ops: HeaderOps) -> tuple[tuple[int, Any, bytes], ...]:
    """One direction's operations, in order, encoded once at load time."""
    steps: list[tuple[int, Any, bytes]] = [(_REMOVE, name, b"") for name in ops.remove]
    steps += [(_SET, n.encode("latin-1"), v.encode("latin-1")) for n, v in ops.set.items()]
    steps += [(_ADD, n.encode("latin-1"), v.encode("latin-1")) for n, v in ops.add.items()]
    return tuple(steps)


def _apply(steps: tuple[tuple[int, Any, bytes], ...], headers: Headers) -> None:
    for op, name, value in steps:
        if op == _SET:
            headers.set_bytes(name, value)
        elif op == _ADD:
            headers.add_bytes(name, value)
        else:
            headers.remove(name)


class HeadersFilter(Filter[HeadersConfig]):
    """Add, set and remove headers; each direction costs nothing when not configured."""

    Config = HeadersConfig

    def __init__(self, config: HeadersConfig) -> None:
        super().__init__(config)
        self._request = _compile(config.request)
        self._response = _compile(config.response)
        if config.request.empty:
            self.skip_phases.add("on_request")
        if config.response.empty:
            self.skip_phases.add("on_response")

    def on_request(self, ctx: Context) -> None:
        _apply(self._request, ctx.request.headers)

    def on_response(self, ctx: Context) -> None:
        assert ctx.response is not None
        _apply(self._response, ctx.response.headers)
