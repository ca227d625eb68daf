"""The ``redirect`` plugin's fourth mode: a Location built from the request's URL with
some of its parts replaced (the Gateway API's ``RequestRedirect`` filter)::

    [filters.to-new-host]
    plugin = "redirect"
    config.hostname = "new.example.com"       # http://old.example.com:8080/a?x=1
    config.scheme = "https"                   #   -> https://new.example.com/a?x=1
    config.replace_prefix = { from = "/a", to = "/b" }   # -> .../b?x=1 (or config.path)
    config.code = 301                         # default 302

Each part left out is the request's own: its scheme, its Host's name and its path.
The port is ``port`` when given; else, when ``scheme`` is given, that scheme's
well-known port; else the port of the request's Host. A port that is the scheme's
well-known one (80 for http, 443 for https) is left out of the Location.
``replace_prefix`` replaces whole path elements, like the ``rewrite`` plugin: with
``from = "/foo"`` and ``to = "/xyz"``, ``/foo/bar`` becomes ``/xyz/bar``; with ``to = "/"``,
``/bar``. The query string is always kept.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field, field_validator

from plugin_sdk import Context, PluginConfig

WELL_KNOWN = {"http": 80, "https": 443}


def _plain_path(name: str, value: str) -> str:
    if not value.startswith("/") or value.startswith("//"):
        raise ValueError(f"{name} must be a path starting with a single '/': {value!r}")
    if any(c in value for c in "?#\\ \t\r\n\0"):
        raise ValueError(f"{name} must be a plain path: {value!r}")
    return value


class PrefixSwap(PluginConfig):
    from_: str = Field(alias="from", description="Path prefix to replace (whole elements).")
    to: str = Field(description="What replaces it ('/' removes it).")

    @field_validator("from_", "to")
    @classmethod
    def _path(cls, value: str) -> str:
        return _plain_path("a prefix", value)


class PartsConfig(PluginConfig):
    scheme: str | None = Field(None, description="'http' or 'https' (default: the request's).")
    hostname: str | None = Field(None, description="Host name (default: the request's).")
    port: int | None = Field(None, ge=1, le=65535, description="Port (see the rules above).")
    path: str | None = Field(None, description="Replace the whole path.")
    replace_prefix: PrefixSwap | None = Field(None, description="Replace a path prefix.")


def location_builder(
    scheme: str | None,
    hostname: str | None,
    port: int | None,
    path: str | None,
    prefix: PrefixSwap | None,
) -> Callable[[Context], str | None]:
    """A function from the request to the Location (None: the request has no Host)."""
    old = prefix.from_.rstrip("/") if prefix is not None else ""
    new = prefix.to.rstrip("/") if prefix is not None else ""

    def build(ctx: Context) -> str | None:
        request = ctx.request
        use_scheme = scheme or ctx.scheme or "http"
        host = request.host
        req_port = ""
        if host.startswith("["):
            end = host.find("]") + 1
            host, req_port = host[:end], host[end + 1 :]
        else:
            host, _, req_port = host.partition(":")
        if hostname is not None:
            host = hostname
        if not host:
            return None
        if port is not None:
            use_port: int | None = port
        elif scheme is not None:
            use_port = None
        else:
            use_port = int(req_port) if req_port.isdigit() else None
        where = f"{use_scheme}://{host}"
        if use_port is not None and use_port != WELL_KNOWN.get(use_scheme):
            where += f":{use_port}"
        new_path = request.path
        if path is not None:
            new_path = path
        elif prefix is not None and (new_path == old or new_path.startswith(old + "/")):
            new_path = (new + new_path[len(old) :]) or "/"
        if new_path.startswith("//"):
            new_path = "/" + new_path.lstrip("/")
        query = "?" + request.query if request.query else ""
        return where + new_path + query

    return build


def check_parts(cfg: PartsConfig) -> None:
    """Refuse inconsistent parts (called by the plugin's config validator)."""
    if cfg.scheme is not None and cfg.scheme not in WELL_KNOWN:
        raise ValueError(f"scheme must be 'http' or 'https', not {cfg.scheme!r}")
    if cfg.path is not None:
        _plain_path("path", cfg.path)
    if cfg.path is not None and cfg.replace_prefix is not None:
        raise ValueError("choose one of path and replace_prefix")
    if cfg.hostname is not None and (
        not cfg.hostname or any(c in cfg.hostname for c in "/?#@:\\ \t\r\n\0")
    ):
        raise ValueError(f"invalid hostname {cfg.hostname!r}")
