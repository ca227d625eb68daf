"""wasmgate's engine.

With `WASMGATE_COMPILED=1` in the environment, the data-path modules that `make compile`
built with mypyc are loaded instead of their sources (core/compiled.py).
"""

from core.compiled import activate_from_env

activate_from_env()
