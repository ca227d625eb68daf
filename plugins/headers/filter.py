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

from pydantic import Field, field_validator

from plugin_sdk import Context, Filter, Headers, PluginConfig, Secret

_FORBIDDEN = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
)


class HeaderOps(PluginConfig):
    remove: list[str] = Field(default_factory=list, description="Header names to drop.")
    set: dict[str, Secret] = Field(
        default_factory=dict, description="Headers to set, replacing any value already there."
    )
    add: dict[str, Secret] = Field(
        default_factory=dict, description="Headers to append (kept alongside existing values)."
    )

    @field_validator("remove")
    @classmethod
    def _remove(cls, value: list[str]) -> list[str]:
        return [_check_name(v) for v in value]

    @field_validator("set", "add")
    @classmethod
    def _values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            _check_name(name)
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: value must not contain CR, LF or NUL")
        return value

    @property
    def empty(self) -> bool:
        return not (self.remove or self.set or self.add)


def _check_name(name: str) -> str:
    if not name or any(c in name for c in " \t\r\n:"):
        raise ValueError(f"invalid header name {name!r}")
    if name.lower() in _FORBIDDEN:
        raise ValueError(f"{name!r} is managed by the gateway and cannot be edited here")
    return name


class HeadersConfig(PluginConfig):
    request: HeaderOps = Field(
        default_factory=HeaderOps, description="Edits to the request before it goes upstream."
    )
    response: HeaderOps = Field(
        default_factory=HeaderOps, description="Edits to the response before it goes to the client."
    )


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
