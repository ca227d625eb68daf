"""`mypyc_attr` for modules that `make compile` builds with mypyc (core/compiled.py).

mypyc reads the decorator at compile time; at run time it does nothing, so a missing
mypy_extensions (not a runtime dependency: it comes with the dev extra's mypy) is fine.
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
