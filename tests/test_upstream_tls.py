"""Upstream TLS: a real HTTPS upstream on 127.0.0.1, its certificate signed by a private
CA that each test run makes, reached through the real gateway."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import logging
import os
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.config import load_config
from core.errors import ConfigError
from core.gateway import Snapshot
from core.health import CheckState
from tests.conftest import StartGateway
from tests.harness import GatewayProcess, InProcessGateway, free_port, gateway_toml

# ---------------------------------------------------------------------- a private CA


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate: what tls_ca names
    cert: Path  # the server's certificate, for 127.0.0.1 and localhost
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(folder: Path) -> Pki:
    """A CA, and a server certificate it signs for IP 127.0.0.1 and DNS localhost."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("wasmgate test CA"))
        .issuer_name(_name("wasmgate test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


def server_context(pki: Pki, sni_seen: list[str | None]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.cert, pki.key)
    ctx.set_alpn_protocols(["http/1.1"])

    def note_sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni_seen.append(name)

    ctx.sni_callback = note_sni
    return ctx


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


# ---------------------------------------------------------------------- a TLS upstream


@dataclass
class TlsUpstream:
    """An HTTPS server on 127.0.0.1.

    ``/stream/<n>`` answers n bytes, chunked; ``/ws`` is a WebSocket echo; anything
    else is echoed as JSON: method, path, body length and SHA-256, the ALPN protocol
    agreed and the client port of the TLS connection (so that reused connections can
    be told apart).
    """

    pki: Pki
    port: int = 0
    peers: list[int] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> TlsUpstream:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("GET", "/stream/{n}", self._stream)
        app.router.add_route("GET", "/ws", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = bound_socket()
        self.port = int(sock.getsockname()[1])
        ctx = server_context(self.pki, self.sni)
        await web.SockSite(self._runner, sock, ssl_context=ctx).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert request.transport is not None
        self.peers.append(int(request.transport.get_extra_info("peername")[1]))
        tls = request.transport.get_extra_info("ssl_object")
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "alpn": tls.selected_alpn_protocol() if tls is not None else None,
            }
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        left = int(request.match_info["n"])
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        piece = b"s" * (1 << 16)
        while left > 0:
            await resp.write(piece[:left])
            left -= len(piece)
        await resp.write_eof()
        return resp

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(f"echo: {msg.data}")
        return ws


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls_upstream(pki: Pki) -> AsyncIterator[TlsUpstream]:
    up = await TlsUpstream(pki).start()
    yield up
    await up.stop()


def tls_toml(up: TlsUpstream, extra: str) -> str:
    return gateway_toml({"secure": [up.address]}, default="secure", upstream_extra=extra)


# ---------------------------------------------------------------------- proxying over TLS


async def test_tls_with_private_ca_reuses_one_connection(
    tls_upstream: TlsUpstream, pki: Pki, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(tls_toml(tls_upstream, f'tls = true\ntls_ca = "{pki.ca}"'))
    for i in range(3):
        async with http.get(f"{gw.url}/echo/{i}?q=1") as r:
            assert r.status == 200, await r.text()
            got = await r.json()
        assert (got["path"], got["alpn"]) == (f"/echo/{i}?q=1", "http/1.1")
    assert len(tls_upstream.peers) == 3
    assert len(set(tls_upstream.peers)) == 1, "each request opened a new TLS connection"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_request_body_arrives_intact_over_tls(
    chunked: bool,
    tls_upstream: TlsUpstream,
    pki: Pki,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(tls_toml(tls_upstream, f'tls = true\ntls_ca = "{pki.ca}"'))
    body = os.urandom(3 << 20)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 100_000):
            yield body[i : i + 100_000]

    async with http.post(f"{gw.url}/upload", data=pieces() if chunked else body) as r:
        assert r.status == 200, await r.text()
        got = await r.json()
    assert (got["length"], got["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


async def test_streamed_response_over_tls(
    tls_upstream: TlsUpstream, pki: Pki, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(tls_toml(tls_upstream, f'tls = true\ntls_ca = "{pki.ca}"'))
    size = 5_000_000
    for _ in range(2):  # the second on the reused connection
        async with http.get(f"{gw.url}/stream/{size}") as r:
            assert r.status == 200
            received = 0
            async for chunk in r.content.iter_chunked(1 << 16):
                assert set(chunk) == {ord("s")}
                received += len(chunk)
                await asyncio.sleep(0)  # a slower reader: the gateway pauses the upstream
        assert received == size


async def test_response_delimited_by_close_over_tls(
    pki: Pki, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    body = b"until-close " * 50_000

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, sock=bound_socket(), ssl=server_context(pki, []))
    port = server.sockets[0].getsockname()[1]
    try:
        toml = gateway_toml(
            {"secure": [f"127.0.0.1:{port}"]},
            default="secure",
            upstream_extra=f'tls = true\ntls_ca = "{pki.ca}"',
        )
        gw = await start_gateway(toml)
        for _ in range(2):
            async with http.get(f"{gw.url}/") as r:
                assert r.status == 200
                assert await r.read() == body
    finally:
        server.close()


async def test_websocket_over_tls(
    tls_upstream: TlsUpstream, pki: Pki, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(tls_toml(tls_upstream, f'tls = true\ntls_ca = "{pki.ca}"'))
    async with http.ws_connect(f"{gw.url}/ws") as ws:
        for word in ("one", "two"):
            await ws.send_str(word)
            assert await asyncio.wait_for(ws.receive_str(), 3.0) == f"echo: {word}"


@pytest.mark.parametrize(
    ("extra", "sni"),
    [
        pytest.param('tls_sni = "localhost"', "localhost", id="tls_sni"),
        pytest.param(
            'preserve_host = false\nhost_header = "localhost:8443"', "localhost", id="host_header"
        ),
    ],
)
async def test_server_name_sent_and_verified(
    extra: str,
    sni: str,
    tls_upstream: TlsUpstream,
    pki: Pki,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(tls_toml(tls_upstream, f'tls = true\ntls_ca = "{pki.ca}"\n{extra}'))
    async with http.get(f"{gw.url}/x") as r:
        assert r.status == 200, await r.text()
    assert tls_upstream.sni == [sni]


async def test_tls_verify_off_accepts_an_unknown_ca(
    tls_upstream: TlsUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(tls_toml(tls_upstream, "tls = true\ntls_verify = false"))
    async with http.post(f"{gw.url}/x", data=b"abc") as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["length"] == 3


# ---------------------------------------------------------------------- refused: 502


@pytest.fixture
def gateway_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="wasmgate"):
        yield caplog


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        pytest.param(
            "tls = true",
            "failed: certificate verify failed: unable to get local issuer certificate",
            id="system-store-does-not-know-the-ca",
        ),
        pytest.param(
            'tls = true\ntls_ca = "{ca}"\ntls_sni = "other.example"',
            "failed: certificate verify failed: Hostname mismatch",
            id="tls_sni-not-in-the-certificate",
        ),
    ],
)
async def test_failed_verification_is_502_and_logged(
    extra: str,
    reason: str,
    tls_upstream: TlsUpstream,
    pki: Pki,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    gateway_log: pytest.LogCaptureFixture,
) -> None:
    gw = await start_gateway(tls_toml(tls_upstream, extra.format(ca=pki.ca)))
    async with http.get(f"{gw.url}/x") as r:
        text = await r.text()
    want = f"TLS handshake with {tls_upstream.address} {reason}"
    assert r.status == 502 and want in text, text
    assert want in gateway_log.text
    assert tls_upstream.peers == [], "a request was sent over an unverified connection"


async def test_plain_http_to_a_tls_port_is_502(
    tls_upstream: TlsUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(tls_toml(tls_upstream, ""))
    async with http.get(f"{gw.url}/x") as r:
        assert r.status == 502, await r.text()
    assert tls_upstream.peers == []


async def test_handshake_failures_eject_the_endpoint(
    tls_upstream: TlsUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    extra = "tls = true\nretries = 0\nhealth = { max_failures = 2, eject_seconds = 30 }"
    gw = await start_gateway(tls_toml(tls_upstream, extra))
    statuses = []
    for _ in range(3):
        async with http.get(f"{gw.url}/x") as r:
            statuses.append(r.status)
    assert statuses == [502, 502, 503]


# ---------------------------------------------------------------------- refused: at load


def compile_config(folder: Path, toml: str) -> Snapshot:
    path = folder / "gateway.toml"
    path.write_text(toml)
    return Snapshot(load_config(path), str(path))


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        pytest.param(
            'tls = true\ntls_ca = "certs/missing.pem"',
            "upstreams[0].tls_ca: cannot load '{dir}/certs/missing.pem': No such file or directory",
            id="tls_ca-missing",
        ),
        pytest.param(
            'tls = true\ntls_ca = "junk.pem"',
            "upstreams[0].tls_ca: cannot load '{dir}/junk.pem': not a PEM CA bundle",
            id="tls_ca-not-pem",
        ),
        pytest.param(
            'tls_sni = "api.internal"',
            "upstreams[0].tls_sni: needs tls = true",
            id="tls_sni-without-tls",
        ),
        pytest.param(
            "tls_verify = false",
            "upstreams[0].tls_verify: needs tls = true",
            id="tls_verify-without-tls",
        ),
        pytest.param(
            'tls = false\ntls_ca = "ca.pem"',
            "upstreams[0].tls_ca: needs tls = true",
            id="tls_ca-with-tls-false",
        ),
    ],
)
def test_config_errors(extra: str, problem: str, tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError) as info:
        compile_config(tmp_path, gateway_toml({"secure": ["127.0.0.1:1"]}, upstream_extra=extra))
    assert info.value.source == str(tmp_path / "gateway.toml")
    want = problem.format(dir=tmp_path)
    assert any(p.startswith(want) for p in info.value.problems), info.value.problems


# ---------------------------------------------------------------------- the real command


async def test_wasmgate_run_on_uvloop_with_a_relative_tls_ca(
    tls_upstream: TlsUpstream, pki: Pki, tmp_path: Path
) -> None:
    (tmp_path / "certs").mkdir()
    shutil.copy(pki.ca, tmp_path / "certs" / "ca.pem")
    port = free_port()
    toml = gateway_toml(
        {"secure": [tls_upstream.address]},
        default="secure",
        listen=f"127.0.0.1:{port}",
        upstream_extra='tls = true\ntls_ca = "certs/ca.pem"',
    )
    gw = await asyncio.to_thread(
        GatewayProcess(toml, workdir=str(tmp_path)).start, port, "--loop", "uvloop"
    )
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(3):
                async with http.post(f"{gw.url}/p/{i}", data=b"z" * 200_000) as r:
                    assert r.status == 200, gw.log()
                    assert (await r.json())["length"] == 200_000
            async with http.get(f"{gw.url}/stream/3000000") as r:
                assert len(await r.read()) == 3_000_000
    finally:
        code = await asyncio.to_thread(gw.terminate)
    assert code == 0, gw.log()
    assert len(set(tls_upstream.peers)) == 1, gw.log()


# ---------------------------------------------------------------------- active health checks


async def _checked(gw: InProcessGateway, address: str) -> CheckState:
    """The active-check state of ``address`` once a check has decided it."""
    assert gw.gateway is not None
    (ep,) = [e for e in gw.gateway.snapshot.pools["secure"].endpoints if e.address == address]
    assert ep.check is not None
    deadline = asyncio.get_running_loop().time() + 10
    while ep.check.state == "unknown":
        assert asyncio.get_running_loop().time() < deadline, "no check decided in 10 s"
        await asyncio.sleep(0.02)
    return ep.check


CHECK = 'health_check = { path = "/healthz", interval = 0.1, timeout = 1.0 }'


async def test_health_check_speaks_the_upstreams_tls(
    tls_upstream: TlsUpstream, pki: Pki, start_gateway: StartGateway
) -> None:
    extra = f'tls = true\ntls_ca = "{pki.ca}"\ntls_sni = "localhost"\n{CHECK}'
    gw = await start_gateway(tls_toml(tls_upstream, extra))
    check = await _checked(gw, tls_upstream.address)
    assert (check.state, check.result, check.error) == ("healthy", "success", "")
    assert tls_upstream.peers and tls_upstream.sni[0] == "localhost"


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        pytest.param(
            "tls = true",
            "TLS handshake failed: certificate verify failed: unable to get local issuer "
            "certificate",
            id="unverified-certificate",
        ),
        pytest.param("", "invalid response: closed before a response", id="plain-text-to-tls"),
    ],
)
async def test_health_check_fails_where_requests_would(
    extra: str, error: str, tls_upstream: TlsUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(tls_toml(tls_upstream, f"{extra}\n{CHECK}"))
    check = await _checked(gw, tls_upstream.address)
    assert (check.state, check.error) == ("unhealthy", error)
    assert tls_upstream.peers == []
