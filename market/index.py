"""A registry's layout and its index, and publishing into a registry folder.

A registry is a folder (served as is over HTTP by ``wasmgate market serve``)::

    ROOT/index.json                          every package and version (below)
    ROOT/index.sig                           the registry's signature over index.json
    ROOT/registry.pub                        the registry's public key
    ROOT/.registry/registry.key              its private key (never served)
    ROOT/keys/KEYID.pub                      publishers whose packages it accepts
    ROOT/packages/NAME/NAME-VERSION.wgpkg    the archives
    ROOT/packages/NAME/NAME-VERSION.md       each version's README, when it has one

``index.json`` is ``{"format": 2, "serial": N, "updated": ..., "keys": [...],
"packages": {NAME: {VERSION: entry}}}``, where an entry (:class:`IndexEntry`) holds
the archive's path, size and sha256, the payload's sha256, the signer's key id, and
the whole signed manifest (description, keywords, kind, ABI, config schema, ...).
Every write of the index raises ``serial`` and re-signs it with the registry key
(:mod:`market.signed_index`), so clients can tell a genuine index from a forged or
replayed one. Clients pick a version from it, then check the archive they download
against its size and sha256 *and* verify the package's own signature against their
trust store: the registry vouches for what exists, publishers for what it contains.

Publishing (:func:`publish`) verifies the package against ``ROOT/keys``, refuses a
name and version that exist with other content (republishing the same bytes is a
no-op), writes the archive and then the signed index, each atomically, under an
exclusive lock on ``ROOT/.lock``, so concurrent publishers serialize and a reader
never sees an index entry whose archive is not there yet.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from market.errors import (
    MarketError,
    PublishError,
    RegistryError,
    SignatureError,
    UnknownSigner,
)
from market.files import exclusive, write_atomically
from market.manifest import NAME_RE, SHA256_RE, PackageManifest
from market.package import Package, read_package
from market.signed_index import SIGNATURE, registry_key, sign_index
from market.signing import TrustStore

FORMAT = 2
INDEX = "index.json"
KEYS = "keys"
PACKAGES = "packages"
# What an index may name as a file: packages/NAME/FILE or keys/FILE, nothing else.
SAFE_PATH = re.compile(r"^(packages/[a-z][a-z0-9-]*|keys)/[A-Za-z0-9][A-Za-z0-9._+-]*$")


class IndexEntry(BaseModel):
    """One published version, as the index lists it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    archive: str = Field(pattern=SAFE_PATH.pattern, description="Path of the .wgpkg in ROOT.")
    size: int = Field(ge=1, description="Archive size in bytes.")
    sha256: str = Field(pattern=SHA256_RE, description="sha256 of the archive.")
    payload_sha256: str = Field(pattern=SHA256_RE, description="sha256 of the payload.")
    signer: str = Field(pattern=r"^[0-9a-f]{16}$", description="Key id of the signature.")
    readme: str | None = Field(None, pattern=SAFE_PATH.pattern, description="Path of README.")
    published: str = Field(description="When it was published (UTC, ISO 8601).")
    manifest: PackageManifest = Field(description="The signed manifest.")


class Index(BaseModel):
    """The whole catalogue of a registry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = FORMAT
    serial: int = Field(0, ge=0, description="Grows with every change of the index.")
    updated: str = ""
    keys: list[str] = Field(default_factory=list, description="Accepted publisher key ids.")
    packages: dict[str, dict[str, IndexEntry]] = Field(default_factory=dict)

    def entry(self, name: str, version: str) -> IndexEntry | None:
        return self.packages.get(name, {}).get(version)

    def to_bytes(self) -> bytes:
        data = self.model_dump(mode="json", exclude_none=True)
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def parse_index(data: bytes, source: str) -> Index:
    """Parse and check an ``index.json``; raises :class:`RegistryError`."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"{source}: the index is not valid JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else None
        hint = ""
        if got == 1:
            hint = "; an unsigned index of an older registry: `wasmgate market init ROOT` signs it"
        raise RegistryError(
            f"{source}: unsupported index format {got!r} (this client reads {FORMAT}){hint}"
        )
    try:
        index = Index.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RegistryError(f"{source}: malformed index at {where}: {first['msg']}") from None
    for name, versions in index.packages.items():
        if not re.match(NAME_RE, name):
            raise RegistryError(f"{source}: malformed index: bad package name {name!r}")
        for version, entry in versions.items():
            if (entry.manifest.name, entry.manifest.version) != (name, version):
                raise RegistryError(
                    f"{source}: malformed index: {name} {version} lists the manifest of "
                    f"{entry.manifest.name} {entry.manifest.version}"
                )
    return index


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class RegistryDir:
    """A registry folder on this machine: read its index, publish into it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def index_path(self) -> Path:
        return self.root / INDEX

    def exists(self) -> bool:
        return self.index_path.is_file()

    @property
    def signature_path(self) -> Path:
        return self.root / SIGNATURE

    def init(self) -> None:
        """Create an empty, signed registry, with its key; on an existing registry,
        make the key if missing and (re-)sign the index unless its signature holds."""
        try:
            (self.root / KEYS).mkdir(parents=True, exist_ok=True)
            (self.root / PACKAGES).mkdir(exist_ok=True)
            with exclusive(self.root / ".lock", "registry update"):
                key = registry_key(self.root)
                if not self.index_path.exists():
                    self._write_index(Index())
                    return
                data = self.index_path.read_bytes()
                try:
                    signature = self.signature_path.read_bytes()
                except FileNotFoundError:
                    signature = b""
                if signature != sign_index(data, key):
                    self._write_index(self._upgrade(data))
        except OSError as exc:
            raise RegistryError(f"registry {self.root}: cannot create: {exc}") from None

    def _upgrade(self, data: bytes) -> Index:
        """The index in ``data``, read as this format even when it is format 1."""
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj.get("format") == 1:
            obj["format"] = FORMAT
            data = json.dumps(obj).encode()
        return parse_index(data, str(self.index_path))

    def _write_index(self, index: Index) -> None:
        """Write ``index`` with a higher serial, then its signature (lock held)."""
        serial = max(index.serial + 1, int(time.time()))
        index = index.model_copy(update={"serial": serial, "updated": now()})
        data = index.to_bytes()
        write_atomically(self.index_path, data)
        write_atomically(self.signature_path, sign_index(data, registry_key(self.root)))

    def read_index(self) -> Index:
        try:
            data = self.index_path.read_bytes()
        except FileNotFoundError:
            raise RegistryError(
                f"{self.root} is not a registry (no {INDEX}); "
                f"create one with `wasmgate market init {self.root}`"
            ) from None
        except OSError as exc:
            raise RegistryError(f"{self.index_path}: cannot read: {exc.strerror}") from None
        return parse_index(data, str(self.index_path))

    def trust_store(self) -> TrustStore:
        return TrustStore.from_dir(self.root / KEYS)

    def add_publisher(self, public_key: Path) -> str:
        """Accept packages signed by ``public_key``; returns its key id."""
        from market.signing import add_trusted_key

        self.init()
        with exclusive(self.root / ".lock", "registry update"):
            kid = add_trusted_key(self.root / KEYS, public_key)
            index = self.read_index()
            keys = sorted(set(index.keys) | {kid})
            self._write_index(index.model_copy(update={"keys": keys}))
        return kid

    def publish(self, archive: Path) -> tuple[IndexEntry, bool]:
        """Add the package at ``archive``; returns (its entry, whether it is new).

        Raises :class:`PublishError` for a package this registry does not accept.
        """
        if not self.exists():
            raise PublishError(
                f"{self.root} is not a registry (no {INDEX}); "
                f"create one with `wasmgate market init {self.root}`",
                "unavailable",
            )
        with exclusive(self.root / ".lock", "registry update"):
            try:
                package = read_package(archive, self.trust_store())
            except UnknownSigner as exc:
                # The fix is on the registry's side, not the publisher's trust store.
                accepted = ", ".join(self.trust_store()) or "none"
                raise PublishError(
                    f"refused: the package is signed by key {exc.key_id}, which this "
                    f"registry does not accept (accepted publishers: {accepted}); the "
                    "registry's operator accepts a publisher with "
                    "`wasmgate market add-publisher ROOT PUBFILE`",
                    "untrusted",
                ) from None
            except SignatureError as exc:
                raise PublishError(f"refused: {exc}", "untrusted") from None
            except MarketError as exc:
                raise PublishError(f"refused: {exc}") from None
            return self._add(package, Path(archive).read_bytes())

    def _add(self, package: Package, raw: bytes) -> tuple[IndexEntry, bool]:
        m = package.manifest
        index = self.read_index()
        existing = index.entry(m.name, m.version)
        if existing is not None:
            if existing.sha256 == package.archive_sha256:
                return existing, False
            raise PublishError(
                f"refused: {m.name} {m.version} is already published with other content "
                f"(sha256 {existing.sha256}); a published version never changes, so "
                "publish a new version instead",
                "conflict",
            )
        folder = self.root / PACKAGES / m.name
        folder.mkdir(parents=True, exist_ok=True)
        archive_rel = f"{PACKAGES}/{m.name}/{m.name}-{m.version}.wgpkg"
        write_atomically(self.root / archive_rel, raw)
        readme_rel = None
        if package.readme is not None:
            readme_rel = f"{PACKAGES}/{m.name}/{m.name}-{m.version}.md"
            write_atomically(self.root / readme_rel, package.readme)
        entry = IndexEntry(
            archive=archive_rel,
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            payload_sha256=m.payload_sha256,
            signer=package.signer,
            readme=readme_rel,
            published=now(),
            manifest=m,
        )
        packages: dict[str, dict[str, Any]] = {k: dict(v) for k, v in index.packages.items()}
        packages.setdefault(m.name, {})[m.version] = entry
        self._write_index(index.model_copy(update={"packages": packages}))
        return entry, True
