"""Built-in Proxy-Wasm foreign functions (``proxy_call_foreign_function``), registered
in the ``wasmgate.wasm_foreign_functions`` entry-point group as a deployment registers
its own. ``compress`` and ``uncompress`` are Envoy's: zlib format, so filters written
for Envoy that call them run unchanged."""

from __future__ import annotations

import zlib

#: The most ``uncompress`` produces: past it the data is refused (a zip bomb).
MAX_UNCOMPRESSED = 16 << 20


def compress(args: bytes) -> bytes:
    """``args`` compressed (zlib format, default level)."""
    return zlib.compress(args)


def uncompress(args: bytes) -> bytes:
    """``args`` (zlib format) uncompressed; ValueError if it is not zlib data, is cut
    short or would grow past :data:`MAX_UNCOMPRESSED`."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(args, MAX_UNCOMPRESSED)
    except zlib.error as exc:
        raise ValueError(f"not zlib data: {exc}") from None
    if inflater.unconsumed_tail:
        raise ValueError(f"uncompresses past {MAX_UNCOMPRESSED} bytes")
    if not inflater.eof:
        raise ValueError("zlib data cut short")
    return out
