"""``canary``: send part of a route's traffic to a canary upstream (NGINX Ingress rules)."""

from plugins.canary.config import CanaryConfig
from plugins.canary.filter import Canary

__all__ = ["Canary", "CanaryConfig"]
