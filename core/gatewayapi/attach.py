"""Gateways of our class, their listeners, and which HTTPRoutes attach to which.

- **Class.** A Gateway is ours when its ``gatewayClassName`` names a GatewayClass whose
  ``controllerName`` is ``[kubernetes] gateway_controller``.
- **Listeners.** ``HTTP`` and ``HTTPS`` (``tls.mode: Terminate``) listeners are served;
  their ports are not opened: wasmgate serves them on its own ``listen`` and
  ``tls_listen``. Other protocols are warnings. An HTTPS listener's first
  ``certificateRefs`` Secret becomes a ``[[certificates]]`` entry for its hostname
  (no hostname: the default certificate). A Secret in another namespace needs a
  ReferenceGrant from the Gateway's namespace.
- **Attachment.** A parentRef names a Gateway (namespace defaults to the route's) and
  optionally a listener (``sectionName``) or a ``port``. A listener accepts the route
  when ``allowedRoutes`` allows its namespace (``Same``, ``All``, or ``Selector`` on the
  Namespace's labels; ``kubernetes.io/metadata.name`` is always one) and kind, and
  when their hostnames intersect.
- **Hostnames.** A listener's hostname and the route's intersect as the spec says:
  ``*.example.com`` and ``foo.example.com`` give ``foo.example.com``; two wildcards
  give the longer. No hostname on either side leaves the other's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError
from core.gatewayapi.objects import (
    GROUP,
    Gateway,
    GatewayObjects,
    HTTPRoute,
    Listener,
    ReferenceGrant,
    unsupported,
)
from core.ingress.objects import Located, Secret, tls_pem

NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass
class Attached:
    """Where a route is served: hostnames (empty: any host) and listener protocols."""

    hosts: list[str] = field(default_factory=list)
    any_host: bool = False
    protocols: set[str] = field(default_factory=set)
    listeners: list[str] = field(default_factory=list)


def intersect(listener: str | None, route: str) -> str | None:
    """The hostname both allow, or None."""
    if listener is None:
        return route
    if listener == route:
        return route
    if listener.startswith("*."):
        if route.startswith("*."):
            # The longer wildcard is inside the shorter one.
            if route.endswith(listener[1:]):
                return route
            if listener.endswith(route[1:]):
                return listener
            return None
        return route if route.endswith(listener[1:]) else None
    if route.startswith("*.") and listener.endswith(route[1:]):
        return listener
    return None


def granted(
    grants: list[Located], from_kind: str, from_ns: str, to_kind: str, to_ns: str, to_name: str
) -> bool:
    """Whether a ReferenceGrant in ``to_ns`` lets ``from_kind`` objects of ``from_ns``
    refer to ``to_kind`` ``to_name``."""
    from_group = GROUP if from_kind in ("HTTPRoute", "Gateway") else ""
    for item in grants:
        grant: ReferenceGrant = item.obj
        if grant.metadata.namespace != to_ns:
            continue
        if not any(
            f.kind == from_kind and f.group == from_group and f.namespace == from_ns
            for f in grant.spec.from_
        ):
            continue
        if any(
            t.kind == to_kind and t.group == "" and t.name in (None, to_name) for t in grant.spec.to
        ):
            return True
    return False


class Gateways:
    """The Gateways of our class and their listeners' certificates."""

    def __init__(
        self,
        objs: GatewayObjects,
        controller: str,
        secrets: Mapping[str, Located],
        tls_files: Mapping[str, Mapping[str, str]],
        warnings: list[str],
    ) -> None:
        self.objs = objs
        self.warnings = warnings
        self.certificates: list[dict[str, Any]] = []
        self.notes: dict[str, str] = {}
        classes = {
            c.obj.metadata.name for c in objs.classes if c.obj.spec.controller_name == controller
        }
        self.gateways: dict[str, Located] = {}
        for gw in objs.gateways:
            obj: Gateway = gw.obj
            if obj.spec.gateway_class_name not in classes:
                continue
            self.gateways[gw.key] = gw
            for path in unsupported(obj.spec, "spec"):
                warnings.append(
                    f"{gw.where}: Gateway {gw.key}: {path} is not supported and is ignored"
                )
            for i, listener in enumerate(obj.spec.listeners):
                self._certificate(gw, i, listener, secrets, tls_files)
        self.classes = classes

    def _certificate(
        self,
        gw: Located,
        i: int,
        listener: Listener,
        secrets: Mapping[str, Located],
        tls_files: Mapping[str, Mapping[str, str]],
    ) -> None:
        where = f"{gw.where}: Gateway {gw.key} spec.listeners[{i}] ({listener.name})"
        if listener.protocol not in ("HTTP", "HTTPS"):
            self.warnings.append(
                f"{where}: protocol {listener.protocol} is not supported; listener ignored"
            )
            return
        if listener.protocol == "HTTP":
            return
        tls = listener.tls
        if tls is None or tls.mode != "Terminate" or not tls.certificate_refs:
            self.warnings.append(
                f"{where}: an HTTPS listener needs tls.mode Terminate and certificateRefs; "
                "its hosts get the default certificate"
            )
            return
        if len(tls.certificate_refs) > 1:
            self.warnings.append(
                f"{where}: only the first of {len(tls.certificate_refs)} certificateRefs is used"
            )
        ref = tls.certificate_refs[0]
        ns = ref.namespace or gw.obj.metadata.namespace
        key = f"{ns}/{ref.name}"
        if ref.kind != "Secret" or ref.group != "":
            self.warnings.append(f"{where}: certificateRefs of kind {ref.kind} are not supported")
            return
        if ns != gw.obj.metadata.namespace and not granted(
            self.objs.grants, "Gateway", gw.obj.metadata.namespace, "Secret", ns, ref.name
        ):
            self.warnings.append(
                f"{where}: Secret {key} is in another namespace and no ReferenceGrant there "
                "allows it; its hosts get the default certificate"
            )
            return
        hosts = [listener.hostname.lower()] if listener.hostname else []
        if any(c["hosts"] == hosts for c in self.certificates):
            if not any(c["hosts"] == hosts and c.get("secret") == key for c in self.certificates):
                self.warnings.append(
                    f"{where}: another listener already has a certificate for "
                    f"{hosts[0] if hosts else 'the default'}; Secret {key} is not used"
                )
            return
        cert: dict[str, Any] = {"hosts": hosts}
        files = tls_files.get(key)
        if files is not None:
            cert.update({"cert": files["cert"], "key": files["key"]})
        elif key in secrets:
            secret = secrets[key]
            sobj: Secret = secret.obj
            try:
                pem_cert, pem_key = tls_pem(sobj, secret.where)
            except ConfigError as exc:
                self.warnings += [f"{where}: {p}; certificate not used" for p in exc.problems]
                return
            cert.update({"cert_pem": pem_cert, "key_pem": pem_key, "secret": key})
        else:
            self.warnings.append(
                f"{where}: TLS Secret {key} is neither a kubernetes.io/tls Secret in the "
                "manifests nor mapped in [kubernetes.tls_secrets]; its hosts get the "
                "default certificate"
            )
            return
        self.certificates.append(cert)

    def _allows(self, gw: Located, listener: Listener, route_ns: str) -> bool:
        allowed = listener.allowed_routes
        kinds = allowed.kinds
        if kinds and not any(k.kind == "HTTPRoute" and k.group == GROUP for k in kinds):
            return False
        source = allowed.namespaces.from_
        if source == "All":
            return True
        if source == "Same":
            return bool(route_ns == gw.obj.metadata.namespace)
        selector = allowed.namespaces.selector
        if selector is None:
            return False
        labels = {NAME_LABEL: route_ns, **self.objs.namespaces.get(route_ns, {})}
        return all(labels.get(k) == v for k, v in selector.match_labels.items())

    def attach(self, route: Located, warnings: list[str]) -> Attached:
        obj: HTTPRoute = route.obj
        ns = obj.metadata.namespace
        out = Attached()
        names = [h.lower() for h in obj.spec.hostnames]
        for k, ref in enumerate(obj.spec.parent_refs):
            where = f"{route.where}: HTTPRoute {route.key} spec.parentRefs[{k}]"
            if ref.kind != "Gateway" or ref.group != GROUP:
                warnings.append(f"{where}: parents of kind {ref.kind} are not supported")
                continue
            key = f"{ref.namespace or ns}/{ref.name}"
            gw = self.gateways.get(key)
            if gw is None:
                continue  # another controller's Gateway, or none
            accepted = False
            for listener in gw.obj.spec.listeners:
                if listener.protocol not in ("HTTP", "HTTPS"):
                    continue
                if ref.section_name is not None and listener.name != ref.section_name:
                    continue
                if ref.port is not None and listener.port != ref.port:
                    continue
                if not self._allows(gw, listener, ns):
                    continue
                lhost = listener.hostname.lower() if listener.hostname else None
                if names:
                    both = [h for h in (intersect(lhost, n) for n in names) if h is not None]
                    if not both:
                        continue
                    out.hosts += [h for h in both if h not in out.hosts]
                elif lhost is not None:
                    if lhost not in out.hosts:
                        out.hosts.append(lhost)
                else:
                    out.any_host = True
                accepted = True
                out.protocols.add(listener.protocol)
                out.listeners.append(f"{key}/{listener.name}")
            if not accepted:
                warnings.append(
                    f"{where}: no listener of Gateway {key} accepts this route (sectionName, "
                    "port, allowedRoutes or hostnames); it is not attached there"
                )
        if out.any_host:
            out.hosts = []
        return out
