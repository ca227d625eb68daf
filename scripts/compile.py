"""Build the data-path modules with mypyc into build/compiled/ (`make install`, `make compile`).

The gateway runs them instead of their sources when the build matches every source
(`WASMGATE_COMPILED`, auto by default: see core/compiled.py). Nothing is written next
to the sources: the extension modules, the C files and a manifest (`manifest.json`: the
sha256 of every source compiled, the Python, mypy and this script it was built with)
all live under build/compiled/, which is replaced whole only when a build succeeds.

    .venv/bin/python scripts/compile.py [--out DIR] [--list] [--force] [--best-effort]

A build whose manifest matches the sources, this Python, the installed mypy and this
script is left as it is (--force rebuilds). `make install` runs it with --best-effort:
no toolchain, or a build that fails, is one line on stdout (the build's output goes to
build/compile.log) and exit status 0, and the gateway runs pure Python.

Needs gcc and Python's headers (Debian: gcc, python3-dev for the system Python;
pyenv's and python.org's builds ship their headers) and mypyc, which comes with the
dev extra's mypy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The HTTP/1.1 data path of a request without and with the bench's chain (canary, cors,
# rewrite, headers: their filters), and the SDK modules it runs per request (the chain's
# runners, Context, Headers). plugin_sdk/__init__.py installs the finder before it imports
# them (plugin_sdk/_compiled.py); filter.py, http.py and config.py stay interpreted (plugin
# authors subclass Filter, PluginConfig; core/http1.py subclasses Request).
MODULES = (
    "core/bodies.py",
    "core/deadline.py",
    "core/drive.py",
    "core/exchange_trailers.py",
    "core/headers.py",
    "core/http1.py",
    "core/proxy.py",
    "core/tracecontext.py",
    "core/trailers.py",
    "core/upstream.py",
    "plugin_sdk/chain.py",
    "plugin_sdk/context.py",
    "plugin_sdk/headers.py",
    "plugin_sdk/http.py",
    "plugins/canary/filter.py",
    "plugins/cors/filter.py",
    "plugins/headers/filter.py",
    "plugins/rewrite/filter.py",
    # The Proxy-Wasm host: all three or none (sharing.RootedStream subclasses host.Stream,
    # plugin.PluginVm subclasses sharing.RootContexts); core/wasm/adapter.py stays
    # interpreted (WasmFilter subclasses plugin_sdk's Filter: see bench/README.md).
    "core/wasm/host.py",
    "core/wasm/sharing.py",
    "core/wasm/plugin.py",
    # The adapter's common case (WasmFilter itself stays interpreted: see the module).
    "core/wasm/phases.py",
)
# Not their config.py: pydantic models do not run compiled (pydantic's mypy plugin types
# a `Field(...)` default as the field's type, and the compiled class body checks it).

GROUP = "wasmgate_compiled"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def module_name(rel: str) -> str:
    return rel.removesuffix(".py").replace("/", ".")


def toolchain_problem() -> str | None:
    """What is missing to build, or None."""
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.exists():
        return f"{include} is missing: install Python's headers (Debian: python3-dev)"
    compiler = os.environ.get("CC", "gcc").split()
    if not compiler or shutil.which(compiler[0]) is None:
        return "no C compiler (gcc) on PATH: install it (Debian: gcc)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is missing: run `make install` (it comes with the dev extra's mypy)"
    return None


def recipe() -> dict[str, str]:
    """What a build depends on besides the sources: a change to one of them rebuilds."""
    try:
        import mypy.version

        mypy_version = mypy.version.__version__
    except ImportError:
        mypy_version = "missing"
    return {"mypy": mypy_version, "script": sha256_of(Path(__file__).resolve())}


def build(out: Path) -> dict[str, object]:
    from mypyc.build import mypycify
    from setuptools import setup

    before = {rel: sha256_of(ROOT / rel) for rel in MODULES}
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".compiled-", dir=out.parent))
    started = time.monotonic()
    cwd = Path.cwd()
    os.chdir(ROOT)  # mypy reads [tool.mypy] from pyproject.toml here
    try:
        extensions = mypycify(
            list(MODULES), opt_level="3", group_name=GROUP, target_dir=str(stage / "c")
        )
        os.chdir(stage)  # and setuptools reads it too, which it must not
        setup(
            name="wasmgate-compiled",
            ext_modules=extensions,
            script_args=[
                "--quiet",
                "build_ext",
                "--build-lib",
                str(stage),
                "--build-temp",
                str(stage / "obj"),
                "--parallel",
                str(os.cpu_count() or 1),
            ],
        )
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        os.chdir(cwd)
    seconds = time.monotonic() - started
    changed = [rel for rel in MODULES if sha256_of(ROOT / rel) != before[rel]]
    if changed:
        shutil.rmtree(stage, ignore_errors=True)
        sys.exit(f"compile: {', '.join(changed)} changed during the build; run it again")
    shutil.rmtree(stage / "obj", ignore_errors=True)
    manifest: dict[str, object] = {
        "python": sys.implementation.cache_tag,
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        **recipe(),
        "group": f"{GROUP}__mypyc",
        "seconds": round(seconds, 1),
        "modules": {module_name(rel): {"source": rel, "sha256": before[rel]} for rel in MODULES},
    }
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)
    return manifest


def check(out: Path) -> dict[str, Path]:
    """core/compiled.py's check of the build in `out` (what the gateway runs)."""
    os.environ["WASMGATE_COMPILED"] = "0"  # importing core must not load a build
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from core.compiled import verify

    return verify(out, ROOT)


def up_to_date(out: Path) -> bool:
    """Whether `out` holds a usable build of exactly MODULES from these sources, built
    with the installed mypy (its mypyc) and this script."""
    try:
        files = check(out)
        manifest = json.loads((out / "manifest.json").read_text())
    except (ImportError, OSError, ValueError):  # ImportError: CompiledModuleError
        return False
    if any(manifest.get(key) != value for key, value in recipe().items()):
        return False
    return set(files) - {f"{GROUP}__mypyc"} == {module_name(rel) for rel in MODULES}


def best_effort(out: Path, log: Path) -> None:
    """Build if possible, in a child process whose output goes to `log`; one line
    either way, and never a failure (the gateway then runs pure Python)."""
    problem = toolchain_problem()
    if problem is not None:
        print(f"compile: skipped, wasmgate runs pure Python: {problem}")
        return
    print(f"compile: building the data path with mypyc into {out} (about a minute)", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as sink:
        done = subprocess.run(
            [sys.executable, __file__, "--out", str(out), "--force"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        try:
            check(out)
            runs = "the previous build, which still matches the sources"
        except ImportError:  # core.compiled.CompiledModuleError
            runs = "pure Python"
        print(
            f"compile: the build failed (exit status {done.returncode}; its output is in {log}), "
            f"wasmgate runs {runs}; `make compile` retries"
        )
        return
    print(f"compile: built in {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "compiled")
    parser.add_argument("--list", action="store_true", help="print the modules and exit")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument(
        "--best-effort",
        action="store_true",
        help="what `make install` runs: a missing toolchain or a failed build is one line "
        "and exit status 0 (the gateway runs pure Python)",
    )
    args = parser.parse_args()
    if args.list:
        print("\n".join(MODULES))
        return
    out = args.out.resolve()
    if args.best_effort:
        try:
            if args.force or not up_to_date(out):
                best_effort(out, out.parent / "compile.log")
            else:
                print(f"compile: {args.out} is up to date")
        except Exception as exc:  # never fail `make install`
            print(f"compile: skipped, wasmgate runs pure Python: {exc!r}")
        return
    if not args.force and up_to_date(out):
        print(f"compile: {args.out} is up to date (--force rebuilds)")
        return
    problem = toolchain_problem()
    if problem is not None:
        sys.exit(f"compile: {problem}")
    manifest = build(out)
    print(
        f"compiled {len(MODULES)} modules into {args.out} in {manifest['seconds']} s; "
        "wasmgate runs them (WASMGATE_COMPILED=auto)"
    )


if __name__ == "__main__":
    main()
