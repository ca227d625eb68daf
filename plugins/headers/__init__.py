"""``headers``: add, set and remove request and response headers."""

from plugins.headers.config import HeaderOps, HeadersConfig
from plugins.headers.filter import HeadersFilter

__all__ = ["HeaderOps", "HeadersConfig", "HeadersFilter"]
