"""Filter chains: finding plugins, building instances, running the phases.

Plugins are found through the ``wasmgate.plugins`` entry-point group — the built-in
ones too, through the project's own ``pyproject.toml`` — so this module never imports
``plugins/``. A plugin that does not fit the contract of :mod:`plugin_sdk.filter`, or
a config its model refuses, is rejected when the configuration loads, with the
filter's name, the plugin's name and the field.

Ordering (Envoy's rule): the request phase runs in chain order; the response phase
runs in reverse, and only for the filters whose request phase ran — also when a
later filter answered locally or the upstream failed, so that (for example) CORS
headers decorate an auth 401. ``on_log`` runs for every filter after the reply.
"""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.config import (
    DefaultRoute,
    FilterDef,
    FilterRef,
    GatewayConfig,
    InlineFilter,
    Node,
    Route,
    suggest,
)
from core.drive import IN_TASK
from core.errors import ConfigError, PluginError
from core.metrics import adopt
from plugin_sdk import Filter, PluginConfig
from plugin_sdk.chain import Chain, FilterInstance
from plugin_sdk.installed import SOURCE_GROUP, InstalledPlugin, PluginSource

ENTRY_POINT_GROUP = "wasmgate.plugins"
log = logging.getLogger("wasmgate.chain")


class PluginRegistry:
    """The plugins installed in this Python environment, by name."""

    def __init__(self, extra: dict[str, type[Filter[Any]]] | None = None) -> None:
        self._eps: dict[str, EntryPoint] = {
            ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)
        }
        self._loaded: dict[str, type[Filter[Any]]] = dict(extra or {})

    def names(self) -> list[str]:
        return sorted(set(self._eps) | set(self._loaded))

    def __contains__(self, name: str) -> bool:
        return name in self._eps or name in self._loaded

    def load(self, name: str) -> type[Filter[Any]]:
        """The filter class of plugin ``name``; raises PluginError."""
        cls = self._loaded.get(name)
        if cls is not None:
            return cls
        ep = self._eps.get(name)
        if ep is None:
            raise PluginError(f"unknown plugin {name!r}")
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {name!r} ({ep.value}) failed to import: {exc}") from exc
        cls = check_contract(name, obj)
        self._loaded[name] = cls
        return cls


def check_contract(name: str, obj: object) -> type[Filter[Any]]:
    """Refuse a plugin object that does not satisfy the filter contract."""
    where = f"plugin {name!r}"
    if not (isinstance(obj, type) and issubclass(obj, Filter)):
        raise PluginError(f"{where}: {obj!r} is not a subclass of plugin_sdk.Filter")
    cfg = getattr(obj, "Config", None)
    if not (isinstance(cfg, type) and issubclass(cfg, PluginConfig)):
        raise PluginError(f"{where}: Config must be a subclass of plugin_sdk.PluginConfig")
    for phase in ("on_request", "on_response", "on_log"):
        method = getattr(obj, phase)
        try:
            params = list(inspect.signature(method).parameters)
        except (TypeError, ValueError):
            raise PluginError(f"{where}: {phase} is not a method") from None
        if len(params) != 2:
            raise PluginError(f"{where}: {phase} must take (self, ctx), not ({', '.join(params)})")
    return obj


def build_filter(
    registry: PluginRegistry,
    name: str,
    plugin: str,
    config: dict[str, Any] | str,
    fail: str,
    where: str,
) -> FilterInstance:
    """Instantiate one filter with a validated config; raises PluginError."""
    try:
        cls = registry.load(plugin)
    except PluginError as exc:
        hint = suggest(plugin, registry.names())
        raise PluginError(f"{where}: filter {name!r}: {exc}{hint}") from None
    if isinstance(config, str):  # only a Proxy-Wasm filter takes bytes as they are
        raise PluginError(
            f"{where}: filter {name!r} (plugin {plugin!r}): config: a Python plugin's "
            "config is a table, not a string"
        )
    try:
        cfg = cls.Config.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"config.{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise PluginError(f"{where}: filter {name!r} (plugin {plugin!r}): {problems}") from None
    try:
        flt = cls(cfg)
    except Exception as exc:
        raise PluginError(
            f"{where}: filter {name!r} (plugin {plugin!r}) failed to start: {exc}"
        ) from exc
    flt.name = name
    flt.plugin = plugin
    inst = FilterInstance(name, plugin, flt, fail == "open")
    try:
        inst.files = tuple(Path(f).absolute() for f in flt.watched_files())
    except Exception as exc:
        _close([inst])
        raise PluginError(
            f"{where}: filter {name!r} (plugin {plugin!r}) failed in watched_files(): {exc}"
        ) from exc
    return inst


def open_installed(cfg: GatewayConfig, base_dir: Path) -> PluginSource | None:
    """The plugins ``gateway.lock`` pins, or None when there is no lockfile.

    Found through the ``wasmgate.plugin_sources`` entry points (the market registers
    one), so the engine does not import the market. Reads local files only.
    """
    lockfile = base_dir / cfg.market.lockfile
    if not lockfile.is_file():
        return None
    for ep in entry_points(group=SOURCE_GROUP):
        try:
            opener = ep.load()
            result: PluginSource = opener(lockfile, base_dir / cfg.market.plugin_dir)
        except Exception as exc:
            raise PluginError(f"market: {exc}") from None
        return result
    raise PluginError(f"{lockfile}: no installed-plugin source is available to read it")


def build_installed(
    plugin: InstalledPlugin,
    name: str,
    d: FilterDef | None,
    config: dict[str, Any] | str,
    fail: str,
    where: str,
    vms: dict[Any, Any] | None = None,
    *,
    node: Node | None = None,
) -> FilterInstance:
    """A filter from a plugin the lockfile pins (either kind); raises PluginError."""
    label = f"{plugin.name}@{plugin.version}"
    if plugin.kind == "wasm":
        from core.wasm import build_wasm_filter  # imports wasmtime: only when used

        assert plugin.module is not None
        base = d.model_dump(exclude={"plugin", "wasm", "config", "fail"}) if d else {}
        spec = FilterDef(wasm=str(plugin.module.resolve()), config=config, fail=fail, **base)
        inst = build_wasm_filter(name, spec, plugin.folder, where, vms, node=node)
    else:
        assert plugin.filter_class is not None
        cls = check_contract(plugin.name, plugin.filter_class)
        inst = build_filter(
            PluginRegistry({plugin.name: cls}), name, plugin.name, config, fail, where
        )
    inst.plugin = inst.filter.plugin = label
    return inst


def compile_chains(
    cfg: GatewayConfig,
    registry: PluginRegistry,
    source: str,
    vms: dict[Any, Any] | None = None,
) -> dict[str, Chain]:
    """One :class:`Chain` per route name (and ``"default"``); raises ConfigError.

    A route's chain is the global filters it does not disable, then its own, in
    declared order. Named instances (``[filters.NAME]``) are shared by every route
    that uses them; a bare plugin name means that plugin with its default config.
    ``vms`` collects the Proxy-Wasm VMs started (filters sharing a ``vm_id`` join one;
    :func:`compile_services` takes it on).
    """
    vms = {} if vms is None else vms
    problems: list[str] = []
    upstream_names = {u.name for u in cfg.upstreams}

    def check_upstreams(inst: FilterInstance, where: str) -> None:
        for name in inst.filter.upstreams():
            if name not in upstream_names:
                problems.append(
                    f"{where}: filter {inst.name!r} routes to unknown upstream {name!r}"
                    f"{suggest(name, upstream_names)}"
                )

    named: dict[str, FilterInstance] = {}
    base_dir = Path(source).parent if source and not source.startswith("<") else Path()
    try:
        installed = open_installed(cfg, base_dir)
    except PluginError as exc:
        raise ConfigError(source, [str(exc)]) from None
    locked = set(installed.names()) if installed is not None else set()

    def build(
        name: str,
        plugin: str,
        d: FilterDef | None,
        config: dict[str, Any] | str,
        fail: str,
        where: str,
    ) -> FilterInstance:
        # A plugin the lockfile pins wins over one of the same name in the environment:
        # installing it is how a user picks that version.
        if installed is not None and plugin in locked:
            try:
                found = installed.load(plugin)
            except Exception as exc:
                raise PluginError(f"{where}: filter {name!r}: {exc}") from None
            return build_installed(found, name, d, config, fail, where, vms, node=cfg.node)
        if plugin not in registry:
            hint = suggest(plugin, [*registry.names(), *locked]) or (
                f" (a registry plugin? `wasmgate plugin install {plugin}` pins it in gateway.lock)"
            )
            raise PluginError(f"{where}: filter {name!r}: unknown plugin {plugin!r}{hint}")
        return build_filter(registry, name, plugin, config, fail, where)

    for name, d in cfg.filters.items():
        try:
            if d.wasm is not None:
                from core.wasm import build_wasm_filter  # imports wasmtime: only when used

                named[name] = build_wasm_filter(
                    name, d, base_dir, f"filters.{name}", vms, node=cfg.node
                )
                continue
            named[name] = build(name, d.plugin or name, d, d.config, d.fail, f"filters.{name}")
        except PluginError as exc:
            problems.append(str(exc))
        else:
            check_upstreams(named[name], f"filters.{name}")
    bare: dict[str, FilterInstance] = {}

    def resolve(ref: FilterRef, where: str, route: str) -> FilterInstance | None:
        if isinstance(ref, InlineFilter):
            name = ref.name or f"{route}.{ref.plugin}"
            try:
                inst = build(name, ref.plugin, None, ref.config, ref.fail, where)
            except PluginError as exc:
                problems.append(str(exc))
                return None
            check_upstreams(inst, where)
            return inst
        if ref in named:
            return named[ref]
        if ref in cfg.filters:
            return None  # its own problem is already reported
        if ref in registry or ref in locked:
            if ref not in bare:
                try:
                    bare[ref] = build(ref, ref, None, {}, "closed", where)
                except PluginError as exc:
                    problems.append(str(exc))
                    return None
            return bare[ref]
        hint = suggest(ref, [*cfg.filters, *registry.names(), *locked])
        if not hint:
            hint = f" (a registry plugin? `wasmgate plugin install {ref}` pins it in gateway.lock)"
        problems.append(f"{where}: unknown filter {ref!r}{hint}")
        return None

    global_chain: list[FilterInstance] = []
    for i, ref in enumerate(cfg.global_filters):
        inst = resolve(ref, f"global_filters[{i}]", "global")
        if inst is not None:
            global_chain.append(inst)

    chains: dict[str, Chain] = {}
    targets: list[tuple[str, str, Route | DefaultRoute]] = [
        (f"routes[{i}]", r.name, r) for i, r in enumerate(cfg.routes)
    ]
    if cfg.default is not None:
        targets.append(("default", "default", cfg.default))
    for where, route_name, route in targets:
        for j, off in enumerate(route.disable_filters):
            if off not in cfg.global_filters:
                problems.append(
                    f"{where}.disable_filters[{j}]: {off!r} is not in global_filters"
                    f"{suggest(off, cfg.global_filters)}"
                )
        chain = [g for g in global_chain if g.name not in route.disable_filters]
        for j, item in enumerate(route.filters):
            inst = resolve(item, f"{where}.filters[{j}]", route_name)
            if inst is None:
                continue
            if any(existing is inst for existing in chain):
                problems.append(
                    f"{where}.filters[{j}]: filter {inst.name!r} is already in the chain"
                )
                continue
            chain.append(inst)
        # shared stats: counts survive reloads; what waits in a filter runs in a Task
        chains[route_name] = Chain(adopt(chain), handover=IN_TASK)
    used = {id(inst) for chain in chains.values() for inst in chain.filters}
    built = [*named.values(), *bare.values()]
    if problems:
        _close(built)  # a refused configuration leaves nothing running
        raise ConfigError(source, problems)
    # A [filters.NAME] no route uses serves nothing; it is closed now, as the snapshot
    # only closes the filters of its chains (a Proxy-Wasm one holds an instance).
    unused = [inst for inst in named.values() if id(inst) not in used]
    for inst in unused:
        log.warning("%s: filters.%s is not used by any route", source, inst.name)
    _close(unused)
    return chains


def compile_services(
    cfg: GatewayConfig, source: str, vms: dict[Any, Any] | None = None
) -> list[FilterInstance]:
    """The ``[services.NAME]`` plugins, started (root-only, on no route); raises
    ConfigError. ``vms``: those :func:`compile_chains` started, to share by vm_id."""
    if not cfg.services:
        return []
    from core.wasm import build_service  # imports wasmtime: only when used

    base_dir = Path(source).parent if source and not source.startswith("<") else Path()
    started: list[FilterInstance] = []
    problems: list[str] = []
    for name, d in cfg.services.items():
        try:
            started.append(
                build_service(name, d, base_dir, {} if vms is None else vms, node=cfg.node)
            )
        except PluginError as exc:
            problems.append(str(exc))
    if problems:
        _close(started)
        raise ConfigError(source, problems)
    return started


def _close(instances: list[FilterInstance]) -> None:
    for inst in instances:
        try:
            inst.filter.close()
        except Exception as exc:
            log.error("filter %s (%s) failed in close(): %r", inst.name, inst.plugin, exc)
