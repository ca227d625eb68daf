"""wasmgate's engine.

The data-path modules that mypyc built (`make install` / `make compile`) are loaded
instead of their sources when the build matches them; `WASMGATE_COMPILED` (auto, 1, 0)
decides (core/compiled.py).
"""

from core.compiled import activate_from_env

activate_from_env()
