"""The filter chain: order, short-circuits, fail strategies, load-time errors,
third-party plugins found through entry points (tests/fixtures/site)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from core.config import loads_config
from core.errors import ConfigError
from core.gateway import Snapshot
from plugin_sdk import Context, Filter, LocalReply, PluginConfig, Response
from plugin_sdk.testing import make_filter, make_request, run_chain, run_filter
from tests.conftest import THIRD_PARTY_SITE, StartGateway
from tests.harness import GatewayProcess, RecordingUpstream, free_port


def toml(up: str, routes: str, *, extra: str = "", up2: str | None = None) -> str:
    second = f'[[upstreams]]\nname = "v2"\nendpoints = ["{up2}"]\n' if up2 else ""
    return f"""
{extra}
[server]
listen = ["127.0.0.1:0"]
access_log = "off"

[[upstreams]]
name = "v1"
endpoints = ["{up}"]
{second}
[filters.a]
plugin = "tag"
config.name = "a"
[filters.b]
plugin = "tag"
config.name = "b"
[filters.c]
plugin = "async-tag"
config.name = "c"

{routes}
"""


async def get(
    http: aiohttp.ClientSession, url: str, **kw: object
) -> tuple[int, dict[str, list[str]], bytes]:
    async with http.get(url, **kw) as r:  # type: ignore[arg-type]
        headers: dict[str, list[str]] = {}
        for k, v in r.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        return r.status, headers, await r.read()


# ---------------------------------------------------------------------- order


async def test_request_phase_in_order_response_phase_in_reverse(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        toml(
            upstream.address,
            '[[routes]]\nname = "r"\nupstream = "v1"\nfilters = ["b", "c"]\n',
            extra='global_filters = ["a"]',
        )
    )
    status, headers, _ = await get(http, f"{gw.url}/x")
    assert status == 200
    assert [v for n, v in upstream.requests[-1].raw_headers if n == "X-Order"] == ["a", "b", "c"]
    assert headers["x-resp-order"] == ["c", "b", "a"]


async def test_route_can_turn_a_global_filter_off(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    routes = (
        '[[routes]]\nname = "plain"\npaths = ["/plain"]\nupstream = "v1"\n'
        'disable_filters = ["a"]\nfilters = ["b"]\n'
        '[[routes]]\nname = "all"\nupstream = "v1"\nfilters = ["b"]\n'
    )
    gw = await start_gateway(toml(upstream.address, routes, extra='global_filters = ["a"]'))
    await get(http, f"{gw.url}/plain")
    assert [v for n, v in upstream.requests[-1].raw_headers if n == "X-Order"] == ["b"]
    await get(http, f"{gw.url}/other")
    assert [v for n, v in upstream.requests[-1].raw_headers if n == "X-Order"] == ["a", "b"]


async def test_local_reply_stops_the_chain_and_earlier_filters_see_it(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    routes = (
        '[filters.no]\nplugin = "deny"\nconfig.status = 401\n'
        '[[routes]]\nname = "r"\nupstream = "v1"\nfilters = ["a", "no", "b"]\n'
    )
    gw = await start_gateway(toml(upstream.address, routes))
    status, headers, body = await get(http, f"{gw.url}/secret")
    assert (status, body) == (401, b"denied\n")
    assert headers["x-denied-by"] == ["no"]
    assert headers["x-resp-order"] == ["a"]  # b never ran, so it has no response phase
    assert upstream.requests == []


async def test_upstream_error_reply_goes_through_the_response_phase(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    routes = '[[routes]]\nname = "r"\nupstream = "v1"\nfilters = ["a"]\n'
    gw = await start_gateway(toml(f"127.0.0.1:{free_port()}", routes))
    status, headers, body = await get(http, f"{gw.url}/")
    assert status == 502 and b"upstream connect error" in body
    assert headers["x-resp-order"] == ["a"]


async def test_filter_chooses_the_upstream(
    upstream: RecordingUpstream,
    upstream2: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    routes = (
        '[[routes]]\nname = "r"\nupstream = "v1"\n'
        'filters = [{ plugin = "route-to", config = { upstream = "v2" } }]\n'
    )
    gw = await start_gateway(toml(upstream.address, routes, up2=upstream2.address))
    status, _, body = await get(http, f"{gw.url}/")
    assert status == 200 and b'"upstream": "v2"' in body
    assert upstream.requests == [] and len(upstream2.requests) == 1


async def test_body_filters_see_and_rewrite_whole_bodies(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    routes = '[[routes]]\nname = "r"\nupstream = "v1"\nfilters = ["body-upper"]\n'
    gw = await start_gateway(toml(upstream.address, routes))

    async def chunks():  # type: ignore[no-untyped-def]
        for piece in (b"hello ", b"chunked ", b"world"):
            yield piece

    async with http.post(f"{gw.url}/echo", data=chunks()) as r:
        body = await r.read()
        assert r.status == 200
        assert r.headers["Content-Length"] == str(len(body))
    seen = upstream.requests[-1]
    assert seen.body_len == len(b"hello chunked world")
    assert seen.headers["content-length"] == str(seen.body_len)
    # The upstream's JSON echo went through the response filter too.
    assert b'"UPSTREAM": "V1"' in body


# ---------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("phase", "fail", "status", "resp_order"),
    [
        pytest.param("request", "closed", 500, ["a"], id="request-fail-closed-500"),
        pytest.param("request", "open", 200, ["a"], id="request-fail-open-skipped"),
        pytest.param("response", "closed", 500, ["a"], id="response-fail-closed-500"),
        pytest.param("response", "open", 200, ["a"], id="response-fail-open-untouched"),
        pytest.param("log", "closed", 200, ["a"], id="log-errors-never-change-the-reply"),
    ],
)
async def test_raising_filter_follows_its_fail_strategy(
    phase: str,
    fail: str,
    status: int,
    resp_order: list[str],
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    routes = (
        f'[filters.boom]\nplugin = "boom"\nfail = "{fail}"\nconfig.phase = "{phase}"\n'
        '[[routes]]\nname = "r"\nupstream = "v1"\nfilters = ["a", "boom"]\n'
    )
    gw = await start_gateway(toml(upstream.address, routes))
    got, headers, body = await get(http, f"{gw.url}/")
    assert got == status
    if status == 500:
        assert body == b"filter boom failed\n"
    assert headers["x-resp-order"] == resp_order
    # The gateway keeps serving, and the failure is counted on the filter.
    again, _, _ = await get(http, f"{gw.url}/")
    assert again == status
    assert gw.gateway is not None
    boom = gw.gateway.snapshot.chains["r"].filters[1]
    assert boom.name == "boom" and boom.errors == 2


# ---------------------------------------------------------------------- load time


UPSTREAM = '[[upstreams]]\nname = "backend"\nendpoints = ["127.0.0.1:9"]\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            '[[routes]]\nname = "r"\nupstream = "backend"\nfilters = ["cros"]\n',
            "routes[0].filters[0]: unknown filter 'cros'; did you mean 'cors'?",
            id="unknown-filter-suggests",
        ),
        pytest.param(
            '[filters.t]\nplugin = "tag"\nconfig.nme = "x"\n'
            '[[routes]]\nname = "r"\nupstream = "backend"\nfilters = ["t"]\n',
            "filters.t: filter 't' (plugin 'tag'): config.name: Field required; "
            "config.nme: Extra inputs are not permitted",
            id="plugin-config-field-named",
        ),
        pytest.param(
            '[[routes]]\nname = "r"\nupstream = "backend"\n'
            'filters = [{ plugin = "deny", config = { status = "x" } }]\n',
            "routes[0].filters[0]: filter 'r.deny' (plugin 'deny'): config.status: "
            "Input should be a valid integer",
            id="inline-filter-config",
        ),
        pytest.param(
            '[[routes]]\nname = "r"\nupstream = "backend"\nfilters = ["not-a-filter"]\n',
            "is not a subclass of plugin_sdk.Filter",
            id="contract-not-a-filter",
        ),
        pytest.param(
            '[[routes]]\nname = "r"\nupstream = "backend"\nfilters = ["bad-signature"]\n',
            "on_request must take (self, ctx), not (self)",
            id="contract-bad-signature",
        ),
        pytest.param(
            '[[routes]]\nname = "r"\nupstream = "backend"\nfilters = ["missing-module"]\n',
            "plugin 'missing-module' (wasmgate_testplugins_nope:Gone) failed to import",
            id="plugin-that-cannot-import",
        ),
        pytest.param(
            'global_filters = ["t"]\n[filters.t]\nplugin = "tag"\nconfig.name = "t"\n'
            '[[routes]]\nname = "r"\nupstream = "backend"\ndisable_filters = ["tt"]\n',
            "routes[0].disable_filters[0]: 'tt' is not in global_filters; did you mean 't'?",
            id="disable-unknown-global",
        ),
        pytest.param(
            '[[routes]]\nname = "r"\nupstream = "backend"\n'
            'filters = [{ plugin = "route-to", config = { upstream = "bakend" } }]\n',
            "routes[0].filters[0]: filter 'r.route-to' routes to unknown upstream 'bakend'; "
            "did you mean 'backend'?",
            id="filter-routes-to-unknown-upstream",
        ),
        pytest.param(
            '[filters.t]\nplugin = "tag"\nconfig.name = "t"\n'
            '[[routes]]\nname = "r"\nupstream = "backend"\nfilters = ["t", "t"]\n',
            "routes[0].filters[1]: filter 't' is already in the chain",
            id="filter-twice",
        ),
    ],
)
def test_bad_chains_are_refused_at_load(body: str, message: str) -> None:
    top, sep, rest = body.partition("\n[")  # top-level keys must come before any table
    text = (top + "\n" + UPSTREAM + sep + rest) if "=" in top.split("[")[0] else UPSTREAM + body
    cfg = loads_config(text, "gw.toml")
    with pytest.raises(ConfigError) as info:
        Snapshot(cfg, "gw.toml")
    assert str(info.value).startswith("gw.toml: 1 problem:")
    assert message in info.value.problems[0], info.value.problems


# ---------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(THIRD_PARTY_SITE)}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, env=env
    )


def test_check_explain_prints_each_chain_in_execution_order(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        toml(
            "127.0.0.1:9",
            '[[routes]]\nname = "r"\nupstream = "v1"\nfilters = ["b", "c"]\n',
            extra='global_filters = ["a"]',
        )
    )
    out = _cli("check", "-c", str(path), "--explain")
    assert out.returncode == 0, out.stderr
    assert "route r -> upstream v1" in out.stdout
    assert "  1. a (plugin tag; fail_closed; request, response, log)" in out.stdout
    assert "  3. c (plugin async-tag; fail_closed; request, response, log)" in out.stdout
    assert "request phase:  a -> b -> c" in out.stdout
    assert "response phase: c -> b -> a" in out.stdout


def test_check_refuses_a_bad_chain_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(UPSTREAM + '[[routes]]\nname = "r"\nupstream = "backend"\nfilters = ["cros"]\n')
    out = _cli("check", "-c", str(path))
    assert out.returncode == 1
    assert "unknown filter 'cros'; did you mean 'cors'?" in out.stderr
    assert "Traceback" not in out.stderr


def test_plugin_list_and_schema_include_third_party_plugins() -> None:
    listed = _cli("plugin", "list")
    assert listed.returncode == 0
    names = {line.split()[0] for line in listed.stdout.splitlines()}
    assert {"headers", "tag", "deny"} <= names
    schema = _cli("plugin", "schema", "tag")
    assert schema.returncode == 0
    assert '"description": "Label appended to X-Order / X-Resp-Order."' in schema.stdout
    missing = _cli("plugin", "schema", "nope")
    assert missing.returncode == 1 and "unknown plugin 'nope'" in missing.stderr


async def test_third_party_plugin_runs_in_wasmgate_run(upstream: RecordingUpstream) -> None:
    port = free_port()
    gw = GatewayProcess(
        toml(
            upstream.address, '[[routes]]\nname = "r"\nupstream = "v1"\nfilters = ["a"]\n'
        ).replace('listen = ["127.0.0.1:0"]', f'listen = ["127.0.0.1:{port}"]')
    )
    gw.start(port, env={"PYTHONPATH": str(THIRD_PARTY_SITE)})
    try:
        async with aiohttp.ClientSession() as http:
            status, headers, _ = await get(http, f"http://127.0.0.1:{port}/")
    finally:
        assert gw.terminate() == 0
    assert status == 200 and headers["x-resp-order"] == ["a"]
    assert upstream.requests[-1].headers["x-order"] == "a"


# ---------------------------------------------------------------------- the SDK harness


class StampConfig(PluginConfig):
    value: str = "1"


class Stamp(Filter[StampConfig]):
    Config = StampConfig

    def on_request(self, ctx: Context) -> LocalReply | None:
        if ctx.request.path == "/deny":
            return LocalReply(403, {"x-why": "path"}, "no")
        ctx.request.headers.set("x-stamp", self.config.value)
        return None


def test_plugin_unit_test_in_five_lines() -> None:
    result = run_filter(Stamp, make_request("GET", "/x"), config={"value": "7"})
    assert result.reply is None
    assert result.request.headers.get("x-stamp") == "7"


def test_sdk_run_chain_uses_the_gateways_rules() -> None:
    tag = sys.modules["wasmgate_testplugins"]
    chain = [
        make_filter(tag.Tag, {"name": "a"}),
        make_filter(Stamp),
        make_filter(tag.Tag, {"name": "b"}),
    ]
    denied = run_chain(chain, make_request("GET", "/deny"))
    assert denied.status == 403 and denied.headers.get_all("x-resp-order") == ["a"]
    passed = run_chain(chain, make_request("GET", "/ok"), response=Response(200))
    assert passed.reply is None and passed.request.headers.get_all("x-order") == ["a", "b"]
    assert passed.headers.get_all("x-resp-order") == ["b", "a"]
    assert passed.ctx.state["logged"] == ["a", "b"]


STOPPED_BY = [
    pytest.param([("tag", {"name": "a"})], None, id="nobody"),
    pytest.param([("tag", {"name": "a"}), ("deny", {})], "f1", id="local-reply"),
    pytest.param([("async-tag", {"name": "a"}), ("deny", {})], "f1", id="local-reply-async"),
    pytest.param([("boom", {"phase": "request"})], "f0", id="fails-closed-in-request"),
    pytest.param([("boom", {"phase": "response"})], "f0", id="fails-closed-in-response"),
    pytest.param([("boom", {"phase": "log"})], None, id="fails-in-log"),
    pytest.param([("deny", {}), ("boom", {"phase": "request"})], "f0", id="first-reply-wins"),
]


@pytest.mark.parametrize(("filters", "stopper"), STOPPED_BY)
def test_ctx_stopped_by_names_the_filter_that_answered(
    filters: list[tuple[str, dict[str, object]]], stopper: str | None
) -> None:
    mod = importlib.import_module("wasmgate_testplugins")  # tests/fixtures/site
    classes = {"tag": mod.Tag, "async-tag": mod.AsyncTag, "deny": mod.Deny, "boom": mod.Boom}
    chain = [make_filter(classes[p], c, name=f"f{i}") for i, (p, c) in enumerate(filters)]
    result = run_chain(chain, make_request("GET", "/"), response=Response(200))
    assert result.ctx.stopped_by == stopper


async def test_draining_the_gateway_closes_each_filter_once(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    routes = (
        '[[routes]]\nname = "r1"\npaths = ["/1"]\nupstream = "v1"\nfilters = ["a"]\n'
        '[[routes]]\nname = "r2"\nupstream = "v1"\nfilters = ["a", "b"]\n'
    )
    gw = await start_gateway(toml(upstream.address, routes))
    assert gw.gateway is not None
    closed: list[str] = []
    for inst in {id(f): f for c in gw.gateway.snapshot.chains.values() for f in c.filters}.values():
        inst.filter.close = lambda name=inst.name: closed.append(name)  # type: ignore[method-assign]
    await gw.stop()
    assert sorted(closed) == ["a", "b"]
