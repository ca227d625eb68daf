"""``wasmgate cert``: the certificates it writes work in real TLS handshakes (Python's ssl,
that is OpenSSL, on both ends of a socket pair), and it never overwrites a file."""

from __future__ import annotations

import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.certs import describe, issue, make_ca
from core.errors import CertError, GatewayError

ROOT = Path(__file__).resolve().parent.parent
# OpenSSL's text for an extendedKeyUsage mismatch (3.x says "unsuitable").
PURPOSE = re.compile(r"(unsuitable|unsupported) certificate purpose")


@dataclass(frozen=True)
class Pki:
    ca: Path
    ca_key: Path
    server: tuple[Path, Path]  # for localhost and 127.0.0.1
    client: tuple[Path, Path]  # --client, CN=gateway


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    out = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca("dev-ca", out)
    server = issue(ca, ca_key, ["localhost", "127.0.0.1"], out, stem="server")
    client = issue(ca, ca_key, ["gateway"], out, client=True)
    return Pki(ca, ca_key, server, client)


# ---------------------------------------------------------------------- handshakes


@dataclass
class Outcome:
    client_error: str | None = None
    server_error: str | None = None
    peer_subject: str | None = None  # the client certificate the server verified

    @property
    def ok(self) -> bool:
        return self.client_error is None and self.server_error is None


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> Outcome:
    """A TLS connection over a socket pair; the server sends one message after the
    handshake, so that a client certificate refused in TLS 1.3 (after the client's
    handshake is done) shows as an error on the client's read."""
    outcome = Outcome()
    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as tls:
                peer = tls.getpeercert()
                if peer:
                    subject = dict(item for rdn in peer["subject"] for item in rdn)
                    outcome.peer_subject = f"CN={subject['commonName']}"
                tls.sendall(b"hello")
        except (ssl.SSLError, OSError) as exc:
            outcome.server_error = str(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname=hostname) as tls:
            if tls.recv(5) != b"hello":
                outcome.client_error = "no greeting"
    except (ssl.SSLError, OSError) as exc:
        outcome.client_error = str(exc)
    finally:
        right.close()
        thread.join(5)
    return outcome


def server_context(cert: tuple[Path, Path], client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


def client_context(ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)  # check_hostname, CERT_REQUIRED
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


@pytest.mark.parametrize(
    ("hostname", "accepted"),
    [("localhost", True), ("127.0.0.1", True), ("example.com", False), ("::1", False)],
    ids=["dns-san", "ip-san", "other-name", "other-ip"],
)
def test_server_certificate_verifies_against_the_ca_by_name(
    pki: Pki, hostname: str, accepted: bool
) -> None:
    got = handshake(server_context(pki.server), client_context(pki.ca), hostname)
    assert got.ok is accepted, got
    if not accepted:
        assert "certificate verify failed" in str(got.client_error)


def test_a_client_that_does_not_trust_the_ca_refuses_the_server(pki: Pki, tmp_path: Path) -> None:
    other_ca, _ = make_ca("other-ca", tmp_path)
    got = handshake(server_context(pki.server), client_context(other_ca), "localhost")
    assert "certificate verify failed" in str(got.client_error)


@pytest.mark.parametrize(
    ("which", "accepted"),
    [("client", True), ("server", False), ("none", False)],
    ids=["client-cert", "server-cert-as-client-cert", "no-cert"],
)
def test_mtls_server_accepts_only_client_certificates_from_the_ca(
    pki: Pki, which: str, accepted: bool
) -> None:
    cert = {"client": pki.client, "server": pki.server, "none": None}[which]
    got = handshake(
        server_context(pki.server, client_ca=pki.ca), client_context(pki.ca, cert), "localhost"
    )
    assert got.ok is accepted, got
    if accepted:
        assert got.peer_subject == "CN=gateway"
    elif which == "server":
        # OpenSSL checks the client certificate's extendedKeyUsage: serverAuth only.
        assert PURPOSE.search(str(got.server_error)), got
    else:
        assert "peer did not return a certificate" in str(got.server_error), got


def test_a_client_certificate_is_not_usable_as_a_server_certificate(pki: Pki) -> None:
    got = handshake(server_context(pki.client), client_context(pki.ca), "gateway")
    assert PURPOSE.search(str(got.client_error)), got


# ---------------------------------------------------------------------- contents


def test_ca_and_leaf_extensions(pki: Pki) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    server = x509.load_pem_x509_certificate(pki.server[0].read_bytes())
    client = x509.load_pem_x509_certificate(pki.client[0].read_bytes())
    ext = x509.Extensions.get_extension_for_class

    ca_bc = ext(ca.extensions, x509.BasicConstraints).value
    assert (ca_bc.ca, ca_bc.path_length) == (True, 0)
    ca_ku = ext(ca.extensions, x509.KeyUsage).value
    assert ca_ku.key_cert_sign and ca_ku.crl_sign and not ca_ku.digital_signature
    assert ca.subject.rfc4514_string() == "CN=dev-ca" == ca.issuer.rfc4514_string()

    assert server.subject.rfc4514_string() == "CN=localhost"
    assert server.issuer == ca.subject
    assert not ext(server.extensions, x509.BasicConstraints).value.ca
    assert ext(server.extensions, x509.KeyUsage).value.digital_signature
    assert list(ext(server.extensions, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert list(ext(client.extensions, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    ca_ski = ext(ca.extensions, x509.SubjectKeyIdentifier).value.digest
    assert ext(server.extensions, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert ext(server.extensions, x509.SubjectKeyIdentifier).value.digest != ca_ski
    # The leaf alone: one certificate in the file.
    assert pki.server[0].read_text().count("BEGIN CERTIFICATE") == 1

    info = describe(pki.server[0])
    assert info.names == ["localhost", "127.0.0.1"]
    assert info.fingerprint == ":".join(f"{b:02X}" for b in server.fingerprint(hashes.SHA256()))


def test_leaf_validity_ends_no_later_than_the_ca(tmp_path: Path) -> None:
    ca, ca_key = make_ca("short-ca", tmp_path, days=10)
    crt, _ = issue(ca, ca_key, ["a.test"], tmp_path, days=825)
    assert describe(crt).not_after <= describe(ca).not_after


def test_key_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        ca, ca_key = make_ca("ca", tmp_path)
        crt, key = issue(ca, ca_key, ["a.test"], tmp_path)
    finally:
        os.umask(old)
    for path in (ca_key, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (ca, crt):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# ---------------------------------------------------------------------- refusals


def test_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    ca, ca_key = make_ca("ca", tmp_path)
    before = ca.read_bytes(), ca_key.read_bytes()
    with pytest.raises(CertError, match=r"ca\.crt: already exists"):
        make_ca("ca", tmp_path)
    assert (ca.read_bytes(), ca_key.read_bytes()) == before

    (tmp_path / "web.key").write_text("someone's key")
    with pytest.raises(CertError, match=r"web\.key: already exists"):
        issue(ca, ca_key, ["web"], tmp_path)
    assert not (tmp_path / "web.crt").exists()
    assert (tmp_path / "web.key").read_text() == "someone's key"
    assert issubclass(CertError, GatewayError)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("leaf-as-ca", r"srv\.crt: not a CA certificate", id="leaf-as-ca"),
        pytest.param(
            "wrong-key", r"other\.key: the key does not belong to .*ca\.crt", id="wrong-key"
        ),
        pytest.param("missing-ca", r"nope\.crt: cannot read", id="missing-ca"),
        pytest.param(
            "bad-name", r"name 'no spaces' is neither a DNS name nor an IP address", id="bad-name"
        ),
        pytest.param("bad-stem", r"'a/b' cannot name a file", id="bad-stem"),
    ],
)
def test_issue_refuses_with_the_file_named(tmp_path: Path, case: str, message: str) -> None:
    ca, ca_key = make_ca("ca", tmp_path)
    _, other_key = make_ca("other", tmp_path)
    srv, srv_key = issue(ca, ca_key, ["srv"], tmp_path)
    args = {
        "leaf-as-ca": (srv, srv_key, ["x.test"], None),
        "wrong-key": (ca, other_key, ["x.test"], None),
        "missing-ca": (tmp_path / "nope.crt", ca_key, ["x.test"], None),
        "bad-name": (ca, ca_key, ["no spaces"], "ok"),
        "bad-stem": (ca, ca_key, ["x.test"], "a/b"),
    }[case]
    with pytest.raises(CertError, match=message):
        issue(args[0], args[1], args[2], tmp_path / "out", stem=args[3])
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- the CLI


def wasmgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_makes_the_zero_trust_chain(tmp_path: Path) -> None:
    made = wasmgate("cert", "ca", "dev-ca", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    ca = tmp_path / "certs" / "dev-ca.crt"
    assert f"wrote certs/dev-ca.crt  (CN=dev-ca)\n  sha256 {describe(ca).fingerprint}" in (
        made.stdout
    )
    assert "wrote certs/dev-ca.key  (private key, mode 0600)" in made.stdout

    server = wasmgate(
        "cert", "issue", "--ca", "certs/dev-ca", "--name", "localhost", "--name", "127.0.0.1",
        "--stem", "gateway", cwd=tmp_path,
    )  # fmt: skip
    assert server.returncode == 0, server.stderr
    assert "wrote certs/gateway.crt  (CN=localhost  names: localhost, 127.0.0.1)" in server.stdout
    assert "expires " in server.stdout

    client = wasmgate(
        "cert", "issue", "--ca", "certs/dev-ca.crt", "--name", "gateway", "--client",
        "--dir", "client-certs", cwd=tmp_path,
    )  # fmt: skip
    assert client.returncode == 0, client.stderr
    assert "wrote client-certs/gateway.crt" in client.stdout
    assert "a client (clientAuth) certificate" in client.stdout

    certs = tmp_path / "certs"
    got = handshake(
        server_context((certs / "gateway.crt", certs / "gateway.key"), client_ca=ca),
        client_context(
            ca, (tmp_path / "client-certs/gateway.crt", tmp_path / "client-certs/gateway.key")
        ),
        "127.0.0.1",
    )
    assert got.ok, got
    assert got.peer_subject == "CN=gateway"

    again = wasmgate("cert", "ca", "dev-ca", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr == "wasmgate: certs/dev-ca.crt: already exists; not overwriting it " + (
        "(remove it first)\n"
    )
    missing = wasmgate("cert", "issue", "--ca", "nope", "--name", "x", cwd=tmp_path)
    assert missing.returncode == 1
    assert "nope.crt: cannot read" in missing.stderr


def test_cli_help_shows_the_chain() -> None:
    shown = wasmgate("cert", "--help", cwd=ROOT)
    assert shown.returncode == 0
    assert "wasmgate cert issue --ca certs/dev-ca --name gateway --client" in shown.stdout
