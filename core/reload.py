"""Reloading a running gateway when its files change, or on SIGHUP.

:class:`Reloader` follows every file the current snapshot was built from
(:mod:`core.inputs`: the configuration, its manifests, ``gateway.lock``, certificates
and keys, ``.wasm`` modules and their manifests, and the files Python filters list)
through :class:`~core.watch.FileWatch`: inotify, polling where inotify cannot be
used, or nothing (``server.watch_files``). On a change, on SIGHUP or on ``POST
/reload``, it builds a complete new :class:`~core.gateway.Snapshot` (routes, chains,
pools) and swaps it in with :meth:`~core.gateway.Gateway.swap`: requests in flight
finish on the snapshot they started with, and no listener or connection is closed.
A configuration that fails to load or build is logged, and the current one keeps
serving; the files the refused configuration names are followed too, so that
creating or fixing one of them triggers the next try.

Listener addresses, worker counts, the access log, ``[tracing]`` and ``[executors]`` are
read only at start; a change to them is logged as needing a restart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core import store
from core.config import load_config
from core.errors import ConfigError, GatewayError
from core.gateway import Gateway, Snapshot
from core.inputs import Inputs, config_inputs
from core.watch import FileWatch, stamp
from core.wording import plural

log = logging.getLogger("wasmgate.reload")


def _empty(path: Path) -> bool:
    try:
        return not path.read_bytes().strip()
    except OSError:
        return False  # a file that cannot be read is reported by the build


class Reloader:
    """Keeps ``gateway`` serving the configuration at ``path``."""

    def __init__(
        self,
        gateway: Gateway,
        path: Path,
        build: Callable[[Snapshot], Snapshot],
        interval: float = 1.0,
    ) -> None:
        self.gateway = gateway
        self.path = path
        self.build = build
        self.version = 1
        self.attempts = 0
        self.loaded_at = time.time()
        self.last_result: dict[str, object] | None = None  # the last reload's outcome
        self.files = FileWatch(self._files_changed, interval)
        self._refused = Inputs()  # what the last refused configuration named
        self._wake = asyncio.Event()
        self._hup = False
        self._dirty = False
        self._watching = False
        self._lock = asyncio.Lock()
        # Builds run here, one at a time, off the event loop.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wasmgate-reload")

    def _record(self, why: str, error: str | None) -> None:
        self.attempts += 1
        self.last_result = {
            "ok": error is None,
            "trigger": why,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "error": error,
            "version": self.version,
        }
        from core.metrics import config_hash, record_reload

        record_reload(error is None, self.version, config_hash(self.gateway.snapshot))

    async def reload(self, why: str) -> bool:
        """Build and swap in a new snapshot; False (old one kept) if it fails.

        The build (reading files, compiling Wasm modules, constructing every filter)
        runs in this reloader's own thread, never on the event loop, so proxied
        requests keep flowing while it runs; only the swap happens on the loop. One
        reload at a time: a trigger that arrives meanwhile waits for its turn.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            current = self.gateway.snapshot
            try:
                snap = await loop.run_in_executor(self._pool, self._build, current)
            except (ConfigError, GatewayError) as exc:
                log.error(
                    "reload (%s) failed; still serving the previous configuration:\n%s", why, exc
                )
                await self._refuse(why, str(exc))
                return False
            except Exception as exc:  # a bug of ours must not stop the gateway
                log.exception(
                    "reload (%s) failed; still serving the previous configuration: %r", why, exc
                )
                await self._refuse(why, f"internal error: {exc!r}")
                return False
            return self._swap(why, current, snap)

    def _build(self, current: Snapshot) -> Snapshot:
        """The new snapshot (in the reload thread)."""
        if _empty(self.path):
            # A file being rewritten is empty for a moment (truncated, then written);
            # loaded, it would be a valid configuration that serves nothing.
            raise ConfigError(str(self.path), ["the file is empty (still being written?)"])
        try:
            return self.build(current)
        except BaseException:
            store.configure(current.config)  # building set the new [store]; still the old
            raise

    def _swap(self, why: str, current: Snapshot, snap: Snapshot) -> bool:
        old = current.config
        cfg = snap.config
        if cfg.server.listen != old.server.listen or cfg.server.workers != old.server.workers:
            log.warning("reload: server.listen and server.workers take effect at the next restart")
        if cfg.tracing != old.tracing:
            log.warning("reload: [tracing] takes effect at the next restart")
        if cfg.executors != old.executors:
            log.warning("reload: [executors] takes effect at the next restart")
        self.gateway.swap(snap)
        self.version += 1
        self.loaded_at = time.time()
        self._record(why, None)
        self._refused = Inputs()
        self._follow()
        log.info(
            "reloaded (%s): configuration %d, %s, %s",
            why,
            self.version,
            plural(len(cfg.routes), "route"),
            plural(len(cfg.upstreams), "upstream"),
        )
        return True

    async def _refuse(self, why: str, error: str) -> None:
        self._record(why, error)
        loop = asyncio.get_running_loop()
        self._refused = await loop.run_in_executor(self._pool, self._named_by_refused)
        self._follow()

    def _named_by_refused(self) -> Inputs:
        """The files the refused configuration names (in the reload thread)."""
        try:
            return config_inputs(load_config(self.path), self.path)
        except (ConfigError, GatewayError, OSError):
            return Inputs()  # the configuration file itself is followed anyway

    def _follow(self) -> None:
        """Point the file watcher at the current snapshot's files (and a refused
        configuration's); a no-op before :meth:`watch` started it."""
        if self._watching:
            snap = self.gateway.snapshot
            self.files.follow(
                snap.inputs | self._refused,  # the configuration file is in both
                snap.config.server.watch_files,
                lambda: stamp(snap.inputs) != snap.stamp,
            )

    def watching(self) -> dict[str, object]:
        """How and which files are followed now (for ``GET /config``)."""
        t = self.files.target
        return {
            "mode": self.files.mode,
            "files": [str(p) for p in sorted({*t.files, *t.tree_paths})],
        }

    def _files_changed(self) -> None:
        self._dirty = True
        self._wake.set()

    def _sighup(self) -> None:
        self._hup = True
        self._wake.set()

    def arm(self) -> None:
        """Take SIGHUP now (a reload at the next turn of :meth:`watch`). Called before
        the listeners open, so that a SIGHUP sent as soon as the port answers never
        meets the default action (which ends the process)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._sighup)

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload on SIGHUP and when a followed file changes, until ``stop`` is set
        (or the task is cancelled)."""
        loop = asyncio.get_running_loop()
        self.arm()
        self._watching = True
        self._follow()
        try:
            while not stop.is_set():
                await self._wake.wait()
                self._wake.clear()
                if self._hup:
                    self._hup = self._dirty = False
                    await self.reload("SIGHUP")
                elif self._dirty:
                    self._dirty = False
                    await self.reload("files changed")
        finally:
            self._watching = False
            self.files.close()
            self._pool.shutdown(wait=False)
            loop.remove_signal_handler(signal.SIGHUP)
