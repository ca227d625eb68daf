"""The ``cors`` plugin: answer CORS preflights and decorate responses for allowed origins.

::

    [filters.cors]
    plugin = "cors"
    config.allow_origins = ["https://app.example.com", "https://*.example.com"]
    config.allow_headers = ["Authorization", "X-Request-Id"]
    config.expose_headers = ["X-Request-Id"]
    config.allow_credentials = true
    config.max_age = 3600

    [[routes]]
    name = "api"
    upstream = "api"
    filters = ["cors", "key-auth"]   # cors first, so its headers also decorate auth's 401

Behaviour, and the choices made where the Fetch standard leaves room:

* **Origins.** An entry is an exact origin (``https://app.example.com``, port included
  when not the default), a one-label wildcard (``https://*.example.com`` matches
  ``https://a.example.com``, not ``https://a.b.example.com`` nor the apex: the same
  rule as route ``hosts``), or ``"*"`` alone. Compared case-insensitively. ``"null"``
  is refused at load time (any sandboxed iframe or file:// page sends it).
* **Credentials never meet "*".** ``allow_credentials = true`` with ``"*"`` in
  ``allow_origins`` (or in ``expose_headers``) is refused at load time: list the origins.
* **Preflight** (OPTIONS with Origin and Access-Control-Request-Method): answered by
  the gateway, never forwarded. Allowed → **204** with Access-Control-Allow-Origin,
  -Allow-Methods, -Allow-Headers (the requested headers, reflected, once all of them
  are allowed), -Max-Age, -Allow-Credentials. Refused (origin, method or any requested
  header not allowed) → **403** with a one-line text reason and no CORS headers; the
  browser then blocks the real request. The CORS-safelisted headers (Accept,
  Accept-Language, Content-Language, Content-Type) are always allowed. Two switches
  answer as NGINX Ingress does (the Ingress translation sets both):
  ``preflight_headers = "list"`` sends ``allow_headers`` itself as
  Access-Control-Allow-Headers instead of the reflected request, and
  ``refused_preflight_status = 204`` answers a refused preflight with an empty 204
  without CORS headers (the browser blocks the real request all the same).
* **Other requests with an Origin** (a non-preflight OPTIONS included) go on to the
  upstream. If the origin is allowed, the response phase sets
  Access-Control-Allow-Origin (``*`` when ``allow_origins = ["*"]``, else the request's
  origin), -Allow-Credentials and -Expose-Headers, replacing any the upstream sent. It
  does so on local replies too (a 401 or 403 from a later filter). A refused origin gets
  no CORS headers and the upstream's answer is left as it is.
* **Vary: Origin** is added to every response to a request that carried an Origin,
  unless the policy is ``"*"`` (then the answer does not depend on the origin).
  Requests without Origin are not touched at all, to keep them cheap; a shared cache
  in front of the gateway should therefore key on Origin itself.
"""

from __future__ import annotations

from plugin_sdk import Context, Filter, Headers, LocalReply
from plugins.cors.config import (
    _TEXT,
    SAFELISTED_HEADERS,
    CorsConfig,
)


class Cors(Filter[CorsConfig]):
    """Preflights answered locally; responses to allowed origins decorated."""

    Config = CorsConfig

    def __init__(self, config: CorsConfig) -> None:
        super().__init__(config)
        origins = config.allow_origins
        self._any_origin = origins == ["*"]
        self._vary = not self._any_origin
        self._exact = frozenset(o for o in origins if "://*." not in o)
        # https://*.example.com:8443 -> ("https://", ".example.com:8443")
        self._wild = tuple(
            (o.split("*", 1)[0], o.split("*", 1)[1]) for o in origins if "://*." in o
        )
        self._any_method = config.allow_methods == ["*"]
        self._methods = frozenset(config.allow_methods)
        self._any_header = config.allow_headers == ["*"]
        self._headers = SAFELISTED_HEADERS | {h.lower() for h in config.allow_headers}
        # Per-instance key: two cors filters in one chain keep their own decision.
        self._key = f"cors:{id(self)}"

        common: list[tuple[str, str]] = []
        if config.allow_credentials:
            common.append(("Access-Control-Allow-Credentials", "true"))
        self._actual = tuple(common)
        if config.expose_headers:
            self._actual += (("Access-Control-Expose-Headers", ", ".join(config.expose_headers)),)
        preflight = list(common)
        if not self._any_method:
            preflight.append(("Access-Control-Allow-Methods", ", ".join(config.allow_methods)))
        preflight.append(("Access-Control-Max-Age", str(config.max_age)))
        if self._vary:
            preflight.append(("Vary", "Origin"))
        self._preflight_static = tuple(preflight)
        self._listed: str | None = None
        if config.preflight_headers == "list" and config.allow_headers:
            self._listed = ", ".join(config.allow_headers)
        self._refused_status = config.refused_preflight_status

    def _allowed(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None if refused."""
        if self._any_origin:
            return "*"
        lower = origin.lower()
        if lower in self._exact:
            return origin
        for prefix, suffix in self._wild:
            if lower.startswith(prefix) and lower.endswith(suffix):
                label = lower[len(prefix) : len(lower) - len(suffix)]
                if label and not any(c in label for c in "./:@[]"):
                    return origin
        return None

    def on_request(self, ctx: Context) -> LocalReply | None:
        origin = None
        for name, value in ctx.request.headers.raw:
            if len(name) == 6 and name.lower() == b"origin":
                origin = value.decode("latin-1")
                break
        if origin is None:
            return None  # not a CORS request: the common, cheap path
        allowed = self._allowed(origin)
        if ctx.request.method == "OPTIONS":
            method = ctx.request.headers.get("access-control-request-method")
            if method is not None:
                return self._preflight(ctx, allowed, method)
        if allowed is not None or self._vary:
            ctx.state[self._key] = allowed or ""
        return None

    def _preflight(self, ctx: Context, allowed: str | None, method: str) -> LocalReply:
        if allowed is None:
            return self._refuse("origin not allowed")
        method = method.strip()
        if not self._any_method and method not in self._methods:
            return self._refuse(f"method {method!r} not allowed")
        requested = [
            h.strip().lower()
            for v in ctx.request.headers.get_all("access-control-request-headers")
            for h in v.split(",")
            if h.strip()
        ]
        if not self._any_header:
            for header in requested:
                if header not in self._headers:
                    return self._refuse(f"header {header!r} not allowed")
        headers = [("Access-Control-Allow-Origin", allowed), *self._preflight_static]
        if self._any_method:
            headers.append(("Access-Control-Allow-Methods", method))
        if self._listed is not None:
            headers.append(("Access-Control-Allow-Headers", self._listed))
        elif requested:
            headers.append(("Access-Control-Allow-Headers", ", ".join(dict.fromkeys(requested))))
        return LocalReply(204, headers)

    def _refuse(self, reason: str) -> LocalReply:
        if self._refused_status == 204:
            return LocalReply(204, [])
        return _refuse(reason)

    def on_response(self, ctx: Context) -> None:
        allowed = ctx.state.get(self._key)
        if allowed is None:
            return  # no Origin, or a preflight this filter answered itself
        assert ctx.response is not None
        headers = ctx.response.headers
        if allowed:
            headers.set("Access-Control-Allow-Origin", allowed)
            for name, value in self._actual:
                headers.set(name, value)
        if self._vary:
            _add_vary_origin(headers)


def _refuse(reason: str) -> LocalReply:
    return LocalReply(403, [_TEXT], f"CORS preflight refused: {reason}\n")


def _add_vary_origin(headers: Headers) -> None:
    for value in headers.get_all("vary"):
        for token in value.split(","):
            token = token.strip().lower()
            if token in ("origin", "*"):
                return
    headers.add("Vary", "Origin")
