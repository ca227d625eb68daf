"""A hostile HTTP registry against the real CLI: forged, unsigned and replayed indexes,
downgrades, and archives larger than declared or than the client accepts.

The registry is an aiohttp server on 127.0.0.1 in the test's event loop that serves
whatever bytes the test puts in :attr:`HostileRegistry.files`, copied from a real
registry folder (:class:`market.index.RegistryDir`) and then tampered with. The client
is ``wasmgate plugin ...`` in a subprocess, run off the loop.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from market.index import RegistryDir
from market.lockfile import read_lock
from market.signed_index import private_key_path, registry_key, sign_index
from market.signing import add_trusted_key, keygen, load_private_key
from plugin_sdk.testing import free_port
from tests.market.kit import Publisher, make_publisher, make_wasm_package, wasmgate

MiB = 1024 * 1024


class HostileRegistry:
    """Serves ``files`` (path -> bytes, or a streaming handler) and records requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | Callable[[web.Request], object]] = {}
        self.requests: list[str] = []
        self.sent: dict[str, int] = {}
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def copy(self, root: Path) -> None:
        """Serve what the registry folder ``root`` serves, as it is now."""
        self.files.clear()
        for path in root.rglob("*"):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not rel.startswith(".") and "/." not in rel:
                self.files[rel] = path.read_bytes()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.requests.append(path)
        body = self.files.get(path)
        if body is None:
            raise web.HTTPNotFound()
        if callable(body):
            result = body(request)
            assert asyncio.iscoroutine(result)
            response: web.StreamResponse = await result
            return response
        return web.Response(body=body)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path:.+}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stream(self, path: str, head: bytes, extra: int) -> None:
        """Serve ``head`` then ``extra`` more bytes, chunked (no Content-Length)."""

        async def send(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            self.sent[path] = 0
            data = head + bytes(extra)
            try:
                for i in range(0, len(data), 64 * 1024):
                    await response.write(data[i : i + 64 * 1024])
                    self.sent[path] += len(data[i : i + 64 * 1024])
            except (ConnectionError, RuntimeError):
                pass
            return response

        self.files[path] = send


def resign(root: Path, index: dict[str, object]) -> tuple[bytes, bytes]:
    """``index`` as the registry's key holder signs it: (index.json, index.sig)."""
    data = (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()
    return data, sign_index(data, load_private_key(private_key_path(root)))


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    return make_publisher(tmp_path / "keys")


@pytest.fixture
def registry(tmp_path: Path, publisher: Publisher) -> RegistryDir:
    reg = RegistryDir(tmp_path / "registry")
    registry_key(reg.root)  # what `wasmgate market init` makes
    reg.add_publisher(publisher.public_path)
    for version in ("0.1.0", "0.2.0"):
        reg.publish(make_wasm_package(tmp_path / version, publisher, "tagger", version))
    return reg


@pytest.fixture
def home(tmp_path: Path, publisher: Publisher, registry: RegistryDir) -> Path:
    """WASMGATE_HOME trusting the publisher and the registry's key."""
    home = tmp_path / "home"
    add_trusted_key(home / "trust", publisher.public_path)
    add_trusted_key(home / "trust" / "registries", registry.root / "registry.pub")
    return home


@pytest.fixture
async def hostile(registry: RegistryDir) -> AsyncIterator[HostileRegistry]:
    server = HostileRegistry()
    server.copy(registry.root)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def site(tmp_path: Path, hostile: HostileRegistry) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "gateway.toml").write_text(f'[market]\nregistry = "{hostile.url}"\n')
    return folder


async def cli(site: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(wasmgate, "plugin", *args, cwd=site, home=home)


def snapshot(site: Path) -> tuple[bytes | None, list[str]]:
    lock = site / "gateway.lock"
    plugins = site / "wasmgate_plugins"
    names = sorted(p.name for p in plugins.iterdir()) if plugins.is_dir() else []
    names = [n for n in names if n != ".lock"]
    return (lock.read_bytes() if lock.exists() else None), names


def cached_archives(home: Path) -> list[str]:
    folder = home / "cache" / "archives"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def index_of(hostile: HostileRegistry) -> dict[str, object]:
    body = hostile.files["index.json"]
    assert isinstance(body, bytes)
    obj = json.loads(body)
    assert isinstance(obj, dict)
    return obj


# ---------------------------------------------------------------- rollback


async def test_update_never_moves_to_a_lower_version_even_on_a_validly_signed_index(
    registry: RegistryDir, hostile: HostileRegistry, home: Path, site: Path
) -> None:
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 0, got.stderr
    assert "+ tagger 0.2.0" in got.stdout
    before = snapshot(site)
    # The registry now lists only 0.1.0, in a newer index its own key signed.
    index = index_of(hostile)
    packages = index["packages"]
    assert isinstance(packages, dict)
    del packages["tagger"]["0.2.0"]
    if "serial" in index:
        index["serial"] = int(str(index["serial"])) + 1
    hostile.files["index.json"], hostile.files["index.sig"] = resign(registry.root, index)

    got = await cli(site, home, "update")
    assert got.returncode == 0, got.stderr
    assert "= tagger 0.2.0" in got.stdout and "never downgrades" in got.stdout
    assert snapshot(site) == before  # 0.2.0 still pinned and on disk

    got = await cli(site, home, "install", "tagger@=0.1.0")
    assert got.returncode == 1
    assert "--allow-downgrade" in got.stderr and "0.2.0" in got.stderr
    assert snapshot(site) == before

    # Asked for, a downgrade that fails its checks still leaves 0.2.0 in place.
    archive = "packages/tagger/tagger-0.1.0.wgpkg"
    good = hostile.files[archive]
    assert isinstance(good, bytes)
    hostile.files[archive] = good[:-1] + bytes([good[-1] ^ 1])
    got = await cli(site, home, "install", "tagger@=0.1.0", "--allow-downgrade")
    assert got.returncode == 1 and "sha256" in got.stderr
    assert snapshot(site) == before

    hostile.files[archive] = good
    got = await cli(site, home, "install", "tagger@=0.1.0", "--allow-downgrade")
    assert got.returncode == 0, got.stderr
    assert "~ tagger 0.2.0 -> 0.1.0" in got.stdout
    assert read_lock(site / "gateway.lock").plugins["tagger"].version == "0.1.0"
    assert snapshot(site)[1] == ["tagger-0.1.0"]


# ---------------------------------------------------------------- index signature


async def test_an_unsigned_index_is_refused_with_the_fix(
    hostile: HostileRegistry, home: Path, site: Path
) -> None:
    hostile.files.pop("index.sig", None)
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    assert f"registry {hostile.url} serves an unsigned index" in got.stderr
    assert "wasmgate market init ROOT" in got.stderr
    assert snapshot(site) == (None, [])
    search = await cli(site, home, "search")
    assert search.returncode == 1 and "unsigned index" in search.stderr


async def test_a_forged_index_is_refused(hostile: HostileRegistry, home: Path, site: Path) -> None:
    index = index_of(hostile)
    packages = index["packages"]
    assert isinstance(packages, dict)
    del packages["tagger"]["0.2.0"]  # the original signature, other bytes
    hostile.files["index.json"] = (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    assert "does not match its signature" in got.stderr and hostile.url in got.stderr
    assert snapshot(site) == (None, [])
    assert "packages/tagger/tagger-0.1.0.wgpkg" not in hostile.requests


async def test_an_index_signed_by_an_untrusted_key_names_the_trust_command(
    tmp_path: Path, hostile: HostileRegistry, home: Path, site: Path
) -> None:
    other, _ = keygen(tmp_path / "mallory", "registry")
    index = hostile.files["index.json"]
    assert isinstance(index, bytes)
    hostile.files["index.sig"] = sign_index(index, load_private_key(other))
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    assert "signed by registry key" in got.stderr
    assert "wasmgate plugin trust --registry-key" in got.stderr
    assert snapshot(site) == (None, [])


async def test_a_replayed_older_index_is_refused(
    tmp_path: Path,
    publisher: Publisher,
    registry: RegistryDir,
    hostile: HostileRegistry,
    home: Path,
    site: Path,
) -> None:
    old = (hostile.files["index.json"], hostile.files["index.sig"])
    registry.publish(make_wasm_package(tmp_path / "0.3.0", publisher, "tagger", "0.3.0"))
    hostile.copy(registry.root)
    got = await cli(site, home, "search")
    assert got.returncode == 0, got.stderr
    hostile.files["index.json"], hostile.files["index.sig"] = old  # validly signed, older
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    assert "older than serial" in got.stderr and "replayed or rolled-back" in got.stderr
    assert snapshot(site) == (None, [])


# ---------------------------------------------------------------- size bounds


async def test_a_declared_size_over_the_bound_is_refused_before_downloading(
    registry: RegistryDir, hostile: HostileRegistry, home: Path, site: Path
) -> None:
    index = index_of(hostile)
    packages = index["packages"]
    assert isinstance(packages, dict)
    entry = packages["tagger"]["0.2.0"]
    entry["size"] = 300 * 1000 * 1000
    hostile.files["index.json"], hostile.files["index.sig"] = resign(registry.root, index)
    hostile.stream(entry["archive"], b"", 300 * 1000 * 1000)
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    assert "300000000 bytes" in got.stderr and "max_package_size" in got.stderr
    assert entry["archive"] not in hostile.requests  # refused before downloading
    assert cached_archives(home) == []
    assert snapshot(site) == (None, [])


async def test_max_package_size_is_configurable(
    hostile: HostileRegistry, home: Path, site: Path
) -> None:
    toml = site / "gateway.toml"
    # Well under the test package (about 1 KiB; its exact size varies from build to
    # build, and a bound of 1024 let it through now and then).
    toml.write_text(toml.read_text() + "max_package_size = 256\n")
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    assert "max_package_size" in got.stderr and "256 bytes" in got.stderr
    assert not any(r.endswith(".wgpkg") for r in hostile.requests)
    toml.write_text(toml.read_text().replace("= 256", '= "bad"'))
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    assert "gateway.toml: market.max_package_size" in got.stderr


async def test_a_body_longer_than_declared_is_cut_at_the_bound_and_not_kept(
    hostile: HostileRegistry, home: Path, site: Path
) -> None:
    entry = index_of(hostile)["packages"]["tagger"]["0.2.0"]  # type: ignore[index]
    real = hostile.files[entry["archive"]]
    assert isinstance(real, bytes)
    hostile.stream(entry["archive"], real, 200 * MiB)
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    assert "more than the" in got.stderr
    await asyncio.sleep(0.2)
    assert hostile.sent[entry["archive"]] < 100 * MiB  # it hung up long before the end
    assert cached_archives(home) == []
    assert snapshot(site) == (None, [])


async def test_a_refused_archive_is_not_kept_in_the_cache(
    tmp_path: Path, registry: RegistryDir, home: Path, site: Path
) -> None:
    # Signed by a publisher the registry accepts but this client does not trust.
    stranger = make_publisher(tmp_path / "stranger")
    registry.add_publisher(stranger.public_path)
    registry.publish(make_wasm_package(tmp_path / "s", stranger, "other", "1.0.0"))
    server = HostileRegistry()
    server.copy(registry.root)
    await server.start()
    try:
        got = await asyncio.to_thread(
            wasmgate, "plugin", "install", "other", "--registry", server.url, cwd=site, home=home
        )
    finally:
        await server.stop()
    assert got.returncode == 1
    assert "trust store" in got.stderr
    assert "packages/other/other-1.0.0.wgpkg" in server.requests  # it was downloaded
    assert cached_archives(home) == []  # and not kept


async def test_a_body_shorter_than_declared_is_refused_and_not_kept(
    hostile: HostileRegistry, home: Path, site: Path
) -> None:
    entry = index_of(hostile)["packages"]["tagger"]["0.2.0"]  # type: ignore[index]
    real = hostile.files[entry["archive"]]
    assert isinstance(real, bytes)
    hostile.stream(entry["archive"], real[:-10], 0)
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    assert f"got {len(real) - 10} bytes, the index says {len(real)}" in got.stderr
    assert cached_archives(home) == []
    assert snapshot(site) == (None, [])


async def test_the_trust_command_the_refusal_names_lets_the_install_through(
    tmp_path: Path, publisher: Publisher, hostile: HostileRegistry, site: Path
) -> None:
    home = tmp_path / "fresh-home"  # trusts the publisher, not yet the registry
    add_trusted_key(home / "trust", publisher.public_path)
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 1
    command = got.stderr.rsplit("`", 2)[-2]
    assert command.startswith("wasmgate plugin trust --registry-key --from-registry ")
    trusted = await cli(site, home, *command.split()[2:])
    assert trusted.returncode == 0, trusted.stderr
    assert (home / "trust" / "registries").is_dir()
    got = await cli(site, home, "install", "tagger")
    assert got.returncode == 0, got.stderr
    # A key the registry serves under another id is not taken.
    hostile.files["registry.pub"] = (tmp_path / "keys" / "publisher.pub").read_bytes()
    other = await cli(site, tmp_path / "home3", *command.split()[2:])
    assert other.returncode == 1 and "refused" in other.stderr


def test_a_folder_registry_is_checked_too_and_market_init_signs_an_old_one(
    tmp_path: Path, registry: RegistryDir, home: Path
) -> None:
    site = tmp_path / "folder-site"
    site.mkdir()
    (site / "gateway.toml").write_text(f'[market]\nregistry = "{registry.root}"\n')
    # An index as an older wasmgate wrote it: format 1, no serial, no signature.
    index = json.loads(registry.index_path.read_bytes())
    index["format"] = 1
    del index["serial"]
    registry.index_path.write_text(json.dumps(index))
    registry.signature_path.unlink()
    got = wasmgate("plugin", "search", cwd=site, home=home)
    assert got.returncode == 1
    assert f"registry {registry.root} serves an unsigned index" in got.stderr
    made = wasmgate("market", "init", registry.root, cwd=site, home=home)
    assert made.returncode == 0, made.stderr
    got = wasmgate("plugin", "search", cwd=site, home=home)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split()[:2] == ["tagger", "0.2.0"]
    assert json.loads(registry.index_path.read_bytes())["format"] == 2
