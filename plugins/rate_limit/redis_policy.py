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

* Requests for one key that come in the same turn of the event loop are decided in
  one script call: the script takes up to ``n`` tokens, one after another, exactly as
  ``n`` calls in a row would, and answers how many it allowed; the first that many of
  those requests (in the order they asked) are let through. Counting stays exact across
  processes, and a busy key costs Redis one call per turn rather than one per request.

A sliding-window log would be exact too, but costs a sorted-set entry per request;
a fixed window lets twice the limit through at a window's edge. GCRA costs one key
and O(1) per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from plugin_sdk.store import Script, Store, StoreError, StoreUnavailable

# KEYS[1]: the bucket. ARGV[1]: emission interval (µs per token), ARGV[2]: burst,
# ARGV[3]: tokens wanted, one per request. Returns {tokens allowed, debt in µs before
# them (TAT - now)}: each allowed token adds one interval to the debt.
GCRA = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local before = tat - now
local debt = before
local allowed = 0
while allowed < wanted and debt + interval <= window do
  debt = debt + interval
  allowed = allowed + 1
end
if allowed > 0 then
  redis.call('SET', KEYS[1], string.format('%.0f', now + debt), 'PX', math.ceil(debt / 1000) + 1)
end
return {allowed, math.floor(before)}
"""
)
#: Distinct request counts whose packed arguments are kept (more are packed per call).
_KEPT_ARGS = 256


class RedisBuckets:
    """GCRA buckets in the store; ``take`` and ``outcome`` answer like the local bucket."""

    def __init__(self, capacity: float, per_second: float) -> None:
        self.capacity = capacity
        self.interval_us = 1_000_000.0 / per_second
        self._head = (repr(self.interval_us).encode(), repr(capacity).encode())
        self._args: dict[int, tuple[bytes, bytes, bytes]] = {}  # wanted -> ARGV, packed once
        self._waiting: dict[tuple[Store, str], list[asyncio.Future[Any]]] = {}  # by key

    def take(self, store: Store, key: str) -> tuple[asyncio.Future[Any], int]:
        """Take a token from ``key``'s bucket: the script's answer to await, and this
        take's place among the turn's takes of the key, for :meth:`outcome`. The call is
        made at the end of this turn of the loop, for all of them."""
        answer = store.loop.create_future()  # each its own: one may be cancelled alone
        waiting = self._waiting
        same = waiting.get((store, key))
        if same is None:
            if not waiting:
                store.before_send(self._send)
            waiting[(store, key)] = [answer]
            return answer, 0
        same.append(answer)
        return answer, len(same) - 1

    def outcome(self, answer: Any, place: int) -> tuple[bool, float]:
        """(allowed, tokens left after it) for the take at ``place`` of ``answer``."""
        allowed, before = int(answer[0]), int(answer[1])
        taken = place + 1 if place < allowed else allowed
        return place < allowed, max(0.0, self.capacity - before / self.interval_us - taken)

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for (store, key), takes in waiting.items():
            into = takes[0] if len(takes) == 1 else _Shared(store.loop, takes)
            try:
                store.run(GCRA, (key,), self._argv(len(takes)), into=into)
            except StoreError as exc:
                _set(into, exception=exc)

    def _argv(self, wanted: int) -> tuple[bytes, bytes, bytes]:
        argv = self._args.get(wanted)
        if argv is None:
            argv = (*self._head, b"%d" % wanted)
            if len(self._args) < _KEPT_ARGS:  # (the same tuple each time: see Script.call)
                self._args[wanted] = argv
        return argv


class _Shared(asyncio.Future[Any]):
    """One script call's answer, handed on to every take it decides as it is set (a
    callback of this future would run a turn of the loop later)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, takes: list[asyncio.Future[Any]]):
        super().__init__(loop=loop)
        self.takes = takes

    def set_result(self, result: Any, /) -> None:
        super().set_result(result)
        for take in self.takes:
            if not take.done():
                take.set_result(result)

    def set_exception(self, exception: type | BaseException, /) -> None:
        super().set_exception(exception)
        self.exception()  # retrieved: the takes carry it on
        for take in self.takes:
            if not take.done():  # each its own exception object
                error = exception if isinstance(exception, BaseException) else exception()
                if isinstance(error, StoreError):
                    take.set_exception(type(error)(str(error)))
                else:
                    take.set_exception(StoreUnavailable(f"no answer from the store: {error!r}"))


def _set(future: asyncio.Future[Any], *, exception: BaseException) -> None:
    if not future.done():
        future.set_exception(exception)
