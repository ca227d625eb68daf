"""The gateway's view of installed plugins: ``gateway.lock`` checked against the disk.

Registered as the ``market`` entry of the ``wasmgate.plugin_sources`` group
(:mod:`plugin_sdk.installed`), so the engine resolves ``plugin = "NAME"`` through it
without importing ``market/``. Nothing here touches the network: a plugin is loaded
from what the lockfile pins after :func:`market.lockfile.verify_installed` checked
the digests on disk; a Python package's entry point is loaded from its private
``site/`` folder (:func:`market.wheel.load_plugin`).
"""

from __future__ import annotations

from pathlib import Path

from market.errors import LockfileError
from market.lockfile import SITE, read_lock, verify_installed
from plugin_sdk.installed import InstalledPlugin


class LockedPlugins:
    """The plugins one lockfile pins."""

    def __init__(self, lockfile: Path, plugin_dir: Path) -> None:
        self.lockfile = lockfile
        self.plugin_dir = plugin_dir
        self.lock = read_lock(lockfile)
        self._loaded: dict[str, InstalledPlugin] = {}

    def names(self) -> list[str]:
        return sorted(self.lock.plugins)

    def load(self, name: str) -> InstalledPlugin:
        if name in self._loaded:
            return self._loaded[name]
        locked = self.lock.plugins.get(name)
        if locked is None:
            raise LockfileError(f"{self.lockfile} pins no plugin {name!r}")
        folder, manifest = verify_installed(self.plugin_dir, name, locked, self.lockfile)
        plugin = InstalledPlugin(
            name=name,
            version=locked.version,
            kind=locked.kind,
            signer=locked.signer,
            digest=locked.payload_sha256,
            folder=folder,
        )
        if manifest.kind == "wasm":
            plugin = _replace(plugin, module=folder / manifest.payload)
        else:
            from market.wheel import load_plugin

            cls = load_plugin(folder / SITE, name)
            plugin = _replace(plugin, filter_class=cls)
        self._loaded[name] = plugin
        return plugin


def _replace(plugin: InstalledPlugin, **changes: object) -> InstalledPlugin:
    import dataclasses

    return dataclasses.replace(plugin, **changes)  # type: ignore[arg-type]


def open_lock(lockfile: Path, plugin_dir: Path) -> LockedPlugins:
    """The ``wasmgate.plugin_sources`` entry point."""
    return LockedPlugins(lockfile, plugin_dir)
