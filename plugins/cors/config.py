"""The configuration of the cors plugin (plugins/cors/filter.py has the filter).

A module of its own so that `make compile` may compile the filter: pydantic models
do not run compiled by mypyc."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from plugin_sdk import PluginConfig

SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})
DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ORIGIN = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<wild>\*\.)?"
    r"(?P<host>[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])"
    r"(?P<port>:[0-9]{1,5})?$"
)
_TEXT = ("Content-Type", "text/plain; charset=utf-8")


def _origin_entry(value: str) -> str:
    if value == "*":
        return value
    text = value.strip().lower()
    if text == "null":
        raise ValueError("'null' cannot be allowed: sandboxed iframes and file:// pages send it")
    m = _ORIGIN.match(text)
    if m is None:
        raise ValueError(
            f"invalid origin {value!r}: expected scheme://host[:port] with no path or "
            "trailing slash, e.g. 'https://app.example.com' or 'https://*.example.com'"
        )
    if m["wild"] and m["host"].startswith("["):
        raise ValueError(f"invalid origin {value!r}: a wildcard cannot precede an IP literal")
    return text


def _tokens(values: list[str], what: str, *, upper: bool = False) -> list[str]:
    out: list[str] = []
    for value in values:
        text = value.strip()
        if text != "*" and not _TOKEN.match(text):
            raise ValueError(f"invalid {what} {value!r}")
        text = text.upper() if upper else text
        if text not in out:
            out.append(text)
    if "*" in out and len(out) > 1:
        raise ValueError(f'"*" must be the only {what} when it is used')
    return out


class CorsConfig(PluginConfig):
    allow_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description='Allowed origins: exact ("https://app.example.com"), one-label wildcard '
        '("https://*.example.com"), or "*" alone for any origin.',
    )
    allow_methods: list[str] = Field(
        default_factory=lambda: list(DEFAULT_METHODS),
        description='Methods a preflight may ask for; "*" alone allows any method.',
    )
    allow_headers: list[str] = Field(
        default_factory=list,
        description="Request headers a preflight may ask for, besides the CORS-safelisted "
        'ones (always allowed); "*" alone allows any header.',
    )
    expose_headers: list[str] = Field(
        default_factory=list,
        description="Response headers the browser lets scripts read "
        "(Access-Control-Expose-Headers).",
    )
    allow_credentials: bool = Field(
        False,
        description="Send Access-Control-Allow-Credentials: true (cookies, HTTP auth). "
        'Cannot be combined with "*" origins.',
    )
    max_age: int = Field(
        600, ge=0, description="Seconds a browser may cache a preflight (Access-Control-Max-Age)."
    )
    preflight_headers: Literal["reflect", "list"] = Field(
        "reflect",
        description="Access-Control-Allow-Headers of an allowed preflight: the requested "
        "headers ('reflect') or the allow_headers list itself ('list', as NGINX Ingress).",
    )
    refused_preflight_status: Literal[403, 204] = Field(
        403,
        description="Status of a refused preflight: 403 with a reason, or 204 with no "
        "body (as NGINX Ingress); neither carries CORS headers.",
    )

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for item in value:
            origin = _origin_entry(item)
            if origin not in out:
                out.append(origin)
        if "*" in out and len(out) > 1:
            raise ValueError('"*" must be the only origin when it is used')
        return out

    @field_validator("allow_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        return _tokens(value, "method", upper=True)

    @field_validator("allow_headers", "expose_headers")
    @classmethod
    def _headers(cls, value: list[str]) -> list[str]:
        return _tokens(value, "header name")

    @model_validator(mode="after")
    def _no_credentials_with_star(self) -> Self:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError(
                'allow_credentials = true cannot be combined with allow_origins = ["*"]: '
                "list the origins that may send credentials"
            )
        if self.allow_credentials and "*" in self.expose_headers:
            raise ValueError(
                'expose_headers = ["*"] is not a wildcard when credentials are allowed: '
                "list the headers"
            )
        return self
