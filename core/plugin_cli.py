"""``wasmgate plugin ...``: the plugins this installation has, their config schemas, and
``new``, which scaffolds a Proxy-Wasm filter project (:mod:`core.scaffold`).

The market (registry search, install, publish) adds its own subcommands to this group
through the ``wasmgate.plugin_commands`` entry-point group, so this module does not
import ``market/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from core import scaffold
from core.chain import PluginRegistry, check_contract, open_installed
from core.config import GatewayConfig, load_config
from core.errors import ConfigError, PluginError, ScaffoldError
from plugin_sdk.installed import InstalledPlugin, PluginSource

NEW_EXAMPLES = """\
examples:
  wasmgate plugin new add-header --lang assemblyscript
  wasmgate plugin new add-header --lang c --dir filters/add-header
  wasmgate plugin new add-header --lang go

The project holds README.md, a Makefile (`make build` writes build/filter.wasm,
`make test` builds and runs test_filter.py with pytest), manifest.json (root_id and
the config's JSON Schema), the filter's source and test_filter.py. The filter adds a
request header from its JSON config and `x-NAME: hello` to responses; use it with
`[filters.NAME] wasm = "NAME/build/filter.wasm"` in gateway.toml.
"""


def add_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plugin = sub.add_parser(
        "plugin",
        help="plugins: list, schema, new; search, info, install, update, remove and "
        "publish them through a registry (the market); keygen, pack, verify, trust",
        description="The plugins a gateway.toml can use: those of this Python environment "
        "(the 'wasmgate.plugins' entry-point group; the built-in ones are registered the "
        "same way) and those installed from a registry and pinned in gateway.lock. The "
        "market's subcommands (search, info, install, update, remove, publish, keygen, "
        "pack, verify, trust) are described in docs/market.md.",
    )
    psub = plugin.add_subparsers(dest="plugin_command", metavar="SUBCOMMAND", required=True)

    lst = psub.add_parser(
        "list",
        help="plugins of this environment and those gateway.lock pins",
        description="List the plugins a gateway.toml can use: those of the Python "
        "environment (entry points; the built-in ones too) and those installed from a "
        "registry and pinned in gateway.lock (verified on disk; a package that fails its "
        "digest check is shown as refused).",
    )
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="gateway.toml whose lockfile to read (default: ./gateway.toml if present)",
    )
    lst.set_defaults(func=cmd_list)

    schema = psub.add_parser(
        "schema",
        help="print a plugin's config JSON Schema",
        description="Print the JSON Schema of a plugin's config: every field, its type, "
        "default and description, as gateway.toml's `config = {...}` takes it. A plugin "
        "gateway.lock pins (installed from a registry) wins over an environment plugin "
        "of the same name, as in the gateway; a wasm plugin's schema is its manifest's.",
    )
    schema.add_argument("name", help="plugin name, e.g. cors")
    schema.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="gateway.toml whose lockfile to read (default: ./gateway.toml if present)",
    )
    schema.set_defaults(func=cmd_schema)

    new = psub.add_parser(
        "new",
        help="scaffold a Proxy-Wasm filter project (AssemblyScript or C) with its tests",
        description="Create a buildable Proxy-Wasm filter project, with a Makefile, a "
        "manifest, a minimal filter and its pytest tests.",
        epilog=NEW_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    new.add_argument("name", metavar="NAME", help="plugin name, kebab-case (e.g. add-header)")
    new.add_argument(
        "--lang",
        required=True,
        choices=sorted(scaffold.LANGUAGES),
        help="assemblyscript: AssemblyScript 0.14 + @solo-io/proxy-runtime 0.1.8 (needs "
        "npm); c: C with zig's clang from the ziglang package; go: Go >= 1.24 with "
        "proxy-wasm-go-sdk",
    )
    new.add_argument(
        "--dir",
        metavar="PATH",
        type=Path,
        help="project directory (default: ./NAME); must be missing or empty",
    )
    new.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty directory, overwriting the scaffold's files",
    )
    new.set_defaults(func=cmd_new)

    for ep in entry_points(group="wasmgate.plugin_commands"):
        ep.load()(psub)


def _installed(config: Path | None) -> PluginSource | None:
    """The plugins gateway.lock pins (``config``, else ./gateway.toml when present)."""
    if config is None and Path("gateway.toml").is_file():
        config = Path("gateway.toml")
    cfg = load_config(config) if config is not None else GatewayConfig()
    return open_installed(cfg, config.parent if config is not None else Path())


def _installed_rows(config: Path | None) -> list[dict[str, str]]:
    source = _installed(config)
    rows: list[dict[str, str]] = []
    for name in source.names() if source is not None else []:
        try:
            p = source.load(name)  # type: ignore[union-attr]
        except Exception as exc:
            rows.append(
                {
                    "name": name,
                    "kind": "-",
                    "source": "gateway.lock",
                    "summary": f"(refused: {exc})",
                }
            )
            continue
        rows.append(
            {
                "name": name,
                "kind": p.kind,
                "source": "gateway.lock",
                "version": p.version,
                "signer": p.signer,
                "digest": p.digest,
                "summary": f"{p.version}, signer {p.signer}, sha256 {p.digest[:12]}…",
            }
        )
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    registry = PluginRegistry()
    try:
        installed = _installed_rows(args.config)
    except (ConfigError, PluginError) as exc:
        print(f"wasmgate: {exc}", file=sys.stderr)
        return 1
    rows = installed[:]
    locked = {r["name"] for r in installed}
    for name in registry.names():
        try:
            cls = registry.load(name)
        except PluginError as exc:
            rows.append(
                {
                    "name": name,
                    "kind": "python",
                    "source": "environment",
                    "summary": f"(broken: {exc})",
                }
            )
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append(
            {
                "name": name,
                "kind": "python",
                "source": "environment",
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "summary": ("(shadowed by gateway.lock) " if name in locked else "")
                + (doc[0] if doc else ""),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for row in rows:
        where = "locked" if row["source"] == "gateway.lock" else "env"
        print(f"{row['name'].ljust(width)}  {row['kind']:6}  {where:6}  {row['summary']}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    registry = PluginRegistry()
    locked: list[str] = []
    try:
        source = _installed(args.config)
        locked = source.names() if source is not None else []
        if source is not None and args.name in locked:
            schema = _locked_schema(source.load(args.name))
        else:
            schema = registry.load(args.name).Config.model_json_schema()
    except ConfigError as exc:
        print(f"wasmgate: {exc}", file=sys.stderr)
        return 1
    except PluginError as exc:
        known = ", ".join(sorted(set(registry.names()) | set(locked)))
        print(f"wasmgate: {exc}; installed: {known}", file=sys.stderr)
        return 1
    except Exception as exc:  # a locked package that fails its checks on disk
        print(f"wasmgate: {args.name}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(schema, indent=2))
    return 0


def _locked_schema(plugin: InstalledPlugin) -> dict[str, Any]:
    if plugin.kind == "python":
        assert plugin.filter_class is not None
        return check_contract(plugin.name, plugin.filter_class).Config.model_json_schema()
    manifest = json.loads((plugin.folder / "manifest.json").read_text(encoding="utf-8"))
    schema = manifest.get("config_schema")
    return schema if isinstance(schema, dict) else {}


def cmd_new(args: argparse.Namespace) -> int:
    dest: Path = args.dir if args.dir is not None else Path(args.name)
    try:
        scaffold.write_project(
            args.name,
            args.lang,
            dest,
            force=args.force,
            progress=lambda what, path: print(f"{what} {path}", flush=True),
        )
    except ScaffoldError as exc:
        print(f"wasmgate: {exc}", file=sys.stderr)
        return 1
    print(f"\n{args.lang} Proxy-Wasm filter {args.name!r} scaffolded in {dest}\n")
    print(scaffold.next_steps(args.name, args.lang, dest))
    return 0
