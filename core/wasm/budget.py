"""Bookkeeping for a filter's share of the event loop: a CPU budget over a sliding
window, and the back-off between rebuilds of an instance that keeps trapping.

Both are plain arithmetic on ``time.monotonic()`` readings the caller passes in; the
caller (:class:`core.wasm.plugin.PluginVm`) decides what to refuse.
"""

from __future__ import annotations

BACKOFF_CAP = 60.0  # seconds: the longest wait before a rebuild


class CpuBudget:
    """Seconds of guest code a filter may run per ``window`` seconds (``fraction`` of
    one CPU). The window slides in tenths; going over starts a ``cooldown``."""

    SLOTS = 10

    def __init__(self, fraction: float, window: float, cooldown: float) -> None:
        self.allowed = fraction * window
        self.width = window / self.SLOTS
        self.cooldown = cooldown
        self.slots = [0.0] * self.SLOTS
        self.slot = 0  # the newest slot's number (time // width)
        self.index = 0  # its place in slots
        self.slot_end = 0.0  # when the newest slot ends
        self.used = 0.0  # the sum of the slots
        self.until = 0.0  # end of the current cool-down (0: none yet)

    def charge(self, now: float, seconds: float) -> bool:
        """Count ``seconds`` spent up to ``now``; True when this goes over the budget
        (a cool-down then runs until :attr:`until`). Called after every callback: the
        common case (same slot, under budget) is three additions and two comparisons."""
        if now >= self.slot_end:
            self._advance(now)
        self.slots[self.index] += seconds
        self.used += seconds
        if self.used <= self.allowed:
            return False
        self.until = now + self.cooldown
        self.slots = [0.0] * self.SLOTS  # after the cool-down it starts afresh
        self.used = 0.0
        return True

    def _advance(self, now: float) -> None:
        slot = int(now / self.width)
        if slot - self.slot >= self.SLOTS:
            self.slots = [0.0] * self.SLOTS
        else:
            for n in range(self.slot + 1, slot + 1):
                self.slots[n % self.SLOTS] = 0.0
        self.slot = slot
        self.index = slot % self.SLOTS
        self.slot_end = (slot + 1) * self.width
        self.used = sum(self.slots)

    def cooling(self, now: float) -> float:
        """Seconds left of the cool-down (0 when none runs)."""
        return max(0.0, self.until - now)


class Backoff:
    """When to rebuild an instance after a trap: at once after the first trap, then
    ``first`` seconds, doubling with each further trap up to :data:`BACKOFF_CAP`. A
    trap more than twice the cap after the previous one starts over."""

    def __init__(self, first: float) -> None:
        self.first = first
        self.strikes = 0
        self.last = float("-inf")
        self.not_before = 0.0

    def failed(self, now: float) -> float:
        """Count a trap at ``now``; the seconds to wait before the next rebuild."""
        if now - self.last > 2 * BACKOFF_CAP:
            self.strikes = 0
        self.last = now
        self.strikes += 1
        delay = 0.0
        if self.strikes > 1 and self.first > 0:
            delay = min(BACKOFF_CAP, self.first * 2 ** min(self.strikes - 2, 16))
        self.not_before = now + delay
        return delay

    def waiting(self, now: float) -> float:
        """Seconds left before a rebuild may start."""
        return max(0.0, self.not_before - now)
