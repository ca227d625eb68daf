"""A private certificate authority for HTTPS listeners and mTLS (``wasmgate cert``).

:func:`make_ca` writes a self-signed CA; :func:`issue` writes a leaf certificate it
signs, for a server (``serverAuth``) or a client (``clientAuth``). Keys are EC P-256,
the curve every TLS stack supports; files are PEM, the key unencrypted PKCS#8 with
mode 0600. Nothing is ever overwritten.

A leaf's ``.crt`` holds the leaf alone, not the chain: with a private CA the peer
trusts the CA file itself (``tls_ca``, ``client_ca``, ``curl --cacert``), so there is
no intermediate to send. Errors are :class:`~core.errors.CertError` naming the file.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import CertError

# Leaves start this much in the past, so that a peer whose clock is a little behind
# accepts them at once.
BACKDATE = datetime.timedelta(minutes=5)
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
DNS_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
STEM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# CA keys we can sign with: ours are EC; a CA made with other tools may hold these.
Signer = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


@dataclass(frozen=True)
class CertInfo:
    """What ``wasmgate cert`` prints about a certificate it wrote."""

    path: Path
    subject: str  # RFC 4514, e.g. "CN=localhost"
    names: list[str]  # the SANs, DNS names then IP addresses
    fingerprint: str  # SHA-256 of the DER, "AB:CD:..." as `openssl x509 -fingerprint`
    not_after: datetime.datetime


def make_ca(name: str, out_dir: Path, days: int = 3650) -> tuple[Path, Path]:
    """Write ``OUT/NAME.crt`` and ``OUT/NAME.key``: a self-signed CA named ``CN=NAME``.

    The CA may sign leaves only (``pathlen:0``): no intermediate CAs below it.
    """
    if not name.strip():
        raise CertError("the CA name must not be empty")
    crt, key_path = _targets(out_dir, _stem(name))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=_days(days)))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write(crt, key_path, cert, key)
    return crt, key_path


def issue(
    ca_cert: Path,
    ca_key: Path,
    names: list[str],
    out_dir: Path,
    client: bool = False,
    days: int = 825,
    stem: str | None = None,
) -> tuple[Path, Path]:
    """Write ``OUT/STEM.crt`` and ``OUT/STEM.key``: a leaf the CA signs for ``names``.

    Each name becomes a SAN (an IP address for one that parses as such, else a DNS
    name, ``*.example.com`` allowed); the first is also the CN. ``client`` makes a
    client certificate (EKU ``clientAuth``) instead of a server one (``serverAuth``).
    ``stem`` defaults to the first name. The validity ends no later than the CA's.
    """
    if not names:
        raise CertError("give at least one name")
    sans = [_san(n) for n in names]
    ca, signer = _load_ca(ca_cert, ca_key)
    crt, key_path = _targets(out_dir, _stem(stem if stem is not None else names[0]))
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    not_after = min(now + datetime.timedelta(days=_days(days)), ca.not_valid_after_utc)
    if not_after <= now:
        raise CertError(f"{ca_cert}: the CA certificate has expired")
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # EC keys sign only: keyEncipherment is for RSA key transport (RFC 5480 §3).
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(_authority_key_id(ca, signer), critical=False)
        .sign(signer, _hash_for(signer))
    )
    _write(crt, key_path, cert, key)
    return crt, key_path


def describe(path: Path) -> CertInfo:
    """Subject, SANs, SHA-256 fingerprint and expiry of the first certificate in ``path``."""
    cert = _read_cert(path)
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        names = san.get_values_for_type(x509.DNSName)
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    digest = cert.fingerprint(hashes.SHA256())
    return CertInfo(
        path=path,
        subject=cert.subject.rfc4514_string(),
        names=names,
        fingerprint=":".join(f"{b:02X}" for b in digest),
        not_after=cert.not_valid_after_utc,
    )


# ---------------------------------------------------------------------- helpers


def _days(days: int) -> int:
    if days < 1:
        raise CertError(f"days must be at least 1, not {days}")
    return days


def _stem(text: str) -> str:
    stem = text.replace("*", "wildcard")
    if not STEM_RE.match(stem):
        raise CertError(
            f"{text!r} cannot name a file (letters, digits, '.', '_', '-'); give --stem"
        )
    return stem


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    low = name.lower().rstrip(".")
    if not DNS_RE.match(low):
        raise CertError(f"name {name!r} is neither a DNS name nor an IP address")
    return x509.DNSName(low)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca: x509.Certificate, signer: Signer) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _hash_for(key: Signer) -> hashes.SHA256 | None:
    # Ed25519/Ed448 hash internally; a CA made elsewhere may use them.
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _read_cert(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertError(f"{path}: not a PEM certificate") from None


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, Signer]:
    cert = _read_cert(cert_path)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CertError(f"{cert_path}: not a CA certificate (basicConstraints CA:TRUE missing)")
    try:
        data = key_path.read_bytes()
    except OSError as exc:
        raise CertError(f"{key_path}: cannot read the CA key: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertError(f"{key_path}: the key is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertError(f"{key_path}: not a PEM private key") from None
    if not isinstance(key, Signer):
        raise CertError(f"{key_path}: a {type(key).__name__} cannot sign certificates here")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise CertError(f"{key_path}: the key does not belong to {cert_path}")
    return cert, key


def _targets(out_dir: Path, stem: str) -> tuple[Path, Path]:
    crt, key = out_dir / f"{stem}.crt", out_dir / f"{stem}.key"
    for path in (crt, key):
        if path.exists():
            raise CertError(f"{path}: already exists; not overwriting it (remove it first)")
    return crt, key


def _write(
    crt: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    try:
        crt.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CertError(f"{crt.parent}: cannot create the folder: {exc.strerror}") from None
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key first, so that a certificate never lies around without its key.
    _create(key_path, key_pem, private=True)
    try:
        _create(crt, cert.public_bytes(serialization.Encoding.PEM), private=False)
    except CertError:
        key_path.unlink(missing_ok=True)
        raise


def _create(path: Path, data: bytes, *, private: bool) -> None:
    """Write a new file (O_EXCL: never replace one); a private one is 0600 from the start."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    except FileExistsError:
        raise CertError(f"{path}: already exists; not overwriting it (remove it first)") from None
    except OSError as exc:
        raise CertError(f"{path}: cannot create: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as out:
        if private:
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        out.write(data)
