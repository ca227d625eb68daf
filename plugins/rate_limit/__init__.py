"""``rate-limit``: a token bucket per client IP, header value, consumer or route, kept per
process or in Redis for every process and replica (``policy = "redis"``)."""

from plugins.rate_limit.filter import RateLimit, RateLimitConfig

__all__ = ["RateLimit", "RateLimitConfig"]
