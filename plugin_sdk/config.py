"""The base of every plugin's configuration model.

A plugin's config is a pydantic model: frozen, unknown fields refused, each field
with a default where one is sane and a ``description`` (``wasmgate plugin schema NAME``
prints the JSON Schema built from it). The gateway validates it when the
configuration loads, never at the first request::

    class Config(PluginConfig):
        header: str = Field("x-canary", description="Request header that forces the canary.")
        weight: int = Field(0, ge=0, le=100, description="Percent of traffic to the canary.")
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict


class PluginConfig(BaseModel):
    """Base class for plugin configuration models (frozen, ``extra="forbid"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def check_regex(value: str | None) -> str | None:
    """For a ``field_validator``: refuse a pattern ``re`` cannot compile (at load time)."""
    if value is not None:
        try:
            re.compile(value)
        # Not only re.error: a huge repeat count overflows, deep nesting recurses.
        except (re.error, OverflowError, RecursionError) as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value
