"""`mypyc_attr` for plugin_sdk's modules that `make compile` builds (plugin_sdk/_compiled.py).

mypyc reads the decorator at compile time; at run time it does nothing, so a missing
mypy_extensions (not a runtime dependency: it comes with the dev extra's mypy) is fine.
(core/native.py re-exports it: plugin_sdk imports nothing from core/.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

_T = TypeVar("_T")

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:

        def mypyc_attr(*attrs: str, **kwattrs: Any) -> Callable[[_T], _T]:
            return lambda cls: cls
