"""The ``rewrite`` plugin: rewrite the request path and Host on the way upstream.

At most one path rewrite per filter — ``strip_prefix``, ``replace_prefix`` or
``regex`` + ``replacement`` — plus, independently, ``host``::

    [filters.user-api]
    plugin = "rewrite"
    config.strip_prefix = "/user"          # /user/api/x -> /api/x, /user -> /

    [filters.v1-to-v2]
    plugin = "rewrite"
    config.replace_prefix = { from = "/v1", to = "/v2" }   # /v1/items -> /v2/items

    [filters.rewrite-target]
    plugin = "rewrite"
    config.regex = "/something(/|$)(.*)"   # NGINX Ingress rewrite-target
    config.replacement = "/$2"             # /something -> /, /something/new -> /new
    config.host = "internal.svc"

Rules:

* Prefixes match whole path elements, like route prefixes: ``/user`` matches ``/user``
  and ``/user/...``, never ``/username``. A trailing ``/`` in a prefix is ignored.
* ``regex`` is matched at the start of the path (``re.match``; add ``$`` to anchor the
  end). On a match the whole path becomes ``replacement`` with ``$1`` .. ``$9``
  replaced by the groups (an unmatched group is empty) — NGINX's ``rewrite`` — so a
  part of the path the pattern does not capture is dropped. No match: unchanged.
  A result that does not start with ``/`` gets one.
* The query string is always kept as it was.
* ``host`` sets ``request.host``: the upstream sees it as ``Host`` when the upstream
  has ``preserve_host = true`` (the default). Routing has already happened.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import Field, field_validator, model_validator

from plugin_sdk import Context, Filter, PluginConfig
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


PathRewrite = Callable[[str], str | None]  # the new path, or None to leave it


def _prefix_rewrite(old: str, new: str) -> PathRewrite:
    """``old`` prefix (whole elements) -> ``new``; both without their trailing '/'."""
    elem = old + "/"
    cut = len(old)

    def rewrite(path: str) -> str | None:
        if path == old or path.startswith(elem):
            return (new + path[cut:]) or "/"
        return None

    return rewrite


def _regex_rewrite(pattern: str, replacement: str) -> PathRewrite:
    match = re.compile(pattern).match
    # "/a$1b$2" -> ["/a", 1, "b", 2]: literals and group numbers, split once here.
    parts: list[str | int] = []
    pos = 0
    for m in _GROUP.finditer(replacement):
        if m.start() > pos:
            parts.append(replacement[pos : m.start()])
        parts.append(int(m.group(1)))
        pos = m.end()
    if pos < len(replacement):
        parts.append(replacement[pos:])
    if all(isinstance(p, str) for p in parts):
        fixed = replacement if replacement.startswith("/") else "/" + replacement

        def constant(path: str) -> str | None:
            return fixed if match(path) else None

        return constant

    def rewrite(path: str) -> str | None:
        m = match(path)
        if m is None:
            return None
        out = "".join(p if isinstance(p, str) else (m.group(p) or "") for p in parts)
        return out if out.startswith("/") else "/" + out

    return rewrite


class Rewrite(Filter[RewriteConfig]):
    """Rewrite the path (prefix or regex) and the Host; the query string is kept."""

    Config = RewriteConfig

    def __init__(self, config: RewriteConfig) -> None:
        super().__init__(config)
        self._path: PathRewrite | None = None
        if config.strip_prefix is not None:
            self._path = _prefix_rewrite(config.strip_prefix.rstrip("/"), "")
        elif config.replace_prefix is not None:
            rp = config.replace_prefix
            self._path = _prefix_rewrite(rp.from_.rstrip("/"), rp.to.rstrip("/"))
        elif config.regex is not None and config.replacement is not None:
            self._path = _regex_rewrite(config.regex, config.replacement)
        self._host = config.host
        if self._path is None and self._host is None:
            self.skip_phases.add("on_request")

    def on_request(self, ctx: Context) -> None:
        request = ctx.request
        if self._path is not None:
            path = self._path(request.path)
            if path is not None and path != request.path:
                request.path = path
        if self._host is not None:
            request.host = self._host
