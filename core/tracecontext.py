"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the ``traceparent`` we send.

Every request gets a trace: the client's when it sent a valid ``traceparent``, else a
new random one. The gateway is one span of it, with its own span id, so the upstream
receives the same trace id, our span id as its parent, and the flags the client sent
(a new trace is sampled with ``[tracing] sample_ratio``). ``tracestate`` is forwarded
as received with a valid ``traceparent`` and dropped otherwise: it belongs to the
trace the client named, not to the new one.

This runs for every request, so it is plain bytes work on the 55-byte value: no regex.
"""

from __future__ import annotations

import random as _random
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from core.http1 import Request

_HEX = b"0123456789abcdef"  # lower case only, as the specification requires
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_TRACESTATE: Final = b"tracestate"
_LOW64: Final = (1 << 64) - 1
# The random module's functions, held as constants: compiled (mypyc), a Final name is
# read from a C variable where an imported one is looked up in the module's dict.
getrandbits: Final = _random.getrandbits
random: Final = _random.random


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(trace-id, parent-id, flags) of a valid ``traceparent`` value, else None.

    Version ``00`` must be exactly ``00-<32 hex>-<16 hex>-<2 hex>``; a later version
    (not ``ff``) is read the same way and may carry more after a further ``-``.
    """
    if len(value) != 55:
        value = value.strip(b" \t")
        n = len(value)
        if n < 55 or (n > 55 and (value[:2] == b"00" or value[55] != 45)):  # 45: "-"
            return None
    head = value[:55]
    # Exactly the three separators, everything else lower-case hex.
    if head[2] != 45 or head[35] != 45 or head[52] != 45 or head.translate(None, _HEX) != b"---":
        return None
    if head[:2] == b"ff":
        return None
    trace_id, parent_id = head[3:35], head[36:52]
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, head[53:55]


def new_trace_id() -> str:
    """16 random bytes, as 32 lower-case hex digits (never all zero)."""
    return (getrandbits(128) or 1).to_bytes(16, "big").hex()


def new_span_id() -> str:
    """8 random bytes, as 16 lower-case hex digits (never all zero)."""
    return (getrandbits(64) or 1).to_bytes(8, "big").hex()


def start_trace(req: Request, sample_ratio: float) -> None:
    """Give ``req`` its trace: the client's (``req.tp_in``, if valid) or a new one.

    Sets ``trace_id``, ``span_id`` (the gateway's span), ``parent_id`` (the client's
    span, ``""`` for a new trace), ``sampled`` and ``traceparent`` (the value to send
    upstream); drops the client's ``tracestate`` when its ``traceparent`` is not used.

    Ids are random bits turned into hex by ``int.to_bytes`` and ``bytes.hex``: this
    runs for every request, and formatting an int with ``"{:032x}"`` costs several
    times as much.
    """
    parsed = parse_traceparent(req.tp_in) if req.tp_in else None
    if parsed is not None:
        trace, parent, flags = parsed
        span = (getrandbits(64) or 1).to_bytes(8, "big").hex()
        req.trace_id = trace.decode("ascii")
        req.parent_id = parent.decode("ascii")
        req.sampled = flags[1] in b"13579bdf"  # the low bit of the flags byte
        req.traceparent = b"00-%s-%s-%s" % (trace, span.encode("ascii"), flags)
    else:
        # One draw for both ids: 16 bytes of trace id, then 8 of span id.
        bits = getrandbits(192)
        if not bits >> 64 or not bits & _LOW64:  # an all-zero id is invalid
            bits |= 1 << 64 | 1
        ids = bits.to_bytes(24, "big").hex()
        trace_id = req.trace_id = ids[:32]
        span = ids[32:]
        req.sampled = sampled = sample_ratio >= 1.0 or random() < sample_ratio
        flags_text = "-01" if sampled else "-00"
        req.traceparent = ("00-" + trace_id + "-" + span + flags_text).encode("ascii")
        if req.has_tracestate:
            raw = req.headers.raw
            raw[:] = [(n, v) for n, v in raw if n.lower() != _TRACESTATE]
    req.span_id = span
