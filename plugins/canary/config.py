"""The configuration of the canary plugin (plugins/canary/filter.py has the filter).

A module of its own so that `make compile` may compile the filter: pydantic models
do not run compiled by mypyc."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from plugin_sdk import PluginConfig
from plugin_sdk.config import check_regex

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
CANARY = "canary"
MAINLINE = "mainline"


def _token(kind: str, value: str | None) -> str | None:
    if value is not None and not _TOKEN.fullmatch(value):
        raise ValueError(f"invalid {kind} name {value!r}")
    return value


class CanaryConfig(PluginConfig):
    upstream: str = Field(
        min_length=1,
        description="Name of the canary [[upstreams]] entry (required; checked at load time).",
    )
    header: str | None = Field(
        None, description="Request header that can force the canary (or the mainline)."
    )
    header_value: str | None = Field(
        None,
        min_length=1,
        description="Exact header value that selects the canary; other values fall through.",
    )
    header_pattern: str | None = Field(
        None,
        min_length=1,
        description="Regular expression searched for in the header value (re.search); "
        "a match selects the canary, a mismatch falls through.",
    )
    cookie: str | None = Field(
        None, description="Cookie whose value 'always' / 'never' forces the canary / mainline."
    )
    weight: int = Field(0, ge=0, description="Share of the remaining traffic for the canary.")
    weight_total: int = Field(100, ge=1, description="What 'weight' is a share of.")
    sticky_cookie: str | None = Field(
        None,
        description="Cookie that records the side a weighted decision chose "
        "('canary' / 'mainline'); later requests follow it.",
    )
    sticky_max_age: int | None = Field(
        None, ge=1, description="Max-Age of the sticky cookie in seconds (none: session cookie)."
    )

    @field_validator("header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        return _token("header", value)

    @field_validator("cookie", "sticky_cookie")
    @classmethod
    def _cookie(cls, value: str | None) -> str | None:
        return _token("cookie", value)

    @field_validator("header_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return check_regex(value)

    @model_validator(mode="after")
    def _consistent(self) -> CanaryConfig:
        if self.header_value is not None and self.header_pattern is not None:
            raise ValueError("header_value and header_pattern are mutually exclusive")
        if self.header is None and (self.header_value or self.header_pattern):
            raise ValueError("header_value / header_pattern need 'header' to be set")
        if self.weight > self.weight_total:
            raise ValueError(f"weight {self.weight} exceeds weight_total {self.weight_total}")
        if self.sticky_cookie is not None and self.sticky_cookie == self.cookie:
            raise ValueError("sticky_cookie must differ from cookie")
        if self.sticky_max_age is not None and self.sticky_cookie is None:
            raise ValueError("sticky_max_age needs sticky_cookie")
        return self
