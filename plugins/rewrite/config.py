"""The configuration of the rewrite plugin (plugins/rewrite/filter.py has the filter).

A module of its own so that `make compile` may compile the filter: pydantic models
do not run compiled by mypyc."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from plugin_sdk import PluginConfig
from plugin_sdk.config import check_regex

_GROUP = re.compile(r"\$(\d?)")
_HOST = re.compile(r"[A-Za-z0-9._~\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _check_path(name: str, value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{name} must start with '/': {value!r}")
    if any(c in value for c in "?# \t\r\n\0"):
        raise ValueError(f"{name} must be a plain path (no '?', '#', spaces): {value!r}")
    return value


class PrefixReplace(PluginConfig):
    from_: str = Field("/", alias="from", description="Path prefix to replace.")
    to: str = Field("/", description="What replaces it.")

    @field_validator("from_", "to")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path("a prefix", value)


class RewriteConfig(PluginConfig):
    strip_prefix: str | None = Field(
        None, description="Path prefix to remove (/user/api -> /api, /user -> /)."
    )
    replace_prefix: PrefixReplace | None = Field(
        None, description="Replace a path prefix: { from = '/old', to = '/new' }."
    )
    regex: str | None = Field(
        None, description="Regular expression matched at the start of the path (re.match)."
    )
    replacement: str | None = Field(
        None, description="The new path when 'regex' matches; $1..$9 insert its groups."
    )
    host: str | None = Field(
        None, description="New Host for the upstream (host or host:port; needs preserve_host)."
    )

    @field_validator("strip_prefix")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is not None:
            _check_path("strip_prefix", value)
            if value.rstrip("/") == "":
                raise ValueError("stripping '/' changes nothing; use a longer prefix")
        return value

    @field_validator("replace_prefix")
    @classmethod
    def _replace(cls, value: PrefixReplace | None) -> PrefixReplace | None:
        if value is not None and value.from_.rstrip("/") == value.to.rstrip("/"):
            raise ValueError(f"'from' and 'to' are the same prefix ({value.from_!r})")
        return value

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return check_regex(value)

    @field_validator("replacement")
    @classmethod
    def _replacement(cls, value: str | None) -> str | None:
        if value is not None:
            if any(c in value for c in "?# \t\r\n\0"):
                raise ValueError(f"replacement must be a plain path: {value!r}")
            for m in _GROUP.finditer(value):
                if m.group(1) in ("", "0"):
                    raise ValueError(f"only $1..$9 may follow '$' in the replacement: {value!r}")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not _HOST.fullmatch(value):
            raise ValueError(f"invalid host {value!r} (expected host or host:port)")
        return value

    @model_validator(mode="after")
    def _one_path_rewrite(self) -> RewriteConfig:
        chosen = [
            name
            for name in ("strip_prefix", "replace_prefix", "regex")
            if getattr(self, name) is not None
        ]
        if len(chosen) > 1:
            raise ValueError(f"choose one path rewrite, not {' and '.join(chosen)}")
        if (self.regex is None) != (self.replacement is None):
            raise ValueError("regex and replacement go together")
        if self.regex is not None and self.replacement is not None:
            groups = re.compile(self.regex).groups
            for m in _GROUP.finditer(self.replacement):
                if int(m.group(1)) > groups:
                    raise ValueError(
                        f"replacement uses ${m.group(1)} but the regex has {groups} group(s)"
                    )
        return self
