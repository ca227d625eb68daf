"""HTTP/2 to upstreams (core/upstream_h2.py): ``protocol = "h2c"`` and ``"h2"`` (TLS).

The upstream is a second gateway ("back", h2c and h2 over TLS, at most 2 streams
per connection) in front of a recording upstream, so what reached it over HTTP/2
can be counted: its client connections are HTTP/2 ones, and its access log says
the protocol. The front gateway is the one under test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from core.certs import issue, make_ca
from core.config import loads_config
from core.errors import ConfigError
from core.http2 import ServerConnection
from tests.h2client import H2Client
from tests.harness import InProcessGateway, RecordingUpstream, free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Served:
    front: InProcessGateway
    back: InProcessGateway
    upstream: RecordingUpstream
    back_log: Path

    def back_protocols(self) -> list[str]:
        assert self.back.gateway is not None
        self.back.gateway.access_log.flush()
        lines = self.back_log.read_text().splitlines()
        return [str(json.loads(line)["protocol"]) for line in lines if line]

    def back_h2_connections(self) -> int:
        assert self.back.gateway is not None
        return sum(isinstance(c, ServerConnection) for c in self.back.gateway.connections)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    base = tmp_path_factory.mktemp("uh2")
    ca, ca_key = make_ca("uh2-ca", base)
    crt, key = issue(ca, ca_key, ["back.test"], base)
    upstream = await RecordingUpstream().start()
    log = base / "back.log"
    back = await InProcessGateway(
        f"""
[server]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
access_log = "{log}"
[server.http2]
max_concurrent_streams = 2
[[upstreams]]
name = "app"
endpoints = ["{upstream.address}"]
[default]
upstream = "app"
[[certificates]]
hosts = ["back.test"]
cert = "{crt}"
key = "{key}"
"""
    ).start()
    assert back.gateway is not None
    plain, tls = back.gateway.sockets[0][1], back.gateway.sockets[1][1]
    front = await InProcessGateway(
        f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"
[[upstreams]]
name = "h2c"
endpoints = ["127.0.0.1:{plain}"]
protocol = "h2c"
[[upstreams]]
name = "h2"
endpoints = ["127.0.0.1:{tls}"]
protocol = "h2"
tls = true
tls_ca = "{ca}"
tls_sni = "back.test"
[[upstreams]]
name = "retry"
endpoints = ["127.0.0.1:{free_port()}", "127.0.0.1:{plain}"]
protocol = "h2c"
retries = 1
[[routes]]
name = "c"
paths = ["/c/"]
filters = [{{ plugin = "rewrite", config = {{ strip_prefix = "/c" }} }}]
upstream = "h2c"
[[routes]]
name = "t"
paths = ["/t/"]
filters = [{{ plugin = "rewrite", config = {{ strip_prefix = "/t" }} }}]
upstream = "h2"
[[routes]]
name = "r"
paths = ["/r/"]
filters = [{{ plugin = "rewrite", config = {{ strip_prefix = "/r" }} }}]
upstream = "retry"
"""
    ).start()
    yield Served(front, back, upstream, log)
    await front.stop()
    await back.stop()
    await upstream.stop()


@pytest.mark.parametrize("prefix", ["/c", "/t"], ids=["h2c", "h2-over-tls"])
async def test_requests_and_bodies_go_over_http2(served: Served, prefix: str) -> None:
    before = len(served.back_protocols())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{served.front.url}{prefix}/upload", data=b"z" * 300_000) as r:
            assert r.status == 200
            assert (await r.json())["received"] == 300_000
        async with http.get(f"{served.front.url}{prefix}/bytes/500000") as r:
            assert r.status == 200
            assert len(await r.read()) == 500_000
    assert served.back_protocols()[before:] == ["HTTP/2", "HTTP/2"]


async def test_streams_share_connections_within_the_upstreams_limit(served: Served) -> None:
    """Six slow requests at once, an upstream that takes 2 streams per connection:
    all succeed on 3 connections (not 6, not a refused stream)."""
    async with aiohttp.ClientSession() as http:

        async def get(i: int) -> int:
            async with http.get(f"{served.front.url}/c/delay/0.5?i={i}") as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(get(i) for i in range(6)))
        assert statuses == [200] * 6
        assert 3 <= served.back_h2_connections() <= 4  # + the TLS one of the test above


async def test_a_failed_connect_is_retried_on_the_next_endpoint(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(f"{served.front.url}/r/retried") as r:
                assert r.status == 200


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('protocol = "h2"', "protocol = 'h2' needs tls = true"),
        ('protocol = "h2c"\ntls = true', "protocol = 'h2c' is without TLS"),
        ('protocol = "http2"', "protocol"),
    ],
    ids=["h2-without-tls", "h2c-with-tls", "unknown"],
)
async def test_protocol_errors_name_the_field(extra: str, message: str) -> None:
    toml = f'[[upstreams]]\nname = "u"\nendpoints = ["127.0.0.1:1"]\n{extra}\n'
    with pytest.raises(ConfigError) as err:
        loads_config(toml, "gw.toml")
    assert err.value.source == "gw.toml"
    (problem,) = err.value.problems
    assert problem.startswith("upstreams[0]")
    assert message in problem


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/status/204", "healthy"), ("/status/503", "unhealthy")],
    ids=["passes", "fails"],
)
async def test_http_health_checks_speak_http2(served: Served, path: str, expected: str) -> None:
    assert served.back.gateway is not None
    back = f"127.0.0.1:{served.back.gateway.sockets[0][1]}"
    check = f'path = "{path}", interval = 0.1, timeout = 1.0, healthy_threshold = 1'
    gw = await InProcessGateway(
        f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"
[[upstreams]]
name = "app"
endpoints = ["{back}"]
protocol = "h2c"
health_check = {{ {check}, unhealthy_threshold = 1 }}
[default]
upstream = "app"
"""
    ).start()
    try:
        assert gw.gateway is not None
        (ep,) = gw.gateway.snapshot.pools["app"].endpoints
        async with asyncio.timeout(5):
            while ep.check is None or ep.check.state == "unknown":
                await asyncio.sleep(0.05)
        assert ep.check.state == expected
        seen = [r for r in served.upstream.requests if r.path_qs == path]
        assert seen and seen[-1].headers["user-agent"] == "wasmgate-health-check"
        assert served.back.gateway is not None
        served.back.gateway.access_log.flush()
        lines = [json.loads(x) for x in served.back_log.read_text().splitlines() if x]
        assert {line["protocol"] for line in lines if line["path"] == path} == {"HTTP/2"}
    finally:
        await gw.stop()


class TrailerEcho(asyncio.Protocol):
    """A bare HTTP/2 server (h2): answers each request 200 with the body length it
    read, and its request trailers sent back as response trailers ``echo-<name>``.
    With ``with_length``, the response head carries the body's content-length too,
    and the trailers follow 50 ms after the body (a separate read for the gateway)."""

    with_length = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import h2.config
        import h2.connection

        self.transport = transport
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.got: dict[int, tuple[int, list[tuple[bytes, bytes]]]] = {}
        transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        import h2.events

        for ev in self.conn.receive_data(data):
            sid = getattr(ev, "stream_id", 0)
            size, trailers = self.got.get(sid, (0, []))
            if isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length or 0, sid)
                self.got[sid] = (size + len(ev.data or b""), trailers)
            elif isinstance(ev, h2.events.TrailersReceived):
                self.got[sid] = (size, list(ev.headers or []))  # type: ignore[arg-type]
            elif isinstance(ev, h2.events.StreamEnded):
                body = b"%d" % size
                head = [(b":status", b"200")]
                if self.with_length:
                    head.append((b"content-length", b"%d" % len(body)))
                self.conn.send_headers(sid, head)
                self.conn.send_data(sid, body)
                echo = [(b"echo-" + n, v) for n, v in trailers] or [(b"echo-none", b"1")]
                if self.with_length:
                    asyncio.get_running_loop().call_later(0.05, self._trailers, sid, echo)
                else:
                    self.conn.send_headers(sid, echo, end_stream=True)
        self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def _trailers(self, sid: int, fields: list[tuple[bytes, bytes]]) -> None:
        if not self.transport.is_closing():
            self.conn.send_headers(sid, fields, end_stream=True)
            self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]


async def test_request_trailers_reach_an_http2_upstream() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(TrailerEcho, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gw = await InProcessGateway(
        f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"
[[upstreams]]
name = "echo"
endpoints = ["127.0.0.1:{port}"]
protocol = "h2c"
[default]
upstream = "echo"
"""
    ).start()
    client = await H2Client.open(gw.port)
    try:
        # The first body is buffered while the upstream connection opens; the second
        # streams on the pooled one.
        for size in (100_000, 1_000_000):
            sid = client.start("POST", "/t", end=False)
            await client.send_body(sid, b"b" * size, end=False)
            client.conn.send_headers(sid, [("x-check", f"{size}")], end_stream=True)
            await client.flush()
            result = await client.wait(sid)
            assert result.status == 200
            assert bytes(result.body) == b"%d" % size
            assert ("echo-x-check", f"{size}") in result.trailers
    finally:
        client.close()
        await gw.stop()
        server.close()
