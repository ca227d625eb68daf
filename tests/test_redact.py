"""Credentials never reach the access log or the exported spans (issue 14, item 15).

A real ``wasmgate run`` with key-auth (its key in a query parameter of its own name),
jwt-auth (likewise), the built-in list of sensitive names and ``[redact]`` extra ones;
requests carry secrets in the query and the Referer. The access log (JSON and
combined) and the span posted to a real OTLP collector show the marker instead, and
every other parameter as it was sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.chain import PluginRegistry
from core.config import loads_config
from core.errors import ConfigError
from core.gateway import Snapshot
from core.redact import MARKER, Redactor
from plugin_sdk import Filter, PluginConfig
from tests.harness import GatewayProcess, RecordingUpstream, free_port, raw_request
from tests.test_tracing import Collector

KEY = "k3y-of-alice-0123456789"
SECRETS = {
    "apikey": "S1-apikey-value",
    "access_token": "S2-access-token",
    "Token": "S3-token-mixed-case",  # names match case-insensitively
    "sid": "S4-configured-extra",
    "jwt_tok": "S5-jwt-query-param",
    "password": "S6-in-the-referer",
}


def config(port: int, up: str, collector_url: str, fmt: str) -> str:
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "stdout"
access_log_format = "{fmt}"

[redact]
query = ["sid"]
headers = ["User-Agent"]

[tracing]
otlp_endpoint = "{collector_url}"
batch_seconds = 0.1

[[upstreams]]
name = "app"
endpoints = ["{up}"]

[filters.keys]
plugin = "key-auth"
config.query_param = "mykey"
config.consumers = [{{ name = "alice", key = "{KEY}" }}]

[filters.jwt]
plugin = "jwt-auth"
config.query_param = "jwt_tok"
config.keys = [{{ kid = "k1", alg = "HS256", secret = "{"x" * 40}" }}]

[[routes]]
name = "keyed"
paths = ["/k"]
upstream = "app"
filters = ["keys"]

[[routes]]
name = "jwt"
paths = ["/j"]
upstream = "app"
filters = ["jwt"]
"""


REQUESTS = [
    (
        f"GET /k/items?page=2&apikey={SECRETS['apikey']}&mykey={KEY}"
        f"&access_token={SECRETS['access_token']}&Token={SECRETS['Token']}"
        f"&sid={SECRETS['sid']}&q=keep+me HTTP/1.1\r\n"
        "Host: shop.test\r\n"
        f"Referer: https://shop.test/login?next=%2F&password={SECRETS['password']}\r\n"
        "User-Agent: agent-with-S7-secret-inside\r\n"
        "Connection: close\r\n\r\n"
    ),
    f"GET /j?jwt_tok={SECRETS['jwt_tok']}&lang=en HTTP/1.1\r\nHost: shop.test\r\n"
    "Connection: close\r\n\r\n",
]
KEYED_TARGET = (
    f"/k/items?page=2&apikey={MARKER}&mykey={MARKER}&access_token={MARKER}"
    f"&Token={MARKER}&sid={MARKER}&q=keep+me"
)
JWT_TARGET = f"/j?jwt_tok={MARKER}&lang=en"


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    c = await Collector().start()
    yield c
    await c.stop()


async def serve(
    tmp_path: Path, upstream: RecordingUpstream, collector: Collector, fmt: str
) -> tuple[str, list[dict[str, Any]]]:
    """Send REQUESTS through a fresh gateway; its output and the exported spans."""
    port = free_port()
    gp = GatewayProcess(
        config(port, upstream.address, collector.url, fmt), workdir=str(tmp_path / fmt)
    )
    await asyncio.to_thread(gp.start, port)
    try:
        replies = [await raw_request(port, r.encode()) for r in REQUESTS]
        spans = await collector.wait_for(2)
    finally:
        assert await asyncio.to_thread(gp.terminate) == 0
    assert replies[0].startswith(b"HTTP/1.1 200"), replies[0][:100]
    assert replies[1].startswith(b"HTTP/1.1 401"), replies[1][:100]
    return gp.log(), spans


def assert_no_secret(text: str) -> None:
    for secret in [*SECRETS.values(), KEY, "S7-secret"]:
        assert secret not in text


async def test_json_access_log_and_spans_show_the_marker_not_the_secret(
    tmp_path: Path,
    upstream: RecordingUpstream,
    collector: Collector,
) -> None:
    (tmp_path / "json").mkdir()
    log, spans = await serve(tmp_path, upstream, collector, "json")
    assert_no_secret(log)
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [line["path"] for line in lines] == [KEYED_TARGET, JWT_TARGET]
    assert_no_secret(json.dumps(spans))
    queries = {}
    for span in spans:
        attrs = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
        queries[attrs["url.path"]] = attrs.get("url.query")
    assert queries == {
        "/k/items": KEYED_TARGET.partition("?")[2],
        "/j": JWT_TARGET.partition("?")[2],
    }
    # What the upstream got is untouched by the logging: key-auth hid its own key only.
    (seen,) = upstream.requests
    assert f"apikey={SECRETS['apikey']}" in seen.raw_path and "mykey" not in seen.raw_path


async def test_combined_access_log_redacts_the_request_line_referer_and_headers(
    tmp_path: Path,
    upstream: RecordingUpstream,
    collector: Collector,
) -> None:
    (tmp_path / "combined").mkdir()
    log, _ = await serve(tmp_path, upstream, collector, "combined")
    assert_no_secret(log)
    keyed = next(line for line in log.splitlines() if "GET /k/items" in line)
    assert f'"GET {KEYED_TARGET} HTTP/1.1" 200' in keyed
    assert f'"https://shop.test/login?next=%2F&password={MARKER}" "{MARKER}"' in keyed


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param(b"/a", "/a", id="no-query"),
        pytest.param(b"/a?", "/a?", id="empty-query"),
        pytest.param(b"/a?x=1&y", "/a?x=1&y", id="nothing-sensitive"),
        pytest.param(b"/a?token", "/a?token", id="name-without-value"),
        pytest.param(b"/a?token=", f"/a?token={MARKER}", id="empty-value"),
        pytest.param(b"/a?api%5Fkey=s&x=1", f"/a?api%5Fkey={MARKER}&x=1", id="encoded-name"),
        pytest.param(b"/a?x=1;password=s", f"/a?x=1;password={MARKER}", id="semicolon"),
        pytest.param(b"/a?key=1&key=2", f"/a?key={MARKER}&key={MARKER}", id="repeated"),
        pytest.param(
            b"http://h/a?access_token=s#f", f"http://h/a?access_token={MARKER}#f", id="absolute"
        ),
    ],
)
def test_redactor_targets(target: bytes, expected: str) -> None:
    assert Redactor().target(target) == expected


class SessionAuth(Filter[PluginConfig]):
    """A third-party auth filter that reads a credential from ``?session=``."""

    def sensitive_params(self) -> list[str]:
        return ["session"]

    def sensitive_headers(self) -> list[str]:
        return ["X-Session"]


class Broken(Filter[PluginConfig]):
    def sensitive_params(self) -> list[str]:
        return [b"session"]  # type: ignore[list-item]


def snapshot(plugin: type[Filter[PluginConfig]]) -> Snapshot:
    toml = """
[[upstreams]]
name = "app"
endpoints = ["127.0.0.1:9"]

[filters.mine]
plugin = "mine"

[[routes]]
name = "r"
upstream = "app"
filters = ["mine"]
"""
    return Snapshot(loads_config(toml, "gw.toml"), "gw.toml", PluginRegistry({"mine": plugin}))


def test_a_plugins_declared_names_are_redacted() -> None:
    snap = snapshot(SessionAuth)
    try:
        assert snap.redactor.target(b"/a?session=s&b=1") == f"/a?session={MARKER}&b=1"
        assert snap.redactor.header("x-session", "s") == MARKER
        assert snap.redactor.header("User-Agent", "curl") == "curl"
    finally:
        snap.close()


def test_a_plugin_declaring_something_else_than_names_is_refused_at_load() -> None:
    with pytest.raises(ConfigError) as info:
        snapshot(Broken)
    assert "gw.toml" in str(info.value)
    assert "filter 'mine': sensitive_params() must return names (str)" in str(info.value)


@pytest.mark.parametrize("name", ["", " key", "a=b", "a&b"])
def test_bad_redact_names_name_the_field(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(f"[redact]\nquery = [{name!r}]\n", "gw.toml")
    assert "redact.query" in str(info.value) and "invalid name" in str(info.value)
