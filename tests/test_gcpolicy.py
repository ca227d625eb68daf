"""core/gcpolicy.py: what `wasmgate run` does to the cycle collector before it serves."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from core import gcpolicy
objects = len(gc.get_objects())
gcpolicy.prepare()
cycle = []
cycle.append(cycle)  # made after prepare: collectable, not frozen
del cycle
print(json.dumps({
    "frozen": gc.get_freeze_count(), "objects": objects,
    "threshold": gc.get_threshold(), "collected": gc.collect(),
}))
"""


def test_prepare_freezes_what_is_loaded_and_leaves_later_cycles_collectable() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    seen = json.loads(out)
    assert seen["frozen"] > seen["objects"] // 2  # the modules loaded so far
    assert seen["threshold"][0] == 10_000
    assert seen["collected"] >= 1  # the cycle made afterwards is still found
