"""The route table, compiled once per configuration.

Matching follows the Kubernetes Ingress rules:

* Host: exact names beat ``*.suffix`` wildcards, which beat routes without hosts. A
  wildcard covers exactly one label (``*.foo.com`` matches ``bar.foo.com``, not
  ``foo.com`` nor ``baz.bar.foo.com``), unless the route says
  ``host_wildcard = "suffix"`` (the Gateway API's rule): then it covers any number of
  labels, and the longest such suffix wins. Case and port are ignored. The host picks one
  group of routes; a request whose host picked a group but whose path matches none
  of that group's rules does *not* fall through to another group (NGINX Ingress and
  Envoy behave the same) — it goes to the default route, or gets 404.
* Path: case-sensitive. Prefix rules match whole path elements (``/foo`` matches
  ``/foo``, ``/foo/`` and ``/foo/bar``, not ``/foobar``), and a trailing slash in a
  prefix rule is ignored. Exact rules match the path exactly. Regex rules are
  anchored at the start of the path. ``;`` path parameters are left out of the
  path matched (core/http1.py has already normalised the rest of it).
* Precedence: the longest rule wins (a prefix or exact rule's length is its path's
  length, a regex rule's is the length of its pattern, as NGINX Ingress orders
  them); on equal length exact beats prefix beats regex; among rules with the same
  path, a route with a method condition is tried first, then the one with more
  header conditions, then the one with more query conditions (the Gateway API's
  order), then file order. A candidate whose conditions fail gives way to the next.
* Query conditions compare decoded values; a parameter given twice counts by its
  first value.

Per request, matching is dictionary lookups over the path's element prefixes plus
the regex rules of the chosen host group, already in precedence order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from core.config import DefaultRoute, GatewayConfig, HeaderMatch, QueryMatch, Route

if TYPE_CHECKING:
    from plugin_sdk.chain import Chain

HeaderGetter = Callable[[str], "str | None"]

_EXACT, _PREFIX, _REGEX = 2, 1, 0
_PARAMS = re.compile(";[^/]*")


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """What the router hands the proxy: one route's compiled settings."""

    name: str
    upstream: str
    chain: Chain | None
    timeout: float | None
    config: Route | DefaultRoute | None = None
    max_body_bytes: int = 0  # the route's own bound, else the server's; 0 = none


@dataclass(frozen=True, slots=True)
class _HeaderCond:
    name: str
    kind: str
    value: str
    pattern: re.Pattern[str] | None
    invert: bool

    def ok(self, get: HeaderGetter) -> bool:
        actual = get(self.name)
        if self.kind == "present":
            hit = actual is not None
        elif actual is None:
            hit = False
        elif self.kind == "exact":
            hit = actual == self.value
        elif self.kind == "prefix":
            hit = actual.startswith(self.value)
        else:
            assert self.pattern is not None
            hit = self.pattern.match(actual) is not None
        return hit != self.invert


@dataclass(frozen=True, slots=True)
class _QueryCond:
    name: str
    kind: str
    value: str
    pattern: re.Pattern[str] | None

    def ok(self, params: dict[str, str]) -> bool:
        actual = params.get(self.name)
        if actual is None:
            return False
        if self.kind == "present":
            return True
        if self.kind == "exact":
            return actual == self.value
        assert self.pattern is not None
        return self.pattern.match(actual) is not None


def _params(query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        out.setdefault(name, value)
    return out


@dataclass(frozen=True, slots=True)
class _Entry:
    target: RouteTarget
    methods: frozenset[str] | None
    headers: tuple[_HeaderCond, ...]
    order: int
    query: tuple[_QueryCond, ...] = ()

    @property
    def rank(self) -> tuple[int, int, int, int]:
        """Sort key: a method condition, then more header, then more query conditions."""
        return (-(self.methods is not None), -len(self.headers), -len(self.query), self.order)

    def ok(self, method: str, get: HeaderGetter, query: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if not all(h.ok(get) for h in self.headers):
            return False
        if self.query:
            params = _params(query)
            return all(q.ok(params) for q in self.query)
        return True


@dataclass(slots=True)
class _Group:
    """The routes of one host key."""

    exact: dict[str, list[_Entry]] = field(default_factory=dict)
    prefix: dict[str, list[_Entry]] = field(default_factory=dict)
    regex: list[tuple[int, re.Pattern[str], list[_Entry]]] = field(default_factory=list)

    def freeze(self) -> None:
        for table in (self.exact, self.prefix):
            for entries in table.values():
                entries.sort(key=lambda e: e.rank)
        for _, _, entries in self.regex:
            entries.sort(key=lambda e: e.rank)
        self.regex.sort(key=lambda item: -item[0])

    def candidates(self, path: str) -> Iterator[list[_Entry]]:
        """Entry lists that match ``path``, best first (see the module docstring).

        Three streams are each already in precedence order (the exact hit, prefix
        hits from the longest probe down, regex hits in their compiled order); they
        are merged by (length, kind) without sorting anything per request.
        """
        exact = self.exact.get(path)
        prefixes: list[tuple[int, list[_Entry]]] = []
        prefix = self.prefix
        if prefix:
            probe = path.rstrip("/") or "/"
            while True:
                hit = prefix.get(probe)
                if hit:
                    prefixes.append((len(probe), hit))
                if probe == "/":
                    break
                probe = probe[: probe.rfind("/")] or "/"
        if not self.regex:
            if exact:
                yield exact
            for _, entries in prefixes:
                yield entries
            return
        regexes = [(n, e) for n, pattern, e in self.regex if pattern.match(path)]
        streams = [
            [(len(path), _EXACT, exact)] if exact else [],
            [(n, _PREFIX, e) for n, e in prefixes],
            [(n, _REGEX, e) for n, e in regexes],
        ]
        heads = [0, 0, 0]
        while True:
            best = -1
            for i in range(3):
                if heads[i] < len(streams[i]) and (
                    best < 0 or streams[i][heads[i]][:2] > streams[best][heads[best]][:2]
                ):
                    best = i
            if best < 0:
                return
            yield streams[best][heads[best]][2]
            heads[best] += 1


def _header_cond(h: HeaderMatch) -> _HeaderCond:
    pattern = re.compile(h.value) if h.match == "regex" else None
    return _HeaderCond(h.name.lower(), h.match, h.value, pattern, h.invert)


def _query_cond(q: QueryMatch) -> _QueryCond:
    pattern = re.compile(q.value) if q.match == "regex" else None
    return _QueryCond(q.name, q.match, q.value, pattern)


class Router:
    """Maps (host, path, method, headers) to a :class:`RouteTarget`."""

    def __init__(self, config: GatewayConfig, chains: Mapping[str, Chain] | None = None) -> None:
        # An empty chain is stored as None: the proxy tests it without a method call.
        chains = {name: chain for name, chain in (chains or {}).items() if chain}
        self._exact_hosts: dict[str, _Group] = {}
        self._wild_hosts: dict[str, _Group] = {}
        self._suffix_hosts: dict[str, _Group] = {}
        self._any_host: _Group | None = None
        self.default: RouteTarget | None = None
        self.routes: list[RouteTarget] = []
        server_body = config.server.limits.max_body_bytes
        for order, route in enumerate(config.routes):
            target = RouteTarget(
                route.name,
                route.upstream,
                chains.get(route.name),
                route.timeout,
                route,
                server_body if route.max_body_bytes is None else route.max_body_bytes,
            )
            self.routes.append(target)
            entry = _Entry(
                target,
                frozenset(route.methods) if route.methods else None,
                tuple(_header_cond(h) for h in route.headers),
                order,
                tuple(_query_cond(q) for q in route.query),
            )
            suffix = route.host_wildcard == "suffix"
            groups = [self._group_for(h, suffix) for h in route.hosts] or [self._any_group()]
            for group in groups:
                for rule in route.paths:
                    self._add(group, rule.match, rule.path, entry)
        for group in self._all_groups():
            group.freeze()
        if config.default is not None:
            d = config.default
            chain = chains.get("default")
            body = server_body if d.max_body_bytes is None else d.max_body_bytes
            self.default = RouteTarget("default", d.upstream, chain, d.timeout, d, body)
        # The bound a body is held to before its route is known: the largest any route
        # (or the server) allows, 0 when one has none. Without per-route bounds it is
        # the server's.
        bounds = [server_body, *(t.max_body_bytes for t in self.routes)]
        if self.default is not None:
            bounds.append(self.default.max_body_bytes)
        self.max_body_bytes = 0 if 0 in bounds else max(bounds)

    def _any_group(self) -> _Group:
        if self._any_host is None:
            self._any_host = _Group()
        return self._any_host

    def _group_for(self, host: str, suffix: bool = False) -> _Group:
        if host.startswith("*."):
            wild = self._suffix_hosts if suffix else self._wild_hosts
            return wild.setdefault(host[2:], _Group())
        return self._exact_hosts.setdefault(host, _Group())

    def _all_groups(self) -> Iterator[_Group]:
        yield from self._exact_hosts.values()
        yield from self._wild_hosts.values()
        yield from self._suffix_hosts.values()
        if self._any_host is not None:
            yield self._any_host

    @staticmethod
    def _add(group: _Group, kind: str, path: str, entry: _Entry) -> None:
        if kind == "exact":
            group.exact.setdefault(path, []).append(entry)
        elif kind == "prefix":
            group.prefix.setdefault(path.rstrip("/") or "/", []).append(entry)
        else:
            pattern = re.compile(path)
            for length, existing, entries in group.regex:
                if existing.pattern == path and length == len(path):
                    entries.append(entry)
                    return
            group.regex.append((len(path), pattern, [entry]))

    def group(self, host: str) -> _Group | None:
        """The route group for a Host value (port and case ignored)."""
        if host and (self._exact_hosts or self._wild_hosts or self._suffix_hosts):
            # An IPv6 literal keeps its brackets; anything else loses its port.
            host = host[: host.find("]") + 1] if host[0] == "[" else host.partition(":")[0]
            host = host.lower().rstrip(".")
            group = self._exact_hosts.get(host)
            if group is not None:
                return group
            if self._wild_hosts:
                # The wildcard stands for one label, and a label is not empty: ".foo.com"
                # is not covered by "*.foo.com".
                label, dot, rest = host.partition(".")
                if dot and label:
                    group = self._wild_hosts.get(rest)
                    if group is not None:
                        return group
            if self._suffix_hosts:
                # Longest suffix first; the wildcard still stands for at least one label.
                label, dot, rest = host.partition(".")
                while dot and label:
                    group = self._suffix_hosts.get(rest)
                    if group is not None:
                        return group
                    label, dot, rest = rest.partition(".")
        return self._any_host

    def match(
        self, host: str, path: str, method: str, get_header: HeaderGetter, query: str = ""
    ) -> RouteTarget | None:
        """The route for a request, the default route, or None (404)."""
        if ";" in path:
            # Path parameters are not matched (``/admin;x`` matches ``/admin``): servlet
            # containers drop them, so a route guarding /admin must also take these.
            path = _PARAMS.sub("", path)
        group = self.group(host)
        if group is not None:
            for entries in group.candidates(path):
                for entry in entries:
                    if entry.ok(method, get_header, query):
                        return entry.target
        return self.default

    def table(self) -> list[dict[str, Any]]:
        """Rows describing the compiled table (``wasmgate check`` prints them)."""
        rows: list[dict[str, Any]] = []
        for target in self.routes:
            route = target.config
            assert isinstance(route, Route)
            rows.append(
                {
                    "route": route.name,
                    "hosts": route.hosts or ["*"],
                    "paths": [f"{p.match}:{p.path}" for p in route.paths],
                    "methods": route.methods or ["*"],
                    "headers": [f"{h.name} {h.match} {h.value}".strip() for h in route.headers]
                    + [f"?{q.name} {q.match} {q.value}".strip() for q in route.query],
                    "upstream": route.upstream,
                    "filters": target.chain.names() if target.chain else [],
                }
            )
        if self.default is not None:
            rows.append(
                {
                    "route": "default",
                    "hosts": ["*"],
                    "paths": ["(anything unmatched)"],
                    "methods": ["*"],
                    "headers": [],
                    "upstream": self.default.upstream,
                    "filters": self.default.chain.names() if self.default.chain else [],
                }
            )
        return rows
