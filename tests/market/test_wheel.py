"""Python plugins as wheels (market/wheel.py): build one from a real plugin module,
check it, install it into a private site and load its filter; and every way a wheel
is refused. Hostile wheels are written here with :mod:`zipfile` directly, with RECORD
recomputed where an attacker could recompute it, so the check under test is the one
that fires. Each test's plugin has a top-level module name of its own.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import stat
import struct
import sys
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from market.archive import write_archive
from market.errors import WheelError
from market.manifest import validate_manifest
from market.package import MANIFEST, SIGNATURE, pack, read_package
from market.signing import TrustStore, keygen, load_private_key, sign
from market.wheel import (
    WheelInfo,
    conflicting_modules,
    inspect_wheel,
    install_wheel,
    load_plugin,
    record_hash,
    unmet_requirements,
)
from market.wheel_build import build_wheel
from plugin_sdk import Filter
from plugin_sdk.testing import make_request, run_filter

MiB = 1024 * 1024
PREFIX = "wgptest_"

FILTER_SOURCE = '''\
from plugin_sdk import Context, Filter, PluginConfig
from pydantic import Field


class TagConfig(PluginConfig):
    value: str = Field("on", description="Value of the x-tag request header.")


class Tag(Filter[TagConfig]):
    """Sets x-tag on the request."""

    Config = TagConfig

    def on_request(self, ctx: Context) -> None:
        ctx.request.headers.set("x-tag", self.config.value)
'''


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def restore_imports() -> Iterator[None]:
    """Undo what loading a plugin did: sys.path entries and the test's own modules."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in [n for n in sys.modules if n.startswith(PREFIX)]:
        del sys.modules[name]
    importlib.invalidate_caches()


@dataclass
class Plugin:
    """A plugin package ``module/`` (``__init__.py``, ``filter.py``) under ``root``."""

    root: Path
    module: str

    @property
    def package(self) -> Path:
        return self.root / self.module

    @property
    def entry(self) -> str:
        return f"{self.module}.filter:Tag"

    def build(
        self,
        out: Path,
        *,
        entry_points: dict[str, str] | None = None,
        requires: Sequence[str] = (),
        summary: str = "",
    ) -> Path:
        return build_wheel(
            "wgp-tag",
            "1.0.0",
            {self.module: self.package},
            out,
            entry_points={"tag": self.entry} if entry_points is None else entry_points,
            requires=requires,
            summary=summary,
        )


def write_plugin(root: Path, module: str, source: str = FILTER_SOURCE) -> Plugin:
    package = root / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A wheel-packaged plugin."""\n')
    (package / "filter.py").write_text(source)
    return Plugin(root, module)


@pytest.fixture
def plugin(tmp_path: Path) -> Plugin:
    return write_plugin(tmp_path / "src", f"{PREFIX}{uuid.uuid4().hex[:10]}")


@pytest.fixture
def wheel(tmp_path: Path, plugin: Plugin) -> Path:
    return plugin.build(tmp_path / "dist")


# ---------------------------------------------------------------------- hostile zips

Member = tuple[zipfile.ZipInfo, bytes]


def members_of(data: bytes) -> list[Member]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def entry(name: str, data: bytes = b"", mode: int = stat.S_IFREG | 0o644) -> Member:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info, data


def zip_of(members: list[Member], *, rerecord: bool = True) -> bytes:
    """A zip of ``members``; with ``rerecord``, RECORD lists them all, as a forger would."""
    if rerecord:
        record = next(i.filename for i, _ in members if i.filename.endswith(".dist-info/RECORD"))
        lines = [
            f"{info.filename},{record_hash(data)},{len(data)}\n"
            for info, data in members
            if info.filename != record and not info.is_dir()
        ]
        members = [
            (i, "".join(lines).encode() + f"{record},,\n".encode() if i.filename == record else d)
            for i, d in members
        ]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w") as zf:
            for info, data in members:
                zf.writestr(info, data)
    return buf.getvalue()


def replace(members: list[Member], suffix: str, change: Callable[[bytes], bytes]) -> list[Member]:
    return [(i, change(d) if i.filename.endswith(suffix) else d) for i, d in members]


def without(members: list[Member], suffix: str) -> list[Member]:
    return [(i, d) for i, d in members if not i.filename.endswith(suffix)]


def understate(data: bytes, name: str, size: int = 10) -> bytes:
    """``data`` with ``name``'s uncompressed size forged to ``size`` in both of its headers."""
    out = bytearray(data)
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = out.find(signature)
        while out[at + name_at : at + name_at + len(name)] != name.encode():
            at = out.find(signature, at + 1)
        struct.pack_into("<I", out, at + size_at, size)
    return bytes(out)


DIST_INFO = "wgp_tag-1.0.0.dist-info"

Tamper = Callable[[list[Member]], bytes]

TAMPERING: list[object] = [
    pytest.param(
        lambda m: zip_of(replace(m, "filter.py", lambda d: d + b"\nimport os\n"), rerecord=False),
        r"member '\w+/filter\.py' has sha256=\S+, but wgp_tag-1\.0\.0\.dist-info/RECORD says "
        r"sha256=\S+: the wheel was altered",
        id="content-differs-from-record",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("extra.py", b"x = 1\n")], rerecord=False),
        r"member 'extra\.py' is not listed in wgp_tag-1\.0\.0\.dist-info/RECORD",
        id="file-missing-from-record",
    ),
    pytest.param(
        lambda m: zip_of(without(m, "__init__.py"), rerecord=False),
        r"RECORD lists '\w+/__init__\.py', which the wheel does not hold",
        id="record-lists-a-missing-file",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("../evil.py", b"x")]),
        r"member '\.\./evil\.py' is a path with '\.\.' that leaves the wheel",
        id="dotdot",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("pkg/../../evil.py", b"x")]),
        r"'\.\.' that leaves the wheel",
        id="dotdot-nested",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("/etc/cron.d/evil", b"x")]),
        r"member '/etc/cron\.d/evil' is an absolute path",
        id="absolute",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("C:/evil.py", b"x")]),
        r"member 'C:/evil\.py' is an absolute path",
        id="drive-letter",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("pkg\\evil.py", b"x")]),
        r"is a name with a backslash",
        id="backslash",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("link.py", b"/etc/passwd", stat.S_IFLNK | 0o777)]),
        r"member 'link\.py' is a symbolic link",
        id="symlink",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("fifo", b"", stat.S_IFIFO | 0o644)]),
        r"member 'fifo' is not a regular file",
        id="fifo",
    ),
    pytest.param(
        lambda m: zip_of([*m, m[0]]),
        r"member '\w+/__init__\.py' appears twice",
        id="duplicate",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("pkg", b"x"), entry("pkg/mod.py", b"x")]),
        r"'pkg' is both a file and a directory",
        id="file-and-directory",
    ),
    pytest.param(
        lambda m: zip_of(
            replace(
                m, "WHEEL", lambda d: d.replace(b"Root-Is-Purelib: true", b"Root-Is-Purelib: false")
            )
        ),
        r"WHEEL: Root-Is-Purelib is false: only pure-Python wheels can be plugins",
        id="platform-wheel",
    ),
    pytest.param(
        lambda m: zip_of(
            replace(m, "WHEEL", lambda d: d.replace(b"py3-none-any", b"cp311-cp311-linux_x86_64"))
        ),
        r"Tag 'cp311-cp311-linux_x86_64' is platform-specific",
        id="platform-tag",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("fast.cpython-311-x86_64-linux-gnu.so", b"\x7fELF")]),
        r"is a compiled library; only pure-Python wheels can be plugins",
        id="compiled-extension",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("wgp_tag-1.0.0.data/scripts/wgp-tag", b"#!/bin/sh\n")]),
        r"'wgp_tag-1\.0\.0\.data/scripts/wgp-tag': scripts would be installed into the "
        r"environment's bin directory; a plugin wheel may hold only purelib",
        id="data-scripts",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("wgp_tag-1.0.0.data/platlib/x.py", b"x")]),
        r"platlib holds platform-specific code",
        id="data-platlib",
    ),
    pytest.param(
        lambda m: zip_of([*m, entry("wgp_tag-1.0.0.data/data/etc/x.conf", b"x")]),
        r"data files would be installed into the environment's prefix",
        id="data-data",
    ),
    pytest.param(
        lambda m: zip_of(without(m, "METADATA")),
        r"not a wheel: wgp_tag-1\.0\.0\.dist-info/METADATA is missing",
        id="no-metadata",
    ),
    pytest.param(
        lambda m: zip_of(
            [
                *m,
                entry("other-2.0.dist-info/METADATA", b"Name: other\nVersion: 2.0\n"),
            ]
        ),
        r"several \.dist-info directories",
        id="two-dist-infos",
    ),
    pytest.param(
        lambda m: zip_of(
            replace(m, "entry_points.txt", lambda d: d.replace(b":Tag", b":Tag extra junk"))
        ),
        r"entry_points\.txt: \[wasmgate\.plugins\] tag = '\S+:Tag extra junk': want module:attr",
        id="bad-entry-point",
    ),
    pytest.param(
        lambda m: understate(zip_of([*m, entry("bomb.txt", b"\0" * MiB)]), "bomb.txt"),
        r"member 'bomb\.txt' cannot be read: Bad CRC-32",
        id="size-understated",
    ),
    pytest.param(
        lambda m: b"PK\x03\x04 this is no zip" * 10,
        r"not a wheel: not a valid zip archive",
        id="not-a-zip",
    ),
]


@pytest.mark.parametrize(("tamper", "message"), TAMPERING)
def test_a_tampered_or_unsafe_wheel_is_refused(
    tmp_path: Path, wheel: Path, tamper: Tamper, message: str
) -> None:
    members = members_of(wheel.read_bytes())
    # The untouched members, written the same way, are accepted: only `tamper` differs.
    assert inspect_wheel(zip_of(members), "control.whl").dist_name == "wgp-tag"
    bad = tamper(members)
    with pytest.raises(WheelError, match=message) as info:
        inspect_wheel(bad, "evil.whl")
    assert str(info.value).startswith("evil.whl: ")
    site = tmp_path / "site"
    with pytest.raises(WheelError, match=message):
        install_wheel(bad, site, "evil.whl")
    assert not site.exists()


@pytest.mark.parametrize(
    ("make", "limits", "message"),
    [
        pytest.param(
            lambda m: zip_of([*m, entry("bomb.txt", b"\0" * (2 * MiB))]),
            {"max_total": MiB},
            r"members uncompress to \d+ bytes, over the 1048576-byte bound",
            id="zip-bomb",
        ),
        pytest.param(
            lambda m: zip_of([*m, *(entry(f"f{i}.txt", b"") for i in range(20))]),
            {"max_files": 10},
            r"\d+ members, over the bound of 10",
            id="too-many-files",
        ),
    ],
)
def test_a_wheel_over_its_bounds_is_refused_before_it_is_read(
    wheel: Path, make: Tamper, limits: dict[str, int], message: str
) -> None:
    data = make(members_of(wheel.read_bytes()))
    assert len(data) < MiB / 10  # small on the wire, big once inflated
    inspect_wheel(data, "big.whl")  # within the default bounds
    with pytest.raises(WheelError, match=message):
        inspect_wheel(data, "big.whl", **limits)


# ---------------------------------------------------------------------- build and inspect


def test_build_wheel_is_reproducible_and_inspect_reads_it_back(
    tmp_path: Path, plugin: Plugin
) -> None:
    first = plugin.build(tmp_path / "a", requires=["pydantic>=2"], summary="Tags requests.")
    os.utime(plugin.package / "filter.py", (1_000_000_000, 1_000_000_000))
    (plugin.package / "__pycache__").mkdir()
    (plugin.package / "__pycache__" / "filter.cpython-311.pyc").write_bytes(b"junk")
    second = plugin.build(tmp_path / "b", requires=["pydantic>=2"], summary="Tags requests.")
    assert first.name == "wgp_tag-1.0.0-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()
    assert stat.S_IMODE(first.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path / "a")) == [first.name]  # no temporary file left

    with zipfile.ZipFile(first) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == [
            f"{plugin.module}/__init__.py",
            f"{plugin.module}/filter.py",
            f"{DIST_INFO}/METADATA",
            f"{DIST_INFO}/WHEEL",
            f"{DIST_INFO}/entry_points.txt",
            f"{DIST_INFO}/RECORD",
        ]
        assert {(i.date_time, i.external_attr >> 16) for i in infos} == {
            ((1980, 1, 1, 0, 0, 0), stat.S_IFREG | 0o644)
        }
        metadata = zf.read(f"{DIST_INFO}/METADATA").decode()
    assert metadata == (
        "Metadata-Version: 2.1\nName: wgp-tag\nVersion: 1.0.0\n"
        "Summary: Tags requests.\nRequires-Dist: pydantic>=2\n"
    )

    info = inspect_wheel(first.read_bytes(), str(first))
    assert info == WheelInfo(
        filename="wgp_tag-1.0.0-py3-none-any.whl",
        dist_name="wgp-tag",
        version="1.0.0",
        top_level=(plugin.module,),
        entry_points={"tag": plugin.entry},
        requires=("pydantic>=2",),
    )
    assert hash(info) == hash(inspect_wheel(second.read_bytes(), str(second)))
    # Without a wheel file name in `source`, the name is built from METADATA and WHEEL.
    assert inspect_wheel(first.read_bytes(), "payload").filename == first.name


def test_a_file_name_that_disagrees_with_metadata_is_refused(wheel: Path) -> None:
    with pytest.raises(WheelError, match=r"the file name says other 2\.0, but METADATA says"):
        inspect_wheel(wheel.read_bytes(), "pkg.wgpkg: other-2.0-py3-none-any.whl")


def test_top_level_names_cover_packages_and_single_modules(tmp_path: Path, plugin: Plugin) -> None:
    (tmp_path / "helper.py").write_text("X = 1\n")
    path = build_wheel(
        "wgp-multi",
        "0.1.0",
        {plugin.module: plugin.package, f"{plugin.module}_helper": tmp_path / "helper.py"},
        tmp_path / "dist",
    )
    info = inspect_wheel(path.read_bytes(), str(path))
    assert info.top_level == (plugin.module, f"{plugin.module}_helper")
    assert info.entry_points == {}


def test_build_wheel_refuses_bad_inputs(tmp_path: Path, plugin: Plugin) -> None:
    with pytest.raises(WheelError, match="not a distribution name"):
        build_wheel("-bad-", "1.0.0", {}, tmp_path)
    with pytest.raises(WheelError, match="is not a PEP 440 version"):
        build_wheel("ok", "one", {}, tmp_path)
    with pytest.raises(WheelError, match="'not-a-module' is not a Python module name"):
        build_wheel("ok", "1.0.0", {"not-a-module": plugin.package}, tmp_path)
    with pytest.raises(WheelError, match="want name = module:attr"):
        build_wheel("ok", "1.0.0", {}, tmp_path, entry_points={"x": "no attr"})
    assert not any(tmp_path.glob("*.whl"))


# ---------------------------------------------------------------------- install and load


def test_install_then_load_gives_the_filter_class_from_the_site(
    tmp_path: Path, plugin: Plugin, wheel: Path
) -> None:
    site = tmp_path / "plugins" / "tag" / "site"
    info = install_wheel(wheel.read_bytes(), site, str(wheel))
    assert info == inspect_wheel(wheel.read_bytes(), str(wheel))
    installed = sorted(p.relative_to(site).as_posix() for p in site.rglob("*"))
    assert installed == sorted(
        [
            plugin.module,
            f"{plugin.module}/__init__.py",
            f"{plugin.module}/filter.py",
            DIST_INFO,
            f"{DIST_INFO}/METADATA",
            f"{DIST_INFO}/RECORD",
            f"{DIST_INFO}/WHEEL",
            f"{DIST_INFO}/entry_points.txt",
        ]
    )
    for path in [site, *site.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path
    assert plugin.module not in sys.modules
    assert conflicting_modules(info, site) == []

    cls = load_plugin(site, "tag")

    assert isinstance(cls, type) and issubclass(cls, Filter)
    assert cls.__name__ == "Tag"
    module_file = sys.modules[cls.__module__].__file__
    assert module_file is not None and Path(module_file).is_relative_to(site)
    assert sys.path[-1] == str(site)  # appended: the environment keeps precedence
    result = run_filter(cls, make_request("GET", "/"), upstream="http://127.0.0.1:9")
    assert result.request.headers.get("x-tag") == "on"
    # Once loaded, the site's own modules are not conflicts, but without `site` they are.
    assert conflicting_modules(info, site) == []
    assert conflicting_modules(info) == [plugin.module]
    # Loading again reuses sys.path and the imported class.
    assert load_plugin(site, "tag") is cls
    assert sys.path.count(str(site)) == 1


def test_purelib_files_install_at_the_site_root(
    tmp_path: Path, plugin: Plugin, wheel: Path
) -> None:
    moved = [
        (entry(f"wgp_tag-1.0.0.data/purelib/{i.filename}")[0], d)
        if i.filename.startswith(plugin.module)
        else (i, d)
        for i, d in members_of(wheel.read_bytes())
    ]
    site = tmp_path / "site"
    install_wheel(zip_of(moved), site, "moved.whl")
    assert sorted(p.name for p in site.iterdir()) == [DIST_INFO, plugin.module]
    record = (site / DIST_INFO / "RECORD").read_text()
    assert f"{plugin.module}/filter.py,sha256=" in record
    assert ".data/" not in record
    assert getattr(load_plugin(site, "tag"), "__name__", None) == "Tag"


def test_install_refuses_an_existing_site_and_leaves_it_alone(tmp_path: Path, wheel: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "mine.txt").write_text("keep")
    with pytest.raises(WheelError, match=r"site already exists"):
        install_wheel(wheel.read_bytes(), site, str(wheel))
    assert os.listdir(site) == ["mine.txt"]


def test_a_failed_install_leaves_no_site(tmp_path: Path, wheel: Path) -> None:
    # A name the file system refuses (a component over NAME_MAX) fails mid-install,
    # after some files were written.
    members = [*members_of(wheel.read_bytes()), entry(f"zz/{'x' * 300}.py", b"x = 1\n")]
    site = tmp_path / "parent" / "site"
    with pytest.raises(WheelError, match=r"cannot install into .*site: .*File name too long"):
        install_wheel(zip_of(members), site, "long.whl")
    assert not site.exists()
    assert os.listdir(tmp_path / "parent") == []


def test_load_plugin_names_the_entry_points_it_has(tmp_path: Path, wheel: Path) -> None:
    site = tmp_path / "site"
    install_wheel(wheel.read_bytes(), site, str(wheel))
    with pytest.raises(
        WheelError, match=r"no wasmgate\.plugins entry point named 'nope' \(it has: tag\)"
    ):
        load_plugin(site, "nope")
    with pytest.raises(
        WheelError, match=r"no wasmgate\.plugins entry point named 'tag' \(it has: none\)"
    ):
        load_plugin(tmp_path / "empty", "tag")


def test_an_import_error_is_reported_and_the_site_left_off_sys_path(tmp_path: Path) -> None:
    broken = write_plugin(
        tmp_path / "src", f"{PREFIX}{uuid.uuid4().hex[:10]}", "raise RuntimeError('boom')\n"
    )
    path = broken.build(tmp_path / "dist")
    site = tmp_path / "site"
    install_wheel(path.read_bytes(), site, str(path))
    with pytest.raises(
        WheelError,
        match=r"entry point 'tag' \(\w+\.filter:Tag\) cannot be imported: RuntimeError: boom",
    ):
        load_plugin(site, "tag")
    assert str(site) not in sys.path


def test_load_plugin_refuses_a_module_that_another_importable_one_shadows(
    tmp_path: Path, plugin: Plugin, wheel: Path
) -> None:
    site = tmp_path / "site"
    info = install_wheel(wheel.read_bytes(), site, str(wheel))
    # Another module of the same name, earlier on sys.path, with the same class name.
    impostor = write_plugin(tmp_path / "elsewhere", plugin.module, "class Tag:\n    pass\n")
    sys.path.insert(0, str(impostor.root))
    assert conflicting_modules(info, site) == [plugin.module]
    with pytest.raises(
        WheelError,
        match=rf"module {plugin.module}\.filter resolved to .*elsewhere.* outside the plugin's "
        "site; another installed module of the same name shadows it",
    ):
        load_plugin(site, "tag")
    assert str(site) not in sys.path


# ---------------------------------------------------------------------- the environment


def test_unmet_requirements_are_the_ones_that_apply_and_fail(
    tmp_path: Path, plugin: Plugin
) -> None:
    requires = [
        "pydantic>=999",
        "no-such-dist-xyz",
        "pydantic>=2",
        "packaging",
        "no-such-dist-xyz; python_version < '3'",
        "pydantic>=999; extra == 'dev'",
        "no-such-dist-abc>=1; sys_platform != 'no-such-platform'",
    ]
    path = plugin.build(tmp_path / "dist", requires=requires)
    info = inspect_wheel(path.read_bytes(), str(path))
    assert info.requires == tuple(requires)
    assert unmet_requirements(info) == [
        f"pydantic>=999 (installed: {importlib.metadata.version('pydantic')})",
        "no-such-dist-xyz (not installed)",
        "no-such-dist-abc>=1 (not installed)",
    ]


def test_conflicting_modules_flags_the_stdlib_and_what_is_installed(
    tmp_path: Path, plugin: Plugin
) -> None:
    (tmp_path / "json.py").write_text("")
    (tmp_path / "pydantic").mkdir()
    (tmp_path / "pydantic" / "__init__.py").write_text("")
    path = build_wheel(
        "wgp-clash",
        "1.0.0",
        {
            plugin.module: plugin.package,
            "json": tmp_path / "json.py",
            "pydantic": tmp_path / "pydantic",
        },
        tmp_path / "dist",
    )
    info = inspect_wheel(path.read_bytes(), str(path))
    assert info.top_level == ("json", "pydantic", plugin.module)
    assert conflicting_modules(info) == ["json", "pydantic"]
    assert conflicting_modules(info, tmp_path / "site") == ["json", "pydantic"]


# ---------------------------------------------------------------------- python packages


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, TrustStore]:
    private, _ = keygen(tmp_path / "keys")
    return private, TrustStore.from_dir(tmp_path / "keys")


def python_source(tmp_path: Path, wheel: Path) -> Path:
    src = tmp_path / "pkg"
    src.mkdir()
    (src / wheel.name).write_bytes(wheel.read_bytes())
    manifest = {
        "name": "tag",
        "version": "1.0.0",
        "kind": "python",
        "description": "Tags requests.",
        "payload": wheel.name,
    }
    (src / "manifest.json").write_text(json.dumps(manifest))
    return src


def test_a_python_package_packs_reads_and_installs(
    tmp_path: Path, wheel: Path, keys: tuple[Path, TrustStore]
) -> None:
    private, trust = keys
    archive = pack(python_source(tmp_path, wheel), load_private_key(private), tmp_path / "t.wgpkg")
    package = read_package(archive, trust)
    assert (package.manifest.kind, package.manifest.payload) == ("python", wheel.name)
    assert package.payload == wheel.read_bytes()
    site = tmp_path / "site"
    install_wheel(package.payload, site, f"{archive}: {package.manifest.payload}")
    assert getattr(load_plugin(site, package.manifest.name), "__name__", None) == "Tag"


def test_a_python_package_without_the_plugins_entry_point_is_refused(
    tmp_path: Path, plugin: Plugin, keys: tuple[Path, TrustStore]
) -> None:
    private, trust = keys
    key = load_private_key(private)
    wheel = plugin.build(tmp_path / "dist", entry_points={"other": plugin.entry})
    src = python_source(tmp_path, wheel)
    message = r"the wheel declares no wasmgate\.plugins entry point named 'tag' \(it has: other\)"
    with pytest.raises(WheelError, match=message) as info:
        pack(src, key, tmp_path / "t.wgpkg")
    assert str(info.value).startswith(f"{src / wheel.name}: ")
    assert not (tmp_path / "t.wgpkg").exists()

    # Signed by a trusted key all the same, reading refuses it too.
    payload = wheel.read_bytes()
    obj = json.loads((src / "manifest.json").read_text())
    obj["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    manifest = validate_manifest(obj, "manifest.json").canonical_bytes()
    archive = tmp_path / "signed.wgpkg"
    archive.write_bytes(
        write_archive(
            [
                (MANIFEST, manifest),
                (SIGNATURE, sign(manifest, key).to_bytes()),
                (wheel.name, payload),
            ]
        )
    )
    with pytest.raises(WheelError, match=message) as info:
        read_package(archive, trust)
    assert str(info.value).startswith(f"{archive}: {wheel.name}: ")
