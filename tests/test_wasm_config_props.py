"""Proxy-Wasm configuration and properties through the real gateway.

``tests/wasm_modules/probe.wat`` reports the plugin and VM configuration it was given
and answers ``proxy_get_property`` for the path a request names (``x-prop``), each
value hex-encoded, so every case here is one request and one comparison.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from pathlib import Path

import aiohttp
import pytest

from core.admin_view import build_view
from core.config import loads_config
from core.config_redact import REDACTED
from core.errors import ConfigError
from core.gateway import Snapshot
from core.wasm.host import serialize_map
from plugin_sdk.testing import make_request, make_wasm_filter, run_filter
from tests.conftest import StartGateway
from tests.h2client import H2Client
from tests.harness import InProcessGateway, RecordingUpstream, gateway_toml, read_response
from tests.test_wasm_host import wasm_file, wasm_toml


def i64(n: int) -> bytes:
    return struct.pack("<q", n)


async def probe(
    gw: InProcessGateway,
    upstream: RecordingUpstream,
    http: aiohttp.ClientSession,
    path: str = "/x",
    **headers: str,
) -> dict[str, str]:
    """One request through the probe; the headers it added, as the upstream saw them."""
    async with http.get(gw.url + path, headers=headers) as resp:
        assert resp.status == 200
    return upstream.requests[-1].headers


def load_problems(tmp_path: Path, toml: str) -> list[str]:
    source = tmp_path / "gateway.toml"
    source.write_text(toml)
    try:
        Snapshot(loads_config(toml, str(source)), str(source)).close()
    except ConfigError as err:
        return list(err.problems)
    return []


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("extra", "config", "vm_config"),
    [
        pytest.param('config = "x-bot"', b"x-bot", b"", id="string-verbatim"),
        pytest.param(
            "config = '''\nallow:\n  - /a\n'''", b"allow:\n  - /a\n", b"", id="yaml-string"
        ),
        pytest.param('config = { a = 1, b = "x" }', b'{"a": 1, "b": "x"}', b"", id="table-json"),
        pytest.param("", b"", b"", id="none-size-0"),
        pytest.param('vm_config = "vm-bytes"', b"", b"vm-bytes", id="vm-string"),
        pytest.param("vm_config = { shards = 4 }", b"", b'{"shards": 4}', id="vm-table-json"),
    ],
)
async def test_configuration_is_handed_over(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    extra: str,
    config: bytes,
    vm_config: bytes,
) -> None:
    module = wasm_file(tmp_path, "probe.wat")
    gw = await start_gateway(wasm_toml({"v1": [upstream.address]}, module, extra=extra))
    seen = await probe(gw, upstream, http)
    assert (bytes.fromhex(seen["x-config"]), bytes.fromhex(seen["x-vm-config"])) == (
        config,
        vm_config,
    )


SCHEMA_STRING = {"type": "string", "pattern": "^[a-z-]+$"}
SCHEMA_OBJECT = {
    "type": "object",
    "properties": {"header": {"type": "string"}},
    "required": ["header"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("schema", "extra", "problem"),
    [
        pytest.param(SCHEMA_STRING, 'config = "x-bot"', None, id="string-schema-ok"),
        pytest.param(
            SCHEMA_STRING,
            'config = "X Bot"',
            "filters.w: wasm filter 'w' (probe.wasm): config: 'X Bot' does not match",
            id="string-schema-mismatch",
        ),
        pytest.param(
            SCHEMA_OBJECT, 'config = \'{"header": "x-bot"}\'', None, id="json-string-object-ok"
        ),
        pytest.param(
            SCHEMA_OBJECT,
            "config = '{\"header\": 7}'",
            "config.header: 7 is not of type 'string'",
            id="json-string-checked",
        ),
        pytest.param(
            SCHEMA_OBJECT,
            'config = "x-bot"',
            "config: a string that is not JSON, but the manifest's config_schema describes "
            "an object",
            id="bare-string-object-schema",
        ),
        pytest.param(
            SCHEMA_STRING,
            "config = { header = 'x' }",
            "config: {'header': 'x'} is not of type 'string'",
            id="table-string-schema",
        ),
    ],
)
def test_the_manifest_schema_checks_a_string_config(
    tmp_path: Path, schema: dict[str, object], extra: str, problem: str | None
) -> None:
    module = wasm_file(tmp_path, "probe.wat")
    (tmp_path / "manifest.json").write_text(json.dumps({"config_schema": schema}))
    toml = wasm_toml({"v1": ["127.0.0.1:1"]}, module, extra=extra).replace(str(module), module.name)
    problems = load_problems(tmp_path, toml)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        pytest.param(
            "config = [1, 2]",
            "filters.w.config: must be a table (handed over as JSON) or a string "
            "(handed over verbatim)",
            id="list",
        ),
        pytest.param(
            "vm_config = 3",
            "filters.w.vm_config: must be a table (handed over as JSON) or a string "
            "(handed over verbatim)",
            id="vm-number",
        ),
    ],
)
def test_a_config_of_another_type_is_refused(tmp_path: Path, extra: str, problem: str) -> None:
    module = wasm_file(tmp_path, "probe.wat")
    try:
        loads_config(wasm_toml({"v1": ["127.0.0.1:1"]}, module, extra=extra), "gateway.toml")
    except ConfigError as err:
        assert any(problem in p for p in err.problems), err.problems
    else:
        raise AssertionError("loaded")


def test_a_python_plugin_refuses_a_string_config(tmp_path: Path) -> None:
    toml = gateway_toml(
        {"v1": ["127.0.0.1:1"]},
        """
[filters.cors]
config = "allow everything"

[[routes]]
name = "r"
upstream = "v1"
filters = ["cors"]
""",
    )
    assert load_problems(tmp_path, toml) == [
        "filters.cors: filter 'cors' (plugin 'cors'): config: a Python plugin's config is "
        "a table, not a string"
    ]


@pytest.mark.parametrize(
    ("schema", "config", "shown"),
    [
        pytest.param(None, "x-bot", REDACTED, id="no-schema"),
        pytest.param({"type": "object"}, '{"k": "v"}', REDACTED, id="object-schema"),
        pytest.param({"type": "string", "writeOnly": True}, "x-bot", REDACTED, id="secret"),
        pytest.param({"type": "string"}, "x-bot", "x-bot", id="plain-string"),
    ],
)
def test_get_config_redacts_a_string_config_unless_its_schema_says_plain_string(
    tmp_path: Path, schema: dict[str, object] | None, config: str, shown: str
) -> None:
    module = wasm_file(tmp_path, "probe.wat")
    if schema is not None:
        (tmp_path / "manifest.json").write_text(json.dumps({"config_schema": schema}))
    extra = f"config = '{config}'\nvm_config = \"vm-secret\""
    source = tmp_path / "gateway.toml"
    source.write_text(wasm_toml({"v1": ["127.0.0.1:1"]}, module, extra=extra))
    snapshot = Snapshot(loads_config(source.read_text(), str(source)), str(source))
    try:
        view = build_view(snapshot.config, snapshot.filters())  # what GET /config shows
    finally:
        snapshot.close()
    assert view.config["filters"]["w"]["config"] == shown
    assert view.config["filters"]["w"]["vm_config"] == REDACTED


# ---------------------------------------------------------------------- properties

PROPS = """
root_id = "probe-root"
properties.team = "blue"
properties.limits = { rps = 10, burst = 2.5, on = true, name = "x" }
properties.xds.route_metadata.filter_metadata.istio.config = "from-properties"
properties.xds.route_name = "never-shown"
"""
NODE = """
[node]
id = "gw-1"
cluster = "edge"
metadata = { region = "eu-west", zone = { name = "a" } }
"""


@pytest.fixture
async def props_gateway(
    tmp_path: Path, upstream: RecordingUpstream, start_gateway: StartGateway
) -> InProcessGateway:
    module = wasm_file(tmp_path, "probe.wat")
    toml = wasm_toml({"v1": [upstream.address]}, module, name="props", extra=PROPS) + NODE
    return await start_gateway(toml)


def limits_map() -> bytes:
    return serialize_map(
        [(b"rps", i64(10)), (b"burst", struct.pack("<d", 2.5)), (b"on", b"\x01"), (b"name", b"x")]
    )


# (path, expected value; None: NOT_FOUND) — request phase, request GET /props/x?y=1
REQUEST_PROPS = [
    ("team", b"blue"),
    ("limits.rps", i64(10)),
    ("limits.burst", struct.pack("<d", 2.5)),
    ("limits.on", b"\x01"),
    ("limits", limits_map()),
    ("limits.missing", None),
    ("node.id", b"gw-1"),
    ("node.cluster", b"edge"),
    ("node.metadata.region", b"eu-west"),
    ("node.metadata.zone.name", b"a"),
    ("xds.node.id", b"gw-1"),
    ("plugin_name", b"props"),
    ("plugin_root_id", b"probe-root"),
    ("plugin_vm_id", b"props"),
    ("route_name", b"wasm"),
    ("cluster_name", b"v1"),
    ("xds.route_name", b"wasm"),
    ("xds.cluster_name", b"v1"),
    ("request.path", b"/props/x?y=1"),
    ("request.url_path", b"/props/x"),
    ("request.query", b"y=1"),
    ("request.host", b"props.test"),
    ("request.scheme", b"http"),
    ("request.method", b"GET"),
    ("request.protocol", b"HTTP/1.1"),
    ("request.referer", b"https://ref.test/"),
    ("request.useragent", b"probe-agent/1"),
    ("request.id", b"req-42"),
    ("request.size", i64(0)),
    ("response.code", None),
    ("connection.mtls", b"\x00"),
    ("connection.requested_server_name", None),
    ("upstream.address", None),
    ("no.such.property", None),
]


async def raw_probe(gw: InProcessGateway, prop: str, *, body: bytes = b"") -> tuple[int, object]:
    """GET /props/x?y=1 with x-prop: PROP over a raw socket; (client port, response)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    port = writer.get_extra_info("sockname")[1]
    writer.write(
        b"GET /props/x?y=1 HTTP/1.1\r\nHost: props.test\r\nConnection: close\r\n"
        b"Referer: https://ref.test/\r\nUser-Agent: probe-agent/1\r\nX-Request-Id: req-42\r\n"
        + f"Content-Length: {len(body)}\r\nX-Prop: {prop}\r\n\r\n".encode()
        + body
    )
    resp = await read_response(reader)
    writer.close()
    return port, resp


@pytest.mark.parametrize(("path", "expected"), REQUEST_PROPS, ids=[p for p, _ in REQUEST_PROPS])
async def test_request_phase_properties(
    props_gateway: InProcessGateway, upstream: RecordingUpstream, path: str, expected: bytes | None
) -> None:
    await raw_probe(props_gateway, path)
    seen = upstream.requests[-1].headers
    if expected is None:
        assert (seen["x-prop-status"], seen.get("x-prop-value")) == ("1", None)
    else:
        assert (seen["x-prop-status"], bytes.fromhex(seen["x-prop-value"])) == ("0", expected)


async def test_properties_of_the_connection_and_time(
    props_gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    async def get(path: str) -> bytes:
        port, _ = await raw_probe(props_gateway, path)
        ports.append(port)
        seen = upstream.requests[-1].headers
        assert seen["x-prop-status"] == "0", path
        return bytes.fromhex(seen["x-prop-value"])

    ports: list[int] = []
    assert await get("source.address") == f"127.0.0.1:{ports[-1]}".encode()
    assert await get("source.port") == i64(ports[-1])
    assert await get("destination.address") == f"127.0.0.1:{props_gateway.port}".encode()
    assert await get("destination.port") == i64(props_gateway.port)
    (started,) = struct.unpack("<q", await get("request.time"))
    assert abs(started - time.time_ns()) < 5 * 10**9
    (elapsed,) = struct.unpack("<q", await get("request.duration"))
    assert 0 <= elapsed < 5 * 10**9
    headers = await get("request.headers")
    assert b"x-prop\0request.headers\0" in headers and b":authority\0props.test\0" in headers
    (total,) = struct.unpack("<q", await get("request.total_size"))
    assert total > 100  # the request line and headers at least


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("response.code", i64(200)),
        ("response.code_details", b"via_upstream"),
        ("response.flags", i64(0)),
        ("response.grpc_status", None),
        ("xds.route_metadata.filter_metadata.istio.config", b"from-properties"),
    ],
)
async def test_response_phase_properties(
    props_gateway: InProcessGateway, path: str, expected: bytes | None
) -> None:
    _, resp = await raw_probe(props_gateway, path)
    status = resp.header("x-prop-status")  # type: ignore[attr-defined]
    value = resp.header("x-prop-value")  # type: ignore[attr-defined]
    if expected is None:
        assert (status, value) == ("1", None)
    else:
        assert (status, bytes.fromhex(value or "")) == ("0", expected)


async def test_response_size_is_its_content_length(props_gateway: InProcessGateway) -> None:
    _, resp = await raw_probe(props_gateway, "response.size")
    size = int(resp.header("content-length"))  # type: ignore[attr-defined]
    assert resp.header("x-prop-status") == "0"  # type: ignore[attr-defined]
    assert bytes.fromhex(resp.header("x-prop-value")) == i64(size)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        pytest.param(
            'properties = { request = "x" }',
            "filters.w.properties: 'request' shadows the built-in attribute of that name",
            id="shadows-request",
        ),
        pytest.param(
            "properties = { a = [1, 2] }",
            "filters.w.properties: 'a' is a list; a property is a string, number, boolean or table",
            id="list-value",
        ),
    ],
)
def test_bad_properties_are_refused(tmp_path: Path, extra: str, problem: str) -> None:
    module = wasm_file(tmp_path, "probe.wat")
    try:
        loads_config(wasm_toml({"v1": ["127.0.0.1:1"]}, module, extra=extra), "gateway.toml")
    except ConfigError as err:
        assert any(problem in p for p in err.problems), err.problems
    else:
        raise AssertionError("loaded")


def test_the_node_defaults_to_the_host_name() -> None:
    cfg = loads_config("", "g.toml")
    assert (cfg.node.id, cfg.node.cluster, cfg.node.metadata) == (
        socket.gethostname(),
        "wasmgate",
        {},
    )


def test_make_wasm_filter_takes_a_string_config_and_properties(tmp_path: Path) -> None:
    flt = make_wasm_filter(
        wasm_file(tmp_path, "probe.wat"),
        "x-bot",
        vm_config={"shards": 2},
        properties={"team": "blue"},
    )
    out = run_filter(flt, make_request("GET", "/x", headers={"x-prop": "team"}))
    headers = out.request.headers
    assert bytes.fromhex(headers.get("x-config") or "") == b"x-bot"
    assert bytes.fromhex(headers.get("x-vm-config") or "") == b'{"shards": 2}'
    assert bytes.fromhex(headers.get("x-prop-value") or "") == b"blue"


async def test_upstream_address_and_connection_id(
    props_gateway: InProcessGateway, upstream: RecordingUpstream
) -> None:
    """``upstream.address`` / ``upstream.port`` name the endpoint the request went to (in
    the response phase; NOT_FOUND before one is picked); ``connection.id`` numbers the
    client connection."""

    async def response_prop(path: str) -> bytes:
        _, resp = await raw_probe(props_gateway, path)
        assert resp.header("x-prop-status") == "0", path  # type: ignore[attr-defined]
        return bytes.fromhex(resp.header("x-prop-value") or "")  # type: ignore[attr-defined]

    host, port = upstream.address.rsplit(":", 1)
    assert await response_prop("upstream.address") == f"{host}:{port}".encode()
    assert await response_prop("upstream.port") == i64(int(port))
    first, second = [struct.unpack("<q", await response_prop("connection.id"))[0] for _ in range(2)]
    assert 0 < first < second  # raw_probe opens a new connection each time


async def test_connection_id_over_http2(props_gateway: InProcessGateway) -> None:
    """Streams of one HTTP/2 connection share its connection.id."""
    client = await H2Client.open(props_gateway.port)
    try:
        ids = []
        for _ in range(2):
            got = await client.request(
                "GET", "/props/x", headers=[("x-prop", "connection.id")], authority="props.test"
            )
            assert got.header("x-prop-status") == "0"
            ids.append(struct.unpack("<q", bytes.fromhex(got.header("x-prop-value") or ""))[0])
    finally:
        client.close()
    assert ids[0] == ids[1] > 0
