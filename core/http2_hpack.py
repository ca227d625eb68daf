"""HPACK that remembers: a header block coded before is not coded again, where HPACK allows.

hpack (python-hyper's, which h2 drives) encodes and decodes each header block field by
field in Python, a good share of an HTTP/2 request's CPU. Yet one connection sees the
same blocks over and over: a client repeating a call sends byte-identical blocks once
its fields are in the dynamic table (h2load, API and gRPC clients), and the gateway's
responses to it repeat too.

HPACK is stateful, so a block may be reused only where that changes nothing: the
coding of a block depends on the dynamic table alone, and a block whose coding left
the table as it was (every field found in it, or coded without indexing) codes the
same way for as long as the table stays unchanged. Each table here counts its changes
(every insertion, every resize); a remembered result is kept with the count it was
made at and used only while the count is the same. A block that changes the table is
never remembered; the encoder bypasses the memory while a table size update is due,
and the decoder forgets what it remembered when its limits change. The memory is per
connection (one encoder and one decoder each), holds at most ``_ENTRIES`` blocks and is
emptied on every change of the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.table import HeaderTable

_ENTRIES = 32  # remembered blocks per connection and direction
_MAX_BLOCK = 4096  # bytes of a decoded block worth remembering ...
_MAX_FIELDS = 64  # ... and fields (bounds the memory a client can make us hold)


class CountingTable(HeaderTable):
    """hpack's dynamic table, counting its changes."""

    def __init__(self) -> None:
        self.changes = 0
        super().__init__()

    def add(self, name: bytes, value: bytes) -> None:
        self.changes += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.changes += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class CachingEncoder(Encoder):
    """An :class:`hpack.Encoder` that hands back the block it made for the same fields
    while its table is unchanged. (A remembered block has only fields found whole in
    the table, which hpack codes as an index also when marked never-indexed.)"""

    def __init__(self) -> None:
        super().__init__()
        self.header_table = CountingTable()
        self._memory: dict[tuple[Any, ...], bytes] = {}
        self._at = 0

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        if table.resized or not huffman or type(headers) is not list:
            return super().encode(headers, huffman)  # (a table size update goes first)
        # Fields marked never-indexed at the end (a request's traceparent: unique) do not
        # touch the table: the fields before them may still be remembered, and the
        # unique values are sent without Huffman coding, which in Python costs more
        # than the bytes it saves.
        end = len(headers)
        while end and type(headers[end - 1]) is NeverIndexedHeaderTuple:
            end -= 1
        if end < len(headers):
            return self._encode(headers[:end]) + super().encode(headers[end:], huffman=False)
        return self._encode(headers)

    def _encode(self, headers: list[Any]) -> bytes:
        table = self.header_table
        assert isinstance(table, CountingTable)
        key = tuple(headers)
        memory = self._memory
        if table.changes != self._at:
            memory.clear()
            self._at = table.changes
        else:
            block = memory.get(key)
            if block is not None:
                return block
        before = table.changes
        block = super().encode(headers)
        if table.changes == before and len(memory) < _ENTRIES:
            memory[key] = block
        return block


class CachingDecoder(Decoder):
    """An :class:`hpack.Decoder` that hands back the fields it decoded from the same
    bytes while its table and limits are unchanged (``raw=True`` only, as h2 calls it)."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table = CountingTable()
        self.max_allowed_table_size = self.header_table.maxsize
        self._memory: dict[bytes, tuple[HeaderTuple, ...]] = {}
        self._at = (0, 0, 0)

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        if not raw or type(data) is not bytes or len(data) > _MAX_BLOCK:
            return super().decode(data, raw)
        table = self.header_table
        assert isinstance(table, CountingTable)
        at = (table.changes, self.max_header_list_size, self.max_allowed_table_size)
        memory = self._memory
        if at != self._at:
            memory.clear()
            self._at = at
        else:
            fields = memory.get(data)
            if fields is not None:
                return list(fields)
        decoded = list(super().decode(data, raw))
        if table.changes == at[0] and len(memory) < _ENTRIES and len(decoded) <= _MAX_FIELDS:
            memory[data] = tuple(decoded)
        return decoded
