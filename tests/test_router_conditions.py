"""Router conditions the Gateway API needs: query parameters, its precedence among
method, header and query conditions, and wildcards that cover several labels.

Each test builds a :class:`Router` from a TOML string and asks which route a request
takes; routes are named after what makes them distinct.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from core.config import loads_config
from core.errors import ConfigError
from core.router import Router

UPSTREAM = '[[upstreams]]\nname = "backend"\nendpoints = ["127.0.0.1:9"]\n'


def route(name: str, **fields: object) -> str:
    lines = ["[[routes]]", f"name = {json.dumps(name)}", 'upstream = "backend"']
    for key, value in fields.items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def build(*routes: str) -> Router:
    return Router(loads_config(UPSTREAM + "\n".join(routes), "test.toml"))


def pick(
    router: Router,
    target: str,
    *,
    host: str = "example.test",
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> str | None:
    path, _, query = target.partition("?")
    low = {k.lower(): v for k, v in (headers or {}).items()}
    found = router.match(host, path, method, low.get, query)
    return found.name if found is not None else None


QUERY_ROUTES = (
    route("plain"),
    route("exact", query=[{"name": "env", "value": "canary"}]),
    route("regex", query=[{"name": "v", "value": "[0-9]+$", "match": "regex"}]),
    route("present", query=[{"name": "debug", "match": "present"}]),
    route("two", query=[{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]),
)

QUERY_CASES = [
    pytest.param("/?env=canary", "exact", id="exact-value"),
    pytest.param("/?env=prod", "plain", id="other-value-falls-back"),
    pytest.param("/?Env=canary", "plain", id="names-are-case-sensitive"),
    pytest.param("/?env=can%61ry", "exact", id="values-are-decoded"),
    pytest.param("/?env=canary&env=prod", "exact", id="first-value-counts"),
    pytest.param("/?env=prod&env=canary", "plain", id="second-value-ignored"),
    pytest.param("/?v=12", "regex", id="regex"),
    pytest.param("/?v=12a", "plain", id="regex-mismatch"),
    pytest.param("/?debug", "present", id="present-without-value"),
    pytest.param("/?a=1&b=2", "two", id="all-must-match"),
    pytest.param("/?a=1", "plain", id="one-of-two-is-not-enough"),
    pytest.param("/", "plain", id="no-query"),
]


@pytest.mark.parametrize(("target", "expected"), QUERY_CASES)
def test_query_conditions(target: str, expected: str) -> None:
    assert pick(build(*QUERY_ROUTES), target) == expected


# The Gateway API's order among rules with the same path: a method match first, then
# the most header matches, then the most query matches; file order last.
PRECEDENCE_ROUTES = (
    route("two-headers", headers=[{"name": "a", "value": "1"}, {"name": "b", "value": "1"}]),
    route("three-queries", query=[{"name": q, "value": "1"} for q in "xyz"]),
    route(
        "header-and-query",
        headers=[{"name": "a", "value": "1"}],
        query=[{"name": "x", "value": "1"}],
    ),
    route("method", methods=["GET"]),
)


@pytest.mark.parametrize(
    ("method", "target", "headers", "expected"),
    [
        pytest.param("GET", "/?x=1&y=1&z=1", {"a": "1", "b": "1"}, "method", id="method-first"),
        pytest.param(
            "POST", "/?x=1&y=1&z=1", {"a": "1", "b": "1"}, "two-headers", id="more-headers-next"
        ),
        pytest.param(
            "POST", "/?x=1&y=1&z=1", {"a": "1"}, "header-and-query", id="one-header-beats-queries"
        ),
        pytest.param("POST", "/?x=1&y=1&z=1", {}, "three-queries", id="queries-last"),
        pytest.param("POST", "/", {}, None, id="nothing-fits"),
    ],
)
def test_gateway_api_condition_precedence(
    method: str, target: str, headers: dict[str, str], expected: str | None
) -> None:
    for order in (PRECEDENCE_ROUTES, PRECEDENCE_ROUTES[::-1]):
        assert pick(build(*order), target, method=method, headers=headers) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("a.example.com", "label", id="one-label-takes-the-ingress-wildcard"),
        pytest.param("a.b.example.com", "suffix", id="two-labels-take-the-suffix-wildcard"),
        pytest.param("a.b.c.deep.example.com", "deep", id="longest-suffix-wins"),
        pytest.param("x.deep.example.com", "deep", id="one-label-under-deep"),
        pytest.param("deep.example.com", "label", id="one-label-is-the-ingress-wildcard-first"),
        pytest.param("example.com", None, id="bare-domain-not-covered"),
        pytest.param(".example.com", None, id="empty-label-not-covered"),
        pytest.param("A.B.EXAMPLE.COM:8080", "suffix", id="case-and-port-ignored"),
    ],
)
def test_suffix_wildcards(host: str, expected: str | None) -> None:
    router = build(
        route("label", hosts=["*.example.com"]),
        route("suffix", hosts=["*.example.com"], host_wildcard="suffix"),
        route("deep", hosts=["*.deep.example.com"], host_wildcard="suffix"),
    )
    assert pick(router, "/", host=host) == expected


def test_bad_query_regex_is_refused_with_its_field() -> None:
    with pytest.raises(ConfigError) as err:
        build(route("bad", query=[{"name": "q", "value": "(", "match": "regex"}]))
    assert "routes[0].query[0]" in str(err.value)
