"""``proxy_http_call`` through the real gateway: cluster names (an upstream's name,
Envoy/Istio/Higress ``outbound|PORT|SUBSET|HOST`` names, the ``[wasm] clusters``
aliases), an unknown cluster refused at once, the call's timeout, and what reaches
``proxy_on_http_call_response`` (headers, body, counts)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from core.config import loads_config
from core.errors import ConfigError
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml
from tests.test_wasm_host import wasm_file

FAST = aiohttp.ClientTimeout(total=3)  # a hung call fails the test, not the suite


@pytest.fixture(autouse=True)
def _module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))


def callout_toml(tmp_path: Path, upstreams: str, extra: str = "") -> str:
    """callout_cluster.wat on every path, routed to v1 (declared in ``upstreams``)."""
    module = wasm_file(tmp_path, "callout_cluster.wat")
    return f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"

{upstreams}

{extra}

[filters.call]
wasm = "{module}"

[[routes]]
name = "r"
upstream = "v1"
filters = ["call"]
"""


def two(v1: RecordingUpstream, auth: RecordingUpstream, auth_extra: str = "") -> str:
    host, port = auth.address.rsplit(":", 1)
    return f"""
[[upstreams]]
name = "v1"
endpoints = ["{v1.address}"]

[[upstreams]]
name = "{auth_extra or "auth"}"
endpoints = ["{host}:{port}"]
"""


def port_of(up: RecordingUpstream) -> str:
    return up.address.rsplit(":", 1)[1]


CLUSTERS = [
    pytest.param("auth", "", id="upstream-name"),
    pytest.param("outbound|{port}||127.0.0.1", "", id="outbound-endpoint-host-port"),
    pytest.param("outbound|{port}|v1|127.0.0.1", "", id="outbound-with-subset"),
    pytest.param("outbound|80||auth.internal", 'host_header = "auth.internal"', id="host_header"),
    pytest.param("outbound|80||auth", "", id="outbound-upstream-name"),
    pytest.param("outbound|80||auth.static", "", id="higress-static-ip-cluster"),
    pytest.param("outbound|80||auth.dns", "", id="higress-dns-cluster"),
]


@pytest.mark.parametrize(("cluster", "upstream_extra"), CLUSTERS)
async def test_call_reaches_the_upstream_the_cluster_names(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    cluster: str,
    upstream_extra: str,
) -> None:
    ups = two(upstream, upstream2) + upstream_extra
    gw = await start_gateway(callout_toml(tmp_path, ups))
    name = cluster.format(port=port_of(upstream2))
    async with http.get(gw.url + "/who", headers={"x-cluster": name}, timeout=FAST) as resp:
        assert resp.status == 200, resp.headers
    [call] = upstream2.requests
    assert (call.method, call.path_qs, call.body_len) == ("GET", "/who", 4)  # body "ping"
    [seen] = upstream.requests
    assert seen.headers["x-call-status"] == "200"
    assert seen.headers["x-call-ctype"].startswith("application/json")
    assert seen.headers["x-call-body"].startswith('{"upstream": "v2"')
    headers, body, trailers = seen.headers["x-call-counts"].split("/")
    assert int(headers) > 1 and int(body) > 64 and trailers == "0"


async def test_kubernetes_service_cluster_names_the_translated_upstream(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    # An Ingress backend becomes the upstream NAMESPACE.SERVICE.PORT (core/ingress);
    # Istio and Higress's K8sCluster name it outbound|PORT||SERVICE.NAMESPACE.svc.cluster.local.
    gw = await start_gateway(callout_toml(tmp_path, two(upstream, upstream2, "shop.auth.8080")))
    cluster = "outbound|8080||auth.shop.svc.cluster.local"
    async with http.get(gw.url + "/k", headers={"x-cluster": cluster}, timeout=FAST) as resp:
        assert resp.status == 200
    assert [r.path_qs for r in upstream2.requests] == ["/k"]


async def test_alias_table_maps_a_cluster_to_an_upstream(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    aliases = '[wasm.clusters]\n"outbound|80||auth.default.svc.cluster.local" = "auth"\n'
    gw = await start_gateway(callout_toml(tmp_path, two(upstream, upstream2), aliases))
    cluster = "outbound|80||auth.default.svc.cluster.local"
    async with http.get(gw.url + "/a", headers={"x-cluster": cluster}, timeout=FAST) as resp:
        assert resp.status == 200
    assert [r.path_qs for r in upstream2.requests] == ["/a"]


@pytest.mark.parametrize(
    "cluster",
    [
        pytest.param("httpbin", id="no-such-upstream"),
        pytest.param("outbound|80||nowhere.example.com", id="outbound-matching-nothing"),
        pytest.param("outbound|notaport||127.0.0.1", id="outbound-bad-port"),
    ],
)
async def test_unknown_cluster_is_refused_at_once(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    cluster: str,
) -> None:
    gw = await start_gateway(callout_toml(tmp_path, two(upstream, upstream2)))
    started = time.monotonic()
    async with http.get(gw.url + "/u", headers={"x-cluster": cluster}, timeout=FAST) as resp:
        assert resp.status == 503
        assert resp.headers["x-call-error"] == "2"  # BAD_ARGUMENT, as Envoy answers
    assert time.monotonic() - started < 2  # not the pause timeout
    assert upstream.requests == upstream2.requests == []


async def test_ambiguous_outbound_cluster_is_refused(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    # Two upstreams send Host "auth.internal": which one is meant is not guessed.
    ups = two(upstream, upstream2) + 'host_header = "auth.internal"\n'
    ups += f'[[upstreams]]\nname = "auth2"\nendpoints = ["{upstream2.address}"]\n'
    ups += 'host_header = "auth.internal"\n'
    gw = await start_gateway(callout_toml(tmp_path, ups))
    headers = {"x-cluster": "outbound|80||auth.internal"}
    async with http.get(gw.url + "/u", headers=headers, timeout=FAST) as resp:
        assert resp.status == 503
        assert resp.headers["x-call-error"] == "2"
    assert upstream2.requests == []


async def test_call_timeout_gives_a_response_without_headers(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(callout_toml(tmp_path, two(upstream, upstream2)))
    started = time.monotonic()
    async with http.get(gw.url + "/delay/5", headers={"x-cluster": "auth"}, timeout=FAST) as resp:
        # 504: the module's answer to a failed call whose header map has no :status
        # (502 while the host made one up, ":status: 0").
        assert resp.status == 504
        assert resp.headers["x-call-counts"] == "0/0/0"
    assert time.monotonic() - started < 2.5  # the call's 500 ms, not the upstream's 5 s
    assert upstream.requests == []


def test_alias_to_an_unknown_upstream_is_a_config_error() -> None:
    toml = gateway_toml(
        {"v1": ["127.0.0.1:1"]},
        '[wasm.clusters]\n"outbound|80||auth.default.svc.cluster.local" = "auht"\n',
        default="v1",
    )
    with pytest.raises(ConfigError) as err:
        loads_config(toml, "gw.toml")
    assert err.value.problems == [
        "wasm.clusters.\"outbound|80||auth.default.svc.cluster.local\": unknown upstream 'auht'"
    ]


async def test_a_call_to_an_http2_upstream_goes_over_http2(
    tmp_path: Path,
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    """``protocol = "h2c"`` on the called upstream: the call is an HTTP/2 stream (here
    to a second gateway, which counts its HTTP/2 connections, in front of upstream2)."""
    from core.http2 import ServerConnection

    back = await start_gateway(gateway_toml({"app": [upstream2.address]}, default="app"))
    assert back.gateway is not None
    ups = f"""
[[upstreams]]
name = "v1"
endpoints = ["{upstream.address}"]

[[upstreams]]
name = "auth"
endpoints = ["127.0.0.1:{back.port}"]
protocol = "h2c"
"""
    gw = await start_gateway(callout_toml(tmp_path, ups))
    async with http.get(gw.url + "/h2", headers={"x-cluster": "auth"}, timeout=FAST) as resp:
        assert resp.status == 200, resp.headers
    [call] = upstream2.requests
    assert (call.method, call.path_qs, call.body_len) == ("GET", "/h2", 4)
    [seen] = upstream.requests
    assert seen.headers["x-call-status"] == "200"
    assert seen.headers["x-call-body"].startswith('{"upstream": "v2"')
    assert any(isinstance(c, ServerConnection) for c in back.gateway.connections)
