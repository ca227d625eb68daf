"""The compiled data path: the modules mypyc built, run when the build is the code.

`make install` (and `make compile`) runs scripts/compile.py, which builds some data-path
modules (of core/, plugin_sdk/ and the bundled plugins) with mypyc into build/compiled/,
with a manifest of the sha256 of each source it compiled. When `plugin_sdk` is first
imported (plugin_sdk/__init__.py calls :func:`activate_from_env` before it imports any of
its own modules; `import core` imports plugin_sdk first), `WASMGATE_COMPILED` decides
whether they are used:

* ``auto`` (the default; also unset or empty): the build is used when every source
  matches the manifest. No build at all: pure Python, silently. A build that is not the
  code (a source changed since, built for another Python, a file missing or that does not
  load): pure Python for every module, and one warning on stderr that says why and names
  `make compile`.
* ``1`` (``true``, ``yes``, ``on``): the build or nothing: a build that cannot be used
  stops the process with the reason (exit status 1).
* ``0`` (``false``, ``no``, ``off``): pure Python.

Any other value stops the process, naming the accepted ones. It is all or nothing: a
finder placed first on `sys.meta_path` serves every module of a verified build, or none
is installed; a compiled module that is not the code in its file is never run. The
choice is made once per process (later calls of :func:`activate_from_env` return it).
:func:`status` says which path this process took and why (`wasmgate run` logs it at start,
the admin API's ``GET /config`` shows it). `WASMGATE_COMPILED_DIR` names another build
folder (the tests use it).

This lives in plugin_sdk (which imports nothing from core/) because plugin_sdk is what
gets imported first: by pytest's plugin entry point, by plugin code, and by core/.
core/compiled.py re-exports it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ENV = "WASMGATE_COMPILED"
DIR_ENV = "WASMGATE_COMPILED_DIR"
REBUILD = "make compile"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "build" / "compiled"

AUTO, REQUIRED, NEVER = "auto", "1", "0"
_MODES = {
    "": AUTO,
    "auto": AUTO,
    "1": REQUIRED,
    "true": REQUIRED,
    "yes": REQUIRED,
    "on": REQUIRED,
    "0": NEVER,
    "false": NEVER,
    "no": NEVER,
    "off": NEVER,
}


class CompiledModuleError(ImportError):
    """The compiled modules cannot be used (stale, broken, or built for another Python)."""


class NoBuild(CompiledModuleError):
    """There is no build at all (`make compile` never ran, or could not)."""


def mode(environ: Mapping[str, str] = os.environ) -> str:
    """`WASMGATE_COMPILED` as AUTO, REQUIRED or NEVER; ValueError for another value."""
    raw = environ.get(ENV, "")
    try:
        return _MODES[raw.strip().lower()]
    except KeyError:
        raise ValueError(
            f"{ENV}={raw!r}: expected auto (the default), 1 (the compiled build or stop) "
            "or 0 (pure Python)"
        ) from None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment requires the compiled modules (`WASMGATE_COMPILED=1`)."""
    try:
        return mode(environ) == REQUIRED
    except ValueError:
        return False


def verify(build: Path, root: Path = ROOT) -> dict[str, Path]:
    """Check the build in `build` against the sources under `root`.

    Returns module name -> extension file for every module to load from the build
    (the group library that holds their code included), or raises CompiledModuleError
    (NoBuild when there is no manifest).
    """
    manifest_path = build / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        modules: dict[str, dict[str, str]] = manifest["modules"]
        group: str = manifest["group"]
        python: str = manifest["python"]
        suffix: str = manifest["ext_suffix"]
    except FileNotFoundError:
        raise NoBuild(f"{manifest_path} does not exist; run `{REBUILD}` first") from None
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
            f"compiled it into {build}; run `{REBUILD}` to rebuild"
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
    """Verify `build` and load its modules from now on; raises CompiledModuleError.

    The group library (all the compiled code) is loaded here, so that a build that
    does not load fails now, before any module came from it, not at a later import.
    """
    files = verify(build, root)
    already = sorted(name for name in files if name in sys.modules)
    if already:
        raise CompiledModuleError(
            f"{', '.join(already)} already imported before the compiled modules could be installed"
        )
    finder = CompiledFinder(files)
    sys.meta_path.insert(0, finder)
    group = next(iter(files))  # verify puts the group library first
    try:
        importlib.import_module(group)
    except Exception as exc:  # a truncated or foreign .so: ImportError, OSError, ...
        sys.meta_path.remove(finder)
        sys.modules.pop(group, None)
        raise CompiledModuleError(
            f"{files[group]} does not load ({exc}); run `{REBUILD}` to rebuild"
        ) from None
    return finder


def build_dir() -> Path:
    """The build folder: `WASMGATE_COMPILED_DIR` or build/compiled/ of the source tree."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


@dataclass(frozen=True)
class DataPath:
    """Which data path this process runs, and why."""

    mode: str  # AUTO, REQUIRED or NEVER
    build: str  # the build folder looked at
    modules: tuple[str, ...] = ()  # the compiled modules, empty when pure Python
    reason: str = ""  # why pure Python ("" when compiled)

    @property
    def compiled(self) -> bool:
        return bool(self.modules)

    def describe(self) -> str:
        """One line for the start of `wasmgate run`."""
        if self.compiled:
            return f"compiled ({len(self.modules)} modules from {self.build}, {ENV}={self.mode})"
        return f"pure Python ({self.reason})"

    def as_dict(self) -> dict[str, object]:
        """What the admin API shows."""
        return {
            "compiled": self.compiled,
            "mode": self.mode,
            "build": self.build,
            "modules": list(self.modules),
            "reason": self.reason,
        }


_status = DataPath(mode=AUTO, build=str(DEFAULT_DIR), reason="not activated yet")
_decided = False


def status() -> DataPath:
    """The data path :func:`activate_from_env` chose for this process."""
    return _status


def activate_from_env() -> DataPath:
    """What plugin_sdk/__init__.py runs: use the build as `WASMGATE_COMPILED` says.

    Stops the process (exit status 1) for a bad value, or when `1` meets a build that
    cannot be used; with `auto`, such a build prints one warning and runs pure Python.
    Decides once: a later call returns the first call's choice.
    """
    global _status, _decided
    if _decided:
        return _status
    _decided = True
    try:
        how = mode()
    except ValueError as exc:
        raise SystemExit(f"wasmgate: {exc}") from None
    build = build_dir()
    if how == NEVER:
        _status = DataPath(how, str(build), reason=f"{ENV}=0")
        return _status
    try:
        finder = activate(build)
    except NoBuild as exc:
        if how == REQUIRED:
            raise SystemExit(f"wasmgate: {ENV}=1 but {exc}") from None
        _status = DataPath(how, str(build), reason=f"no build in {build}; `{REBUILD}` builds it")
        return _status
    except CompiledModuleError as exc:
        if how == REQUIRED:
            raise SystemExit(
                f"wasmgate: {exc} (or set {ENV}=auto to run pure Python meanwhile)"
            ) from None
        warning = f"wasmgate: warning: running pure Python, not the compiled build: {exc}"
        print(warning, file=sys.stderr)
        _status = DataPath(how, str(build), reason=f"build not used: {exc}")
        return _status
    modules = tuple(sorted(name for name in finder.files if not name.endswith("__mypyc")))
    _status = DataPath(how, str(build), modules=modules)
    return _status


def active() -> bool:
    """Whether this process loads the compiled modules."""
    return any(isinstance(finder, CompiledFinder) for finder in sys.meta_path)
