"""HTTP/2 from clients (core/http2.py): h2 over TLS by ALPN, h2c with prior knowledge.

One gateway (plain and HTTPS listeners) and one recording upstream serve the whole
module; the clients are curl, nghttp (Debian's nghttp2-client) and an h2 client over
a socket (tests/h2client.py).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from core.certs import issue, make_ca
from core.config import loads_config
from core.errors import ConfigError
from tests.h2client import H2Client
from tests.harness import InProcessGateway, RecordingUpstream, free_port, raw_request

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Served:
    gw: InProcessGateway
    upstream: RecordingUpstream
    ca: Path
    log: Path

    @property
    def port(self) -> int:
        assert self.gw.gateway is not None
        return self.gw.gateway.sockets[0][1]

    @property
    def tls_port(self) -> int:
        assert self.gw.gateway is not None
        return self.gw.gateway.sockets[1][1]

    def client_ctx(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.set_alpn_protocols(alpn or ["h2", "http/1.1"])
        return ctx

    def log_lines(self) -> list[dict[str, object]]:
        assert self.gw.gateway is not None
        self.gw.gateway.access_log.flush()
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


def toml(upstream: str, crt: Path, key: Path, log: Path, http2: str = "") -> str:
    return f"""
[server]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
access_log = "{log}"
[server.limits]
max_body_bytes = 20000000
[server.http2]
{http2}

[[upstreams]]
name = "app"
endpoints = ["{upstream}"]

[[routes]]
name = "app"
paths = ["/"]
upstream = "app"

[[routes]]
name = "small"
paths = ["/small"]
upstream = "app"
max_body_bytes = 10

[[certificates]]
hosts = ["gw.test"]
cert = "{crt}"
key = "{key}"
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    base = tmp_path_factory.mktemp("h2")
    ca, ca_key = make_ca("h2-ca", base)
    crt, key = issue(ca, ca_key, ["gw.test"], base)
    log = base / "access.log"
    upstream = await RecordingUpstream().start()
    gw = await InProcessGateway(toml(upstream.address, crt, key, log)).start()
    yield Served(gw, upstream, ca, log)
    await gw.stop()
    await upstream.stop()


async def run(*argv: str, timeout: float = 20.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def need(program: str, package: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (Debian package {package})")


# -- curl: h2c with prior knowledge, h2 by ALPN, and HTTP/1.1 as before


@pytest.mark.parametrize(
    ("how", "version"),
    [
        ("h2c-prior-knowledge", "2"),
        ("tls-alpn-h2", "2"),
        ("tls-http1.1", "1.1"),
        ("plain-http1.1", "1.1"),
    ],
)
async def test_curl_gets_the_protocol_it_asks_for(served: Served, how: str, version: str) -> None:
    need("curl", "curl")
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"]
    path = f"/curl/{how}"
    if how == "h2c-prior-knowledge":
        args += ["--http2-prior-knowledge", f"http://127.0.0.1:{served.port}{path}"]
    elif how == "plain-http1.1":
        args += [f"http://127.0.0.1:{served.port}{path}"]
    else:
        flag = "--http2" if how == "tls-alpn-h2" else "--http1.1"
        url = f"https://gw.test:{served.tls_port}{path}"
        resolve = f"gw.test:{served.tls_port}:127.0.0.1"
        args += [flag, "--cacert", str(served.ca), "--resolve", resolve, url]
    rc, out, err = await run(*args)
    assert rc == 0, err
    assert out == f"{version} 200"
    seen = [r for r in served.upstream.requests if r.path_qs == path]
    assert len(seen) == 1
    assert seen[0].headers["x-forwarded-for"] == "127.0.0.1"
    line = next(entry for entry in served.log_lines() if entry.get("path") == path)
    assert line["protocol"] == f"HTTP/{version}"


async def test_a_body_streams_both_ways_with_flow_control(served: Served) -> None:
    """5 MB up and 5 MB down on one stream each, far past every window: the data all
    arrives, so the gateway acknowledged the client's and respected its windows."""
    client = await H2Client.open(served.port)
    try:
        up = await client.request("POST", "/upload", body=b"u" * 5_000_000, timeout=30)
        assert up.status == 200
        assert json.loads(bytes(up.body))["received"] == 5_000_000
        down = await client.request("GET", "/bytes/5000000", timeout=30)
        assert down.status == 200
        assert len(down.body) == 5_000_000
    finally:
        client.close()


async def test_streams_are_multiplexed_on_one_connection(served: Served) -> None:
    """A slow stream does not hold up quick ones started after it."""
    client = await H2Client.open(served.port)
    try:
        slow = client.start("GET", "/delay/1.5")
        quick = [client.start("GET", f"/quick/{i}") for i in range(5)]
        await client.flush()
        for sid in quick:
            result = await client.wait(sid, timeout=5)
            assert result.status == 200
        assert not client.streams[slow].ended  # the quick ones overtook it
        assert (await client.wait(slow, timeout=5)).status == 200
    finally:
        client.close()


async def test_nghttp_fetches_several_streams_at_once(served: Served) -> None:
    need("nghttp", "nghttp2-client")
    base = f"http://127.0.0.1:{served.port}"
    rc, out, err = await run("nghttp", "-ns", f"{base}/n/1", f"{base}/n/2", f"{base}/bytes/100000")
    assert rc == 0, out + err
    assert out.count(" 200 ") == 3, out


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/status/503", b"", 503),  # the upstream's own status
        ("GET", "/a/%2e%2e/admin", b"", 400),  # a dot segment, refused as on HTTP/1.1
        ("GET", "/" + "x" * 9000, b"", 414),
        ("POST", "/small/upload", b"y" * 100, 413),  # the route's body bound
    ],
    ids=["upstream-status", "dot-segment", "long-url", "body-bound"],
)
async def test_local_replies_and_refusals_are_stream_replies(
    served: Served, method: str, path: str, body: bytes, status: int
) -> None:
    client = await H2Client.open(served.port)
    try:
        result = await client.request(method, path, body=body)
        assert result.status == status
        # The connection is still good for the next request.
        assert (await client.request("GET", "/after")).status == 200
        assert client.goaway is None
    finally:
        client.close()


async def test_headers_are_mapped_for_an_http1_upstream(served: Served) -> None:
    client = await H2Client.open(served.port)
    try:
        result = await client.request(
            "GET",
            "/mapped",
            headers=[("cookie", "a=1"), ("cookie", "b=2"), ("x-real-ip", "6.6.6.6")],
        )
        assert result.status == 200
    finally:
        client.close()
    seen = next(r for r in served.upstream.requests if r.path_qs == "/mapped")
    assert seen.headers["cookie"] == "a=1; b=2"  # one header again (RFC 9113 §8.2.3)
    assert seen.headers["x-real-ip"] == "127.0.0.1"  # spoofed value dropped
    assert seen.headers["host"] == "gw.test"  # from :authority


async def test_a_client_reset_ends_only_its_stream(served: Served) -> None:
    client = await H2Client.open(served.port)
    try:
        sid = client.start("GET", "/delay/2")
        await client.flush()
        await asyncio.sleep(0.2)
        client.conn.reset_stream(sid)
        await client.flush()
        assert (await client.request("GET", "/after-reset")).status == 200
    finally:
        client.close()
    await asyncio.sleep(0.2)
    entry = next(e for e in served.log_lines() if e.get("path") == "/delay/2")
    assert entry["status"] == 499


async def test_upgrade_h2c_is_still_not_followed(served: Served) -> None:
    reply = await raw_request(
        served.port,
        b"GET /upg HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200 ")
    seen = next(r for r in served.upstream.requests if r.path_qs == "/upg")
    assert "upgrade" not in seen.headers


async def test_http2_can_be_turned_off(tmp_path: Path) -> None:
    ca, ca_key = make_ca("off-ca", tmp_path)
    crt, key = issue(ca, ca_key, ["gw.test"], tmp_path)
    upstream = await RecordingUpstream().start()
    gw = await InProcessGateway(
        toml(upstream.address, crt, key, tmp_path / "a.log", "tls = false\ncleartext = false")
    ).start()
    try:
        assert gw.gateway is not None
        tls_port = gw.gateway.sockets[1][1]
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", tls_port, ssl=ctx, server_hostname="gw.test"
        )
        sslobj = writer.get_extra_info("ssl_object")
        assert sslobj.selected_alpn_protocol() == "http/1.1"
        writer.close()
        # The preface on a plain listener is a bad HTTP/1.1 request again.
        reply = await raw_request(gw.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
    finally:
        await gw.stop()
        await upstream.stop()


async def alpn_of(port: int, ca: Path) -> str | None:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="gw.test")
    chosen = writer.get_extra_info("ssl_object").selected_alpn_protocol()
    writer.close()
    return str(chosen) if chosen else None


async def test_http2_can_be_turned_off_per_listener(tmp_path: Path) -> None:
    ca, ca_key = make_ca("per-ca", tmp_path)
    crt, key = issue(ca, ca_key, ["gw.test"], tmp_path)
    upstream = await RecordingUpstream().start()
    plain_on, plain_off, tls_on, tls_off = (f"127.0.0.1:{free_port()}" for _ in range(4))
    text = toml(
        upstream.address, crt, key, tmp_path / "p.log", f'off = ["{plain_off}", "{tls_off}"]'
    )
    text = text.replace('listen = ["127.0.0.1:0"]', f'listen = ["{plain_on}", "{plain_off}"]', 1)
    text = text.replace('tls_listen = ["127.0.0.1:0"]', f'tls_listen = ["{tls_on}", "{tls_off}"]')
    gw = await InProcessGateway(text).start()
    try:
        port = {name: int(addr.rsplit(":", 1)[1]) for name, addr in
                [("plain_on", plain_on), ("plain_off", plain_off), ("tls_on", tls_on),
                 ("tls_off", tls_off)]}  # fmt: skip
        assert await alpn_of(port["tls_on"], ca) == "h2"
        assert await alpn_of(port["tls_off"], ca) == "http/1.1"
        client = await H2Client.open(port["plain_on"])
        assert (await client.request("GET", "/on")).status == 200
        client.close()
        reply = await raw_request(port["plain_off"], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
    finally:
        await gw.stop()
        await upstream.stop()


async def test_an_off_listener_must_be_one_of_the_listeners(tmp_path: Path) -> None:
    text = toml(
        "127.0.0.1:1", tmp_path / "c", tmp_path / "k", tmp_path / "l", 'off = ["1.2.3.4:5"]'
    )
    with pytest.raises(ConfigError) as err:
        loads_config(text, "gw.toml")
    assert "server.http2.off[0]: '1.2.3.4:5' is not in listen or tls_listen" in err.value.problems


async def test_draining_sends_goaway_and_finishes_streams_in_flight(tmp_path: Path) -> None:
    need("nghttp", "nghttp2-client")
    upstream = await RecordingUpstream().start()
    ca, ca_key = make_ca("drain-ca", tmp_path)
    crt, key = issue(ca, ca_key, ["gw.test"], tmp_path)
    gw = await InProcessGateway(toml(upstream.address, crt, key, tmp_path / "d.log")).start()
    try:
        fetch = asyncio.ensure_future(run("nghttp", "-v", f"http://127.0.0.1:{gw.port}/delay/1"))
        while not upstream.requests:
            await asyncio.sleep(0.02)
        assert gw.gateway is not None
        await gw.gateway.drain(timeout=5)
        rc, out, err = await fetch
        assert rc == 0, out + err
        assert "recv GOAWAY" in out and "NO_ERROR" in out
        assert ":status: 200" in out  # the stream in flight finished after the GOAWAY
    finally:
        await upstream.stop()
