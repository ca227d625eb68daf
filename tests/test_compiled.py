"""core/compiled.py: which builds of `make compile` the gateway runs, which it refuses,
and how `WASMGATE_COMPILED` (auto, 1, 0) falls back to pure Python; scripts/compile.py's
up-to-date check and its best-effort mode (what `make install` runs).

Nothing is compiled here: the builds are manifests and placeholder files, checked by
the same code that checks a real build (`make test` runs the suite on the real one when
`make install` could build it; `make test-compiled` the data-path tests with `1`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

import core.proxy
from core import compiled
from core.compiled import CompiledModuleError, verify
from plugin_sdk.testing import GatewayProcess, free_port

REPO = Path(__file__).resolve().parents[1]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def make_build(
    build: Path, root: Path, sources: dict[str, str], group: str = "group__mypyc"
) -> None:
    """A build of `sources` (module -> path under root), as scripts/compile.py lays it out."""
    modules = {}
    for name, rel in sources.items():
        digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        modules[name] = {"source": rel, "sha256": digest}
        so = build.joinpath(*name.split(".")).with_name(name.rpartition(".")[2] + SUFFIX)
        so.parent.mkdir(parents=True, exist_ok=True)
        so.write_bytes(b"")
    (build / f"{group}{SUFFIX}").write_bytes(b"")
    manifest = {
        "python": sys.implementation.cache_tag,
        "ext_suffix": SUFFIX,
        "mypy": "test",
        "group": group,
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
    """What status() says is what was imported: core/proxy.py or its extension module."""
    state = compiled.status()
    assert state.compiled == compiled.active() == core.proxy.__file__.endswith(SUFFIX)
    if compiled.wanted():
        assert state.compiled
    if compiled.mode() == compiled.NEVER:
        assert not state.compiled and state.reason == "WASMGATE_COMPILED=0"


PROBE = (
    "import json, sys, core.headers; from core import compiled; "
    "print(json.dumps({**compiled.status().as_dict(), 'file': core.headers.__file__}))"
)


def probe(build: Path, flag: str) -> subprocess.CompletedProcess[str]:
    """A Python that imports core with this build and flag, and says what it runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMGATE_COMPILED")}
    env |= {compiled.DIR_ENV: str(build), compiled.ENV: flag}
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def stale_build(tmp_path: Path) -> Path:
    """A build of a core/headers.py that is not the one in the repository."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "headers.py").write_text("# not the real core/headers.py\n")
    make_build(tmp_path / "build", tmp_path, {"core.headers": "core/headers.py"})
    return tmp_path / "build"


def test_auto_without_a_build_runs_pure_python_silently(tmp_path: Path) -> None:
    for flag in ("auto", "", " AUTO "):
        done = probe(tmp_path / "nothing-here", flag)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        state = json.loads(done.stdout)
        assert state["compiled"] is False and state["mode"] == "auto"
        assert state["file"].endswith("core/headers.py")
        assert "no build in" in state["reason"] and "`make compile`" in state["reason"]


def test_auto_with_a_stale_build_runs_pure_python_and_warns_once(tmp_path: Path) -> None:
    done = probe(stale_build(tmp_path), "auto")
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("wasmgate: warning: running pure Python, not the compiled build: ")
    assert "core/headers.py changed" in line and "run `make compile` to rebuild" in line
    state = json.loads(done.stdout)
    assert state["compiled"] is False and state["modules"] == []
    assert state["file"].endswith("core/headers.py")
    assert "core/headers.py changed" in state["reason"]


def test_a_build_that_does_not_load_is_pure_python_with_auto_and_refused_with_1(
    tmp_path: Path,
) -> None:
    """A manifest that matches the sources, but extension files that are not ones."""
    make_build(tmp_path, REPO, {"core.headers": "core/headers.py"})
    done = probe(tmp_path, "auto")
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert f"group__mypyc{SUFFIX} does not load" in line and "`make compile`" in line
    assert json.loads(done.stdout)["file"].endswith("core/headers.py")
    refused = probe(tmp_path, "1")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "does not load" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        pytest.param("1", ["WASMGATE_COMPILED=1 but", "manifest.json does not exist"], id="1"),
        pytest.param("maybe", ["WASMGATE_COMPILED='maybe': expected auto"], id="bad-value"),
    ],
)
def test_what_stops_the_process(tmp_path: Path, flag: str, words: list[str]) -> None:
    done = probe(tmp_path / "nothing-here", flag)
    assert done.returncode == 1 and done.stdout == ""
    for word in words:
        assert word in done.stderr
    assert "Traceback" not in done.stderr


def test_0_never_loads_even_a_good_build(tmp_path: Path) -> None:
    make_build(tmp_path, REPO, {"core.headers": "core/headers.py"})
    done = probe(tmp_path, "0")
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout)["reason"] == "WASMGATE_COMPILED=0"


def admin_toml(port: int, admin: int) -> str:
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[admin]
listen = "127.0.0.1:{admin}"

[[upstreams]]
name = "app"
endpoints = ["127.0.0.1:9"]

[[routes]]
name = "main"
paths = ["/"]
upstream = "app"
"""


async def admin_data_path(http: aiohttp.ClientSession, admin: int) -> object:
    """``data_path`` of admin /config, once it answers: with workers, the proxy's port
    may be served by another worker before the first one opened the admin listener."""
    deadline = time.monotonic() + 15
    while True:
        try:
            async with http.get(f"http://127.0.0.1:{admin}/config") as resp:
                return (await resp.json())["data_path"]
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


async def run_and_ask(tmp_path: Path, env: dict[str, str], *extra: str) -> tuple[str, object]:
    """`wasmgate run` with `env`: its log once it serves, and admin /config's data_path."""
    port, admin = free_port(), free_port()
    gw = GatewayProcess(admin_toml(port, admin), workdir=str(tmp_path)).start(port, *extra, env=env)
    try:
        async with aiohttp.ClientSession() as http:
            data_path = await admin_data_path(http, admin)
    finally:
        assert gw.terminate() == 0
    return gw.log(), data_path


async def test_wasmgate_run_says_which_data_path_it_runs(tmp_path: Path) -> None:
    """The start line and admin /config: here the test run's own path (compiled under
    `make test` when built, pure Python otherwise), then a stale build with two workers:
    pure Python, and the warning once (the workers fork after core is imported)."""
    (tmp_path / "a").mkdir()
    log, data_path = await run_and_ask(tmp_path / "a", {})
    assert f"data path: {compiled.status().describe()}" in log
    assert data_path == compiled.status().as_dict()

    build = stale_build(tmp_path)
    env = {compiled.ENV: "auto", compiled.DIR_ENV: str(build)}
    log, data_path = await run_and_ask(tmp_path, env, "--workers", "2")
    assert log.count("wasmgate: warning: running pure Python") == 1, log
    assert "data path: pure Python (build not used: compiled module out of date: " in log
    assert isinstance(data_path, dict)
    assert data_path["compiled"] is False and data_path["mode"] == "auto"
    assert "core/headers.py changed" in data_path["reason"]


def compile_script(*args: str, env: dict[str, str] | None = None) -> str:
    """scripts/compile.py in a child process; its stdout (exit status 0 expected)."""
    done = subprocess.run(
        [sys.executable, "scripts/compile.py", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_install_without_a_compiler_skips_the_build_in_one_line(tmp_path: Path) -> None:
    out = compile_script("--best-effort", "--out", str(tmp_path / "c"), env={"CC": "no-such-cc"})
    assert out == (
        "compile: skipped, wasmgate runs pure Python: "
        "no C compiler (gcc) on PATH: install it (Debian: gcc)\n"
    )
    assert not (tmp_path / "c").exists()


UP_TO_DATE = """
import json, sys
from pathlib import Path
sys.argv = ["compile.py"]
sys.path.insert(0, "scripts")
import compile
print(json.dumps([compile.recipe(), list(compile.MODULES), compile.up_to_date(Path(sys.argv_out))]))
"""


def test_a_build_is_up_to_date_only_for_the_same_sources_python_mypy_and_script(
    tmp_path: Path,
) -> None:
    def check() -> tuple[dict[str, str], list[str], bool]:
        code = UP_TO_DATE.replace("sys.argv_out", repr(str(tmp_path)))
        recipe, modules, fresh = json.loads(
            subprocess.run(
                [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
            ).stdout
        )
        return recipe, modules, fresh

    recipe, modules, fresh = check()
    assert not fresh  # no build
    names = {rel.removesuffix(".py").replace("/", "."): rel for rel in modules}
    make_build(tmp_path, REPO, names, group="wasmgate_compiled__mypyc")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest | recipe))
    assert check()[2]
    for key, value in [("mypy", "0.0.1"), ("script", "0" * 64), ("python", "cpython-30")]:
        (tmp_path / "manifest.json").write_text(json.dumps(manifest | recipe | {key: value}))
        assert not check()[2], key
