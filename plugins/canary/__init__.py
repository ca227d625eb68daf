"""``canary``: send part of a route's traffic to a canary upstream (NGINX Ingress rules)."""

from plugins.canary.filter import Canary, CanaryConfig

__all__ = ["Canary", "CanaryConfig"]
