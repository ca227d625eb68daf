"""wasmgate's engine.

The data-path modules that mypyc built (`make install` / `make compile`) are loaded
instead of their sources when the build matches them; `WASMGATE_COMPILED` (auto, 1, 0)
decides, once per process, when plugin_sdk is first imported (plugin_sdk/_compiled.py,
core/compiled.py).
"""

from core.compiled import activate_from_env

activate_from_env()  # plugin_sdk already did; this returns its choice
