"""Shared tools of the market tests: publishers, packages, registries and the CLI.

Packages are built with the real ``pack`` from real payloads: a Proxy-Wasm module
compiled from ``tests/wasm_modules/abi_0_2_1.wat`` (it adds ``x-abi: 0.2.1`` to each
request it sees), or a pure wheel built by :func:`market.wheel_build.build_wheel` from a
small plugin written here (it adds ``x-market-python: VERSION``). The CLI runs in a
subprocess exactly as a user runs it, with ``WASMGATE_HOME`` pointing into the test's
temporary folder.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from market.package import pack
from market.signing import TrustStore, keygen, load_private_key
from plugin_sdk.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
WAT = ROOT / "tests" / "wasm_modules" / "abi_0_2_1.wat"
Members = list[tuple[str, bytes]]

WASM_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {"note": {"type": "string"}},
}

PYTHON_PLUGIN = '''\
"""A market test plugin: tags each request with the package's version."""

from plugin_sdk import Context, Filter, PluginConfig


class TagConfig(PluginConfig):
    header: str = "x-market-python"


class Tag(Filter[TagConfig]):
    """Adds a header naming the installed version."""

    Config = TagConfig

    def on_request(self, ctx: Context) -> None:
        ctx.request.headers.set(self.config.header, "{version}")
'''


@dataclass
class Publisher:
    private_path: Path
    public_path: Path
    key: Ed25519PrivateKey
    trust: TrustStore
    key_id: str


def make_publisher(folder: Path) -> Publisher:
    private_path, public_path = keygen(folder)
    trust = TrustStore.from_dir(folder)
    return Publisher(
        private_path, public_path, load_private_key(private_path), trust, next(iter(trust))
    )


def trust(trust_dir: Path, publisher: Publisher | None, registry_root: Path | None) -> None:
    """Trust ``publisher``'s key and the index key of the registry at ``registry_root``."""
    from market.signed_index import PUBLIC, REGISTRY_KEYS
    from market.signing import add_trusted_key

    if publisher is not None:
        add_trusted_key(trust_dir, publisher.public_path)
    if registry_root is not None:
        add_trusted_key(trust_dir / REGISTRY_KEYS, registry_root / PUBLIC)


def wasm_module() -> bytes:
    from wasmtime import wat2wasm

    return bytes(wat2wasm(WAT.read_text()))


def make_wasm_package(
    out_dir: Path,
    publisher: Publisher,
    name: str,
    version: str,
    *,
    description: str = "adds x-abi to requests",
    keywords: Sequence[str] = ("test",),
    module: bytes | None = None,
    min_wasmgate: str | None = None,
) -> Path:
    """Pack and sign a wasm package ``NAME-VERSION.wgpkg`` in ``out_dir``."""
    src = out_dir / f"src-{name}-{version}"
    src.mkdir(parents=True)
    (src / "filter.wasm").write_bytes(module if module is not None else wasm_module())
    manifest = {
        "name": name,
        "version": version,
        "kind": "wasm",
        "abi": "0.2.1",
        "description": description,
        "keywords": list(keywords),
        "payload": "filter.wasm",
        "config_schema": WASM_SCHEMA,
    }
    if min_wasmgate:
        manifest["min_wasmgate"] = min_wasmgate
    (src / "manifest.json").write_text(json.dumps(manifest))
    (src / "README.md").write_text(f"# {name}\n\nThe {name} test filter, version {version}.\n")
    return pack(src, publisher.key, out_dir / f"{name}-{version}.wgpkg")


def make_python_package(
    out_dir: Path,
    publisher: Publisher,
    name: str,
    version: str,
    *,
    module: str | None = None,
    requires: Sequence[str] = (),
) -> Path:
    """Pack and sign a python package whose wheel provides plugin ``name``."""
    from market.wheel_build import build_wheel

    module = module or "wgtest_" + name.replace("-", "_")
    src = out_dir / f"src-{name}-{version}"
    (src / "code" / module).mkdir(parents=True)
    (src / "code" / module / "__init__.py").write_text(PYTHON_PLUGIN.replace("{version}", version))
    wheel = build_wheel(
        name,
        version,
        {module: src / "code" / module},
        src,
        entry_points={name: f"{module}:Tag"},
        requires=requires,
        summary="market test plugin",
    )
    manifest = {
        "name": name,
        "version": version,
        "kind": "python",
        "description": "tags requests with its version",
        "keywords": ["test", "python"],
        "payload": wheel.name,
    }
    (src / "manifest.json").write_text(json.dumps(manifest))
    return pack(src, publisher.key, out_dir / f"{name}-{version}.wgpkg")


def tar_bytes(entries: Sequence[tarfile.TarInfo | tuple[str, bytes]], *, gz: bool = True) -> bytes:
    """A tar (gzip'd by default) of regular files ``(name, data)`` and raw headers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue()) if gz else buf.getvalue()


def members_of(path: Path) -> Members:
    with tarfile.open(path) as tar:
        files = [(m, tar.extractfile(m)) for m in tar.getmembers()]
        return [(m.name, f.read()) for m, f in files if f is not None]


def wasmgate(
    *args: str | Path, cwd: Path, home: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``wasmgate`` CLI in ``cwd`` with ``WASMGATE_HOME=home``."""
    env = {**os.environ, "WASMGATE_HOME": str(home)}
    env.pop("WASMGATE_REGISTRY", None)
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@contextmanager
def served_registry(root: Path, token: str | None = "tok") -> Iterator[str]:
    """``wasmgate market serve --root ROOT`` in a child process; yields its URL."""
    port = free_port()
    args = [sys.executable, "-m", "core.cli", "market", "serve", "--root", str(root)]
    args += ["--listen", f"127.0.0.1:{port}"]
    if token:
        args += ["--token", token]
    log = root.parent / f"registry-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(port, proc)
        except RuntimeError as exc:
            raise RuntimeError(f"market serve: {exc}: {log.read_text()}") from None
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
