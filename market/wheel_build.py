"""Writing pure wheels: how the example registry packs Python plugins.

:func:`build_wheel` is a small, deterministic writer of ``py3-none-any`` wheels (no
setuptools): the same sources give the same bytes, so a package's payload digest is
reproducible from the repository. What it writes is exactly what
:func:`market.wheel.inspect_wheel` accepts.
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from market.errors import WheelError
from market.files import write_atomically
from market.wheel import DIST_NAME_RE, ENTRY_VALUE_RE, GROUP, ZIP_EPOCH, escape, record_bytes


def build_wheel(
    dist_name: str,
    version: str,
    sources: dict[str, Path],
    out_dir: Path,
    *,
    entry_points: dict[str, str] | None = None,
    requires: Sequence[str] = (),
    summary: str = "",
) -> Path:
    """Write ``NAME-VERSION-py3-none-any.whl`` into ``out_dir``; returns its path.

    ``sources`` maps a top-level import name to a directory (its ``*.py`` files,
    recursively, ``__pycache__`` skipped) or to one ``.py`` file. ``entry_points``
    fills ``[wasmgate.plugins]``. Members are sorted (``.dist-info`` last, RECORD
    at the very end) and stamped 1980-01-01 0644, so the same inputs give the same
    bytes. The file is written atomically.
    """
    if not DIST_NAME_RE.match(dist_name):
        raise WheelError(f"{dist_name!r}: not a distribution name")
    try:
        version = str(Version(version))
    except InvalidVersion:
        raise WheelError(f"{dist_name}: {version!r} is not a PEP 440 version") from None
    for text in requires:
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise WheelError(f"{dist_name}: requirement {text!r}: {exc}") from None
    if any(c in summary for c in "\r\n"):
        raise WheelError(f"{dist_name}: the summary must be one line")
    entry_points = entry_points or {}
    for name, value in entry_points.items():
        if (
            not name
            or name != name.strip()
            or any(c in name for c in "=[]\r\n")
            or not ENTRY_VALUE_RE.match(value)
        ):
            raise WheelError(
                f"{dist_name}: entry point {name!r} = {value!r}: want name = module:attr"
            )
    stem = f"{escape(dist_name)}-{version.replace('-', '_')}"
    dist_info = f"{stem}.dist-info"
    members = sorted(f for top, path in sources.items() for f in _source_files(top, Path(path)))
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {dist_name}",
        f"Version: {version}",
        f"Summary: {summary}",
        *(f"Requires-Dist: {r}" for r in requires),
    ]
    meta = [
        (f"{dist_info}/METADATA", "".join(f"{line}\n" for line in metadata).encode()),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: wasmgate\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ]
    if entry_points:
        lines = "".join(f"{n} = {v}\n" for n, v in sorted(entry_points.items()))
        meta.append((f"{dist_info}/entry_points.txt", f"[{GROUP}]\n{lines}".encode()))
    members += sorted(meta)
    members.append((f"{dist_info}/RECORD", record_bytes(members, f"{dist_info}/RECORD")))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{stem}-py3-none-any.whl"
    write_atomically(out, _zip(members))
    return out


def _source_files(top: str, path: Path) -> list[tuple[str, bytes]]:
    if not top.isidentifier():
        raise WheelError(f"{path}: {top!r} is not a Python module name")
    try:
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*.py")
                if p.is_file() and "__pycache__" not in p.relative_to(path).parts
            )
            if not files:
                raise WheelError(f"{path}: no .py files for package {top!r}")
            return [(f"{top}/{p.relative_to(path).as_posix()}", p.read_bytes()) for p in files]
        if path.suffix == ".py" and path.is_file():
            return [(f"{top}.py", path.read_bytes())]
    except OSError as exc:
        raise WheelError(f"{path}: cannot read: {exc}") from None
    raise WheelError(f"{path}: not a directory or a .py file (for module {top!r})")


def _zip(members: Iterable[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so external_attr's high bits are a mode
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, content, compresslevel=9)
    return buf.getvalue()
