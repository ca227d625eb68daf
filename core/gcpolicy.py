"""How the gateway's processes set up Python's cycle collector before they serve.

Two settings, both measured (bench/README.md, "The cycle collector"):

- **What was loaded at start is frozen** (``gc.freeze``): the modules, classes and
  functions imported before the configuration is read, some 60,000 objects, move to
  the permanent generation, so a full collection no longer walks them (one took about
  11 ms, about once a second at full load), and forked workers do not write to the
  pages those objects share with the supervisor. What the configuration builds (the
  snapshot: routes, filters, Wasm instances) is *not* frozen: a reload makes the old
  one garbage, and frozen garbage in a cycle would never be collected.
- **The youngest generation is collected every** ``GEN0_THRESHOLD`` **allocations**
  instead of Python's 700: a request allocates and frees hundreds of objects, nearly
  all freed by reference counting, so collecting less often finds the same garbage for
  less work. The older generations keep Python's defaults.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000


def prepare() -> None:
    """Freeze what is loaded now and set the thresholds (call before reading config)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
