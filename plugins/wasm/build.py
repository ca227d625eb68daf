"""Build wasmgate's example Proxy-Wasm filters and write their manifests.

    python plugins/wasm/build.py [--force] [NAME ...]      (or: make wasm)

Each filter in FILTERS is built into plugins/wasm/<name>/build/filter.wasm, and
plugins/wasm/<name>/manifest.json is (re)written from the table below: name,
version, abi, root_id, module path, description and the JSON Schema of its
configuration, which the gateway enforces when it loads the plugin.

A filter is skipped when its output is newer than every one of its inputs
(sources, package files and this script). Toolchains:

- as-headers: Node.js + npm; AssemblyScript 0.14 and @solo-io/proxy-runtime
  0.1.8 come from the filter's package-lock.json (`npm ci`, run when
  node_modules is missing or older than the lockfile).
- c-filter: zig's clang from the `ziglang` PyPI package, imported from the
  Python that runs this script (`make wasm` installs it into .venv).

Standard library only, so it runs before the project is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

_HEADER_NAME = "^[a-z0-9!#$%&'*+.^_`|~-]*$"  # lowercase HTTP token, or empty (off)


class BuildError(Exception):
    """A filter could not be built; the message says why and what to do."""


@dataclass(frozen=True)
class Filter:
    name: str
    version: str
    abi: str  # Proxy-Wasm ABI version, as in the module's proxy_abi_version_* export
    root_id: str
    description: str
    sources: tuple[str, ...]  # globs relative to the filter directory
    config_schema: dict[str, Any]

    @property
    def root(self) -> Path:
        return HERE / self.name

    @property
    def output(self) -> Path:
        return self.root / "build" / "filter.wasm"

    def inputs(self) -> list[Path]:
        found = {p for pattern in self.sources for p in self.root.glob(pattern) if p.is_file()}
        return [*sorted(found), Path(__file__).resolve()]

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kind": "wasm",
            "abi": self.abi,
            "root_id": self.root_id,
            "module": "build/filter.wasm",
            "description": self.description,
            "config_schema": self.config_schema,
        }


def _string(default: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "default": default, "description": description, **extra}


def _integer(default: int, description: str, minimum: int, maximum: int) -> dict[str, Any]:
    return {
        "type": "integer",
        "default": default,
        "minimum": minimum,
        "maximum": maximum,
        "description": description,
    }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


AS_HEADERS = Filter(
    name="as-headers",
    version="0.1.0",
    abi="0.2.0",
    root_id="as-headers",
    description=(
        "AssemblyScript example: adds a request and a response header, denies paths by "
        "prefix, optionally gates each request on an http call, counts timer ticks."
    ),
    sources=("assembly/**/*.ts", "package.json", "package-lock.json"),
    config_schema=_object(
        {
            "request_header": _string(
                "x-wasm",
                "Header added to requests going upstream; empty: none.",
                pattern=_HEADER_NAME,
                maxLength=128,
            ),
            "request_value": _string("as", "Value of request_header.", maxLength=1024),
            "response_header": _string(
                "x-wasm-filter",
                "Header added to responses; empty: none.",
                pattern=_HEADER_NAME,
                maxLength=128,
            ),
            "response_value": _string("as-headers", "Value of response_header.", maxLength=1024),
            "deny_path_prefix": _string(
                "",
                "Requests whose path starts with this get a local 403; empty: off.",
                maxLength=1024,
            ),
            "call_upstream": _string(
                "",
                "Upstream asked before each request (GET call_path); 2xx continues, "
                "anything else denies with 403, no answer with 503; empty: off.",
                maxLength=256,
            ),
            "call_path": _string("/", "Path of the check request.", pattern="^/", maxLength=1024),
            "call_authority": _string(
                "", "':authority' of the check request; empty: call_upstream.", maxLength=256
            ),
            "call_timeout_ms": _integer(1000, "Timeout of the check request.", 1, 60000),
            "tick_ms": _integer(
                0, "Timer period; each tick increments as_headers_ticks; 0: off.", 0, 86400000
            ),
        }
    ),
)

C_FILTER = Filter(
    name="c-filter",
    version="0.1.0",
    abi="0.2.1",
    root_id="",
    description=(
        "C example: denies requests carrying a header, counts requests in shared data, "
        "adds a response header, rewrites the response body, logs on a timer."
    ),
    sources=("src/*.c", "src/*.h"),
    config_schema=_object(
        {
            "deny_header": _string(
                "x-block",
                "Requests carrying this header get a local 403; empty: off.",
                pattern=_HEADER_NAME,
                maxLength=127,
            ),
            "count_header": _string(
                "x-c-filter-count",
                "Request header carrying the shared request count upstream; empty: none.",
                pattern=_HEADER_NAME,
                maxLength=127,
            ),
            "response_header": _string(
                "x-c-filter",
                "Header added to responses; empty: none.",
                pattern=_HEADER_NAME,
                maxLength=127,
            ),
            "response_value": _string("c-filter", "Value of response_header.", maxLength=127),
            "body_from": _string(
                "",
                "Text replaced in response bodies (buffers the body); empty: off.",
                maxLength=255,
            ),
            "body_to": _string("", "Replacement for body_from.", maxLength=255),
            "tick_ms": _integer(
                0, "Timer period; each tick logs the request count; 0: off.", 0, 86400000
            ),
        }
    ),
)

FILTERS = {f.name: f for f in (AS_HEADERS, C_FILTER)}


def _run(cmd: list[str], cwd: Path) -> None:
    print("  $", " ".join(cmd), flush=True)
    result = subprocess.run(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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


BUILDERS = {"as-headers": _build_as_headers, "c-filter": _build_c_filter}


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
    BUILDERS[f.name](f)
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
    for name in args.names or list(FILTERS):
        try:
            build(FILTERS[name], args.force)
        except BuildError as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
