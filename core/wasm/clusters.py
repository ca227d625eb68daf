"""Which upstream a ``proxy_http_call`` cluster name means.

Filters written for Envoy, Istio or Higress name clusters, not wasmgate upstreams.
A name resolves, in this order, to:

1. the ``[[upstreams]]`` of that name (Higress's ``RouteCluster`` reads the
   ``cluster_name`` property, which is the route's upstream: it lands here);
2. the upstream ``[wasm.clusters]`` maps it to (an explicit alias, checked at load);
3. for ``outbound|PORT|SUBSET|HOST`` (Istio's and Higress's form; SUBSET is ignored):
   - ``SERVICE.NAMESPACE.svc.cluster.local`` (Higress ``K8sCluster``): the upstream
     ``NAMESPACE.SERVICE.PORT`` an Ingress backend becomes;
   - ``NAME.static`` / ``NAME.dns`` (Higress ``StaticIpCluster`` / ``DnsCluster``):
     the upstream ``NAME``;
   - the upstream named HOST;
   - the one upstream with an endpoint ``HOST:PORT``, or else the one whose
     ``host_header`` is HOST or ``HOST:PORT``.

Anything else (no match, or two upstreams matching equally) is unknown: the call
is refused with ``BAD_ARGUMENT`` at once, as Envoy refuses an unknown cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from core.upstream import UpstreamPool

if TYPE_CHECKING:
    from core.wasm.plugin import PluginVm

log = logging.getLogger("wasmgate.wasm")

_K8S_SUFFIX = ".svc.cluster.local"


def resolve_cluster(
    cluster: str, pools: Mapping[str, UpstreamPool], aliases: Mapping[str, str]
) -> UpstreamPool | str:
    """The pool ``cluster`` names, or why there is none (a line for the log)."""
    pool = pools.get(cluster)
    if pool is not None:
        return pool
    target = aliases.get(cluster)
    if target is not None:
        return pools.get(target) or f"[wasm.clusters] maps it to unknown upstream {target!r}"
    parts = cluster.split("|")
    if len(parts) != 4 or parts[0] != "outbound":
        return "no upstream of that name and no [wasm.clusters] alias"
    port, host = parts[1], parts[3]
    if not port.isdigit() or not host:
        return "not of the form outbound|PORT|SUBSET|HOST"
    for name in _named(host, port):
        if name in pools:
            return pools[name]
    address = f"{host}:{port}"
    for matches in (
        [p for p in pools.values() if any(e.address == address for e in p.endpoints)],
        [p for p in pools.values() if p.cfg.host_header in (host, address)],
    ):
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(repr(p.name) for p in matches)
            return f"ambiguous: upstreams {names} all match; add a [wasm.clusters] alias"
    return f"no upstream named {host!r}, with an endpoint {address} or host_header {host!r}"


def vm_pool(vm: PluginVm, cluster: str, kind: str) -> UpstreamPool | None:
    """The pool ``cluster`` names for a call (``kind``: "http", "grpc") of ``vm``,
    resolved once and remembered; None (logged) when it names none."""
    pool = vm.resolved.get(cluster)
    if pool is None:
        found = resolve_cluster(cluster, vm.pools, vm.clusters)
        if isinstance(found, str):
            log.warning(
                "wasm filter %r: %s call to unknown cluster %r: %s", vm.name, kind, cluster, found
            )
            return None
        pool = vm.resolved[cluster] = found
    return pool


def _named(host: str, port: str) -> list[str]:
    """Upstream names ``host`` may stand for, most specific first."""
    if host.endswith(_K8S_SUFFIX):
        service, _, namespace = host.removesuffix(_K8S_SUFFIX).rpartition(".")
        if service and namespace:
            return [f"{namespace}.{service}.{port}", host]
    for suffix in (".static", ".dns"):
        if host.endswith(suffix):
            return [host.removesuffix(suffix), host]
    return [host]
