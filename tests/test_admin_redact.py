"""``GET /config`` shows no secret: every built-in plugin configured with credentials in a
real ``wasmgate run``, each filter's config read back through the admin API. Secret
fields (marked with ``plugin_sdk.Secret``) read ``<redacted>``; the rest stays readable.
Plus the redaction rules themselves: schemas (Python models, WASM manifests) first, the
name heuristic only where no schema speaks."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core.admin_view import build_view
from core.config import loads_config
from core.config_redact import REDACTED, by_schema
from plugin_sdk.testing import GatewayProcess, free_port

TOKEN = "0123456789abcdef-admin-token"
HASH = bcrypt.hashpw(b"pw-of-alice", bcrypt.gensalt(rounds=4)).decode()
PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


@dataclass
class Case:
    plugin: str
    config: dict[str, Any]
    secrets: list[str] = field(default_factory=list)  # must not come back
    shown: list[str] = field(default_factory=list)  # must come back


CASES = [
    Case(
        "basic-auth",
        {"users": {"alice": HASH}, "realm": "visible-realm"},
        [HASH],
        ["alice", "visible-realm"],
    ),
    Case("canary", {"upstream": "beta", "header": "x-visible-canary"}, [], ["x-visible-canary"]),
    Case("cors", {"allow_origins": ["https://visible.example"]}, [], ["https://visible.example"]),
    Case(
        "headers",
        {
            "request": {
                "set": {"authorization": "Bearer upstream-secret-1"},
                "add": {"cookie": "session=upstream-secret-2"},
                "remove": ["x-visible-removed"],
            },
            "response": {"set": {"x-upstream-auth": "upstream-secret-3"}},
        },
        ["upstream-secret-1", "upstream-secret-2", "upstream-secret-3"],
        ["authorization", "cookie", "x-upstream-auth", "x-visible-removed"],
    ),
    Case("ip-restriction", {"allow": ["10.9.8.0/24"]}, [], ["10.9.8.0/24"]),
    Case(
        "jwt-auth",
        {
            "keys": [
                {"kid": "visible-kid-1", "alg": "HS256", "secret": "hmac-secret-" + "x" * 40},
                {"kid": "visible-kid-2", "alg": "RS256", "pem": PEM},
            ],
            "issuer": "https://visible-issuer.example",
        },
        ["hmac-secret-", "BEGIN PUBLIC KEY"],
        ["visible-kid-1", "visible-kid-2", "HS256", "https://visible-issuer.example"],
    ),
    Case(
        "key-auth",
        {
            "header": "X-Visible-Key",
            "consumers": [{"name": "visible-consumer", "key": "api-key-secret-0123456789"}],
        },
        ["api-key-secret-0123456789"],
        ["visible-consumer", "X-Visible-Key"],
    ),
    Case(
        "rate-limit",
        {"rate": 50, "key": "header:x-visible-client", "message": "visible-slow-down"},
        [],
        ["header:x-visible-client", "visible-slow-down"],  # `key` here is no credential
    ),
    Case("mirror", {"endpoints": ["127.0.0.9:8099"], "percent": 50}, [], ["127.0.0.9:8099"]),
    Case("redirect", {"to": "https://visible-target.example", "code": 302}, [], ["302"]),
    Case(
        "respond",
        {"status": 503, "body": "visible-maintenance", "headers": {"X-Visible": "yes"}},
        [],
        ["visible-maintenance", "X-Visible"],
    ),
    Case("rewrite", {"strip_prefix": "/visible-prefix"}, [], ["/visible-prefix"]),
]


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def every_plugin_config(port: int, admin: int) -> str:
    filters = "".join(
        f"\n[filters.f-{c.plugin}]\nplugin = {json.dumps(c.plugin)}\n"
        f"config = {toml_value(c.config)}\n"
        for c in CASES
    )
    routes = "".join(
        f'\n[[routes]]\nname = "r-{c.plugin}"\npaths = ["/{c.plugin}"]\nupstream = "app"\n'
        f'filters = ["f-{c.plugin}"]\n'
        for c in CASES
    )
    inline = toml_value({"plugin": "headers", "config": {"request": {"set": {"x-k": "inline-s"}}}})
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[admin]
listen = "127.0.0.1:{admin}"
token = "{TOKEN}"

[[upstreams]]
name = "app"
endpoints = ["127.0.0.1:9"]

[[upstreams]]
name = "beta"
endpoints = ["127.0.0.1:9"]

[[routes]]
name = "inline"
paths = ["/inline"]
upstream = "app"
filters = [{inline}]
{filters}{routes}"""


@pytest.fixture(scope="module")
def shown_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    port, admin = free_port(), free_port()
    workdir = tmp_path_factory.mktemp("redact")
    gw = GatewayProcess(every_plugin_config(port, admin), workdir=str(workdir)).start(port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/config", timeout=5) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield body["config"]
    finally:
        assert gw.terminate() == 0, gw.log()


def test_every_built_in_plugin_has_a_case() -> None:
    ours = {
        ep.name for ep in entry_points(group="wasmgate.plugins") if ep.value.startswith("plugins.")
    }
    assert ours == {c.plugin for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.plugin for c in CASES])
def test_config_shows_no_secret_of_a_built_in_plugin(
    case: Case, shown_config: dict[str, Any]
) -> None:
    text = json.dumps(shown_config["filters"][f"f-{case.plugin}"])
    for secret in case.secrets:
        assert secret not in text
    if case.secrets:
        assert REDACTED in text
    else:
        assert REDACTED not in text
    for visible in case.shown:
        assert visible in text


def test_inline_filters_and_the_admin_token_are_redacted(
    shown_config: dict[str, Any],
) -> None:
    (inline,) = next(r for r in shown_config["routes"] if r["name"] == "inline")["filters"]
    assert inline["config"] == {"request": {"set": {"x-k": REDACTED}}}
    assert shown_config["admin"]["token"] == REDACTED
    assert TOKEN not in json.dumps(shown_config)


def test_unused_filters_certificates_and_urls_are_redacted(tmp_path: Path) -> None:
    cfg = loads_config(
        """
[[upstreams]]
name = "app"
endpoints = ["127.0.0.1:9"]

[filters.unused]
plugin = "headers"
config.request.set.authorization = "Bearer never-shown"

[market]
registry = "https://ci:pw-in-url@registry.example/"

[[certificates]]
hosts = ["a.example"]
cert_pem = "-----BEGIN CERTIFICATE-----"
key_pem = "-----BEGIN PRIVATE KEY-----"
""",
        str(tmp_path / "gateway.toml"),
    )
    shown = build_view(cfg, []).config  # no route: no instance of the plugin
    assert shown["filters"]["unused"]["config"]["request"]["set"] == {"authorization": REDACTED}
    assert shown["certificates"][0]["key_pem"] == REDACTED
    assert shown["certificates"][0]["cert_pem"] == "-----BEGIN CERTIFICATE-----"
    assert shown["market"]["registry"] == f"https://ci:{REDACTED}@registry.example/"


MANIFEST_SCHEMA = {
    "type": "object",
    "properties": {
        "upstream_token": {"type": "string", "writeOnly": True},
        "key": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "auth": {"anyOf": [{"type": "string", "writeOnly": True}, {"type": "null"}]},
    },
}


@pytest.mark.parametrize(
    ("schema", "value", "shown"),
    [
        (
            MANIFEST_SCHEMA,
            {"upstream_token": "t", "key": "visible", "tags": ["a"], "auth": "x"},
            {"upstream_token": REDACTED, "key": "visible", "tags": ["a"], "auth": REDACTED},
        ),
        (None, {"password": "p", "note": "n"}, {"password": REDACTED, "note": "n"}),
        (
            {"type": "object", "properties": {"n": {"type": "integer"}}},
            {"n": 1, "undescribed_token": "t"},
            {"n": 1, "undescribed_token": REDACTED},
        ),
        (
            {"type": "object", "additionalProperties": {"type": "string", "writeOnly": True}},
            {"a": "1", "b": ""},
            {"a": REDACTED, "b": ""},
        ),
        (
            {"type": "object", "properties": {"url": {"type": "string"}}},
            {"url": "https://bob:hunter2@registry.example/x", "n": "http://a@b.example"},
            {"url": f"https://bob:{REDACTED}@registry.example/x", "n": "http://a@b.example"},
        ),
    ],
    ids=["wasm-manifest", "no-schema", "undescribed-field", "map-of-secrets", "url-password"],
)
def test_redaction_follows_the_schema(
    schema: dict[str, Any] | None, value: dict[str, Any], shown: dict[str, Any]
) -> None:
    assert by_schema(value, schema) == shown
