"""The opt-in compiled data path: modules built by mypyc (`make compile`), loaded on request.

`make compile` (scripts/compile.py) builds some data-path modules into build/compiled/,
with a manifest of the sha256 of each source it compiled. Nothing runs them unless the
environment says `WASMGATE_COMPILED=1` when `core` is first imported (core/__init__.py
calls :func:`activate_from_env`): then every source is checked against the manifest and a
finder placed first on `sys.meta_path` loads those modules from build/compiled/ instead of
their `.py` files. A module whose source changed since it was compiled (or a build for
another Python) is refused with the file's name and the command that rebuilds, and the
process stops: a compiled module that is not the code in its file is never run.
`WASMGATE_COMPILED_DIR` names another build folder (the tests use it).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ENV = "WASMGATE_COMPILED"
DIR_ENV = "WASMGATE_COMPILED_DIR"
REBUILD = "make compile"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "build" / "compiled"


class CompiledModuleError(ImportError):
    """The compiled modules cannot be used (missing, stale, or built for another Python)."""


def wanted(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether the environment asks for the compiled modules (`WASMGATE_COMPILED=1`)."""
    return environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def verify(build: Path, root: Path = ROOT) -> dict[str, Path]:
    """Check the build in `build` against the sources under `root`.

    Returns module name -> extension file for every module to load from the build
    (the group library that holds their code included), or raises CompiledModuleError.
    """
    manifest_path = build / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        modules: dict[str, dict[str, str]] = manifest["modules"]
        group: str = manifest["group"]
        python: str = manifest["python"]
        suffix: str = manifest["ext_suffix"]
    except FileNotFoundError:
        raise CompiledModuleError(
            f"{ENV}=1 but {manifest_path} does not exist; run `{REBUILD}` first"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompiledModuleError(
            f"{manifest_path}: unreadable ({exc}); run `{REBUILD}` to rebuild"
        ) from None
    if python != sys.implementation.cache_tag:
        raise CompiledModuleError(
            f"{build} was compiled for {python}, this is {sys.implementation.cache_tag}; "
            f"run `{REBUILD}` to rebuild"
        )
    found: dict[str, Path] = {group: build / f"{group}{suffix}"}
    stale: list[str] = []
    for name, entry in sorted(modules.items()):
        source = root / entry["source"]
        try:
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            digest = "missing"
        if digest != entry["sha256"]:
            stale.append(entry["source"])
        found[name] = build.joinpath(*name.split(".")).with_name(name.rpartition(".")[2] + suffix)
    if stale:
        raise CompiledModuleError(
            f"compiled module out of date: {', '.join(stale)} changed since `{REBUILD}` "
            f"compiled it into {build}; run `{REBUILD}` to rebuild, or unset {ENV}"
        )
    missing = [str(path) for path in found.values() if not path.is_file()]
    if missing:
        raise CompiledModuleError(
            f"{', '.join(missing)} missing from the build; run `{REBUILD}` to rebuild"
        )
    return found


class CompiledFinder:
    """Finds the modules of one verified build (a `sys.meta_path` entry)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(name)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, str(file))
        return importlib.machinery.ModuleSpec(name, loader, origin=str(file))


def activate(build: Path, root: Path = ROOT) -> CompiledFinder:
    """Verify `build` and load its modules from now on; raises CompiledModuleError."""
    files = verify(build, root)
    already = sorted(name for name in files if name in sys.modules)
    if already:
        raise CompiledModuleError(
            f"{', '.join(already)} already imported before the compiled modules could be installed"
        )
    finder = CompiledFinder(files)
    sys.meta_path.insert(0, finder)
    return finder


def build_dir() -> Path:
    """The build folder `WASMGATE_COMPILED=1` loads: `WASMGATE_COMPILED_DIR` or build/compiled/."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def activate_from_env() -> None:
    """What core/__init__.py runs: activate the build if the environment asks for it.

    A build that cannot be used stops the process with the reason (exit status 1).
    """
    if not wanted():
        return
    try:
        activate(build_dir())
    except CompiledModuleError as exc:
        raise SystemExit(f"wasmgate: {exc}") from None


def active() -> bool:
    """Whether this process loads the compiled modules."""
    return any(isinstance(finder, CompiledFinder) for finder in sys.meta_path)
