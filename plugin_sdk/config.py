"""The base of every plugin's configuration model.

A plugin's config is a pydantic model: frozen, unknown fields refused, each field
with a default where one is sane and a ``description`` (``wasmgate plugin schema NAME``
prints the JSON Schema built from it). The gateway validates it when the
configuration loads, never at the first request::

    class Config(PluginConfig):
        header: str = Field("x-canary", description="Request header that forces the canary.")
        weight: int = Field(0, ge=0, le=100, description="Percent of traffic to the canary.")

Mark every value that is a credential with :data:`Secret` (a ``str``): the admin API's
``GET /config`` and the dashboard show ``<redacted>`` in its place, and the field's JSON
Schema says ``"writeOnly": true`` (the JSON Schema keyword for "accepted, never shown
back"), which is also how a Proxy-Wasm plugin's manifest marks its secrets::

    class Config(PluginConfig):
        api_key: Secret = Field(min_length=16, description="Key sent to the upstream.")
        users: dict[str, Secret] = Field(default_factory=dict, description="user -> hash")
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


class PluginConfig(BaseModel):
    """Base class for plugin configuration models (frozen, ``extra="forbid"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretMark:
    """The annotation behind :data:`Secret`: adds ``"writeOnly": true`` to the schema."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out: dict[str, Any] = handler(schema)
        out["writeOnly"] = True
        return out

    def __repr__(self) -> str:
        return "Secret"


# A string the gateway never shows back (``GET /config``, the dashboard): a password,
# key, token, hash or header value that carries a credential. Validation is a str's.
Secret = Annotated[str, SecretMark()]


def check_regex(value: str | None) -> str | None:
    """For a ``field_validator``: refuse a pattern ``re`` cannot compile (at load time)."""
    if value is not None:
        try:
            re.compile(value)
        # Not only re.error: a huge repeat count overflows, deep nesting recurses.
        except (re.error, OverflowError, RecursionError) as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value
