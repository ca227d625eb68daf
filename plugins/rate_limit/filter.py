"""The ``rate-limit`` plugin: a token bucket per client or route, per process or in Redis.

::

    [filters.api-limit]
    plugin = "rate-limit"
    config.rate = 100          # requests ...
    config.per = 60.0          # ... per minute, refilled continuously
    config.burst = 20          # at most 20 at once (default: rate)
    config.key = "header:X-Api-Key"

    [filters.per-consumer]
    plugin = "rate-limit"
    config = { key = "consumer", rate = 10, per = 1.0 }

    [[routes]]
    name = "api"
    upstream = "api"
    filters = ["api-limit", "key-auth", "per-consumer"]

How it counts:

* Each key has a bucket of ``burst`` tokens that refills at ``rate / per`` tokens a
  second (``time.monotonic``). A request takes one token; with less than one left it
  gets **429** with ``Retry-After`` (whole seconds until a token is back, at least 1).
* ``key``: ``"ip"`` (``ctx.client_ip``, which honours ``server.trusted_hops``), ``"route"``,
  ``"header:<Name>"`` (that request header's value) or ``"consumer"`` (the
  ``ctx.state["consumer"]`` an auth filter earlier in the chain set; its ``str()``).
  A request without the header, or without a consumer, is counted by its client IP —
  so put ``rate-limit`` after the auth filter when keying on the consumer. Header
  values longer than 128 characters are hashed, so a key costs little memory.
* At most ``max_keys`` buckets are kept; past that the least recently seen key is
  forgotten (its next request starts with a full bucket). A flood of distinct keys
  therefore costs bounded memory, at the price of resetting quiet keys.
* ``policy = "local"`` (the default): buckets live in one gateway process; with
  ``workers = N`` each worker counts on its own (N times the limit in all), and a
  configuration reload starts with full buckets.
* ``policy = "redis"``: one bucket per key in the ``[store]`` Redis, shared by every
  process and replica (GCRA in one atomic script, :mod:`plugins.rate_limit.redis_policy`).
  When Redis fails or is slower than ``[store].timeout``, ``on_store_error`` decides:
  ``"allow"``, ``"deny"`` (the over-limit reply) or ``"local"`` (this process's bucket).
  Each failure is counted (``wasmgate_store_errors_total``) and logged once per interval.

Headers (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Limit`` (the burst),
``RateLimit-Remaining`` (whole tokens left) and ``RateLimit-Reset`` (seconds until
the bucket is full again) are on every 429; with ``headers = true`` (the default)
the response phase adds them to allowed responses too (set ``headers = false`` to
skip that phase). A response that already carries ``RateLimit-Limit`` (from the
upstream, or a second rate-limit filter later in the chain) is left as it is.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator

from plugin_sdk import Context, Filter, LocalReply, PluginConfig, store
from plugins.rate_limit.redis_policy import RedisBuckets

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_MAX_KEY_CHARS = 128


class RateLimitConfig(PluginConfig):
    rate: int = Field(60, ge=1, description="Requests allowed per `per` seconds (refill rate).")
    per: float = Field(60.0, gt=0, description="The period `rate` is counted over, in seconds.")
    burst: int | None = Field(
        None, ge=1, description="Bucket capacity: requests that may come at once. Default: rate."
    )
    key: str = Field(
        "ip",
        description='What a bucket belongs to: "ip", "consumer", "route" or "header:<Name>". '
        "Requests without the header or consumer are counted by client IP.",
    )
    policy: Literal["local", "redis"] = Field(
        "local",
        description='"local": buckets in each gateway process; "redis": one bucket per key '
        "for every process and replica, in the [store] Redis (GCRA, atomic).",
    )
    on_store_error: Literal["allow", "deny", "local"] = Field(
        "local",
        description='With policy "redis", when Redis fails or is slower than [store].timeout: '
        '"allow" the request, "deny" it (the over-limit reply), or count it in a "local" '
        "bucket of this process.",
    )
    max_keys: int = Field(
        100_000, ge=1, description="Most buckets kept; the least recently seen is dropped."
    )
    headers: bool = Field(
        True, description="Also add RateLimit-* headers to responses that were let through."
    )
    status: int = Field(429, ge=400, le=599, description="Status of the over-limit reply.")
    message: str = Field(
        "rate limit exceeded", description="Body of the over-limit reply (plain text)."
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if value in ("ip", "consumer", "route"):
            return value
        kind, sep, name = value.partition(":")
        if kind == "header" and sep and _TOKEN.match(name.strip()):
            return f"header:{name.strip().lower()}"
        raise ValueError(f'invalid key {value!r}: use "ip", "consumer", "route" or "header:<Name>"')

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.rate


def _short(value: str) -> str:
    if len(value) <= _MAX_KEY_CHARS:
        return value
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


class RateLimit(Filter[RateLimitConfig]):
    """A token bucket per key; over the limit → 429 with Retry-After and RateLimit-*."""

    Config = RateLimitConfig

    def __init__(self, config: RateLimitConfig) -> None:
        super().__init__(config)
        self._capacity = float(config.capacity)
        self._limit = str(config.capacity)
        self._per_second = config.rate / config.per
        self._max_keys = config.max_keys
        # key -> [tokens, last refill]; order = least recently seen first.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._clock: Callable[[], float] = time.monotonic
        self._state_key = f"rate-limit:{id(self)}"
        self._body = (config.message + "\n").encode("utf-8")
        self._key_of = self._key_function(config.key)
        self._redis: RedisBuckets | None = None
        if config.policy == "redis":
            if not store.configured():
                raise ValueError('policy "redis" needs a [store] with redis = "redis://..."')
            self._redis = RedisBuckets(self._capacity, self._per_second)
            # Only this policy waits: the local one keeps the chain's no-coroutine path.
            self.on_request = self._on_request_shared  # type: ignore[method-assign,assignment]
        if not config.headers:
            self.skip_phases.add("on_response")

    @staticmethod
    def _key_function(key: str) -> Callable[[Context], str]:
        # Namespaces: IPs as they are; header values "h:..."; consumers "c:...".
        if key == "ip":
            return lambda ctx: ctx.client_ip
        if key == "route":
            return lambda ctx: "r:" + ctx.route
        if key == "consumer":

            def consumer(ctx: Context) -> str:
                who = ctx.state.get("consumer")
                return ctx.client_ip if who is None or who == "" else "c:" + _short(str(who))

            return consumer
        name = key.partition(":")[2]

        def header(ctx: Context) -> str:
            value = ctx.request.headers.get(name)
            return "h:" + _short(value) if value else ctx.client_ip

        return header

    def take(self, key: str) -> tuple[bool, float]:
        """Take a token for ``key``; (allowed, tokens left after it)."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self._max_keys:
                buckets.popitem(last=False)
            bucket = buckets[key] = [self._capacity, now]
            tokens = self._capacity
        else:
            buckets.move_to_end(key)
            tokens = min(self._capacity, bucket[0] + (now - bucket[1]) * self._per_second)
        bucket[1] = now
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        bucket[0] = tokens
        return allowed, tokens

    def _headers(self, tokens: float) -> list[tuple[str, str]]:
        reset = math.ceil((self._capacity - tokens) / self._per_second)
        return [
            ("RateLimit-Limit", self._limit),
            ("RateLimit-Remaining", str(int(tokens))),
            ("RateLimit-Reset", str(reset)),
        ]

    def on_request(self, ctx: Context) -> LocalReply | None:
        allowed, tokens = self.take(self._key_of(ctx))
        return self._decide(ctx, allowed, tokens)

    async def _on_request_shared(self, ctx: Context) -> LocalReply | None:
        """``on_request`` of policy "redis" (set per instance in ``__init__``)."""
        assert self._redis is not None
        key = self._key_of(ctx)
        try:
            s = store.get()
            answer, place = self._redis.take(s, s.key("rl", self.name, key))
            allowed, tokens = self._redis.outcome(await answer, place)
        except store.StoreError as exc:
            policy = self.config.on_store_error
            store.report(self.name, exc, ctx.log, f"on_store_error = {policy!r} applies")
            if policy == "allow":
                return None
            if policy == "deny":
                return self._decide(ctx, False, 0.0)
            allowed, tokens = self.take(key)
        return self._decide(ctx, allowed, tokens)

    def _decide(self, ctx: Context, allowed: bool, tokens: float) -> LocalReply | None:
        if allowed:
            ctx.state[self._state_key] = tokens
            return None
        retry = max(1, math.ceil((1.0 - tokens) / self._per_second))
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Retry-After", str(retry)),
            *self._headers(tokens),
        ]
        return LocalReply(self.config.status, headers, self._body)

    def on_response(self, ctx: Context) -> None:
        tokens = ctx.state.get(self._state_key)
        if tokens is None:
            return  # this filter refused the request: its reply has the headers already
        assert ctx.response is not None
        headers = ctx.response.headers
        if "ratelimit-limit" in headers:
            return
        for name, value in self._headers(tokens):
            headers.add(name, value)
