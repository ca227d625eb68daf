"""``wasmgate plugin keygen|trust|pack|verify``: publisher keys and signed packages.

Registered on ``wasmgate plugin`` through the ``wasmgate.plugin_commands`` entry-point
group (pyproject.toml), so ``core/`` does not import this module.

Default locations live under ``$WASMGATE_HOME`` (default ``~/.wasmgate``):
``keys/`` for ``keygen`` and ``trust/`` for the trust store. ``trust`` and ``verify``
use the trust store ``install`` uses: ``--trust``, else ``[market] trust`` of
gateway.toml (``-c``, or ./gateway.toml when present), else ``$WASMGATE_HOME/trust``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from market.errors import MarketError
from market.package import pack, read_package
from market.signed_index import PUBLIC, REGISTRY_KEYS
from market.signing import (
    TrustStore,
    add_trusted_key,
    key_id,
    keygen,
    load_private_key,
    load_public_key,
)

EPILOG = """\
a publisher's round trip:
  wasmgate plugin keygen                                  # ~/.wasmgate/keys/publisher.{key,pub}
  wasmgate plugin pack plugins/wasm/as-headers --key ~/.wasmgate/keys/publisher.key
  wasmgate plugin trust ~/.wasmgate/keys/publisher.pub    # users trust the publisher once
                                     # (into [market] trust of ./gateway.toml, if it sets one)
  wasmgate plugin verify as-headers-0.1.0.wgpkg
"""


def home() -> Path:
    return Path(os.environ.get("WASMGATE_HOME") or Path.home() / ".wasmgate")


def register(psub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the package subcommands to ``wasmgate plugin``."""
    raw = argparse.RawDescriptionHelpFormatter

    kg = psub.add_parser(
        "keygen",
        help="make an Ed25519 publisher key pair for signing packages",
        description="Write publisher.key (PEM, mode 0600; keep it secret) and publisher.pub "
        "(give it to users, who add it to their trust store). Existing keys are never "
        "overwritten. Prints the key id: the first 16 hex digits of the public key's sha256.",
        epilog=EPILOG,
        formatter_class=raw,
    )
    kg.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="where to write the key pair (default: $WASMGATE_HOME/keys, i.e. ~/.wasmgate/keys)",
    )
    kg.set_defaults(func=cmd_keygen)

    tr = psub.add_parser(
        "trust",
        help="add a publisher's (or a registry's) public key to the trust store",
        description="Copy a PEM Ed25519 public key into the trust store as KEYID.pub; "
        "packages signed by it then verify and install. With --registry-key, the key is a "
        "registry's (its registry.pub) and goes to TRUST/registries/: registry indexes "
        "signed by it then verify. The trust store is the one `plugin install` uses: "
        "--trust DIR, else [market] trust of gateway.toml (-c FILE, default ./gateway.toml "
        "when present), else $WASMGATE_HOME/trust. Prints the key id and the folder it "
        "wrote to.",
    )
    tr.add_argument(
        "public_key", nargs="?", type=Path, metavar="PUBFILE", help="the publisher's .pub file"
    )
    tr.add_argument(
        "--from-registry",
        metavar="KEYID",
        help="fetch key KEYID from the registry's keys/ instead of a file (trust on first "
        "use: compare the key id with what the publisher tells you)",
    )
    tr.add_argument("--registry", metavar="URL|DIR", help="registry for --from-registry")
    tr.add_argument(
        "--registry-key",
        action="store_true",
        help="the key signs a registry's index, not packages (with --from-registry: "
        "fetch the registry's registry.pub)",
    )
    _config_option(tr)
    _trust_option(tr)
    tr.set_defaults(func=cmd_trust)

    pk = psub.add_parser(
        "pack",
        help="build and sign a .wgpkg package from a plugin folder",
        description="DIR holds manifest.json (name, version, kind, description, abi and "
        "config_schema for wasm, payload: the .wasm or .whl file, a path inside DIR; "
        "payload_sha256 is filled in) and optionally README.md. The package is a "
        "gzip tar of the canonical manifest, its signature, the payload and the README.",
        epilog=EPILOG,
        formatter_class=raw,
    )
    pk.add_argument("dir", type=Path, metavar="DIR", help="the plugin folder")
    pk.add_argument(
        "--key", type=Path, required=True, metavar="PRIVATE", help="publisher private key (PEM)"
    )
    pk.add_argument(
        "-o",
        "--out",
        type=Path,
        metavar="OUT",
        help="archive to write (default: ./NAME-VERSION.wgpkg)",
    )
    pk.set_defaults(func=cmd_pack)

    vf = psub.add_parser(
        "verify",
        help="check a package's signature, manifest and payload digest",
        description="Verify FILE: safe archive layout, a signature by a trusted key over "
        "the manifest, a valid manifest, and the payload's sha256. Prints name, version, "
        "kind, signer key id and digests; exits 1 with the reason otherwise.",
    )
    vf.add_argument("file", type=Path, metavar="FILE", help="a .wgpkg package")
    _config_option(vf)
    _trust_option(vf)
    vf.add_argument("--json", action="store_true", help="machine-readable output")
    vf.set_defaults(func=cmd_verify)

    from market import client_cli

    client_cli.register(psub)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="gateway.toml whose [market] trust to use (default: ./gateway.toml if present)",
    )


def _trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust",
        type=Path,
        metavar="DIR",
        help="trust store: a directory of *.pub keys (default: [market] trust, "
        "or $WASMGATE_HOME/trust)",
    )


def trust_dir(args: argparse.Namespace) -> tuple[Path, str]:
    """The trust store ``install`` would use with these options, and where that
    choice came from (for the messages): --trust, [market] trust, or the default."""
    from market.installer import Workspace

    if args.trust is not None:
        return args.trust, "--trust"
    ws = Workspace.load(args.config, home())
    default = home() / "trust"
    if ws.trust_dir != default:
        return ws.trust_dir, f"[market] trust of {ws.config}"
    return default, "the default; no [market] trust" + (f" in {ws.config}" if ws.config else "")


def fail(exc: MarketError) -> int:
    """Print a market error as the CLI does and give the exit status (1)."""
    print(f"wasmgate: {exc}", file=sys.stderr)
    return 1


def cmd_keygen(args: argparse.Namespace) -> int:
    directory: Path = args.dir if args.dir is not None else home() / "keys"
    try:
        private_path, public_path = keygen(directory)
        kid = key_id(load_public_key(public_path))
    except MarketError as exc:
        return fail(exc)
    print(f"private key  {private_path}  (keep it secret)")
    print(f"public key   {public_path}")
    print(f"key id       {kid}")
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    if (args.public_key is None) == (args.from_registry is None):
        print("wasmgate: give PUBFILE or --from-registry KEYID (one of them)", file=sys.stderr)
        return 2
    try:
        if args.from_registry is not None:
            return _trust_from_registry(args)
        directory, why = trust_dir(args)
        if args.registry_key:
            directory = directory / REGISTRY_KEYS
        kid = add_trusted_key(directory, args.public_key)
    except MarketError as exc:
        return fail(exc)
    print(f"trusted key {kid} in {directory.absolute()} ({why})")
    return 0


def _trust_from_registry(args: argparse.Namespace) -> int:
    import re
    import tempfile

    from market.installer import Workspace

    kid: str = args.from_registry
    if not re.fullmatch(r"[0-9a-f]{16}", kid):
        print(f"wasmgate: {kid!r} is not a key id (16 hex digits)", file=sys.stderr)
        return 2
    registry_flag = args.registry or os.environ.get("WASMGATE_REGISTRY") or None
    ws = Workspace.load(args.config, home(), registry=registry_flag, trust=args.trust)
    directory, why = trust_dir(args)
    path = PUBLIC if args.registry_key else f"keys/{kid}.pub"
    if args.registry_key:
        directory = directory / REGISTRY_KEYS
    pem = ws.open_registry().fetch_file(path, limit=16 * 1024)
    with tempfile.TemporaryDirectory() as tmp:
        key_path = Path(tmp) / "key.pub"
        key_path.write_bytes(pem)
        got = key_id(load_public_key(key_path))
        if got != kid:
            raise MarketError(f"the registry's {path} is key {got}, not {kid}; refused")
        add_trusted_key(directory, key_path)
    print(f"trusted key {kid} (from {ws.registry}) in {directory.absolute()} ({why})")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    try:
        out = pack(args.dir, load_private_key(args.key), args.out)
    except MarketError as exc:
        return fail(exc)
    print(out)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        directory, _ = trust_dir(args)
        package = read_package(args.file, TrustStore.from_dir(directory))
    except MarketError as exc:
        return fail(exc)
    m = package.manifest
    info = {
        "name": m.name,
        "version": m.version,
        "kind": m.kind,
        "signer": package.signer,
        "payload": m.payload,
        "payload_sha256": package.payload_sha256,
        "archive_sha256": package.archive_sha256,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.file}: OK, signed by a trusted key")
    for key, value in info.items():
        print(f"  {key:15} {value}")
    return 0
