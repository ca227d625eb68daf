"""Shared data and shared queues of Proxy-Wasm VMs, held by the host and bounded.

Both belong to a *vm_id* (a filter's name): every filter of that vm_id sees the same
keys and queues, and a reload that keeps the filter keeps them (the new snapshot's
filter attaches before the old one is closed). A :class:`Home` counts the bytes it
holds against the limits of its newest filter (``limits.max_shared_bytes``,
``limits.max_queue_bytes``); a write past them is refused, and :func:`detach` of the
last filter drops everything the vm_id held.

Queue ids are process-wide (``proxy_resolve_shared_queue`` reaches another vm_id's
queue); an enqueued item counts against the queue's own vm_id.

Instances may be built off the event loop (a start function may set shared data), so
every operation holds one lock; none of them waits on anything.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Protocol

from core.wasm.abi import Status


class Owner(Protocol):
    """What a queue tells when an item arrives (a PluginVm)."""

    def queue_ready(self, qid: int) -> None: ...


class Mirror(Protocol):
    """Where a Home's writes go besides its own dict (:mod:`core.wasm.shared_redis`).
    Called with the lock held: it must only take note, never wait."""

    def wrote(self, key: bytes, value: bytes, old_cas: int, new_cas: int) -> None: ...

    ready: bool  # the first copy from elsewhere arrived (or failed)

    def start(self) -> None: ...

    async def first_sync(self) -> None: ...

    def close(self) -> None: ...


class Queue:
    __slots__ = ("home", "items", "name", "owner")

    def __init__(self, home: Home, name: bytes) -> None:
        self.home = home
        self.name = name
        self.items: deque[bytes] = deque()
        self.owner: Owner | None = None


class Home:
    """What one vm_id holds: shared data and queues, with their sizes."""

    def __init__(self, vm_id: bytes, max_shared: int, max_queue: int) -> None:
        self.vm_id = vm_id
        self.max_shared = max_shared
        self.max_queue = max_queue
        self.data: dict[bytes, tuple[bytes, int]] = {}  # key -> (value, cas)
        self.shared_bytes = 0
        self.queues: dict[bytes, int] = {}  # name -> qid
        self.queue_bytes = 0
        self.users: set[int] = set()  # id() of the attached filters
        self.mirror: Mirror | None = None  # shared_data = "redis": the copy in Redis

    # -- shared data

    def get(self, key: bytes) -> tuple[bytes, int] | None:
        with _lock:
            return self.data.get(key)

    def fits(self, key: bytes, size: int) -> bool:
        """Whether a value of ``size`` bytes under ``key`` stays within the bound."""
        with _lock:
            current = self.data.get(key)
            held = self.shared_bytes - (len(key) + len(current[0]) if current else 0)
            return held + len(key) + size <= self.max_shared

    def set(self, key: bytes, value: bytes, cas: int) -> Status:
        """Store ``value`` (CAS checked when ``cas`` is not 0); BAD_ARGUMENT past the bound."""
        with _lock:
            current = self.data.get(key)
            if cas and current is not None and current[1] != cas:
                return Status.CAS_MISMATCH
            held = self.shared_bytes - (len(key) + len(current[0]) if current else 0)
            if held + len(key) + len(value) > self.max_shared:
                return Status.BAD_ARGUMENT
            next_cas = (current[1] + 1 if current else 1) & 0xFFFFFFFF or 1
            self.data[key] = (value, next_cas)
            self.shared_bytes = held + len(key) + len(value)
            if self.mirror is not None:
                self.mirror.wrote(key, value, current[1] if current else 0, next_cas)
            return Status.OK

    def adopt(self, key: bytes, value: bytes, cas: int) -> None:
        """Take ``value`` and ``cas`` as they are elsewhere (the mirror's newer copy);
        no CAS check and no bound: the writer there was bound by the same limits."""
        with _lock:
            current = self.data.get(key)
            held = self.shared_bytes - (len(key) + len(current[0]) if current else 0)
            self.data[key] = (value, cas)
            self.shared_bytes = held + len(key) + len(value)

    # -- queues

    def register_queue(self, name: bytes, owner: Owner) -> int:
        with _lock:
            qid = self.queues.get(name)
            if qid is None:
                qid = next(_qids)
                self.queues[name] = qid
                _queues[qid] = Queue(self, name)
                _queue_ids[self.vm_id, name] = qid
            _queues[qid].owner = owner
            return qid

    def usage(self) -> dict[str, int]:
        return {"shared": self.shared_bytes, "queue": self.queue_bytes}


_lock = threading.Lock()
_homes: dict[bytes, Home] = {}
_queues: dict[int, Queue] = {}
_queue_ids: dict[tuple[bytes, bytes], int] = {}
_qids = itertools.count(1)


def attach(vm_id: str, user: object, *, max_shared: int, max_queue: int) -> Home:
    """The Home of ``vm_id`` for a new filter ``user``; its limits become the Home's."""
    key = vm_id.encode()
    with _lock:
        home = _homes.get(key)
        if home is None:
            home = _homes[key] = Home(key, max_shared, max_queue)
        home.max_shared, home.max_queue = max_shared, max_queue
        home.users.add(id(user))
        return home


def detach(home: Home, user: object) -> None:
    """``user`` is closed: it no longer gets queue callbacks; the last user of the
    vm_id takes its shared data and queues with it."""
    with _lock:
        home.users.discard(id(user))
        for qid in home.queues.values():
            queue = _queues[qid]
            if queue.owner is user:
                queue.owner = None
        if home.users:
            return
        if home.mirror is not None:
            home.mirror.close()
            home.mirror = None
        for name, qid in home.queues.items():
            _queues.pop(qid, None)
            _queue_ids.pop((home.vm_id, name), None)
        home.queues.clear()
        home.data.clear()
        home.shared_bytes = home.queue_bytes = 0
        if _homes.get(home.vm_id) is home:
            del _homes[home.vm_id]


def resolve_queue(vm_id: bytes, name: bytes) -> int | None:
    with _lock:
        return _queue_ids.get((vm_id, name))


def enqueue(qid: int, size: int, read: _Reader) -> tuple[Status, Owner | None]:
    """Append the ``size`` bytes ``read()`` gives to queue ``qid``; the status, and whom
    to tell. Checked before reading, so a refused item is never copied."""
    with _lock:
        queue = _queues.get(qid)
        if queue is None:
            return Status.NOT_FOUND, None
        home = queue.home
        if home.queue_bytes + size > home.max_queue:
            return Status.BAD_ARGUMENT, None
        data = read()
        if data is None:
            return Status.INVALID_MEMORY_ACCESS, None
        queue.items.append(data)
        home.queue_bytes += len(data)
        return Status.OK, queue.owner


def dequeue(qid: int) -> bytes | Status:
    with _lock:
        queue = _queues.get(qid)
        if queue is None:
            return Status.NOT_FOUND
        if not queue.items:
            return Status.EMPTY
        item = queue.items.popleft()
        queue.home.queue_bytes -= len(item)
        return item


def usage(vm_id: str) -> dict[str, int]:
    """Bytes held for ``vm_id``: ``{"shared": ..., "queue": ...}`` (zeros when none)."""
    with _lock:
        home = _homes.get(vm_id.encode())
        return home.usage() if home is not None else {"shared": 0, "queue": 0}


class _Reader(Protocol):
    def __call__(self) -> bytes | None: ...
