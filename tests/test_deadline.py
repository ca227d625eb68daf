"""core/deadline.py: one loop timer serves a deadline that is re-armed often."""

from __future__ import annotations

import asyncio

from core.deadline import Deadline


async def test_runs_the_last_callback_at_the_last_deadline() -> None:
    loop = asyncio.get_running_loop()
    fired: list[tuple[str, float]] = []
    deadline = Deadline(loop)
    start = loop.time()
    deadline.arm(0.05, lambda: fired.append(("first", loop.time() - start)))
    deadline.arm(0.15, lambda: fired.append(("second", loop.time() - start)))  # later: kept
    await asyncio.sleep(0.1)
    assert fired == []  # the first timer fired idle and rescheduled itself
    await asyncio.sleep(0.15)
    assert [name for name, _ in fired] == ["second"]
    assert fired[0][1] >= 0.14
    assert not deadline.armed


async def test_an_earlier_deadline_replaces_the_scheduled_timer() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    deadline = Deadline(loop)
    deadline.arm(10.0, lambda: fired.append("late"))
    deadline.arm(0.02, lambda: fired.append("soon"))
    await asyncio.sleep(0.1)
    assert fired == ["soon"]


async def test_disarm_and_close_run_nothing() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    deadline = Deadline(loop)
    deadline.arm(0.02, lambda: fired.append("disarmed"))
    deadline.disarm()
    other = Deadline(loop)
    other.arm(0.02, lambda: fired.append("closed"))
    other.close()
    await asyncio.sleep(0.08)
    assert fired == []
    deadline.arm(0.02, lambda: fired.append("again"))  # usable after a disarm
    await asyncio.sleep(0.08)
    assert fired == ["again"]
