"""core/compiled.py: which builds of `make compile` the gateway runs, and which it refuses.

Nothing is compiled here: the builds are manifests and placeholder files, checked by
the same code that checks a real build (`WASMGATE_COMPILED=1 make test-compiled` runs
the data-path tests on a real one).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

from core import compiled
from core.compiled import CompiledModuleError, verify

REPO = Path(__file__).resolve().parents[1]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def make_build(build: Path, root: Path, sources: dict[str, str]) -> None:
    """A build of `sources` (module -> path under root), as scripts/compile.py lays it out."""
    modules = {}
    for name, rel in sources.items():
        digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        modules[name] = {"source": rel, "sha256": digest}
        so = build.joinpath(*name.split(".")).with_name(name.rpartition(".")[2] + SUFFIX)
        so.parent.mkdir(parents=True, exist_ok=True)
        so.write_bytes(b"")
    (build / f"group__mypyc{SUFFIX}").write_bytes(b"")
    manifest = {
        "python": sys.implementation.cache_tag,
        "ext_suffix": SUFFIX,
        "mypy": "test",
        "group": "group__mypyc",
        "seconds": 0,
        "modules": modules,
    }
    (build / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, build = tmp_path / "src", tmp_path / "build"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "fast.py").write_text("X = 1\n")
    (root / "pkg" / "other.py").write_text("Y = 2\n")
    build.mkdir()
    make_build(build, root, {"pkg.fast": "pkg/fast.py", "pkg.other": "pkg/other.py"})
    return root, build


def test_a_fresh_build_is_used(tree: tuple[Path, Path]) -> None:
    root, build = tree
    files = verify(build, root)
    assert files == {
        "group__mypyc": build / f"group__mypyc{SUFFIX}",
        "pkg.fast": build / "pkg" / f"fast{SUFFIX}",
        "pkg.other": build / "pkg" / f"other{SUFFIX}",
    }


def edit(root: Path, build: Path) -> None:
    (root / "pkg" / "fast.py").write_text("X = 2\n")


def remove(root: Path, build: Path) -> None:
    (root / "pkg" / "fast.py").unlink()


def other_python(root: Path, build: Path) -> None:
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["python"] = "cpython-30"
    (build / "manifest.json").write_text(json.dumps(manifest))


def no_manifest(root: Path, build: Path) -> None:
    (build / "manifest.json").unlink()


def broken_manifest(root: Path, build: Path) -> None:
    (build / "manifest.json").write_text("{")


def lost_extension(root: Path, build: Path) -> None:
    (build / "pkg" / f"other{SUFFIX}").unlink()


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        pytest.param(edit, ["out of date", "pkg/fast.py", "`make compile`"], id="source-edited"),
        pytest.param(remove, ["out of date", "pkg/fast.py", "`make compile`"], id="source-gone"),
        pytest.param(other_python, ["compiled for cpython-30", "`make compile`"], id="python"),
        pytest.param(no_manifest, ["manifest.json does not exist", "`make compile`"], id="none"),
        pytest.param(broken_manifest, ["manifest.json: unreadable", "`make compile`"], id="bad"),
        pytest.param(lost_extension, [f"other{SUFFIX} missing", "`make compile`"], id="lost-so"),
    ],
)
def test_a_build_that_is_not_the_code_is_refused(
    tree: tuple[Path, Path], spoil: Callable[[Path, Path], None], words: list[str]
) -> None:
    root, build = tree
    spoil(root, build)
    with pytest.raises(CompiledModuleError) as caught:
        verify(build, root)
    for word in words:
        assert word in str(caught.value)
    assert "pkg/other.py" not in str(caught.value)  # only what changed is named


def run_cli(build: Path, flag: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMGATE_COMPILED")}
    env[compiled.DIR_ENV] = str(build)
    if flag is not None:
        env[compiled.ENV] = flag
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "--version"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_gateway_refuses_a_stale_module_and_says_how_to_rebuild(tmp_path: Path) -> None:
    """A real `wasmgate` process with WASMGATE_COMPILED=1 and a build of core/headers.py
    that does not match it stops before serving anything; without the flag the same
    environment runs the sources."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "headers.py").write_text("# not the real core/headers.py\n")
    make_build(tmp_path / "build", tmp_path, {"core.headers": "core/headers.py"})
    done = run_cli(tmp_path / "build", "1")
    assert done.returncode == 1
    assert done.stdout == ""
    message = done.stderr.strip()
    assert message.startswith("wasmgate: compiled module out of date: core/headers.py changed")
    assert "run `make compile` to rebuild" in message
    assert "Traceback" not in done.stderr
    for flag in (None, "0", ""):
        plain = run_cli(tmp_path / "build", flag)
        assert plain.returncode == 0, plain.stderr
        assert plain.stdout.startswith("wasmgate ")


def test_the_test_run_itself_says_whether_it_is_compiled() -> None:
    assert compiled.active() == compiled.wanted()
