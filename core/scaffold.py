"""``wasmgate plugin new``: a buildable Proxy-Wasm filter project, with its tests.

The project's files come from ``core/templates/wasm/``: ``common/`` for every language,
then the language's own folder. A template's path there is the file's path in the
project plus ``.tmpl`` (so this repository's ruff, mypy and pytest leave the templates
alone), with a leading ``dot-`` for a leading dot; ``{{key}}`` in its text is replaced
by :func:`_variables`. ``manifest.json`` is written from :func:`manifest` instead, so
the config schema is data here, not text.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from core.errors import ScaffoldError

# Kebab-case: the name is also the TOML key, the root_id and part of header names.
_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# The default request header, x-NAME-request, must fit the schema's maxLength of 127.
MAX_NAME = 64
_HEADER_NAME = "^[a-z0-9!#$%&'*+.^_`|~-]*$"  # a lowercase HTTP token, or empty (off)
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Language:
    abi: str  # the Proxy-Wasm ABI the template's SDK (or header) speaks
    needs: str  # what `make build` needs, for the next steps


LANGUAGES = {
    "assemblyscript": Language("0.2.0", "Node.js and npm (the first build runs npm install)"),
    "c": Language("0.2.1", "the ziglang package (zig's clang) in $PYTHON"),
    "go": Language("0.2.0", "Go >= 1.24 (the first build fetches proxy-wasm-go-sdk)"),
}


def check_name(name: str) -> None:
    """Raises ScaffoldError unless ``name`` is a kebab-case plugin name."""
    if len(name) > MAX_NAME:
        raise ScaffoldError(f"plugin name {name!r} is longer than {MAX_NAME} characters")
    if _NAME.fullmatch(name):
        return
    hint = ""
    guess = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()
    guess = re.sub(r"[^a-z0-9]+", "-", guess).strip("-")
    if _NAME.fullmatch(guess) and len(guess) <= MAX_NAME:
        hint = f"; did you mean {guess!r}?"
    raise ScaffoldError(
        f"plugin name {name!r} is not kebab-case: lowercase letters and digits in words "
        f"joined by single hyphens, starting with a letter (e.g. 'add-header'){hint}"
    )


def manifest(name: str, lang: str) -> dict[str, Any]:
    """The project's manifest.json: the gateway checks configs against config_schema."""
    return {
        "name": name,
        "version": "0.1.0",
        "kind": "wasm",
        "abi": LANGUAGES[lang].abi,
        "root_id": name,
        "module": "build/filter.wasm",
        "description": f"Adds a configured request header, and 'x-{name}: hello' to responses.",
        "config_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "request_header": {
                    "type": "string",
                    "default": f"x-{name}-request",
                    "description": "Header added to requests going upstream; empty: none.",
                    "pattern": _HEADER_NAME,
                    "maxLength": 127,
                },
                "request_value": {
                    "type": "string",
                    "default": "hello",
                    "description": "Value of request_header.",
                    "maxLength": 127,
                },
            },
        },
    }


def _variables(name: str) -> dict[str, str]:
    return {"name": name}


def _collect(folder: Traversable, prefix: str, out: dict[str, str]) -> None:
    for node in folder.iterdir():
        if node.is_dir():
            _collect(node, f"{prefix}{node.name}/", out)
        elif node.name.endswith(".tmpl"):
            target = node.name.removesuffix(".tmpl")
            if target.startswith("dot-"):
                target = "." + target.removeprefix("dot-")
            out[prefix + target] = node.read_text(encoding="utf-8")


def project_files(name: str, lang: str) -> dict[str, str]:
    """Every file of the project: its path relative to the project, and its text."""
    check_name(name)
    if lang not in LANGUAGES:
        raise ScaffoldError(f"unknown language {lang!r}; choose from {', '.join(LANGUAGES)}")
    root = resources.files("core").joinpath("templates", "wasm")
    templates: dict[str, str] = {}
    for folder in ("common", lang):
        _collect(root.joinpath(folder), "", templates)
    variables = _variables(name)
    files = {
        path: _PLACEHOLDER.sub(lambda m: variables[m.group(1)], text)
        for path, text in templates.items()
    }
    files["manifest.json"] = json.dumps(manifest(name, lang), indent=2) + "\n"
    return dict(sorted(files.items()))


def write_project(
    name: str,
    lang: str,
    dest: Path,
    *,
    force: bool = False,
    progress: Callable[[str, Path], None] | None = None,
) -> list[Path]:
    """Writes the project into ``dest``; returns the files written.

    ``dest`` may be missing or empty; a non-empty one is refused unless ``force``, which
    overwrites the project's files and leaves any others alone. ``progress`` is called
    with ("created" or "replaced", path) as each file is written.
    """
    files = project_files(name, lang)
    if dest.exists() and not dest.is_dir():
        raise ScaffoldError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise ScaffoldError(
            f"{dest} already exists and is not empty; choose another --dir, or pass "
            "--force to overwrite the scaffold's files in it"
        )
    written = []
    for rel, text in files.items():
        path = dest / rel
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
        if progress is not None:
            progress("replaced" if existed else "created", path)
    return written


def next_steps(name: str, lang: str, dest: Path) -> str:
    """What to do after scaffolding: build, test, and the gateway.toml entry."""
    return (
        "next steps:\n"
        f"  cd {shlex.quote(str(dest))}\n"
        f"  export PYTHON={shlex.quote(sys.executable)}   # a Python with wasmgate installed\n"
        f"  make build     # build/filter.wasm; needs {LANGUAGES[lang].needs}\n"
        "  make test      # builds, then runs test_filter.py with pytest\n"
        "then use it in gateway.toml (the wasm path is relative to the gateway.toml):\n"
        f"  [filters.{name}]\n"
        f'  wasm = "{(dest / "build" / "filter.wasm").as_posix()}"\n'
        '  config = { request_header = "x-env", request_value = "prod" }'
    )
