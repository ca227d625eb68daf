"""``[kubernetes]`` in gateway.toml: manifests read and translated at every load.

:func:`expand` is called by :func:`core.config.parse_config` when the document has a
``[kubernetes]`` table. It reads the manifests (relative to the config file),
translates the Ingresses of ``ingress_class``, and adds the resulting upstreams,
routes, filters, default route and certificates to the document before it is
validated, so they are checked exactly like hand-written ones.

What the manifests get wrong never refuses the configuration: a malformed object is
skipped, and an Ingress that cannot be used is skipped or falls back to NGINX
Ingress's defaults (:mod:`core.ingress.translate`), each with a warning naming the
Ingress and its file. Those warnings are the configuration's
(:attr:`core.config.GatewayConfig.warnings`): logged at start and at every reload,
printed by ``wasmgate check``, listed by the admin API's ``GET /config``. An Ingress
that would use a name the file already uses is skipped too: the file wins. Only
``gateway.toml`` itself (its ``[kubernetes]`` table included) can be invalid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.gatewayapi.translate import DEFAULT_CONTROLLER, combine
from core.gatewayapi.translate import translate as translate_gateway_api
from core.ingress.objects import load_manifests
from core.ingress.translate import Settings, Translation, translate

log = logging.getLogger("wasmgate.ingress")


@dataclass
class Expanded:
    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    # "routes[7]" → "route default.stable.0: Ingress default/stable (...)"
    origins: dict[str, str] = field(default_factory=dict)


def settings_of(table: dict[str, Any], data: dict[str, Any] | None = None) -> Settings:
    return Settings(
        ingress_class=table.get("ingress_class", "wasmgate"),
        services=table.get("services", {}),
        tls_secrets=table.get("tls_secrets", {}),
        reserved=frozenset(_names(data or {})),
    )


def _names(data: dict[str, Any]) -> list[str]:
    """The names the configuration file itself uses, as :class:`Settings` lists them."""
    out = []
    for key in ("upstreams", "routes"):
        items = data.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                out.append(f"{key[:-1]} {item['name']}")
    filters = data.get("filters")
    out += [f"filter {name}" for name in (filters if isinstance(filters, dict) else {})]
    if "default" in data:
        out.append("default")
    return out


def expand(data: dict[str, Any], table: dict[str, Any], source: str) -> Expanded:
    """``data`` with the tables of the manifests ``table`` (a validated
    ``[kubernetes]``) names; raises :class:`ConfigError`."""
    base = Path(source).parent if source and not source.startswith("<") else Path()
    paths = [base / p for p in table["manifests"]]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(source, [f"kubernetes.manifests: not found: {', '.join(missing)}"])
    found = load_manifests(paths, lenient=True)
    settings = settings_of(table, data)
    if settings.tls_secrets:
        settings = Settings(
            settings.ingress_class,
            settings.services,
            {
                k: {"cert": str(base / v["cert"]), "key": str(base / v["key"])}
                for k, v in settings.tls_secrets.items()
            },
            settings.reserved,
        )
    tr = translate(found, settings)
    controller = table.get("gateway_controller", DEFAULT_CONTROLLER)
    gw = translate_gateway_api(found, settings, controller, set(data.get("filters") or {}))
    combine(tr, gw)
    merged = dict(data)
    out = Expanded(merged, [*found.skipped, *tr.warnings], list(found.files))
    problems = _merge(merged, tr, out.origins)
    if problems:
        raise ConfigError(source, problems)
    if not tr.ingresses and not gw.routes_served:
        out.warnings.append(
            f"kubernetes: no Ingress of class {settings.ingress_class!r} nor HTTPRoute "
            f"of a Gateway of controller {controller!r} in "
            f"{', '.join(table['manifests'])}"
        )
    return out


def _merge(data: dict[str, Any], tr: Translation, origins: dict[str, str]) -> list[str]:
    problems: list[str] = []
    for key in ("upstreams", "routes", "certificates"):
        items: list[Any] = tr.tables().get(key, [])
        have = list(data.get(key, []))
        names = {item.get("name") for item in have if isinstance(item, dict)}
        for item in items:
            name = item.get("name")
            label = f"{key[:-1]} {name}" if name else key[:-1]
            origin = tr.notes.get(f"{key[:-1]} {name}", "")
            if name is not None and name in names:
                problems.append(
                    f"{key}: {label!r} from kubernetes ({origin}) is also defined in the file"
                )
                continue
            origins[f"{key}[{len(have)}]"] = f"{label}, from {origin}" if origin else label
            have.append(item)
        data[key] = have
    filters = dict(data.get("filters", {}))
    for name, table in tr.filters.items():
        if name in filters:
            problems.append(f"filters: {name!r} from kubernetes is also defined in the file")
            continue
        filters[name] = table
        origins[f"filters.{name}"] = tr.notes.get(f"filter {name}", "kubernetes")
    data["filters"] = filters
    if tr.default is not None:
        if "default" in data:
            problems.append(
                f"default: the file sets [default] and {tr.notes['default']} sets a "
                "defaultBackend; keep one"
            )
        else:
            data["default"] = tr.default
            origins["default"] = tr.notes["default"]
    return problems


def annotate(problems: list[str], origins: dict[str, str]) -> list[str]:
    """Add, to each problem about a generated table, where that table came from."""
    out = []
    for problem in problems:
        where = problem.split(":", 1)[0]
        for prefix, origin in origins.items():
            if where == prefix or where.startswith((prefix + ".", prefix + "[")):
                problem = f"{problem} ({origin})"
                break
        out.append(problem)
    return out
