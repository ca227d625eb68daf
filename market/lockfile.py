"""``gateway.lock``: exactly which package each installed plugin is, and checking it.

The lockfile sits beside ``gateway.toml`` (``[market] lockfile`` moves it). It is
JSON, sorted and indented so that it diffs well in review::

    {
     "lock_version": 1,
     "plugins": {
      "as-headers": {
       "archive_sha256": "…", "constraint": "^0.1", "kind": "wasm",
       "manifest_sha256": "…", "payload_sha256": "…",
       "registry": "http://127.0.0.1:8700", "signer": "3f2a…", "version": "0.1.0"
      }
     }
    }

Installed packages live in the plugin folder (``[market] plugin_dir``, default
``wasmgate_plugins/`` beside ``gateway.toml``) as ``NAME-VERSION/``: the package's
files as the archive held them, plus ``site/`` for a Python package's unpacked wheel.

:func:`verify_installed` is what the gateway runs at startup and on every reload,
with no network: the folder the lockfile pins must exist and the manifest and
payload on disk must have the pinned sha256 (and, for Python packages, every file
of ``site/`` the sha256 that the wheel's RECORD gives), or the plugin is refused.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from market.errors import LockfileError
from market.files import write_atomically
from market.manifest import NAME_RE, SHA256_RE, PackageManifest, parse_manifest
from market.package import MANIFEST

LOCK_VERSION = 1
DEFAULT_LOCKFILE = "gateway.lock"
DEFAULT_PLUGIN_DIR = "wasmgate_plugins"
SITE = "site"


class LockedPlugin(BaseModel):
    """What the lockfile pins for one plugin."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    kind: Literal["wasm", "python"]
    constraint: str = Field(
        "",
        description="What the user asked for, or the caret of the version an install "
        "without one picked (^1.4.2); `update` stays within it. Empty: any release.",
    )
    signer: str = Field(pattern=r"^[0-9a-f]{16}$")
    archive_sha256: str = Field(pattern=SHA256_RE)
    payload_sha256: str = Field(pattern=SHA256_RE)
    manifest_sha256: str = Field(pattern=SHA256_RE)
    registry: str = Field("", description="Where it was installed from.")


class Lockfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lock_version: int = LOCK_VERSION
    plugins: dict[str, LockedPlugin] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        data = self.model_dump(mode="json")
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def folder_name(name: str, version: str) -> str:
    return f"{name}-{version}"


def read_lock(path: Path) -> Lockfile:
    """The lockfile at ``path``; a missing file is an empty lock."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Lockfile()
    except OSError as exc:
        raise LockfileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LockfileError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(obj, dict) and obj.get("lock_version") not in (None, LOCK_VERSION):
        raise LockfileError(
            f"{path}: lock_version {obj.get('lock_version')!r} is not one this wasmgate reads (1)"
        )
    try:
        lock = Lockfile.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise LockfileError(f"{path}: {where}: {first['msg']}") from None
    import re

    for name in lock.plugins:
        if not re.match(NAME_RE, name):
            raise LockfileError(f"{path}: plugins: {name!r} is not a plugin name")
    return lock


def write_lock(path: Path, lock: Lockfile) -> None:
    try:
        write_atomically(path, lock.to_bytes())
    except OSError as exc:
        raise LockfileError(f"{path}: cannot write: {exc}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_installed(
    plugin_dir: Path, name: str, locked: LockedPlugin, lockfile: Path
) -> tuple[Path, PackageManifest]:
    """Check what is on disk for ``name`` against the lock; returns (folder, manifest)."""
    folder = plugin_dir / folder_name(name, locked.version)
    where = f"plugin {name!r} {locked.version} (pinned in {lockfile})"
    if not folder.is_dir():
        raise LockfileError(
            f"{where} is not installed: {folder} is missing; run `wasmgate plugin install` "
            "to install what the lockfile pins"
        )
    try:
        manifest_bytes = (folder / MANIFEST).read_bytes()
    except OSError as exc:
        raise LockfileError(f"{where}: {folder / MANIFEST}: {exc.strerror}") from None
    if hashlib.sha256(manifest_bytes).hexdigest() != locked.manifest_sha256:
        raise LockfileError(
            f"{where}: {folder / MANIFEST} does not have the sha256 the lockfile pins; "
            "the installed plugin was altered: reinstall it with `wasmgate plugin install`"
        )
    manifest = parse_manifest(manifest_bytes, str(folder / MANIFEST))
    payload = folder / manifest.payload
    try:
        digest = sha256_file(payload)
    except OSError as exc:
        raise LockfileError(f"{where}: {payload}: {exc.strerror}") from None
    if digest != locked.payload_sha256:
        raise LockfileError(
            f"{where}: {payload} has sha256 {digest}, the lockfile pins "
            f"{locked.payload_sha256}: the installed plugin was altered; reinstall it "
            "with `wasmgate plugin install`"
        )
    if manifest.kind == "python":
        verify_site(folder / SITE, payload, where)
    return folder, manifest


def verify_site(site: Path, wheel: Path, where: str) -> None:
    """Every file under ``site`` is one the wheel's RECORD lists, with its sha256."""
    expected: dict[str, str] = {}
    with zipfile.ZipFile(wheel) as zf:
        records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
        for record in records:
            text = zf.read(record).decode("utf-8")
            for row in csv.reader(io.StringIO(text)):
                if len(row) >= 2 and row[1].startswith("sha256="):
                    expected[_site_path(row[0])] = row[1].removeprefix("sha256=")
    if not site.is_dir():
        raise LockfileError(f"{where}: {site} is missing; reinstall the plugin")
    # Compiled caches are not in RECORD and Python would prefer a crafted one to the
    # verified source, so they are removed: only the checked .py files run.
    for cache in sorted(site.rglob("__pycache__")):
        if cache.is_dir() and not cache.is_symlink():
            try:
                shutil.rmtree(cache)
            except OSError as exc:
                raise LockfileError(
                    f"{where}: cannot remove {cache} ({exc.strerror}); compiled files "
                    "are not verified, so the plugin is refused while they are there"
                ) from None
    for path in sorted(site.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        rel = path.relative_to(site).as_posix()
        if path.is_symlink() or not path.is_file():
            raise LockfileError(f"{where}: {path} is not a plain file; reinstall the plugin")
        want = expected.get(rel)
        if rel.endswith(".dist-info/RECORD"):
            continue
        digest = base64.urlsafe_b64encode(bytes.fromhex(sha256_file(path))).rstrip(b"=").decode()
        if want is None or digest != want:
            raise LockfileError(
                f"{where}: {path} is not what the wheel installed; the plugin was altered: "
                "reinstall it with `wasmgate plugin install`"
            )


def _site_path(member: str) -> str:
    """Where a wheel member lands in ``site/`` (``X.data/purelib/`` is stripped)."""
    head, sep, rest = member.partition("/")
    if sep and head.endswith(".data") and rest.startswith("purelib/"):
        return rest.removeprefix("purelib/")
    return member
