"""The route table: every rule in ``core/router.py``'s docstring, on a real config.

Each test builds a :class:`Router` from a TOML string through ``loads_config`` and
asks it which route a request goes to. Routes are named after what makes them
distinct, so a failing case reads as "expected route X, got route Y".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import pytest

from core.config import loads_config
from core.router import Router

UPSTREAM = '[[upstreams]]\nname = "backend"\nendpoints = ["127.0.0.1:9"]\n'


def route_toml(
    name: str,
    paths: Sequence[str] = ("prefix:/",),
    *,
    hosts: Sequence[str] = (),
    methods: Sequence[str] = (),
    headers: Sequence[dict[str, object]] = (),
) -> str:
    """One ``[[routes]]`` table; a path is written ``kind:path`` (``exact:/foo``)."""
    rules = []
    for spec in paths:
        kind, _, path = spec.partition(":")
        rules.append(f"{{ path = {json.dumps(path)}, match = {json.dumps(kind)} }}")
    lines = [
        "[[routes]]",
        f"name = {json.dumps(name)}",
        'upstream = "backend"',
        f"paths = [{', '.join(rules)}]",
    ]
    if hosts:
        lines.append(f"hosts = {json.dumps(list(hosts))}")
    if methods:
        lines.append(f"methods = {json.dumps(list(methods))}")
    if headers:
        tables = [
            "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in h.items()) + " }" for h in headers
        ]
        lines.append(f"headers = [{', '.join(tables)}]")
    return "\n".join(lines) + "\n"


def build(*routes: str, default: bool = False) -> Router:
    toml = UPSTREAM + "\n".join(routes)
    if default:
        toml += '\n[default]\nupstream = "backend"\n'
    return Router(loads_config(toml, "test.toml"))


def match(
    router: Router,
    path: str,
    *,
    host: str = "",
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> str | None:
    """The name of the route chosen (``"default"`` for the default route), or None."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    # The proxy's getter is asked with lower-case names, as here.
    target = router.match(host, path, method, lowered.get)
    return None if target is None else target.name


def one_route_per_rule(rules: Sequence[str], *, default: bool = False) -> Router:
    """A router with one route per rule, each route named after its rule."""
    return build(*(route_toml(rule, [rule]) for rule in rules), default=default)


# --------------------------------------------------------------------------- Kubernetes table

# https://kubernetes.io/docs/concepts/services-networking/ingress/#examples — every row.
# (rules, request path, the rule whose route wins or None; "default" = default backend)
K8S_EXAMPLES = [
    *(
        pytest.param(["prefix:/"], p, "prefix:/", id=f"k8s-prefix-root-matches-{p}")
        for p in ("/", "/foo", "/foo/", "/aaa/bbb/ccc", "/FOO.html")
    ),
    pytest.param(["exact:/foo"], "/foo", "exact:/foo", id="k8s-exact-foo-matches-foo"),
    pytest.param(["exact:/foo"], "/bar", None, id="k8s-exact-foo-not-bar"),
    pytest.param(["exact:/foo"], "/foo/", None, id="k8s-exact-foo-not-foo-slash"),
    pytest.param(["exact:/foo/"], "/foo", None, id="k8s-exact-foo-slash-not-foo"),
    pytest.param(["prefix:/foo"], "/foo", "prefix:/foo", id="k8s-prefix-foo-matches-foo"),
    pytest.param(["prefix:/foo"], "/foo/", "prefix:/foo", id="k8s-prefix-foo-matches-foo-slash"),
    pytest.param(["prefix:/foo/"], "/foo", "prefix:/foo/", id="k8s-prefix-foo-slash-matches-foo"),
    pytest.param(
        ["prefix:/foo/"], "/foo/", "prefix:/foo/", id="k8s-prefix-foo-slash-matches-foo-slash"
    ),
    pytest.param(["prefix:/aaa/bb"], "/aaa/bbb", None, id="k8s-prefix-not-partial-element"),
    pytest.param(["prefix:/aaa/bbb"], "/aaa/bbb", "prefix:/aaa/bbb", id="k8s-prefix-same-path"),
    pytest.param(
        ["prefix:/aaa/bbb/"],
        "/aaa/bbb",
        "prefix:/aaa/bbb/",
        id="k8s-prefix-ignores-trailing-slash-in-rule",
    ),
    pytest.param(
        ["prefix:/aaa/bbb"],
        "/aaa/bbb/",
        "prefix:/aaa/bbb",
        id="k8s-prefix-matches-trailing-slash-in-request",
    ),
    pytest.param(
        ["prefix:/aaa/bbb"], "/aaa/bbb/ccc", "prefix:/aaa/bbb", id="k8s-prefix-matches-subpath"
    ),
    pytest.param(["prefix:/aaa/bbb"], "/aaa/bbbxyz", None, id="k8s-prefix-not-string-prefix"),
    pytest.param(
        ["prefix:/", "prefix:/aaa"], "/aaa/ccc", "prefix:/aaa", id="k8s-multi-matches-aaa-prefix"
    ),
    pytest.param(
        ["prefix:/", "prefix:/aaa", "prefix:/aaa/bbb"],
        "/aaa/bbb",
        "prefix:/aaa/bbb",
        id="k8s-multi-matches-aaa-bbb-prefix",
    ),
    pytest.param(
        ["prefix:/", "prefix:/aaa", "prefix:/aaa/bbb"],
        "/ccc",
        "prefix:/",
        id="k8s-multi-matches-root-prefix",
    ),
    pytest.param(["prefix:/foo", "exact:/foo"], "/foo", "exact:/foo", id="k8s-mixed-prefers-exact"),
    pytest.param(
        ["exact:/foo", "prefix:/foo"], "/foo", "exact:/foo", id="k8s-mixed-prefers-exact-reversed"
    ),
]


@pytest.mark.parametrize(("rules", "path", "expected"), K8S_EXAMPLES)
def test_kubernetes_path_examples(rules: list[str], path: str, expected: str | None) -> None:
    assert match(one_route_per_rule(rules), path) == expected


def test_kubernetes_example_unmatched_uses_default_backend() -> None:
    """Row "Prefix /aaa, request /ccc: No, uses default backend"."""
    router = one_route_per_rule(["prefix:/aaa"], default=True)
    assert match(router, "/ccc") == "default"
    assert match(router, "/aaa/x") == "prefix:/aaa"


# --------------------------------------------------------------------------- path rules

PATH_CASES = [
    # Prefix rules match whole path elements.
    pytest.param(["prefix:/foo"], "/foo", "prefix:/foo", id="prefix-matches-itself"),
    pytest.param(["prefix:/foo"], "/foo/", "prefix:/foo", id="prefix-matches-with-slash"),
    pytest.param(["prefix:/foo"], "/foo/bar", "prefix:/foo", id="prefix-matches-subpath"),
    pytest.param(["prefix:/foo"], "/foo/bar/baz/", "prefix:/foo", id="prefix-matches-deep-subpath"),
    pytest.param(["prefix:/foo"], "/foobar", None, id="prefix-not-string-prefix"),
    pytest.param(["prefix:/foo"], "/fo", None, id="prefix-not-shorter-path"),
    pytest.param(["prefix:/foo/bar"], "/foo", None, id="prefix-not-parent"),
    pytest.param(
        ["prefix:/aaa/bbb/"], "/aaa/bbb", "prefix:/aaa/bbb/", id="prefix-rule-slash-ignored"
    ),
    pytest.param(
        ["prefix:/aaa/bbb/"], "/aaa/bbbc", None, id="prefix-rule-slash-still-whole-element"
    ),
    # Exact rules match the path exactly.
    pytest.param(["exact:/foo"], "/foo", "exact:/foo", id="exact-matches-itself"),
    pytest.param(["exact:/foo"], "/foo/", None, id="exact-not-with-slash"),
    pytest.param(["exact:/foo"], "/foo/bar", None, id="exact-not-subpath"),
    pytest.param(["exact:/foo/"], "/foo/", "exact:/foo/", id="exact-with-slash-matches-itself"),
    # Case-sensitive paths.
    pytest.param(["prefix:/foo"], "/Foo", None, id="prefix-case-sensitive"),
    pytest.param(["prefix:/Foo"], "/foo/x", None, id="prefix-rule-case-sensitive"),
    pytest.param(["exact:/foo"], "/FOO", None, id="exact-case-sensitive"),
    pytest.param(["regex:/foo"], "/FOO", None, id="regex-case-sensitive"),
    # Regex rules are anchored at the start (not at the end).
    pytest.param(["regex:/v[0-9]+/"], "/v1/users", "regex:/v[0-9]+/", id="regex-matches-start"),
    pytest.param(["regex:/v[0-9]+/"], "/x/v1/", None, id="regex-anchored-at-start"),
    pytest.param(["regex:/v[0-9]+/"], "/va/", None, id="regex-no-match"),
    pytest.param(["regex:.*\\.png$"], "/img/a.png", "regex:.*\\.png$", id="regex-may-span-path"),
    # Longest rule wins.
    pytest.param(
        ["prefix:/a", "prefix:/a/b", "prefix:/a/b/c"],
        "/a/b/x",
        "prefix:/a/b",
        id="longest-prefix-wins",
    ),
    pytest.param(
        ["prefix:/a/b/c", "prefix:/a/b", "prefix:/a"],
        "/a/b/c/d",
        "prefix:/a/b/c",
        id="longest-prefix-wins-regardless-of-order",
    ),
    pytest.param(
        ["prefix:/a/b", "exact:/a"], "/a/b", "prefix:/a/b", id="longer-prefix-beats-shorter-exact"
    ),
    pytest.param(
        ["exact:/a/b/c", "prefix:/a/b"], "/a/b/c", "exact:/a/b/c", id="longer-exact-beats-prefix"
    ),
    # Equal length: exact beats prefix beats regex.
    pytest.param(
        ["prefix:/foo", "exact:/foo"], "/foo", "exact:/foo", id="equal-exact-beats-prefix"
    ),
    pytest.param(
        ["prefix:/foo/", "exact:/foo"], "/foo", "exact:/foo", id="equal-exact-beats-slash-prefix"
    ),
    pytest.param(
        ["prefix:/foo", "exact:/foo"], "/foo/x", "prefix:/foo", id="exact-gone-prefix-remains"
    ),
    pytest.param(
        ["regex:/ab.d", "prefix:/abcd"], "/abcd/x", "prefix:/abcd", id="equal-prefix-beats-regex"
    ),
    pytest.param(
        ["regex:/ab.d", "exact:/abcd"], "/abcd", "exact:/abcd", id="equal-exact-beats-regex"
    ),
    # Regex length is its pattern's length.
    pytest.param(
        ["prefix:/api", "regex:/api/v[0-9]+"],
        "/api/v2/x",
        "regex:/api/v[0-9]+",
        id="longer-regex-beats-shorter-prefix",
    ),
    pytest.param(
        ["regex:/api/v[0-9]+", "prefix:/api/v1/users"],
        "/api/v1/users/7",
        "prefix:/api/v1/users",
        id="longer-prefix-beats-shorter-regex",
    ),
    pytest.param(
        ["regex:/api/v[0-9]+", "prefix:/api/v1/users"],
        "/api/v1/orders",
        "regex:/api/v[0-9]+",
        id="regex-when-longer-prefix-misses",
    ),
    pytest.param(
        ["regex:/a.*", "regex:/a/b.*"], "/a/b/c", "regex:/a/b.*", id="longer-regex-beats-shorter"
    ),
    pytest.param(
        ["regex:/x/[0-9]+/y", "exact:/x/1/y"],
        "/x/1/y",
        "regex:/x/[0-9]+/y",
        id="longer-regex-beats-shorter-exact",
    ),
    pytest.param(["prefix:/a"], "/", None, id="no-match"),
]


# An unrelated regex route in the same group: precedence must hold whether or not
# the router has regex rules to merge in.
NOISE = [
    pytest.param([], id="alone"),
    pytest.param(["regex:/never-matches-[0-9]"], id="beside-regex"),
]


@pytest.mark.parametrize("noise", NOISE)
@pytest.mark.parametrize(("rules", "path", "expected"), PATH_CASES)
def test_path_rules(rules: list[str], path: str, expected: str | None, noise: list[str]) -> None:
    assert match(one_route_per_rule([*noise, *rules]), path) == expected


def test_one_route_with_several_path_rules() -> None:
    router = build(
        route_toml("docs", ["exact:/", "prefix:/docs", "regex:/guide-[a-z]+"]),
        route_toml("api", ["prefix:/api"]),
    )
    assert match(router, "/") == "docs"
    assert match(router, "/docs/intro") == "docs"
    assert match(router, "/guide-setup") == "docs"
    assert match(router, "/api/x") == "api"
    assert match(router, "/other") is None


def test_omitted_paths_mean_every_path() -> None:
    router = build('[[routes]]\nname = "all"\nupstream = "backend"\n')
    assert match(router, "/anything/at/all") == "all"
    assert match(router, "/") == "all"


# --------------------------------------------------------------------------- hosts

HOST_ROUTES = (
    route_toml("exact-host", ["prefix:/"], hosts=["api.foo.com"]),
    route_toml("wildcard", ["prefix:/"], hosts=["*.foo.com"]),
    route_toml("any-host", ["prefix:/"]),
)

HOST_CASES = [
    pytest.param("api.foo.com", "exact-host", id="exact-host-beats-wildcard"),
    pytest.param("bar.foo.com", "wildcard", id="wildcard-matches-one-label"),
    pytest.param("foo.com", "any-host", id="wildcard-not-bare-domain"),
    pytest.param("baz.bar.foo.com", "any-host", id="wildcard-not-two-labels"),
    pytest.param("xfoo.com", "any-host", id="wildcard-not-string-suffix"),
    pytest.param("other.test", "any-host", id="unknown-host-uses-hostless-routes"),
    pytest.param("", "any-host", id="no-host-uses-hostless-routes"),
    pytest.param("api.foo.com:8443", "exact-host", id="port-ignored-exact"),
    pytest.param("bar.foo.com:80", "wildcard", id="port-ignored-wildcard"),
    pytest.param("API.Foo.COM", "exact-host", id="case-ignored-exact"),
    pytest.param("Bar.FOO.com:8080", "wildcard", id="case-and-port-ignored-wildcard"),
    pytest.param("api.foo.com.", "exact-host", id="trailing-dot-ignored"),
    pytest.param("[::1]:8080", "any-host", id="ipv6-literal-uses-hostless-routes"),
]


@pytest.mark.parametrize(("host", "expected"), HOST_CASES)
def test_host_rules(host: str, expected: str) -> None:
    assert match(build(*HOST_ROUTES), "/x", host=host) == expected


@pytest.mark.parametrize(
    "routes",
    [
        pytest.param(HOST_ROUTES, id="file-order-exact-first"),
        pytest.param(tuple(reversed(HOST_ROUTES)), id="file-order-hostless-first"),
    ],
)
def test_host_precedence_does_not_depend_on_file_order(routes: tuple[str, ...]) -> None:
    router = build(*routes)
    assert match(router, "/", host="api.foo.com") == "exact-host"
    assert match(router, "/", host="www.foo.com") == "wildcard"
    assert match(router, "/", host="elsewhere.test") == "any-host"


def test_route_with_several_hosts() -> None:
    router = build(route_toml("multi", hosts=["a.test", "*.b.test"]), route_toml("rest"))
    assert match(router, "/", host="a.test") == "multi"
    assert match(router, "/", host="x.b.test") == "multi"
    assert match(router, "/", host="b.test") == "rest"


def test_host_in_config_is_case_insensitive() -> None:
    router = build(route_toml("upper", hosts=["API.Example.COM"]))
    assert match(router, "/", host="api.example.com") == "upper"


NO_FALLTHROUGH_CASES = [
    pytest.param(False, None, id="no-default-404"),
    pytest.param(True, "default", id="with-default-uses-default"),
]


@pytest.mark.parametrize(("default", "expected"), NO_FALLTHROUGH_CASES)
def test_host_group_does_not_fall_through_to_hostless_routes(
    default: bool, expected: str | None
) -> None:
    router = build(
        route_toml("api-host", ["prefix:/api"], hosts=["api.foo.com"]),
        route_toml("catch-all", ["prefix:/"]),
        default=default,
    )
    assert match(router, "/api/x", host="api.foo.com") == "api-host"
    assert match(router, "/other", host="api.foo.com") == expected
    assert match(router, "/other", host="elsewhere.test") == "catch-all"


def test_exact_host_group_does_not_fall_through_to_wildcard() -> None:
    router = build(
        route_toml("api-host", ["prefix:/api"], hosts=["api.foo.com"]),
        route_toml("wildcard", ["prefix:/"], hosts=["*.foo.com"]),
    )
    assert match(router, "/other", host="api.foo.com") is None
    assert match(router, "/other", host="www.foo.com") == "wildcard"


def test_host_group_with_failing_conditions_does_not_fall_through() -> None:
    router = build(
        route_toml("api-get", ["prefix:/"], hosts=["api.foo.com"], methods=["GET"]),
        route_toml("catch-all", ["prefix:/"]),
        default=True,
    )
    assert match(router, "/", host="api.foo.com", method="GET") == "api-get"
    assert match(router, "/", host="api.foo.com", method="POST") == "default"


# --------------------------------------------------------------------------- default / none


def test_no_match_and_no_default_gives_none() -> None:
    router = build(route_toml("api", ["prefix:/api"]))
    assert match(router, "/web") is None
    assert router.default is None


def test_no_routes_at_all() -> None:
    assert match(build(), "/") is None
    assert match(build(default=True), "/anything") == "default"


def test_default_route_used_when_nothing_matches() -> None:
    router = build(route_toml("api", ["prefix:/api"]), default=True)
    assert match(router, "/web") == "default"
    assert match(router, "/api") == "api"
    assert router.default is not None
    assert router.default.upstream == "backend"


# --------------------------------------------------------------------------- methods, headers

METHOD_CASES = [
    pytest.param("GET", "get-head", id="method-listed"),
    pytest.param("HEAD", "get-head", id="method-second-listed"),
    pytest.param("POST", "any-method", id="method-not-listed-falls-back"),
    pytest.param("DELETE", "any-method", id="other-method-falls-back"),
]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_method_only_route_alone(method: str) -> None:
    router = build(route_toml("get-only", ["prefix:/x"], methods=["get"]))
    assert match(router, "/x", method=method) == ("get-only" if method == "GET" else None)


@pytest.mark.parametrize(("method", "expected"), METHOD_CASES)
def test_method_conditions(method: str, expected: str) -> None:
    # The unconditioned route comes first in the file; conditions still go first.
    router = build(
        route_toml("any-method", ["prefix:/x"]),
        route_toml("get-head", ["prefix:/x"], methods=["GET", "HEAD"]),
    )
    assert match(router, "/x/1", method=method) == expected


HEADER_CASES = [
    # (header matcher, request headers, matches?)
    pytest.param({"name": "X-Env", "value": "canary"}, {"X-Env": "canary"}, True, id="exact-hit"),
    pytest.param(
        {"name": "X-Env", "value": "canary"}, {"X-Env": "canary2"}, False, id="exact-miss"
    ),
    pytest.param(
        {"name": "X-Env", "value": "canary"}, {"X-Env": "Canary"}, False, id="exact-value-case"
    ),
    pytest.param({"name": "X-Env", "value": "canary"}, {}, False, id="exact-absent"),
    pytest.param(
        {"name": "x-env", "value": "canary"}, {"X-ENV": "canary"}, True, id="name-case-ignored"
    ),
    pytest.param(
        {"name": "User-Agent", "value": "curl/", "match": "prefix"},
        {"User-Agent": "curl/8.1"},
        True,
        id="prefix-hit",
    ),
    pytest.param(
        {"name": "User-Agent", "value": "curl/", "match": "prefix"},
        {"User-Agent": "xcurl/8.1"},
        False,
        id="prefix-miss",
    ),
    pytest.param(
        {"name": "User-Agent", "value": "curl/", "match": "prefix"}, {}, False, id="prefix-absent"
    ),
    pytest.param(
        {"name": "X-Version", "value": "v[0-9]+", "match": "regex"},
        {"X-Version": "v42"},
        True,
        id="regex-hit",
    ),
    pytest.param(
        {"name": "X-Version", "value": "v[0-9]+", "match": "regex"},
        {"X-Version": "beta"},
        False,
        id="regex-miss",
    ),
    pytest.param(
        {"name": "X-Version", "value": "v[0-9]+", "match": "regex"}, {}, False, id="regex-absent"
    ),
    pytest.param(
        {"name": "X-Debug", "match": "present"}, {"X-Debug": ""}, True, id="present-empty"
    ),
    pytest.param({"name": "X-Debug", "match": "present"}, {"X-Debug": "1"}, True, id="present-hit"),
    pytest.param(
        {"name": "X-Debug", "match": "present"}, {"X-Other": "1"}, False, id="present-miss"
    ),
    pytest.param(
        {"name": "X-Env", "value": "prod", "invert": True},
        {"X-Env": "staging"},
        True,
        id="invert-exact-differs",
    ),
    pytest.param(
        {"name": "X-Env", "value": "prod", "invert": True},
        {"X-Env": "prod"},
        False,
        id="invert-exact-equal",
    ),
    pytest.param(
        {"name": "X-Env", "value": "prod", "invert": True}, {}, True, id="invert-exact-absent"
    ),
    pytest.param(
        {"name": "X-Debug", "match": "present", "invert": True},
        {},
        True,
        id="invert-present-absent",
    ),
    pytest.param(
        {"name": "X-Debug", "match": "present", "invert": True},
        {"X-Debug": "1"},
        False,
        id="invert-present-there",
    ),
    pytest.param(
        {"name": "X-Version", "value": "v[0-9]+", "match": "regex", "invert": True},
        {"X-Version": "beta"},
        True,
        id="invert-regex-miss",
    ),
]


@pytest.mark.parametrize(("matcher", "headers", "hit"), HEADER_CASES)
def test_header_matchers(matcher: dict[str, object], headers: dict[str, str], hit: bool) -> None:
    router = build(
        route_toml("plain", ["prefix:/"]),
        route_toml("conditioned", ["prefix:/"], headers=[matcher]),
    )
    assert match(router, "/", headers=headers) == ("conditioned" if hit else "plain")


def test_all_header_conditions_must_match() -> None:
    router = build(
        route_toml(
            "both",
            headers=[{"name": "X-A", "value": "1"}, {"name": "X-B", "match": "present"}],
        ),
        route_toml("plain"),
    )
    assert match(router, "/", headers={"X-A": "1", "X-B": "y"}) == "both"
    assert match(router, "/", headers={"X-A": "1"}) == "plain"
    assert match(router, "/", headers={"X-B": "y"}) == "plain"


SPECIFICITY_ROUTES = (
    route_toml("plain", ["prefix:/api"]),
    route_toml("one-header", ["prefix:/api"], headers=[{"name": "X-Env", "value": "canary"}]),
    route_toml(
        "method-and-header",
        ["prefix:/api"],
        methods=["POST"],
        headers=[{"name": "X-Env", "value": "canary"}],
    ),
)

SPECIFICITY_CASES = [
    pytest.param("POST", {"X-Env": "canary"}, "method-and-header", id="most-conditions-first"),
    pytest.param("GET", {"X-Env": "canary"}, "one-header", id="method-fails-next-specific"),
    pytest.param("POST", {}, "plain", id="header-fails-falls-to-plain"),
    pytest.param("GET", {"X-Env": "prod"}, "plain", id="all-conditions-fail-plain"),
]


@pytest.mark.parametrize(("method", "headers", "expected"), SPECIFICITY_CASES)
@pytest.mark.parametrize(
    "order",
    [pytest.param((0, 1, 2), id="plain-first"), pytest.param((2, 1, 0), id="specific-first")],
)
def test_routes_with_more_conditions_are_tried_first(
    order: tuple[int, ...], method: str, headers: dict[str, str], expected: str
) -> None:
    router = build(*(SPECIFICITY_ROUTES[i] for i in order))
    assert match(router, "/api/x", method=method, headers=headers) == expected


def test_equal_conditions_keep_file_order() -> None:
    router = build(
        route_toml("first", methods=["GET"]),
        route_toml("second", methods=["GET"]),
    )
    assert match(router, "/") == "first"


def test_longer_path_beats_more_conditions() -> None:
    router = build(
        route_toml("short-conditioned", ["prefix:/api"], methods=["GET"]),
        route_toml("long-plain", ["prefix:/api/v1"]),
    )
    assert match(router, "/api/v1/x") == "long-plain"
    assert match(router, "/api/v2/x") == "short-conditioned"


def test_failed_conditions_fall_back_to_shorter_path() -> None:
    router = build(
        route_toml("admin-get", ["prefix:/api/admin"], methods=["GET"]),
        route_toml(
            "api-exact", ["exact:/api/admin/x"], headers=[{"name": "X-Admin", "match": "present"}]
        ),
        route_toml("api", ["prefix:/api"]),
        route_toml("admin-regex", ["regex:/api/adm"]),
    )
    assert match(router, "/api/admin/x", headers={"X-Admin": "1"}) == "api-exact"
    assert match(router, "/api/admin/x") == "admin-get"
    # Neither the exact nor the /api/admin prefix fits a POST: next is the regex
    # (length 12), then the /api prefix (length 4).
    assert match(router, "/api/admin/x", method="POST") == "admin-regex"
    assert match(router, "/api/other", method="POST") == "api"


def test_failed_conditions_without_fallback_use_default() -> None:
    router = build(route_toml("get-only", methods=["GET"]), default=True)
    assert match(router, "/", method="GET") == "get-only"
    assert match(router, "/", method="PUT") == "default"


# --------------------------------------------------------------------------- compiled once


def test_matching_compiles_no_regular_expressions(monkeypatch: pytest.MonkeyPatch) -> None:
    router = build(
        route_toml("versioned", ["regex:/v[0-9]+/"]),
        route_toml("images", ["regex:.*\\.(png|jpg)$"], hosts=["*.cdn.test"]),
        route_toml(
            "beta",
            ["prefix:/"],
            headers=[{"name": "X-Version", "value": "b[0-9]+", "match": "regex"}],
        ),
        route_toml("rest", ["prefix:/"]),
    )

    def no_compile(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"regular expression compiled while matching: {args!r}")

    monkeypatch.setattr(re, "compile", no_compile)
    # re.match / re.search / re.fullmatch with a string pattern go through re._compile.
    monkeypatch.setattr(re, "_compile", no_compile, raising=False)
    with pytest.raises(AssertionError):
        re.match("x", "x")  # the trap is armed

    assert match(router, "/v2/users") == "versioned"
    assert match(router, "/x/v2/") == "rest"
    assert match(router, "/a/b.png", host="img.cdn.test") == "images"
    assert match(router, "/a/b.gif", host="img.cdn.test") is None
    assert match(router, "/", headers={"X-Version": "b7"}) == "beta"
    assert match(router, "/", headers={"X-Version": "rc1"}) == "rest"


def test_match_returns_the_compiled_targets() -> None:
    router = build(route_toml("a", ["prefix:/a"]), route_toml("b", ["regex:/b"]))
    targets = {t.name: t for t in router.routes}
    for _ in range(3):
        assert router.match("", "/a/x", "GET", {}.get) is targets["a"]
        assert router.match("", "/b", "GET", {}.get) is targets["b"]
