"""``wasmgate market init|add-publisher|serve``: run a registry.

Registered as a top-level command group through the ``wasmgate.commands`` entry
points. A registry is a folder (:mod:`market.index`); ``serve`` puts it on HTTP
(:mod:`market.server`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from market.cli import fail
from market.errors import MarketError
from market.index import RegistryDir
from market.signed_index import PUBLIC
from market.signing import key_id, load_public_key

EXAMPLES = """\
run a registry:
  wasmgate market init ./registry --publisher ~/.wasmgate/keys/publisher.pub
  wasmgate market serve --root ./registry --listen 127.0.0.1:8700 --token s3cret
its users trust its index key once (./registry/registry.pub, also served):
  wasmgate plugin trust --registry-key registry.pub
publish to it and use it:
  wasmgate plugin publish as-headers-0.1.0.wgpkg --registry http://127.0.0.1:8700 --token s3cret
  wasmgate plugin search --registry http://127.0.0.1:8700
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    market = sub.add_parser(
        "market",
        help="run a plugin registry (init, add-publisher, serve)",
        description="A registry is a folder with index.json signed by the registry's own "
        "key (index.sig, registry.pub, .registry/registry.key), keys/ (the publishers it "
        "accepts) and packages/; `serve` makes it an HTTP registry.",
        epilog=EXAMPLES,
        formatter_class=raw,
    )
    msub = market.add_subparsers(dest="market_command", metavar="SUBCOMMAND", required=True)

    init = msub.add_parser(
        "init",
        help="create an empty registry folder, or sign an existing one's index",
        description="Create ROOT with the registry's Ed25519 key (ROOT/.registry/registry.key, "
        "mode 0600; ROOT/registry.pub is its public half) and an empty signed index. On an "
        "existing registry, make the key if missing and re-sign the index if its "
        "signature does not hold (this also upgrades an unsigned index of an older wasmgate).",
    )
    init.add_argument("root", type=Path, metavar="ROOT")
    init.add_argument(
        "--publisher",
        type=Path,
        action="append",
        default=[],
        metavar="PUBFILE",
        help="accept packages signed by this public key (repeatable)",
    )
    init.set_defaults(func=cmd_init)

    add = msub.add_parser(
        "add-publisher",
        help="accept packages signed by a publisher's public key",
        description="Copy PUBFILE into ROOT/keys/ and list its key id in the index; "
        "clients can fetch it from there (`wasmgate plugin trust --from-registry KEYID`).",
    )
    add.add_argument("root", type=Path, metavar="ROOT")
    add.add_argument("public_key", type=Path, metavar="PUBFILE")
    add.set_defaults(func=cmd_add_publisher)

    serve = msub.add_parser(
        "serve",
        help="serve a registry folder over HTTP",
        description="Serve ROOT's index, archives and keys. Publishing over HTTP "
        "(POST /api/v1/packages) is enabled only with --token (or "
        "$WASMGATE_REGISTRY_TOKEN), and then needs that token as a Bearer credential.",
        epilog=EXAMPLES,
        formatter_class=raw,
    )
    serve.add_argument("--root", type=Path, required=True, metavar="ROOT")
    serve.add_argument(
        "--listen",
        default="127.0.0.1:8700",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8700)",
    )
    serve.add_argument("--token", help="enable publishing with this token")
    serve.set_defaults(func=cmd_serve)


def cmd_init(args: argparse.Namespace) -> int:
    registry = RegistryDir(args.root)
    try:
        registry.init()
        for pub in args.publisher:
            print(f"accepting publisher key {registry.add_publisher(pub)}")
        kid = key_id(load_public_key(args.root / PUBLIC))
    except MarketError as exc:
        return fail(exc)
    print(f"registry ready in {args.root}; its index is signed by registry key {kid}")
    print(f"clients trust it with: wasmgate plugin trust --registry-key {args.root / PUBLIC}")
    return 0


def cmd_add_publisher(args: argparse.Namespace) -> int:
    try:
        kid = RegistryDir(args.root).add_publisher(args.public_key)
    except MarketError as exc:
        return fail(exc)
    print(f"accepting publisher key {kid} in {args.root}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from market.server import serve

    host, sep, port_text = args.listen.rpartition(":")
    if not sep or not port_text.isdigit():
        print(f"wasmgate: --listen {args.listen!r}: expected HOST:PORT", file=sys.stderr)
        return 2
    token = args.token or os.environ.get("WASMGATE_REGISTRY_TOKEN") or None
    try:
        serve(args.root, host.strip("[]") or "127.0.0.1", int(port_text), token)
    except MarketError as exc:
        return fail(exc)
    except OSError as exc:
        print(f"wasmgate: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
