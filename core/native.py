"""`mypyc_attr` for modules that `make compile` builds with mypyc (core/compiled.py).

The one definition is plugin_sdk/_native.py (plugin_sdk imports nothing from core/, so
core takes it from there): mypyc reads the decorator at compile time, and at run time it
does nothing.
"""

from __future__ import annotations

from plugin_sdk._native import mypyc_attr as mypyc_attr

__all__ = ["mypyc_attr"]
