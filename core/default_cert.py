"""The generated default certificate: HTTPS listeners that start with no certificate.

An Ingress controller listens on 443 from the start and, until an Ingress brings a
certificate, answers with a self-signed one of its own. wasmgate does the same: when
``tls_listen`` is set and no ``[[certificates]]`` entry (hand-written or from a TLS
Ingress) exists, :mod:`core.tls` serves :func:`default_context`, a self-signed EC P-256
certificate for ``CN=wasmgate default certificate`` generated once per process, in
memory. With ``[kubernetes]``, it is also the default for names no certificate
covers, as long as no ``[[certificates]]`` entry without hosts is (an Ingress
controller answers every name). Its key touches the disk only for the moment OpenSSL
loads it, in a private temporary folder that is removed at once; it is never written
anywhere else, never reused by another process. Clients cannot verify it: it is a
placeholder until real certificates arrive (by reload, for example from TLS Ingresses).

:func:`fallback_names` tells ``wasmgate check`` which route host names would be
answered with it (or with a configured default certificate, or refused).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from core.config import GatewayConfig

SUBJECT = "wasmgate default certificate"
VALID_DAYS = 365


@cache
def _pem() -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM), generated at the first call of this process."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SUBJECT)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def default_context() -> ssl.SSLContext:
    """A server context holding the generated default certificate."""
    cert, key = _pem()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="wasmgate-default-tls-") as tmp:
        chain_path, key_path = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
        chain_path.write_bytes(cert)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        ctx.load_cert_chain(chain_path, key_path)
    return ctx


def _covers(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if pattern.startswith("*."):
        label, dot, parent = host.partition(".")
        return bool(dot and label and label != "*" and parent == pattern[2:])
    return False


def fallback_names(cfg: GatewayConfig) -> tuple[str, list[str]]:
    """(what HTTPS does for them, the route host names no certificate names).

    Names no route lists either are treated the same way."""
    named = [h for c in cfg.certificates for h in c.hosts]
    hosts = dict.fromkeys(h for r in cfg.routes for h in r.hosts)
    left = [h for h in hosts if not any(_covers(p, h) for p in named)]
    default = next((i for i, c in enumerate(cfg.certificates) if not c.hosts), None)
    if default is not None:
        return f"certificates[{default}], the default (no hosts), answers them", left
    if not cfg.certificates or cfg.kubernetes is not None:
        return "the generated self-signed default certificate answers them", left
    return "their handshakes are refused (no default certificate)", left
