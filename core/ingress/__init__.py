"""The Kubernetes Ingress dialect: manifests in, routes, upstreams and filters out.

Teams moving from NGINX Ingress bring ``networking.k8s.io/v1`` Ingress manifests with
``nginx.ingress.kubernetes.io/*`` annotations. wasmgate reads them (:mod:`.objects`),
keeps the Ingresses of its IngressClass, and translates them (:mod:`.translate`,
:mod:`.annotations`) into the same tables a hand-written ``gateway.toml`` holds. The
annotations become the built-in plugins (``canary``, ``rewrite``, ``redirect``,
``cors``, ``ip-restriction``) and route and upstream fields: nothing in the proxy
knows about Kubernetes. Two ways in:

- ``wasmgate ingress import FILE...`` writes a commented ``gateway.toml``
  (:mod:`.render`, :mod:`.cli`);
- ``[kubernetes] manifests = [...]`` in ``gateway.toml`` reads them at every load
  (:func:`.source.expand`), so no import step is needed.

Nothing in the manifests refuses a configuration: what cannot be used falls back to
NGINX Ingress's defaults or is skipped, with a warning naming the Ingress and its file
(:mod:`.annotations`, :mod:`.translate`, :mod:`.isolate`).
"""
