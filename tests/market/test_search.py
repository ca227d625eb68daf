"""Search ranking: whole words and word starts, never letters inside a word."""

from __future__ import annotations

import pytest

from market.index import Index, IndexEntry
from market.manifest import PackageManifest
from market.search import search

SHA = "0" * 64
CATALOGUE = {
    "as-headers": ("sets request and response headers", ("headers", "assemblyscript")),
    "headers": ("adds, sets and removes headers", ("headers", "builtin")),
    "ip-restriction": ("allows or denies client IPs", ("security", "ip")),
    "key-auth": ("API key authentication", ("auth", "proxy-wasm")),
    "cors": ("answers preflights; decorates responses", ("browser",)),
    "zip": ("compresses responses with gzip", ("compression",)),
}


def catalogue() -> Index:
    packages = {}
    for name, (description, keywords) in CATALOGUE.items():
        manifest = PackageManifest.model_validate(
            {
                "name": name,
                "version": "1.0.0",
                "kind": "python",
                "description": description,
                "keywords": keywords,
                "payload": "p.whl",
                "payload_sha256": SHA,
            }
        )
        entry = IndexEntry(
            archive=f"packages/{name}/{name}-1.0.0.wgpkg",
            size=1,
            sha256=SHA,
            payload_sha256=SHA,
            signer="0" * 16,
            published="2026-01-01T00:00:00Z",
            manifest=manifest,
        )
        packages[name] = {"1.0.0": entry}
    return Index(packages=packages)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        pytest.param("ip", ["ip-restriction"], id="a word never matches inside one"),
        pytest.param("headers", ["headers", "as-headers"], id="exact name before name word"),
        pytest.param("head", ["as-headers", "headers"], id="word start of a name"),
        pytest.param("auth", ["key-auth"], id="name word"),
        pytest.param("security", ["ip-restriction"], id="keyword"),
        pytest.param("proxy-wasm", ["key-auth"], id="hyphenated keyword"),
        pytest.param("preflight", ["cors"], id="word start in the description"),
        pytest.param("flights", [], id="not the inside of a description word"),
        pytest.param("response", ["as-headers", "cors", "zip"], id="description, by name"),
        pytest.param("headers builtin", ["headers"], id="every word must match"),
        pytest.param("zip", ["zip"], id="gzip is not zip"),
        pytest.param("IP", ["ip-restriction"], id="case-insensitive"),
    ],
)
def test_ranking(query: str, names: list[str]) -> None:
    assert [h.name for h in search(catalogue(), query)] == names


def test_no_query_lists_everything_by_name() -> None:
    assert [h.name for h in search(catalogue(), "")] == sorted(CATALOGUE)
