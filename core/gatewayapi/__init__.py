"""The Kubernetes Gateway API dialect: GatewayClass, Gateway, HTTPRoute, ReferenceGrant.

Read from the same manifests as the Ingress dialect (:mod:`core.ingress.objects` keeps
the raw objects, :mod:`.objects` validates them), attached to the Gateways of this
instance's GatewayClass ``controllerName`` (:mod:`.attach`), and translated into the
same tables a hand-written ``gateway.toml`` holds (:mod:`.translate`): routes for the
router, the built-in plugins for the filters. ``[kubernetes]`` and ``wasmgate ingress
import`` run it beside the Ingress translation. See docs/gateway-api.md.
"""
