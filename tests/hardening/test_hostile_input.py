"""Hostile input: requests made to desync the gateway from its upstream, to slip past a
route's filters, to tie the gateway up, or to pass for someone else.

Every case sends exact bytes to the real gateway (built from TOML, in process) and
reads the exact reply; a RecordingUpstream records every request that reaches it. What
is refused, and with which status, is listed in docs/configuration.md ("Hostile
input"). A smuggling attempt carries a pipelined ``GET /smuggled`` after its bytes: it
must never reach the upstream, and a refused request must close the connection.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import bcrypt
import jwt
import pytest

from tests.conftest import StartGateway
from tests.harness import (
    InProcessGateway,
    RawResponse,
    RecordingUpstream,
    Seen,
    gateway_toml,
    parse_responses,
)

KEY = "alice-key-3f9a1c0e5b7d"
JWT_SECRET = "a-secret-of-at-least-thirty-two-bytes!!"
ROUTES = f"""
[[routes]]
name = "other"
hosts = ["other.test"]
upstream = "v2"

[[routes]]
name = "admin"
paths = ["/admin"]
upstream = "v1"
filters = ["keys"]

[[routes]]
name = "public"
paths = ["/"]
upstream = "v1"

[filters.keys]
plugin = "key-auth"
config.consumers = [{{ name = "alice", key = "{KEY}" }}]
"""
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def head(text: str) -> bytes:
    """A request head from lines joined by "\\n" (sent as CRLF), blank line included."""
    return text.strip("\n").replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n"


def post(framing: str, body: bytes) -> bytes:
    return head(f"POST /echo HTTP/1.1\nHost: a.test\n{framing}") + body


def chunked(framing: str, body: bytes) -> bytes:
    return post(f"Transfer-Encoding: chunked\n{framing}".strip("\n"), body)


@dataclass
class Reply:
    responses: list[RawResponse]
    closed: bool  # the gateway closed the connection (else the wait ran out)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


async def send(port: int, *parts: bytes, pause: float = 0.1, wait: float = 3.0) -> Reply:
    """Send ``parts`` (``pause`` seconds apart); read until the gateway closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()
    closed = False
    try:
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
    except ConnectionError:  # refused before the rest was sent: the reply is still there
        pass
    try:
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                received += chunk
            closed = True
    except TimeoutError:
        pass
    except ConnectionError:
        closed = True
    writer.close()
    return Reply(await parse_responses(bytes(received)), closed)


def assert_refused(reply: Reply, status: int, reason: str = "") -> None:
    """Exactly one reply, the refusal, then the gateway closed the connection."""
    assert reply.statuses == [status], reply.responses
    body = reply.responses[0].body.decode()
    assert reason in body, body
    assert reply.responses[0].header("connection") == "close"
    assert reply.closed, "the connection stayed open after a refusal"


def forwarded_paths(upstream: RecordingUpstream) -> list[str]:
    return [seen.raw_path for seen in upstream.requests]


@pytest.fixture
async def gateway(
    upstream: RecordingUpstream, upstream2: RecordingUpstream, start_gateway: StartGateway
) -> InProcessGateway:
    return await start_gateway(
        gateway_toml({"v1": [upstream.address], "v2": [upstream2.address]}, ROUTES)
    )


# ------------------------------------------------------------------ smuggling and desync


def case(name: str, data: bytes, status: int = 400, reason: str = "") -> object:
    return pytest.param(data, status, reason, id=name)


REFUSED = [
    # Content-Length and Transfer-Encoding
    case(
        "cl-and-te",
        post("Content-Length: 5\nTransfer-Encoding: chunked", b"5\r\nhello\r\n0\r\n\r\n"),
    ),
    case(
        "te-and-cl",
        post("Transfer-Encoding: chunked\nContent-Length: 5", b"5\r\nhello\r\n0\r\n\r\n"),
    ),
    case("two-different-content-lengths", post("Content-Length: 5\nContent-Length: 6", b"hello!")),
    case("two-equal-content-lengths", post("Content-Length: 5\nContent-Length: 5", b"hello")),
    case("content-length-list", post("Content-Length: 5, 5", b"hello")),
    case("content-length-plus", post("Content-Length: +5", b"hello")),
    case("content-length-minus", post("Content-Length: -1", b"h")),
    case("content-length-hex", post("Content-Length: 0x5", b"hello")),
    case("content-length-underscore", post("Content-Length: 1_0", b"helloworld")),
    case("content-length-empty", post("Content-Length: ", b"")),
    case("content-length-two-numbers", post("Content-Length: 1 2", b"h")),
    case("content-length-overflow", post("Content-Length: 99999999999999999999999", b"")),
    case("content-length-nul", post("Content-Length: 5\x00", b"hello")),
    # Transfer-Encoding other than a final chunked
    case("te-xchunked", chunked("", b"").replace(b"chunked", b"xchunked"), 400, "final chunked"),
    case(
        "te-identity",
        post("Transfer-Encoding: identity", b"5\r\nhello\r\n0\r\n\r\n"),
        400,
        "final chunked",
    ),
    case(
        "te-chunked-identity",
        post("Transfer-Encoding: chunked, identity", b"5\r\nhello\r\n0\r\n\r\n"),
    ),
    case("te-empty", post("Transfer-Encoding: ", b"5\r\nhello\r\n0\r\n\r\n")),
    case(
        "te-gzip-chunked",
        post("Transfer-Encoding: gzip, chunked", b"5\r\nhello\r\n0\r\n\r\n"),
        501,
        "unsupported Transfer-Encoding",
    ),
    case("te-two-lines", chunked("Transfer-Encoding: chunked", b"5\r\nhello\r\n0\r\n\r\n")),
    case("te-chunked-then-identity", chunked("Transfer-Encoding: identity", b"0\r\n\r\n")),
    case("te-nul", post("Transfer-Encoding: chunked\x00", b"5\r\nhello\r\n0\r\n\r\n")),
    case("te-vertical-tab", post("Transfer-Encoding: \x0bchunked", b"5\r\nhello\r\n0\r\n\r\n")),
    case("te-space-before-colon", post("Transfer-Encoding : chunked", b"5\r\nhello\r\n0\r\n\r\n")),
    case("te-obs-fold", post("Transfer-Encoding:\n chunked", b"5\r\nhello\r\n0\r\n\r\n")),
    case(
        "te-in-http-1.0",
        head("POST /echo HTTP/1.0\nTransfer-Encoding: chunked") + b"0\r\n\r\n",
        400,
        "HTTP/1.0",
    ),
    # chunk sizes and extensions
    case("chunk-size-hex-prefix", chunked("", b"0x5\r\nhello\r\n0\r\n\r\n")),
    case("chunk-size-negative", chunked("", b"-5\r\nhello\r\n0\r\n\r\n")),
    case("chunk-size-not-hex", chunked("", b"g\r\nhello\r\n0\r\n\r\n")),
    case("chunk-size-overflow", chunked("", b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n")),
    case("chunk-size-trailing-space", chunked("", b"5 \r\nhello\r\n0\r\n\r\n")),
    case("chunk-size-bare-lf", chunked("", b"5\nhello\r\n0\r\n\r\n")),
    case("chunk-data-without-crlf", chunked("", b"5\r\nhello0\r\n\r\n")),
    case("chunk-data-longer-than-size", chunked("", b"3\r\nhello\r\n0\r\n\r\n")),
    case("chunk-extension-space", chunked("", b"5;a=b c\r\nhello\r\n0\r\n\r\n")),
    case("chunk-extension-bare-lf", chunked("", b"5;a\nhello\r\n0\r\n\r\n")),
    case("chunk-extension-nul", chunked("", b"5;a=\x00\r\nhello\r\n0\r\n\r\n")),
    # header lines
    case("obs-fold", head("GET / HTTP/1.1\nHost: a.test\nX-A: one\n two")),
    case("space-before-colon-in-host", head("GET / HTTP/1.1\nHost : a.test")),
    case("space-before-colon", head("GET / HTTP/1.1\nHost: a.test\nX-A : b")),
    case("space-in-name", head("GET / HTTP/1.1\nHost: a.test\nX A: b")),
    case("bare-cr-in-value", head("GET / HTTP/1.1\nHost: a.test\nX-A: b\rX-B: c")),
    case("bare-cr-after-request-line", b"GET / HTTP/1.1\rHost: a.test\r\n\r\n"),
    case("bare-lf-line-endings", b"GET / HTTP/1.1\nHost: a.test\n\n"),
    case("nul-in-name", head("GET / HTTP/1.1\nHost: a.test\nX-\x00A: b")),
    case("nul-in-value", head("GET / HTTP/1.1\nHost: a.test\nX-A: b\x00c")),
    case("control-in-name", head("GET / HTTP/1.1\nHost: a.test\n\x1fX-A: b")),
    case("control-in-value", head("GET / HTTP/1.1\nHost: a.test\nX-A: b\x01c")),
    case("del-in-value", head("GET / HTTP/1.1\nHost: a.test\nX-A: b\x7fc")),
    # Host
    case("missing-host", head("GET / HTTP/1.1"), 400, "missing Host"),
    case("empty-host", head("GET / HTTP/1.1\nHost: "), 400, "invalid Host"),
    case(
        "duplicate-host", head("GET / HTTP/1.1\nHost: a.test\nHost: a.test"), 400, "duplicate Host"
    ),
    case(
        "two-hosts", head("GET / HTTP/1.1\nHost: a.test\nHost: other.test"), 400, "duplicate Host"
    ),
    case("empty-host-then-host", head("GET / HTTP/1.1\nHost: \nHost: other.test"), 400, "Host"),
    case("host-with-space", head("GET / HTTP/1.1\nHost: a b"), 400, "invalid Host"),
    case("host-two-colons", head("GET / HTTP/1.1\nHost: x:y:z"), 400, "invalid Host"),
    case("host-at-sign", head("GET / HTTP/1.1\nHost: @evil.test"), 400, "invalid Host"),
    case("host-userinfo", head("GET / HTTP/1.1\nHost: user@evil.test"), 400, "invalid Host"),
    case("host-slash", head("GET / HTTP/1.1\nHost: a.test/admin"), 400, "invalid Host"),
    case("host-question-mark", head("GET / HTTP/1.1\nHost: a.test?x"), 400, "invalid Host"),
    case("host-percent-encoded", head("GET / HTTP/1.1\nHost: %61.test"), 400, "invalid Host"),
    case("host-port-too-large", head("GET / HTTP/1.1\nHost: a.test:99999"), 400, "invalid Host"),
    case("host-port-not-a-number", head("GET / HTTP/1.1\nHost: a.test:http"), 400, "invalid Host"),
    # request line and target
    case(
        "absolute-form-userinfo",
        head("GET http://user@other.test/ HTTP/1.1\nHost: a.test"),
        400,
        "userinfo",
    ),
    case(
        "absolute-form-dot-segment",
        head("GET http://other.test/../admin HTTP/1.1\nHost: a.test"),
        400,
        "dot segment",
    ),
    case(
        "absolute-form-without-host", head("GET http://other.test/ HTTP/1.1"), 400, "missing Host"
    ),
    case(
        "absolute-form-ftp",
        head("GET ftp://other.test/ HTTP/1.1\nHost: a.test"),
        400,
        "invalid request target",
    ),
    case("asterisk-form", head("OPTIONS * HTTP/1.1\nHost: a.test"), 400, "invalid request target"),
    case("fragment", head("GET /admin#x HTTP/1.1\nHost: a.test"), 400, "fragment"),
    case("http-2.0", head("GET / HTTP/2.0\nHost: a.test"), 505, "version"),
    case("http-0.9", head("GET /\nHost: a.test"), 505, "version"),
    case("http-1.2", head("GET / HTTP/1.2\nHost: a.test")),
    case("lower-case-method", head("get / HTTP/1.1\nHost: a.test")),
    case("connect", head("CONNECT other.test:443 HTTP/1.1\nHost: other.test:443"), 405, "CONNECT"),
]


@pytest.mark.parametrize(("data", "status", "reason"), REFUSED)
async def test_smuggling_attempt_is_refused_and_closes(
    data: bytes,
    status: int,
    reason: str,
    gateway: InProcessGateway,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
) -> None:
    assert_refused(await send(gateway.port, data + SMUGGLED), status, reason)
    assert upstream.requests == upstream2.requests == [], "a refused request reached upstream"


ACCEPTED = [
    pytest.param(post("Content-Length:  5 ", b"hello"), "5", id="content-length-ows"),
    pytest.param(post("Content-Length: 005", b"hello"), "5", id="content-length-leading-zeros"),
    pytest.param(
        post("Transfer-Encoding: Chunked", b"5\r\nhello\r\n0\r\n\r\n"), None, id="te-capitalised"
    ),
    pytest.param(
        post("Transfer-Encoding:\t chunked ", b"5\r\nhello\r\n0\r\n\r\n"), None, id="te-ows"
    ),
    pytest.param(chunked("", b"5;a=b\r\nhello\r\n0\r\n\r\n"), None, id="chunk-extension"),
    pytest.param(
        chunked("", b'5;a="b c";d\r\nhello\r\n0\r\n\r\n'), None, id="chunk-extension-quoted"
    ),
    pytest.param(chunked("", b"0005\r\nhello\r\n0\r\n\r\n"), None, id="chunk-size-leading-zeros"),
    pytest.param(chunked("", b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"), None, id="two-chunks"),
    pytest.param(
        head("GET /echo HTTP/1.1\nHost: a.test\nContent-Length: 5") + b"hello",
        "5",
        id="get-with-body",
    ),
]


@pytest.mark.parametrize(("data", "content_length"), ACCEPTED)
async def test_framing_rfc_9112_allows_reaches_upstream_with_the_length_parsed(
    data: bytes, content_length: str | None, gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """The follow-up is a request of its own: the upstream sees the same two boundaries."""
    reply = await send(gateway.port, data + NEXT)
    assert reply.statuses == [200, 200]
    assert forwarded_paths(upstream) == ["/echo", "/next"]
    first = upstream.requests[0]
    assert first.body_len == 5
    if content_length is None:  # chunked, re-chunked by the gateway
        assert first.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in first.headers
    else:
        assert first.headers.get("content-length") == content_length
        assert "transfer-encoding" not in first.headers


async def test_bytes_past_the_content_length_are_the_next_request(
    gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """Content-Length 5 with 10 bytes: the other 5 are parsed as a request (garbage: 400),
    never sent upstream as part of a body or as a request of their own."""
    reply = await send(gateway.port, post("Content-Length: 5", b"hello12345\r\n\r\n"))
    assert reply.statuses == [200, 400]
    assert reply.closed
    assert [(s.raw_path, s.body_len) for s in upstream.requests] == [("/echo", 5)]


async def test_trailer_fields_are_dropped(
    gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """Trailers come after the head was checked and routed: they must change nothing
    (and an HTTP/1.1 upstream gets none: tests/test_trailers.py has where they go)."""
    trailers = b"X-Trailer: 1\r\nX-Consumer: admin\r\nHost: other.test\r\nExpect: nonsense\r\n"
    reply = await send(
        gateway.port, chunked("", b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n") + NEXT
    )
    assert reply.statuses == [200, 200]
    first = upstream.requests[0]
    assert (first.raw_path, first.body_len) == ("/echo", 5)
    assert [v for n, v in first.raw_headers if n.lower() == "host"] == ["a.test"]
    assert not {"x-trailer", "x-consumer", "expect"} & set(first.headers)


async def test_bad_chunk_after_the_head_went_upstream_is_400(
    gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """The upstream has the head and part of the body: its connection is dropped (it never
    sees a complete request) and the client gets 400."""
    first = (
        head("POST /upload HTTP/1.1\nHost: a.test\nTransfer-Encoding: chunked") + b"5\r\nhello\r\n"
    )
    reply = await send(gateway.port, first, b"zz\r\nworld\r\n0\r\n\r\n" + SMUGGLED, pause=0.3)
    assert_refused(reply, 400, "chunk size")
    assert upstream.requests == []


async def test_bad_body_of_a_pipelined_request_is_400_after_the_first_reply(
    gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    first = head("GET /first HTTP/1.1\nHost: a.test")
    reply = await send(gateway.port, first + chunked("", b"g\r\nhello\r\n0\r\n\r\n") + SMUGGLED)
    assert reply.statuses == [200, 400]
    assert reply.closed
    assert forwarded_paths(upstream) == ["/first"]


@pytest.mark.parametrize(
    "rest",
    [
        pytest.param(b"5;" + b"e" * 1_000_000 + b"\r\nhello\r\n0\r\n\r\n", id="chunk-extension"),
        pytest.param(b"5\r\nhello\r\n0\r\nX-T: " + b"t" * 1_000_000 + b"\r\n\r\n", id="trailer"),
        pytest.param(
            b"5\r\nhello\r\n0\r\n" + b"X-T: t\r\n" * 100_000 + b"\r\n", id="many-trailers"
        ),
        pytest.param(b"0" * 1_000_000 + b"5\r\nhello\r\n0\r\n\r\n", id="chunk-size-zero-padding"),
    ],
)
async def test_chunk_framing_past_the_header_budget_is_400(
    rest: bytes, gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """Extensions are not forwarded, trailers are kept apart from the head, and llhttp
    would skip or buffer them without end: together they get max_header_bytes (16 KiB
    here)."""
    first = head("POST /upload HTTP/1.1\nHost: a.test\nTransfer-Encoding: chunked")
    reply = await send(gateway.port, first, rest + SMUGGLED)
    assert_refused(reply, 400, "chunk extensions or trailers too large")
    assert upstream.requests == []


async def test_many_small_chunks_are_not_framing_abuse(
    gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    first = head(
        "POST /upload HTTP/1.1\nHost: a.test\nTransfer-Encoding: chunked\nConnection: close"
    )
    reply = await send(gateway.port, first, b"1;k=v\r\nx\r\n" * 20_000 + b"0\r\n\r\n")
    assert reply.statuses == [200]
    assert upstream.requests[-1].body_len == 20_000


@pytest.mark.parametrize(
    ("target", "where", "raw_path", "host"),
    [
        pytest.param(
            "http://other.test/path?q=1", "v2", "/path?q=1", "other.test", id="other-host"
        ),
        pytest.param("http://OTHER.test:8080/p", "v2", "/p", "OTHER.test:8080", id="case-and-port"),
        pytest.param("http://other.test", "v2", "/", "other.test", id="no-path"),
        pytest.param("https://other.test//x/%61", "v2", "/x/a", "other.test", id="path-normalised"),
        pytest.param("http://[::1]:8080/x", "v1", "/x", "[::1]:8080", id="ipv6"),
    ],
)
async def test_absolute_form_target_routes_by_its_authority(
    target: str,
    where: str,
    raw_path: str,
    host: str,
    gateway: InProcessGateway,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
) -> None:
    """RFC 9112 §3.2.2: the target's authority, not the Host header, names the host; the
    upstream gets the origin form and that host."""
    data = head(f"GET {target} HTTP/1.1\nHost: a.test\nConnection: close")
    assert (await send(gateway.port, data)).statuses == [200]
    reached = {"v1": upstream, "v2": upstream2}[where]
    (seen,) = reached.requests
    assert seen.raw_path == raw_path
    assert [v for n, v in seen.raw_headers if n.lower() == "host"] == [host]


async def test_upgrade_other_than_websocket_is_a_plain_request(
    gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """h2c would make the connection a tunnel to the upstream that no route or filter
    sees: the upstream gets a plain GET, and the connection closes after it."""
    data = head(
        "GET / HTTP/1.1\nHost: a.test\nUpgrade: h2c\nConnection: Upgrade, HTTP2-Settings\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"
    )
    reply = await send(gateway.port, data + SMUGGLED)
    assert reply.statuses == [200]
    assert reply.closed
    (seen,) = upstream.requests
    assert not {"upgrade", "connection", "http2-settings"} & set(seen.headers)


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/a/%2e%2e/b", "dot segment"),
        ("/a/../b", "dot segment"),
        ("/a/./b", "dot segment"),
        ("/a/.", "dot segment"),
        ("/a/%2E/b", "dot segment"),
        ("/a/..;x/b", "dot segment"),
        ("/a/.;/b", "dot segment"),
        ("/a/..%2f/b", "encoded slash"),
        ("/..%2f", "encoded slash"),
        ("/a%2Fb", "encoded slash"),
        ("/a%5cb", "encoded slash"),
        ("/a\\b", "backslash"),
        ("/a%00", "control character"),
        ("/a%0d%0aX-Injected:%201", "control character"),
        ("/a%7F", "control character"),
        ("/a%zz", "percent-encoding"),
        ("/a%4", "percent-encoding"),
        ("/a%", "percent-encoding"),
    ],
)
async def test_unsafe_paths_are_refused(
    path: str, reason: str, gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    data = head(f"GET {path} HTTP/1.1\nHost: a.test")
    assert_refused(await send(gateway.port, data + SMUGGLED), 400, reason)
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("path", "routed"),
    [
        ("//double", "/double"),
        ("/a//b///", "/a/b/"),
        ("/%61%62%63", "/abc"),
        ("/a%2Db%5Fc%7Ed%2e", "/a-b_c~d."),
        ("/caf%C3%A9", "/caf%C3%A9"),  # not unreserved: kept as sent
        ("/a%3Bb%3fc", "/a%3Bb%3fc"),
        ("/%2561", "/%2561"),  # decoded once, by the upstream: "/%61"
        ("/a;p=1/b", "/a;p=1/b"),
        ("/a?x=%2e%2e/..//%2f", "/a?x=%2e%2e/..//%2f"),  # the query is not a path
    ],
)
async def test_path_is_normalised_and_forwarded_as_routed(
    path: str, routed: str, gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    data = head(f"GET {path} HTTP/1.1\nHost: a.test\nConnection: close")
    assert (await send(gateway.port, data)).statuses == [200]
    assert forwarded_paths(upstream) == [routed]


ADMIN_VARIANTS = [
    "/admin",
    "/admin/",
    "/admin/x",
    "/%61dmin",
    "/%61%64%6D%69%6E",
    "/adm%69n/x",
    "//admin",
    "///admin//x",
    "/admin;x",
    "/admin;jsessionid=1/x",
    "/x/../admin",
    "/x/%2e%2e/admin",
    "/x/..;/admin",
    "/./admin",
    "/admin/.",
    "/admin%2f",
    "/%2fadmin",
    "/%5cadmin",
    "/\\admin",
    "/admin%00",
    "/admin%09",
    "/admin#",
    "http://a.test//admin",
    "http://a.test/%61dmin",
]


@pytest.mark.parametrize("path", ADMIN_VARIANTS)
async def test_guarded_route_cannot_be_reached_around_its_filter(
    path: str, gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """/admin has key-auth, / has none, both go to the same upstream: a spelling of
    /admin either meets key-auth (401) or is refused (400)."""
    data = head(f"GET {path} HTTP/1.1\nHost: a.test\nConnection: close")
    (resp,) = (await send(gateway.port, data)).responses
    assert resp.status in (400, 401), resp.body
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("path", "routed"),
    [
        ("/%61dmin", "/admin"),
        ("/adm%69n/x", "/admin/x"),
        ("//admin", "/admin"),
        ("///admin//x", "/admin/x"),
        ("/admin;x", "/admin;x"),
    ],
)
async def test_guarded_route_with_a_key_forwards_the_path_it_routed(
    path: str, routed: str, gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    data = head(f"GET {path} HTTP/1.1\nHost: a.test\nX-Api-Key: {KEY}\nConnection: close")
    assert (await send(gateway.port, data)).statuses == [200]
    (seen,) = upstream.requests
    assert seen.raw_path == routed
    assert seen.headers["x-consumer"] == "alice"


@pytest.mark.parametrize(
    "path", ["/ADMIN", "/Admin", "/administrator", "/%2561dmin", "/admin%3bx", "/admin%20"]
)
async def test_paths_that_are_not_admin_are_not_admin_upstream_either(
    path: str, gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """Paths are case-sensitive and decoded once: these take the public route, and the
    upstream (which decodes once, case-sensitively) does not see /admin in them."""
    data = head(f"GET {path} HTTP/1.1\nHost: a.test\nConnection: close")
    assert (await send(gateway.port, data)).statuses == [200]
    (seen,) = upstream.requests
    assert seen.raw_path == path
    decoded = seen.path_qs
    assert decoded != "/admin" and not decoded.startswith("/admin/"), decoded


# ------------------------------------------------------------------ size limits


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        pytest.param(b"GET /" + b"u" * 100_000, 414, "URI too long", id="100-KB-url"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " + b"b" * 100_000,
            431,
            "header fields too large",
            id="100-KB-header",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a.test\r\n" + b"X-H: v\r\n" * 10_000,
            431,
            "header fields too large",
            id="10000-headers",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a.test\r\nX-" + b"n" * 100_000,
            431,
            "header fields too large",
            id="100-KB-header-name",
        ),
    ],
)
async def test_oversized_head_is_refused_before_it_ends(
    data: bytes, status: int, reason: str, gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """The head is never finished: the refusal must not wait for it."""
    assert_refused(await send(gateway.port, data), status, reason)
    assert upstream.requests == []


@pytest.mark.parametrize("expect", ["", "\nExpect: 100-continue"])
async def test_huge_declared_body_is_413_before_it_is_sent(
    expect: str, gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """10 bytes of a declared terabyte: the 413 comes at once and the connection closes."""
    data = head(f"POST /upload HTTP/1.1\nHost: a.test\nContent-Length: {10**12}{expect}")
    reply = await send(gateway.port, data + b"x" * 10)
    assert_refused(reply, 413, "body too large")
    assert upstream.requests == []


async def test_slowloris_head_gets_408_and_the_connection_is_freed(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    server = "[server.limits]\nrequest_header_timeout = 0.5\n"
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1", server=server))
    assert gw.gateway is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    trickle = b"GET / HTTP/1.1\r\nHost: a.test\r\n" + b"X-Slow: " + b"s" * 1000
    received = bytearray()

    async def read_all() -> None:
        while chunk := await reader.read(65536):
            received.extend(chunk)

    reading = asyncio.ensure_future(read_all())
    try:
        for byte in trickle:  # one byte every 0.2 s, until the gateway gives up
            if reading.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.2)
        await asyncio.wait_for(reading, 5.0)
    except ConnectionError:
        pass
    finally:
        writer.close()
    (resp,) = await parse_responses(bytes(received))
    assert (resp.status, resp.header("connection")) == (408, "close")
    assert reading.done(), "the gateway did not close the connection"
    for _ in range(50):
        if not gw.gateway.connections:
            break
        await asyncio.sleep(0.02)
    assert not gw.gateway.connections, "the slow connection is still held"
    assert upstream.requests == []


async def test_a_new_connection_waits_request_header_timeout_for_its_first_byte(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    """As nginx's client_header_timeout: idle_timeout is for the wait between requests.
    A request whose first byte comes after idle_timeout is served; a connection that
    sends nothing is closed once request_header_timeout has passed."""
    server = "[server.limits]\nrequest_header_timeout = 1.5\nidle_timeout = 0.1\n"
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, default="v1", server=server))
    assert gw.gateway is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    await asyncio.sleep(0.5)  # five idle timeouts, a third of the header timeout
    writer.write(b"GET /late HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    reply = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    (resp,) = await parse_responses(reply)
    assert resp.status == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed, nothing said
    writer.close()
    assert asyncio.get_running_loop().time() - started >= 1.0


# ------------------------------------------------------------------ header spoofing


FORWARDING = ("x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host")


@pytest.mark.parametrize(
    ("trusted_hops", "sent", "want"),
    [
        pytest.param(
            0,
            "X-Forwarded-For: 6.6.6.6\nx-forwarded-for: 7.7.7.7\nX-REAL-IP: 6.6.6.6\n"
            "X-Forwarded-Proto: https\nX-Forwarded-Host: evil.test",
            ("127.0.0.1", "127.0.0.1", "http", "a.test"),
            id="no-trusted-hop-any-case",
        ),
        pytest.param(
            0,
            "X_Forwarded_For: 6.6.6.6\nX_Real_IP: 6.6.6.6\nX_Forwarded_Proto: https\n"
            "X_Forwarded_Host: evil.test\nX_Client_Cert_Subject: CN=admin",
            ("127.0.0.1", "127.0.0.1", "http", "a.test"),
            id="no-trusted-hop-underscores",
        ),
        pytest.param(
            1,
            "X-Forwarded-For: 6.6.6.6, 10.0.0.7\nX-Real-IP: 6.6.6.6",
            ("6.6.6.6, 10.0.0.7, 127.0.0.1", "10.0.0.7", "http", "a.test"),
            id="one-trusted-hop-spoof-beyond-it",
        ),
        pytest.param(
            1,
            "X-Forwarded-For: 6.6.6.6\nX-Forwarded-For: 10.0.0.7\nX_Real_IP: 6.6.6.6",
            ("6.6.6.6, 10.0.0.7, 127.0.0.1", "10.0.0.7", "http", "a.test"),
            id="one-trusted-hop-two-lines",
        ),
    ],
)
async def test_forwarding_headers_are_the_gateways_own(
    trusted_hops: int,
    sent: str,
    want: tuple[str, ...],
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
) -> None:
    toml = gateway_toml(
        {"v1": [upstream.address]}, default="v1", server=f"trusted_hops = {trusted_hops}"
    )
    gw = await start_gateway(toml)
    data = head(f"GET / HTTP/1.1\nHost: a.test\nConnection: close\n{sent}")
    assert (await send(gw.port, data)).statuses == [200]
    (seen,) = upstream.requests
    assert tuple(seen.headers.get(h) for h in FORWARDING) == want
    names = [n.lower() for n, _ in seen.raw_headers]
    for name in FORWARDING:
        assert names.count(name) == 1, f"{name} sent {names.count(name)} times"
    assert not [n for n in names if "_" in n], "an underscore spelling got through"
    assert "x-client-cert-subject" not in names


async def test_httpoxy_proxy_header_is_not_forwarded(
    gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    data = head("GET / HTTP/1.1\nHost: a.test\nProxy: http://evil.test:3128\nConnection: close")
    assert (await send(gateway.port, data)).statuses == [200]
    assert "proxy" not in upstream.requests[0].headers


def jwt_token() -> str:
    claims = {"sub": "alice", "email": "alice@example.com", "exp": int(time.time()) + 300}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256", headers={"kid": "k1"})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


AUTH_FILTERS = {
    "key-auth": f'plugin = "key-auth"\nconfig.consumers = [{{ name = "alice", key = "{KEY}" }}]',
    "jwt-auth": (
        'plugin = "jwt-auth"\n'
        f'config.keys = [{{ kid = "k1", alg = "HS256", secret = "{JWT_SECRET}" }}]\n'
        'config.claims_to_headers = { email = "X-User-Email", roles = "X-Roles" }'
    ),
    "basic-auth": (
        'plugin = "basic-auth"\n'
        f'config.users = {{ alice = "{bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode()}" }}'
    ),
}
SPOOFS = "X-Consumer: admin\nx-consumer: root\nX_Consumer: admin\n"
CLAIM_SPOOFS = "X-User-Email: boss@example.com\nX_User_Email: boss@example.com\nX-Roles: admin\n"


@pytest.fixture(params=sorted(AUTH_FILTERS))
async def auth_gateway(
    request: pytest.FixtureRequest, upstream: RecordingUpstream, start_gateway: StartGateway
) -> AsyncIterator[tuple[InProcessGateway, str]]:
    plugin: str = request.param
    routes = '[[routes]]\nname = "api"\nupstream = "v1"\nfilters = ["auth"]\n\n'
    routes += f"[filters.auth]\n{AUTH_FILTERS[plugin]}\n"
    credential = {
        "key-auth": f"X-Api-Key: {KEY}",
        "jwt-auth": f"Authorization: Bearer {jwt_token()}",
        "basic-auth": f"Authorization: {basic('alice', 'wonderland')}",
    }[plugin]
    yield await start_gateway(gateway_toml({"v1": [upstream.address]}, routes)), credential


def values(seen: Seen, name: str) -> list[str]:
    """Every value of ``name`` that reached the upstream, in any case, ``_`` or ``-``."""
    return [v for n, v in seen.raw_headers if n.lower().replace("_", "-") == name]


async def test_identity_headers_are_overwritten_not_appended(
    auth_gateway: tuple[InProcessGateway, str], upstream: RecordingUpstream
) -> None:
    """A valid credential for alice plus the client's own identity headers: the upstream
    sees exactly one X-Consumer, alice's, and only claim headers the token vouches for."""
    gw, credential = auth_gateway
    jwt_claims = credential.startswith("Authorization: Bearer")
    spoofs = SPOOFS + (CLAIM_SPOOFS if jwt_claims else "")
    data = head(f"GET /api HTTP/1.1\nHost: a.test\n{spoofs}{credential}\nConnection: close")
    assert (await send(gw.port, data)).statuses == [200]
    (seen,) = upstream.requests
    assert values(seen, "x-consumer") == ["alice"]
    if jwt_claims:
        assert values(seen, "x-user-email") == ["alice@example.com"]
        assert values(seen, "x-roles") == []  # removed, and the token has no roles claim


async def test_identity_headers_without_a_credential_reach_nobody(
    auth_gateway: tuple[InProcessGateway, str], upstream: RecordingUpstream
) -> None:
    gw, _ = auth_gateway
    data = head(f"GET /api HTTP/1.1\nHost: a.test\n{SPOOFS}{CLAIM_SPOOFS}Connection: close")
    assert (await send(gw.port, data)).statuses == [401]
    assert upstream.requests == []
