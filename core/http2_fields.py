"""The checks RFC 9113 (§8.2, §8.3) makes of a received header block, in one pass.

h2 can make them itself (``validate_inbound_headers``), through a chain of seven
generators that every field passes, which costs an HTTP/2 request more CPU than
routing it does. core/http2.py and core/upstream_h2.py turn that off and call these
functions instead, on each header and trailer block a client or an upstream sends,
before anything else reads it; they refuse what h2 refuses, and a refusal ends the
connection as h2's would (GOAWAY ``PROTOCOL_ERROR``; an upstream's answer is then a
502 to its client):

- a field name that is empty, has a character outside RFC 9113 §8.2.1's (controls,
  space, upper case, DEL and above, a colon past the first place);
- a field value with NUL, CR or LF, or starting or ending with a space or tab;
- connection-specific fields (``connection``, ``keep-alive``, ``proxy-connection``,
  ``transfer-encoding``, ``upgrade``) and ``te`` other than ``trailers``;
- pseudo-header fields that are unknown, repeated, after a regular field, in
  trailers, or not the set the method needs (``:method``; ``:scheme`` and ``:path``
  except for CONNECT, which must have neither unless it is an extended CONNECT;
  ``:protocol`` only with CONNECT), and an empty ``:path``;
- a request with neither ``:authority`` nor ``host``, with both but different, or
  with more than one ``host``;
- a response without ``:status``, with it twice or after a regular field, or with
  any other pseudo-header field.

What the gateway then makes of a well-formed block (its own limits, Host syntax,
path normalisation, 4xx answers on the stream) is core/http2_request.py's job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# RFC 9113 §8.2.1: no 0x00-0x20, no 0x41-0x5a (upper case), no 0x7f-0xff; and, for a
# regular field, no colon at all.
_NAME = re.compile(rb"[\x21-\x39\x3b-\x40\x5b-\x7e]+")
_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
_CONNECTION = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Regular field names already found good: a client sends the same few again and again,
# and a set lookup costs less than the regular expression. Bounded (at most 4096 names
# of at most 64 bytes); past that, names are checked every time.
_GOOD_NAMES: set[bytes] = set()
_BLANK = (0x20, 0x09)  # space, tab


class Malformed(Exception):
    """A header block RFC 9113 calls malformed; the message says why."""


def _check_field(name: bytes, value: bytes) -> None:
    """A regular field: its name, and whether it may appear on HTTP/2 at all."""
    if name not in _GOOD_NAMES:
        if _NAME.fullmatch(name) is None:
            raise Malformed(f"invalid field name {name!r}")
        if name in _CONNECTION:
            raise Malformed(f"connection-specific field {name!r}")
        if len(_GOOD_NAMES) < 4096 and len(name) <= 64:
            _GOOD_NAMES.add(name)
    if name == b"te" and value.lower() != b"trailers":
        raise Malformed(f"te: {value!r}")


def _bad_value(value: bytes) -> bool:
    """NUL, CR or LF anywhere, or a space or tab at either end (an empty value is fine).
    (translate drops the three in one C pass: a third of the cost of a regular
    expression with alternatives, or of three ``in`` tests.)"""
    return bool(value) and (
        value[0] in _BLANK
        or value[-1] in _BLANK
        or len(value.translate(None, b"\0\r\n")) != len(value)
    )


def check_request(fields: Iterable[tuple[bytes, bytes]]) -> None:
    """Raise :class:`Malformed` unless ``fields`` is a well-formed request header block."""
    pseudo: set[bytes] = set()
    regular = False
    method = authority = host = None
    for name, value in fields:
        if name[:1] == b":":
            if regular:
                raise Malformed(f"pseudo-header field {name!r} after a regular field")
            if name not in _PSEUDO:
                raise Malformed(f"pseudo-header field {name!r} in a request")
            if name in pseudo:
                raise Malformed(f"pseudo-header field {name!r} twice")
            pseudo.add(name)
            if name == b":method":
                method = value
            elif name == b":authority":
                authority = value
            elif name == b":path" and not value:
                raise Malformed("empty :path")
        else:
            regular = True
            _check_field(name, value)
            if name == b"host":
                if host is not None:
                    raise Malformed("more than one host field")
                host = value
        if _bad_value(value):
            raise Malformed(f"invalid value of {name!r}")
    if method is None:
        raise Malformed("no :method")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            raise Malformed("CONNECT with :scheme or :path")
    else:
        if b":scheme" not in pseudo or b":path" not in pseudo:
            raise Malformed("no :scheme or no :path")
        if method != b"CONNECT" and b":protocol" in pseudo:
            raise Malformed(":protocol without CONNECT")
    if authority is None and host is None:
        raise Malformed("neither :authority nor host")
    if authority is not None and host is not None and authority != host:
        raise Malformed(":authority and host differ")


def check_response(fields: Iterable[tuple[bytes, bytes]]) -> None:
    """Raise :class:`Malformed` unless ``fields`` is a well-formed response header block
    (an upstream's, final or informational)."""
    status = False
    regular = False
    for name, value in fields:
        if name[:1] == b":":
            if name != b":status":
                raise Malformed(f"pseudo-header field {name!r} in a response")
            if status:
                raise Malformed(":status twice")
            if regular:
                raise Malformed(":status after a regular field")
            status = True
        else:
            regular = True
            _check_field(name, value)
        if _bad_value(value):
            raise Malformed(f"invalid value of {name!r}")
    if not status:
        raise Malformed("no :status")


def check_trailers(fields: Iterable[tuple[bytes, bytes]]) -> None:
    """Raise :class:`Malformed` unless ``fields`` is a well-formed trailer block."""
    for name, value in fields:
        if name[:1] == b":":
            raise Malformed(f"pseudo-header field {name!r} in trailers")
        _check_field(name, value)
        if _bad_value(value):
            raise Malformed(f"invalid value of {name!r}")
