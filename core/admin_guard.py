"""Who may talk to the admin listener: the ``Host`` check and the token for reads.

**Host.** Every admin request must name the listener in ``Host``; any other name gets
421. A browser sends the name of the page's site there, so a web page whose name the
attacker re-points at 127.0.0.1 (DNS rebinding) cannot read or drive the admin API
from a victim's browser. Accepted: an IP literal (a page reached by IP address is the
admin's own origin, nothing to rebind), the listener's own name when it listens on
one, ``localhost`` when it listens on loopback or on every address, and the names in
``[admin] allowed_hosts`` (``*.example.com`` covers one or more labels). A request
without ``Host`` (HTTP/1.0, never a browser) passes.

**Token.** State-changing calls always need ``Authorization: Bearer <[admin] token>``.
Reads (``/config``, ``/routes``, ``/plugins``, ``/metrics``, the dashboard's
``/api/...``) need it too when the listener is not on loopback; on loopback they are
open. ``/live``, ``/ready`` and the dashboard's static files are always open.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

ALWAYS_OPEN = frozenset({"/live", "/ready", "/"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_name(header: str) -> str:
    """``Host``'s name without port or brackets, lower case, no trailing dot."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        header = header.partition(":")[0]
    return header.rstrip(".")


class Guard:
    """The checks of one admin listener bound to ``listen_host``."""

    def __init__(self, listen_host: str, allowed_hosts: Sequence[str], token: str | None) -> None:
        listen_host = listen_host.strip("[]").lower()
        wildcard = listen_host in ("", "0.0.0.0", "::")
        self.loopback = is_loopback(listen_host)
        self.names = {h.lower().rstrip(".") for h in allowed_hosts if not h.startswith("*.")}
        self.suffixes = tuple(h.lower()[1:] for h in allowed_hosts if h.startswith("*."))
        if not wildcard:
            self.names.add(listen_host)
        if self.loopback or wildcard:
            self.names.add("localhost")
        self.token = token

    def host_allowed(self, header: str | None) -> bool:
        if header is None:
            return True
        name = host_name(header)
        return _is_ip(name) or name in self.names or name.endswith(self.suffixes)

    def authorized(self, request: web.Request) -> web.StreamResponse | None:
        """None when the request carries the token; else the refusal to send."""
        if self.token is None:
            return web.json_response(
                {"error": "this call is disabled: set [admin] token"}, status=403
            )
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return web.json_response(
                {"error": "this call needs Authorization: Bearer <[admin] token>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="wasmgate-admin"'},
            )
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.host_allowed(request.headers.get("Host")):
            return web.json_response(
                {
                    "error": f"Host {host_name(request.headers['Host'])!r} is not a name of "
                    "this admin listener; add it to [admin] allowed_hosts"
                },
                status=421,
            )
        path = request.path
        is_read = request.method in ("GET", "HEAD")
        open_path = path in ALWAYS_OPEN or path.startswith("/dashboard/")
        if is_read and not open_path and not self.loopback:
            refused = self.authorized(request)
            if refused is not None:
                return refused
        return await handler(request)
