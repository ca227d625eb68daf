"""The headers plugin: remove, then set, then add, per direction, on the very header
list the gateway forwards (names compared case-insensitively, order kept)."""

from __future__ import annotations

from typing import Any

import pytest

from plugin_sdk import Response
from plugin_sdk.headers import Headers
from plugin_sdk.testing import make_request, run_filter
from plugins.headers.filter import HeadersFilter

Pairs = list[tuple[str, str]]

# (id, ops for one direction, headers before, headers after)
CASES: list[tuple[str, dict[str, Any], Pairs, Pairs]] = [
    ("set-absent-appends", {"set": {"X-Gw": "w"}}, [("A", "1")], [("A", "1"), ("X-Gw", "w")]),
    ("set-into-empty", {"set": {"X-Gw": "w"}}, [], [("X-Gw", "w")]),
    (
        "set-replaces-in-place-any-case",
        {"set": {"X-Gw": "new"}},
        [("A", "1"), ("x-gw", "old"), ("B", "2")],
        [("A", "1"), ("X-Gw", "new"), ("B", "2")],
    ),
    (
        "set-drops-later-duplicates",
        {"set": {"X-Gw": "new"}},
        [("X-GW", "1"), ("B", "2"), ("x-gw", "3")],
        [("X-Gw", "new"), ("B", "2")],
    ),
    (
        "same-length-other-name-untouched",
        {"set": {"X-Gw": "w"}},
        [("X-Gx", "1")],
        [("X-Gx", "1"), ("X-Gw", "w")],
    ),
    (
        "two-sets-in-order",
        {"set": {"X-One": "1", "X-Two": "2"}},
        [("x-two", "old")],
        [("X-Two", "2"), ("X-One", "1")],
    ),
    (
        "add-keeps-existing",
        {"add": {"Vary": "Origin"}},
        [("Vary", "Accept")],
        [("Vary", "Accept"), ("Vary", "Origin")],
    ),
    (
        "remove-every-value",
        {"remove": ["X-Debug"]},
        [("x-debug", "1"), ("A", "1"), ("X-DEBUG", "2")],
        [("A", "1")],
    ),
    (
        "remove-then-set-then-add",
        {"remove": ["X-A"], "set": {"X-B": "b"}, "add": {"X-A": "new"}},
        [("X-A", "old"), ("X-B", "old"), ("X-B", "dup")],
        [("X-B", "b"), ("X-A", "new")],
    ),
]


def _raw(pairs: Pairs) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs]


@pytest.mark.parametrize(
    ("ops", "before", "after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_request_headers(ops: dict[str, Any], before: Pairs, after: Pairs) -> None:
    result = run_filter(
        HeadersFilter, make_request(headers=before), config={"request": ops}, response=Response()
    )
    assert result.request.headers.raw == _raw(after)
    assert result.headers.raw == []  # the response direction has nothing to do


@pytest.mark.parametrize(
    ("ops", "before", "after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_response_headers(ops: dict[str, Any], before: Pairs, after: Pairs) -> None:
    response = Response(200, Headers(_raw(before)))
    result = run_filter(
        HeadersFilter,
        make_request(headers=[("A", "1")]),
        config={"response": ops},
        response=response,
    )
    assert result.headers.raw == _raw(after)
    assert result.request.headers.raw == [(b"A", b"1")]


def test_each_request_gets_its_own_header() -> None:
    """The pair the filter appends is the same every time; each request's list gets it
    once, and editing one request's list leaves the next untouched."""
    config = {"request": {"set": {"X-Gw": "w"}}}
    first = run_filter(HeadersFilter, make_request(), config=config)
    first.request.headers.set("X-Gw", "changed later")
    second = run_filter(HeadersFilter, make_request(), config=config)
    assert second.request.headers.raw == [(b"X-Gw", b"w")]
