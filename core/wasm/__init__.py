"""Proxy-Wasm filters: the host (on wasmtime) that runs filters built with the public
Proxy-Wasm SDKs unchanged.

Layout: :mod:`core.wasm.vm` compiles, caches and runs modules (the only module that
imports wasmtime), :mod:`core.wasm.host` implements the ABI's host functions and WASI,
:mod:`core.wasm.plugin` runs the plugin lifecycle (and its CPU budget),
:mod:`core.wasm.adapter` adapts it to the filter contract, :mod:`core.wasm.shared` holds
shared data and queues, :mod:`core.wasm.callout` runs ``proxy_http_call``,
:mod:`core.wasm.budget` does the CPU and back-off arithmetic.
This package is imported only when a configuration names a ``.wasm`` filter.

In gateway.toml::

    [filters.deny-bots]
    wasm = "filters/deny.wasm"          # relative to the gateway.toml
    config = { deny_header = "x-bot" }  # JSON given to proxy_on_configure
    root_id = ""                        # the root context id the module registers
    limits = { memory_mb = 64, deadline_ms = 50 }   # and the sandbox's other bounds:
                                        # see WasmLimits and docs/wasm.md
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import FilterDef
from core.errors import PluginError
from core.wasm.adapter import WasmFilter
from core.wasm.plugin import PluginVm
from core.wasm.vm import WasmLoadError, WasmTrap, compile_module
from plugin_sdk.chain import FilterInstance

__all__ = [
    "PluginVm",
    "WasmFilter",
    "WasmTrap",
    "build_wasm_filter",
    "filter_for_testing",
    "load_manifest",
]


def manifest_candidates(wasm_path: Path, explicit: Path | None) -> list[Path]:
    """Where the filter's manifest is looked for, in order (the reloader watches all)."""
    if explicit:
        return [explicit]
    return [wasm_path.parent / "manifest.json", wasm_path.parent.parent / "manifest.json"]


def load_manifest(wasm_path: Path, explicit: Path | None) -> dict[str, Any] | None:
    """The filter's manifest: ``explicit``, else manifest.json beside it or one up."""
    for path in manifest_candidates(wasm_path, explicit):
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise PluginError(f"manifest {path}: {exc}") from None
            if not isinstance(data, dict):
                raise PluginError(f"manifest {path}: not a JSON object")
            return data
        if explicit:
            raise PluginError(f"manifest {path} not found")
    return None


def _check_schema(schema: dict[str, Any], config: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "(top)"
        problems.append(f"config.{where}: {error.message}")
    return problems


def build_wasm_filter(name: str, d: FilterDef, base_dir: Path, where: str) -> FilterInstance:
    """Compile (or load from cache) and start a Proxy-Wasm filter; raises PluginError."""
    assert d.wasm is not None
    path = (base_dir / d.wasm).resolve()
    label = f"{where}: wasm filter {name!r} ({d.wasm})"
    try:
        wasm = path.read_bytes()
    except OSError as exc:
        raise PluginError(f"{label}: cannot read: {exc.strerror or exc}") from None
    manifest = load_manifest(path, (base_dir / d.manifest) if d.manifest else None)
    if manifest is not None and isinstance(manifest.get("config_schema"), dict):
        problems = _check_schema(manifest["config_schema"], d.config)
        if problems:
            raise PluginError(f"{label}: " + "; ".join(problems))
    root_id = d.root_id or str((manifest or {}).get("root_id", ""))
    try:
        module, _digest = compile_module(wasm, source=str(path))
        vm = PluginVm(
            name,
            module,
            config=json.dumps(d.config).encode() if d.config else b"",  # none: size 0
            vm_config=d.vm_config.encode(),
            root_id=root_id,
            memory_limit=d.limits.memory_mb << 20,
            deadline_ms=d.limits.deadline_ms,
            pause_timeout=d.limits.pause_timeout,
            limits=d.limits,
        )
    except (WasmLoadError, WasmTrap, PluginError) as exc:
        raise PluginError(f"{label}: {exc}") from None
    flt = WasmFilter(vm, None if d.bodies is None else tuple(d.bodies), fail_open=d.fail == "open")
    if manifest is not None and isinstance(manifest.get("config_schema"), dict):
        flt.config_schema = manifest["config_schema"]
    flt.name = name
    flt.plugin = f"wasm:{d.wasm}"  # as gateway.toml names it: two filter.wasm differ
    inst = FilterInstance(name, flt.plugin, flt, d.fail == "open")
    manifests = manifest_candidates(path, (base_dir / d.manifest) if d.manifest else None)
    inst.files = (path, *(m.absolute() for m in manifests))
    return inst


def filter_for_testing(
    path: str | Path,
    config: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    root_id: str = "",
    vm_config: str = "",
    fail_open: bool = False,
    limits: dict[str, Any] | None = None,
    bodies: Sequence[str] | None = None,
) -> FilterInstance:
    """A Proxy-Wasm filter for :mod:`plugin_sdk.testing` (the ``wasmgate.runtimes``
    entry point): the same loading, schema check and lifecycle as in the gateway."""
    path = Path(path).resolve()
    d = FilterDef.model_validate(
        {
            "wasm": str(path),
            "config": config or {},
            "root_id": root_id,
            "vm_config": vm_config,
            "fail": "open" if fail_open else "closed",
            "limits": limits or {},
            "bodies": None if bodies is None else list(bodies),
        }
    )
    return build_wasm_filter(name or path.stem, d, path.parent, "test")
