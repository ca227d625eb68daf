"""The files a snapshot records as built from (core/inputs.py): what the reloader
follows. Python filters add theirs through ``Filter.watched_files()``; one that
raises there is refused at load time, naming the filter."""

from __future__ import annotations

from pathlib import Path

import pytest
from wasmtime import wat2wasm

from core.certs import make_ca
from core.chain import PluginRegistry
from core.config import loads_config
from core.errors import ConfigError
from core.gateway import Snapshot
from plugin_sdk import Filter, PluginConfig

MODULES = Path(__file__).parent / "wasm_modules"


class Reads(Filter[PluginConfig]):
    def watched_files(self) -> list[str]:
        return ["relative/list.txt", "/etc/absolute.txt"]


class Broken(Filter[PluginConfig]):
    def watched_files(self) -> list[str]:
        raise ValueError("no idea")


def snapshot(tmp_path: Path, text: str, plugins: dict[str, type[Filter[PluginConfig]]]) -> Snapshot:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return Snapshot(loads_config(text, str(path)), str(path), PluginRegistry(plugins))


BASE = '[[upstreams]]\nname = "app"\nendpoints = ["127.0.0.1:9"]\n'


def test_a_snapshot_records_what_it_was_built_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "f.wasm").write_bytes(wat2wasm((MODULES / "root_only.wat").read_text()))
    make_ca("ca", tmp_path)
    text = (
        'global_filters = ["reads", "mod"]\n'
        '[filters.mod]\nwasm = "mods/f.wasm"\n'
        + BASE.replace("endpoints", 'tls = true\ntls_ca = "ca.crt"\nendpoints')
        + '[[routes]]\nname = "r"\npaths = ["/"]\nupstream = "app"\n'
    )
    snap = snapshot(tmp_path, text, {"reads": Reads})
    try:
        assert snap.inputs.files == {
            tmp_path / "gateway.toml",
            tmp_path / "gateway.lock",
            tmp_path / "ca.crt",  # the upstream's CA bundle
            tmp_path / "mods" / "f.wasm",
            tmp_path / "mods" / "manifest.json",  # where its manifest would be looked for
            tmp_path / "manifest.json",
            tmp_path / "relative" / "list.txt",  # relative to the working directory
            Path("/etc/absolute.txt"),
        }
    finally:
        snap.close()


def test_a_filter_that_fails_to_list_its_files_is_refused(tmp_path: Path) -> None:
    text = 'global_filters = ["broken"]\n' + BASE
    with pytest.raises(ConfigError) as info:
        snapshot(tmp_path, text, {"broken": Broken})
    assert (
        "global_filters[0]: filter 'broken' (plugin 'broken') failed in watched_files(): no idea"
        in str(info.value)
    )
