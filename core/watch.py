"""Following the files of a snapshot: inotify through watchfiles, or polling.

The only module that imports ``watchfiles``. :class:`FileWatch` calls ``on_change``
when one of the :class:`~core.inputs.Inputs` it follows is written, replaced by a
rename, deleted or created, or when a file appears in or vanishes from one of their
folders. Modes (``server.watch_files``):

* ``auto``: the folders holding the files are watched (not recursively) with
  watchfiles' notifier (inotify on Linux) in a worker thread; an event counts when its
  path is a followed file, a symbolic link on the way to one (a Kubernetes ConfigMap
  volume swaps its ``..data`` link), or a file of a followed folder. Watching folders
  rather than files is what survives an editor's write-to-temporary-then-rename and a
  delete followed by a create. A burst of events (within ``STEP_MS`` of each other, up
  to ``DEBOUNCE_MS``) is one change. If the notifier cannot start (no inotify, the
  watch limit reached), it logs a warning and polls instead.
* ``poll``: once per ``interval`` seconds, the size, modification time and inode of
  each file (and the listing of each folder) are compared, off the event loop. For
  filesystems whose changes inotify does not see (NFS, some container mounts).
* ``off``: nothing is followed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.inputs import Inputs

log = logging.getLogger("wasmgate.reload")
STEP_MS = 200  # quiet time that ends a burst of events
DEBOUNCE_MS = 2000  # the longest a burst is waited for
Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True)
class Target:
    """What to watch for one :class:`Inputs`: folders, and the paths that count."""

    dirs: frozenset[str]  # folders to watch (not recursively)
    names: frozenset[str]  # an event on one of these paths counts
    trees: frozenset[str]  # an event on a path directly inside one of these counts
    files: tuple[Path, ...]  # for polling: the files
    tree_paths: tuple[Path, ...]  # and the folders whose listing counts


def target(inputs: Inputs) -> Target:
    dirs: set[str] = set()
    names: set[str] = set()
    trees: set[str] = set()
    for tree in inputs.trees:
        # Every folder of the tree: a file added deeper counts as well.
        for folder in [tree, *_subfolders(tree)]:
            trees.add(str(folder))
            dirs.add(str(folder))
    for path in inputs.files:
        for step in [path, *_links(path)]:
            names.add(str(step))
            watched, counted = _watchable(step.parent)
            dirs.add(str(watched))
            if counted is not None:
                names.add(str(counted))
    return Target(
        frozenset(dirs),
        frozenset(names),
        frozenset(trees),
        tuple(sorted(inputs.files)),
        tuple(sorted(inputs.trees)),
    )


def _subfolders(tree: Path) -> list[Path]:
    try:
        return sorted(p for p in tree.rglob("*") if p.is_dir())
    except OSError:
        return []


def _links(path: Path) -> list[Path]:
    """The symbolic links met resolving ``path``, and what they lead to (real path)."""
    out: list[Path] = []
    current = path
    for _ in range(40):  # as the kernel's limit on links followed
        parts = current.parts
        for i in range(1, len(parts)):
            step = Path(*parts[: i + 1])
            if step.is_symlink():
                try:
                    target_ = Path(os.readlink(step))
                except OSError:
                    return out
                out.append(step)
                current = Path(os.path.normpath(step.parent / target_ / Path(*parts[i + 1 :])))
                break
        else:
            if current != path:
                out.append(current)
            return out
    return out


def _watchable(folder: Path) -> tuple[Path, Path | None]:
    """The nearest existing folder at or above ``folder``, and, when that is not
    ``folder`` itself, its child on the way (whose creation then counts)."""
    child: Path | None = None
    while not folder.is_dir() and folder.parent != folder:
        folder, child = folder.parent, folder
    return folder, child


def stamp(inputs: Inputs) -> Fingerprint:
    """The fingerprint of ``inputs`` now (a snapshot takes one when it is built)."""
    return fingerprint(
        Target(
            frozenset(),
            frozenset(),
            frozenset(),
            tuple(sorted(inputs.files)),
            tuple(sorted(inputs.trees)),
        )
    )


def fingerprint(t: Target) -> Fingerprint:
    """Size, modification time and inode of each file; the listing of each tree."""
    out: list[tuple[str, int, int, int]] = []
    for f in t.files:
        try:
            st = f.stat()
            out.append((str(f), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((str(f), -1, -1, -1))
    for tree in t.tree_paths:
        try:
            listing = sorted(p for p in tree.rglob("*") if p.is_file())
        except OSError:
            listing = []
        out += [(str(p), 0, 0, 0) for p in listing]
    return tuple(out)


class FileWatch:
    """Calls ``on_change`` (on the event loop) when a followed file changes."""

    def __init__(self, on_change: Callable[[], None], interval: float = 1.0) -> None:
        self.on_change = on_change
        self.interval = interval
        self.mode = "off"
        self.target = Target(frozenset(), frozenset(), frozenset(), (), ())
        self._task: asyncio.Task[None] | None = None
        self._key: tuple[str, frozenset[str]] | None = None

    def follow(self, inputs: Inputs, mode: str, changed: Callable[[], bool]) -> None:
        """Follow ``inputs`` from now on (the paths that count change at once; the
        notifier restarts only when the folders to watch or the mode change).

        ``changed`` says whether a file changed since the snapshot was built; it is
        asked (in a worker thread) once a new notifier is in place, and the files are
        compared with how they were now: that closes the gap between the build and
        the start of watching.
        """
        self.target = target(inputs)
        key = (mode, self.target.dirs)
        if key == self._key:
            return
        self._key = key
        old, self._task = self._task, None
        self.mode = mode
        loop = asyncio.get_running_loop()
        if mode == "auto":
            now = self.target
            before = fingerprint(now)

            def since() -> bool:
                return changed() or fingerprint(now) != before

            self._task = loop.create_task(self._notify(self.target.dirs, since))
        elif mode == "poll":
            self._task = loop.create_task(self._poll(changed))
        if old is not None:
            old.cancel()  # after the new one started: no gap in between

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._key = None

    def _counts(self, _change: object, path: str) -> bool:
        t = self.target
        return path in t.names or os.path.dirname(path) in t.trees

    async def _notify(self, dirs: frozenset[str], changed: Callable[[], bool]) -> None:
        try:
            from watchfiles import awatch

            started = False
            async for changes in awatch(
                *sorted(dirs),
                watch_filter=self._counts,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                rust_timeout=1000,
                yield_on_timeout=True,  # an empty set: the notifier is in place
                recursive=False,
            ):
                if changes or (not started and await asyncio.to_thread(changed)):
                    self.on_change()
                started = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no inotify, watch limit reached, a folder gone...
            log.warning(
                "cannot watch the configuration's files with inotify (%s); polling them "
                "every %g s instead",
                exc,
                self.interval,
            )
            self.mode = "poll"
            await self._poll(changed)

    async def _poll(self, changed: Callable[[], bool]) -> None:
        followed = self.target
        seen = await asyncio.to_thread(fingerprint, followed)
        if await asyncio.to_thread(changed):
            self.on_change()
        while True:
            await asyncio.sleep(self.interval)
            if self.target is not followed:  # a reload changed the set: a new baseline
                followed = self.target
                seen = await asyncio.to_thread(fingerprint, followed)
                continue
            now = await asyncio.to_thread(fingerprint, followed)
            if now != seen:
                seen = now
                self.on_change()
