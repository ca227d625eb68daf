"""``wasmgate plugin search|info|install|update|remove|publish``: the market's client.

Settings come from ``[market]`` in ``gateway.toml`` (``-c``; ``./gateway.toml`` when
it exists), then the flags: ``--registry URL|DIR`` (or ``$WASMGATE_REGISTRY``) and
``--trust DIR``; every command takes all three. The lockfile and plugin folder sit
beside ``gateway.toml`` unless ``[market]`` moves them. Errors print one message and
exit 1; nothing is changed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from market.cli import fail, home
from market.client import Progress
from market.errors import MarketError
from market.installer import Change, Installer, Workspace, check_lock
from market.search import latest, search, suggest_names, versions_newest_first

EXAMPLES = """\
examples:
  wasmgate plugin search headers
  wasmgate plugin info as-headers
  wasmgate plugin install as-headers               # highest release, pinned as ^0.1.0
  wasmgate plugin install 'as-headers@^0.1'        # a constraint: ^1.2  ~1.2.3  >=1,<2  1.4
  wasmgate plugin install                          # exactly what gateway.lock pins
  wasmgate plugin update                           # newest each pin's constraint allows
  wasmgate plugin install as-headers@=0.1.0 --allow-downgrade   # go back on purpose
  wasmgate plugin remove as-headers
then reference it in gateway.toml:  [filters.hdr]  plugin = "as-headers"
"""


def _workspace(args: argparse.Namespace) -> Workspace:
    registry = args.registry or os.environ.get("WASMGATE_REGISTRY") or None
    return Workspace.load(args.config, home(), registry=registry, trust=args.trust)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="gateway.toml whose [market] settings, lockfile and plugin folder to use "
        "(default: ./gateway.toml if present)",
    )
    parser.add_argument(
        "--registry",
        metavar="URL|DIR",
        help="registry to use (default: [market] registry, or $WASMGATE_REGISTRY)",
    )
    parser.add_argument(
        "--trust",
        type=Path,
        metavar="DIR",
        help="trust store of publisher keys (default: [market] trust, or ~/.wasmgate/trust)",
    )


def register(psub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    se = psub.add_parser(
        "search",
        help="find plugins in the registry",
        description="List the registry's plugins matching every word of TEXT (all "
        "plugins without TEXT). A word matches a whole word or the start of one in the "
        "name, the keywords or the description, never letters inside a word; the best "
        "come first: exact name, name words, keywords, then description.",
        epilog=EXAMPLES,
        formatter_class=raw,
    )
    se.add_argument("text", nargs="*", metavar="TEXT", help="words to look for")
    se.add_argument("--json", action="store_true", help="machine-readable output")
    _common(se)
    se.set_defaults(func=cmd_search)

    inf = psub.add_parser(
        "info",
        help="a registry plugin's versions, manifest, config schema and README",
        description="Show NAME's published versions, the manifest of the newest (or of "
        "VERSION), its signer, digests, config schema and README.",
    )
    inf.add_argument("name", metavar="NAME[@VERSION]")
    inf.add_argument("--json", action="store_true", help="machine-readable output")
    _common(inf)
    inf.set_defaults(func=cmd_info)

    ins = psub.add_parser(
        "install",
        help="install plugins from the registry and pin them in gateway.lock",
        description="Resolve each NAME[@CONSTRAINT] to the highest matching release, "
        "download it, verify its digest and its signature against the trust store, "
        "unpack it into the plugin folder and pin name, version, digests and signer in "
        "gateway.lock, all or nothing. A plugin already locked at a version the "
        "constraint allows stays at that version (use `update` to move); a lower one "
        "needs --allow-downgrade. Without a constraint, the lockfile records ^VERSION of "
        "what was picked. Without NAME, "
        "installs exactly what gateway.lock pins (a reproducible install).",
        epilog=EXAMPLES,
        formatter_class=raw,
    )
    ins.add_argument("names", nargs="*", metavar="NAME[@CONSTRAINT]")
    ins.add_argument("--pre", action="store_true", help="allow pre-releases (1.2.0rc1)")
    ins.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="allow replacing a locked version with a lower one (NAME@=VERSION)",
    )
    _common(ins)
    ins.set_defaults(func=cmd_install)

    up = psub.add_parser(
        "update",
        help="move locked plugins to the newest version their constraint allows",
        description="For each NAME (default: every locked plugin), install the highest "
        "release allowed by the constraint it was installed with, and re-pin it. Update "
        "never moves to a lower version, even when the registry lists only lower ones.",
    )
    up.add_argument("names", nargs="*", metavar="NAME")
    up.add_argument("--pre", action="store_true", help="allow pre-releases")
    _common(up)
    up.set_defaults(func=cmd_update)

    rm = psub.add_parser(
        "remove",
        help="unpin and delete installed plugins",
        description="Remove NAME from gateway.lock and its folder from the plugin folder. "
        "A gateway.toml that still uses it will fail `wasmgate check`.",
    )
    rm.add_argument("names", nargs="+", metavar="NAME")
    _common(rm)  # --registry is accepted for uniformity; removing needs no registry
    rm.set_defaults(func=cmd_remove)

    pub = psub.add_parser(
        "publish",
        help="add a .wgpkg package to a registry (folder or HTTP)",
        description="Publish FILE. The registry checks the package (signed by a publisher "
        "it accepts, valid manifest, digests) and refuses a name and version that exist "
        "with other content; publishing the same bytes again is a no-op. An HTTP "
        "registry needs its token: --token or $WASMGATE_REGISTRY_TOKEN.",
    )
    pub.add_argument("file", type=Path, metavar="FILE", help="a package made by `plugin pack`")
    pub.add_argument("--token", help="the HTTP registry's publish token")
    _common(pub)
    pub.set_defaults(func=cmd_publish)


def progress_bar(label: str) -> Progress:
    """A download progress callback: a bar on a terminal, one line otherwise."""
    tty = sys.stderr.isatty()
    start = time.monotonic()
    last = [0.0]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if tty and (finished or now - last[0] > 0.05):
            last[0] = now
            width = 30
            filled = width * done // max(total, 1)
            bar = "#" * filled + "." * (width - filled)
            pct = 100 * done // max(total, 1)
            sys.stderr.write(f"\r  {label:32} [{bar}] {pct:3}% {done // 1024}/{total // 1024} KiB")
            if finished:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif not tty and finished:
            took = now - start
            print(f"  downloaded {label} ({total / 1024:.1f} KiB in {took:.2f} s)", file=sys.stderr)

    return update


def cmd_search(args: argparse.Namespace) -> int:
    try:
        fetched = _workspace(args).open_registry().fetch_index(allow_stale=True)
    except MarketError as exc:
        return fail(exc)
    if fetched.stale:
        print(f"warning: {fetched.stale}", file=sys.stderr)
    hits = search(fetched.index, " ".join(args.text))
    if args.json:
        rows = [
            {
                "name": h.name,
                "version": h.latest.manifest.version,
                "kind": h.latest.manifest.kind,
                "description": h.latest.manifest.description,
                "versions": list(h.versions),
                "signer": h.latest.signer,
            }
            for h in hits
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not hits:
        print(f"no plugin matches {' '.join(args.text)!r}", file=sys.stderr)
        return 1
    width = max(len(h.name) for h in hits)
    for h in hits:
        m = h.latest.manifest
        print(f"{h.name.ljust(width)}  {m.version:10} {m.kind:6}  {m.description}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    name, _, wanted = args.name.partition("@")
    try:
        registry = _workspace(args).open_registry()
        fetched = registry.fetch_index(allow_stale=True)
        index = fetched.index
        if name not in index.packages:
            raise MarketError(
                f"{name}: no such plugin in registry {registry.location}"
                f"{suggest_names(name, index)}"
            )
        entry = index.entry(name, wanted) if wanted else latest(index, name)
        if entry is None:
            raise MarketError(
                f"{name} {wanted}: not published; versions: "
                + ", ".join(versions_newest_first(index, name))
            )
        readme = None
        if entry.readme and not fetched.stale:
            readme = registry.fetch_file(entry.readme).decode("utf-8", "replace")
    except MarketError as exc:
        return fail(exc)
    if fetched.stale:
        print(f"warning: {fetched.stale}", file=sys.stderr)
    m = entry.manifest
    if args.json:
        out = {
            "versions": versions_newest_first(index, name),
            "entry": entry.model_dump(mode="json", exclude_none=True),
            "readme": readme,
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"{m.name} {m.version} ({m.kind})")
    print(f"  {m.description}")
    fields = [
        ("versions", ", ".join(versions_newest_first(index, name))),
        ("keywords", ", ".join(m.keywords)),
        ("author", m.author),
        ("license", m.license),
        ("homepage", m.homepage),
        ("abi", m.abi),
        ("root_id", m.root_id),
        ("min wasmgate", m.min_wasmgate),
        ("signer", entry.signer),
        ("archive", f"{entry.size} bytes, sha256 {entry.sha256}"),
        ("payload", f"{m.payload}, sha256 {m.payload_sha256}"),
        ("published", entry.published),
    ]
    for key, value in fields:
        if value:
            print(f"  {key:13} {value}")
    if m.config_schema is not None:
        print("  config schema:")
        for line in json.dumps(m.config_schema, indent=2).splitlines():
            print(f"    {line}")
    if readme:
        print()
        print(readme.rstrip())
    return 0


def _installer(args: argparse.Namespace) -> Installer:
    return Installer(_workspace(args), progress=progress_bar)


def _report(changes: list[Change], ws: Workspace) -> None:
    for change in changes:
        print(change)
    if changes:
        print(f"pinned in {ws.lockfile}; plugins in {ws.plugin_dir}")


def cmd_install(args: argparse.Namespace) -> int:
    try:
        inst = _installer(args)
        changes = inst.install(args.names, pre=args.pre, allow_downgrade=args.allow_downgrade)
    except MarketError as exc:
        return fail(exc)
    _report(changes, inst.ws)
    if args.names and changes:
        first = changes[0].name
        print(f'use it in gateway.toml:  [filters.{first}]  plugin = "{first}"')
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    try:
        inst = _installer(args)
        changes = inst.update(args.names, pre=args.pre)
    except MarketError as exc:
        return fail(exc)
    _report(changes, inst.ws)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    try:
        inst = _installer(args)
        changes = inst.remove(args.names)
    except MarketError as exc:
        return fail(exc)
    _report(changes, inst.ws)
    problems = check_lock(inst.ws)
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("WASMGATE_REGISTRY_TOKEN")
    try:
        registry = _workspace(args).open_registry()
        entry, new = registry.publish(args.file, token)
    except MarketError as exc:
        return fail(exc)
    m = entry.manifest
    state = "published" if new else "already published (same content; nothing to do)"
    print(f"{m.name} {m.version} {state} in {registry.location}")
    print(f"  archive sha256 {entry.sha256}, signer {entry.signer}")
    return 0
