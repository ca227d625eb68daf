"""``headers``: add, set and remove request and response headers."""

from plugins.headers.filter import HeaderOps, HeadersConfig, HeadersFilter

__all__ = ["HeaderOps", "HeadersConfig", "HeadersFilter"]
