"""``wasmgate plugin ...``: the plugins this installation has, and their config schemas.

The market (registry search, install, publish) adds its own subcommands to this group
through the ``wasmgate.plugin_commands`` entry-point group, so this module does not
import ``market/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points

from core.chain import PluginRegistry
from core.errors import PluginError


def add_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plugin = sub.add_parser(
        "plugin",
        help="list installed plugins, show a plugin's config schema",
        description="Plugins are found through the 'wasmgate.plugins' entry-point group; "
        "the built-in ones are registered the same way.",
    )
    psub = plugin.add_subparsers(dest="plugin_command", metavar="SUBCOMMAND", required=True)

    lst = psub.add_parser("list", help="plugins installed in this environment")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=cmd_list)

    schema = psub.add_parser(
        "schema",
        help="print a plugin's config JSON Schema",
        description="Print the JSON Schema of a plugin's config: every field, its type, "
        "default and description, as gateway.toml's `config = {...}` takes it.",
    )
    schema.add_argument("name", help="plugin name, e.g. cors")
    schema.set_defaults(func=cmd_schema)

    for ep in entry_points(group="wasmgate.plugin_commands"):
        ep.load()(psub)


def cmd_list(args: argparse.Namespace) -> int:
    registry = PluginRegistry()
    rows = []
    for name in registry.names():
        try:
            cls = registry.load(name)
        except PluginError as exc:
            rows.append({"name": name, "kind": "python", "summary": f"(broken: {exc})"})
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append(
            {
                "name": name,
                "kind": "python",
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "summary": doc[0] if doc else "",
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for row in rows:
        print(f"{row['name'].ljust(width)}  {row['kind']:6}  {row['summary']}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    registry = PluginRegistry()
    try:
        cls = registry.load(args.name)
    except PluginError as exc:
        print(f"wasmgate: {exc}; installed: {', '.join(registry.names())}", file=sys.stderr)
        return 1
    print(json.dumps(cls.Config.model_json_schema(), indent=2))
    return 0
