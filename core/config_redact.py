"""Secrets out of the configuration the admin API shows (``GET /config``).

Redaction follows the schemas. A value whose JSON Schema says ``"writeOnly": true`` is
replaced by ``<redacted>``: the gateway's own secret fields and, inside each filter's
``config``, the fields its plugin marks (a Python plugin with
:data:`plugin_sdk.Secret`, a Proxy-Wasm plugin in its manifest's ``config_schema``).
Where no schema describes a value (a WASM filter without a manifest, a field typed
``Any``), a name heuristic takes over: :data:`SECRET` field names, and every value but
the name of a ``consumers``/``credentials``/``users`` entry. A WASM filter's string
``config`` is opaque, so it is redacted whole unless its schema says it is a plain
string; its ``vm_config`` is always redacted. The password of a URL
(``https://user:PASSWORD@host/``) is redacted wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

REDACTED = "<redacted>"
# Field names whose values are secrets, for config no schema describes.
SECRET = re.compile(
    r"(secret|password|passwd|token|credential|private|_pem$|^key$|api_?key|authorization|cookie)",
    re.I,
)
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*:)[^/@]*@", re.I)
PLUGIN_CONFIG = "x-wasmgate-plugin-config"  # marks a filter's `config` in the core schema
_EMPTY: tuple[Any, ...] = (None, "", [], {})
_DESCRIBING = ("type", "properties", "items", "prefixItems", "anyOf", "oneOf", "allOf", "$ref")

# The schema of one filter's config: (plugin name or None, wasm path or None, filter name).
SchemaLookup = Callable[[str | None, str | None, str], dict[str, Any] | None]


def redact(value: Any, key: str = "") -> Any:
    """The name heuristic: ``value`` with what looks like a secret replaced."""
    if key and SECRET.search(key) and value not in _EMPTY:
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        if key in ("consumers", "credentials", "users"):
            return [redact(v, "secret") if not isinstance(v, dict) else _consumer(v) for v in value]
        return [redact(v, key if not isinstance(v, dict | list) else "") for v in value]
    return _url(value)


def _consumer(entry: dict[str, Any]) -> dict[str, Any]:
    """A consumer table: its name stays, every other value is a credential."""
    return {k: (v if k in ("name", "id", "username") else REDACTED) for k, v in entry.items()}


def by_schema(value: Any, schema: dict[str, Any] | None) -> Any:
    """``value`` (JSON data) with every part ``schema`` marks ``writeOnly`` redacted;
    parts the schema does not describe go through :func:`redact`."""
    return _Walk(schema or {}, None).walk(value, schema, "")


def redact_config(
    data: dict[str, Any], core_schema: dict[str, Any], plugin_schema: SchemaLookup
) -> dict[str, Any]:
    """A dumped :class:`~core.config.GatewayConfig` with its secrets and those of every
    filter's ``config`` redacted. ``core_schema`` is :func:`core_config_schema`'s."""
    out: dict[str, Any] = _Walk(core_schema, plugin_schema).walk(data, core_schema, "")
    return out


def core_config_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The gateway config's JSON Schema with each filter's ``config`` marked, so that
    :func:`redact_config` hands it to the plugin's own schema."""
    defs = schema.get("$defs", {})
    for name in ("FilterDef", "InlineFilter"):
        props = defs.get(name, {}).get("properties", {})
        if "config" in props:
            props["config"] = {PLUGIN_CONFIG: True}
    return schema


class _Walk:
    def __init__(self, root: dict[str, Any], plugin_schema: SchemaLookup | None) -> None:
        self.defs: dict[str, Any] = root.get("$defs", {})
        self.plugin_schema = plugin_schema

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            name = str(schema["$ref"]).rpartition("/")[2]
            target = self.defs.get(name, {})
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        if len(schema.get("allOf", ())) == 1:
            schema = {**self.resolve(schema["allOf"][0]), **schema}
            del schema["allOf"]
        return schema

    def walk(self, value: Any, schema: dict[str, Any] | None, key: str) -> Any:
        if schema is None:
            return redact(value, key)
        schema = self.resolve(schema)
        if schema.get("writeOnly") and value not in _EMPTY:
            return REDACTED
        if not any(k in schema for k in _DESCRIBING):
            return redact(value, key)  # {} or `Any`: nothing said about it
        branches = [self.resolve(b) for b in schema.get("anyOf", schema.get("oneOf", []))]
        if branches:
            if value not in _EMPTY and any(b.get("writeOnly") for b in branches):
                return REDACTED
            fitting = [b for b in branches if _fits(value, b)]
            return self.walk(value, fitting[0], key) if fitting else redact(value, key)
        if isinstance(value, dict):
            return self.walk_object(value, schema, key)
        if isinstance(value, list):
            items = schema.get("items")
            prefix = schema.get("prefixItems")
            if isinstance(prefix, list):
                return [
                    self.walk(v, prefix[i] if i < len(prefix) else None, key)
                    for i, v in enumerate(value)
                ]
            if isinstance(items, dict):
                return [self.walk(v, items, key) for v in value]
            return redact(value, key)
        return _url(value)

    def walk_object(self, value: dict[str, Any], schema: dict[str, Any], key: str) -> Any:
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if sub is not None and sub.get(PLUGIN_CONFIG):
                out[k] = self.filter_config(value, v, key)
            else:
                out[k] = self.walk(v, sub, str(k))
        return out

    def filter_config(self, table: dict[str, Any], config: Any, key: str) -> Any:
        """A filter's ``config``, by the schema of the plugin its table names (``key``:
        the table's own key, the NAME of ``[filters.NAME]``)."""
        found = None
        if self.plugin_schema is not None:
            name = str(table.get("name") or key)
            wasm = table.get("wasm")
            plugin = table.get("plugin") or (None if wasm else name)
            found = self.plugin_schema(plugin, wasm, name)
        if isinstance(config, str):
            return _string_config(config, found)
        return _Walk(found, None).walk(config, found, "") if found else redact(config)


def _string_config(config: str, schema: dict[str, Any] | None) -> str:
    """A Proxy-Wasm filter's string config is opaque (a token, YAML, JSON): shown only
    when the plugin's schema says it is a plain, not write-only, string."""
    if not config:
        return config
    if schema is not None and schema.get("type") == "string" and not schema.get("writeOnly"):
        return str(_url(config))
    return REDACTED


def _url(value: Any) -> Any:
    """A URL's password (``https://user:PASSWORD@host``) is a secret wherever it is."""
    if isinstance(value, str) and "@" in value:
        return _USERINFO.sub(rf"\1{REDACTED}@", value)
    return value


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if value is None:
        return kind == "null"
    if isinstance(value, dict):
        return kind == "object" or "properties" in schema or "additionalProperties" in schema
    if isinstance(value, list):
        return kind == "array" or "items" in schema or "prefixItems" in schema
    if isinstance(value, bool):
        return kind == "boolean"
    if isinstance(value, int | float):
        return kind in ("integer", "number")
    return kind == "string" or "enum" in schema or "const" in schema
