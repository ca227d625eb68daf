"""``policy = "redis"``: one budget per key for every process and replica, kept in Redis.

The algorithm is GCRA (the generic cell rate algorithm), run as one Lua script, so
each decision is a single atomic step on the Redis server:

* It is the same token bucket as the local policy (capacity ``burst``, refilled at
  ``rate / per`` a second), so the two policies answer alike and send the same
  ``RateLimit-*`` headers; only where the bucket lives differs.
* A bucket is one number in Redis: the *theoretical arrival time* (TAT), when the
  bucket would be full again. A request is allowed when ``TAT - now`` leaves room for
  one more emission interval (``per / rate``) within ``burst`` intervals; it then
  moves TAT forward by one interval. No read-modify-write race exists between
  processes, because Redis runs the script alone: N workers and M replicas draw on
  exactly one budget.
* Time is the Redis server's (``TIME``), so clocks of the gateways never matter.
* The key expires when its bucket is full again, so idle clients cost no memory; a
  reload or a restart of a gateway changes nothing, since nothing is kept locally.

A sliding-window log would be exact too, but costs a sorted-set entry per request;
a fixed window lets twice the limit through at a window's edge. GCRA costs one key
and O(1) per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from plugin_sdk.store import Script, Store

# KEYS[1]: the bucket. ARGV[1]: emission interval (µs per token), ARGV[2]: burst.
# Returns {allowed (1/0), debt in µs after the decision (TAT - now)}.
GCRA = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local debt = tat - now
if debt + interval > window then
  return {0, math.floor(debt)}
end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {1, math.floor(tat - now)}
"""
)


class RedisBuckets:
    """GCRA buckets under ``prefix`` in the store; ``take`` answers like the local bucket."""

    def __init__(self, capacity: float, per_second: float) -> None:
        self.capacity = capacity
        self.interval_us = 1_000_000.0 / per_second
        self.args = (repr(self.interval_us).encode(), repr(capacity).encode())  # packed once

    def take(self, store: Store, key: str) -> asyncio.Future[Any]:
        """Take a token from ``key``'s bucket; the answer goes to :meth:`outcome`."""
        return store.run(GCRA, (key,), self.args)

    def outcome(self, answer: Any) -> tuple[bool, float]:
        """(allowed, tokens left after it) from the script's answer."""
        allowed, debt = answer
        return bool(allowed), max(0.0, self.capacity - int(debt) / self.interval_us)
