"""Build the example plugin registry in examples/registry/ from this repository's sources.

    python examples/registry/build.py [--out DIR]        (or: make registry)

It holds, each packed and signed as ``wasmgate plugin pack`` does:

- the example Proxy-Wasm filters of plugins/wasm/ (``as-headers``, AssemblyScript;
  ``c-filter``, C), built by plugins/wasm/build.py (npm and zig; a filter whose
  toolchain is missing is left out, with a warning);
- two built-in plugins repackaged as ``python``-kind packages: ``headers`` and
  ``ip-restriction``, their sources under a module name of their own
  (``wgp_headers``, ``wgp_ip_restriction``) in a pure wheel, at wasmgate's version.
  Installing one pins that copy in gateway.lock, which then takes precedence over the
  built-in plugin of the same name.

The publisher key is made once in ``.publisher/`` (kept out of git) and accepted by the
registry (``keys/``); the registry's own key, which signs its index, is made once in
``.registry/`` (``registry.pub`` beside it). ``trust/`` is a ready trust store for the
demo, holding the publisher's key and, under ``trust/registries/``, the registry's:
examples/gateway.toml uses it so that ``make run`` users can install right away. A
real deployment trusts keys it got from its publishers and its registry's operator,
never a folder the registry hands out.

The registry is rebuilt from scratch each run; packing is deterministic, so unchanged
sources give the same archives, digests and signatures as before.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from market.errors import MarketError  # noqa: E402
from market.index import RegistryDir  # noqa: E402
from market.installer import wasmgate_version  # noqa: E402
from market.package import pack  # noqa: E402
from market.signed_index import PUBLIC, REGISTRY_KEYS  # noqa: E402
from market.signing import add_trusted_key, keygen, load_private_key  # noqa: E402
from market.wheel_build import build_wheel  # noqa: E402

WASM = ("as-headers", "c-filter")
BUILTINS = {
    # package name: (source package, class, keywords)
    "headers": ("headers", "HeadersFilter", ["headers", "request", "response"]),
    "ip-restriction": ("ip_restriction", "IpRestriction", ["security", "ip", "cidr", "acl"]),
}
GENERATED = ("index.json", "index.sig", "keys", "packages", "trust", ".lock")


def build_wasm() -> list[str]:
    """Build the example filters; the names that are ready."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "plugins" / "wasm" / "build.py"), *WASM],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = [n for n in WASM if (ROOT / "plugins" / "wasm" / n / "build" / "filter.wasm").is_file()]
    if result.returncode != 0:
        print(result.stdout.rstrip(), file=sys.stderr)
        print(
            f"warning: not every example WASM filter could be built; the registry gets "
            f"{', '.join(ready) or 'none of them'}",
            file=sys.stderr,
        )
    return ready


def builtin_package(name: str, work: Path) -> Path:
    """A package folder for built-in plugin ``name``: manifest.json, a wheel, README.md."""
    source, cls, keywords = BUILTINS[name]
    module = f"wgp_{source}"
    code = work / "code" / module
    shutil.copytree(ROOT / "plugins" / source, code, ignore=shutil.ignore_patterns("__pycache__"))
    for path in code.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(rf"\bplugins\.{source}\b", module, text))
    version = wasmgate_version()
    wheel = build_wheel(
        name,
        version,
        {module: code},
        work,
        entry_points={name: f"{module}:{cls}"},
        summary=f"wasmgate's built-in {name} plugin as a standalone package",
    )
    doc = (ROOT / "plugins" / source / "__init__.py").read_text().split('"""')[1].strip()
    description = doc.split(":", 1)[-1].strip().rstrip(".") + " (the built-in plugin, packaged)."
    manifest = {
        "name": name,
        "version": version,
        "kind": "python",
        "description": description[0].upper() + description[1:],
        "keywords": keywords,
        "author": "the wasmgate authors",
        "license": "Apache-2.0",
        "min_wasmgate": version,
        "payload": wheel.name,
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (work / "README.md").write_text(
        f"# {name}\n\n{manifest['description']}\n\n"
        f"The same code as wasmgate's built-in `{name}` plugin (see docs/plugins.md for its "
        f"config), shipped as a pure wheel with module `{module}`. Installing it pins this "
        "copy in gateway.lock, so a gateway keeps this exact version across upgrades of "
        "wasmgate itself.\n"
    )
    return work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="registry folder (default: here)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    publisher = out / ".publisher"
    if not (publisher / "publisher.key").is_file():
        keygen(publisher)
        print(f"made publisher key {publisher / 'publisher.key'}")
    for name in GENERATED:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    registry = RegistryDir(out)
    try:
        kid = registry.add_publisher(publisher / "publisher.pub")
        add_trusted_key(out / "trust", publisher / "publisher.pub")
        registry_kid = add_trusted_key(out / "trust" / REGISTRY_KEYS, out / PUBLIC)
        key = load_private_key(publisher / "publisher.key")
        with tempfile.TemporaryDirectory(prefix="wasmgate-registry-") as tmp:
            sources = [ROOT / "plugins" / "wasm" / n for n in build_wasm()]
            for name in BUILTINS:
                sources.append(builtin_package(name, Path(tmp) / name))
            for src in sources:
                archive = pack(src, key, Path(tmp) / f"{src.name}.wgpkg")
                entry, _ = registry.publish(archive)
                m = entry.manifest
                print(f"  {m.name:16} {m.version:8} {m.kind:6} sha256 {entry.sha256[:16]}…")
    except MarketError as exc:
        print(f"registry build failed: {exc}", file=sys.stderr)
        return 1
    print(f"registry ready in {out} (publisher key {kid}, registry key {registry_kid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
