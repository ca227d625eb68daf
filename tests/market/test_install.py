"""Installing from a registry (market/installer.py, market/source.py, the CLI) and
running a gateway on what was installed.

The end-to-end test publishes to ``wasmgate market serve`` on 127.0.0.1, searches,
installs with the CLI, and serves real HTTP through ``wasmgate run`` with
``plugin = "NAME"`` for both kinds. The others drive :class:`Installer` in process
against registry folders and HTTP registries, and tamper with what a registry serves
or what is on disk, checking each time that the previous state is untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import ConfigError
from core.gateway import Snapshot
from market.errors import InstallError, MarketError, RegistryError
from market.index import RegistryDir
from market.installer import Installer, Workspace
from market.lockfile import read_lock
from market.package import MANIFEST, SIGNATURE
from plugin_sdk.testing import GatewayProcess, RecordingUpstream, free_port
from tests.market.kit import (
    Publisher,
    make_publisher,
    make_python_package,
    make_wasm_package,
    members_of,
    served_registry,
    tar_bytes,
    trust,
    wasmgate,
)


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    return make_publisher(tmp_path / "keys")


@pytest.fixture
def registry(tmp_path: Path, publisher: Publisher) -> RegistryDir:
    reg = RegistryDir(tmp_path / "registry")
    reg.add_publisher(publisher.public_path)
    return reg


@pytest.fixture
def home(tmp_path: Path, publisher: Publisher, registry: RegistryDir) -> Path:
    """WASMGATE_HOME whose trust store holds the publisher and the registry's key."""
    home = tmp_path / "home"
    trust(home / "trust", publisher, registry.root)
    return home


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    """The gateway's folder (gateway.toml, gateway.lock, wasmgate_plugins/)."""
    folder = tmp_path / "site"
    folder.mkdir()
    return folder


@pytest.fixture(autouse=True)
def _forget_test_modules() -> Iterator[None]:
    before = set(sys.modules)
    path = list(sys.path)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("wgtest_"):
            del sys.modules[name]
    sys.path[:] = path


def installer(site_dir: Path, home: Path, registry: str | Path) -> Installer:
    ws = Workspace.load(None, home, registry=str(registry))
    ws = Workspace(
        lockfile=site_dir / "gateway.lock",
        plugin_dir=site_dir / "wasmgate_plugins",
        trust_dir=ws.trust_dir,
        registry=ws.registry,
        home=home,
    )
    return Installer(ws, say=lambda line: None)


def state(site_dir: Path) -> tuple[bytes | None, list[str]]:
    """The lockfile's bytes and the plugin folder's entries: what must not change."""
    lock = site_dir / "gateway.lock"
    plugins = site_dir / "wasmgate_plugins"
    entries = sorted(p.name for p in plugins.iterdir()) if plugins.is_dir() else []
    return (lock.read_bytes() if lock.exists() else None), [e for e in entries if e != ".lock"]


GATEWAY = """
[[upstreams]]
name = "up"
endpoints = [{{ address = "127.0.0.1:{up}" }}]

[filters.abi]
plugin = "tagger"

[[routes]]
name = "all"
upstream = "up"
filters = ["abi", "py-tag"]

[server]
listen = ["127.0.0.1:{port}"]
"""


# ---------------------------------------------------------------- end to end


async def test_publish_search_install_and_serve_through_a_real_http_registry(
    tmp_path: Path, publisher: Publisher, registry: RegistryDir, home: Path, site_dir: Path
) -> None:
    wasm_pkg = make_wasm_package(tmp_path, publisher, "tagger", "1.0.0")
    py_pkg = make_python_package(tmp_path, publisher, "py-tag", "2.0.0")
    upstream = RecordingUpstream()
    await upstream.start()
    try:
        with served_registry(registry.root, token="tok") as url:
            for pkg in (wasm_pkg, py_pkg):
                done = wasmgate(
                    "plugin", "publish", pkg, "--registry", url, "--token", "tok",
                    cwd=site_dir, home=home,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
            found = wasmgate("plugin", "search", "--registry", url, cwd=site_dir, home=home)
            assert [line.split()[0] for line in found.stdout.splitlines()] == ["py-tag", "tagger"]
            port = free_port()
            toml = GATEWAY.format(up=upstream.port, port=port)
            (site_dir / "gateway.toml").write_text(f'[market]\nregistry = "{url}"\n' + toml)
            got = wasmgate("plugin", "install", "tagger@^1", "py-tag", cwd=site_dir, home=home)
            assert got.returncode == 0, got.stderr
            assert "+ tagger 1.0.0" in got.stdout and "+ py-tag 2.0.0" in got.stdout
            assert "downloaded tagger 1.0.0" in got.stderr  # progress (not a terminal)
        lock = json.loads((site_dir / "gateway.lock").read_text())
        tagger = lock["plugins"]["tagger"]
        assert tagger["version"] == "1.0.0" and tagger["constraint"] == "^1"
        assert tagger["signer"] == publisher.key_id
        assert tagger["archive_sha256"] == hashlib.sha256(wasm_pkg.read_bytes()).hexdigest()
        assert lock["plugins"]["py-tag"]["kind"] == "python"
        listed = wasmgate("plugin", "list", cwd=site_dir, home=home)
        assert "tagger" in listed.stdout and "py-tag" in listed.stdout
        assert "locked  1.0.0" in listed.stdout
        # The registry is gone: the gateway starts from what the lockfile pins.
        gw = GatewayProcess((site_dir / "gateway.toml").read_text(), workdir=str(site_dir))
        gw.start(port, env={"WASMGATE_HOME": str(home)})
        try:
            import aiohttp

            async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/hello") as resp:
                assert resp.status == 200
        finally:
            assert gw.terminate() == 0, gw.log()
        seen = upstream.requests[-1].headers
        assert seen.get("x-abi") == "0.2.1"  # the wasm package's filter ran
        assert seen.get("x-market-python") == "2.0.0"  # and the python package's
    finally:
        await upstream.stop()
    # The python package never touched the environment.
    assert (
        subprocess.run(
            [sys.executable, "-c", "import wgtest_py_tag"], capture_output=True
        ).returncode
        != 0
    )


# ---------------------------------------------------------------- resolution, lockfile


def publish_versions(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, *versions: str
) -> None:
    for version in versions:
        registry.publish(make_wasm_package(tmp_path / version, publisher, "tagger", version))


def test_install_resolves_constraints_and_update_respects_them(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0", "1.1.0", "1.2.0rc1", "2.0.0")
    inst = installer(site_dir, home, registry.root)
    (change,) = inst.install(["tagger@^1"])
    assert (change.new, read_lock(inst.ws.lockfile).plugins["tagger"].constraint) == ("1.1.0", "^1")
    # Installing again keeps the locked version: moving is what update is for.
    publish_versions(tmp_path, registry, publisher, "1.1.1")
    inst = installer(site_dir, home, registry.root)
    assert inst.install(["tagger"])[0].note == "already locked"
    assert read_lock(inst.ws.lockfile).plugins["tagger"].version == "1.1.0"
    inst = installer(site_dir, home, registry.root)
    (change,) = inst.update([])
    assert (change.old, change.new) == ("1.1.0", "1.1.1")  # not 2.0.0, not 1.2.0rc1
    inst = installer(site_dir, home, registry.root)
    assert inst.update([], pre=True)[0].new == "1.2.0rc1"
    assert state(site_dir)[1] == ["tagger-1.2.0rc1"]  # old versions' folders are gone
    inst = installer(site_dir, home, registry.root)
    assert inst.install(["tagger@^2"])[0].new == "2.0.0"
    assert read_lock(inst.ws.lockfile).plugins["tagger"].constraint == "^2"


def test_the_lockfile_makes_installs_reproducible(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0")
    installer(site_dir, home, registry.root).install(["tagger"])
    publish_versions(tmp_path, registry, publisher, "1.5.0")
    # A second machine with only gateway.lock gets exactly what it pins.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(site_dir / "gateway.lock", other / "gateway.lock")
    changes = installer(other, tmp_path / "home2-never-used", registry.root)
    shutil.copytree(home / "trust", changes.ws.trust_dir)
    assert [str(c) for c in changes.install([])] == ["= tagger 1.0.0  (as locked)"]
    assert (other / "gateway.lock").read_bytes() == (site_dir / "gateway.lock").read_bytes()
    a = site_dir / "wasmgate_plugins" / "tagger-1.0.0"
    b = other / "wasmgate_plugins" / "tagger-1.0.0"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for f in a.iterdir():
        assert f.read_bytes() == (b / f.name).read_bytes()


def test_a_pinned_version_whose_archive_changed_in_the_registry_is_refused(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0")
    installer(site_dir, home, registry.root).install(["tagger"])
    # The registry's operator swaps 1.0.0 for other (validly signed) content.
    index = json.loads(registry.index_path.read_text())
    del index["packages"]["tagger"]
    registry.index_path.write_text(json.dumps(index))
    registry.init()  # re-signed: the registry itself lists it
    registry.publish(
        make_wasm_package(tmp_path / "x", publisher, "tagger", "1.0.0", description="y")
    )
    shutil.rmtree(site_dir / "wasmgate_plugins")
    before = state(site_dir)
    with pytest.raises(InstallError, match="changed after it was locked"):
        installer(site_dir, home, registry.root).install([])
    assert state(site_dir) == before


# ---------------------------------------------------------------- tampering


def _rewrite(archive: Path, change: str, other: Publisher) -> None:
    members = dict(members_of(archive))
    if change == "payload":
        data = bytearray(members["filter.wasm"])
        data[len(data) // 2] ^= 0x01
        members["filter.wasm"] = bytes(data)
    elif change == "manifest":
        members[MANIFEST] = members[MANIFEST].replace(b"adds x-abi", b"adds x-abj")
    elif change == "signer":
        from market.signing import sign

        members[SIGNATURE] = sign(members[MANIFEST], other.key).to_bytes()
    archive.write_bytes(tar_bytes(list(members.items())))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("payload", "payload 'filter.wasm' has sha256 .* the payload was altered"),
        ("manifest", "does not match manifest.json: the manifest or its signature was altered"),
        ("signer", "signed by key [0-9a-f]{16}, which your trust store .* does not hold; refused"),
    ],
)
def test_a_tampered_package_is_refused_and_nothing_changes(
    tmp_path: Path,
    registry: RegistryDir,
    publisher: Publisher,
    home: Path,
    site_dir: Path,
    change: str,
    message: str,
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0")
    installer(site_dir, home, registry.root).install(["tagger"])
    archive = make_wasm_package(tmp_path / "new", publisher, "tagger", "1.1.0")
    _rewrite(archive, change, make_publisher(tmp_path / "mallory"))
    # Listed honestly in the index (so only the package's own checks can catch it).
    reg_archive = registry.root / "packages" / "tagger" / "tagger-1.1.0.wgpkg"
    reg_archive.write_bytes(archive.read_bytes())
    index = json.loads(registry.index_path.read_text())
    entry = json.loads(json.dumps(index["packages"]["tagger"]["1.0.0"]))
    entry["archive"] = "packages/tagger/tagger-1.1.0.wgpkg"
    entry["size"] = reg_archive.stat().st_size
    entry["sha256"] = hashlib.sha256(reg_archive.read_bytes()).hexdigest()
    entry["manifest"]["version"] = "1.1.0"
    index["packages"]["tagger"]["1.1.0"] = entry
    registry.index_path.write_text(json.dumps(index))
    registry.init()  # re-signed: the registry itself lists it
    before = state(site_dir)
    with pytest.raises(InstallError, match=message):
        installer(site_dir, home, registry.root).update([])
    assert state(site_dir) == before


@pytest.mark.parametrize(
    ("swap", "message"),
    [
        ("other-archive", "announces .* bytes, but its index gives .* before downloading"),
        ("flipped-byte", "the archive's sha256 is .* serves another archive than it lists"),
        ("truncated", "announces .* bytes, but its index gives .* before downloading"),
    ],
)
def test_a_registry_serving_another_archive_than_its_index_lists_is_refused(
    tmp_path: Path,
    registry: RegistryDir,
    publisher: Publisher,
    home: Path,
    site_dir: Path,
    swap: str,
    message: str,
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0", "2.0.0")
    pkgs = registry.root / "packages" / "tagger"
    served = pkgs / "tagger-2.0.0.wgpkg"
    if swap == "other-archive":  # validly signed, but not what the index lists
        served.write_bytes(tar_bytes(members_of(pkgs / "tagger-1.0.0.wgpkg")) + b"\0" * 4096)
    elif swap == "flipped-byte":
        data = bytearray(served.read_bytes())
        data[100] ^= 0xFF
        served.write_bytes(bytes(data))
    else:
        served.write_bytes(served.read_bytes()[:-10])
    with served_registry(registry.root) as url, pytest.raises(RegistryError, match=message):
        installer(site_dir, home, url).install(["tagger"])
    assert state(site_dir) == (None, [])
    assert not list((home / "cache" / "archives").glob("*"))


@pytest.mark.parametrize("evil", ["dotdot", "symlink"])
def test_an_archive_with_a_dotdot_path_or_a_symlink_is_refused(
    tmp_path: Path,
    registry: RegistryDir,
    publisher: Publisher,
    home: Path,
    site_dir: Path,
    evil: str,
) -> None:
    good = make_wasm_package(tmp_path, publisher, "tagger", "1.0.0")
    members: list[tarfile.TarInfo | tuple[str, bytes]] = list(members_of(good))
    if evil == "dotdot":
        members.append(("../../evil.txt", b"owned"))
    else:
        link = tarfile.TarInfo("README.md")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        members = [m for m in members if not (isinstance(m, tuple) and m[0] == "README.md")]
        members.append(link)
    bad = tmp_path / "bad.wgpkg"
    bad.write_bytes(tar_bytes(members))
    with pytest.raises(MarketError, match=r"\.\.|symbolic link"):
        registry.publish(bad)
    # Served anyway by a hostile registry: the client refuses it the same way.
    registry.publish(good)
    shutil.copy(bad, registry.root / "packages" / "tagger" / "tagger-1.0.0.wgpkg")
    index = json.loads(registry.index_path.read_text())
    entry = index["packages"]["tagger"]["1.0.0"]
    entry["sha256"] = hashlib.sha256(bad.read_bytes()).hexdigest()
    entry["size"] = bad.stat().st_size
    registry.index_path.write_text(json.dumps(index))
    registry.init()  # re-signed: the registry itself lists it
    with pytest.raises(InstallError, match=r"\.\.|symbolic link"):
        installer(site_dir, home, registry.root).install(["tagger"])
    assert state(site_dir) == (None, [])
    assert not (tmp_path / "evil.txt").exists()


# ---------------------------------------------------------------- failures, interruptions


class _Trickle(BaseHTTPRequestHandler):
    """A registry that serves its index, then sends archives very slowly."""

    root: Path

    def do_GET(self) -> None:
        path = self.root / self.path.lstrip("/")
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if path.suffix != ".wgpkg":
            self.wfile.write(data)
            return
        for i in range(0, len(data), 512):
            self.wfile.write(data[i : i + 512])
            self.wfile.flush()
            time.sleep(0.2)

    def log_message(self, *args: object) -> None:
        pass


def test_an_install_killed_mid_download_leaves_the_previous_state(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0")
    installer(site_dir, home, registry.root).install(["tagger"])
    publish_versions(tmp_path, registry, publisher, "1.1.0")
    before = state(site_dir)
    handler = type("H", (_Trickle,), {"root": registry.root})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    (site_dir / "gateway.toml").write_text(f'[market]\nregistry = "{url}"\n')
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "plugin", "update"],
            cwd=site_dir,
            env={**os.environ, "WASMGATE_HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        downloads = home / "cache" / "archives"
        while not list(downloads.glob(".download.*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(downloads.glob(".download.*")), "the download never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        server.shutdown()
    assert state(site_dir) == before
    assert read_lock(site_dir / "gateway.lock").plugins["tagger"].version == "1.0.0"
    # The next run cleans up and completes.
    installer(site_dir, home, registry.root).update([])
    assert state(site_dir)[1] == ["tagger-1.1.0"]


def test_a_python_package_with_unmet_requirements_fails_after_download_and_changes_nothing(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0")
    installer(site_dir, home, registry.root).install(["tagger"])
    registry.publish(
        make_python_package(
            tmp_path, publisher, "py-needy", "1.0.0", requires=["no-such-dist-xyz>=1"]
        )
    )
    before = state(site_dir)
    with pytest.raises(InstallError, match=r"lacks: no-such-dist-xyz>=1 \(not installed\)"):
        installer(site_dir, home, registry.root).install(["tagger", "py-needy"])
    assert state(site_dir) == before


def test_two_installs_at_once_serialize_and_both_land(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    registry.publish(make_wasm_package(tmp_path / "a", publisher, "tagger", "1.0.0"))
    registry.publish(make_wasm_package(tmp_path / "b", publisher, "other", "1.0.0"))
    env = {**os.environ, "WASMGATE_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "core.cli",
                "plugin",
                "install",
                name,
                "--registry",
                str(registry.root),
            ],
            cwd=site_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("tagger", "other")
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert sorted(read_lock(site_dir / "gateway.lock").plugins) == ["other", "tagger"]
    assert state(site_dir)[1] == ["other-1.0.0", "tagger-1.0.0"]


def test_the_registry_being_down_is_a_clear_error_and_installed_plugins_keep_working(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0")
    installer(site_dir, home, registry.root).install(["tagger"])
    dead = f"http://127.0.0.1:{free_port()}"
    (site_dir / "gateway.toml").write_text(
        f'[market]\nregistry = "{dead}"\n'
        + GATEWAY.format(up=1, port=free_port()).replace(', "py-tag"', "")
    )
    before = state(site_dir)
    got = wasmgate("plugin", "install", "other", cwd=site_dir, home=home)
    assert got.returncode == 1
    assert f"registry {dead} is unreachable" in got.stderr
    assert state(site_dir) == before
    checked = wasmgate("check", "-c", "gateway.toml", cwd=site_dir, home=home)
    assert checked.returncode == 0, checked.stderr


def test_the_gateway_refuses_an_installed_plugin_altered_on_disk(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0")
    registry.publish(make_python_package(tmp_path, publisher, "py-tag", "2.0.0"))
    installer(site_dir, home, registry.root).install(["tagger", "py-tag"])
    config = site_dir / "gateway.toml"
    config.write_text(GATEWAY.format(up=1, port=free_port()))
    Snapshot(load_config(config), str(config)).close()  # verifies and loads both
    plugins = site_dir / "wasmgate_plugins"
    module = plugins / "py-tag-2.0.0" / "site" / "wgtest_py_tag" / "__init__.py"
    module.write_text(module.read_text().replace('"2.0.0"', '"6.6.6"'))
    with open(plugins / "tagger-1.0.0" / "filter.wasm", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ConfigError) as err:
        Snapshot(load_config(config), str(config))
    text = str(err.value)
    assert "filters.abi: filter 'abi': plugin 'tagger' 1.0.0 (pinned in" in text
    assert "the installed plugin was altered" in text
    assert "wgtest_py_tag/__init__.py is not what the wheel installed" in text
    # `plugin install` with no names repairs it from the registry (digests pinned).
    installer(site_dir, home, registry.root).install([])
    Snapshot(load_config(config), str(config)).close()


def test_a_missing_installed_plugin_says_how_to_install_it(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0")
    installer(site_dir, home, registry.root).install(["tagger"])
    shutil.rmtree(site_dir / "wasmgate_plugins")
    config = site_dir / "gateway.toml"
    config.write_text(GATEWAY.format(up=1, port=free_port()).replace(', "py-tag"', ""))
    with pytest.raises(ConfigError, match=r"is not installed: .* run `wasmgate plugin install`"):
        Snapshot(load_config(config), str(config))


def test_an_unknown_plugin_name_hints_at_the_registry(site_dir: Path) -> None:
    config = site_dir / "gateway.toml"
    config.write_text(GATEWAY.format(up=1, port=free_port()).replace("tagger", "zz-unheard-of"))
    with pytest.raises(ConfigError, match=r"unknown plugin 'zz-unheard-of' \(a registry plugin\? "):
        Snapshot(load_config(config), str(config))


def test_remove_unpins_and_deletes(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    publish_versions(tmp_path, registry, publisher, "1.0.0")
    inst = installer(site_dir, home, registry.root)
    inst.install(["tagger"])
    assert [str(c) for c in inst.remove(["tagger"])] == ["- tagger 1.0.0"]
    assert state(site_dir) == (b'{\n "lock_version": 1,\n "plugins": {}\n}\n', [])
    with pytest.raises(InstallError, match="not installed: tagger"):
        inst.remove(["tagger"])


def test_compiled_caches_in_a_python_plugin_are_removed_before_it_loads(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, home: Path, site_dir: Path
) -> None:
    # A .pyc is not in the wheel's RECORD, and Python would run a crafted one instead
    # of the verified source; the gateway deletes them so only checked code runs.
    registry.publish(make_python_package(tmp_path, publisher, "py-tag", "2.0.0"))
    installer(site_dir, home, registry.root).install(["py-tag"])
    package = site_dir / "wasmgate_plugins" / "py-tag-2.0.0" / "site" / "wgtest_py_tag"
    cache = package / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "__init__.cpython-311.pyc").write_bytes(b"crafted")
    config = site_dir / "gateway.toml"
    config.write_text(
        GATEWAY.format(up=1, port=free_port()).replace('plugin = "tagger"', 'plugin = "py-tag"')
    )
    Snapshot(load_config(config), str(config)).close()
    assert not (cache / "__init__.cpython-311.pyc").exists()
