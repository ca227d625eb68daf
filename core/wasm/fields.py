"""Checks of the header fields a Proxy-Wasm filter sets: in C (core/wasm/_crossing.c)
where the extension is built, else these Python versions (``WASMGATE_WASM_CTYPES=1``
forces them, as it forces the ctypes boundary in :mod:`core.wasm.vm`).

- ``bad_field(name, value)``: whether a field may not go on the wire, as a Python
  filter's may not (plugin_sdk.headers): an empty name, a name with whitespace or
  ':', a value with CR, LF or NUL.
- ``scan(raw, key, drop)``: ``(present, held)``: whether a field called ``key`` (lower
  case) is in ``raw``, and what the map holds (names + values + 32 bytes a field, as
  HTTP/2 sizes a header list), without the fields called ``key`` when ``drop``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

_BAD_NAME = re.compile(rb"[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0:]")  # str's \s in Latin-1, ':'
_BAD_VALUE = re.compile(rb"[\r\n\0]")


def _bad_field(name: bytes, value: bytes | None) -> bool:
    return not name or bool(_BAD_NAME.search(name)) or bool(value and _BAD_VALUE.search(value))


def _scan(raw: list[tuple[bytes, bytes]], key: bytes, drop: bool) -> tuple[bool, int]:
    present, held, size = False, 0, len(key)
    for name, value in raw:
        if len(name) == size and name.lower() == key:
            present = True
            if drop:
                continue
        held += len(name) + len(value) + 32
    return present, held


bad_field: Callable[[bytes, bytes | None], bool] = _bad_field
scan: Callable[[list[tuple[bytes, bytes]], bytes, bool], tuple[bool, int]] = _scan
if not os.environ.get("WASMGATE_WASM_CTYPES"):
    try:
        from core.wasm import _crossing
    except ImportError:  # not built
        pass
    else:
        bad_field, scan = _crossing.bad_field, _crossing.scan
