"""Python plugins: a pure-Python wheel, checked, installed into a private site, loaded.

The payload of a ``python`` package is a wheel (the PyPA binary distribution
format): a zip archive holding the plugin's modules at its root and one
``NAME-VERSION.dist-info/`` directory with

- ``METADATA``: ``Name``, ``Version`` and the ``Requires-Dist`` lines (RFC 822 style);
- ``WHEEL``: ``Root-Is-Purelib: true`` and ``Tag`` lines whose ABI is ``none`` and
  platform ``any``; anything else is a platform wheel and is refused;
- ``RECORD``: a CSV line ``path,sha256=<urlsafe base64, no padding>,size`` for every
  other member (``RECORD`` itself and ``RECORD.jws``/``RECORD.p7s`` excepted);
- ``entry_points.txt`` (optional): an INI file whose ``[wasmgate.plugins]`` section
  maps the plugin's kebab-case name to ``module:attr``.

A ``NAME-VERSION.data/`` directory may hold ``purelib/`` only (installed at the
root); scripts, headers, data and platlib would land outside the plugin's site
and are refused. :func:`inspect_wheel` checks all of this in memory, member names
and sizes before any content is read; nothing is written.

A plugin's wheel never goes into the user's environment, and its requirements are
never installed: :func:`install_wheel` extracts it into a directory of its own
(the plugin's *site*); :func:`unmet_requirements` and :func:`conflicting_modules`
tell the caller what to refuse; :func:`load_plugin` appends the site to
``sys.path`` and imports the entry point, refusing it when another module of the
same name shadows the plugin's. :mod:`market.wheel_build` writes such wheels.
"""

from __future__ import annotations

import base64
import configparser
import csv
import email.message
import email.parser
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import os
import re
import shutil
import stat
import sys
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from market.errors import WheelError

MiB = 1024 * 1024
GROUP = "wasmgate.plugins"
# RECORD cannot hash itself, and the signature files sign RECORD.
UNRECORDED = ("RECORD", "RECORD.jws", "RECORD.p7s")
COMPILED = (".so", ".pyd", ".dll", ".dylib")
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
DIST_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
ENTRY_VALUE_RE = re.compile(r"^[^\W\d]\w*(\.[^\W\d]\w*)*:[^\W\d]\w*(\.[^\W\d]\w*)*$")
DRIVE_RE = re.compile(r"^[A-Za-z]:")
DATA_DIRS = {
    "scripts": "scripts would be installed into the environment's bin directory",
    "headers": "C headers would be installed into the environment's include directory",
    "data": "data files would be installed into the environment's prefix",
    "platlib": "platlib holds platform-specific code; only pure-Python wheels can be plugins",
}


@dataclass(frozen=True)
class WheelInfo:
    """What a checked wheel holds; made by :func:`inspect_wheel`."""

    filename: str
    dist_name: str
    version: str
    #: Top-level import names (packages and single modules), sorted.
    top_level: tuple[str, ...]
    #: The ``wasmgate.plugins`` group: entry name -> ``module:attr``.
    entry_points: dict[str, str] = field(hash=False)
    #: ``Requires-Dist`` values as written.
    requires: tuple[str, ...]


@dataclass(frozen=True)
class _Wheel:
    info: WheelInfo
    dist_info: str
    #: Path relative to the site (``*.data/purelib/`` stripped) -> content.
    files: dict[str, bytes]


# ---------------------------------------------------------------------- reading


def inspect_wheel(
    data: bytes, source: str, max_total: int = 64 * MiB, max_files: int = 2000
) -> WheelInfo:
    """Check the wheel ``data`` (see the module docstring); raises :class:`WheelError`.

    Every message begins with ``source``. If ``source`` ends with a wheel file name
    (a path, or ``pkg.wgpkg: name-1.0-py3-none-any.whl``), its name and version must
    agree with METADATA and it becomes ``filename``; otherwise ``filename`` is
    built from METADATA and WHEEL.
    """
    return _read_wheel(data, source, max_total, max_files).info


def check_plugin_wheel(data: bytes, plugin: str, source: str) -> WheelInfo:
    """:func:`inspect_wheel`, and the wheel must declare the entry point ``plugin``."""
    info = inspect_wheel(data, source)
    if plugin not in info.entry_points:
        has = ", ".join(sorted(info.entry_points)) or "none"
        raise WheelError(
            f"{source}: the wheel declares no {GROUP} entry point named {plugin!r} (it has: {has})"
        )
    return info


def _read_wheel(
    data: bytes, source: str, max_total: int = 64 * MiB, max_files: int = 2000
) -> _Wheel:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise WheelError(f"{source}: not a wheel: not a valid zip archive ({exc})") from None
    with zf:
        members = _read_members(zf, source, max_total, max_files)
    dist_info = _dist_info(members, source)
    stem = dist_info.removesuffix(".dist-info")
    _check_record(members, dist_info, source)
    files = _install_paths(members, stem, source)
    metadata = _headers(members[f"{dist_info}/METADATA"], f"{source}: {dist_info}/METADATA")
    name, version, requires = _metadata(metadata, f"{source}: {dist_info}/METADATA")
    if canonicalize_name(stem.partition("-")[0]) != canonicalize_name(name):
        raise WheelError(f"{source}: {dist_info} does not belong to {name!r} (METADATA's Name)")
    wheel = _headers(members[f"{dist_info}/WHEEL"], f"{source}: {dist_info}/WHEEL")
    tags = _pure_tags(wheel, f"{source}: {dist_info}/WHEEL")
    info = WheelInfo(
        filename=_filename(source, name, version, tags),
        dist_name=name,
        version=version,
        top_level=_top_level(files, dist_info),
        entry_points=_entry_points(members.get(f"{dist_info}/entry_points.txt"), source),
        requires=requires,
    )
    return _Wheel(info, dist_info, files)


def _name_problem(name: str) -> str | None:
    """Why ``name`` may not name a member, or None."""
    if "\0" in name:
        return "a name with a NUL byte"
    if "\\" in name:
        return "a name with a backslash (zip paths use '/')"
    if name.startswith("/") or DRIVE_RE.match(name):
        return "an absolute path"
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        return "a path with '..' that leaves the wheel"
    if any(part in ("", ".") for part in parts):
        return "not a normalized relative path (an empty or '.' part)"
    return None


def _kind_problem(info: zipfile.ZipInfo) -> str | None:
    """Why ``info`` is not a plain file or directory entry, or None."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "a symbolic link"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"compressed with method {info.compress_type} (a wheel uses stored or deflate)"
    if info.is_dir():
        if kind not in (0, stat.S_IFDIR) or info.file_size:
            return "a directory entry that is not an empty directory"
        return None
    if kind == stat.S_IFDIR:
        return "marked as a directory but named as a file"
    if kind not in (0, stat.S_IFREG):
        return "not a regular file"
    return None


def _read_members(
    zf: zipfile.ZipFile, source: str, max_total: int, max_files: int
) -> dict[str, bytes]:
    """{name: content} of the files; names, kinds and bounds checked before reading."""
    infos = zf.infolist()
    if len(infos) > max_files:
        raise WheelError(f"{source}: {len(infos)} members, over the bound of {max_files}")
    declared = sum(info.file_size for info in infos)
    if declared > max_total:
        raise WheelError(
            f"{source}: members uncompress to {declared} bytes, over the {max_total}-byte "
            "bound; refused"
        )
    seen: set[str] = set()
    for info in infos:
        where = f"{source}: member {info.orig_filename!r}"
        problem = _name_problem(info.orig_filename) or _kind_problem(info)
        if problem is not None:
            raise WheelError(f"{where} is {problem}; refused")
        if info.orig_filename.removesuffix("/") in seen:
            raise WheelError(f"{where} appears twice; refused")
        seen.add(info.orig_filename.removesuffix("/"))
    files: dict[str, bytes] = {}
    total = 0
    for info in infos:
        if info.is_dir():
            continue
        where = f"{source}: member {info.orig_filename!r}"
        room = max_total - total
        try:
            with zf.open(info) as f:
                # Counted as read too: the declared sizes are the archive's word only.
                content = f.read(room + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise WheelError(f"{where} cannot be read: {exc}") from None
        if len(content) > room:
            raise WheelError(f"{where}: members uncompress to more than {max_total} bytes; refused")
        if len(content) != info.file_size:
            raise WheelError(
                f"{where} holds {len(content)} bytes, not the {info.file_size} declared"
            )
        total += len(content)
        files[info.orig_filename] = content
    _check_no_file_is_a_directory(files, seen, source)
    return files


def _check_no_file_is_a_directory(files: Iterable[str], names: set[str], source: str) -> None:
    directories = {name.rsplit("/", i)[0] for name in names for i in range(1, name.count("/") + 1)}
    for name in files:
        if name in directories:
            raise WheelError(f"{source}: {name!r} is both a file and a directory; refused")


def _dist_info(members: dict[str, bytes], source: str) -> str:
    """The wheel's one top-level ``*.dist-info`` directory, with its required files."""
    found = sorted(
        {
            n.split("/", 1)[0]
            for n in members
            if "/" in n and n.split("/", 1)[0].endswith(".dist-info")
        }
    )
    if not found:
        raise WheelError(f"{source}: not a wheel: no *.dist-info directory")
    if len(found) > 1:
        raise WheelError(f"{source}: several .dist-info directories ({', '.join(found)}); want one")
    dist_info = found[0]
    for required in ("METADATA", "WHEEL", "RECORD"):
        if f"{dist_info}/{required}" not in members:
            raise WheelError(f"{source}: not a wheel: {dist_info}/{required} is missing")
    return dist_info


def record_hash(content: bytes) -> str:
    """RECORD's hash of ``content``: ``sha256=`` and the urlsafe base64 digest, unpadded."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
    return f"sha256={digest.decode('ascii')}"


def _check_record(members: dict[str, bytes], dist_info: str, source: str) -> None:
    """Every member but RECORD and its signatures is listed with its hash and size."""
    record_name = f"{dist_info}/RECORD"
    where = f"{source}: {record_name}"
    try:
        rows = list(csv.reader(io.StringIO(members[record_name].decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise WheelError(f"{where} is not a UTF-8 CSV file ({exc})") from None
    listed: dict[str, tuple[str, str]] = {}
    for line, row in enumerate(rows, 1):
        if not row:
            continue
        if len(row) != 3:
            raise WheelError(f"{where}: line {line}: want path,hash,size, not {row!r}")
        if row[0] in listed:
            raise WheelError(f"{where}: line {line}: {row[0]!r} is listed twice")
        listed[row[0]] = (row[1], row[2])
    unrecorded = {f"{dist_info}/{name}" for name in UNRECORDED}
    for name, content in members.items():
        if name in unrecorded:
            continue
        if name not in listed:
            raise WheelError(f"{source}: member {name!r} is not listed in {record_name}; refused")
        digest, size = listed.pop(name)
        if not digest.startswith("sha256="):
            raise WheelError(f"{where}: {name!r} has hash {digest!r}; want sha256=...")
        actual = record_hash(content)
        if digest != actual:
            raise WheelError(
                f"{source}: member {name!r} has {actual}, but {record_name} says {digest}: "
                "the wheel was altered"
            )
        if size != str(len(content)):
            raise WheelError(
                f"{source}: member {name!r} is {len(content)} bytes, but {record_name} says "
                f"{size!r}: the wheel was altered"
            )
    missing = sorted(set(listed) - unrecorded)
    if missing:
        raise WheelError(f"{where} lists {missing[0]!r}, which the wheel does not hold")


def _install_paths(members: dict[str, bytes], stem: str, source: str) -> dict[str, bytes]:
    """{path in the site: content}: ``STEM.data/purelib/x`` goes to ``x``; other data refused."""
    files: dict[str, bytes] = {}
    for name, content in members.items():
        top, _, rest = name.partition("/")
        target = name
        if top.endswith(".data"):
            where = f"{source}: member {name!r}"
            if top != f"{stem}.data":
                raise WheelError(f"{where}: a .data directory not named {stem}.data; refused")
            kind, _, target = rest.partition("/")
            if kind != "purelib" or not target:
                reason = DATA_DIRS.get(kind, f"{kind!r} is not a wheel data directory")
                raise WheelError(f"{where}: {reason}; a plugin wheel may hold only purelib")
            if target.split("/", 1)[0].endswith((".dist-info", ".data")):
                raise WheelError(f"{where}: purelib may not hold a .dist-info or .data directory")
        if target.endswith(COMPILED):
            raise WheelError(
                f"{source}: member {name!r} is a compiled library; "
                "only pure-Python wheels can be plugins"
            )
        if target in files:
            raise WheelError(f"{source}: member {name!r} installs to {target!r} twice; refused")
        files[target] = content
    _check_no_file_is_a_directory(files, set(files), source)
    return files


def _headers(data: bytes, where: str) -> email.message.Message:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise WheelError(f"{where} is not UTF-8") from None
    return email.parser.Parser().parsestr(text)


def _metadata(msg: email.message.Message, where: str) -> tuple[str, str, tuple[str, ...]]:
    name, version = msg.get("Name"), msg.get("Version")
    if not name or not DIST_NAME_RE.match(name.strip()):
        raise WheelError(f"{where}: Name {name!r} is not a distribution name")
    if not version:
        raise WheelError(f"{where}: no Version")
    try:
        Version(version.strip())
    except InvalidVersion:
        raise WheelError(f"{where}: Version {version!r} is not a PEP 440 version") from None
    requires = tuple(str(r).strip() for r in msg.get_all("Requires-Dist") or ())
    for text in requires:
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise WheelError(
                f"{where}: Requires-Dist {text!r} is not a requirement ({exc})"
            ) from None
    return name.strip(), version.strip(), requires


def _pure_tags(msg: email.message.Message, where: str) -> list[str]:
    """The WHEEL's tags, after checking it is a pure-Python wheel of format 1.x."""
    wheel_version = str(msg.get("Wheel-Version") or "").strip()
    if wheel_version.split(".")[0] != "1":
        raise WheelError(f"{where}: Wheel-Version {wheel_version!r} is not supported (want 1.x)")
    purelib = str(msg.get("Root-Is-Purelib") or "").strip()
    if purelib.lower() != "true":
        raise WheelError(
            f"{where}: Root-Is-Purelib is {purelib or 'missing'}: "
            "only pure-Python wheels can be plugins"
        )
    tags = [str(t).strip() for t in msg.get_all("Tag") or ()]
    for tag in tags:
        parts = tag.split("-")
        if len(parts) != 3 or parts[1] != "none" or parts[2] != "any":
            raise WheelError(
                f"{where}: Tag {tag!r} is platform-specific: only pure-Python wheels can be plugins"
            )
    return tags


def escape(component: str) -> str:
    """A name or version as the wheel file name and ``.dist-info`` spell it."""
    return re.sub(r"[-_.]+", "_", component).lower()


def _filename(source: str, name: str, version: str, tags: list[str]) -> str:
    candidate = re.split(r"[\s/]", source)[-1]
    try:
        file_name, file_version, _, file_tags = parse_wheel_filename(candidate)
    except InvalidWheelFilename:
        pass
    else:
        if file_name != canonicalize_name(name) or file_version != Version(version):
            raise WheelError(
                f"{source}: the file name says {file_name} {file_version}, but METADATA "
                f"says {name} {version}"
            )
        if any(t.abi != "none" or t.platform != "any" for t in file_tags):
            raise WheelError(
                f"{source}: the file name's tags are platform-specific: "
                "only pure-Python wheels can be plugins"
            )
        return candidate
    columns = [sorted({t.split("-")[i] for t in tags}) for i in range(3)] if tags else []
    tag = "-".join(".".join(c) for c in columns) or "py3-none-any"
    return f"{escape(name)}-{str(Version(version)).replace('-', '_')}-{tag}.whl"


def _top_level(files: Iterable[str], dist_info: str) -> tuple[str, ...]:
    names: set[str] = set()
    for path in files:
        top, is_dir, _ = path.partition("/")
        if top == dist_info:
            continue
        stem, _, suffix = top.partition(".")
        if is_dir:
            if top.isidentifier():
                names.add(top)
        elif suffix in ("py", "pyc") and stem.isidentifier():
            names.add(stem)
    return tuple(sorted(names))


class _CaseSensitiveParser(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr


def _entry_points(data: bytes | None, source: str) -> dict[str, str]:
    """The ``wasmgate.plugins`` section of entry_points.txt (case kept, values checked)."""
    if data is None:
        return {}
    where = f"{source}: entry_points.txt"
    # No section is special: "" can never be a section header, so [DEFAULT] is just a group.
    parser = _CaseSensitiveParser(delimiters=("=",), interpolation=None, default_section="")
    try:
        parser.read_string(data.decode("utf-8"), source=where)
    except (UnicodeDecodeError, configparser.Error) as exc:
        raise WheelError(f"{where}: not a valid entry point file ({exc})") from None
    if not parser.has_section(GROUP):
        return {}
    entries = dict(parser.items(GROUP, raw=True))
    for name, value in entries.items():
        if not ENTRY_VALUE_RE.match(value):
            raise WheelError(f"{where}: [{GROUP}] {name} = {value!r}: want module:attr")
    return entries


# ---------------------------------------------------------------------- the environment


def unmet_requirements(info: WheelInfo) -> list[str]:
    """The wheel's requirements the running environment does not satisfy, one line each.

    A requirement whose marker does not apply (evaluated with ``extra=""``) is
    skipped; the others need an installed distribution whose version the specifier
    allows (pre-releases included): ``"pydantic>=3 (installed: 2.9.2)"``,
    ``"requests (not installed)"``. Extras of a requirement are not followed.
    """
    unmet: list[str] = []
    for text in info.requires:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise WheelError(f"{info.filename}: Requires-Dist {text!r}: {exc}") from None
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        shown = text.split(";", 1)[0].strip()
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            unmet.append(f"{shown} (not installed)")
            continue
        try:
            ok = req.specifier.contains(Version(installed), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            unmet.append(f"{shown} (installed: {installed})")
    return unmet


def _inside(path: str | Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root)


def conflicting_modules(info: WheelInfo, site: Path | None = None) -> list[str]:
    """Top-level names of the wheel that the standard library or something importable
    (other than ``site``) already provides: the plugin would shadow it or be shadowed.

    Nothing is imported to find out (:func:`importlib.util.find_spec` on top-level names).
    """
    root = Path(site).resolve() if site is not None else None
    importlib.invalidate_caches()
    conflicts: list[str] = []
    for name in info.top_level:
        if name in sys.stdlib_module_names or name in sys.builtin_module_names:
            conflicts.append(name)
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # in sys.modules without a __spec__
            conflicts.append(name)
            continue
        if spec is None:
            continue
        places = list(spec.submodule_search_locations or ())
        if spec.has_location and spec.origin:
            places.append(spec.origin)
        if root is None or not places or not all(_inside(p, root) for p in places):
            conflicts.append(name)
    return conflicts


# ---------------------------------------------------------------------- installing


def install_wheel(data: bytes, site: Path, source: str) -> WheelInfo:
    """Check ``data`` and extract it into the new directory ``site``; all or nothing.

    Files are written 0644 and directories 0755, ``STEM.data/purelib/x`` as ``x``,
    and RECORD is rewritten for the paths as installed (its signature files are
    dropped). On any failure ``site`` is removed and :class:`WheelError` raised.
    """
    site = Path(site)
    if site.exists() or site.is_symlink():
        raise WheelError(
            f"{source}: {site} already exists; a wheel is installed into a new directory"
        )
    wheel = _read_wheel(data, source)
    try:
        site.mkdir(parents=True)
    except OSError as exc:
        raise WheelError(f"{source}: cannot create {site}: {exc}") from None
    record_name = f"{wheel.dist_info}/RECORD"
    unrecorded = {f"{wheel.dist_info}/{name}" for name in UNRECORDED}
    files = [(p, c) for p, c in wheel.files.items() if p not in unrecorded]
    files.append((record_name, record_bytes(files, record_name)))
    try:
        os.chmod(site, 0o755)
        root = site.resolve()
        for path, content in files:
            _write_file(root, path, content)
    except BaseException as exc:
        shutil.rmtree(site, ignore_errors=True)
        if isinstance(exc, OSError | WheelError):
            raise WheelError(f"{source}: cannot install into {site}: {exc}") from exc
        raise
    return wheel.info


def _write_file(root: Path, relative: str, content: bytes) -> None:
    parts = relative.split("/")
    directory = root
    for part in parts[:-1]:
        directory = directory / part
        if not directory.exists():
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)
        elif directory.is_symlink() or not directory.is_dir():
            raise WheelError(f"{directory} is not a directory the install made")
    path = directory / parts[-1]
    if not _inside(path, root):
        raise WheelError(f"{relative!r} resolves to {path.resolve()}, outside the site")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
        os.fchmod(f.fileno(), 0o644)
        f.flush()
        os.fsync(f.fileno())


def load_plugin(site: Path, entry_name: str, group: str = GROUP) -> object:
    """Import the entry point ``entry_name`` of the wheel installed in ``site``.

    ``site`` is appended to ``sys.path`` (appended: the environment's own modules
    keep precedence), and the imported object must come from a module inside
    ``site``; if another module of the same name was found first, the plugin is
    refused rather than run with someone else's code.
    """
    site = Path(site)
    root = site.resolve()
    found = [
        ep
        for dist in importlib.metadata.distributions(path=[str(site)])
        for ep in dist.entry_points
        if ep.group == group
    ]
    matches = [ep for ep in found if ep.name == entry_name]
    if not matches:
        has = ", ".join(sorted({ep.name for ep in found})) or "none"
        raise WheelError(f"{site}: no {group} entry point named {entry_name!r} (it has: {has})")
    ep = matches[0]
    added = str(site) not in sys.path
    if added:
        sys.path.append(str(site))
    importlib.invalidate_caches()
    try:
        try:
            obj = ep.load()
        except Exception as exc:
            raise WheelError(
                f"{site}: entry point {entry_name!r} ({ep.value}) cannot be imported: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _check_from_site(site, root, ep.module, getattr(obj, "__module__", None))
    except WheelError:
        if added and str(site) in sys.path:
            sys.path.remove(str(site))
        raise
    return obj


def _check_from_site(site: Path, root: Path, entry_module: str, obj_module: str | None) -> None:
    for name in dict.fromkeys([entry_module, obj_module or entry_module]):
        file = getattr(sys.modules.get(name), "__file__", None)
        if file is not None and _inside(file, root):
            continue
        where = file or "a module without a file"
        if name == entry_module:
            raise WheelError(
                f"{site}: module {name} resolved to {where} outside the plugin's site; "
                "another installed module of the same name shadows it"
            )
        raise WheelError(
            f"{site}: the entry point's object comes from module {name} ({where}), "
            "outside the plugin's site"
        )


def record_bytes(files: Iterable[tuple[str, bytes]], record_name: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for name, content in files:
        writer.writerow([name, record_hash(content), len(content)])
    writer.writerow([record_name, "", ""])
    return out.getvalue().encode("utf-8")
