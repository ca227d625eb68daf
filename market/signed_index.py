"""The registry's own key, the signature over its index, and index freshness.

Packages are signed by their publishers; the index, which says *which* versions
exist, is signed by the registry, so that a hostile registry mirror or network can
neither hide a newer version nor serve an older index to force a downgrade:

- ``ROOT/.registry/registry.key`` (PKCS#8 PEM, mode 0600 in a 0700 folder) is the
  registry's Ed25519 key, made by ``wasmgate market init``; ``ROOT/registry.pub`` is
  its public half, served as ``/registry.pub``. ``market serve`` never serves
  ``.registry/``; do not put ROOT behind a plain static file server.
- ``ROOT/index.sig`` is a signature, in the format of a package's ``manifest.sig``,
  over the exact bytes of ``ROOT/index.json``.
- The index carries ``serial``, which grows with every change (to at least the Unix
  time of the change, so a registry rebuilt from scratch still moves forward), and
  ``updated``, the time of the change.

A client verifies the signature against the *registry keys* of its trust store:
``TRUST/registries/*.pub``, a role of its own, so a registry's key is never accepted
as a package publisher and a publisher's key never signs an index. It then compares
the serial with the highest one it has seen from that registry, remembered in
``$WASMGATE_HOME/state/registries/<hash of the location>.json``: a lower serial is a
replayed or rolled-back index, and the same serial with other bytes a forked one;
both are refused. Every refusal names the command that fixes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from market.errors import (
    BadSignature,
    MarketError,
    SignatureError,
    StaleIndex,
    UnknownSigner,
    UntrustedIndex,
)
from market.files import write_atomically
from market.signing import Signature, TrustStore, keygen, load_private_key, sign, verify

if TYPE_CHECKING:
    from market.index import Index

KEY_DIR = ".registry"
KEY_NAME = "registry"
PUBLIC = "registry.pub"
SIGNATURE = "index.sig"
REGISTRY_KEYS = "registries"
TRUST_FIX = "wasmgate plugin trust --registry-key"


def private_key_path(root: Path) -> Path:
    return Path(root) / KEY_DIR / f"{KEY_NAME}.key"


def registry_key(root: Path) -> Ed25519PrivateKey:
    """The registry's signing key; made (with ``ROOT/registry.pub``) when missing."""
    root = Path(root)
    private = private_key_path(root)
    if not private.exists():
        keygen(root / KEY_DIR, KEY_NAME)
    public = root / KEY_DIR / f"{KEY_NAME}.pub"
    if not (root / PUBLIC).is_file():
        write_atomically(root / PUBLIC, public.read_bytes())
    return load_private_key(private)


def sign_index(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The content of ``index.sig`` for the index bytes ``data``."""
    return sign(data, key).to_bytes()


def registry_keys(trust_dir: Path) -> TrustStore:
    """The registry keys of the trust store at ``trust_dir`` (``TRUST/registries``)."""
    store = TrustStore.from_dir(Path(trust_dir) / REGISTRY_KEYS)
    store.source = f"the registry keys of your trust store ({Path(trust_dir) / REGISTRY_KEYS})"
    return store


def verify_index(data: bytes, signature: bytes | None, keys: TrustStore, location: str) -> str:
    """Check ``signature`` over the index bytes; returns the registry key id.

    Raises :class:`UntrustedIndex`, saying what is wrong and what fixes it.
    """
    if signature is None:
        raise UntrustedIndex(
            f"registry {location} serves an unsigned index (no {SIGNATURE}); refused, since "
            "an unsigned index lets anyone on the way forge which versions exist. Its "
            "operator signs it with `wasmgate market init ROOT` (this makes the registry "
            "key, ROOT/registry.pub, and signs the index)"
        )
    try:
        sig = Signature.from_bytes(signature, f"{location}/{SIGNATURE}")
        return verify(data, sig, keys)
    except UnknownSigner as exc:
        trusted = ", ".join(keys) or "none"
        raise UntrustedIndex(
            f"the index of registry {location} is signed by registry key {exc.key_id}, "
            f"which {keys.source} does not hold (trusted: {trusted}); refused. If that is "
            f"your registry's key (compare the id with its operator), trust it: "
            f"`{TRUST_FIX} PUBFILE` with the registry's registry.pub, or "
            f"`{TRUST_FIX} --from-registry {exc.key_id}`"
        ) from None
    except BadSignature:
        raise UntrustedIndex(
            f"the index of registry {location} does not match its signature by registry key "
            f"{sig.key_id}: it was altered after signing (a hostile mirror or network); refused"
        ) from None
    except SignatureError as exc:
        raise UntrustedIndex(f"registry {location}: malformed index signature: {exc}") from None


class Serials:
    """The highest index serial seen per registry location, kept in ``HOME/state``."""

    def __init__(self, home: Path) -> None:
        self.dir = Path(home) / "state" / "registries"

    def path(self, location: str) -> Path:
        return self.dir / f"{hashlib.sha256(location.encode()).hexdigest()[:16]}.json"

    def _seen(self, location: str) -> dict[str, object] | None:
        try:
            seen = json.loads(self.path(location).read_bytes())
        except (OSError, ValueError):
            return None
        return seen if isinstance(seen, dict) and isinstance(seen.get("serial"), int) else None

    def check(self, location: str, index: Index, data: bytes) -> None:
        """Refuse an index older than (or forked from) the newest one seen."""
        seen = self._seen(location)
        if seen is None:
            return
        serial = seen["serial"]
        assert isinstance(serial, int)
        forget = f"delete {self.path(location)} to accept it"
        if index.serial < serial:
            raise StaleIndex(
                f"registry {location} serves index serial {index.serial} (updated "
                f"{index.updated or 'never'}), older than serial {serial} (updated "
                f"{seen.get('updated')}) seen before: a replayed or rolled-back index, "
                f"refused. If the registry was restored from a backup on purpose, {forget}"
            )
        if index.serial == serial and seen.get("sha256") != _sha(data):
            raise StaleIndex(
                f"registry {location} serves an index with serial {serial} whose content "
                f"differs from the serial {serial} seen before: two indexes signed with the "
                f"same serial, refused. If you know why, {forget}"
            )

    def remember(self, location: str, index: Index, data: bytes) -> None:
        seen = self._seen(location)
        if seen is not None and isinstance(seen["serial"], int) and seen["serial"] >= index.serial:
            return
        record = {
            "location": location,
            "serial": index.serial,
            "sha256": _sha(data),
            "updated": index.updated,
        }
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path(location), json.dumps(record, indent=1).encode())
        except OSError as exc:
            raise MarketError(f"{self.path(location)}: cannot write: {exc.strerror}") from None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
