"""``shared_data = "redis"``: a vm_id's shared data, kept in Redis for every process.

Proxy-Wasm's ``proxy_get_shared_data`` and ``proxy_set_shared_data`` are synchronous:
the filter waits inside its callback for the answer, and the callback runs on the
event loop. A Redis round trip there would block every other request of the worker,
so the store is not asked at that moment. Instead each process keeps a *mirror*: its
:class:`~core.wasm.shared.Home` dict, which the host functions read and write exactly
as for local shared data (so CAS within one process stays exact), and which is kept
in step with Redis off the callback:

* **Writes go through.** A write that passed the local CAS check is sent to Redis
  (batched with the other store calls of that turn of the loop) by a Lua script that
  applies it only when Redis's CAS for the key is still the one the writer saw.
* **Reads come from the mirror**, loaded before a worker's first request through the
  filter runs (that request waits for it, at most ``[store].timeout``) and refreshed
  every :data:`SYNC_INTERVAL` seconds from Redis (one ``HGETALL`` per vm_id); Redis's
  value wins for every key without a write of this process in flight. So a value
  written by another process or replica is seen within about that interval.
* **Conflicts.** When two processes write the same key from the same CAS within one
  interval, Redis takes the first; the second's write, which its filter was told
  succeeded, is replaced in its mirror by Redis's value and counted
  (``wasmgate_store_errors_total{kind="conflict"}``). Counters incremented by every
  request in every worker therefore lose increments under contention; values read far
  more often than written (settings, tokens, allow-lists, caches) fit well.
* **Outages.** While Redis fails, each process goes on with its mirror; writes made
  then are not replayed (each failure counted and logged once per interval), and the
  next successful refresh brings Redis's values back.

Keys in Redis: ``<key_prefix>wasm:{<vm_id>}`` (values) and ``...:cas`` (their CAS),
one hash each, with the vm_id as the cluster hash tag. Shared *queues* stay per
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from core.wasm.shared import Home
from plugin_sdk import store

log = logging.getLogger("wasmgate.wasm")
SYNC_INTERVAL = 0.25

# KEYS: values hash, cas hash. ARGV: field, expected cas, new cas, value.
CAS_SET = store.Script(
    """
local cur = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
if cur ~= ARGV[2] then
  return {0, redis.call('HGET', KEYS[1], ARGV[1]), cur}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return {1}
"""
)
READ_ALL = store.Script("return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}")


class RedisMirror:
    """Keeps one Home in step with Redis (see the module doc)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.name = home.vm_id.decode(errors="replace")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self.queue: list[tuple[bytes, bytes, int, int]] = []
        self.in_flight: dict[bytes, int] = {}  # key -> writes not yet answered
        self.flushing = False
        self.closed = False
        self.ready = False  # the first refresh ended (whatever its outcome)
        self._first: asyncio.Future[None] | None = None

    # -- called by the Home, with its lock held (any thread)

    def wrote(self, key: bytes, value: bytes, old_cas: int, new_cas: int) -> None:
        self.queue.append((key, value, old_cas, new_cas))
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        if self.loop is not None and not self.flushing:
            self.flushing = True
            self.loop.call_soon_threadsafe(self._flush)

    def close(self) -> None:
        self.closed = True
        if self.task is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.task.cancel)

    # -- on the loop

    def start(self) -> None:
        """Begin refreshing on the running loop (a worker's first call); idempotent."""
        if self.loop is not None or self.closed:
            return
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # off the loop (a build in a thread): the next call on the loop starts
        self._first = self.loop.create_future()
        self.task = self.loop.create_task(self._refresh_forever())
        if self.queue:
            self.flushing = True
            self.loop.call_soon(self._flush)

    async def first_sync(self) -> None:
        """Wait for the first refresh (bounded by [store].timeout, as every call)."""
        self.start()
        if self._first is not None:
            await asyncio.shield(self._first)

    def _keys(self, s: store.Store) -> tuple[str, str]:
        base = s.key("wasm", "{" + self.name + "}")
        return base, base + ":cas"

    def _flush(self) -> None:
        self.flushing = False
        batch, self.queue = self.queue, []
        for item in batch:
            assert self.loop is not None
            self.loop.create_task(self._write(*item))

    async def _write(self, key: bytes, value: bytes, old_cas: int, new_cas: int) -> None:
        try:
            s = store.get()
            result = await s.run(CAS_SET, self._keys(s), (key, old_cas, new_cas, value))
            if not result[0]:
                store.count_error(self.name, "conflict")
                current, cas = result[1], int(result[2])
                if current is not None and cas:
                    self.home.adopt(key, current, cas)
        except store.StoreError as exc:
            store.report(self.name, exc, log, f"shared data of vm_id {self.name!r} stays local")
        finally:
            left = self.in_flight.get(key, 1) - 1
            if left > 0:
                self.in_flight[key] = left
            else:
                self.in_flight.pop(key, None)

    async def _refresh_forever(self) -> None:
        while not self.closed:
            with contextlib.suppress(store.StoreError):
                await self.refresh()
            if not self.ready:
                self.ready = True
                if self._first is not None and not self._first.done():
                    self._first.set_result(None)
            await asyncio.sleep(SYNC_INTERVAL)

    async def refresh(self) -> None:
        """Take Redis's value of every key without a write of ours in flight."""
        try:
            s = store.get()
            values, cases = await s.run(READ_ALL, self._keys(s), ())
        except store.StoreError as exc:
            store.report(self.name, exc, log, f"shared data of vm_id {self.name!r} stays local")
            raise
        cas_of = _pairs(cases)
        for key, value in _pairs(values).items():
            cas = int(cas_of.get(key, b"0"))
            if key in self.in_flight or not cas:
                continue
            entry = self.home.get(key)
            if entry is None or entry[1] != cas:
                self.home.adopt(key, value, cas)


def _pairs(flat: list[Any]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def bind(home: Home) -> RedisMirror:
    """The Home's mirror, made at its first filter with ``shared_data = "redis"``."""
    mirror = home.mirror
    if not isinstance(mirror, RedisMirror):
        mirror = RedisMirror(home)
        for key, (value, cas) in list(home.data.items()):  # set while the VM started
            mirror.wrote(key, value, cas - 1, cas)
        home.mirror = mirror
    return mirror
