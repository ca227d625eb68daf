"""Publisher keys, signatures over manifests, and the trust store (Ed25519).

- A key pair is two PEM files: ``publisher.key`` (PKCS#8, unencrypted, mode 0600)
  and ``publisher.pub`` (SubjectPublicKeyInfo).
- A key id is the first 16 hex digits of the sha256 of the raw 32-byte public key.
- A signature file (``manifest.sig``) is canonical JSON
  ``{"algorithm":"ed25519","key_id":"<16 hex>","signature":"<base64 of 64 bytes>"}``.
  The key id is a hint, not trusted: it picks the key to verify with, so an unknown
  signer and a wrong signature give different errors.
- A trust store is a directory of ``*.pub`` PEM files (any name; the key id is
  computed from the key), plus keys trusted in memory with :meth:`TrustStore.trust`.

``cryptography`` is imported here only; its errors become :mod:`market.errors`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from market.errors import (
    BadSignature,
    KeyFileError,
    SignatureError,
    TrustStoreError,
    UnknownSigner,
)
from market.manifest import canonical_json

ALGORITHM = "ed25519"
SIGNATURE_SIZE = 64
KEY_NAME = "publisher"


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256(raw public key)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` and write ``data``; refuse an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def keygen(directory: Path, name: str = KEY_NAME) -> tuple[Path, Path]:
    """Make a key pair ``DIR/NAME.key`` (0600) and ``DIR/NAME.pub``; never overwrites.

    The directory is created (mode 0700) if missing. Returns (private, public) paths.
    """
    directory = Path(directory)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"{directory}: cannot create: {exc.strerror}") from None
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem(private_key.public_key()), 0o644)
    except KeyFileError:
        private_path.unlink()
        raise
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an unencrypted PEM Ed25519 private key."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read private key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read public key: {exc.strerror}") from None
    return _public_from_pem(data, str(path))


def _public_from_pem(data: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{source}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{source}: not an Ed25519 key ({type(key).__name__})")
    return key


@dataclass(frozen=True)
class Signature:
    """An Ed25519 signature and the id of the key that made it."""

    key_id: str
    value: bytes

    def to_bytes(self) -> bytes:
        """The ``manifest.sig`` file's content."""
        return canonical_json(
            {
                "algorithm": ALGORITHM,
                "key_id": self.key_id,
                "signature": base64.b64encode(self.value).decode("ascii"),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "manifest.sig") -> Signature:
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise SignatureError(f"{source}: not a wasmgate signature (not JSON)") from None
        if not isinstance(obj, dict) or set(obj) != {"algorithm", "key_id", "signature"}:
            raise SignatureError(f"{source}: want exactly the keys algorithm, key_id and signature")
        if obj["algorithm"] != ALGORITHM:
            raise SignatureError(f"{source}: algorithm {obj['algorithm']!r}; only ed25519")
        kid, sig = obj["key_id"], obj["signature"]
        if not isinstance(kid, str) or len(kid) != 16 or kid.strip("0123456789abcdef"):
            raise SignatureError(f"{source}: key_id must be 16 lowercase hex digits")
        try:
            value = base64.b64decode(sig if isinstance(sig, str) else "", validate=True)
        except (binascii.Error, ValueError):
            value = b""
        if len(value) != SIGNATURE_SIZE:
            raise SignatureError(f"{source}: signature must be base64 of {SIGNATURE_SIZE} bytes")
        return cls(kid, value)


def sign(manifest_bytes: bytes, private_key: Ed25519PrivateKey) -> Signature:
    """Sign the exact manifest bytes."""
    return Signature(key_id(private_key.public_key()), private_key.sign(manifest_bytes))


class TrustStore:
    """The publisher keys a package may be signed by, by key id."""

    def __init__(self, source: str = "the trust store") -> None:
        self.source = source
        self._keys: dict[str, Ed25519PublicKey] = {}

    @classmethod
    def from_dir(cls, directory: Path) -> TrustStore:
        """Every ``*.pub`` file of ``directory``; a missing directory is an empty store."""
        directory = Path(directory)
        store = cls(f"trust store {directory}")
        if not directory.exists():
            return store
        if not directory.is_dir():
            raise TrustStoreError(f"trust store {directory}: not a directory")
        for path in sorted(directory.glob("*.pub")):
            try:
                store.trust(load_public_key(path))
            except KeyFileError as exc:
                raise TrustStoreError(f"trust store {directory}: {exc}") from None
        return store

    def trust(self, public_key: Ed25519PublicKey) -> str:
        """Trust ``public_key`` (in memory); returns its key id."""
        kid = key_id(public_key)
        self._keys[kid] = public_key
        return kid

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)


def add_trusted_key(directory: Path, public_path: Path) -> str:
    """Copy a public key into a trust store directory as ``KEYID.pub``; returns the id.

    Trusting a key that is already there is a no-op.
    """
    key = load_public_key(public_path)
    kid = key_id(key)
    directory = Path(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise TrustStoreError(f"trust store {directory}: cannot create: {exc.strerror}") from None
    if kid not in TrustStore.from_dir(directory):
        target = directory / f"{kid}.pub"
        try:
            _write_new(target, public_pem(key), 0o644)
        except KeyFileError as exc:
            raise TrustStoreError(str(exc)) from None
    return kid


def verify(
    manifest_bytes: bytes,
    signature: Signature | bytes,
    trust_store: TrustStore,
    *,
    source: str | None = None,
) -> str:
    """Check ``signature`` over ``manifest_bytes``; returns the signer's key id.

    Raises :class:`UnknownSigner` when the key id is not trusted and
    :class:`BadSignature` when the trusted key's signature does not match; messages
    start with ``source`` (the package's path) when given.
    """
    at = f"{source}: " if source else ""
    sig = signature if isinstance(signature, Signature) else Signature.from_bytes(signature)
    public_key = trust_store.get(sig.key_id)
    if public_key is None:
        trusted = ", ".join(trust_store) or "none"
        raise UnknownSigner(
            f"{at}signed by key {sig.key_id}, which {trust_store.source} does not hold "
            f"(trusted: {trusted}); if you trust this publisher, add their public key "
            "with `wasmgate plugin trust PUBFILE`",
            sig.key_id,
        )
    try:
        public_key.verify(sig.value, manifest_bytes)
    except InvalidSignature:
        raise BadSignature(
            f"{at}the signature by key {sig.key_id} does not match manifest.json: "
            "the manifest or its signature was altered after signing"
        ) from None
    return sig.key_id
