"""The package manifest: what a package is, and the bytes its publisher signs.

A manifest is a JSON object validated by :class:`PackageManifest`. Inside a package
it is stored as *canonical JSON* (:func:`canonical_json`: keys sorted, no spaces,
ASCII only, UTF-8), and those exact bytes are what ``manifest.sig`` signs, so a
manifest has one byte form and its signature survives any re-reading.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from market.errors import ManifestError

NAME_RE = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
KEYWORD_RE = r"^[a-z0-9][a-z0-9+.-]*$"
PAYLOAD_RE = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
SHA256_RE = r"^[0-9a-f]{64}$"
# Member names a payload may not take: the package's own files.
RESERVED_NAMES = frozenset({"manifest.json", "manifest.sig", "README.md"})
PAYLOAD_SUFFIX = {"wasm": ".wasm", "python": ".whl"}
ABIS = ("0.1.0", "0.2.0", "0.2.1")


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a JSON value: sorted keys, no whitespace, ASCII, UTF-8."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("utf-8")


def _semver(value: str, field: str) -> str:
    """``value`` if it is a normalized MAJOR.MINOR.PATCH[pre/post/dev] version."""
    try:
        parsed = Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a version (want MAJOR.MINOR.PATCH)") from None
    if len(parsed.release) != 3 or parsed.epoch or parsed.local:
        raise ValueError(f"{value!r}: {field} must be MAJOR.MINOR.PATCH (e.g. 1.4.0)")
    if str(parsed) != value:
        raise ValueError(f"{value!r} is not in normal form; write {str(parsed)!r}")
    return value


class PackageManifest(BaseModel):
    """A package's manifest, as signed (``payload_sha256`` included)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=NAME_RE,
        max_length=64,
        description="Plugin name, kebab-case; the same in gateway.toml, the registry "
        "and metrics (e.g. 'key-auth').",
    )
    version: str = Field(
        description="Semantic version MAJOR.MINOR.PATCH, optionally with a PEP 440 "
        "pre-release, post or dev suffix (1.2.0, 1.2.0rc1), in normal form."
    )
    kind: Literal["wasm", "python"] = Field(
        description="'wasm': the payload is a Proxy-Wasm module; 'python': a wheel."
    )
    description: str = Field(
        min_length=1, max_length=1000, description="One or two sentences: what it does."
    )
    keywords: tuple[str, ...] = Field(
        default=(),
        max_length=20,
        description="Search terms, lowercase (e.g. 'auth', 'headers').",
    )
    author: str | None = Field(default=None, max_length=200, description="Who publishes it.")
    license: str | None = Field(
        default=None, max_length=200, description="SPDX license expression (e.g. Apache-2.0)."
    )
    homepage: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        max_length=500,
        description="http(s) URL of the project's page.",
    )
    abi: Literal["0.1.0", "0.2.0", "0.2.1"] | None = Field(
        default=None,
        description="Proxy-Wasm ABI version the module targets; required for 'wasm', "
        "absent for 'python'.",
    )
    root_id: str | None = Field(
        default=None,
        max_length=256,
        description="Wasm only: the root context id the module expects (default: empty).",
    )
    config_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema (draft 2020-12) of the plugin's config; required for "
        "'wasm', where the gateway enforces it at load time.",
    )
    payload: str = Field(
        pattern=PAYLOAD_RE,
        max_length=255,
        description="File name of the payload inside the package: a '.wasm' module or "
        "a '.whl' wheel.",
    )
    payload_sha256: str = Field(
        pattern=SHA256_RE, description="Lowercase hex sha256 of the payload (pack fills it in)."
    )
    min_wasmgate: str | None = Field(
        default=None, description="Oldest wasmgate version that can run it (MAJOR.MINOR.PATCH)."
    )

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        return _semver(value, "version")

    @field_validator("min_wasmgate")
    @classmethod
    def _check_min_wasmgate(cls, value: str | None) -> str | None:
        return None if value is None else _semver(value, "min_wasmgate")

    @field_validator("keywords")
    @classmethod
    def _check_keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for word in value:
            if not re.match(KEYWORD_RE, word) or len(word) > 40:
                raise ValueError(f"keyword {word!r}: lowercase letters, digits, '+.-', <= 40")
        return value

    @field_validator("config_schema")
    @classmethod
    def _check_config_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                Draft202012Validator.check_schema(value)
            except SchemaError as exc:
                where = "/".join(str(p) for p in exc.path) or "(root)"
                raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _check_kind(self) -> PackageManifest:
        if self.payload in RESERVED_NAMES:
            raise ValueError(f"payload may not be named {self.payload!r}")
        suffix = PAYLOAD_SUFFIX[self.kind]
        if not self.payload.endswith(suffix):
            raise ValueError(f"a {self.kind!r} payload is a '{suffix}' file, not {self.payload!r}")
        if self.kind == "wasm":
            if self.abi is None:
                raise ValueError(f"kind 'wasm' needs abi (one of {', '.join(ABIS)})")
            if self.config_schema is None:
                raise ValueError("kind 'wasm' needs config_schema")
        elif self.abi is not None or self.root_id is not None:
            raise ValueError("abi and root_id are for kind 'wasm' only")
        return self

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object; unset optional fields are left out."""
        return {k: v for k, v in self.model_dump(mode="json").items() if v is not None}

    def canonical_bytes(self) -> bytes:
        """The bytes stored as ``manifest.json`` and signed."""
        return canonical_json(self.to_json())


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def load_json_object(data: bytes, source: str) -> dict[str, Any]:
    """Parse ``data`` as one JSON object, refusing duplicate keys (they are ambiguous)."""
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(source, [f"not valid JSON: {exc}"]) from None
    if not isinstance(obj, dict):
        raise ManifestError(source, ["not a JSON object"])
    return obj


def validate_manifest(obj: dict[str, Any], source: str) -> PackageManifest:
    """Validate a manifest object, or raise :class:`ManifestError` listing every problem."""
    try:
        return PackageManifest.model_validate(obj)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "(manifest)"
            problems.append(f"{where}: {err['msg']}")
        raise ManifestError(source, problems) from None


def parse_manifest(data: bytes, source: str) -> PackageManifest:
    """Parse the ``manifest.json`` bytes of a package; they must be canonical JSON."""
    obj = load_json_object(data, source)
    if canonical_json(obj) != data:
        raise ManifestError(source, ["not canonical JSON (sorted keys, no spaces, ASCII)"])
    return validate_manifest(obj, source)
