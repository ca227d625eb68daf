"""Active health checks (``[upstreams.health_check]``) against real upstreams on 127.0.0.1.

States are polled with a generous deadline: checks run every 0.1 s here, and nothing
assumes how many of them have run by a given moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from core import metrics
from core.admin import Admin
from core.config import GatewayConfig, Upstream, loads_config
from core.errors import ConfigError
from core.gateway import Snapshot
from core.upstream import EndpointState, UpstreamPool

if TYPE_CHECKING:
    from core.health import HealthChecker
from tests.conftest import StartGateway
from tests.harness import GatewayProcess, InProcessGateway, RecordingUpstream, free_port

DEADLINE = 10.0  # seconds; a check every 0.1 s needs a fraction of it


async def until(what: str, ok: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE} s: {what}")
        await asyncio.sleep(0.02)


def endpoint(gw: InProcessGateway, address: str, upstream: str = "app") -> EndpointState:
    assert gw.gateway is not None
    (ep,) = [e for e in gw.gateway.snapshot.pools[upstream].endpoints if e.address == address]
    return ep


def state(gw: InProcessGateway, address: str) -> str:
    check = endpoint(gw, address).check
    return check.state if check is not None else "no checks"


def config(endpoints: list[str], check: str, *, extra: str = "retries = 0") -> str:
    eps = ", ".join(f'"{e}"' for e in endpoints)
    return f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"

[[upstreams]]
name = "app"
endpoints = [{eps}]
{extra}
health_check = {{ {check} }}

[default]
upstream = "app"
"""


FAST = "interval = 0.1, timeout = 0.5, healthy_threshold = 2, unhealthy_threshold = 2"


async def answered_by(http: aiohttp.ClientSession, gw: InProcessGateway, n: int) -> list[str]:
    """Who answered each of ``n`` requests: the upstream's name, or the status."""
    out = []
    for _ in range(n):
        async with http.get(f"{gw.url}/work") as r:
            out.append((await r.json())["upstream"] if r.status == 200 else str(r.status))
    return out


# ------------------------------------------------------------------ through the gateway


async def test_dead_endpoint_is_found_without_traffic_avoided_and_taken_back(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    second = await RecordingUpstream("v2").start()
    port = second.port
    try:
        gw = await start_gateway(
            config([upstream.address, second.address], f'type = "http", path = "/ping", {FAST}')
        )
        await until("both endpoints healthy", lambda: state(gw, second.address) == "healthy")
        assert state(gw, upstream.address) == "healthy"
        await second.stop()
        # No client request is sent: the checks alone find the endpoint dead.
        await until(
            "the stopped endpoint unhealthy", lambda: state(gw, second.address) == "unhealthy"
        )
        assert not [r for r in upstream.requests if r.path_qs == "/work"]
        # retries = 0: a request sent to the dead endpoint would be a 502.
        assert await answered_by(http, gw, 8) == ["v1"] * 8

        second = await RecordingUpstream("v2", port=port).start()
        await until("the endpoint healthy again", lambda: state(gw, second.address) == "healthy")
        check = endpoint(gw, second.address).check
        assert check is not None and check.successes >= 2  # healthy_threshold passes
        assert sorted(set(await answered_by(http, gw, 4))) == ["v1", "v2"]
    finally:
        await second.stop()
    probes = [r for r in upstream.requests if r.path_qs == "/ping"]
    assert probes, "the checks never reached the live endpoint"
    probe = probes[0]
    assert probe.method == "GET"
    assert probe.headers["user-agent"] == "wasmgate-health-check"
    assert probe.headers["host"] == upstream.address
    # Probes use connections of their own: none of them carried a client request.
    client_peers = {r.peer for r in upstream.requests if r.path_qs == "/work"}
    assert client_peers.isdisjoint({r.peer for r in probes})


async def test_a_500_from_the_check_path_marks_the_endpoint_unhealthy(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        config(
            [upstream.address],
            f'path = "/status/500", expected_statuses = [200, "300-399"], {FAST}',
        )
    )
    await until("the endpoint unhealthy", lambda: state(gw, upstream.address) == "unhealthy")
    check = endpoint(gw, upstream.address).check
    assert check is not None
    assert (check.result, check.error) == ("bad_status", "status 500")
    # Its only endpoint is unhealthy: 503, and the request never reaches it.
    async with http.get(f"{gw.url}/work") as r:
        assert r.status == 503
    assert not [r for r in upstream.requests if r.path_qs == "/work"]


@pytest.mark.parametrize(
    ("path", "statuses", "expected"),
    [
        pytest.param("/status/204", '["200-299"]', "healthy", id="204-in-range"),
        pytest.param("/status/302", '[200, "300-399"]', "healthy", id="302-listed-range"),
        pytest.param("/status/404", '["200-399"]', "unhealthy", id="404-outside"),
        pytest.param("/status/200", "[204]", "unhealthy", id="200-not-listed"),
    ],
)
async def test_expected_statuses(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    path: str,
    statuses: str,
    expected: str,
) -> None:
    gw = await start_gateway(
        config([upstream.address], f'path = "{path}", expected_statuses = {statuses}, {FAST}')
    )
    await until(f"the endpoint {expected}", lambda: state(gw, upstream.address) != "unknown")
    assert state(gw, upstream.address) == expected


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for w in held:
        w.close()
    server.close()


@pytest.mark.parametrize(
    ("check", "expected", "result"),
    [
        pytest.param('type = "tcp"', "healthy", "success", id="tcp-connect-is-enough"),
        pytest.param('type = "http"', "unhealthy", "timeout", id="http-needs-an-answer"),
    ],
)
async def test_tcp_check_only_connects(
    silent: str, start_gateway: StartGateway, check: str, expected: str, result: str
) -> None:
    gw = await start_gateway(
        config([silent], f"{check}, interval = 0.1, timeout = 0.2, unhealthy_threshold = 1")
    )
    await until(f"the endpoint {expected}", lambda: state(gw, silent) != "unknown")
    ep = endpoint(gw, silent)
    assert ep.check is not None
    assert (ep.check.state, ep.check.result) == (expected, result)


async def test_tcp_check_of_a_closed_port(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    gw = await start_gateway(config([closed, upstream.address], f'type = "tcp", {FAST}'))
    await until("the closed port unhealthy", lambda: state(gw, closed) == "unhealthy")
    check = endpoint(gw, closed).check
    assert check is not None
    assert check.result == "connect_error" and "refused" in check.error
    assert state(gw, upstream.address) == "healthy"
    assert await answered_by(http, gw, 4) == ["v1"] * 4
    # A TCP check sends nothing: the upstream saw the client's requests only.
    assert {r.path_qs for r in upstream.requests} == {"/work"}


async def test_first_check_comes_soon_even_with_a_long_interval(
    start_gateway: StartGateway,
) -> None:
    # The first round is jittered, but not by up to an hour: a dead endpoint at start is
    # found within seconds.
    closed = f"127.0.0.1:{free_port()}"
    gw = await start_gateway(config([closed], 'type = "tcp", interval = "1h", timeout = 0.5'))
    await until("the closed port unhealthy", lambda: state(gw, closed) == "unhealthy")


async def test_host_header_of_the_check(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    await start_gateway(config([upstream.address], f'host = "health.internal", {FAST}'))
    await until("a probe", lambda: bool(upstream.requests))
    assert upstream.requests[0].headers["host"] == "health.internal"


# ------------------------------------------------------------------ admin API and metrics


@pytest.fixture
async def admin_of() -> AsyncIterator[Callable[[InProcessGateway], Awaitable[str]]]:
    started: list[Admin] = []

    async def start(gw: InProcessGateway) -> str:
        assert gw.gateway is not None
        api = Admin(
            gw.gateway,
            None,
            token=None,
            render_metrics=lambda: (metrics.render(), metrics.CONTENT_TYPE),
        )
        await api.start("127.0.0.1:0")
        started.append(api)
        return f"http://127.0.0.1:{api.port}"

    yield start
    for api in started:
        await api.stop()


async def test_admin_api_and_metrics_show_active_state(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    admin_of: Callable[[InProcessGateway], Awaitable[str]],
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    gw = await start_gateway(config([upstream.address, closed], f'path = "/ping", {FAST}'))
    base = await admin_of(gw)

    def checked_twice(address: str) -> bool:
        check = endpoint(gw, address).check
        return check is not None and max(check.successes, check.failures) >= 2

    await until(
        "two checks of each", lambda: checked_twice(closed) and checked_twice(upstream.address)
    )

    async with http.get(f"{base}/api/upstreams") as resp:
        (pool,) = (await resp.json())["upstreams"]
    assert pool["health_check"] == {
        "type": "http",
        "path": "/ping",
        "interval": 0.1,
        "timeout": 0.5,
        "healthy_threshold": 2,
        "unhealthy_threshold": 2,
    }
    by = {e["address"]: e for e in pool["endpoints"]}
    assert by[closed]["health"] == "unhealthy"
    dead: dict[str, Any] = by[closed]["check"]
    assert dead["state"] == "unhealthy" and dead["last_result"] == "connect_error"
    assert "refused" in dead["last_error"] and dead["failures_in_a_row"] >= 2
    assert 0 <= dead["last_check_seconds_ago"] < DEADLINE
    alive = by[upstream.address]
    assert alive["health"] == "healthy" and alive["check"]["state"] == "healthy"
    assert alive["check"]["last_result"] == "success" and alive["check"]["last_error"] is None

    async with http.get(f"{base}/metrics") as resp:
        text = await resp.text()

    def sample(name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        m = re.search(rf"^wasmgate_{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
        assert m is not None, f"{name}{{{want}}} not in the metrics"
        return float(m.group(1))

    assert sample("upstream_endpoint_healthy", endpoint=closed, upstream="app") == 0
    assert sample("upstream_endpoint_healthy", endpoint=upstream.address, upstream="app") == 1
    assert sample("upstream_endpoint_check_healthy", endpoint=closed, upstream="app") == 0
    assert sample("upstream_endpoint_check_healthy", endpoint=upstream.address, upstream="app") == 1
    assert (
        sample("health_checks_total", endpoint=closed, result="connect_error", upstream="app") >= 2
    )
    assert (
        sample("health_checks_total", endpoint=upstream.address, result="success", upstream="app")
        >= 2
    )


async def test_without_health_check_there_is_no_checker(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    admin_of: Callable[[InProcessGateway], Awaitable[str]],
) -> None:
    gw = await start_gateway(
        config([upstream.address], FAST).replace("health_check = { " + FAST + " }", "")
    )
    base = await admin_of(gw)
    async with http.get(f"{base}/api/upstreams") as resp:
        (pool,) = (await resp.json())["upstreams"]
    assert pool["health_check"] is None and pool["endpoints"][0]["check"] is None
    assert gw.gateway is not None and gw.gateway.snapshot.pools["app"].checker is None


async def test_wasmgate_run_with_two_workers(
    upstream: RecordingUpstream, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port, admin, closed = free_port(), free_port(), f"127.0.0.1:{free_port()}"
    text = config([upstream.address, closed], f'path = "/ping", {FAST}').replace(
        "127.0.0.1:0", f"127.0.0.1:{port}"
    )
    text += f'\n[admin]\nlisten = "127.0.0.1:{admin}"\n'
    runtime = tmp_path / "runtime"
    gw = GatewayProcess(text, workdir=str(tmp_path)).start(
        port, "--workers", "2", env={metrics.ENV: str(runtime)}
    )

    def workers_holding_it_out() -> int:
        return sum(
            1
            for st in metrics.read_files(runtime)
            if st["live"] and ["app", closed, 0] in st["gauges"].get("checked", [])
        )

    try:
        # Each worker checks on its own, and each has found the dead endpoint.
        await until("both workers find it unhealthy", lambda: workers_holding_it_out() == 2)
        deadline = time.monotonic() + DEADLINE
        text = ""
        while 'result="connect_error",upstream="app"} ' not in text or (
            f'wasmgate_upstream_endpoint_healthy{{endpoint="{closed}",upstream="app"}} 0.0'
            not in text
        ):
            assert time.monotonic() < deadline, f"the metrics never showed it:\n{text}"
            await asyncio.sleep(0.1)
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{admin}/metrics") as resp:
                    text = await resp.text()
        live = f'{{endpoint="{upstream.address}",upstream="app"}} 1.0'
        assert f"wasmgate_upstream_endpoint_check_healthy{live}" in text
        async with http.get(f"http://127.0.0.1:{admin}/api/upstreams") as resp:
            (pool,) = (await resp.json())["upstreams"]
        assert {e["address"]: e["health"] for e in pool["endpoints"]} == {
            upstream.address: "healthy",
            closed: "unhealthy",
        }
        # Neither worker sends it traffic (retries = 0: else a 502).
        for _ in range(8):
            async with http.get(f"http://127.0.0.1:{port}/work") as resp:
                assert resp.status == 200
    finally:
        gw.terminate()


# ------------------------------------------------------------------ reload


async def test_reload_keeps_an_unchanged_pools_checker_and_stops_a_replaced_one(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    text = config([upstream.address, closed], f'type = "tcp", {FAST}')
    gw = await start_gateway(text)
    assert gw.gateway is not None
    await until("the closed port unhealthy", lambda: state(gw, closed) == "unhealthy")
    pool = gw.gateway.snapshot.pools["app"]
    checker = pool.checker
    assert checker is not None and checker.task is not None

    # Another route: the pool is carried over with its checker and what it knows.
    more = text + '\n[[routes]]\nname = "x"\npaths = ["/x"]\nupstream = "app"\n'
    gw.gateway.swap(
        Snapshot(loads_config(more, "test.toml"), "test.toml", previous=gw.gateway.snapshot)
    )
    assert gw.gateway.snapshot.pools["app"] is pool and pool.checker is checker
    assert state(gw, closed) == "unhealthy" and checker.task is not None

    # A changed check: a new pool with its own checker; the old one's task ends.
    task = checker.task
    changed = text.replace("interval = 0.1", "interval = 0.2")
    gw.gateway.swap(
        Snapshot(loads_config(changed, "test.toml"), "test.toml", previous=gw.gateway.snapshot)
    )
    new = gw.gateway.snapshot.pools["app"]
    assert new is not pool and new.checker is not None and new.checker is not checker
    await until("the old checker stopped", task.done)
    await until("the new checker finds the closed port", lambda: state(gw, closed) == "unhealthy")


# ------------------------------------------------------------------ thresholds


def checked_pool(**check: Any) -> tuple[HealthChecker, EndpointState]:
    from core.health import HealthChecker

    cfg = Upstream.model_validate(
        {"name": "u", "endpoints": ["127.0.0.1:9000"], "health_check": check}
    )
    pool = UpstreamPool(cfg)
    assert cfg.health_check is not None
    return HealthChecker(pool, cfg.health_check), pool.endpoints[0]


@pytest.mark.parametrize(
    ("results", "states"),
    [
        pytest.param("+", ["healthy"], id="first-pass-decides"),
        pytest.param("-", ["unhealthy"], id="first-failure-decides"),
        pytest.param(
            "+--+---",
            ["healthy"] * 3 + ["healthy"] * 3 + ["unhealthy"],
            id="three-failures-in-a-row",
        ),
        pytest.param("-+-++", ["unhealthy"] * 4 + ["healthy"], id="two-passes-in-a-row"),
    ],
)
def test_thresholds(results: str, states: list[str]) -> None:
    checker, ep = checked_pool(healthy_threshold=2, unhealthy_threshold=3)
    seen = []
    for r in results:
        checker.record(ep, "success" if r == "+" else "timeout", "" if r == "+" else "slow")
        seen.append(ep.check.state if ep.check else "")
        assert ep.down == (seen[-1] == "unhealthy")
    assert seen == states


def test_unhealthy_by_checks_is_skipped_like_ejected() -> None:
    cfg = Upstream.model_validate(
        {"name": "u", "endpoints": ["127.0.0.1:9000", "127.0.0.1:9001"], "health_check": {}}
    )
    pool = UpstreamPool(cfg)
    pool.endpoints[0].down = True
    assert {pool.pick().address for _ in range(6)} == {"127.0.0.1:9001"}
    # Passive ejection still applies to an endpoint the checks find healthy.
    pool.endpoints[1].ejected_until = time.monotonic() + 60
    with pytest.raises(Exception, match="no healthy endpoint in upstream 'u'"):
        pool.pick()


# ------------------------------------------------------------------ configuration


def load(check: str) -> Upstream:
    cfg = loads_config(
        f'[[upstreams]]\nname = "app"\nendpoints = ["127.0.0.1:1"]\n'
        f"[upstreams.health_check]\n{check}\n",
        "gw.toml",
    )
    return cfg.upstreams[0]


def test_defaults_and_durations() -> None:
    hc = load("").health_check
    assert hc is not None
    assert (hc.type, hc.path, hc.host, hc.expected_statuses) == ("http", "/", None, ["200-399"])
    assert (hc.interval, hc.timeout, hc.healthy_threshold, hc.unhealthy_threshold) == (5, 1, 2, 3)
    hc = load('interval = "1m"\ntimeout = "250ms"').health_check
    assert hc is not None and (hc.interval, hc.timeout) == (60.0, 0.25)
    hc = load('interval = "2s"\ntimeout = 0.5').health_check
    assert hc is not None and (hc.interval, hc.timeout) == (2.0, 0.5)
    hc = load('interval = "1h"\ntimeout = "1.5s"').health_check
    assert hc is not None and (hc.interval, hc.timeout) == (3600.0, 1.5)


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        pytest.param(
            'interval = "5 parsecs"',
            "health_check.interval: '5 parsecs' is not a duration",
            id="bad-duration",
        ),
        pytest.param(
            "timeout = 0", "health_check.timeout: Input should be greater than 0", id="zero-timeout"
        ),
        pytest.param(
            'type = "udp"', "health_check.type: Input should be 'http' or 'tcp'", id="type"
        ),
        pytest.param(
            'path = "healthz"', "health_check.path: 'healthz': write a path starting", id="path"
        ),
        pytest.param('path = "/a b"', "health_check.path: '/a b'", id="path-space"),
        pytest.param('host = "a\\r\\nX-Evil: 1"', "health_check.host:", id="host-crlf"),
        pytest.param(
            "expected_statuses = [700]", "expected_statuses: 700: statuses are 100-599", id="status"
        ),
        pytest.param(
            'expected_statuses = ["299-200"]', "'299-200': statuses are 100-599", id="range-order"
        ),
        pytest.param(
            'expected_statuses = ["2xx"]', "'2xx': write a status (200) or a range", id="range"
        ),
        pytest.param(
            "expected_statuses = []", "expected_statuses: List should have at least 1", id="empty"
        ),
        pytest.param(
            "unhealthy_threshold = 0",
            "unhealthy_threshold: Input should be greater",
            id="threshold",
        ),
        pytest.param(
            'type = "tcp"\npath = "/x"', "'path' is for type = 'http' only", id="tcp-path"
        ),
        pytest.param(
            "intervall = 1", "unknown field 'intervall'; did you mean 'interval'?", id="typo"
        ),
    ],
)
def test_config_errors_name_file_and_field(check: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(check)
    text = str(info.value)
    assert text.startswith("gw.toml:")
    assert "upstreams[0].health_check" in text
    assert problem in text, text


def test_a_dumped_tcp_check_loads_again() -> None:
    # What the admin API shows and workers are handed: defaults spelled out.
    up = load('type = "tcp"\ninterval = "2s"')
    again = Upstream.model_validate(up.model_dump(mode="json"))
    assert again.health_check == up.health_check


def test_the_json_schema_admits_durations_as_strings() -> None:
    # What `wasmgate check --schema` prints, as an editor would use it.
    jsonschema = pytest.importorskip("jsonschema")
    schema = GatewayConfig.model_json_schema()
    check: dict[str, Any] = {"interval": "500ms", "timeout": 0.2}
    endpoints = [{"address": "127.0.0.1:1"}]
    doc = {"upstreams": [{"name": "a", "endpoints": endpoints, "health_check": check}]}
    jsonschema.validate(doc, schema)
    check["interval"] = "soon"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
