"""What the admin API shows of one snapshot, computed once per snapshot, off the loop.

The facts behind ``GET /config``, ``/routes`` and ``/plugins`` that cost real work (the
redacted configuration and its hash, each Python filter's distribution version, which
scans every installed distribution's metadata, wasmgate's own version) do not change
while a snapshot serves. :class:`Views` builds them in a worker thread at the first
read of a snapshot and keeps them as long as the snapshot lives; every later read is a
dictionary lookup, so no admin call holds the event loop the data plane runs on.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from typing import TYPE_CHECKING, Any

from core.chain import PluginRegistry
from core.config import GatewayConfig
from core.config_redact import core_config_schema, redact_config
from core.errors import PluginError
from core.metrics import config_hash
from core.metrics_render import wasmgate_version
from plugin_sdk import pools

if TYPE_CHECKING:
    from core.gateway import Snapshot
    from plugin_sdk.chain import FilterInstance


@dataclass(frozen=True)
class SnapshotView:
    config: dict[str, Any]  # redacted
    hash: str
    versions: dict[int, str]  # id(FilterInstance) -> version of its plugin
    wasmgate: str = ""  # the installed wasmgate's version


class Views:
    """One :class:`SnapshotView` per live snapshot, built once, in the ``files`` pool."""

    def __init__(self) -> None:
        self._views: weakref.WeakKeyDictionary[Snapshot, asyncio.Future[SnapshotView]] = (
            weakref.WeakKeyDictionary()
        )

    async def get(self, snap: Snapshot) -> SnapshotView:
        pending = self._views.get(snap)
        if pending is None:
            # The "files" pool (plugin_sdk.pools), like the dashboard's other file reads:
            # bounded, so admin reads cannot crowd out other blocking work.
            pending = asyncio.ensure_future(pools.offload("files", _build, snap, snap.filters()))
            self._views[snap] = pending
        try:
            return await asyncio.shield(pending)
        except Exception:
            if self._views.get(snap) is pending:
                del self._views[snap]  # the next read tries again
            raise


def _build(snap: Snapshot, filters: list[FilterInstance]) -> SnapshotView:
    view = build_view(snap.config, filters)
    return replace(view, hash=config_hash(snap), wasmgate=wasmgate_version())


def build_view(config: GatewayConfig, filters: list[FilterInstance]) -> SnapshotView:
    """Blocking (metadata scans, schema walks): run it in a thread. ``filters``: the
    snapshot's instances, whose plugins' schemas say which config fields are secret."""
    dists = packages_distributions()
    versions = {id(inst): _version(inst, dists) for inst in filters}
    schemas: dict[str, dict[str, Any]] = {}
    for inst in filters:
        schema = config_schema(inst)
        if schema is not None:
            schemas.setdefault(str(inst.plugin).partition("@")[0], schema)
            schemas.setdefault("filter:" + inst.name, schema)
    registry: list[PluginRegistry] = []

    def lookup(plugin: str | None, wasm: str | None, name: str) -> dict[str, Any] | None:
        found = schemas.get(plugin or "") or schemas.get("filter:" + name)
        if found is None and plugin and wasm is None:
            # A filter no route uses has no instance: ask the installed plugin itself.
            if not registry:
                registry.append(PluginRegistry())
            try:
                found = registry[0].load(plugin).Config.model_json_schema()
            except PluginError:
                found = None
            schemas[plugin] = found or {}
        return found or None

    data = config.model_dump(mode="json", exclude_none=True)
    return SnapshotView(
        config=redact_config(data, _core_schema(), lookup), hash="", versions=versions
    )


def config_schema(inst: FilterInstance) -> dict[str, Any] | None:
    """The JSON Schema of a filter's config: its Python model's or its WASM manifest's."""
    wasm_schema = getattr(inst.filter, "config_schema", None)
    if isinstance(wasm_schema, dict):
        return wasm_schema
    model = getattr(type(inst.filter), "Config", None)
    if model is None or type(inst.filter).__name__ == "WasmFilter":
        return None
    schema: dict[str, Any] = model.model_json_schema()
    return schema


_CORE: dict[str, Any] = {}


def _core_schema() -> dict[str, Any]:
    if not _CORE:
        _CORE.update(core_config_schema(GatewayConfig.model_json_schema()))
    return _CORE


def filter_info(inst: FilterInstance, view: SnapshotView) -> dict[str, Any]:
    """A filter instance as ``/routes`` and ``/plugins`` show it."""
    name, _, ver = str(inst.plugin).partition("@")
    info = {
        "name": inst.name,
        "plugin": name,
        "kind": "wasm" if type(inst.filter).__name__ == "WasmFilter" else "python",
        "version": ver or view.versions.get(id(inst), ""),
        "fail": "open" if inst.fail_open else "closed",
        "errors": inst.errors,
        "phases": [
            p.removeprefix("on_")
            for p in ("on_request", "on_response", "on_log")
            if getattr(inst, p) is not None
        ],
    }
    if getattr(inst.filter, "service", False):
        info["service"] = True  # a [services.NAME]: root-only, on no route
    return info


def _version(inst: FilterInstance, dists: Mapping[str, list[str]]) -> str:
    """The version of the distribution a Python filter's class comes from."""
    if "@" in str(inst.plugin):
        return str(inst.plugin).partition("@")[2]
    top = type(inst.filter).__module__.split(".")[0]
    for dist in dists.get(top, []):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return ""
