"""HTTPS listeners (core/tls.py): certificates chosen by SNI, TLS versions, client
certificates and the identity they give filters and upstreams, load-time refusals,
rotation on reload under an open keep-alive connection, and mTLS to an upstream that
requires a client certificate. Certificates come from ``core.certs`` (the code behind
``wasmgate cert``); every handshake is a real one over 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509

from core.certs import issue, make_ca
from core.chain import PluginRegistry
from core.config import loads_config
from core.errors import ConfigError
from core.gateway import Gateway, Snapshot
from plugin_sdk import Context, Filter, PluginConfig
from plugin_sdk.testing import RecordingUpstream, free_port


@dataclass
class Pki:
    dir: Path
    ca: Path
    ca_key: Path
    other_ca: Path
    other_ca_key: Path

    def server(self, *names: str, stem: str | None = None, days: int = 90) -> tuple[Path, Path]:
        return issue(self.ca, self.ca_key, list(names), self.dir, stem=stem, days=days)

    def client(self, name: str, *, other: bool = False) -> tuple[Path, Path]:
        ca, key = (self.other_ca, self.other_ca_key) if other else (self.ca, self.ca_key)
        return issue(ca, key, [name], self.dir, client=True, stem=f"client-{name}")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, ca_key = make_ca("test-ca", tmp_path)
    other, other_key = make_ca("other-ca", tmp_path)
    return Pki(tmp_path, ca, ca_key, other, other_key)


class TlsEcho(Filter[PluginConfig]):
    """Hands what ``ctx.tls`` says to the upstream, as headers."""

    Config = PluginConfig

    def on_request(self, ctx: Context) -> None:
        tls = ctx.tls
        ctx.request.headers.set("x-seen-tls", "yes" if tls else "no")
        if tls is not None:
            ctx.request.headers.set("x-seen-sni", tls.server_name)
            ctx.request.headers.set("x-seen-subject", tls.peer_subject or "-")
            ctx.request.headers.set("x-seen-version", tls.version)


class Served:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def port(self, scheme: str) -> int:
        for (_, port), s in zip(self.gateway.sockets, self.gateway.schemes, strict=True):
            if s == scheme:
                return port
        raise AssertionError(f"no {scheme} listener")


@pytest.fixture
async def serve() -> AsyncIterator:
    started: list[Gateway] = []

    async def start(toml: str) -> Served:
        snap = Snapshot(
            loads_config(toml, "test.toml"), "test.toml", PluginRegistry({"tls-echo": TlsEcho})
        )
        gw = Gateway(snap, asyncio.get_running_loop())
        await gw.start()
        started.append(gw)
        return Served(gw)

    yield start
    for gw in started:
        await gw.drain(timeout=1.0)


def config(upstream: int, certificates: str, tls: str = "", extra: str = "") -> str:
    return f"""
[server]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
access_log = "off"
[server.tls]
{tls}

[[upstreams]]
name = "up"
endpoints = ["127.0.0.1:{upstream}"]

[[routes]]
name = "all"
upstream = "up"
filters = ["tls-echo"]

{certificates}
{extra}
"""


def cert_table(crt: Path, key: Path, hosts: list[str], extra: str = "") -> str:
    return f'[[certificates]]\nhosts = {hosts!r}\ncert = "{crt}"\nkey = "{key}"\n{extra}\n'.replace(
        "'", '"'
    )


def client_context(pki: Pki, *, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


async def https_get(
    port: int,
    ctx: ssl.SSLContext,
    server_name: str | None,
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], x509.Certificate]:
    """One request on a new TLS connection: (status, headers, the server's certificate)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=server_name
    )
    try:
        status, got, cert = await _exchange(reader, writer, server_name or "x", path, headers)
    finally:
        writer.close()
    assert cert is not None
    return status, got, cert


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    path: str,
    headers: dict[str, str] | None,
) -> tuple[int, dict[str, str], x509.Certificate | None]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    got = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
    await reader.readexactly(int(got.get("content-length", "0")))
    sslobj = writer.get_extra_info("ssl_object")
    if sslobj is None:  # plain HTTP
        return status, got, None
    return status, got, x509.load_der_x509_certificate(sslobj.getpeercert(binary_form=True))


def cn(cert: x509.Certificate | None) -> str:
    assert cert is not None
    return cert.subject.rfc4514_string()


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    up = RecordingUpstream()
    await up.start()
    yield up
    await up.stop()


# ---------------------------------------------------------------- SNI and versions


async def test_sni_picks_the_certificate_of_each_name(
    pki: Pki, serve, upstream: RecordingUpstream
) -> None:
    certs = (
        cert_table(*pki.server("a.test", stem="a"), ["a.test"])
        + cert_table(*pki.server("*.b.test", stem="b"), ["*.b.test"])
        + cert_table(*pki.server("default.test", stem="default"), [])
    )
    gw = await serve(config(upstream.port, certs))
    port = gw.port("https")
    for name, expected in [
        ("a.test", "CN=a.test"),
        ("x.b.test", "CN=*.b.test"),
        ("A.TEST", "CN=a.test"),  # names compare case-insensitively
    ]:
        status, _, cert = await https_get(port, client_context(pki), name)
        assert (status, cn(cert)) == (200, expected), name
        assert upstream.requests[-1].headers["x-seen-sni"] == name.lower()
        assert upstream.requests[-1].headers["x-forwarded-proto"] == "https"
    loose = client_context(pki)
    loose.check_hostname = False
    for name in ("unknown.test", "deep.x.b.test", None):  # None: no SNI at all (an IP)
        status, _, cert = await https_get(port, loose, name)
        assert cn(cert) == "CN=default.test", name
    # The plain listener still speaks HTTP, and filters see no TLS there.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port("http"))
    await _exchange(reader, writer, "a.test", "/", None)
    writer.close()
    assert upstream.requests[-1].headers["x-seen-tls"] == "no"
    assert upstream.requests[-1].headers["x-forwarded-proto"] == "http"


async def test_a_name_without_a_certificate_and_no_default_fails_the_handshake(
    pki: Pki, serve, upstream: RecordingUpstream
) -> None:
    gw = await serve(config(upstream.port, cert_table(*pki.server("a.test"), ["a.test"])))
    loose = client_context(pki)
    loose.check_hostname = False
    assert await refused(gw.port("https"), loose, "other.test")
    status, _, _ = await https_get(gw.port("https"), client_context(pki), "a.test")
    assert status == 200


def old_client(pki: Pki) -> ssl.SSLContext:
    ctx = client_context(pki)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


async def test_tls_1_0_and_1_1_are_refused_by_default(
    pki: Pki, serve, upstream: RecordingUpstream
) -> None:
    certs = cert_table(*pki.server("a.test"), ["a.test"])
    gw = await serve(config(upstream.port, certs))
    assert await refused(gw.port("https"), old_client(pki), "a.test")
    status, _, _ = await https_get(gw.port("https"), client_context(pki), "a.test")
    assert status == 200
    assert upstream.requests[-1].headers["x-seen-version"] in ("TLSv1.2", "TLSv1.3")
    # The control: with min_version = "1.1" the same client gets in, if this machine's
    # OpenSSL can speak TLS 1.1 at all.
    gw11 = await serve(config(upstream.port, certs, tls='min_version = "1.1"'))
    try:
        await https_get(gw11.port("https"), old_client(pki), "a.test")
    except (ssl.SSLError, ConnectionError) as exc:
        pytest.skip(f"this OpenSSL cannot speak TLS 1.1 as a client either: {exc}")
    assert upstream.requests[-1].headers["x-seen-version"] == "TLSv1.1"


async def test_min_version_1_3_refuses_tls_1_2(
    pki: Pki, serve, upstream: RecordingUpstream
) -> None:
    certs = cert_table(*pki.server("a.test"), ["a.test"])
    gw = await serve(config(upstream.port, certs, tls='min_version = "1.3"'))
    tls12 = client_context(pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await refused(gw.port("https"), tls12, "a.test")
    await https_get(gw.port("https"), client_context(pki), "a.test")
    assert upstream.requests[-1].headers["x-seen-version"] == "TLSv1.3"


# ---------------------------------------------------------------- client certificates


async def refused(port: int, ctx: ssl.SSLContext, name: str) -> bool:
    """True if the handshake or the first exchange fails (TLS 1.3 reports a refused
    client certificate only after the client's handshake has finished)."""
    try:
        await https_get(port, ctx, name)
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return True
    return False


async def test_a_required_client_certificate_is_verified_and_its_identity_passed_on(
    pki: Pki, serve, upstream: RecordingUpstream
) -> None:
    certs = cert_table(*pki.server("a.test"), ["a.test"])
    tls = f'client_auth = "required"\nclient_ca = "{pki.ca}"'
    gw = await serve(config(upstream.port, certs, tls=tls))
    port = gw.port("https")
    assert await refused(port, client_context(pki), "a.test")  # no certificate
    other = client_context(pki, cert=pki.client("mallory", other=True))
    assert await refused(port, other, "a.test")  # another CA's
    assert upstream.requests == []
    alice = client_context(pki, cert=pki.client("alice"))
    status, _, _ = await https_get(
        port, alice, "a.test", headers={"X-Client-Cert-Subject": "CN=admin"}
    )
    assert status == 200
    seen = upstream.requests[-1].headers
    assert seen["x-seen-subject"] == "CN=alice"  # what the filter saw in ctx.tls
    assert seen["x-client-cert-subject"] == "CN=alice"  # what the upstream is told
    assert seen["x-client-cert-san"] == "DNS:alice"
    raw = upstream.requests[-1].raw_headers
    assert [v for k, v in raw if k.lower() == "x-client-cert-subject"] == ["CN=alice"]


async def test_client_certificates_per_host_and_optional(
    pki: Pki, serve, upstream: RecordingUpstream
) -> None:
    strict = f'client_auth = "required"\nclient_ca = "{pki.ca}"'
    certs = cert_table(*pki.server("admin.test", stem="admin"), ["admin.test"], strict)
    certs += cert_table(
        *pki.server("www.test", stem="www"),
        ["www.test"],
        f'client_auth = "optional"\nclient_ca = "{pki.ca}"',
    )
    certs += cert_table(*pki.server("open.test", stem="open"), ["open.test"])
    gw = await serve(config(upstream.port, certs))
    port = gw.port("https")
    anonymous = client_context(pki)
    alice = client_context(pki, cert=pki.client("alice"))
    assert await refused(port, anonymous, "admin.test")
    assert (await https_get(port, alice, "admin.test"))[0] == 200
    assert (await https_get(port, anonymous, "www.test"))[0] == 200
    assert upstream.requests[-1].headers["x-seen-subject"] == "-"
    assert "x-client-cert-subject" not in upstream.requests[-1].headers
    assert (await https_get(port, alice, "www.test"))[0] == 200
    assert upstream.requests[-1].headers["x-seen-subject"] == "CN=alice"
    assert (await https_get(port, anonymous, "open.test"))[0] == 200


async def test_plain_http_clients_cannot_send_identity_headers(
    pki: Pki, serve, upstream: RecordingUpstream
) -> None:
    gw = await serve(config(upstream.port, cert_table(*pki.server("a.test"), ["a.test"])))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port("http"))
    await _exchange(
        reader,
        writer,
        "a.test",
        "/",
        {"X-Client-Cert-Subject": "CN=admin", "x-client-cert-san": "DNS:admin"},
    )
    writer.close()
    seen = upstream.requests[-1].headers
    assert "x-client-cert-subject" not in seen and "x-client-cert-san" not in seen


# ---------------------------------------------------------------- loading


def snapshot_of(toml: str) -> Snapshot:
    return Snapshot(
        loads_config(toml, "test.toml"), "test.toml", PluginRegistry({"tls-echo": TlsEcho})
    )


def test_a_broken_or_mismatched_pair_is_refused_naming_the_files(pki: Pki) -> None:
    crt_a, key_a = pki.server("a.test", stem="a")
    crt_b, key_b = pki.server("b.test", stem="b")
    with pytest.raises(ConfigError, match=r"certificates\[0\]: .*a\.crt and .*b\.key: .*key"):
        snapshot_of(config(1, cert_table(crt_a, key_b, ["a.test"])))
    with pytest.raises(ConfigError, match=r"certificates\[0\]\.cert: .*nope\.crt: no such file"):
        snapshot_of(config(1, cert_table(pki.dir / "nope.crt", key_a, ["a.test"])))
    garbage = pki.dir / "garbage.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"certificates\[0\]"):
        snapshot_of(config(1, cert_table(garbage, key_a, ["a.test"])))
    with pytest.raises(ConfigError, match=r"client_auth = 'required' needs client_ca"):
        snapshot_of(config(1, cert_table(crt_a, key_a, ["a.test"]), tls='client_auth = "required"'))
    del crt_b


def test_a_certificate_about_to_expire_is_warned_about(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        snapshot_of(config(1, cert_table(*pki.server("a.test", days=5), ["a.test"]))).close()
    assert any(
        "expires in 5 days" in r.getMessage() or "expires in 4 days" in r.getMessage()
        for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        snapshot_of(
            config(1, cert_table(*pki.server("b.test", days=400, stem="b"), ["b.test"]))
        ).close()
    assert not [r for r in caplog.records if "expires" in r.getMessage()]


# ---------------------------------------------------------------- rotation


async def test_a_reload_with_new_files_serves_them_and_keeps_open_connections(
    pki: Pki, serve, upstream: RecordingUpstream
) -> None:
    crt, key = pki.server("a.test", stem="a")
    toml = config(upstream.port, cert_table(crt, key, ["a.test"]))
    gw = await serve(toml)
    port = gw.port("https")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(pki), server_hostname="a.test"
    )
    _, _, before = await _exchange(reader, writer, "a.test", "/one", None)
    # Rotate: new files in place, then a reload (what the file watcher or SIGHUP does).
    crt.unlink()
    key.unlink()
    pki.server("a.test", stem="a")
    gw.gateway.swap(snapshot_of(toml))
    status, _, still = await _exchange(reader, writer, "a.test", "/two", None)
    writer.close()
    assert before is not None and still is not None
    assert status == 200 and still.serial_number == before.serial_number  # same connection
    _, _, after = await https_get(port, client_context(pki), "a.test")
    assert after.serial_number != before.serial_number  # new connections: the new file
    assert [r.path_qs for r in upstream.requests][-3:] == ["/one", "/two", "/"]


# ---------------------------------------------------------------- mTLS to upstreams


@pytest.fixture
async def mtls_upstream(pki: Pki) -> AsyncIterator[int]:
    """An HTTPS upstream on 127.0.0.1 for "api.internal" that requires a client
    certificate from the test CA and answers with the subject it verified."""

    async def whoami(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = ",".join(f"{k}={v}" for rdn in (peer or {}).get("subject", ()) for k, v in rdn)
        return web.Response(text=subject)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(*pki.server("api.internal", stem="api"))
    app = web.Application()
    app.router.add_get("/{tail:.*}", whoami)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    yield port
    await runner.cleanup()


def mtls_config(port: int, pki: Pki, extra: str) -> str:
    return f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"
[[upstreams]]
name = "api"
endpoints = ["127.0.0.1:{port}"]
tls = true
tls_ca = "{pki.ca}"
{extra}
[[routes]]
name = "all"
upstream = "api"
"""


async def plain_get(gw: Served) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port("http"))
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


@pytest.mark.parametrize(
    ("case", "status"),
    [("right-cert", 200), ("no-cert", 502), ("other-ca-cert", 502), ("wrong-name", 502)],
)
async def test_mtls_to_an_upstream_that_requires_a_client_certificate(
    pki: Pki, serve, mtls_upstream: int, case: str, status: int
) -> None:
    gw_cert = pki.client("gateway", other=case == "other-ca-cert")
    extra = {
        "right-cert": 'tls_sni = "api.internal"\ntls_cert = "{0}"\ntls_key = "{1}"',
        "no-cert": 'tls_sni = "api.internal"',
        "other-ca-cert": 'tls_sni = "api.internal"\ntls_cert = "{0}"\ntls_key = "{1}"',
        "wrong-name": 'tls_sni = "db.internal"\ntls_cert = "{0}"\ntls_key = "{1}"',
    }[case].format(*gw_cert)
    gw = await serve(mtls_config(mtls_upstream, pki, extra))
    got, body = await plain_get(gw)
    assert got == status
    if status == 200:
        assert body == "commonName=gateway"
