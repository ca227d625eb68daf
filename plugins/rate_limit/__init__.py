"""``rate-limit``: a per-process token bucket per client IP, header value or consumer."""

from plugins.rate_limit.filter import RateLimit, RateLimitConfig

__all__ = ["RateLimit", "RateLimitConfig"]
