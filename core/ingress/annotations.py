"""NGINX Ingress annotations (``nginx.ingress.kubernetes.io/*``), read and checked.

:func:`read_annotations` turns one Ingress's annotations into :class:`Annotations`:
typed values with NGINX Ingress's defaults, and warnings. A value that cannot be used
never refuses the configuration: as NGINX Ingress does, the annotation falls back to
its default (``permanent-redirect-code: "310"`` → 301, a pattern that does not compile
→ the mainline), or, for a source range that cannot be read, the Ingress's paths are
denied (503) rather than opened. Each warning names the Ingress, its file, the
annotation and what was done instead. Annotations wasmgate does not implement are
listed too, never silently dropped.

:mod:`core.ingress.translate` then expresses them with the built-in plugins, by name
(``canary``, ``rewrite``, ``redirect``, ``cors``, ``ip-restriction``), and with route and
upstream fields (timeouts, body size, Host, TLS to the backend). This module only
reads; it imports no plugin.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

PREFIX = "nginx.ingress.kubernetes.io/"

# NGINX Ingress's documented defaults for enable-cors.
CORS_METHODS = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
CORS_HEADERS = (
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
    "Content-Type,Range,Authorization"
)
CORS_MAX_AGE = 1728000

CANARY_KEYS = frozenset(
    {
        "canary",
        "canary-by-header",
        "canary-by-header-value",
        "canary-by-header-pattern",
        "canary-by-cookie",
        "canary-weight",
        "canary-weight-total",
    }
)
SUPPORTED = CANARY_KEYS | {
    "rewrite-target",
    "use-regex",
    "app-root",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "ssl-redirect",
    "force-ssl-redirect",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-allow-credentials",
    "cors-expose-headers",
    "cors-max-age",
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "upstream-vhost",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "backend-protocol",
    "proxy-ssl-verify",
}
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://(\*\.)?[a-z0-9_.-]+(:[0-9]{1,5})?$", re.IGNORECASE)
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def is_canary(raw: dict[str, str]) -> bool:
    """Whether the annotations mark a canary Ingress (an unreadable value is not)."""
    return raw.get(PREFIX + "canary", "").strip() in _TRUE


def wants_regex(raw: dict[str, str]) -> bool:
    """Whether the annotations make NGINX Ingress read its host's paths as regexes."""
    return raw.get(PREFIX + "use-regex", "").strip() in _TRUE or PREFIX + "rewrite-target" in raw


REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass(frozen=True)
class Canary:
    header: str | None = None
    header_value: str | None = None
    header_pattern: str | None = None
    cookie: str | None = None
    weight: int = 0
    weight_total: int = 100

    def plugin_config(self, upstream: str) -> dict[str, Any]:
        """The ``canary`` plugin's config sending chosen requests to ``upstream``."""
        out: dict[str, Any] = {"upstream": upstream}
        if self.header:
            out["header"] = self.header
            if self.header_value is not None:
                out["header_value"] = self.header_value
            elif self.header_pattern is not None:
                out["header_pattern"] = self.header_pattern
        if self.cookie:
            out["cookie"] = self.cookie
        if self.weight:
            out["weight"] = self.weight
        if self.weight_total != 100:
            out["weight_total"] = self.weight_total
        return out


@dataclass
class Annotations:
    """What one Ingress's annotations ask for."""

    canary: Canary | None = None  # set when the Ingress is a canary
    rewrite_target: str | None = None
    use_regex: bool = False
    app_root: str | None = None
    redirect: tuple[str, int] | None = None  # (to, code): permanent or temporal
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    cors: dict[str, Any] | None = None  # the cors plugin's config
    allow_ranges: list[str] = field(default_factory=list)
    deny_ranges: list[str] = field(default_factory=list)
    upstream_vhost: str | None = None
    body_size: int | None = None  # bytes; 0 = no bound
    connect_timeout: float | None = None
    read_timeout: float | None = None
    backend_tls: bool = False
    backend_tls_verify: bool = True
    backend_h2: bool = False  # backend-protocol GRPC / GRPCS: HTTP/2 to the backend
    deny_all: bool = False  # a source range could not be read: every request refused
    warnings: list[str] = field(default_factory=list)

    @property
    def upstream_settings(self) -> dict[str, Any]:
        """Fields of the ``[[upstreams]]`` table these annotations set."""
        out: dict[str, Any] = {}
        if self.connect_timeout is not None:
            out["connect_timeout"] = self.connect_timeout
        if self.read_timeout is not None:
            out["read_timeout"] = self.read_timeout
        if self.upstream_vhost is not None:
            out["preserve_host"] = False
            out["host_header"] = self.upstream_vhost
        if self.backend_tls:
            out["tls"] = True
            if not self.backend_tls_verify:
                out["tls_verify"] = False
        if self.backend_h2:
            out["protocol"] = "h2" if self.backend_tls else "h2c"
        return out


class _Reader:
    def __init__(self, raw: dict[str, str], where: str) -> None:
        self.raw = raw
        self.where = where
        self.warnings: list[str] = []
        self.denied = False

    def get(self, key: str) -> str | None:
        value = self.raw.get(PREFIX + key)
        return None if value is None else value.strip()

    def bad(self, key: str, why: str, instead: str) -> None:
        """A value that cannot be used: warned about, with what is done instead."""
        self.warnings.append(f"{self.where}: annotation {PREFIX}{key}: {why}; {instead}")

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        # As NGINX Ingress reads booleans (Go's strconv.ParseBool).
        if value in _TRUE or value in _FALSE:
            return value in _TRUE
        instead = f"its default, {str(default).lower()}, applies"
        self.bad(key, f"{value!r} is not true or false", instead)
        return default

    def integer(self, key: str, low: int, high: int, instead: str) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            self.bad(key, f"{value!r} is not a whole number in {low}..{high}", instead)
            return None
        return int(value)

    def code(self, key: str, default: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if not value.isdigit() or int(value) not in REDIRECT_CODES:
            self.bad(
                key,
                f"{value!r} is not a redirect status (301, 302, 303, 307 or 308)",
                f"{default} is used, as NGINX Ingress does",
            )
            return default
        return int(value)

    def ranges(self, key: str) -> list[str]:
        value = self.get(key)
        if not value:
            return []
        out = []
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                # NGINX Ingress denies such a location; opening it would be worse.
                self.denied = True
                self.bad(
                    key,
                    f"{item!r} is not an IP address or CIDR range",
                    "every request to this Ingress's paths is refused (503), as NGINX Ingress does",
                )
        return out

    def words(self, key: str, default: str) -> list[str]:
        value = self.get(key)
        return [w.strip() for w in (default if value is None else value).split(",") if w.strip()]


def read_annotations(raw: dict[str, str], where: str) -> Annotations:
    """Read the ``nginx.ingress.kubernetes.io/*`` annotations of one Ingress."""
    r = _Reader(raw, where)
    a = Annotations()
    unknown = sorted(
        k[len(PREFIX) :] for k in raw if k.startswith(PREFIX) and k[len(PREFIX) :] not in SUPPORTED
    )
    if unknown:
        a.warnings.append(
            f"{where}: unsupported annotations, not applied: "
            + ", ".join(PREFIX + k for k in unknown)
        )
    if r.boolean("canary", False):
        a.canary = _canary(r)
        ignored = sorted(
            k[len(PREFIX) :]
            for k in raw
            if k.startswith(PREFIX) and k[len(PREFIX) :] in SUPPORTED - CANARY_KEYS
        )
        if ignored:
            a.warnings.append(
                f"{where}: a canary Ingress takes these from its mainline Ingress; ignored: "
                + ", ".join(PREFIX + k for k in ignored)
            )
        a.warnings += r.warnings
        return a

    a.rewrite_target = r.get("rewrite-target") or None
    a.use_regex = r.boolean("use-regex", False)
    app_root = r.get("app-root")
    if app_root:
        if not app_root.startswith("/") or app_root.startswith("//") or app_root == "/":
            r.bad("app-root", f"{app_root!r} is not a path other than '/'", "it is ignored")
        elif any(c in app_root for c in "?#\\ \t"):
            r.bad("app-root", f"{app_root!r} is not a plain path", "it is ignored")
        else:
            a.app_root = app_root
    permanent, temporal = r.get("permanent-redirect"), r.get("temporal-redirect")
    if permanent:
        a.redirect = (permanent, r.code("permanent-redirect-code", 301))
        if temporal:
            a.warnings.append(
                f"{where}: both permanent-redirect and temporal-redirect are set; "
                "permanent-redirect wins, as in NGINX Ingress"
            )
    elif temporal:
        a.redirect = (temporal, r.code("temporal-redirect-code", 302))
    a.ssl_redirect = r.boolean("ssl-redirect", True)
    a.force_ssl_redirect = r.boolean("force-ssl-redirect", False)
    if r.boolean("enable-cors", False):
        a.cors = _cors(r, a)
    a.allow_ranges = r.ranges("whitelist-source-range") or r.ranges("allowlist-source-range")
    a.deny_ranges = r.ranges("denylist-source-range")
    a.deny_all = r.denied
    vhost = r.get("upstream-vhost")
    if vhost:
        a.upstream_vhost = vhost
    size = r.get("proxy-body-size")
    if size is not None:
        m = _SIZE.match(size)
        if m is None:
            r.bad(
                "proxy-body-size",
                f"{size!r} is not a size (like 8m, 512k, 1g or 0)",
                "NGINX Ingress's default, 1m, applies",
            )
        else:
            a.body_size = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    for key, attr in (
        ("proxy-connect-timeout", "connect_timeout"),
        ("proxy-read-timeout", "read_timeout"),
    ):
        seconds = r.integer(key, 1, 86400, "the upstream's default timeout applies")
        if seconds is not None:
            setattr(a, attr, float(seconds))
    protocol = r.get("backend-protocol")
    if protocol is not None:
        kind = protocol.upper()
        if kind in ("HTTPS", "GRPCS"):
            a.backend_tls = True
        if kind in ("GRPC", "GRPCS"):
            a.backend_h2 = True  # gRPC needs HTTP/2: h2c, or h2 over TLS
        elif kind not in ("HTTP", "HTTPS"):
            a.warnings.append(
                f"{where}: backend-protocol {protocol!r} is not supported (HTTP, HTTPS, "
                "GRPC and GRPCS are); the backend is spoken to over HTTP"
            )
    a.backend_tls_verify = r.boolean("proxy-ssl-verify", True)
    a.warnings += r.warnings
    return a


def _canary(r: _Reader) -> Canary:
    header = r.get("canary-by-header") or None
    value = r.get("canary-by-header-value") or None
    pattern = r.get("canary-by-header-pattern") or None
    if (value or pattern) and not header:
        key = "canary-by-header-value" if value else "canary-by-header-pattern"
        r.bad(key, "needs canary-by-header (the header to look at)", "it is ignored")
        value = pattern = None
    if pattern is not None and value is None:
        try:
            re.compile(pattern)
        except re.error as exc:
            r.bad(
                "canary-by-header-pattern",
                f"{pattern!r} is not a regular expression ({exc})",
                "the header rule is ignored: those requests go to the mainline, as in NGINX "
                "Ingress (the cookie and weight rules still apply)",
            )
            header = pattern = None
    total = r.integer("canary-weight-total", 1, 1_000_000, "the default total, 100, is used")
    total = total or 100
    weight = r.integer("canary-weight", 0, 1_000_000, "0 is used: no request by weight") or 0
    if weight > total:
        r.bad(
            "canary-weight",
            f"{weight} is more than canary-weight-total ({total})",
            "the canary gets every request, as in NGINX Ingress",
        )
        weight = total
    return Canary(
        header=header,
        header_value=value,
        header_pattern=pattern if value is None else None,
        cookie=r.get("canary-by-cookie") or None,
        weight=weight,
        weight_total=total,
    )


def _cors(r: _Reader, a: Annotations) -> dict[str, Any]:
    origins = []
    for origin in r.words("cors-allow-origin", "*"):
        if origin == "*" or _ORIGIN.match(origin):
            origins.append(origin)
        else:
            r.bad(
                "cors-allow-origin",
                f"{origin!r} is not an origin (scheme://host[:port])",
                "that entry is left out, as NGINX Ingress does",
            )
    if not origins or "*" in origins:
        # Absent, blank, or nothing usable in it: NGINX Ingress answers '*'.
        origins = ["*"]
    credentials = r.boolean("cors-allow-credentials", True)
    if "*" in origins and credentials:
        # NGINX Ingress answers credentialed requests from any origin this way; that
        # hands every site the user's cookies, so we never do.
        a.warnings.append(
            f"{r.where}: cors-allow-origin is '*' with credentials allowed (the NGINX "
            "Ingress default); wasmgate never combines the two, so credentials are not "
            "allowed: list the origins in cors-allow-origin to allow them"
        )
        credentials = False
    max_age = r.integer("cors-max-age", 0, 1 << 31, f"the default, {CORS_MAX_AGE}, is used")
    out: dict[str, Any] = {
        "allow_origins": origins,
        "allow_methods": [m.upper() for m in r.words("cors-allow-methods", CORS_METHODS)],
        "allow_headers": r.words("cors-allow-headers", CORS_HEADERS),
        "allow_credentials": credentials,
        "max_age": CORS_MAX_AGE if max_age is None else max_age,
        # As NGINX Ingress answers a preflight: the allowed headers listed (not the
        # requested ones reflected), and 204 without CORS headers when refused.
        "preflight_headers": "list",
        "refused_preflight_status": 204,
    }
    expose = r.words("cors-expose-headers", "")
    if expose:
        out["expose_headers"] = expose
    return out
