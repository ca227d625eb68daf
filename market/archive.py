"""Reading a package archive safely: a tar, uncompressed or gzip, read into memory.

Nothing here touches the file system but the archive itself: members are read as
bytes and checked before anyone writes them anywhere. A member is refused when it
is not a regular file (symbolic or hard link, device, FIFO, directory, sparse
file), when its name is absolute, holds ``..`` or a directory part, when it
repeats a name, or when it, the members together, or the decompressed stream
pass the bounds in :class:`Limits`. Which names are expected is the caller's
business (:mod:`market.package`), since the payload's name is in the manifest.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from market.errors import PackageError, UnsafeArchive

MiB = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
# Room for tar headers, padding and the end-of-archive blocks around the members.
TAR_OVERHEAD = 1 * MiB


@dataclass(frozen=True)
class Limits:
    """Bounds on what an archive may hold; each is checked before data is read."""

    max_member: int = 64 * MiB
    max_total: int = 64 * MiB
    max_members: int = 4

    @property
    def max_stream(self) -> int:
        """Bound on the (decompressed) tar stream, headers included."""
        return self.max_total + TAR_OVERHEAD


DEFAULT_LIMITS = Limits()


def _kind_of(info: tarfile.TarInfo) -> str | None:
    """Why ``info`` is not a plain file, or None if it is one."""
    if info.issym():
        return f"a symbolic link (to {info.linkname!r})"
    if info.islnk():
        return f"a hard link (to {info.linkname!r})"
    if info.ischr() or info.isblk():
        return "a device file"
    if info.isfifo():
        return "a FIFO"
    if info.isdir():
        return "a directory"
    if info.issparse():
        return "a sparse file"
    if not info.isreg():
        return f"of unsupported type {info.type!r}"
    return None


def _check_name(name: str) -> str | None:
    """Why ``name`` may not be a member name, or None."""
    if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "a path with '..' that leaves the package"
    if len(parts) != 1 or name in ("", "."):
        return "not a plain file name (members sit at the archive's top level)"
    return None


def _tar_bytes(path: Path, raw: bytes, limits: Limits) -> bytes:
    """The tar stream of ``raw``: gunzipped if it is gzip, bounded by max_stream."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb") as gz:
            data = gz.read(limits.max_stream + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise PackageError(f"{path}: corrupt gzip stream ({exc})") from None
    if len(data) > limits.max_stream:
        raise UnsafeArchive(f"{path}: decompresses to more than {limits.max_stream} bytes; refused")
    return data


def read_archive(path: Path, limits: Limits = DEFAULT_LIMITS) -> tuple[bytes, dict[str, bytes]]:
    """Read ``path``; returns (the archive's bytes, {member name: content}).

    Raises :class:`UnsafeArchive` or :class:`PackageError` naming the member and the
    reason; nothing is written anywhere.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(limits.max_stream + 1)
    except OSError as exc:
        raise PackageError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > limits.max_stream:
        raise UnsafeArchive(f"{path}: archive is over {limits.max_stream} bytes; refused")
    data = _tar_bytes(path, raw, limits)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = _read_members(path, tar, limits)
    except tarfile.TarError as exc:
        raise PackageError(f"{path}: not a valid tar archive ({exc})") from None
    return raw, members


def _read_members(path: Path, tar: tarfile.TarFile, limits: Limits) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    total = 0
    while (info := tar.next()) is not None:
        where = f"{path}: member {info.name!r}"
        problem = _check_name(info.name)
        if problem is not None:
            raise UnsafeArchive(f"{where} is {problem}; refused")
        problem = _kind_of(info)
        if problem is not None:
            raise UnsafeArchive(f"{where} is {problem}; a package holds plain files only")
        if info.name in members:
            raise UnsafeArchive(f"{where} appears twice; refused")
        if len(members) >= limits.max_members:
            raise UnsafeArchive(
                f"{where}: more than {limits.max_members} members; a package holds "
                "manifest.json, manifest.sig, the payload and an optional README.md"
            )
        if info.size > limits.max_member:
            raise UnsafeArchive(
                f"{where} is {info.size} bytes, over the {limits.max_member}-byte bound"
            )
        total += info.size
        if total > limits.max_total:
            raise UnsafeArchive(
                f"{where}: members total {total} bytes, over the {limits.max_total}-byte bound"
            )
        extracted = tar.extractfile(info)
        content = extracted.read() if extracted is not None else b""
        if len(content) != info.size:
            raise PackageError(f"{where} is truncated ({len(content)} of {info.size} bytes)")
        members[info.name] = content
    return members


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    """A member header that depends on nothing but name and size (reproducible builds)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(members: list[tuple[str, bytes]]) -> bytes:
    """A gzip-compressed tar of ``members``, in order; the same input gives the same bytes."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            tar.addfile(_tarinfo(name, len(content)), io.BytesIO(content))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(tar_buf.getvalue())
    return out.getvalue()
