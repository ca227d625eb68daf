"""Build wasmgate's example Proxy-Wasm filters and write their manifests.

    python plugins/wasm/build.py [--force] [NAME ...]      (or: make wasm)

Each filter in catalog.FILTERS is built into plugins/wasm/<name>/build/filter.wasm,
and plugins/wasm/<name>/manifest.json is (re)written from that table: name,
version, abi, root_id, module path, description and the JSON Schema of its
configuration, which the gateway enforces when it loads the plugin.

A filter is skipped when its output is newer than every one of its inputs
(sources, package files, catalog.py and this script). Toolchains:

- as-headers: Node.js + npm; AssemblyScript 0.14 and @solo-io/proxy-runtime
  0.1.8 come from the filter's package-lock.json (`npm ci`, run when
  node_modules is missing or older than the lockfile).
- c-filter: zig's clang from the `ziglang` PyPI package, imported from the
  Python that runs this script (`make wasm` installs it into .venv).
- go-* and higress-demo: Go >= 1.24 (`go` on PATH, /usr/local/go/bin/go, or $GO),
  `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`. Modules come from the
  Go module proxy, checked against each filter's committed go.sum; the build and
  module caches live in .cache/go/ at the repository root (git-ignored), so a
  rebuild takes seconds. GOTOOLCHAIN=local: the installed Go builds, no download.
- rust-headers: cargo (`cargo` on PATH, ~/.cargo/bin/cargo, or $CARGO) with the
  wasm32-wasip1 target (added with `rustup target add wasm32-wasip1` when rustup is
  there and the target is not), `cargo build --release --locked --target
  wasm32-wasip1`. Crates come from crates.io, pinned by the committed Cargo.lock;
  CARGO_HOME and CARGO_TARGET_DIR live in .cache/cargo/ at the repository root
  (git-ignored), so a rebuild takes seconds.

Standard library only, so it runs before the project is installed.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from catalog import FILTERS, HERE, Filter

REPO = HERE.parent.parent
GO_CACHE = REPO / ".cache" / "go"
CARGO_CACHE = REPO / ".cache" / "cargo"
RUST_TARGET = "wasm32-wasip1"
GO_MIN = (1, 24)  # wasip1 with -buildmode=c-shared (//go:wasmexport) arrived in 1.24


class BuildError(Exception):
    """A filter could not be built; the message says why and what to do."""


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    print("  $", " ".join(cmd), flush=True)
    result = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if result.returncode != 0:
        raise BuildError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}")


def _build_as_headers(f: Filter) -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise BuildError(
            "as-headers needs Node.js and npm, which are not on PATH.\n"
            "  Debian/Ubuntu: sudo apt-get install nodejs npm   (or https://nodejs.org/)"
        )
    lock = f.root / "package-lock.json"
    installed = f.root / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        print("  installing AssemblyScript and proxy-runtime from package-lock.json", flush=True)
        _run([npm, "ci", "--no-audit", "--no-fund"], f.root)
    asc = f.root / "node_modules" / ".bin" / "asc"
    if not asc.exists():
        raise BuildError(
            f"{asc} is missing after npm ci; delete {f.root / 'node_modules'} and retry"
        )
    # --use abort=...: the runtime's abort logs at CRITICAL, then wasi_unstable.proc_exit.
    _run(
        [
            str(asc),
            "assembly/index.ts",
            "--binaryFile",
            "build/filter.wasm",
            "--use",
            "abort=abort_proc_exit",
            "--optimize",
        ],
        f.root,
    )


def _build_c_filter(f: Filter) -> None:
    if importlib.util.find_spec("ziglang") is None:
        raise BuildError(
            f"c-filter needs zig, from the `ziglang` package, which {sys.executable} lacks.\n"
            f"  {sys.executable} -m pip install ziglang   (`make wasm` does this for .venv)"
        )
    _run(
        [
            sys.executable,
            "-m",
            "ziglang",
            "cc",
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-O2",
            "-s",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            "build/filter.wasm",
            "src/filter.c",
            "src/config.c",
        ],
        f.root,
    )


def go_binary() -> str | None:
    """The `go` command: $GO, else `go` on PATH, else Go's default install path."""
    for candidate in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def go_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Go filter build: wasip1/wasm, the repository's caches."""
    env = dict(os.environ if base is None else base)
    env.update(
        GOOS="wasip1",
        GOARCH="wasm",
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOFLAGS="-mod=mod -modcacherw",  # -modcacherw: `rm -rf .cache` works
        GOCACHE=str(GO_CACHE / "build"),
        GOMODCACHE=str(GO_CACHE / "mod"),
    )
    return env


def _build_go(f: Filter) -> None:
    go = go_binary()
    if go is None:
        raise BuildError(
            f"{f.name} needs Go >= 1.24, which is not on PATH (nor at /usr/local/go/bin/go).\n"
            "  https://go.dev/dl/   (or set GO=/path/to/go)"
        )
    version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, env=go_env()
    ).stdout.strip()
    found = re.match(r"go(\d+)\.(\d+)", version)
    if found is None or (int(found[1]), int(found[2])) < GO_MIN:
        raise BuildError(
            f"{f.name} needs Go >= 1.24 (GOOS=wasip1 with -buildmode=c-shared); "
            f"{go} is {version or 'of an unknown version'}"
        )
    _run(
        [go, "build", "-buildmode=c-shared", "-trimpath", "-o", "build/filter.wasm", "."],
        f.root,
        env=go_env(),
    )


def _rust_tool(name: str) -> str | None:
    """``cargo``/``rustup``/``rustc``: $CARGO-style override, PATH, then ~/.cargo/bin."""
    for candidate in (
        os.environ.get(name.upper()),
        shutil.which(name),
        str(Path.home() / ".cargo" / "bin" / name),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def rust_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Rust filter build: the repository's cargo caches."""
    env = dict(os.environ if base is None else base)
    env.update(
        CARGO_HOME=str(CARGO_CACHE / "home"),
        CARGO_TARGET_DIR=str(CARGO_CACHE / "target"),
        CARGO_TERM_COLOR="never",
    )
    return env


def _rust_target_installed(rustc: str) -> bool:
    sysroot = subprocess.run(
        [rustc, "--print", "sysroot"], capture_output=True, text=True, env=rust_env()
    ).stdout.strip()
    return bool(sysroot) and (Path(sysroot) / "lib" / "rustlib" / RUST_TARGET).is_dir()


def _ensure_rust_target(f: Filter) -> None:
    """Adds the wasm32-wasip1 target with rustup when it is missing."""
    rustc = _rust_tool("rustc")
    if rustc is None:
        raise BuildError(f"{f.name} needs rustc next to cargo; it is not on PATH")
    if _rust_target_installed(rustc):
        return
    rustup = _rust_tool("rustup")
    if rustup is None:
        raise BuildError(
            f"{f.name} needs the Rust target {RUST_TARGET}, which {rustc} lacks, and there "
            f"is no rustup to add it.\n  Install the target's standard library for your "
            "Rust (https://rustup.rs/ then `rustup target add wasm32-wasip1`)"
        )
    print(f"  adding the Rust target {RUST_TARGET}", flush=True)
    _run([rustup, "target", "add", RUST_TARGET], f.root, env=rust_env())
    if not _rust_target_installed(rustc):
        raise BuildError(f"`rustup target add {RUST_TARGET}` did not install it for {rustc}")


def _build_rust(f: Filter) -> None:
    cargo = _rust_tool("cargo")
    if cargo is None:
        raise BuildError(
            f"{f.name} needs cargo (Rust), which is not on PATH (nor in ~/.cargo/bin).\n"
            "  https://rustup.rs/   then: rustup target add wasm32-wasip1   (or set CARGO=...)"
        )
    _ensure_rust_target(f)
    _run(
        [cargo, "build", "--release", "--locked", "--target", RUST_TARGET],
        f.root,
        env=rust_env(),
    )
    artifact = f.name.replace("-", "_") + ".wasm"
    shutil.copyfile(CARGO_CACHE / "target" / RUST_TARGET / "release" / artifact, f.output)


BUILDERS = {
    "assemblyscript": _build_as_headers,
    "c": _build_c_filter,
    "go": _build_go,
    "rust": _build_rust,
}


def _check_exports(f: Filter) -> None:
    """Rejects an output that lacks `memory` or the ABI marker of its manifest."""
    try:
        import wasmtime
    except ImportError:
        return  # the venv has it; a bare interpreter just skips the check
    module = wasmtime.Module.from_file(wasmtime.Engine(), str(f.output))
    exports = {e.name for e in module.exports}
    marker = "proxy_abi_version_" + f.abi.replace(".", "_")
    missing = {"memory", marker} - exports
    if missing:
        raise BuildError(f"{f.output} does not export {', '.join(sorted(missing))}")


def _write_manifest(f: Filter) -> None:
    path = f.root / "manifest.json"
    text = json.dumps(f.manifest(), indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        print(f"  wrote {path.relative_to(HERE.parent.parent)}")


def build(f: Filter, force: bool) -> bool:
    """Builds one filter; returns False when it was already up to date."""
    _write_manifest(f)
    newest_input = max(p.stat().st_mtime for p in f.inputs())
    if not force and f.output.exists() and f.output.stat().st_mtime > newest_input:
        print(f"{f.name}: up to date ({f.output.relative_to(HERE.parent.parent)})")
        return False
    print(f"{f.name}: building", flush=True)
    started = time.monotonic()
    f.output.parent.mkdir(exist_ok=True)
    BUILDERS[f.toolchain](f)
    _check_exports(f)
    size = f.output.stat().st_size
    print(
        f"{f.name}: built {f.output.relative_to(HERE.parent.parent)} "
        f"({size} bytes, {time.monotonic() - started:.1f}s)"
    )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"filters ({', '.join(FILTERS)})")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in FILTERS]
    if unknown:
        parser.error(f"unknown filter {', '.join(unknown)}; choose from {', '.join(FILTERS)}")
    failed = []
    # One build at a time per checkout: parallel test workers (pytest -n) and a
    # `make wasm` may ask for the same filter at once, and build into the same files.
    with open(HERE / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in args.names or list(FILTERS):
            try:
                build(FILTERS[name], args.force)
            except BuildError as exc:
                print(f"{name}: FAILED: {exc}", file=sys.stderr)
                failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
