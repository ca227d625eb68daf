"""Proxy-Wasm filters: the host (on wasmtime) that runs filters built with the public
Proxy-Wasm SDKs unchanged.

Layout: :mod:`core.wasm.vm` compiles, caches and runs modules (the only module that
imports wasmtime), :mod:`core.wasm.host` implements the ABI's host functions and WASI,
:mod:`core.wasm.plugin` runs the plugin lifecycle (and its CPU budget),
:mod:`core.wasm.adapter` adapts it to the filter contract, :mod:`core.wasm.shared` holds
shared data and queues, :mod:`core.wasm.callout` runs ``proxy_http_call`` (to the
upstream :mod:`core.wasm.clusters` resolves), :mod:`core.wasm.sharing` holds what VM
sharing needs, :mod:`core.wasm.budget` does the CPU and back-off arithmetic,
:mod:`core.wasm.properties` answers ``proxy_get_property``, :mod:`core.wasm.metrics`
keeps the metrics a filter defines, :mod:`core.wasm.foreign` the foreign functions.
This package is imported only when a configuration names a ``.wasm`` filter.

In gateway.toml::

    [filters.deny-bots]
    wasm = "filters/deny.wasm"          # relative to the gateway.toml
    config = { deny_header = "x-bot" }  # a table goes to proxy_on_configure as JSON,
                                        # a string ("x-bot", YAML...) as it is
    properties = { team = "blue" }      # read with proxy_get_property("team")
    root_id = ""                        # the root context id the module registers
    vm_id = ""                          # default its name; the same module and vm_id:
                                        # one shared instance (core.wasm.sharing)
    limits = { memory_mb = 64, deadline_ms = 50 }   # and the sandbox's other bounds:
                                        # see WasmLimits and docs/wasm.md
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import FilterDef, Node, ServiceDef
from core.errors import PluginError
from core.wasm import foreign, shared_redis
from core.wasm.adapter import WasmFilter
from core.wasm.plugin import PluginVm
from core.wasm.sharing import VmRegistry
from core.wasm.vm import WasmLoadError, WasmTrap, compile_module
from plugin_sdk import store
from plugin_sdk.chain import FilterInstance

__all__ = [
    "PluginVm",
    "WasmFilter",
    "WasmTrap",
    "build_service",
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


def _check_schema(schema: dict[str, Any], config: Any) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.path)):
        where = "".join(f".{p}" for p in error.path)
        problems.append(f"config{where}: {error.message}")
    return problems


def config_bytes(value: dict[str, Any] | str) -> bytes:
    """What a filter gets for ``config`` / ``vm_config``: a string as it is (UTF-8), a
    table as JSON; an empty table or string is size 0."""
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode() if value else b""


def check_config(schema: dict[str, Any], config: dict[str, Any] | str) -> list[str]:
    """The manifest schema's problems with ``config``. A table is checked as it is. A
    string is checked as a string where the schema admits one; otherwise it must be
    JSON (an Envoy user's ``StringValue`` holding JSON), and its parsed value is checked."""
    if isinstance(config, dict) or _admits_string(schema):
        return _check_schema(schema, config)
    try:
        parsed = json.loads(config)
    except ValueError:
        kind = schema.get("type", "something else")
        return [
            f"config: a string that is not JSON, but the manifest's config_schema "
            f"describes {'an' if str(kind)[:1] in 'aeiou' else 'a'} {kind}"
        ]
    return _check_schema(schema, parsed)


def _admits_string(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def build_wasm_filter(
    name: str,
    d: FilterDef,
    base_dir: Path,
    where: str,
    vms: VmRegistry | None = None,
    *,
    service: bool = False,
    node: Node | None = None,
) -> FilterInstance:
    """Compile (or load from cache) and start a Proxy-Wasm filter; raises PluginError.

    ``vms`` holds the VMs of the configuration being built: a filter naming the module
    and ``vm_id`` of one of them joins it (a root context of its own)."""
    assert d.wasm is not None
    path = (base_dir / d.wasm).resolve()
    label = f"{where}: wasm filter {name!r} ({d.wasm})"
    if d.shared_data == "redis" and not store.configured():
        raise PluginError(f'{label}: shared_data = "redis" needs a [store] with redis = "..."')
    try:
        wasm = path.read_bytes()
    except OSError as exc:
        raise PluginError(f"{label}: cannot read: {exc.strerror or exc}") from None
    manifest = load_manifest(path, (base_dir / d.manifest) if d.manifest else None)
    if manifest is not None and isinstance(manifest.get("config_schema"), dict):
        problems = check_config(manifest["config_schema"], d.config)
        if problems:
            raise PluginError(f"{label}: " + "; ".join(problems))
    root_id = d.root_id or str((manifest or {}).get("root_id", ""))
    config = config_bytes(d.config)
    vm_id = d.vm_id or name
    try:
        foreign.registry()  # loaded once; a broken entry point is a configuration error
    except PluginError as exc:
        raise PluginError(f"{where}: {exc}") from None
    try:
        module, digest = compile_module(wasm, source=str(path))
        vm = (vms or {}).get((digest, vm_id))
        if vm is not None and not vm.closed:
            _check_shared(vm, d)
            root = vm.add_root(name, root_id, config, d.properties)
        else:
            vm = PluginVm(
                name,
                module,
                config=config,
                vm_config=config_bytes(d.vm_config),
                root_id=root_id,
                vm_id=vm_id,
                memory_limit=d.limits.memory_mb << 20,
                deadline_ms=d.limits.deadline_ms,
                pause_timeout=d.limits.pause_timeout,
                limits=d.limits,
                properties=d.properties,
                node=node,
            )
            root = vm.roots[vm.root_id]
            if vms is not None:
                vms[digest, vm_id] = vm
    except (WasmLoadError, WasmTrap, PluginError) as exc:
        raise PluginError(f"{label}: {exc}") from None
    if d.shared_data == "redis":
        shared_redis.bind(vm.shared)
    flt = WasmFilter(
        vm,
        None if d.bodies is None else tuple(d.bodies),
        fail_open=d.fail == "open",
        root=root,
        service=service,
    )
    if manifest is not None and isinstance(manifest.get("config_schema"), dict):
        flt.config_schema = manifest["config_schema"]
    flt.name = name
    flt.plugin = f"wasm:{d.wasm}"  # as gateway.toml names it: two filter.wasm differ
    inst = FilterInstance(name, flt.plugin, flt, d.fail == "open")
    manifests = manifest_candidates(path, (base_dir / d.manifest) if d.manifest else None)
    inst.files = (path, *(m.absolute() for m in manifests))
    return inst


def _check_shared(vm: PluginVm, d: FilterDef) -> None:
    """A VM has one VM configuration and one set of limits: plugins joining it agree."""
    differ = [
        what
        for what, same in (
            ("vm_config", vm.vm_config == config_bytes(d.vm_config)),
            ("limits", vm.limits == d.limits),
        )
        if not same
    ]
    if differ:
        raise PluginError(
            f"shares vm_id {vm.vm_id!r} (and its module) with {vm.name!r}, but its "
            f"{' and '.join(differ)} differ; plugins of one VM must agree on them"
        )


def build_service(
    name: str, d: ServiceDef, base_dir: Path, vms: VmRegistry, *, node: Node | None = None
) -> FilterInstance:
    """Start a ``[services.NAME]``: a root-only plugin on no route; raises PluginError."""
    spec = FilterDef(**d.model_dump())
    return build_wasm_filter(name, spec, base_dir, f"services.{name}", vms, service=True, node=node)


def filter_for_testing(
    path: str | Path,
    config: dict[str, Any] | str | None = None,
    *,
    name: str | None = None,
    root_id: str = "",
    vm_config: str | dict[str, Any] = "",
    fail_open: bool = False,
    limits: dict[str, Any] | None = None,
    bodies: Sequence[str] | None = None,
    properties: dict[str, Any] | None = None,
) -> FilterInstance:
    """A Proxy-Wasm filter for :mod:`plugin_sdk.testing` (the ``wasmgate.runtimes``
    entry point): the same loading, schema check and lifecycle as in the gateway."""
    path = Path(path).resolve()
    d = FilterDef.model_validate(
        {
            "wasm": str(path),
            "config": config if config is not None else {},
            "root_id": root_id,
            "vm_config": vm_config,
            "fail": "open" if fail_open else "closed",
            "limits": limits or {},
            "bodies": None if bodies is None else list(bodies),
            "properties": properties or {},
        }
    )
    return build_wasm_filter(name or path.stem, d, path.parent, "test")
