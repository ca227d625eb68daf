"""Installing, updating and removing plugins: all or nothing, one at a time.

Every operation runs under an exclusive lock on ``PLUGIN_DIR/.lock`` (a second
``wasmgate plugin install`` waits for the first) and in three steps:

1. *Prepare*: resolve each requirement against the index (or take what the lockfile
   pins), download the archive into the cache checking the index's size and sha256,
   verify the package's signature against the trust store and its payload digest,
   check a Python package's wheel, and unpack it into ``PLUGIN_DIR/NAME-VERSION``
   through a temporary folder renamed into place (:func:`market.package.unpack`).
   Folders that already hold the same verified package are reused.
2. *Commit*: write the new ``gateway.lock`` by renaming a temporary file over it.
   This one rename is the moment the change happens.
3. *Clean up*: remove folders that no lock entry points at any more, and leftovers
   of interrupted runs (``.*.partial``).

An error or an interruption before step 2 leaves the lockfile as it was, and the
gateway reads only what the lockfile pins, so the previous state is untouched; at
worst a complete but unreferenced folder stays behind until the next run cleans it.

Versions only move forward unless the user asks: ``update`` keeps a locked version
when the registry offers only lower ones (a registry that drops a version must not
roll gateways back), and ``install`` refuses to replace a locked version with a lower
one without ``allow_downgrade``. A downgrade, too, puts the new folder in place before
the lockfile moves, and the old folder goes only after that. An archive that is
refused (signature, digest, contents) is removed from the download cache.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from packaging.version import Version

from market.client import Progress, Registry
from market.errors import (
    InstallError,
    LockfileError,
    MarketError,
    ResolveError,
    UnknownSigner,
)
from market.files import exclusive
from market.index import Index, IndexEntry
from market.lockfile import (
    SITE,
    LockedPlugin,
    Lockfile,
    folder_name,
    read_lock,
    verify_installed,
    write_lock,
)
from market.package import Package, read_package, unpack
from market.version import Requirement, caret_of, parse_requirement, pick
from market.workspace import Workspace as Workspace  # where the CLI and tests import it

# What clean-up may remove from the plugin folder: installed packages no lock entry
# points at, and the temporary folders of interrupted runs. Nothing else.
_INSTALLED = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*-\d+\.\d+\.\d+[a-z0-9.]*$")
_PARTIAL = re.compile(r"^\..+\.partial$")


def wasmgate_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wasmgate")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class Change:
    """One line of an install's outcome."""

    name: str
    old: str | None
    new: str | None
    note: str = ""

    def __str__(self) -> str:
        if self.old is None and self.new is not None:
            text = f"+ {self.name} {self.new}"
        elif self.new is None and self.old is not None:
            text = f"- {self.name} {self.old}"
        elif self.old == self.new:
            text = f"= {self.name} {self.new}"
        else:
            text = f"~ {self.name} {self.old} -> {self.new}"
        return f"{text}  ({self.note})" if self.note else text


@dataclass
class Installer:
    """Install, update and remove the plugins of one :class:`Workspace`."""

    ws: Workspace
    registry: Registry | None = None
    progress: Callable[[str], Progress | None] = lambda label: None
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
    _index: Index | None = field(default=None, repr=False)

    # ---------------------------------------------------------------- operations

    def install(
        self, texts: Sequence[str], pre: bool = False, allow_downgrade: bool = False
    ) -> list[Change]:
        """Install ``NAME[@CONSTRAINT]`` each; with none, what the lockfile pins.

        A plugin locked at a higher version than the one resolved is refused unless
        ``allow_downgrade``."""
        reqs = [parse_requirement(t) for t in texts]
        with self._locked():
            lock = read_lock(self.ws.lockfile)
            if not reqs:
                return self._sync(lock)
            plugins = dict(lock.plugins)
            changes = []
            for req in reqs:
                old = plugins.get(req.name)
                if old is not None and req.allows(old.version, pre=True):
                    pinned = self._ensure(req.name, old, old.constraint or req.constraint)
                    if req.constraint and req.constraint != old.constraint:
                        pinned = pinned.model_copy(update={"constraint": req.constraint})
                    plugins[req.name] = pinned
                    changes.append(Change(req.name, old.version, old.version, "already locked"))
                    continue
                entry = self._resolve(req, pre)
                new = entry.manifest.version
                if old is not None and _lower(new, old.version) and not allow_downgrade:
                    raise InstallError(
                        f"{req.name}: {req} resolves to {new}, lower than the locked "
                        f"{old.version}; refused, since a downgrade may bring back fixed "
                        f"bugs. If you mean it: `wasmgate plugin install {req.name}@={new} "
                        "--allow-downgrade`"
                    )
                # No constraint given: record the caret of what was picked (npm, Cargo).
                constraint = req.constraint or caret_of(new)
                plugins[req.name] = self._fetch(entry, constraint, old)
                changes.append(
                    Change(req.name, old.version if old else None, entry.manifest.version)
                )
            self._commit(Lockfile(plugins=plugins))
            return changes

    def update(self, names: Sequence[str], pre: bool = False) -> list[Change]:
        """Move each locked plugin (all with no names) to the highest version its
        recorded constraint allows; never to a lower version than the locked one."""
        with self._locked():
            lock = read_lock(self.ws.lockfile)
            unknown = [n for n in names if n not in lock.plugins]
            if unknown:
                raise InstallError(
                    f"not installed: {', '.join(unknown)} (see `wasmgate plugin list`)"
                )
            plugins = dict(lock.plugins)
            changes = []
            for name in names or sorted(lock.plugins):
                old = plugins[name]
                req = parse_requirement(f"{name}@{old.constraint}" if old.constraint else name)
                entry = self._resolve_or_none(req, pre, old.version)
                if entry is None or not _lower(old.version, entry.manifest.version):
                    plugins[name] = self._ensure(name, old, old.constraint)
                    note = "up to date" + self._outside(name, old.version, old.constraint)
                    lower = self._newest(name) if entry is None else entry.manifest.version
                    if lower is not None and _lower(lower, old.version):
                        note = (
                            f"the registry's newest is {lower}; update never downgrades, "
                            f"`wasmgate plugin install {name}@={lower} --allow-downgrade` does"
                        )
                    changes.append(Change(name, old.version, old.version, note))
                    continue
                got = entry.manifest.version
                note = self._outside(name, got, old.constraint)
                plugins[name] = self._fetch(entry, old.constraint, old)
                changes.append(Change(name, old.version, got, note.removeprefix("; ")))
            self._commit(Lockfile(plugins=plugins))
            return changes

    def _newest(self, name: str) -> str | None:
        """The registry's newest release of ``name`` (None: it lists none)."""
        from market.search import latest

        newest = latest(self._index_now(), name)
        return newest.manifest.version if newest is not None else None

    def _outside(self, name: str, version: str, constraint: str) -> str:
        """A note naming a newer release the constraint leaves out, and how to move."""
        v = self._newest(name)
        if v is None or Version(v) <= Version(version):
            return ""
        return f"; {v} is outside {constraint}: `wasmgate plugin install {name}@{caret_of(v)}`"

    def remove(self, names: Sequence[str]) -> list[Change]:
        with self._locked():
            lock = read_lock(self.ws.lockfile)
            missing = [n for n in names if n not in lock.plugins]
            if missing:
                raise InstallError(f"not installed: {', '.join(missing)}")
            plugins = {k: v for k, v in lock.plugins.items() if k not in names}
            self._commit(Lockfile(plugins=plugins))
            return [Change(n, lock.plugins[n].version, None) for n in names]

    # ---------------------------------------------------------------- steps

    def _locked(self) -> AbstractContextManager[None]:
        return exclusive(self.ws.plugin_dir / ".lock", "plugin install")

    def _sync(self, lock: Lockfile) -> list[Change]:
        if not lock.plugins:
            self.say(f"nothing to install: {self.ws.lockfile} pins no plugins")
            return []
        changes = []
        plugins = {}
        for name, locked in sorted(lock.plugins.items()):
            plugins[name] = self._ensure(name, locked, locked.constraint)
            changes.append(Change(name, locked.version, locked.version, "as locked"))
        self._commit(Lockfile(plugins=plugins))
        return changes

    def _index_now(self) -> Index:
        if self._index is None:
            if self.registry is None:
                self.registry = self.ws.open_registry()
            self._index = self.registry.fetch_index().index
        return self._index

    def _resolve(self, req: Requirement, pre: bool) -> IndexEntry:
        index = self._index_now()
        versions = index.packages.get(req.name)
        if not versions:
            from market.search import suggest_names

            raise InstallError(
                f"{req.name}: no such plugin in registry {self.registry_location()}"
                f"{suggest_names(req.name, index)}"
            )
        chosen = pick(
            req,
            [(v, e.manifest.min_wasmgate) for v, e in versions.items()],
            wasmgate_version(),
            pre,
        )
        return versions[chosen]

    def _resolve_or_none(self, req: Requirement, pre: bool, locked: str) -> IndexEntry | None:
        """What :meth:`_resolve` picks, or None when nothing matches and ``locked``
        (the version in place) stays anyway."""
        try:
            return self._resolve(req, pre)
        except ResolveError as exc:
            self.say(f"keeping {req.name} {locked}: {exc}")
            return None

    def registry_location(self) -> str:
        return self.registry.location if self.registry else str(self.ws.registry)

    def _ensure(self, name: str, locked: LockedPlugin, constraint: str) -> LockedPlugin:
        """``locked`` on disk: verified as it is, or fetched exactly as pinned."""
        try:
            verify_installed(self.ws.plugin_dir, name, locked, self.ws.lockfile)
            return locked
        except MarketError as exc:
            if (self.ws.plugin_dir / folder_name(name, locked.version)).exists():
                self.say(f"reinstalling {name} {locked.version}: {exc}")
        index = self._index_now()
        entry = index.entry(name, locked.version)
        if entry is None:
            raise InstallError(
                f"{name} {locked.version} is pinned in {self.ws.lockfile} but registry "
                f"{self.registry_location()} no longer lists it"
            )
        if entry.sha256 != locked.archive_sha256:
            raise InstallError(
                f"{name} {locked.version}: registry {self.registry_location()} lists an archive "
                f"with sha256 {entry.sha256}, but {self.ws.lockfile} pins "
                f"{locked.archive_sha256}; refusing a package that changed after it was locked"
            )
        return self._fetch(entry, constraint, locked)

    def _fetch(self, entry: IndexEntry, constraint: str, old: LockedPlugin | None) -> LockedPlugin:
        m = entry.manifest
        label = f"{m.name} {m.version}"
        assert self.registry is not None
        archive = self.registry.fetch_archive(entry, self.progress(label), self.ws.max_package_size)
        try:
            package = self._verify(archive, entry, old)
        except MarketError:
            archive.unlink(missing_ok=True)  # a refused archive never stays in the cache
            raise
        self._shadow_note(m.name)
        self._place(package)
        return LockedPlugin(
            version=m.version,
            kind=m.kind,
            constraint=constraint,
            signer=package.signer,
            archive_sha256=package.archive_sha256,
            payload_sha256=package.payload_sha256,
            manifest_sha256=_sha(package.manifest_bytes),
            registry=self.registry_location(),
        )

    def _verify(self, archive: Path, entry: IndexEntry, old: LockedPlugin | None) -> Package:
        """The package in ``archive``, once everything about it checks out."""
        m = entry.manifest
        label = f"{m.name} {m.version}"
        try:
            package = read_package(archive, self.ws.trust_store())
        except UnknownSigner as exc:
            opts = self.ws.trust_options()
            raise InstallError(
                f"{label} is signed by key {exc.key_id}, which your trust store "
                f"({self.ws.trust_dir}) does not hold; refused. If you trust this publisher, "
                f"add their key: `wasmgate plugin trust PUBFILE{opts}` with the file they "
                f"give you, or `wasmgate plugin trust --from-registry {exc.key_id}{opts}"
                f"{self.ws.registry_option()}`"
            ) from None
        except MarketError as exc:
            reason = str(exc).replace(f"{archive}: ", "")
            raise InstallError(
                f"{label} from {self.registry_location()}: refused: {reason}"
            ) from None
        got = package.manifest
        if (got.name, got.version) != (m.name, m.version) or package.archive_sha256 != entry.sha256:
            raise InstallError(
                f"{label}: the downloaded package is {got.name} {got.version}; "
                "the registry's index and archive disagree; refused"
            )
        if old is not None and old.version == m.version and old.signer != package.signer:
            raise InstallError(
                f"{label}: signed by {package.signer}, but the lockfile pins signer {old.signer}"
            )
        if got.kind == "python":
            self._check_python(package)
        return package

    def _check_python(self, package: Package) -> None:
        from market.wheel import conflicting_modules, inspect_wheel, unmet_requirements

        label = f"{package.manifest.name} {package.manifest.version}"
        info = inspect_wheel(package.payload, f"{label}: {package.manifest.payload}")
        unmet = unmet_requirements(info)
        if unmet:
            raise InstallError(
                f"{label} needs what the gateway's Python environment lacks: "
                + "; ".join(unmet)
                + " (plugins get no dependency installs; add them to the environment first)"
            )
        site = (
            self.ws.plugin_dir / folder_name(package.manifest.name, package.manifest.version) / SITE
        )
        clash = conflicting_modules(info, site)
        if clash:
            raise InstallError(
                f"{label}: its module(s) {', '.join(clash)} are already importable in the "
                "gateway's environment; one would shadow the other, so it is refused"
            )

    def _shadow_note(self, name: str) -> None:
        if any(ep.name == name for ep in entry_points(group="wasmgate.plugins")):
            self.say(
                f"note: {name!r} is also a plugin of the gateway's environment; "
                f"configs next to {self.ws.lockfile} now use the installed package"
            )

    def _place(self, package: Package) -> Path:
        m = package.manifest
        dest = self.ws.plugin_dir / folder_name(m.name, m.version)
        if dest.exists():
            try:
                same = (dest / "manifest.json").read_bytes() == package.manifest_bytes
                verify_installed(
                    self.ws.plugin_dir,
                    m.name,
                    LockedPlugin(
                        version=m.version,
                        kind=m.kind,
                        signer=package.signer,
                        archive_sha256=package.archive_sha256,
                        payload_sha256=package.payload_sha256,
                        manifest_sha256=_sha(package.manifest_bytes),
                    ),
                    self.ws.lockfile,
                )
                if same:
                    return dest
            except (OSError, MarketError):
                pass
            self._discard(dest)
        extra = None
        if m.kind == "python":
            from market.wheel import install_wheel

            def extra(folder: Path) -> None:
                install_wheel(package.payload, folder / SITE, f"{m.name} {m.version}")

        return unpack(package, dest, extra)

    def _discard(self, folder: Path) -> None:
        trash = folder.with_name(f".{folder.name}.old.partial")
        shutil.rmtree(trash, ignore_errors=True)
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _commit(self, lock: Lockfile) -> None:
        self.ws.lockfile.parent.mkdir(parents=True, exist_ok=True)
        write_lock(self.ws.lockfile, lock)
        keep = {folder_name(n, p.version) for n, p in lock.plugins.items()}
        try:
            entries = list(self.ws.plugin_dir.iterdir())
        except OSError:
            return
        for path in entries:
            if path.name in keep or path.is_symlink() or not path.is_dir():
                continue
            ours = _INSTALLED.match(path.name) and (path / "manifest.json").is_file()
            if ours or _PARTIAL.match(path.name):
                shutil.rmtree(path, ignore_errors=True)


def _lower(version: str, than: str) -> bool:
    from packaging.version import Version

    return Version(version) < Version(than)


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def check_lock(ws: Workspace) -> list[str]:
    """Problems with what the lockfile pins, as lines (empty when all verify)."""
    try:
        lock = read_lock(ws.lockfile)
    except LockfileError as exc:
        return [str(exc)]
    problems = []
    for name, locked in sorted(lock.plugins.items()):
        try:
            verify_installed(ws.plugin_dir, name, locked, ws.lockfile)
        except MarketError as exc:
            problems.append(str(exc))
    return problems
