"""Registries (market/index.py, market/server.py, market/client.py): publishing into a
folder and over HTTP, what the index lists, the HTTP server's refusals, the client's
index cache and its checks of what a registry serves."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from market.client import FolderRegistry, HttpRegistry, open_registry
from market.errors import PublishError, RegistryError
from market.index import RegistryDir, parse_index
from market.signed_index import registry_keys
from market.signing import TrustStore
from tests.market.kit import (
    Publisher,
    make_publisher,
    make_wasm_package,
    served_registry,
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


def test_publishing_lists_digest_signer_and_summary_in_the_index(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher
) -> None:
    archive = make_wasm_package(tmp_path, publisher, "tagger", "1.0.0", keywords=["tag", "x"])
    entry, new = registry.publish(archive)
    assert new
    index = registry.read_index()
    listed = index.entry("tagger", "1.0.0")
    assert listed == entry
    assert listed.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert listed.size == archive.stat().st_size
    assert listed.signer == publisher.key_id
    assert listed.manifest.description == "adds x-abi to requests"
    assert listed.manifest.keywords == ("tag", "x")
    assert (registry.root / listed.archive).read_bytes() == archive.read_bytes()
    assert listed.readme is not None
    assert b"version 1.0.0" in (registry.root / listed.readme).read_bytes()
    assert index.keys == [publisher.key_id]


def test_republishing_the_same_bytes_is_a_no_op_and_other_bytes_are_refused(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher
) -> None:
    first = make_wasm_package(tmp_path / "a", publisher, "tagger", "1.0.0")
    registry.publish(first)
    assert registry.publish(first)[1] is False
    other = make_wasm_package(tmp_path / "b", publisher, "tagger", "1.0.0", description="else")
    with pytest.raises(PublishError, match="already published with other content") as err:
        registry.publish(other)
    assert err.value.reason == "conflict"
    entry = registry.read_index().entry("tagger", "1.0.0")
    assert entry is not None and entry.manifest.description == "adds x-abi to requests"


def test_a_package_by_a_publisher_the_registry_does_not_accept_is_refused(
    tmp_path: Path, registry: RegistryDir
) -> None:
    stranger = make_publisher(tmp_path / "stranger")
    archive = make_wasm_package(tmp_path, stranger, "tagger", "1.0.0")
    with pytest.raises(PublishError, match=f"signed by key {stranger.key_id}") as err:
        registry.publish(archive)
    assert err.value.reason == "untrusted"
    assert registry.read_index().packages == {}


def test_publishing_to_a_folder_that_is_no_registry_says_how_to_make_one(
    tmp_path: Path, publisher: Publisher
) -> None:
    archive = make_wasm_package(tmp_path, publisher, "tagger", "1.0.0")
    with pytest.raises(PublishError, match="wasmgate market init"):
        RegistryDir(tmp_path / "nowhere").publish(archive)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda e: e.update(archive="../../etc/passwd"), "archive"),
        (lambda e: e.update(archive="packages/x/../../../secret"), "archive"),
        (lambda e: e.update(sha256="zz"), "sha256"),
        (lambda e: e["manifest"].update(version="9.9.9"), "lists the manifest of"),
    ],
    ids=["parent-path", "dotdot-inside", "bad-digest", "manifest-mismatch"],
)
def test_a_malformed_index_is_refused(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher, change, problem: str
) -> None:
    registry.publish(make_wasm_package(tmp_path, publisher, "tagger", "1.0.0"))
    data = json.loads(registry.index_path.read_bytes())
    change(data["packages"]["tagger"]["1.0.0"])
    with pytest.raises(RegistryError, match=problem):
        parse_index(json.dumps(data).encode(), "index.json")


def test_open_registry_takes_urls_and_folders_only(tmp_path: Path) -> None:
    keys = TrustStore()
    assert isinstance(open_registry("http://127.0.0.1:1", tmp_path, keys), HttpRegistry)
    assert isinstance(open_registry(str(tmp_path), tmp_path, keys), FolderRegistry)
    with pytest.raises(RegistryError, match="only http"):
        open_registry("ftp://example.com/reg", tmp_path, keys)


# ---------------------------------------------------------------- over HTTP


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_http_publish_needs_the_token_and_maps_refusals_to_statuses(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher
) -> None:
    archive = make_wasm_package(tmp_path / "a", publisher, "tagger", "1.0.0")
    other = make_wasm_package(tmp_path / "b", publisher, "tagger", "1.0.0", description="x")
    stranger = make_publisher(tmp_path / "stranger")
    foreign = make_wasm_package(tmp_path / "c", stranger, "foreign", "1.0.0")
    home = tmp_path / "home"
    with served_registry(registry.root, token="s3cret") as url:
        client = HttpRegistry(url, home, TrustStore())
        with pytest.raises(PublishError, match="HTTP 401"):
            client.publish(archive, token=None)
        with pytest.raises(PublishError, match="HTTP 401"):
            client.publish(archive, token="wrong")
        entry, new = client.publish(archive, token="s3cret")
        assert new and entry.manifest.name == "tagger"
        assert client.publish(archive, token="s3cret")[1] is False
        with pytest.raises(PublishError, match=r"HTTP 409: .*already published"):
            client.publish(other, token="s3cret")
        with pytest.raises(PublishError, match=f"HTTP 403: .*{stranger.key_id}"):
            client.publish(foreign, token="s3cret")
        status, body, _ = _get(f"{url}/")
        assert status == 200 and b"tagger" in body
    assert registry.read_index().entry("tagger", "1.0.0") == entry


def test_http_publish_is_disabled_without_a_token(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher
) -> None:
    archive = make_wasm_package(tmp_path, publisher, "tagger", "1.0.0")
    with (
        served_registry(registry.root, token=None) as url,
        pytest.raises(PublishError, match="HTTP 403: publishing is disabled"),
    ):
        HttpRegistry(url, tmp_path / "home", TrustStore()).publish(archive, token="anything")


def test_the_server_serves_only_the_registry_layout(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher
) -> None:
    registry.publish(make_wasm_package(tmp_path, publisher, "tagger", "1.0.0"))
    (tmp_path / "secret.txt").write_text("secret")
    with served_registry(registry.root) as url:
        for path in (
            "/packages/../../secret.txt",
            "/packages/%2e%2e/%2e%2e/secret.txt",
            "/packages/tagger/..%2f..%2f..%2fsecret.txt",
            "/keys/../index.json",
            "/.lock",
        ):
            status, body, _ = _get(url + path)
            assert status == 404, path
            assert b"secret" not in body
        status, _, _ = _get(f"{url}/packages/tagger/tagger-1.0.0.wgpkg")
        assert status == 200


def test_the_client_caches_the_index_and_revalidates_it_with_its_etag(
    tmp_path: Path, registry: RegistryDir, publisher: Publisher
) -> None:
    registry.publish(make_wasm_package(tmp_path, publisher, "tagger", "1.0.0"))
    home = tmp_path / "home"
    trust(home / "trust", None, registry.root)
    with served_registry(registry.root) as url:
        status, body, headers = _get(f"{url}/index.json")
        assert status == 200 and headers["Cache-Control"] == "no-cache"
        status, _, _ = _get(f"{url}/index.json", {"If-None-Match": headers["ETag"]})
        assert status == 304
        client = HttpRegistry(url, home, registry_keys(home / "trust"))
        assert "tagger" in client.fetch_index().index.packages
        cached = list((home / "cache" / "indexes").glob("*/index.json"))
        assert [p.read_bytes() for p in cached] == [body]
        # The cached copy is used (via a 304) and stays in step with the registry.
        assert client.fetch_index().stale is None
        registry.publish(make_wasm_package(tmp_path / "b", publisher, "other", "1.0.0"))
        assert "other" in client.fetch_index().index.packages
    # Registry down: search/info may show the cache, saying so; installs may not.
    fetched = client.fetch_index(allow_stale=True)
    assert fetched.stale is not None and "unreachable" in fetched.stale
    assert set(fetched.index.packages) == {"tagger", "other"}
    with pytest.raises(RegistryError, match="unreachable"):
        client.fetch_index()


def test_cli_market_init_serve_publish_search_info(tmp_path: Path, publisher: Publisher) -> None:
    home = tmp_path / "home"
    root = tmp_path / "reg"
    made = wasmgate(
        "market", "init", root, "--publisher", publisher.public_path, cwd=tmp_path, home=home
    )
    assert made.returncode == 0, made.stderr
    assert f"accepting publisher key {publisher.key_id}" in made.stdout
    assert f"wasmgate plugin trust --registry-key {root / 'registry.pub'}" in made.stdout
    trusted = wasmgate(
        "plugin", "trust", "--registry-key", root / "registry.pub", cwd=tmp_path, home=home
    )
    assert trusted.returncode == 0, trusted.stderr
    assert (home / "trust" / "registries").is_dir()
    archive = make_wasm_package(tmp_path, publisher, "tagger", "1.2.0", description="tags it")
    with served_registry(root, token="tok") as url:
        pub = wasmgate(
            "plugin",
            "publish",
            archive,
            "--registry",
            url,
            "--token",
            "tok",
            cwd=tmp_path,
            home=home,
        )
        assert pub.returncode == 0, pub.stderr
        assert "tagger 1.2.0 published" in pub.stdout
        found = wasmgate("plugin", "search", "tag", "--registry", url, cwd=tmp_path, home=home)
        assert found.returncode == 0, found.stderr
        assert found.stdout.split()[:3] == ["tagger", "1.2.0", "wasm"]
        missing = wasmgate("plugin", "search", "zzz", "--registry", url, cwd=tmp_path, home=home)
        assert missing.returncode == 1 and "no plugin matches" in missing.stderr
        info = wasmgate("plugin", "info", "tagger", "--registry", url, cwd=tmp_path, home=home)
        assert info.returncode == 0, info.stderr
        assert publisher.key_id in info.stdout
        assert '"note"' in info.stdout  # the config schema
        assert "The tagger test filter, version 1.2.0." in info.stdout  # the README
        typo = wasmgate("plugin", "info", "tager", "--registry", url, cwd=tmp_path, home=home)
        assert typo.returncode == 1 and "did you mean 'tagger'" in typo.stderr
    down = wasmgate("plugin", "search", "tag", "--registry", url, cwd=tmp_path, home=home)
    assert down.returncode == 0 and "unreachable" in down.stderr and "tagger" in down.stdout
