"""The ``redirect`` plugin: answer from the gateway with a redirect.

Four modes; ``to`` and the URL parts (:mod:`plugins.redirect.parts`: ``scheme``,
``hostname``, ``port``, ``path``, ``replace_prefix``) stand alone, ``https`` and
``app_root`` may be combined::

    [filters.moved]
    plugin = "redirect"
    config.to = "https://new.example.com"   # or a path: "/new"
    config.keep_path = true                 # /a/b?x=1 -> https://new.example.com/a/b
    config.keep_query = true                #          -> ...?x=1
    config.code = 301                       # default 302

    [filters.force-https]
    plugin = "redirect"
    config.https = true                     # http://shop.test:8080/a?x=1 -> https://shop.test/a?x=1
    config.https_port = 8443                # optional: -> https://shop.test:8443/a?x=1

    [filters.app-root]
    plugin = "redirect"
    config.app_root = "/app"                # exactly "/" -> /app (query kept), 302
    config.app_root_absolute = true         # -> http://shop.test:8080/app (as NGINX Ingress)
    config.app_root_keep_query = false      # the query string is dropped (as NGINX Ingress)

Rules:

* ``to`` redirects every request of the route. ``keep_path`` appends the request's
  path to ``to`` (minus ``to``'s trailing ``/``); ``keep_query`` appends its query
  string (after ``&`` if ``to`` already has one).
* ``https`` redirects requests the client made over plain ``http`` to
  ``https://`` + the Host without its port (or with ``https_port``; 443 is left out)
  + path + query; ``https`` requests pass. Default code **308** (keeps the method and
  body). The scheme is ``ctx.scheme``: the client connection's, or, behind a
  TLS-terminating balancer listed in ``server.trusted_hops``, its X-Forwarded-Proto,
  so the redirect does not loop there.
* ``app_root`` redirects only the exact path ``/``, keeping the query; default **302**.
  With ``https`` too, the HTTPS redirect comes first. ``app_root_absolute`` writes the
  Location as an absolute URL (the request's scheme and Host, port included: what NGINX
  Ingress's ``app-root`` answers); a Host that is not a plain host[:port] gets the path
  alone. ``app_root_keep_query = false`` drops the query string, as NGINX does.
* The URL parts redirect every request of the route to its own URL with those parts
  replaced (the Gateway API's ``RequestRedirect``); default **302**.
* ``code`` (301, 302, 303, 307 or 308) overrides the default of every mode.

The reply carries ``Location`` and a one-line ``text/plain`` body.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from plugin_sdk import Context, Filter, LocalReply
from plugins.redirect.parts import PartsConfig, check_parts, location_builder

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_URL = re.compile(r"https?://[^/?#\s]+(/[^\s#]*)?|/[^\s#]*")
_PORT = re.compile(r":[0-9]*$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)


class RedirectConfig(PartsConfig):
    code: int | None = Field(
        None,
        description="Status code: 301, 302, 303, 307 or 308 "
        "(default: 302 for 'to' and 'app_root', 308 for 'https').",
    )
    to: str | None = Field(
        None, description="Redirect every request here: an absolute http(s) URL or a path."
    )
    keep_path: bool = Field(False, description="With 'to': append the request path.")
    keep_query: bool = Field(False, description="With 'to': append the request query string.")
    https: bool = Field(False, description="Redirect plain-HTTP requests to the same URL on HTTPS.")
    https_port: int | None = Field(
        None, ge=1, le=65535, description="Port for the HTTPS URL (default: none, i.e. 443)."
    )
    app_root: str | None = Field(
        None, description="Redirect the exact path '/' to this path (the query is kept)."
    )
    app_root_absolute: bool = Field(
        False,
        description="With 'app_root': answer with an absolute URL (scheme://Host/app_root), "
        "as NGINX Ingress does.",
    )
    app_root_keep_query: bool = Field(
        True, description="With 'app_root': keep the query string (false: drop it, as NGINX)."
    )

    @field_validator("code")
    @classmethod
    def _code(cls, value: int | None) -> int | None:
        if value is not None and value not in REDIRECT_CODES:
            raise ValueError(f"{value} is not a redirect code (301, 302, 303, 307 or 308)")
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        if value is not None and (not _URL.fullmatch(value) or "\\" in value):
            raise ValueError(
                f"'to' must be an http(s):// URL or a path starting with '/': {value!r}"
            )
        return value

    @field_validator("app_root")
    @classmethod
    def _app_root(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith("/") or value == "/" or value.startswith("//"):
                raise ValueError(f"app_root must be a path other than '/': {value!r}")
            if any(c in value for c in "?#\\ \t\r\n\0"):
                raise ValueError(f"app_root must be a plain path: {value!r}")
        return value

    @property
    def has_parts(self) -> bool:
        return any(
            v is not None
            for v in (self.scheme, self.hostname, self.port, self.path, self.replace_prefix)
        )

    @model_validator(mode="after")
    def _modes(self) -> RedirectConfig:
        if self.has_parts:
            if self.to is not None or self.https or self.app_root is not None or self.keep_path:
                raise ValueError(
                    "scheme / hostname / port / path / replace_prefix redirect every request: "
                    "they cannot be combined with 'to', 'https' or 'app_root'"
                )
            check_parts(self)
            return self
        if self.to is not None and (self.https or self.app_root is not None):
            raise ValueError(
                "'to' redirects every request: it cannot be combined with 'https' or 'app_root'"
            )
        if self.to is None and not self.https and self.app_root is None:
            raise ValueError("set one of 'to', 'https' or 'app_root'")
        if (self.keep_path or self.keep_query) and self.to is None:
            raise ValueError("keep_path / keep_query apply to 'to' only")
        if self.keep_path and self.to is not None and "?" in self.to:
            raise ValueError("keep_path needs a 'to' without a query string")
        if self.https_port is not None and not self.https:
            raise ValueError("https_port needs https = true")
        if self.app_root is None and (self.app_root_absolute or not self.app_root_keep_query):
            raise ValueError("app_root_absolute / app_root_keep_query apply to 'app_root' only")
        return self


def _reply(code: int, location: str) -> LocalReply:
    return LocalReply(
        code,
        {"location": location, "content-type": "text/plain; charset=utf-8"},
        f"redirecting to {location}\n",
    )


class Redirect(Filter[RedirectConfig]):
    """Answer with a redirect; the upstream is never called for a redirected request."""

    Config = RedirectConfig

    def __init__(self, config: RedirectConfig) -> None:
        super().__init__(config)
        code = config.code
        self._to = config.to
        self._to_code = code or 302
        self._keep_path = config.keep_path
        self._keep_query = config.keep_query
        if self._to is not None and config.keep_path:
            self._to = self._to.rstrip("/")
        self._query_sep = "&" if self._to is not None and "?" in self._to else "?"
        self._https = config.https
        self._https_code = code or 308
        port = config.https_port
        self._https_port = f":{port}" if port is not None and port != 443 else ""
        self._app_root = config.app_root
        self._app_code = code or 302
        self._parts = (
            location_builder(
                config.scheme, config.hostname, config.port, config.path, config.replace_prefix
            )
            if config.has_parts
            else None
        )
        self._app_absolute = config.app_root_absolute
        self._app_query = config.app_root_keep_query

    def on_request(self, ctx: Context) -> LocalReply | None:
        request = ctx.request
        if self._parts is not None:
            built = self._parts(ctx)
            if built is None:
                return LocalReply(400, {"content-type": "text/plain; charset=utf-8"}, "no Host\n")
            return _reply(self._to_code, built)
        if self._to is not None:
            location = self._to
            if self._keep_path:
                path = request.path
                if not location and path.startswith("//"):
                    path = "/" + path.lstrip("/")  # never a protocol-relative Location
                location += path
            if self._keep_query and request.query:
                location += self._query_sep + request.query
            return _reply(self._to_code, location or "/")
        query = "?" + request.query if request.query else ""
        if self._https and ctx.scheme == "http":
            host = request.host
            if not host:
                return LocalReply(400, {"content-type": "text/plain; charset=utf-8"}, "no Host\n")
            if not host.endswith("]"):  # an IPv6 literal's colons are not a port
                host = _PORT.sub("", host)
            location = f"https://{host}{self._https_port}{request.path}{query}"
            return _reply(self._https_code, location)
        if self._app_root is not None and request.path == "/":
            location = self._app_root + (query if self._app_query else "")
            host = request.host
            if self._app_absolute and host and _HOST.match(host):
                location = f"{ctx.scheme}://{host}{location}"
            return _reply(self._app_code, location)
        return None
