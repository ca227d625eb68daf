"""Build the data-path modules with mypyc into build/compiled/ (`make compile`).

The gateway runs them only when asked (`WASMGATE_COMPILED=1`, see core/compiled.py),
and refuses any whose source changed since this script compiled it. Nothing is
written next to the sources: the extension modules, the C files and a manifest
(`manifest.json`: the sha256 of every source compiled) all live under build/compiled/,
which is replaced whole only when a build succeeds.

    .venv/bin/python scripts/compile.py [--out DIR] [--list] [--force]

A build whose manifest matches the sources is left as it is (--force rebuilds).

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
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The HTTP/1.1 data path of a request without and with the bench's chain (canary, cors,
# rewrite, headers: their filters). plugin_sdk/ stays interpreted: it is imported before core/ can
# install the compiled modules' finder (and plugin authors subclass its classes).
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
    "plugins/canary/filter.py",
    "plugins/cors/filter.py",
    "plugins/headers/filter.py",
    "plugins/rewrite/filter.py",
)
# Not their config.py: pydantic models do not run compiled (pydantic's mypy plugin types
# a `Field(...)` default as the field's type, and the compiled class body checks it).

GROUP = "wasmgate_compiled"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def module_name(rel: str) -> str:
    return rel.removesuffix(".py").replace("/", ".")


def check_toolchain() -> None:
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.exists():
        sys.exit(f"compile: {include} is missing: install Python's headers (Debian: python3-dev)")
    if shutil.which(os.environ.get("CC", "gcc")) is None:
        sys.exit("compile: no C compiler (gcc) on PATH: install it (Debian: gcc)")
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        sys.exit(
            "compile: mypyc is missing: run `make install` (it comes with the dev extra's mypy)"
        )


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
    import mypy.version

    manifest: dict[str, object] = {
        "python": sys.implementation.cache_tag,
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "mypy": mypy.version.__version__,
        "group": f"{GROUP}__mypyc",
        "seconds": round(seconds, 1),
        "modules": {module_name(rel): {"source": rel, "sha256": before[rel]} for rel in MODULES},
    }
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)
    return manifest


def up_to_date(out: Path) -> bool:
    """Whether `out` holds a usable build of exactly MODULES from these sources."""
    os.environ.pop("WASMGATE_COMPILED", None)  # importing core must not load a build
    sys.path.insert(0, str(ROOT))
    from core.compiled import CompiledModuleError, verify

    try:
        files = verify(out, ROOT)
    except CompiledModuleError:
        return False
    return set(files) - {f"{GROUP}__mypyc"} == {module_name(rel) for rel in MODULES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "compiled")
    parser.add_argument("--list", action="store_true", help="print the modules and exit")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()
    if args.list:
        print("\n".join(MODULES))
        return
    if not args.force and up_to_date(args.out.resolve()):
        print(f"{args.out}: up to date (--force rebuilds)")
        return
    check_toolchain()
    manifest = build(args.out.resolve())
    print(
        f"compiled {len(MODULES)} modules into {args.out} in {manifest['seconds']} s; "
        "run with WASMGATE_COMPILED=1"
    )


if __name__ == "__main__":
    main()
