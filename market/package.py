"""The ``.wgpkg`` package: pack a folder, read and verify an archive, unpack it.

A package is a tar archive (gzip-compressed when :func:`pack` writes it; plain tar
is read too) holding exactly, at its top level:

- ``manifest.json``: the manifest (:class:`~market.manifest.PackageManifest`) as
  canonical JSON; these bytes are what is signed;
- ``manifest.sig``: the detached Ed25519 signature over them, as canonical JSON
  ``{"algorithm":"ed25519","key_id":...,"signature":<base64>}`` (:mod:`market.signing`);
- the payload, named by the manifest's ``payload``, whose sha256 the manifest holds;
- optionally ``README.md``.

Reading checks, in this order: the archive is safe (:mod:`market.archive`), it is
signed by a key of the trust store and the signature matches, the manifest is
canonical and valid, there is nothing but the expected members, the payload's
digest matches and, for a ``python`` package, the payload is a safe pure-Python wheel
declaring the ``wasmgate.plugins`` entry point named like the package
(:mod:`market.wheel`). Only then is a :class:`Package` returned; :func:`unpack` writes one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from market.archive import DEFAULT_LIMITS, Limits, read_archive, write_archive
from market.errors import (
    DigestMismatch,
    ManifestError,
    PackageError,
    UnpackError,
    UnsafeArchive,
    UnsignedPackage,
)
from market.files import write_atomically
from market.manifest import PackageManifest as PackageManifest
from market.manifest import load_json_object, parse_manifest, validate_manifest
from market.signing import Signature, TrustStore, sign, verify
from market.wheel import check_plugin_wheel

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
README = "README.md"
SUFFIX = ".wgpkg"


@dataclass(frozen=True)
class Package:
    """A package whose signature, manifest and payload digest have been verified."""

    source: Path
    manifest: PackageManifest
    manifest_bytes: bytes = field(repr=False)
    signature: Signature = field(repr=False)
    signer: str
    payload: bytes = field(repr=False)
    readme: bytes | None = field(repr=False)
    archive_sha256: str

    @property
    def payload_sha256(self) -> str:
        return self.manifest.payload_sha256

    def files(self) -> list[tuple[str, bytes]]:
        """(member name, content) in archive order."""
        files = [
            (MANIFEST, self.manifest_bytes),
            (SIGNATURE, self.signature.to_bytes()),
            (self.manifest.payload, self.payload),
        ]
        if self.readme is not None:
            files.append((README, self.readme))
        return files


def default_name(manifest: PackageManifest) -> str:
    return f"{manifest.name}-{manifest.version}{SUFFIX}"


def _source_payload(src: Path, relative: object, manifest_path: str) -> Path:
    """The payload file a source manifest names, which must lie inside ``src``."""
    if not isinstance(relative, str) or not relative:
        raise ManifestError(manifest_path, ["payload: a file name (or path inside DIR)"])
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise ManifestError(manifest_path, [f"payload: {relative!r} must be inside {src}"])
    path = src / rel
    if not path.is_file():
        raise ManifestError(manifest_path, [f"payload: {path} is not a file"])
    return path


def pack(
    src: Path,
    private_key: Ed25519PrivateKey,
    out: Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Path:
    """Build and sign a package from folder ``src``; returns the archive's path.

    ``src/manifest.json`` is a manifest without ``payload_sha256`` (pack fills it in;
    if present it must match). Its ``payload`` may be a path inside ``src``
    (``build/filter.wasm``); the package stores the file under its base name. For the
    Proxy-Wasm manifests of ``plugins/wasm/*``, ``module`` is taken for ``payload``.
    ``src/README.md`` is included when present. ``out`` defaults to
    ``NAME-VERSION.wgpkg`` in the current directory; it is written atomically.
    """
    src = Path(src)
    manifest_path = src / MANIFEST
    try:
        raw_manifest = manifest_path.read_bytes()
    except OSError as exc:
        raise ManifestError(str(manifest_path), [f"cannot read: {exc.strerror}"]) from None
    obj = load_json_object(raw_manifest, str(manifest_path))
    if "module" in obj:
        if "payload" in obj:
            raise ManifestError(str(manifest_path), ["give payload or module, not both"])
        obj["payload"] = obj.pop("module")
    payload_path = _source_payload(src, obj.get("payload"), str(manifest_path))
    payload = payload_path.read_bytes()
    if len(payload) > limits.max_member:
        raise PackageError(f"{payload_path}: {len(payload)} bytes, over {limits.max_member}")
    digest = hashlib.sha256(payload).hexdigest()
    if obj.get("payload_sha256", digest) != digest:
        raise ManifestError(
            str(manifest_path),
            [f"payload_sha256: stale ({obj['payload_sha256']}); {payload_path} has {digest}"],
        )
    obj["payload"] = payload_path.name
    obj["payload_sha256"] = digest
    manifest = validate_manifest(obj, str(manifest_path))
    if manifest.kind == "python":
        check_plugin_wheel(payload, manifest.name, str(payload_path))
    manifest_bytes = manifest.canonical_bytes()
    members = [
        (MANIFEST, manifest_bytes),
        (SIGNATURE, sign(manifest_bytes, private_key).to_bytes()),
        (manifest.payload, payload),
    ]
    if (src / README).is_file():
        members.append((README, (src / README).read_bytes()))
    out = Path(out) if out is not None else Path(default_name(manifest))
    write_atomically(out, write_archive(members))
    return out


def read_package(path: Path, trust_store: TrustStore, limits: Limits = DEFAULT_LIMITS) -> Package:
    """Read and verify the package at ``path`` (see the module docstring for the order)."""
    path = Path(path)
    raw, members = read_archive(path, limits)
    if MANIFEST not in members:
        raise PackageError(f"{path}: not a wasmgate package (no {MANIFEST})")
    if SIGNATURE not in members:
        raise UnsignedPackage(f"{path}: the package is not signed (no {SIGNATURE}); refused")
    manifest_bytes = members[MANIFEST]
    signature = Signature.from_bytes(members[SIGNATURE], f"{path}: {SIGNATURE}")
    signer = verify(manifest_bytes, signature, trust_store, source=str(path))
    manifest = parse_manifest(manifest_bytes, f"{path}: {MANIFEST}")
    expected = {MANIFEST, SIGNATURE, README, manifest.payload}
    for name in members:
        if name not in expected:
            raise UnsafeArchive(
                f"{path}: unexpected member {name!r} (a package holds {MANIFEST}, "
                f"{SIGNATURE}, {manifest.payload} and optionally {README})"
            )
    if manifest.payload not in members:
        raise PackageError(f"{path}: the payload {manifest.payload!r} is missing")
    payload = members[manifest.payload]
    digest = hashlib.sha256(payload).hexdigest()
    if digest != manifest.payload_sha256:
        raise DigestMismatch(
            f"{path}: payload {manifest.payload!r} has sha256 {digest}, but the signed "
            f"manifest says {manifest.payload_sha256}: the payload was altered"
        )
    if manifest.kind == "python":
        check_plugin_wheel(payload, manifest.name, f"{path}: {manifest.payload}")
    return Package(
        source=path,
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        signature=signature,
        signer=signer,
        payload=payload,
        readme=members.get(README),
        archive_sha256=hashlib.sha256(raw).hexdigest(),
    )


def unpack(package: Package, dest: Path, extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``package``'s files into the new directory ``dest``, all or nothing.

    ``extra``, when given, is called with the temporary directory after the files
    are written (to unpack a wheel beside them); what it writes is part of the same
    all-or-nothing step.

    The files go to a temporary directory beside ``dest`` which is then renamed to
    ``dest`` (one atomic step on one file system); on any failure the temporary
    directory is removed and ``dest`` does not exist. ``dest`` must not exist.
    """
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise UnpackError(f"{dest} already exists; unpack into a new directory")
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise UnpackError(f"{dest}: cannot create: {exc.strerror}") from None
    try:
        for name, content in package.files():
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
        if extra is not None:
            extra(tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise UnpackError(f"{dest}: cannot unpack: {exc}") from exc
        raise
    _fsync_dir(parent)
    return dest


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
