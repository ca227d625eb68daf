"""Blocking work off the event loop, in bounded thread pools kept apart by purpose.

The gateway serves every request on one event loop, so a filter must never block it:
a bcrypt check, a file read or a call into a synchronous client library goes to a
worker thread with :func:`offload`::

    from plugin_sdk import offload

    ok = await offload("crypto", bcrypt.checkpw, password, hashed)

Each *purpose* has its own pool, so work of one kind cannot starve another: a
registry that never answers fills the ``"registry"`` pool, while bcrypt checks keep
running in ``"crypto"``. A pool has three bounds (:class:`PoolSettings`):

* ``workers`` — threads running calls at once;
* ``queue`` — calls waiting for a thread besides those; one more is refused at once
  with :class:`OffloadBusy` instead of waiting without bound;
* ``timeout`` — seconds a caller waits for its call (queueing included) before it
  gets :class:`OffloadTimeout`. A call that has not started by then never runs; one
  already running finishes in its thread (Python cannot stop a thread), and keeps
  its worker busy until it does, so give blocking I/O its own timeout too.

Purposes the gateway uses: ``"crypto"`` (password hashing), ``"registry"`` (the
plugin market's network calls), ``"files"`` (file reads, digests). A plugin may use
those or name its own; a purpose nobody configured gets :data:`DEFAULT`. The gateway
sizes the pools from ``[executors.NAME]`` of gateway.toml with :func:`configure`
when it starts; pools are per process, created at first use.

Both errors derive from :class:`OffloadError` (a ``RuntimeError``); raised by a
filter phase, they are handled by the filter's fail strategy like any other error.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class PoolSettings:
    """The bounds of one purpose's pool."""

    workers: int = 2
    queue: int = 64
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.queue < 0:
            raise ValueError("queue must be >= 0")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")


#: Settings of a purpose that neither the gateway nor ``[executors]`` sizes.
DEFAULT = PoolSettings()

#: The gateway's own purposes, before ``[executors]`` changes them.
BUILTIN: Mapping[str, PoolSettings] = {
    "crypto": PoolSettings(workers=max(2, min(8, os.cpu_count() or 2)), queue=256, timeout=10.0),
    "registry": PoolSettings(workers=4, queue=16, timeout=15.0),
    "files": PoolSettings(workers=4, queue=64, timeout=10.0),
}


class OffloadError(RuntimeError):
    """An offloaded call did not produce a result (base of the two below)."""

    def __init__(self, purpose: str, message: str) -> None:
        super().__init__(message)
        self.purpose = purpose


class OffloadBusy(OffloadError):
    """The purpose's workers and queue are all taken; the call was not queued."""


class OffloadTimeout(OffloadError, TimeoutError):
    """The call did not finish within the timeout (queueing included)."""


class Pool:
    """One purpose's executor with a bound on calls running plus waiting."""

    def __init__(self, purpose: str, settings: PoolSettings) -> None:
        self.purpose = purpose
        self.settings = settings
        self._executor = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix=f"wasmgate-{purpose}"
        )
        self._lock = threading.Lock()
        self.pending = 0  # calls running or queued (threads still held by timed-out calls too)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        limit = self.settings.workers + self.settings.queue
        with self._lock:
            if self.pending >= limit:
                raise OffloadBusy(
                    self.purpose,
                    f"the {self.purpose!r} pool is full ({self.settings.workers} workers "
                    f"busy, {self.settings.queue} calls waiting); try again later",
                )
            self.pending += 1
        try:
            future = self._executor.submit(fn)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return future

    def _release(self) -> None:
        with self._lock:
            self.pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False)  # what it holds still runs


_settings: dict[str, PoolSettings] = dict(BUILTIN)
_pools: dict[str, Pool] = {}
_pools_lock = threading.Lock()


def configure(settings: Mapping[str, PoolSettings]) -> None:
    """Size the pools (the gateway calls this at start from ``[executors]``).

    Purposes not named keep their current settings. A pool already created with
    other settings is replaced: calls in it finish, new calls go to the new pool.
    """
    with _pools_lock:
        for purpose, s in settings.items():
            _settings[purpose] = s
            old = _pools.get(purpose)
            if old is not None and old.settings != s:
                del _pools[purpose]
                old.shutdown()


def settings(purpose: str) -> PoolSettings:
    """The settings ``purpose``'s pool has, or will have at its first use."""
    return _settings.get(purpose, DEFAULT)


def pool(purpose: str) -> Pool:
    """``purpose``'s pool, created at first use."""
    found = _pools.get(purpose)
    if found is not None:
        return found
    with _pools_lock:
        found = _pools.get(purpose)
        if found is None:
            found = _pools[purpose] = Pool(purpose, settings(purpose))
        return found


async def offload(
    purpose: str,
    fn: Callable[[*Ts], T],
    /,
    *args: *Ts,
    timeout: float | None = None,
) -> T:
    """Run ``fn(*args)`` in ``purpose``'s pool and return its result.

    Call it from any phase (or anything else running on the gateway's loop); use
    ``functools.partial`` for keyword arguments. Waits at most ``timeout`` seconds
    (default: the pool's), queueing included. Raises :class:`OffloadBusy` at once
    when the pool is full, :class:`OffloadTimeout` past the timeout, and whatever
    ``fn`` raises. Cancelling the caller cancels the call if it has not started.
    """
    p = pool(purpose)
    future = p.submit(lambda: fn(*args))
    limit = p.settings.timeout if timeout is None else timeout
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            return await asyncio.wrap_future(future)
    except TimeoutError:
        if not deadline.expired():
            raise  # fn's own TimeoutError (a socket timeout, say)
        if future.done() and not future.cancelled():
            return future.result()  # it finished just as the clock ran out
        raise OffloadTimeout(
            purpose, f"the {purpose!r} call did not finish within {limit:g} s"
        ) from None


def _forget_pools() -> None:
    # A forked worker process must not share (dead) threads with its parent.
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)
