"""The per-request context every filter phase receives."""

from __future__ import annotations

import logging
from typing import Any, Final

from plugin_sdk._native import mypyc_attr
from plugin_sdk.http import Request, Response, TLSInfo

_root: Final = logging.getLogger("wasmgate.plugin")


# Compiled by mypyc (scripts/compile.py): a native class, opened to Python subclasses.
@mypyc_attr(allow_interpreted_subclasses=True)
class Context:
    """Everything a filter may know about, and change in, one request.

    Attributes:
        request: the client's request (:class:`~plugin_sdk.http.Request`).
        response: the response on its way back; ``None`` in the request phase.
        route: name of the route that matched (``"default"`` for the default route).
        upstream: name of the upstream the request will go to. Set it in the request
            phase to send the request elsewhere (canary does); it must name an
            upstream of gateway.toml, else the client gets 500 and the error is
            logged.
        client_ip: the client's address as the gateway trusts it: the TCP peer, or
            with ``server.trusted_hops`` the address our trusted proxies vouch for.
        scheme: the scheme the client used, as the gateway trusts it: our listener's,
            or with ``server.trusted_hops`` a trusted proxy's X-Forwarded-Proto (so an
            HTTPS redirect behind a TLS-terminating balancer does not loop).
        tls: TLS details of the client connection, or None on plain HTTP.
        state: a dict shared by the filters of this request (per-request state).
        stopped_by: name of the filter that answered the request itself: with a
            local reply from ``on_request``, or by failing closed (a 500) in any
            phase; ``None`` while the request goes on to the upstream. Set by the
            gateway (read it in ``on_response`` or ``on_log``); the access log
            carries it too.
        log: a logger whose records are tagged with the current filter's name.
    """

    __slots__ = (
        "client_ip",
        "log",
        "request",
        "response",
        "route",
        "scheme",
        "state",
        "stopped_by",
        "tls",
        "upstream",
    )

    def __init__(
        self,
        request: Request,
        route: str = "",
        upstream: str = "",
        client_ip: str | None = None,
        scheme: str | None = None,
        tls: TLSInfo | None = None,
    ) -> None:
        self.request = request
        self.response: Response | None = None
        self.route = route
        self.upstream = upstream
        self.client_ip = client_ip if client_ip is not None else request.client_ip
        self.scheme = scheme if scheme is not None else request.scheme
        self.tls = tls
        self.state: dict[str, Any] = {}
        self.stopped_by: str | None = None
        self.log: logging.Logger | logging.LoggerAdapter[logging.Logger] = _root


def filter_logger(name: str) -> logging.LoggerAdapter[logging.Logger]:
    """The logger a filter called ``name`` gets as ``ctx.log`` (tags ``[name]``)."""
    return _Tagged(logging.getLogger(f"wasmgate.plugin.{name}"), {"filter": name})


class _Tagged(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        assert self.extra is not None
        return f"[{self.extra['filter']}] {msg}", kwargs
