"""Reloading a running gateway when its files change, or on SIGHUP.

:class:`Reloader` watches the configuration file and every file it was read from
besides (the Kubernetes manifests of ``[kubernetes]``, files appearing in or vanishing
from their folders, and ``gateway.lock``), polling their size and modification time
once a second. On a change, or on SIGHUP, it builds a complete new
:class:`~core.gateway.Snapshot` (routes, chains, pools) and swaps it in with
:meth:`~core.gateway.Gateway.swap`: requests in flight finish on the snapshot they
started with, and no listener or connection is closed. A configuration that fails to
load or build is logged, and the current one keeps serving.

Listener addresses, worker counts, the access log and ``[tracing]`` are read only at
start; a change to them is logged as needing a restart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

from core.config import GatewayConfig
from core.errors import ConfigError, GatewayError
from core.gateway import Gateway, Snapshot
from core.wording import plural

log = logging.getLogger("wasmgate.reload")
Fingerprint = tuple[tuple[str, int, int], ...]


def watched_files(path: Path, cfg: GatewayConfig) -> list[Path]:
    """The files a reload should follow: the config, its manifests, the lockfile."""
    files = [path, *cfg.sources]
    base = path.parent
    if cfg.kubernetes is not None:
        from core.ingress.objects import manifest_files

        files += manifest_files([base / m for m in cfg.kubernetes.manifests])
    files.append(base / cfg.market.lockfile)
    return list(dict.fromkeys(files))


def fingerprint(files: list[Path]) -> Fingerprint:
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((str(f), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(f), -1, -1))
    return tuple(out)


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
        self.interval = interval
        self.version = 1
        self.attempts = 0
        self.loaded_at = time.time()
        self.last_result: dict[str, object] | None = None  # the last reload's outcome
        self._files = watched_files(path, gateway.snapshot.config)
        self._seen = fingerprint(self._files)

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

    def reload(self, why: str) -> bool:
        """Build and swap in a new snapshot; False (old one kept) if it fails."""
        old = self.gateway.snapshot.config
        try:
            if _empty(self.path):
                # A file being rewritten is empty for a moment (truncated, then written);
                # loaded, it would be a valid configuration that serves nothing.
                raise ConfigError(str(self.path), ["the file is empty (still being written?)"])
            snap = self.build(self.gateway.snapshot)
        except (ConfigError, GatewayError) as exc:
            log.error("reload (%s) failed; still serving the previous configuration:\n%s", why, exc)
            self._record(why, str(exc))
            return False
        except Exception as exc:  # a bug of ours must not stop the gateway
            log.exception(
                "reload (%s) failed; still serving the previous configuration: %r", why, exc
            )
            self._record(why, f"internal error: {exc!r}")
            return False
        cfg = snap.config
        if cfg.server.listen != old.server.listen or cfg.server.workers != old.server.workers:
            log.warning("reload: server.listen and server.workers take effect at the next restart")
        if cfg.tracing != old.tracing:
            log.warning("reload: [tracing] takes effect at the next restart")
        self.gateway.swap(snap)
        self.version += 1
        self.loaded_at = time.time()
        self._record(why, None)
        self._files = watched_files(self.path, cfg)
        self._seen = fingerprint(self._files)
        log.info(
            "reloaded (%s): configuration %d, %s, %s",
            why,
            self.version,
            plural(len(cfg.routes), "route"),
            plural(len(cfg.upstreams), "upstream"),
        )
        return True

    def changed(self) -> bool:
        files = self._files
        if self.gateway.snapshot.config.kubernetes is not None:
            files = watched_files(self.path, self.gateway.snapshot.config)  # new files too
        now = fingerprint(files)
        if now == self._seen:
            return False
        self._files, self._seen = files, now
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        hup = asyncio.Event()
        loop.add_signal_handler(signal.SIGHUP, hup.set)
        try:
            while not stop.is_set():
                try:
                    async with asyncio.timeout(self.interval):
                        await hup.wait()
                except TimeoutError:
                    pass
                if hup.is_set():
                    hup.clear()
                    self.reload("SIGHUP")
                    self.changed()  # what SIGHUP loaded is the new baseline
                elif self.changed():
                    # Let a writer finish: one more interval of quiet before loading.
                    await asyncio.sleep(min(self.interval, 0.2))
                    self.changed()
                    self.reload("files changed")
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
