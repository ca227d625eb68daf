"""The arithmetic behind the WASM CPU budget and the rebuild back-off."""

from __future__ import annotations

import pytest

from core.wasm.budget import BACKOFF_CAP, Backoff, CpuBudget


@pytest.mark.parametrize(
    ("charges", "tripped_at"),
    [
        pytest.param([(0.05, 0.2), (0.5, 0.2)], None, id="under-budget"),
        pytest.param([(0.05, 0.3), (0.5, 0.3)], 1, id="over-within-window"),
        pytest.param([(0.05, 0.4), (1.2, 0.4)], None, id="old-slots-slide-out"),
        pytest.param([(0.05, 0.4), (0.95, 0.2)], 1, id="last-slot-still-counts"),
        pytest.param([(0.05, 0.4), (9.0, 0.4), (9.05, 0.2)], 2, id="long-gap-clears"),
    ],
)
def test_cpu_budget_over_a_sliding_window(
    charges: list[tuple[float, float]], tripped_at: int | None
) -> None:
    budget = CpuBudget(0.5, 1.0, 5.0)  # 0.5 s per second
    results = [budget.charge(now, seconds) for now, seconds in charges]
    expected = [i == tripped_at for i in range(len(charges))]
    assert results == expected
    if tripped_at is not None:
        now = charges[tripped_at][0]
        assert budget.cooling(now) == pytest.approx(5.0)
        assert budget.cooling(now + 5.0) == 0.0
        assert budget.charge(now + 5.1, 0.4) is False  # starts afresh after the cool-down


def test_backoff_doubles_up_to_the_cap_and_forgets() -> None:
    backoff = Backoff(1.0)
    delays = [backoff.failed(float(t)) for t in range(10)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, BACKOFF_CAP, BACKOFF_CAP, BACKOFF_CAP]
    assert backoff.waiting(9.0) == BACKOFF_CAP
    assert backoff.failed(9.0 + 2 * BACKOFF_CAP + 1) == 0.0  # a quiet spell starts over
    never = Backoff(0)  # rebuild_backoff = 0: always at once
    assert [never.failed(float(t)) for t in range(3)] == [0.0, 0.0, 0.0]
