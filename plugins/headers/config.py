"""The configuration of the headers plugin (plugins/headers/filter.py has the filter).

A module of its own so that `make compile` may compile the filter: pydantic models
do not run compiled by mypyc."""

from __future__ import annotations

from pydantic import Field, field_validator

from plugin_sdk import PluginConfig, Secret

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
