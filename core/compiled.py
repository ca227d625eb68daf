"""The compiled data path: the modules mypyc built, run when the build is the code.

The logic lives in plugin_sdk/_compiled.py (read its docstring: `WASMGATE_COMPILED`'s
auto, 1 and 0, the one warning, all or nothing): plugin_sdk is imported before any of
core/ (by pytest's plugin entry point, by plugin code, and by core/ itself), so it is
plugin_sdk/__init__.py that installs the build's finder, before any compiled module is
imported. This module keeps the engine's names for it.
"""

from __future__ import annotations

from plugin_sdk._compiled import (
    AUTO,
    DEFAULT_DIR,
    DIR_ENV,
    ENV,
    NEVER,
    REBUILD,
    REQUIRED,
    ROOT,
    CompiledFinder,
    CompiledModuleError,
    DataPath,
    NoBuild,
    activate,
    activate_from_env,
    active,
    build_dir,
    mode,
    status,
    verify,
    wanted,
)

__all__ = [
    "AUTO",
    "DEFAULT_DIR",
    "DIR_ENV",
    "ENV",
    "NEVER",
    "REBUILD",
    "REQUIRED",
    "ROOT",
    "CompiledFinder",
    "CompiledModuleError",
    "DataPath",
    "NoBuild",
    "activate",
    "activate_from_env",
    "active",
    "build_dir",
    "mode",
    "status",
    "verify",
    "wanted",
]
