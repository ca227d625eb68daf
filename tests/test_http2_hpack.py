"""core/http2_hpack.py: remembered HPACK blocks are used only where HPACK's state allows.

Each case drives the caching encoder or decoder with hpack's own (plain) peer and
checks the bytes or fields against what plain hpack gives for the same sequence.
"""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hpack.exceptions import OversizedHeaderListError

from core.http2_hpack import CachingDecoder, CachingEncoder

Fields = list[tuple[bytes, bytes]]

RESPONSE: Fields = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-a", b"1")]
SEQUENCES: dict[str, list[Fields]] = {
    "repeated": [RESPONSE] * 5,
    "a-new-field-between-repeats": [
        RESPONSE,
        RESPONSE,
        [*RESPONSE, (b"date", b"Sun, 06 Dec 2026 07:00:00 GMT")],
        RESPONSE,
        [*RESPONSE, (b"date", b"Sun, 06 Dec 2026 07:00:01 GMT")],
        RESPONSE,
        [*RESPONSE, (b"date", b"Sun, 06 Dec 2026 07:00:01 GMT")],
    ],
    "evictions": [[(b"x-big", bytes([65 + i % 26]) * 1500), *RESPONSE] for i in range(12)] * 2,
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_the_caching_encoder_writes_what_hpack_writes(name: str) -> None:
    plain, caching = Encoder(), CachingEncoder()
    decoder = Decoder()
    for fields in SEQUENCES[name]:
        block = caching.encode(list(fields))
        assert block == plain.encode(list(fields))
        assert decoder.decode(block, raw=True) == fields


def test_the_caching_encoder_sends_a_table_size_update_it_owes() -> None:
    plain, caching = Encoder(), CachingEncoder()
    for enc in (plain, caching):
        enc.encode(list(RESPONSE))
        enc.encode(list(RESPONSE))
        enc.header_table_size = 1024  # the peer's SETTINGS_HEADER_TABLE_SIZE
    first = caching.encode(list(RESPONSE))
    assert first == plain.encode(list(RESPONSE))
    assert first[:1] == b"\x3f"  # starts with the size update
    assert caching.encode(list(RESPONSE)) == plain.encode(list(RESPONSE))


def test_the_same_bytes_decode_anew_once_the_table_changed() -> None:
    """Index 62 is the newest dynamic entry: the same one-byte block means another field
    after each insertion."""
    peer = Encoder()
    plain, caching = Decoder(), CachingDecoder()
    blocks = []
    for value in (b"1", b"2", b"3"):
        blocks.append(peer.encode([(b"x-v", value)]))  # inserts x-v: value at 62
        blocks.append(b"\xbe")  # index 62
        blocks.append(b"\xbe")
    for block in blocks:
        assert caching.decode(block, raw=True) == plain.decode(block, raw=True)
    assert caching.decode(b"\xbe", raw=True) == [(b"x-v", b"3")]


def test_a_remembered_block_still_obeys_a_lowered_header_list_limit() -> None:
    peer = Encoder()
    caching = CachingDecoder()
    caching.decode(peer.encode([(b"x-long", b"v" * 500)]), raw=True)
    block = peer.encode([(b"x-long", b"v" * 500)])  # now an index
    assert caching.decode(block, raw=True) == [(b"x-long", b"v" * 500)]
    assert caching.decode(block, raw=True) == [(b"x-long", b"v" * 500)]
    caching.max_header_list_size = 100
    with pytest.raises(OversizedHeaderListError):
        caching.decode(block, raw=True)


def test_a_size_update_in_a_block_is_applied_each_time() -> None:
    peer = Encoder()
    caching = CachingDecoder()
    caching.decode(peer.encode([(b"x-a", b"1")]), raw=True)
    peer.header_table_size = 0  # empties the peer's table: the block says so first
    block = peer.encode([(b"x-a", b"1")])
    assert caching.decode(block, raw=True) == [(b"x-a", b"1")]
    assert caching.header_table_size == 0
    assert not caching.header_table.dynamic_entries


def test_a_never_indexed_tail_leaves_the_table_and_the_rest_remembered() -> None:
    """A request's unique field (traceparent) goes last, never indexed: it does not
    enter the table, and the fields before it are coded as before."""
    caching = CachingEncoder()
    decoder = Decoder()
    for i in range(4):
        trace = NeverIndexedHeaderTuple(b"traceparent", b"00-%032x-%016x-01" % (i, i))
        fields = [*RESPONSE, trace]
        block = caching.encode(list(fields))
        decoded = list(decoder.decode(block, raw=True))
        assert decoded == fields
        assert type(decoded[-1]) is NeverIndexedHeaderTuple
        assert trace[1] in block  # as it is: Huffman coding in Python costs more
        if i:
            assert block.startswith(caching.encode(list(RESPONSE)))  # the rest: indexes
    assert b"traceparent" not in {n for n, _ in caching.header_table.dynamic_entries}
    assert len(caching.header_table.dynamic_entries) == len(decoder.header_table.dynamic_entries)
