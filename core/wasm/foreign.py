"""Foreign functions: what ``proxy_call_foreign_function`` calls.

A foreign function is a Python callable ``(args: bytes) -> bytes`` registered by name
in the ``wasmgate.wasm_foreign_functions`` entry-point group, so a deployment adds its
own exactly as the built-in ones are added (``compress`` and ``uncompress``, from
``plugins/wasm_foreign``; core/ never imports them). The group is loaded once per
process, when the first Proxy-Wasm filter is built; an entry point that cannot be
loaded, or is not callable, makes that configuration an error.

A call runs on the event loop, inside the filter's callback and its CPU deadline's
wall clock: a function must be quick and must not block. Its outcome, as a status:

- returns bytes: ``OK``, and the bytes are the result;
- raises ``ValueError`` (bad input, such as data that does not uncompress):
  ``BAD_ARGUMENT``;
- raises anything else, or returns something that is not bytes: ``INTERNAL_FAILURE``,
  logged;
- an unknown name: ``NOT_FOUND``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points

from core.errors import PluginError
from core.wasm.abi import Status

GROUP = "wasmgate.wasm_foreign_functions"
ForeignFunction = Callable[[bytes], bytes]

log = logging.getLogger("wasmgate.wasm")
_registry: dict[str, ForeignFunction] | None = None


def registry() -> dict[str, ForeignFunction]:
    """Every foreign function by name, loaded on the first call; raises PluginError
    (naming the entry point) if one cannot be loaded."""
    global _registry
    if _registry is None:
        found: dict[str, ForeignFunction] = {}
        for ep in entry_points(group=GROUP):
            label = f"wasm foreign function {ep.name!r} ({ep.value})"
            try:
                function = ep.load()
            except Exception as exc:
                raise PluginError(f"{label}: cannot load: {exc}") from None
            if not callable(function):
                raise PluginError(f"{label}: not callable")
            found[ep.name] = function
        _registry = found
    return _registry


def call(name: str, args: bytes, plugin: str) -> tuple[Status, bytes]:
    """Call foreign function ``name`` for filter ``plugin``: (status, result)."""
    function = registry().get(name)
    if function is None:
        return Status.NOT_FOUND, b""
    try:
        result = function(args)
    except ValueError as exc:
        log.debug("wasm filter %r: foreign function %r: %s", plugin, name, exc)
        return Status.BAD_ARGUMENT, b""
    except Exception:
        log.exception("wasm filter %r: foreign function %r failed", plugin, name)
        return Status.INTERNAL_FAILURE, b""
    if not isinstance(result, bytes | bytearray):
        log.error(
            "wasm filter %r: foreign function %r returned %s, not bytes",
            plugin,
            name,
            type(result).__name__,
        )
        return Status.INTERNAL_FAILURE, b""
    return Status.OK, bytes(result)
