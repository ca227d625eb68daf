"""Plugins installed from the market, as the engine sees them (engine-facing).

The engine (``core/``) and the market (``market/``) do not import each other. The
engine finds installed plugins through the ``wasmgate.plugin_sources`` entry-point
group: each entry is a callable ``(lockfile: Path, plugin_dir: Path) -> PluginSource``.
A source answers with :class:`InstalledPlugin` values, checked against the lockfile
(digests of what is on disk) before they are returned, and raises an exception whose
text says what is wrong otherwise. Plugin authors do not need this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from plugin_sdk.filter import Filter

SOURCE_GROUP = "wasmgate.plugin_sources"


@dataclass(frozen=True)
class InstalledPlugin:
    """One plugin the lockfile pins, verified on disk."""

    name: str
    version: str
    kind: Literal["wasm", "python"]
    signer: str  # key id of the publisher's signature
    digest: str  # sha256 of the payload
    folder: Path  # where the package is unpacked
    module: Path | None = None  # wasm: the .wasm payload (its manifest.json is beside it)
    filter_class: type[Filter[Any]] | None = None  # python: the entry point's class


class PluginSource(Protocol):
    """What a ``wasmgate.plugin_sources`` entry returns."""

    def names(self) -> list[str]:
        """Names of the plugins the lockfile pins."""
        ...

    def load(self, name: str) -> InstalledPlugin:
        """Verify and load ``name``; raises with a clear message when it cannot."""
        ...
