"""``wasmgate plugin new``: each language's project builds with its own Makefile and its
generated tests pass against the real build; bad names and occupied directories are
refused before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "core" / "templates" / "wasm"


def wasmgate_new(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "plugin", "new", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def go() -> str | None:
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def make(target: str, project: Path) -> subprocess.CompletedProcess[str]:
    # PYTHON: the scaffold's Makefiles run zig (ziglang) and pytest with it. Go builds
    # share the repository's Go caches (what `make wasm` fills), so no second download.
    env = dict(os.environ)
    env.setdefault("GOMODCACHE", str(REPO / ".cache" / "go" / "mod"))
    env.setdefault("GOCACHE", str(REPO / ".cache" / "go" / "build"))
    env.setdefault("GOFLAGS", "-modcacherw")
    return subprocess.run(
        ["make", target, f"PYTHON={sys.executable}", f"GO={go() or 'go'}"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize(
    ("lang", "source"),
    [("assemblyscript", "assembly/index.ts"), ("c", "src/filter.c"), ("go", "main.go")],
    ids=["assemblyscript", "c", "go"],
)
def test_scaffolded_project_builds_and_its_own_tests_pass(
    tmp_path: Path, lang: str, source: str
) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH")
    if lang == "assemblyscript" and shutil.which("npm") is None:
        pytest.skip("the AssemblyScript scaffold builds with npm, which is not on PATH")
    if lang == "go" and go() is None:
        pytest.skip("the Go scaffold builds with Go >= 1.24, which is not installed")
    name = f"hello-{lang}"
    project = tmp_path / name

    new = wasmgate_new(name, "--lang", lang, "--dir", str(project))

    assert new.returncode == 0, new.stderr
    for rel in ("README.md", "Makefile", "manifest.json", "test_filter.py", source):
        assert f"created {project / rel}\n" in new.stdout
    assert "next steps:" in new.stdout
    assert f"[filters.{name}]" in new.stdout
    manifest = json.loads((project / "manifest.json").read_text())
    assert manifest["name"] == manifest["root_id"] == name
    assert f"[filters.{name}]" in (project / "README.md").read_text()

    build = make("build", project)
    assert build.returncode == 0, build.stdout
    assert (project / "build" / "filter.wasm").stat().st_size > 0

    test = make("test", project)
    assert test.returncode == 0, test.stdout
    assert "2 passed" in test.stdout


def test_the_c_scaffold_carries_the_examples_proxy_wasm_header() -> None:
    example = REPO / "plugins" / "wasm" / "c-filter" / "src" / "proxy_wasm.h"
    template = TEMPLATES / "c" / "src" / "proxy_wasm.h.tmpl"
    assert template.read_text() == example.read_text()


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("HelloWorld", "did you mean 'hello-world'?"),
        ("hello_world", "did you mean 'hello-world'?"),
        ("hello--world", "did you mean 'hello-world'?"),
        ("hello-", "did you mean 'hello'?"),
        ("9lives", "not kebab-case"),
        ("a" * 65, "longer than 64 characters"),
    ],
    ids=["camel-case", "snake-case", "double-hyphen", "trailing-hyphen", "leading-digit", "long"],
)
def test_a_name_that_is_not_kebab_case_is_refused(tmp_path: Path, name: str, hint: str) -> None:
    project = tmp_path / "project"
    result = wasmgate_new(name, "--lang", "c", "--dir", str(project))
    assert result.returncode == 1
    assert hint in result.stderr
    assert not project.exists()


def test_a_non_empty_directory_is_refused_unless_forced(tmp_path: Path) -> None:
    project = tmp_path / "taken"
    project.mkdir()
    (project / "notes.txt").write_text("mine\n")

    refused = wasmgate_new("taken", "--lang", "c", "--dir", str(project))
    assert refused.returncode == 1
    assert "not empty" in refused.stderr and "--force" in refused.stderr
    assert [p.name for p in project.iterdir()] == ["notes.txt"]

    forced = wasmgate_new("taken", "--lang", "c", "--dir", str(project), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (project / "src" / "filter.c").is_file()
    assert (project / "notes.txt").read_text() == "mine\n"

    again = wasmgate_new("taken", "--lang", "c", "--dir", str(project), "--force")
    assert f"replaced {project / 'Makefile'}\n" in again.stdout


def test_an_empty_directory_and_the_default_directory_are_used(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    into_empty = wasmgate_new("empty", "--lang", "assemblyscript", "--dir", str(tmp_path / "empty"))
    assert into_empty.returncode == 0, into_empty.stderr
    assert (tmp_path / "empty" / "assembly" / "index.ts").is_file()

    default = subprocess.run(
        [sys.executable, "-m", "core.cli", "plugin", "new", "here", "--lang", "c"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert default.returncode == 0, default.stderr
    assert "created here/README.md\n" in default.stdout
    assert (tmp_path / "here" / "test_filter.py").is_file()
