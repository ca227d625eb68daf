"""The change of a bench run against the last recorded one, and the targets that got worse.

bench/run.py (req/s, higher is better) and bench/instr.py (instructions per request,
lower is better) both record every run as JSON under bench/results/; after a run each
calls :func:`report` with its figures and the previous run's, which prints one line per
target and names the targets that got worse by more than ``THRESHOLD``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

THRESHOLD = 0.03  # a change worse than 3 % is named


def last_result(results: Path, pattern: str, exclude: Path | None = None) -> Path | None:
    """The newest file in ``results`` whose name fully matches ``pattern`` (names sort by
    their UTC timestamp), other than ``exclude``."""
    rx = re.compile(pattern)
    found = sorted(p for p in results.glob("*.json") if rx.fullmatch(p.name) and p != exclude)
    return found[-1] if found else None


def load_figures(
    path: Path, extract: Callable[[dict[str, Any]], dict[str, float]]
) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
        return extract(data)
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def report(
    now: Mapping[str, float],
    before: Mapping[str, float],
    *,
    lower_is_better: bool,
    unit: str,
    label: str,
    threshold: float = THRESHOLD,
) -> list[str]:
    """Print the change per target against ``before`` (``label`` names that run);
    returns the targets that got worse by more than ``threshold``."""
    if not before:
        print(f"\nno earlier run to compare with ({label})")
        return []
    print(f"\nchange against {label}:")
    worse: list[str] = []
    for name, value in now.items():
        old = before.get(name)
        if not old:
            print(f"  {name:<18}{value:>14,.1f} {unit}  (not in the earlier run)")
            continue
        change = (value - old) / old
        got_worse = change > threshold if lower_is_better else change < -threshold
        if got_worse:
            worse.append(name)
        mark = "  WORSE" if got_worse else ""
        print(f"  {name:<18}{old:>14,.1f} -> {value:>14,.1f} {unit}  {change:+7.1%}{mark}")
    if worse:
        print(f"worse by more than {threshold:.0%}: {', '.join(worse)}")
    else:
        print(f"no target worse by more than {threshold:.0%}")
    return worse
