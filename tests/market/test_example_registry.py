"""The example registry (``make registry``: examples/registry/build.py), built from the
repository's sources into a temporary folder: what it holds, that building it twice
gives the same bytes, and that its packages install and run in a gateway, the
repackaged built-in ``headers`` plugin taking precedence over the built-in one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import load_config
from core.gateway import Snapshot
from market.index import RegistryDir
from market.installer import Installer, Workspace
from plugin_sdk import Headers, Response
from plugin_sdk.testing import arun_chain, make_request

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "examples" / "registry" / "build.py"


def build(out: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def example_registry(tmp_path_factory: pytest.TempPathFactory) -> RegistryDir:
    out = tmp_path_factory.mktemp("registry")
    build(out)
    return RegistryDir(out)


def test_it_holds_the_wasm_examples_and_two_built_ins(example_registry: RegistryDir) -> None:
    index = example_registry.read_index()
    kinds = {name: next(iter(v.values())).manifest.kind for name, v in index.packages.items()}
    assert kinds == {
        "as-headers": "wasm",
        "c-filter": "wasm",
        "headers": "python",
        "ip-restriction": "python",
    }
    (key,) = index.keys
    assert (example_registry.root / "keys" / f"{key}.pub").is_file()
    # The demo's trust store: the publisher, and the registry's key under registries/.
    trust = example_registry.root / "trust"
    assert (trust / f"{key}.pub").is_file()
    (registry_key,) = (trust / "registries").glob("*.pub")
    assert registry_key.read_bytes() == (example_registry.root / "registry.pub").read_bytes()


def test_building_it_again_gives_the_same_archives(example_registry: RegistryDir) -> None:
    before = {
        (n, v): e.sha256
        for n, vs in example_registry.read_index().packages.items()
        for v, e in vs.items()
    }
    build(example_registry.root)
    after = {
        (n, v): e.sha256
        for n, vs in example_registry.read_index().packages.items()
        for v, e in vs.items()
    }
    assert after == before


async def test_its_packages_install_and_run(example_registry: RegistryDir, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    config = site / "gateway.toml"
    config.write_text(
        f"""
[market]
registry = "{example_registry.root}"
trust = "{example_registry.root / "trust"}"

[[upstreams]]
name = "up"
endpoints = [{{ address = "127.0.0.1:9" }}]

[filters.stamp]
plugin = "headers"
config = {{ response = {{ set = {{ "x-from" = "registry" }} }} }}

[filters.hdr]
plugin = "as-headers"

[[routes]]
name = "r"
upstream = "up"
filters = ["stamp", "hdr"]
"""
    )
    ws = Workspace.load(config, tmp_path / "home")
    changes = Installer(ws, say=lambda line: None).install(["headers", "as-headers@^0.1"])
    assert [str(c) for c in changes] == ["+ headers 0.1.0", "+ as-headers 0.1.0"]
    snap = Snapshot(load_config(config), str(config))
    try:
        chain = snap.router.routes[0].chain
        assert chain is not None
        assert [f.plugin for f in chain.filters] == ["headers@0.1.0", "as-headers@0.1.0"]
        stamp = chain.filters[0].filter
        assert type(stamp).__module__.startswith("wgp_headers")  # the installed copy
        req = make_request("GET", "/")
        result = await arun_chain(chain.filters, req, response=Response(200, Headers()))
        assert result.response is not None
        assert result.response.headers.get("x-from") == "registry"
        assert result.response.headers.get("x-wasm-filter") == "as-headers"
        assert req.headers.get("x-wasm") == "as"
    finally:
        snap.close()
