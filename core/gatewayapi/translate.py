"""HTTPRoutes → gateway.toml tables, through the same router and built-in plugins.

:func:`translate` returns a :class:`core.ingress.translate.Translation` like the
Ingress dialect's, so both share ``[kubernetes]``, ``ingress import`` and the render.

- **Order.** HTTPRoutes are taken oldest first (``creationTimestamp``, then
  namespace/name), rules and matches in order. Each match is one route named
  ``httproute.NS.NAME.RULE.MATCH``; the router's order then is the spec's: exact path,
  longest prefix, method, most headers, most query parameters, then this order.
- **Matches.** ``Exact`` → exact, ``PathPrefix`` → prefix by path element,
  ``RegularExpression`` → a regex matching the whole path; headers and query
  parameters ``Exact`` or ``RegularExpression`` (whole value); ``method``. Hostnames
  keep the spec's wildcards (``*.example.com`` covers any depth: ``host_wildcard``).
- **Backends.** A Service backendRef becomes the upstream ``NS.SERVICE.PORT`` (shared
  with Ingress translations). Several weighted ones: the first is the route's, each
  later one a ``canary`` filter with ``weight = w`` of ``weight_total`` = the sum of
  the weights so far; chained, they give each backend exactly its share. A backend in
  another namespace needs a ReferenceGrant there. A rule left with no usable backend
  answers 500, as the spec says (the ``respond`` plugin), with a warning.
- **Filters**, in the rule's order: ``RequestHeaderModifier`` and
  ``ResponseHeaderModifier`` → ``headers``; ``RequestRedirect`` → ``redirect`` (URL
  parts); ``URLRewrite`` → ``rewrite`` (``host``; ``ReplaceFullPath`` → the whole path,
  ``ReplacePrefixMatch`` → ``replace_prefix`` of the match's prefix);
  ``ExtensionRef`` → the ``[filters.NAME]`` of gateway.toml it names. The weighted
  backend choice comes last. ``RequestMirror`` → ``mirror`` (a bodiless copy to the
  Service's endpoints). Other types are warnings.
- **Listeners.** A route attached only to HTTPS listeners redirects plain HTTP to
  HTTPS first (wasmgate serves every route on every listener; this keeps it off
  plain HTTP).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from core.config import Route
from core.gatewayapi.attach import Attached, Gateways, granted
from core.gatewayapi.filters import RuleFilters
from core.gatewayapi.objects import (
    BackendRef,
    HTTPRoute,
    RouteMatch,
    RouteRule,
    read,
    unsupported,
)
from core.ingress.objects import Located, Manifests
from core.ingress.translate import Settings, Translation, _Translator

DEFAULT_CONTROLLER = "wasmgate.dev/gateway-controller"
NO_BACKEND = "gatewayapi.no-backend"
_DURATION = re.compile(r"^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?$")


@dataclass
class GatewayTranslation(Translation):
    routes_served: list[str] = field(default_factory=list)  # HTTPRoutes, ns/name
    gateways: list[str] = field(default_factory=list)


def _order(item: Located) -> tuple[str, str]:
    return (item.obj.metadata.creation or "", item.key)


def _seconds(text: str) -> float | None:
    m = _DURATION.match(text)
    if not m or not any(m.groups()):
        return None
    h, mi, s, ms = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def _full(pattern: str) -> str:
    return f"(?:{pattern})$"


class _Routes(RuleFilters):
    out: GatewayTranslation

    def __init__(
        self, found: Manifests, settings: Settings, gws: Gateways, filters: Collection[str]
    ) -> None:
        self.found = found
        self.gws = gws
        self.known_filters = filters
        self.out = GatewayTranslation()
        # The Ingress translator resolves Services to endpoints; its findings are ours.
        self._svc = _Translator(found, settings)
        self._upstreams: set[str] = set()

    def upstream(self, ref: BackendRef, route: Located, where: str) -> str | None:
        obj: HTTPRoute = route.obj
        ns = ref.namespace or obj.metadata.namespace
        if ref.kind != "Service" or ref.group != "":
            self.warn(
                f"{where}: backends of kind {ref.group or 'core'}/{ref.kind} are not supported"
            )
            return None
        if ref.port is None:
            self.warn(f"{where}: a Service backendRef needs a port")
            return None
        if ns != obj.metadata.namespace and not granted(
            self.gws.objs.grants, "HTTPRoute", obj.metadata.namespace, "Service", ns, ref.name
        ):
            self.warn(
                f"{where}: Service {ns}/{ref.name} is in another namespace and no "
                f"ReferenceGrant in {ns} allows HTTPRoutes of {obj.metadata.namespace} to "
                "refer to it"
            )
            return None
        for path in unsupported(ref, where.rsplit(" ", 1)[-1]):
            if not path.endswith(".filters") and ".filters[" not in path:
                self.warn(f"{where}: {path} is not supported and is ignored")
        if ref.filters:
            self.warn(f"{where}: filters on a backendRef are not supported and are ignored")
        name = f"{ns}.{ref.name}.{ref.port}"
        if name not in self._upstreams:
            endpoints = self._svc._endpoints(ns, ref.name, ref.port, where)
            self.out.warnings += self._svc.out.warnings
            self._svc.out.warnings.clear()
            if endpoints is None:
                return None
            self._upstreams.add(name)
            self.out.upstreams.append({"name": name, "endpoints": endpoints})
            self.out.notes[f"upstream {name}"] = f"service {ns}/{ref.name} port {ref.port}"
        return name

    def fail_filter(self) -> str:
        """The filter that answers 500 for a rule the gateway cannot serve as written
        (no backend it may use, or a filter it cannot apply), as the specification
        asks."""
        return self.add_filter(
            "gatewayapi.unusable-rule",
            "respond",
            {"status": 500, "body": "this route has no usable backend or filter\n"},
            "rules that cannot be served as written (answered 500)",
        )

    def no_backend(self) -> str:
        if NO_BACKEND not in self._upstreams:
            self._upstreams.add(NO_BACKEND)
            self.out.upstreams.append({"name": NO_BACKEND, "endpoints": []})
            self.out.notes[f"upstream {NO_BACKEND}"] = (
                "rules without a usable backend (answered 500)"
            )
        return NO_BACKEND

    def add_route(self, route: Located, attached: Attached) -> None:
        obj: HTTPRoute = route.obj
        ns, rname = obj.metadata.namespace, obj.metadata.name
        base = f"httproute.{ns}.{rname}"
        for path in unsupported(obj.spec, "spec"):
            if ".filters[" in path or ".backendRefs[" in path:
                continue  # reported where they are read
            self.warn(f"{route.where}: HTTPRoute {route.key}: {path} is not supported; ignored")
        https_only = attached.protocols == {"HTTPS"}
        for i, rule in enumerate(obj.spec.rules):
            for k, f in enumerate(rule.filters):
                for path in unsupported(f, f"spec.rules[{i}].filters[{k}]"):
                    self.warn(f"{route.where}: HTTPRoute {route.key}: {path} is not supported")
            backends: list[tuple[str, int]] = []
            for b, ref in enumerate(rule.backend_refs):
                where = f"{route.where}: HTTPRoute {route.key} spec.rules[{i}].backendRefs[{b}]"
                upstream = self.upstream(ref, route, where)
                if upstream is not None and ref.weight > 0:
                    backends.append((upstream, ref.weight))
            timeout = None
            if rule.timeouts is not None:
                text = rule.timeouts.request or rule.timeouts.backend_request
                timeout = _seconds(text) if text else None
                if text and timeout is None:
                    self.warn(
                        f"{route.where}: HTTPRoute {route.key} rules[{i}]: bad timeout {text!r}"
                    )
            for j, match in enumerate(rule.matches or [RouteMatch()]):
                self.add_match(
                    route, attached, base, i, j, rule, match, backends, timeout, https_only
                )

    def add_match(
        self,
        route: Located,
        attached: Attached,
        base: str,
        i: int,
        j: int,
        rule: RouteRule,
        match: RouteMatch,
        backends: list[tuple[str, int]],
        timeout: float | None,
        https_only: bool,
    ) -> None:
        where = f"{route.where}: HTTPRoute {route.key} spec.rules[{i}].matches[{j}]"
        p = match.path
        if p.type != "RegularExpression" and not p.value.startswith("/"):
            self.warn(f"{where}: path {p.value!r} must start with '/'; match skipped")
            return
        try:
            if p.type == "RegularExpression":
                re.compile(p.value)
            for v in [*match.headers, *match.query_params]:
                if v.type == "RegularExpression":
                    re.compile(v.value)
        except re.error as exc:
            self.warn(f"{where}: regular expression does not compile ({exc}); match skipped")
            return
        kind = {"Exact": "exact", "PathPrefix": "prefix"}.get(p.type, "regex")
        chain, redirects, broken = self.rule_filters(route, i, j, rule, match, base)
        if https_only:
            name = self.add_filter(
                f"{base}.https-only", "redirect", {"https": True}, f"HTTPRoute {route.key}"
            )
            chain.insert(0, name)
        table: dict[str, Any] = {
            "name": f"{base}.{i}.{j}",
            "hosts": attached.hosts,
            "paths": [{"path": _full(p.value) if kind == "regex" else p.value, "match": kind}],
        }
        if any(h.startswith("*.") for h in attached.hosts):
            table["host_wildcard"] = "suffix"
        if match.method:
            table["methods"] = [match.method.upper()]
        seen: set[str] = set()
        headers = []
        for h in match.headers:
            if h.name.lower() in seen:
                continue  # the spec: the first match of a name counts
            seen.add(h.name.lower())
            regex = h.type == "RegularExpression"
            headers.append(
                {
                    "name": h.name,
                    "value": _full(h.value) if regex else h.value,
                    "match": "regex" if regex else "exact",
                }
            )
        if headers:
            table["headers"] = headers
        query = []
        seen.clear()
        for q in match.query_params:
            if q.name in seen:
                continue
            seen.add(q.name)
            regex = q.type == "RegularExpression"
            query.append(
                {
                    "name": q.name,
                    "value": _full(q.value) if regex else q.value,
                    "match": "regex" if regex else "exact",
                }
            )
        if query:
            table["query"] = query
        if broken or (not backends and not redirects):
            if not broken and not redirects:
                self.warn(f"{where}: no usable backend; requests here answer 500")
            table["upstream"] = self.no_backend()
            kept = chain if not broken else [n for n in chain if n.endswith("https-only")]
            table["filters"] = [*kept, self.fail_filter()]
        else:
            table["upstream"] = backends[0][0] if backends else self.no_backend()
            total = backends[0][1] if backends else 0
            for b, (upstream, weight) in enumerate(backends[1:], 1):
                total += weight
                chain.append(
                    self.add_filter(
                        f"{base}.{i}.{j}.weight{b}",
                        "canary",
                        {"upstream": upstream, "weight": weight, "weight_total": total},
                        f"HTTPRoute {route.key} rules[{i}] backendRefs weights",
                    )
                )
            table["filters"] = chain
        if timeout is not None:
            table["timeout"] = timeout
        try:
            Route.model_validate(table)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(x) for x in err["loc"])
                self.warn(f"{where}: {loc}: {err['msg']}; match skipped")
            return
        self.out.routes.append(table)
        self.out.notes[f"route {table['name']}"] = (
            f"HTTPRoute {route.key} ({route.where}) rules[{i}].matches[{j}]: "
            f"hosts {', '.join(attached.hosts) or '*'}, {p.type} {p.value}"
        )


def translate(
    found: Manifests, settings: Settings, controller: str, filters: Collection[str] = ()
) -> GatewayTranslation:
    """The tables for the HTTPRoutes attached to Gateways of ``controller``'s classes."""
    warnings: list[str] = []
    objs = read(found.gateway_api, warnings)
    gws = Gateways(objs, controller, found.secrets, settings.tls_secrets, warnings)
    tr = _Routes(found, settings, gws, filters)
    tr.out.warnings += warnings
    tr.out.certificates = gws.certificates
    tr.out.gateways = sorted(gws.gateways)
    if not gws.gateways:
        return tr.out
    for route in sorted(objs.routes, key=_order):
        attached = gws.attach(route, tr.out.warnings)
        if not attached.listeners:
            continue
        tr.out.routes_served.append(route.key)
        tr.add_route(route, attached)
    return tr.out


def combine(tr: Translation, gw: GatewayTranslation) -> None:
    """Add the Gateway API's tables to the Ingresses' (an upstream both use is kept once)."""
    have = {u["name"] for u in tr.upstreams}
    tr.upstreams += [u for u in gw.upstreams if u["name"] not in have]
    tr.routes += gw.routes
    tr.filters.update(gw.filters)
    tr.certificates += gw.certificates
    tr.notes.update({k: v for k, v in gw.notes.items() if k not in tr.notes})
    tr.warnings += gw.warnings
