"""Ingress objects → gateway.toml tables (routes, upstreams, filters, certificates).

:func:`translate` takes the objects of :mod:`core.ingress.objects` and the settings of
``[kubernetes]`` and returns a :class:`Translation`: the tables, as ``gateway.toml``
would hold them, a note per table saying which Ingress it came from, and warnings.

**Isolation.** Nothing in the manifests refuses the configuration; what cannot be
used is warned about, naming the Ingress and its file, and left out, as NGINX Ingress
leaves it out: a bad annotation value falls back to its default
(:mod:`.annotations`); a path whose Service is missing answers 503; a path another,
older Ingress already has is skipped; an Ingress whose tables do not validate (a
regular expression that does not compile, a filter config its plugin refuses, a name
the configuration file uses itself) is skipped whole (:mod:`.isolate`).

The rules, as NGINX Ingress applies them:

- **Class.** An Ingress is served when its ``spec.ingressClassName`` is this instance's
  class, else when its legacy ``kubernetes.io/ingress.class`` annotation is, else when it
  names no class and the IngressClass of this name is marked default
  (``ingressclass.kubernetes.io/is-default-class: "true"``). Others are left alone.
- **Paths.** One route per (Ingress, host, path): ``Exact`` → exact, ``Prefix`` →
  prefix by path element, ``ImplementationSpecific`` → prefix. When any Ingress of a
  host sets ``use-regex`` or ``rewrite-target``, the ``Prefix`` and
  ``ImplementationSpecific`` paths of every Ingress of that host are case-insensitive
  regular expressions anchored at the start, as NGINX Ingress reads them. The router
  applies the Kubernetes precedence (exact host over wildcard, exact path over prefix,
  longest prefix).
- **Merging.** Several Ingresses may add paths to one host. The same host, path and
  path type in two of them is a conflict: the older Ingress (``creationTimestamp``,
  then namespace/name) keeps it, the other's path is skipped and warned about. So is a
  second default backend.
- **Backends.** ``service.name`` + ``port.number`` or ``port.name`` become an upstream
  ``NAMESPACE.SERVICE.PORT``. Its endpoints come from ``[kubernetes.services]`` when
  mapped there, otherwise from the Service and its Endpoints / EndpointSlices (or an
  ExternalName). A Service with no ready endpoint, or one that is not there at all,
  gives an upstream without endpoints: 503, as NGINX Ingress answers.
- **Canary.** An Ingress with ``canary: "true"`` adds a ``canary`` filter to the route
  of its mainline Ingress (same host, path and path type), sending the chosen requests
  to the canary's backend. Its other annotations are ignored; the mainline's apply. A
  canary without a mainline serves nothing (warned).
- **TLS.** Each ``tls`` entry becomes a certificate for its hosts, from
  ``[kubernetes.tls_secrets]`` or a ``kubernetes.io/tls`` Secret in the input (a
  missing or unreadable Secret: the default certificate serves its hosts). Hosts
  with TLS (in any Ingress) redirect plain HTTP to HTTPS (308) on every path, unless
  the path's Ingress says ``ssl-redirect: "false"``; ``force-ssl-redirect`` redirects
  without a ``tls`` entry too. A ``*.example.com`` entry covers one label, as a
  certificate does.
- **An Ingress's defaultBackend** is the gateway's default (the first Ingress's, if
  several set one), and also answers the paths of that Ingress's own hosts that no
  Ingress routes: a host without a ``/`` path gets one to it.

A route's filters run in NGINX's phase order: the HTTPS redirect, ``app-root``, the
``permanent``/``temporal`` redirect, CORS, the source-range checks, the canary, and
the ``rewrite-target`` rewrite.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError
from core.ingress.annotations import Annotations, is_canary, read_annotations, wants_regex
from core.ingress.isolate import certificate_problems, check_tables
from core.ingress.objects import (
    Backend,
    Endpoints,
    EndpointSlice,
    Ingress,
    Located,
    Manifests,
    Secret,
    Service,
    tls_pem,
)

LEGACY_CLASS = "kubernetes.io/ingress.class"
NGINX_BODY_SIZE = 1 << 20  # proxy-body-size's default, 1m
DEFAULT_CLASS = "ingressclass.kubernetes.io/is-default-class"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_REGEXY = re.compile(r"[()\[\]|*+?$^\\]")


@dataclass(frozen=True)
class Settings:
    """``[kubernetes]``: the class served and explicit mappings."""

    ingress_class: str = "wasmgate"
    # "namespace/name" or "namespace/name:port" → ["host:port", ...]
    services: Mapping[str, list[str]] = field(default_factory=dict)
    # "namespace/name" → {"cert": path, "key": path}
    tls_secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Names the configuration file uses itself ("upstream NAME", "route NAME",
    # "filter NAME", "default"): an Ingress that would use one is skipped.
    reserved: frozenset[str] = frozenset()


@dataclass
class Translation:
    upstreams: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    default: dict[str, Any] | None = None
    certificates: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # "routes[NAME]" etc. → origin
    warnings: list[str] = field(default_factory=list)
    ingresses: list[str] = field(default_factory=list)  # the ones served, ns/name

    def tables(self) -> dict[str, Any]:
        """The translation as gateway.toml's top-level keys."""
        out: dict[str, Any] = {
            "upstreams": self.upstreams,
            "routes": self.routes,
            "filters": self.filters,
        }
        if self.default is not None:
            out["default"] = self.default
        if self.certificates:
            out["certificates"] = self.certificates
        return out


def served_by(ing: Located, ours: str, classes: list[Located], warnings: list[str]) -> bool:
    """Whether this instance (class ``ours``) serves the Ingress."""
    obj: Ingress = ing.obj
    name = obj.spec.ingress_class_name
    legacy = obj.metadata.annotations.get(LEGACY_CLASS)
    if name and legacy and name != legacy:
        warnings.append(
            f"{ing.where}: Ingress {ing.key} names class {name!r} in ingressClassName and "
            f"{legacy!r} in {LEGACY_CLASS}; ingressClassName counts"
        )
    if name:
        return name == ours
    if legacy:
        return legacy == ours
    defaults = [
        c.obj.metadata.name
        for c in classes
        if c.obj.metadata.annotations.get(DEFAULT_CLASS, "").lower() == "true"
    ]
    return ours in defaults


def _order(ing: Located) -> tuple[str, str]:
    return (ing.obj.metadata.creation or "", ing.key)


class _Translator:
    def __init__(self, found: Manifests, settings: Settings) -> None:
        self.found = found
        self.settings = settings
        self.out = Translation()
        self._upstreams: dict[str, dict[str, Any]] = {}
        self._paths: dict[tuple[str, str, str], tuple[dict[str, Any], Located]] = {}
        self._canaried: dict[int, Located] = {}
        # Hosts any served (mainline) Ingress lists under tls, and hosts whose paths
        # NGINX reads as regexes: both set before the first Ingress is added.
        self.tls_hosts: set[str] = set()
        self.regex_hosts: set[str] = set()
        # Per Ingress with a defaultBackend and rules: its hosts' catch-all routes.
        self._fallbacks: list[tuple[Located, str, dict[str, Any]]] = []
        self._cert_hosts: dict[str, str] = {}  # host name → the TLS secret serving it

    # ------------------------------------------------------------ backends

    def _endpoints(self, ns: str, svc_name: str, port: int | str, where: str) -> list[str] | None:
        mapped = self.settings.services.get(f"{ns}/{svc_name}:{port}")
        if mapped is None:
            mapped = self.settings.services.get(f"{ns}/{svc_name}")
        if mapped is not None:
            return list(mapped)
        located = self.found.services.get(f"{ns}/{svc_name}")
        if located is None:
            self.out.warnings.append(
                f"{where}: backend service {ns}/{svc_name} is neither in the manifests nor "
                f'mapped in [kubernetes.services] (e.g. "{ns}/{svc_name}" = ["127.0.0.1:8080"]); '
                "its paths answer 503, as NGINX Ingress does"
            )
            return []
        svc: Service = located.obj
        sport = next(
            (
                p
                for p in svc.spec.ports
                if p.port == port or (p.name is not None and p.name == port)
            ),
            None,
        )
        if sport is None:
            have = ", ".join(f"{p.name or '-'}:{p.port}" for p in svc.spec.ports) or "none"
            self.out.warnings.append(
                f"{where}: service {ns}/{svc_name} has no port {port!r} (ports: {have}); "
                "its paths answer 503, as NGINX Ingress does"
            )
            return []
        if svc.spec.type == "ExternalName" and svc.spec.external_name:
            return [f"{svc.spec.external_name}:{sport.port}"]
        addresses: list[str] = []
        eps = self.found.endpoints.get(f"{ns}/{svc_name}")
        if eps is not None:
            obj: Endpoints = eps.obj
            for subset in obj.subsets:
                number = _target_port(subset.ports, sport.name, sport.target_port, sport.port)
                if number is not None:
                    addresses += [_hostport(a.ip, number) for a in subset.addresses]
        for located_slice in self.found.slices:
            sl: EndpointSlice = located_slice.obj
            meta = sl.metadata
            if meta.namespace != ns or meta.labels.get(SERVICE_NAME_LABEL) != svc_name:
                continue
            number = _target_port(sl.ports, sport.name, sport.target_port, sport.port)
            if number is None:
                continue
            for ep in sl.endpoints:
                if ep.conditions.ready is False:
                    continue
                addresses += [_hostport(ip, number) for ip in ep.addresses]
        unique = list(dict.fromkeys(addresses))
        if not unique:
            self.out.warnings.append(
                f"{where}: service {ns}/{svc_name} port {port} has no ready endpoints; "
                "its routes answer 503 until it has"
            )
        return unique

    def upstream(self, backend: Backend, ns: str, ann: Annotations, where: str) -> str | None:
        if backend.service is None:
            self.out.warnings.append(
                f"{where}: only service backends are supported (not resource backends); skipped"
            )
            return None
        svc = backend.service
        port: int | str | None = svc.port.number if svc.port.number is not None else svc.port.name
        if port is None:
            self.out.warnings.append(
                f"{where}: backend service {svc.name}: port number or name needed; skipped"
            )
            return None
        settings = ann.upstream_settings
        name = f"{ns}.{svc.name}.{port}"
        if settings:
            digest = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:6]
            name = f"{name}.{digest}"
        if name not in self._upstreams:
            endpoints = self._endpoints(ns, svc.name, port, where)
            table = {"name": name, "endpoints": endpoints, **settings}
            self._upstreams[name] = table
            self.out.upstreams.append(table)
            self.out.notes[f"upstream {name}"] = f"service {ns}/{svc.name} port {port}"
        return name

    # ------------------------------------------------------------ one Ingress

    def filters_for(
        self, ing: Located, ann: Annotations, host: str, tls_hosts: set[str]
    ) -> list[str]:
        ns, name = ing.obj.metadata.namespace, ing.obj.metadata.name
        base = f"{ns}.{name}"
        chain: list[str] = []

        def add(kind: str, plugin: str, config: dict[str, Any]) -> None:
            fname = f"{base}.{kind}"
            if fname not in self.out.filters:
                self.out.filters[fname] = {"plugin": plugin, "config": config}
                self.out.notes[f"filter {fname}"] = f"Ingress {ing.key} ({ing.where})"
            chain.append(fname)

        if ann.force_ssl_redirect or (ann.ssl_redirect and covered(host, tls_hosts)):
            add("ssl-redirect", "redirect", {"https": True})
        if ann.app_root:
            # NGINX Ingress: "return 302 $scheme://$http_host<app-root>" (no query).
            app_root = {"app_root": ann.app_root, "app_root_absolute": True}
            add("app-root", "redirect", {**app_root, "app_root_keep_query": False})
        if ann.redirect:
            add("redirect", "redirect", {"to": ann.redirect[0], "code": ann.redirect[1]})
        if ann.cors is not None:
            add("cors", "cors", ann.cors)
        if ann.deny_all:
            add("denied", "respond", {"status": 503, "body": "forbidden\n"})
        elif ann.allow_ranges or ann.deny_ranges:
            config: dict[str, Any] = {}
            if ann.allow_ranges:
                config["allow"] = ann.allow_ranges
            if ann.deny_ranges:
                config["deny"] = ann.deny_ranges
            add("source-range", "ip-restriction", config)
        return chain

    def add_ingress(self, ing: Located) -> None:
        obj: Ingress = ing.obj
        ns = obj.metadata.namespace
        ann = read_annotations(obj.metadata.annotations, f"Ingress {ing.key} ({ing.where})")
        self.out.warnings += ann.warnings
        self.add_tls(ing)
        for i, rule in enumerate(obj.spec.rules):
            host = (rule.host or "").lower()
            if rule.http is None:
                continue
            regex = host in self.regex_hosts
            for j, p in enumerate(rule.http.paths):
                where = f"Ingress {ing.key} ({ing.where}) rules[{i}].http.paths[{j}]"
                path = p.path or "/"
                if regex and p.path_type == "Exact" and _REGEXY.search(path):
                    self.out.warnings.append(
                        f"{where}: path {path!r} looks like a regular expression, but "
                        "pathType Exact compares it literally: use pathType "
                        "ImplementationSpecific or Prefix"
                    )
                if not path.startswith("/") and p.path_type != "ImplementationSpecific":
                    self.out.warnings.append(
                        f"{where}: path {path!r} must start with '/'; this path is skipped"
                    )
                    continue
                match = {"Exact": "exact", "Prefix": "prefix"}.get(p.path_type, "prefix")
                if regex and p.path_type != "Exact":
                    match = "regex"
                upstream = self.upstream(p.backend, ns, ann, where)
                if upstream is None:
                    continue
                key = (host, p.path_type, path)
                if key in self._paths:
                    _, other = self._paths[key]
                    self.out.warnings.append(
                        f"{where}: host {host or '*'} path {path} ({p.path_type}) is also "
                        f"defined by the older Ingress {other.key} ({other.where}), which "
                        "keeps it, as in NGINX Ingress; this path is skipped"
                    )
                    continue
                chain = self.filters_for(ing, ann, host, self.tls_hosts)
                route: dict[str, Any] = {
                    "name": f"{ns}.{obj.metadata.name}.{i}.{j}",
                    "hosts": [host] if host else [],
                    "paths": [
                        {"path": f"(?i){path}" if match == "regex" else path, "match": match}
                    ],
                    "upstream": upstream,
                    "filters": chain,
                }
                # NGINX Ingress bounds request bodies at 1m unless proxy-body-size says.
                route["max_body_bytes"] = (
                    ann.body_size if ann.body_size is not None else NGINX_BODY_SIZE
                )
                if ann.rewrite_target is not None:
                    # NGINX: rewrite "(?i)PATH" TARGET, the path read as a regex whose
                    # groups the target refers to ($1, $2, ...).
                    rname = f"{ns}.{obj.metadata.name}.rewrite.{i}.{j}"
                    self.out.filters[rname] = {
                        "plugin": "rewrite",
                        "config": {"regex": f"(?i){path}", "replacement": ann.rewrite_target},
                    }
                    self.out.notes[f"filter {rname}"] = f"{where}: rewrite-target"
                    route["_rewrite"] = rname
                self._paths[key] = (route, ing)
                self.out.routes.append(route)
                self.out.notes[f"route {route['name']}"] = (
                    f"Ingress {ing.key} ({ing.where}): "
                    f"host {host or '*'}, path {path} ({p.path_type})"
                )
        if obj.spec.default_backend is not None:
            where = f"Ingress {ing.key} ({ing.where}) spec.defaultBackend"
            upstream = self.upstream(obj.spec.default_backend, ns, ann, where)
            for host in dict.fromkeys((r.host or "").lower() for r in obj.spec.rules):
                if host and upstream is not None:
                    route = {
                        "name": f"{ns}.{obj.metadata.name}.default.{host.replace('*', '_')}",
                        "hosts": [host],
                        "paths": [{"path": "/", "match": "prefix"}],
                        "upstream": upstream,
                        "filters": self.filters_for(ing, ann, host, self.tls_hosts),
                        "max_body_bytes": (
                            ann.body_size if ann.body_size is not None else NGINX_BODY_SIZE
                        ),
                    }
                    self._fallbacks.append((ing, host, route))
            if upstream is not None:
                if "default" in self.settings.reserved:
                    self.out.warnings.append(
                        f"{where}: the configuration file sets [default], which serves "
                        "unmatched requests; this defaultBackend is ignored"
                    )
                elif self.out.default is not None:
                    self.out.warnings.append(
                        f"{where}: a default backend is already set by the older "
                        f"{self.out.notes['default']}, which keeps it; this one is ignored"
                    )
                else:
                    self.out.default = {"upstream": upstream}
                    self.out.notes["default"] = f"Ingress {ing.key} ({ing.where})"

    def add_tls(self, ing: Located) -> set[str]:
        obj: Ingress = ing.obj
        hosts: set[str] = set()
        for k, tls in enumerate(obj.spec.tls):
            where = f"Ingress {ing.key} ({ing.where}) spec.tls[{k}]"
            names = list(dict.fromkeys(h.lower() for h in tls.hosts))
            hosts.update(names)
            fallback = f"the default certificate serves {', '.join(names)}"
            if not tls.secret_name:
                self.out.warnings.append(f"{where}: no secretName; {fallback}")
                continue
            key = f"{obj.metadata.namespace}/{tls.secret_name}"
            cert: dict[str, Any] = {"hosts": names}
            files = self.settings.tls_secrets.get(key)
            if files is not None:
                cert.update({"cert": files["cert"], "key": files["key"]})
            elif key in self.found.secrets:
                secret = self.found.secrets[key]
                sobj: Secret = secret.obj
                try:
                    pem_cert, pem_key = tls_pem(sobj, secret.where)
                except ConfigError as exc:
                    self.out.warnings += [f"{where}: {p}; {fallback}" for p in exc.problems]
                    continue
                cert.update({"cert_pem": pem_cert, "key_pem": pem_key, "secret": key})
            else:
                self.out.warnings.append(
                    f"{where}: TLS secret {key} is neither a kubernetes.io/tls Secret in the "
                    f'manifests nor mapped in [kubernetes.tls_secrets] ("{key}" = '
                    '{ cert = "tls.crt", key = "tls.key" }); '
                    f"{fallback}"
                )
                continue
            bad = certificate_problems(cert, f"TLS secret {key}")
            if bad:
                self.out.warnings += [f"{where}: {p}; {fallback}" for p in bad]
                continue
            # One certificate per host name; the older Ingress's stays, as in NGINX Ingress.
            taken = [h for h in names if h in self._cert_hosts]
            for h in taken:
                if self._cert_hosts[h] != key:
                    self.out.warnings.append(
                        f"{where}: host {h} already has the certificate of TLS secret "
                        f"{self._cert_hosts[h]} (an older Ingress); that one serves it"
                    )
            cert["hosts"] = [h for h in names if h not in self._cert_hosts]
            if not cert["hosts"]:
                continue  # never a certificate without hosts: that would be the default
            self._cert_hosts.update(dict.fromkeys(cert["hosts"], key))
            self.out.certificates.append(cert)
        return hosts

    # ------------------------------------------------------------ canaries

    def add_canary(self, ing: Located) -> None:
        obj: Ingress = ing.obj
        ns = obj.metadata.namespace
        ann = read_annotations(obj.metadata.annotations, f"Ingress {ing.key} ({ing.where})")
        self.out.warnings += ann.warnings
        assert ann.canary is not None
        for i, rule in enumerate(obj.spec.rules):
            host = (rule.host or "").lower()
            for j, p in enumerate(rule.http.paths if rule.http else []):
                where = f"canary Ingress {ing.key} ({ing.where}) rules[{i}].http.paths[{j}]"
                path = p.path or "/"
                found = self._paths.get((host, p.path_type, path))
                if found is None:
                    self.out.warnings.append(
                        f"{where}: no mainline Ingress serves host {host or '*'} path {path} "
                        f"({p.path_type}); this canary path serves nothing"
                    )
                    continue
                route, mainline = found
                if id(route) in self._canaried:
                    other = self._canaried[id(route)]
                    self.out.warnings.append(
                        f"{where}: route of Ingress {mainline.key} already has the older canary "
                        f"Ingress {other.key}, which keeps it; this canary path is skipped"
                    )
                    continue
                main_ann = read_annotations(mainline.obj.metadata.annotations, "")
                upstream = self.upstream(p.backend, ns, main_ann, where)
                if upstream is None:
                    continue
                fname = f"{ns}.{obj.metadata.name}.canary.{i}.{j}"
                self.out.filters[fname] = {
                    "plugin": "canary",
                    "config": ann.canary.plugin_config(upstream),
                }
                self.out.notes[f"filter {fname}"] = (
                    f"canary Ingress {ing.key} ({ing.where}) for Ingress {mainline.key}"
                )
                route["filters"].append(fname)
                self._canaried[id(route)] = ing
        if obj.spec.default_backend is not None:
            self.out.warnings.append(
                f"canary Ingress {ing.key} ({ing.where}): defaultBackend of a canary is ignored"
            )

    # ------------------------------------------------------------ isolation

    def isolated(self, ing: Located, canary: bool) -> None:
        """Translate one Ingress; if its tables cannot be served, drop them all and warn."""
        out = self.out
        saved = (
            len(out.upstreams),
            len(out.routes),
            dict(out.filters),
            len(out.certificates),
            out.default,
            dict(out.notes),
            dict(self._upstreams),
            dict(self._paths),
            dict(self._canaried),
            {id(r): list(r["filters"]) for r in out.routes},
            len(out.warnings),
            len(self._fallbacks),
            dict(self._cert_hosts),
        )
        (self.add_canary if canary else self.add_ingress)(ing)
        n_up, n_routes, filters = saved[0], saved[1], saved[2]
        problems = check_tables(
            out.upstreams[n_up:],
            out.routes[n_routes:],
            {k: v for k, v in out.filters.items() if k not in filters},
            self.settings.reserved,
        )
        if not problems:
            return
        del out.upstreams[n_up:], out.routes[n_routes:], out.certificates[saved[3] :]
        out.filters, out.default, out.notes = filters, saved[4], saved[5]
        self._upstreams, self._paths, self._canaried = saved[6], saved[7], saved[8]
        for route in out.routes:
            route["filters"] = saved[9][id(route)]
        del out.warnings[saved[10] :], self._fallbacks[saved[11] :]
        self._cert_hosts = saved[12]
        out.ingresses.remove(ing.key)
        kind = "canary Ingress" if canary else "Ingress"
        out.warnings.append(
            f"{kind} {ing.key} ({ing.where}): skipped, it cannot be served: " + "; ".join(problems)
        )

    def finish(self) -> None:
        rooted = {
            host
            for route in self.out.routes
            for host in route["hosts"]
            if route["paths"][0]["path"] in ("/", "(?i)/")
            and route["paths"][0]["match"] in ("prefix", "regex")
        }
        for ing, host, route in self._fallbacks:
            if host in rooted:
                continue
            rooted.add(host)
            self.out.routes.append(route)
            self.out.notes[f"route {route['name']}"] = (
                f"Ingress {ing.key} ({ing.where}): its defaultBackend, for the paths of "
                f"host {host} no Ingress routes"
            )
        for route in self.out.routes:
            rewrite = route.pop("_rewrite", None)
            if rewrite is not None:
                route["filters"].append(rewrite)


def translate(found: Manifests, settings: Settings) -> Translation:
    """The gateway tables for the Ingresses this instance's class serves."""
    tr = _Translator(found, settings)
    defaults = [
        c
        for c in found.classes
        if c.obj.metadata.annotations.get(DEFAULT_CLASS, "").lower() == "true"
    ]
    if len(defaults) > 1:
        tr.out.warnings.append(
            "several IngressClasses are marked default ("
            + ", ".join(c.obj.metadata.name for c in defaults)
            + "); Kubernetes refuses new Ingresses without a class in that state"
        )
    mine = sorted(
        (
            i
            for i in found.ingresses
            if served_by(i, settings.ingress_class, found.classes, tr.out.warnings)
        ),
        key=_order,
    )
    canaries, mainlines = [], []
    for ing in mine:
        tr.out.ingresses.append(ing.key)
        raw = ing.obj.metadata.annotations
        if is_canary(raw):
            canaries.append(ing)
        else:
            mainlines.append(ing)
    # NGINX Ingress redirects to HTTPS per host (its server block), not per Ingress: a
    # path that one Ingress adds to a host another one lists under tls redirects too.
    tr.tls_hosts = {h.lower() for i in mainlines for t in i.obj.spec.tls for h in t.hosts}
    # NGINX Ingress reads every path of a host as a regex once one Ingress of it asks.
    tr.regex_hosts = {
        (r.host or "").lower()
        for i in mainlines
        if wants_regex(i.obj.metadata.annotations)
        for r in i.obj.spec.rules
    }
    for ing in mainlines:
        tr.isolated(ing, canary=False)
    for ing in canaries:
        tr.isolated(ing, canary=True)
    tr.finish()
    return tr.out


def _target_port(
    ports: list[Any], name: str | None, target: int | str | None, port: int
) -> int | None:
    """The endpoint port for a service port: matched by name, or the only one."""
    if name is not None:
        for p in ports:
            if p.name == name:
                return int(p.port)
    if len(ports) == 1 and (name is None or ports[0].name is None):
        return int(ports[0].port)
    if not ports and isinstance(target, int):
        return target
    return None


def covered(host: str, names: set[str]) -> bool:
    """Whether ``host`` is one of ``names``, exactly or under a one-label wildcard."""
    if host in names:
        return True
    label, dot, parent = host.partition(".")
    return bool(dot and label and f"*.{parent}" in names)


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
