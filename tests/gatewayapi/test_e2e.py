"""Gateway API manifests through the real gateway, answered over real HTTP.

The manifests under ``tests/fixtures/gateway-api/`` are read unchanged by one gateway
(module-scoped) whose ``[kubernetes]`` table names them; every backend Service is a
:class:`RecordingUpstream` named after it (mapped in ``[kubernetes.services]``), so
an answer says which Service a request reached and what reached it. The tables below
are the HTTPRoute specification's rules: matching and its precedence, hostnames and
listeners, allowedRoutes, weighted backends, ReferenceGrant, and the guides'
examples of redirects, rewrites and header modifiers.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from cryptography import x509

from tests.harness import InProcessGateway, RecordingUpstream
from tests.ingress.test_e2e import self_signed

pytestmark = pytest.mark.asyncio(loop_scope="module")

MANIFESTS = Path(__file__).parent.parent / "fixtures" / "gateway-api"
SERVICES = ("alpha", "beta", "gamma", "delta", "epsilon")
ELSEWHERE = {"other/zeta": "zeta-other", "nogrant/zeta": "zeta-nogrant", "team-blue/alpha": "alpha"}


@dataclass
class Served:
    gw: InProcessGateway
    services: dict[str, RecordingUpstream]
    http: aiohttp.ClientSession
    cert_pem: str

    @property
    def warnings(self) -> list[str]:
        return list(self.gw.config.warnings)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("gateway-api")
    names = dict.fromkeys([*SERVICES, *ELSEWHERE.values()])
    services = {name: await RecordingUpstream(name).start() for name in names}
    cert, key = self_signed("secure.test")
    (folder / "tls.crt").write_text(cert)
    (folder / "tls.key").write_text(key)
    mapping = "".join(f'"default/{n}" = ["{services[n].address}"]\n' for n in SERVICES)
    mapping += "".join(f'"{k}" = ["{services[v].address}"]\n' for k, v in ELSEWHERE.items())
    toml = (
        '[server]\nlisten = ["127.0.0.1:0"]\ntls_listen = ["127.0.0.1:0"]\naccess_log = "off"\n\n'
        f'[kubernetes]\nmanifests = ["{MANIFESTS}"]\n\n'
        f"[kubernetes.services]\n{mapping}\n"
        f'[kubernetes.tls_secrets]\n"default/secure-cert" = '
        f'{{ cert = "{folder / "tls.crt"}", key = "{folder / "tls.key"}" }}\n\n'
        '[filters.tag-extension]\nplugin = "headers"\n'
        'config.request.set = { "x-extension" = "ran" }\n'
    )
    gw = await InProcessGateway(toml).start()
    async with aiohttp.ClientSession() as http:
        yield Served(gw, services, http, cert)
    await gw.stop()
    for up in services.values():
        await up.stop()


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def echo(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.body)
        return out

    @property
    def service(self) -> str | None:
        if not self.headers.get("content-type", "").startswith("application/json"):
            return None
        return str(self.echo["upstream"])


async def send(
    s: Served,
    host: str,
    target: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> Answer:
    sent = {"Host": host, **(headers or {})}
    async with s.http.request(method, s.gw.url + target, headers=sent, allow_redirects=False) as r:
        return Answer(r.status, r.headers, await r.read())


# (host, method, target, headers, Service that answers or the status without one)
MATCHING = [
    # precedence within one route (tests/fixtures/gateway-api/10-matching.yaml)
    ("prec.test", "GET", "/", {}, "alpha", "prefix-root"),
    ("prec.test", "GET", "/anything", {}, "alpha", "prefix-root-any-path"),
    ("prec.test", "GET", "/", {"version": "two"}, "beta", "header-match-beats-plain"),
    ("prec.test", "GET", "/", {"version": "one"}, "alpha", "header-value-must-equal"),
    ("prec.test", "GET", "/v2/x", {}, "gamma", "longer-prefix"),
    ("prec.test", "GET", "/v2/x", {"version": "two"}, "gamma", "longer-prefix-beats-header"),
    ("prec.test", "GET", "/v2x", {}, "alpha", "prefix-by-element"),
    ("prec.test", "GET", "/v2/exact", {}, "delta", "exact-beats-prefix"),
    ("prec.test", "GET", "/v2/exact/", {}, "gamma", "exact-is-exact"),
    ("prec.test", "POST", "/v2/x", {}, "epsilon", "method-beats-plain"),
    ("prec.test", "POST", "/v2/exact", {}, "delta", "exact-beats-method"),
    ("prec.test", "GET", "/q?a=1&b=1&c=1", {"x-h": "1"}, "beta", "header-beats-queries"),
    ("prec.test", "GET", "/q?a=1&b=1&c=1", {}, "epsilon", "three-queries"),
    ("prec.test", "GET", "/q?a=1&b=1", {}, "alpha", "queries-all-needed"),
    ("prec.test", "GET", "/items/42", {}, "delta", "regex-path-whole"),
    ("prec.test", "GET", "/items/42/x", {}, "alpha", "regex-path-not-partial"),
    # A regex path ranks by its pattern's length (implementation-specific in the spec).
    ("prec.test", "GET", "/items/7", {"x-id": "12"}, "delta", "regex-path-ranks-by-length"),
    ("prec.test", "GET", "/items/x", {"x-id": "12"}, "beta", "regex-header"),
    ("prec.test", "GET", "/items/x", {"x-id": "12a"}, "alpha", "regex-header-whole-value"),
    ("prec.test", "GET", "/search?lang=fr", {}, "delta", "regex-query"),
    ("prec.test", "GET", "/search?lang=de", {}, "alpha", "regex-query-mismatch"),
    # across routes: the older route wins a tie
    ("tie.test", "GET", "/tie", {}, "gamma", "older-route-wins"),
    # hostnames and listeners
    ("a.wild.test", "GET", "/", {}, "alpha", "wildcard-one-label"),
    ("a.b.wild.test", "GET", "/", {}, "alpha", "wildcard-any-depth"),
    ("wild.test", "GET", "/", {}, 404, "wildcard-not-bare"),
    ("foo.listener.test", "GET", "/", {}, "beta", "listener-hostname-intersects"),
    ("elsewhere.test", "GET", "/", {}, 404, "outside-listener-hostname"),
    ("blue.test", "GET", "/", {}, "alpha", "allowed-by-namespace-selector"),
    ("red.test", "GET", "/", {}, 404, "not-allowed-from-other-namespace"),
    ("theirs.test", "GET", "/", {}, 404, "other-controllers-gateway"),
    # backends in other namespaces
    ("cross.test", "GET", "/granted", {}, "zeta-other", "reference-grant"),
    ("cross.test", "GET", "/refused", {}, 500, "no-reference-grant"),
]


@pytest.mark.parametrize(
    ("host", "method", "target", "headers", "expected"),
    [pytest.param(*row[:5], id=row[5]) for row in MATCHING],
)
async def test_matching(
    served: Served,
    host: str,
    method: str,
    target: str,
    headers: dict[str, str],
    expected: str | int,
) -> None:
    answer = await send(served, host, target, method=method, headers=headers)
    if isinstance(expected, int):
        assert (answer.status, answer.service) == (expected, None)
    else:
        assert (answer.status, answer.service) == (200, expected)


async def test_weighted_backends_share_the_traffic(served: Served) -> None:
    # alpha 1, beta 1, gamma 2, delta 0: 400 requests give about 100 / 100 / 200 / 0.
    seen: Counter[str | None] = Counter()
    for _ in range(400):
        seen[(await send(served, "split.test", "/")).service] += 1
    assert seen["delta"] == 0
    assert set(seen) == {"alpha", "beta", "gamma"}
    # Bounds a wrong split clearly violates (mean ± about 6 standard deviations).
    assert 50 <= seen["alpha"] <= 150
    assert 50 <= seen["beta"] <= 150
    assert 140 <= seen["gamma"] <= 260


# (host, target, status, Location): the Gateway API guide's redirects
REDIRECTS = [
    ("redirect.example", "/a?x=1", 301, "https://redirect.example/a?x=1", "scheme-https-301"),
    ("redirect.example:8080", "/a", 301, "https://redirect.example/a", "scheme-drops-port"),
    ("redirect.example", "/cayenne/pepper", 302, "http://redirect.example/fox", "full-path"),
    ("redirect.example", "/paprika/x?y", 302, "http://www.example.com/fox/x?y", "prefix-and-host"),
    ("redirect.example", "/paprika", 302, "http://www.example.com/fox", "prefix-alone"),
    ("secure.test", "/a", 308, "https://secure.test/a", "https-only-route-on-plain-http"),
]


@pytest.mark.parametrize(
    ("host", "target", "status", "location"),
    [pytest.param(*row[:4], id=row[4]) for row in REDIRECTS],
)
async def test_redirects(
    served: Served, host: str, target: str, status: int, location: str
) -> None:
    answer = await send(served, host, target)
    assert (answer.status, answer.headers.get("location")) == (status, location)


# (target, path upstream sees, Host upstream sees)
REWRITES = [
    ("/cardamom/x?q=1", "/fennel/x?q=1", "elsewhere.example", "prefix-and-hostname"),
    ("/cardamom", "/fennel", "elsewhere.example", "prefix-alone"),
    ("/full/a/b", "/one", "rewrite.example", "full-path"),
    ("/strip/a", "/a", "rewrite.example", "prefix-to-root"),
    ("/strip", "/", "rewrite.example", "prefix-to-root-alone"),
]


@pytest.mark.parametrize(
    ("target", "path", "host"), [pytest.param(*row[:3], id=row[3]) for row in REWRITES]
)
async def test_rewrites(served: Served, target: str, path: str, host: str) -> None:
    answer = await send(served, "rewrite.example", target)
    assert answer.service == "alpha"
    echo = answer.echo
    headers = {k.lower(): v for k, v in echo["headers"].items()}
    assert (echo["path"], headers["host"]) == (path, host)


async def test_header_modifiers_and_extension_ref(served: Served) -> None:
    answer = await send(
        served, "headers.example", "/", headers={"my-header": "foo", "x-remove": "1"}
    )
    assert answer.service == "alpha"
    got = {k.lower(): v for k, v in answer.echo["headers"].items()}
    assert got["my-header"] == "bar"
    assert got["added"] == "yes"
    assert "x-remove" not in got
    assert got["x-extension"] == "ran"  # [filters.tag-extension], by ExtensionRef
    assert answer.headers.get("X-Header-Add") == "add-value"


async def test_request_mirror_sends_a_copy(served: Served) -> None:
    answer = await send(served, "headers.example", "/mirrored?n=1", headers={"x-remove": "1"})
    assert answer.service == "alpha"
    beta = served.services["beta"]
    for _ in range(100):  # the copy is sent in the background
        copies = [r for r in beta.requests if r.path_qs == "/mirrored?n=1"]
        if copies:
            break
        await asyncio.sleep(0.02)
    assert len(copies) == 1
    # The copy carries the changes of the filters before the mirror, and no body.
    assert copies[0].headers["my-header"] == "bar"
    assert "x-remove" not in copies[0].headers
    assert copies[0].headers["host"] == "headers.example"


async def test_missing_extension_answers_500_and_warns(served: Served) -> None:
    answer = await send(served, "headers.example", "/missing-extension")
    assert (answer.status, answer.service) == (500, None)
    assert any("'not-defined'" in w for w in served.warnings)


WARNINGS = [
    ("listeners[4] (tcp): protocol TCP is not supported", "tcp-listener"),
    ("HTTPRoute team-red/red spec.parentRefs[0]: no listener", "route-not-allowed"),
    ("spec.rules[0].sessionPersistence is not supported", "unknown-field"),
    ("Service nogrant/zeta is in another namespace and no ReferenceGrant", "no-grant"),
]


@pytest.mark.parametrize("text", [pytest.param(t, id=i) for t, i in WARNINGS])
async def test_unsupported_and_refused_things_are_warnings(served: Served, text: str) -> None:
    assert any(text in w for w in served.warnings), "\n".join(served.warnings)


async def test_https_listener_serves_its_certificate_refs_secret(served: Served) -> None:
    assert [c.hosts for c in served.gw.config.certificates] == [["secure.test"]]
    gateway = served.gw.gateway
    assert gateway is not None
    port = gateway.sockets[gateway.schemes.index("https")][1]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="secure.test"
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        served_cert = x509.load_der_x509_certificate(der)
        expected = x509.load_pem_x509_certificate(served.cert_pem.encode())
        assert served_cert == expected
        writer.write(b"GET /x HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
        reply = await reader.read()
    finally:
        writer.close()
    # Over HTTPS the route is served (on plain HTTP it redirects: test_redirects).
    assert reply.startswith(b"HTTP/1.1 200") and b'"upstream":"alpha"' in reply.replace(b" ", b"")
