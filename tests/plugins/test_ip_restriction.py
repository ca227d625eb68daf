"""The ip-restriction plugin: CIDR parsing at load time, allow/deny rules (IPv4, IPv6),
the refusal reply, and ctx.client_ip under server.trusted_hops through the real gateway."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from plugin_sdk.testing import make_request, run_filter
from plugins.ip_restriction import IpRestriction, IpRestrictionConfig
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml, parse_responses, raw_request

# ---------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param({"allow": ["10.0.0.0/33"]}, "invalid address or CIDR", id="bad-prefix"),
        pytest.param({"deny": ["10.0.0.256"]}, "invalid address or CIDR", id="bad-octet"),
        pytest.param({"allow": ["example.com"]}, "invalid address or CIDR", id="hostname"),
        pytest.param({"deny": ["2001:db8::/129"]}, "invalid address or CIDR", id="bad-v6-prefix"),
        pytest.param({"allow": ["10.0.0.1/8"]}, "did you mean '10.0.0.0/8'", id="host-bits"),
        pytest.param({"deny": ["::ffff:10.0.0.0/104"]}, "IPv4-mapped", id="mapped-v6"),
        pytest.param({"status": 200}, "greater than or equal", id="status-not-an-error"),
        pytest.param({"allowed": ["10.0.0.0/8"]}, "Extra inputs", id="unknown-field"),
    ],
)
def test_bad_config_is_refused_at_load_time(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        IpRestrictionConfig.model_validate(config)


def test_entries_are_normalised() -> None:
    cfg = IpRestrictionConfig(allow=["10.1.2.3", " 2001:DB8::/32 "])
    assert cfg.allow == ["10.1.2.3/32", "2001:db8::/32"]


def test_empty_lists_skip_the_request_phase() -> None:
    assert "on_request" in IpRestriction(IpRestrictionConfig()).skip_phases
    assert "on_request" not in IpRestriction(IpRestrictionConfig(deny=["::1"])).skip_phases


# ---------------------------------------------------------------------- rules

OFFICE = {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.66.0.0/16", "2001:db8:bad::/48"]}


@pytest.mark.parametrize(
    ("config", "client", "allowed"),
    [
        pytest.param(OFFICE, "10.1.2.3", True, id="v4-in-allow"),
        pytest.param(OFFICE, "11.1.2.3", False, id="v4-outside-allow"),
        pytest.param(OFFICE, "10.66.1.1", False, id="v4-deny-wins-over-allow"),
        pytest.param(OFFICE, "2001:db8::1", True, id="v6-in-allow"),
        pytest.param(OFFICE, "2001:db9::1", False, id="v6-outside-allow"),
        pytest.param(OFFICE, "2001:db8:bad::7", False, id="v6-deny-wins"),
        pytest.param(OFFICE, "::ffff:10.1.2.3", True, id="v4-mapped-v6-as-v4"),
        pytest.param(OFFICE, "::ffff:10.66.0.1", False, id="v4-mapped-denied"),
        pytest.param(OFFICE, "not-an-ip", False, id="unparsable-refused"),
        pytest.param(OFFICE, "", False, id="empty-refused"),
        pytest.param({"deny": ["192.0.2.0/24"]}, "192.0.2.200", False, id="deny-only-in"),
        pytest.param({"deny": ["192.0.2.0/24"]}, "192.0.3.1", True, id="deny-only-out"),
        pytest.param({"deny": ["192.0.2.0/24"]}, "2001:db8::1", True, id="deny-only-other-family"),
        pytest.param({"allow": ["192.0.2.7"]}, "192.0.2.7", True, id="single-address"),
        pytest.param({"allow": ["192.0.2.7"]}, "192.0.2.8", False, id="single-address-neighbour"),
        pytest.param({"allow": ["0.0.0.0/0"]}, "203.0.113.9", True, id="all-v4"),
        pytest.param({"allow": ["0.0.0.0/0"]}, "::1", False, id="all-v4-not-v6"),
        pytest.param({}, "203.0.113.9", True, id="no-lists-no-effect"),
    ],
)
def test_rules(config: dict[str, Any], client: str, allowed: bool) -> None:
    result = run_filter(IpRestriction, make_request(client_ip=client), config=config)
    if allowed:
        assert result.reply is None
    else:
        assert result.reply is not None
        assert result.status == 403
        assert result.response is not None and result.response.body == b"forbidden\n"


def test_status_and_message_are_configurable() -> None:
    result = run_filter(
        IpRestriction,
        make_request(client_ip="10.0.0.1"),
        config={"deny": ["10.0.0.0/8"], "status": 451, "message": "not from there"},
    )
    assert result.status == 451
    assert result.response is not None and result.response.body == b"not from there\n"
    assert result.headers.get("content-type") == "text/plain; charset=utf-8"


# ---------------------------------------------------------------------- real gateway


def config(allow: list[str], *, trusted_hops: int = 0, status: int = 403) -> tuple[str, str]:
    """(routes, [server] lines) for one route behind an ip-restriction filter."""
    quoted = ", ".join(f'"{a}"' for a in allow)
    routes = f"""
[filters.only-docs-net]
plugin = "ip-restriction"
config = {{ allow = [{quoted}], status = {status} }}

[[routes]]
name = "api"
paths = ["/"]
upstream = "v1"
filters = ["only-docs-net"]
"""
    return routes, f"trusted_hops = {trusted_hops}"


@pytest.mark.parametrize(
    ("trusted_hops", "xff", "status"),
    [
        pytest.param(1, "203.0.113.7", 200, id="trusted-hop-vouches-allowed-client"),
        pytest.param(1, "198.51.100.1", 403, id="trusted-hop-vouches-other-client"),
        pytest.param(1, "203.0.113.7, 198.51.100.1", 403, id="only-last-hop-is-believed"),
        pytest.param(2, "203.0.113.7, 198.51.100.1", 200, id="two-hops-reach-further"),
        pytest.param(0, "203.0.113.7", 403, id="untrusted-header-ignored"),
        pytest.param(1, None, 403, id="no-header-means-peer"),
    ],
)
async def test_gateway_uses_client_ip_with_trusted_hops(
    trusted_hops: int,
    xff: str | None,
    status: int,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    routes, server = config(["203.0.113.0/24"], trusted_hops=trusted_hops)
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes, server=server))
    headers = {"X-Forwarded-For": xff} if xff is not None else {}
    async with http.get(f"{gw.url}/echo", headers=headers) as r:
        assert r.status == status
        body = await r.read()
    if status == 200:
        assert len(upstream.requests) == 1
    else:
        assert body == b"forbidden\n"
        assert upstream.requests == []


async def test_gateway_allows_the_peer_and_uses_configured_status(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    routes, server = config(["127.0.0.1"], status=401)
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes, server=server))
    data = b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    (resp,) = await parse_responses(await raw_request(gw.port, data))
    assert resp.status == 200
    assert len(upstream.requests) == 1

    routes, server = config(["10.0.0.0/8"], status=401)
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes, server=server))
    (resp,) = await parse_responses(await raw_request(gw.port, data))
    assert resp.status == 401
    assert resp.body == b"forbidden\n"
    assert len(upstream.requests) == 1


async def test_gateway_refuses_a_bad_cidr_at_load_time(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    routes, server = config(["10.0.0.1/8"])
    with pytest.raises(ConfigError, match=r"filters\.only-docs-net.*config\.allow"):
        await start_gateway(gateway_toml({"v1": [upstream.address]}, routes, server=server))
