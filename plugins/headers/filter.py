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

Step = tuple[int, Any, bytes]
#: A ``set`` with nothing else to do: (lower-cased name, its length, the pair to append).
FastSet = tuple[bytes, int, tuple[bytes, bytes]]


def _compile(ops: HeaderOps) -> tuple[Step, ...]:
    """One direction's operations, in order, encoded once at load time."""
    steps: list[Step] = [(_REMOVE, name, b"") for name in ops.remove]
    steps += [(_SET, n.encode("latin-1"), v.encode("latin-1")) for n, v in ops.set.items()]
    steps += [(_ADD, n.encode("latin-1"), v.encode("latin-1")) for n, v in ops.add.items()]
    return tuple(steps)


def _fast_sets(steps: tuple[Step, ...]) -> tuple[FastSet, ...] | None:
    """The direction's steps as :data:`FastSet` when all of them are ``set`` (the usual
    configuration); None otherwise (``remove`` and ``add`` take :func:`_apply`)."""
    if not steps or any(op != _SET for op, _, _ in steps):
        return None
    return tuple((name.lower(), len(name), (name, value)) for _, name, value in steps)


def _apply(steps: tuple[Step, ...], headers: Headers) -> None:
    for op, name, value in steps:
        if op == _SET:
            headers.set_bytes(name, value)
        elif op == _ADD:
            headers.add_bytes(name, value)
        else:
            headers.remove(name)


def _edit(steps: tuple[Step, ...], sets: tuple[FastSet, ...] | None, headers: Headers) -> None:
    """One direction's edits. A header that a ``set`` names is usually absent: with only
    ``set`` steps (``sets``), each name is looked for in place and the pair appended, and
    only a name already there takes Headers.set_bytes; otherwise :func:`_apply`."""
    if sets is None:
        _apply(steps, headers)
        return
    raw = headers.raw
    for key, size, pair in sets:
        for name, _ in raw:
            if len(name) == size and name.lower() == key:
                headers.set_bytes(*pair)
                break
        else:
            raw.append(pair)


class HeadersFilter(Filter[HeadersConfig]):
    """Add, set and remove headers; each direction costs nothing when not configured."""

    Config = HeadersConfig

    def __init__(self, config: HeadersConfig) -> None:
        super().__init__(config)
        self._request = _compile(config.request)
        self._response = _compile(config.response)
        self._request_sets = _fast_sets(self._request)
        self._response_sets = _fast_sets(self._response)
        if config.request.empty:
            self.skip_phases.add("on_request")
        if config.response.empty:
            self.skip_phases.add("on_response")

    def on_request(self, ctx: Context) -> None:
        _edit(self._request, self._request_sets, ctx.request.headers)

    def on_response(self, ctx: Context) -> None:
        assert ctx.response is not None
        _edit(self._response, self._response_sets, ctx.response.headers)
