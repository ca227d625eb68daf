"""Types of the C extension plugin_sdk/_timing.c (see its header comment)."""

from collections.abc import Callable
from typing import Any

FLUSH_AT: int

class Timed:
    def __init__(
        self,
        call: Callable[..., Any],
        pending: list[float],
        flush: Callable[[], object] | None = None,
    ) -> None: ...
    @property
    def call(self) -> Callable[..., Any]: ...
    @property
    def pending(self) -> list[float]: ...
    @property
    def flush(self) -> Callable[[], object] | None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
