"""A timeout that moves with every request without a new event-loop timer each time.

A keep-alive connection re-arms its timeouts several times per request (header
timeout, idle timeout, the exchange's per-try and read timeouts). Scheduling and
cancelling a loop timer each time costs more than the rest of the bookkeeping, so a
:class:`Deadline` keeps one timer and moves only its own target:

* :meth:`arm` records ``now + delay`` and the callback. If the loop timer already
  scheduled fires no later than that, it stays; only a deadline earlier than the
  scheduled timer replaces it.
* :meth:`disarm` forgets the callback; the scheduled timer, when it fires, finds
  nothing to do and schedules no other.
* When the timer fires before the current deadline (it was armed later meanwhile), it
  schedules itself again for that deadline.

So the callback runs at the deadline of the last :meth:`arm` (give or take the loop's
clock granularity), as with one ``call_later`` per arm, and a busy connection costs
about one loop timer per timeout period instead of several per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    """One callback at a deadline that is re-armed often (see the module docstring)."""

    __slots__ = ("_at", "_callback", "_handle", "_loop", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0  # when the scheduled loop timer fires
        self._when = 0.0  # the deadline of the last arm
        self._callback: Callable[[], object] | None = None

    @property
    def armed(self) -> bool:
        return self._callback is not None

    def arm(self, delay: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` in ``delay`` seconds, replacing whatever was armed before."""
        when = self._loop.time() + (delay if delay > 0.0 else 0.0)
        self._when = when
        self._callback = callback
        handle = self._handle
        if handle is not None:
            if self._at <= when:
                return
            handle.cancel()
        self._at = when
        self._handle = self._loop.call_at(when, self._fire)

    def disarm(self) -> None:
        """Run nothing (the scheduled loop timer, if any, fires idle)."""
        self._callback = None

    def close(self) -> None:
        """Disarm and cancel the loop timer: nothing runs any more."""
        self._callback = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        callback = self._callback
        if callback is None:
            return
        when = self._when
        if self._loop.time() < when:  # re-armed later since this timer was scheduled
            self._at = when
            self._handle = self._loop.call_at(when, self._fire)
            return
        self._callback = None
        callback()
