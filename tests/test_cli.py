"""The ``wasmgate`` command itself: --version, the top-level help, and the wording of
``check`` (counts in the right number, WASM filters told apart by their path)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import wasmtime

REPO = Path(__file__).resolve().parents[1]
WAT = REPO / "tests" / "wasm_modules" / "abi_0_2_1.wat"


def wasmgate(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version() -> None:
    done = wasmgate("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wasmgate {version('wasmgate')}"


def test_top_level_help_says_what_plugin_does() -> None:
    done = wasmgate("--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout.split("\n    plugin ", 1)[1].split("\n    ingress ", 1)[0]
    for word in ("list", "schema", "search", "install", "update", "remove", "publish"):
        assert word in text, text


ONE_ROUTE = """
[[upstreams]]
name = "up"
endpoints = [{ address = "127.0.0.1:9" }]

[[routes]]
name = "only"
upstream = "up"
"""


def test_check_counts_one_route_and_one_upstream_in_the_singular(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(ONE_ROUTE)
    for args in (["check", "-c", str(path)], ["check", "-c", str(path), "--explain"]):
        done = wasmgate(*args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == f"{path}: OK — 1 route, 1 upstream"


def test_check_explain_tells_two_wasm_filters_apart_by_path(tmp_path: Path) -> None:
    module = bytes(wasmtime.wat2wasm(WAT.read_text()))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "filter.wasm").write_bytes(module)
    path = tmp_path / "gateway.toml"
    path.write_text(
        ONE_ROUTE.replace('upstream = "up"\n', 'upstream = "up"\nfilters = ["first", "second"]\n')
        + '\n[filters.first]\nwasm = "a/filter.wasm"\n\n[filters.second]\nwasm = "b/filter.wasm"\n'
    )
    done = wasmgate("check", "-c", str(path), "--explain")
    assert done.returncode == 0, done.stderr
    assert "  1. first (wasm a/filter.wasm; fail_closed;" in done.stdout
    assert "  2. second (wasm b/filter.wasm; fail_closed;" in done.stdout


@pytest.mark.parametrize(
    ("count", "noun", "nouns", "text"),
    [
        (0, "route", None, "0 routes"),
        (1, "route", None, "1 route"),
        (2, "upstream", None, "2 upstreams"),
        (1, "Ingress", "Ingresses", "1 Ingress"),
        (3, "Ingress", "Ingresses", "3 Ingresses"),
    ],
)
def test_plural(count: int, noun: str, nouns: str | None, text: str) -> None:
    from core.wording import plural

    assert plural(count, noun, nouns) == text
