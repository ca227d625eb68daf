"""Ingress manifests through the real gateway, answered over real HTTP.

Each test writes Kubernetes manifests into ``tmp_path``, starts the real gateway from a
``gateway.toml`` whose ``[kubernetes]`` table names them, and sends HTTP to it over a
socket. Every backend Service is its own echo server (a :class:`RecordingUpstream`
named after the Service: it answers with its name, the path it received and the
request headers), so an answer says which Service a request reached and what reached
it. Services are found through Service and Endpoints objects in the manifests (the
path-matching tests) or through ``[kubernetes] services`` (the annotation tests).

The cases come from the Kubernetes Ingress documentation (path types and host rules,
https://kubernetes.io/docs/concepts/services-networking/ingress/#examples) and the
NGINX Ingress annotation documentation.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.config import load_config
from tests.harness import InProcessGateway, RecordingUpstream

NGINX = "nginx.ingress.kubernetes.io/"
SERVICES = ("alpha", "beta", "gamma", "delta", "fallback", "stable", "canary")
SERVICE_PORT = 80

Doc = dict[str, Any]

# ---------------------------------------------------------------------- manifests


def backend(service: str) -> Doc:
    return {"service": {"name": service, "port": {"number": SERVICE_PORT}}}


def path(value: str, service: str, kind: str = "Prefix") -> Doc:
    return {"path": value, "pathType": kind, "backend": backend(service)}


def rule(host: str | None, *paths: Doc) -> Doc:
    out: Doc = {"http": {"paths": list(paths)}}
    if host is not None:
        out["host"] = host
    return out


def ingress(
    name: str,
    *rules: Doc,
    annotations: Mapping[str, str] | None = None,
    default: str | None = None,
    tls: list[Doc] | None = None,
) -> Doc:
    """An Ingress of class nginx; annotation keys are given without the NGINX prefix."""
    spec: Doc = {"ingressClassName": "nginx"}
    if default is not None:
        spec["defaultBackend"] = backend(default)
    if tls is not None:
        spec["tls"] = tls
    if rules:
        spec["rules"] = list(rules)
    meta: Doc = {"name": name, "namespace": "default"}
    if annotations:
        meta["annotations"] = {NGINX + k: v for k, v in annotations.items()}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def site(name: str, host: str, annotations: Mapping[str, str] | None = None) -> Doc:
    """An Ingress sending every path of ``host`` to the Service alpha."""
    return ingress(name, rule(host, path("/", "alpha")), annotations=annotations)


def canary(name: str, host: str, annotations: Mapping[str, str], *paths: Doc) -> Doc:
    """A canary Ingress: ``canary: "true"`` plus ``annotations``, to the canary Service."""
    return ingress(
        name,
        rule(host, *(paths or (path("/", "canary"),))),
        annotations={"canary": "true", **annotations},
    )


def service_objects(up: RecordingUpstream) -> list[Doc]:
    """A Service (port 80, named http) and its Endpoints, pointing at ``up``."""
    meta = {"name": up.name, "namespace": "default"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": 8080}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": up.port}]}
            ],
        },
    ]


def self_signed(host: str) -> tuple[str, str]:
    """(certificate PEM, key PEM) for ``host``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


# ---------------------------------------------------------------------- the cluster


class Cluster:
    """A folder of manifests plus a gateway.toml reading them, and the gateways started."""

    def __init__(self, folder: Path, services: dict[str, RecordingUpstream]) -> None:
        self.folder = folder
        self.services = services
        self.gateways: list[InProcessGateway] = []

    def write(
        self, docs: list[Doc], *, endpoints: bool = False, server: str = "", extra: str = ""
    ) -> Path:
        """Write ``docs`` and a gateway.toml; the Services are found through Service and
        Endpoints objects written beside them (``endpoints``) or ``[kubernetes] services``."""
        manifests = self.folder / "manifests"
        manifests.mkdir(exist_ok=True)
        (manifests / "ingresses.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        mapping = ""
        if endpoints:
            objects = [o for up in self.services.values() for o in service_objects(up)]
            (manifests / "services.yaml").write_text(yaml.safe_dump_all(objects))
        else:
            mapping = "[kubernetes.services]\n" + "".join(
                f'"default/{name}" = ["{up.address}"]\n' for name, up in self.services.items()
            )
        config = self.folder / "gateway.toml"
        # Absolute paths: the in-process gateway reads this text, not the file.
        config.write_text(
            f'[server]\nlisten = ["127.0.0.1:0"]\naccess_log = "off"\n{server}\n\n'
            f'[kubernetes]\nmanifests = ["{manifests}"]\ningress_class = "nginx"\n\n'
            f"{mapping}\n{extra}"
        )
        return config

    async def serve(
        self, docs: list[Doc], *, endpoints: bool = False, server: str = "", extra: str = ""
    ) -> InProcessGateway:
        config = self.write(docs, endpoints=endpoints, server=server, extra=extra)
        gw = await InProcessGateway(config.read_text()).start()
        self.gateways.append(gw)
        return gw

    def reached(self) -> dict[str, int]:
        """Requests each Service received, for those that received any."""
        return {name: len(up.requests) for name, up in self.services.items() if up.requests}


def offline(folder: Path) -> Cluster:
    """A cluster whose Services are mapped but not started, for load-time checks."""
    return Cluster(folder, {name: RecordingUpstream(name, port=9) for name in SERVICES})


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    services = {name: await RecordingUpstream(name).start() for name in SERVICES}
    kube = Cluster(tmp_path, services)
    yield kube
    for gw in kube.gateways:
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
        """What the echo Service reported (its name, the path and headers it got)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        out: dict[str, Any] = json.loads(self.body)
        return out

    @property
    def service(self) -> str | None:
        """The Service that answered, or None for the gateway's own reply."""
        if not self.headers.get("content-type", "").startswith("application/json"):
            return None
        return str(self.echo["upstream"])

    @property
    def upstream_host(self) -> str:
        return str({k.lower(): v for k, v in self.echo["headers"].items()}["host"])


async def send(
    http: aiohttp.ClientSession,
    gw: InProcessGateway,
    target: str,
    *,
    host: str = "example.test",
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
) -> Answer:
    sent = {"Host": host, **(headers or {})}
    async with http.request(
        method, gw.url + target, headers=sent, data=data, allow_redirects=False
    ) as r:
        return Answer(r.status, r.headers, await r.read())


# ---------------------------------------------------------------------- path and host rules

# The Kubernetes documentation's table of examples, one row per case: the paths of one
# Ingress rule (type, path, Service), the request path, and the Service that answers.
# "fallback" is the defaultBackend: the request matched no path.
DOCS_TABLE = [
    pytest.param([("Prefix", "/", "alpha")], "/any/path", "alpha", id="prefix-root-all-paths"),
    pytest.param([("Exact", "/foo", "alpha")], "/foo", "alpha", id="exact-foo-matches-foo"),
    pytest.param([("Exact", "/foo", "alpha")], "/bar", "fallback", id="exact-foo-not-bar"),
    pytest.param([("Exact", "/foo", "alpha")], "/foo/", "fallback", id="exact-foo-not-foo-slash"),
    pytest.param([("Exact", "/foo/", "alpha")], "/foo", "fallback", id="exact-foo-slash-not-foo"),
    pytest.param([("Prefix", "/foo", "alpha")], "/foo", "alpha", id="prefix-foo-matches-foo"),
    pytest.param([("Prefix", "/foo", "alpha")], "/foo/", "alpha", id="prefix-foo-matches-slash"),
    pytest.param([("Prefix", "/foo", "alpha")], "/foo/bar", "alpha", id="prefix-foo-subpath"),
    pytest.param([("Prefix", "/foo", "alpha")], "/foobar", "fallback", id="prefix-foo-not-foobar"),
    pytest.param([("Prefix", "/foo/", "alpha")], "/foo", "alpha", id="prefix-foo-slash-foo"),
    pytest.param([("Prefix", "/foo/", "alpha")], "/foo/", "alpha", id="prefix-foo-slash-slash"),
    pytest.param([("Prefix", "/aaa/bb", "alpha")], "/aaa/bbb", "fallback", id="prefix-not-bb-bbb"),
    pytest.param([("Prefix", "/aaa/bbb", "alpha")], "/aaa/bbb", "alpha", id="prefix-aaa-bbb"),
    pytest.param(
        [("Prefix", "/aaa/bbb/", "alpha")], "/aaa/bbb", "alpha", id="prefix-ignores-trailing-slash"
    ),
    pytest.param(
        [("Prefix", "/aaa/bbb", "alpha")], "/aaa/bbb/", "alpha", id="prefix-matches-trailing-slash"
    ),
    pytest.param(
        [("Prefix", "/aaa/bbb", "alpha")], "/aaa/bbb/ccc", "alpha", id="prefix-matches-subpath"
    ),
    pytest.param(
        [("Prefix", "/aaa/bbb", "alpha")], "/aaa/bbbxyz", "fallback", id="prefix-not-string-prefix"
    ),
    pytest.param(
        [("Prefix", "/", "alpha"), ("Prefix", "/aaa", "beta")],
        "/aaa/ccc",
        "beta",
        id="longest-prefix-aaa",
    ),
    pytest.param(
        [("Prefix", "/", "alpha"), ("Prefix", "/aaa", "beta"), ("Prefix", "/aaa/bbb", "gamma")],
        "/aaa/bbb",
        "gamma",
        id="longest-prefix-aaa-bbb",
    ),
    pytest.param(
        [("Prefix", "/", "alpha"), ("Prefix", "/aaa", "beta"), ("Prefix", "/aaa/bbb", "gamma")],
        "/ccc",
        "alpha",
        id="root-prefix-takes-the-rest",
    ),
    pytest.param([("Prefix", "/aaa", "alpha")], "/ccc", "fallback", id="no-match-default-backend"),
    pytest.param(
        [("Prefix", "/foo", "alpha"), ("Exact", "/foo", "beta")],
        "/foo",
        "beta",
        id="exact-beats-prefix",
    ),
    pytest.param(
        [("ImplementationSpecific", "/foo", "alpha")],
        "/foo/bar",
        "alpha",
        id="impl-specific-prefix",
    ),
    pytest.param(
        [("ImplementationSpecific", "/foo", "alpha")],
        "/foobar",
        "fallback",
        id="impl-specific-not-string-prefix",
    ),
]


@pytest.mark.parametrize(("paths", "request_path", "expected"), DOCS_TABLE)
async def test_kubernetes_path_types(
    cluster: Cluster,
    http: aiohttp.ClientSession,
    paths: list[tuple[str, str, str]],
    request_path: str,
    expected: str,
) -> None:
    docs = [
        ingress("docs", rule("docs.test", *(path(p, svc, kind) for kind, p, svc in paths))),
        ingress("catch-all", default="fallback"),
    ]
    gw = await cluster.serve(docs, endpoints=True)

    answer = await send(http, gw, request_path, host="docs.test")

    assert answer.status == 200, answer
    assert answer.service == expected
    assert answer.echo["path"] == request_path  # proxied as sent
    assert cluster.reached() == {expected: 1}


# Several Ingresses adding paths to the same hosts, wildcard and exact hosts, a rule
# without host, and one Ingress holding only the defaultBackend.
MERGED = [
    site("shop-web", "shop.test"),
    ingress(
        "shop-api",
        rule("shop.test", path("/api", "beta"), path("/impl", "delta", "ImplementationSpecific")),
    ),
    ingress(
        "shop-api-v2",
        rule("shop.test", path("/api/v2", "gamma"), path("/api", "delta", "Exact")),
    ),
    site("wildcard", "*.foo.com"),
    ingress("exact-host", rule("exact.foo.com", path("/", "beta"))),
    ingress("any-host", rule(None, path("/anyhost", "gamma"))),
    ingress("catch-all", default="fallback"),
]


@pytest.mark.parametrize(
    ("host", "request_path", "expected"),
    [
        pytest.param("shop.test", "/", "alpha", id="root-prefix-of-one-ingress"),
        pytest.param("shop.test", "/api/v1/items", "beta", id="prefix-of-another-ingress"),
        pytest.param("shop.test", "/api/v2/items", "gamma", id="longest-prefix-across-ingresses"),
        pytest.param("shop.test", "/api/v2", "gamma", id="longer-prefix-itself"),
        pytest.param("shop.test", "/api/v2x", "beta", id="longer-prefix-not-string-prefix"),
        pytest.param("shop.test", "/api", "delta", id="exact-beats-prefix-across-ingresses"),
        pytest.param("shop.test", "/api/", "beta", id="exact-not-with-slash-prefix-takes-it"),
        pytest.param("shop.test", "/impl/x", "delta", id="impl-specific-as-prefix"),
        pytest.param("shop.test", "/implx", "alpha", id="impl-specific-by-element"),
        pytest.param("SHOP.test:8080", "/api/v1", "beta", id="host-case-and-port-ignored"),
        pytest.param("bar.foo.com", "/", "alpha", id="wildcard-one-label"),
        pytest.param("foo.com", "/", "fallback", id="wildcard-not-apex"),
        pytest.param("a.b.foo.com", "/", "fallback", id="wildcard-not-two-labels"),
        pytest.param("exact.foo.com", "/", "beta", id="exact-host-beats-wildcard"),
        pytest.param("foo.com", "/anyhost", "gamma", id="rule-without-host-any-host"),
        pytest.param("elsewhere.test", "/anyhost/x", "gamma", id="rule-without-host-subpath"),
        pytest.param("bar.foo.com", "/anyhost", "alpha", id="host-rule-before-hostless"),
        pytest.param("shop.test", "/anyhost", "alpha", id="host-group-no-fall-through"),
        pytest.param("elsewhere.test", "/nothing", "fallback", id="unmatched-default-backend"),
    ],
)
async def test_ingresses_merge_by_host_and_path(
    cluster: Cluster, http: aiohttp.ClientSession, host: str, request_path: str, expected: str
) -> None:
    gw = await cluster.serve(MERGED, endpoints=True)

    answer = await send(http, gw, request_path, host=host)

    assert answer.status == 200, answer
    assert answer.service == expected
    assert answer.echo["path"] == request_path
    assert answer.upstream_host == host  # the client's Host is kept
    assert cluster.reached() == {expected: 1}


@pytest.mark.parametrize(
    ("host", "request_path"),
    [
        pytest.param("a.test", "/other", id="host-matched-path-not"),
        pytest.param("b.test", "/only", id="host-not-matched"),
    ],
)
async def test_without_default_backend_unmatched_is_404(
    cluster: Cluster, http: aiohttp.ClientSession, host: str, request_path: str
) -> None:
    gw = await cluster.serve(
        [ingress("only", rule("a.test", path("/only", "alpha", "Exact")))], endpoints=True
    )

    answer = await send(http, gw, request_path, host=host)

    assert answer.status == 404
    assert cluster.reached() == {}
    assert (await send(http, gw, "/only", host="a.test")).service == "alpha"


# ---------------------------------------------------------------------- canary

# One host per canary: mainline Ingress "main-N" to stable, canary Ingress "canary-N"
# to canary with these annotations.
CANARIES = {
    "header.test": {"canary-by-header": "x-canary"},
    "value.test": {"canary-by-header": "x-canary", "canary-by-header-value": "gray"},
    "pattern.test": {"canary-by-header": "x-canary", "canary-by-header-pattern": "^(gray|green)$"},
    "cookie.test": {"canary-by-cookie": "use_canary"},
    "weight-0.test": {"canary-weight": "0"},
    "weight-100.test": {"canary-weight": "100"},
    "weight-total.test": {"canary-weight": "10", "canary-weight-total": "10"},
    "all-three.test": {
        "canary-by-header": "x-canary",
        "canary-by-cookie": "use_canary",
        "canary-weight": "0",
    },
    "cookie-weight.test": {"canary-by-cookie": "use_canary", "canary-weight": "100"},
}


def canary_docs() -> list[Doc]:
    docs = []
    for n, (host, wanted) in enumerate(CANARIES.items()):
        docs.append(ingress(f"main-{n}", rule(host, path("/", "stable"))))
        docs.append(canary(f"canary-{n}", host, wanted))
    return docs


ALWAYS = {"x-canary": "always"}
NEVER = {"x-canary": "never"}


@pytest.mark.parametrize(
    ("host", "headers", "expected"),
    [
        pytest.param("header.test", ALWAYS, "canary", id="header-always"),
        pytest.param("header.test", NEVER, "stable", id="header-never"),
        pytest.param("header.test", {"x-canary": "yes"}, "stable", id="header-other-value"),
        pytest.param("header.test", {}, "stable", id="header-absent"),
        pytest.param("value.test", {"x-canary": "gray"}, "canary", id="header-value-match"),
        pytest.param("value.test", {"x-canary": "blue"}, "stable", id="header-value-mismatch"),
        pytest.param("value.test", ALWAYS, "stable", id="header-value-always-not-special"),
        pytest.param("pattern.test", {"x-canary": "green"}, "canary", id="header-pattern-match"),
        pytest.param("pattern.test", {"x-canary": "grayish"}, "stable", id="header-pattern-no"),
        pytest.param("cookie.test", {"cookie": "use_canary=always"}, "canary", id="cookie-always"),
        pytest.param("cookie.test", {"cookie": "use_canary=never"}, "stable", id="cookie-never"),
        pytest.param("cookie.test", {"cookie": "use_canary=yes"}, "stable", id="cookie-other"),
        pytest.param("weight-0.test", {}, "stable", id="weight-0"),
        pytest.param("weight-100.test", {}, "canary", id="weight-100"),
        pytest.param("weight-total.test", {}, "canary", id="weight-10-of-total-10"),
        pytest.param(
            "all-three.test",
            {**NEVER, "cookie": "use_canary=always"},
            "stable",
            id="header-never-beats-cookie-always",
        ),
        pytest.param(
            "all-three.test",
            {"x-canary": "other", "cookie": "use_canary=always"},
            "canary",
            id="header-other-falls-to-cookie",
        ),
        pytest.param("all-three.test", ALWAYS, "canary", id="header-always-beats-weight-0"),
        pytest.param(
            "all-three.test",
            {"cookie": "use_canary=always"},
            "canary",
            id="cookie-always-beats-weight-0",
        ),
        pytest.param(
            "cookie-weight.test",
            {"cookie": "use_canary=never"},
            "stable",
            id="cookie-never-beats-weight-100",
        ),
    ],
)
async def test_canary_annotations(
    cluster: Cluster,
    http: aiohttp.ClientSession,
    host: str,
    headers: dict[str, str],
    expected: str,
) -> None:
    gw = await cluster.serve(canary_docs())

    # Several requests: a weight that was misread would not send all of them one way.
    answers = [await send(http, gw, "/version", host=host, headers=headers) for _ in range(10)]

    assert {(a.status, a.service) for a in answers} == {(200, expected)}
    assert {a.echo["path"] for a in answers} == {"/version"}
    assert cluster.reached() == {expected: 10}


async def test_canary_without_mainline_serves_nothing_and_is_warned(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    docs = [
        ingress("main", rule("main.test", path("/", "stable"))),
        canary("orphan", "orphan.test", {"canary-weight": "100"}),
        canary("wrong-path", "main.test", {"canary-weight": "100"}, path("/other", "canary")),
    ]
    gw = await cluster.serve(docs)

    assert (await send(http, gw, "/", host="orphan.test")).status == 404
    assert (await send(http, gw, "/other", host="main.test")).service == "stable"
    assert cluster.reached() == {"stable": 1}
    warnings = "\n".join(gw.config.warnings)
    assert "Ingress default/orphan" in warnings
    assert "no mainline Ingress serves host orphan.test path / (Prefix)" in warnings
    assert "no mainline Ingress serves host main.test path /other (Prefix)" in warnings


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(ALWAYS, "canary", id="canary-traffic"),
        pytest.param({}, "stable", id="mainline-traffic"),
    ],
)
async def test_canary_takes_the_mainlines_annotations_and_ignores_its_own(
    cluster: Cluster, http: aiohttp.ClientSession, headers: dict[str, str], expected: str
) -> None:
    regex = "/app(/|$)(.*)"
    docs = [
        ingress(
            "main",
            rule("app.test", path(regex, "stable", "ImplementationSpecific")),
            annotations={"rewrite-target": "/$2", "upstream-vhost": "internal.svc"},
        ),
        canary(
            "canary",
            "app.test",
            {
                "canary-by-header": "x-canary",
                "rewrite-target": "/ignored",
                "whitelist-source-range": "10.0.0.0/8",  # would refuse us if applied
            },
            path(regex, "canary", "ImplementationSpecific"),
        ),
    ]
    gw = await cluster.serve(docs)

    answer = await send(http, gw, "/app/x?q=1", host="app.test", headers=headers)

    assert answer.status == 200, answer
    assert answer.service == expected
    assert answer.echo["path"] == "/x?q=1"  # the mainline's rewrite-target
    assert answer.upstream_host == "internal.svc"  # the mainline's upstream-vhost
    ignored = [w for w in gw.config.warnings if "canary Ingress takes these" in w]
    assert len(ignored) == 1
    assert "Ingress default/canary" in ignored[0]
    assert NGINX + "rewrite-target" in ignored[0]
    assert NGINX + "whitelist-source-range" in ignored[0]


# ---------------------------------------------------------------------- rewriting


@pytest.mark.parametrize(
    ("request_path", "expected"),
    [
        pytest.param("/something", "/", id="bare"),
        pytest.param("/something/", "/", id="slash"),
        pytest.param("/something/new", "/new", id="subpath"),
        pytest.param("/something/new/deeper", "/new/deeper", id="deeper"),
        pytest.param("/something/new?page=2", "/new?page=2", id="query-kept"),
        pytest.param("/SOMETHING/New", "/New", id="case-insensitive"),
        pytest.param("/somethingelse", None, id="no-match-404"),
    ],
)
async def test_rewrite_target_with_capture_groups(
    cluster: Cluster, http: aiohttp.ClientSession, request_path: str, expected: str | None
) -> None:
    # The NGINX Ingress documentation's rewrite example.
    docs = [
        ingress(
            "rewrite",
            rule("rewrite.bar.com", path("/something(/|$)(.*)", "alpha", "ImplementationSpecific")),
            annotations={"use-regex": "true", "rewrite-target": "/$2"},
        )
    ]
    gw = await cluster.serve(docs)

    answer = await send(http, gw, request_path, host="rewrite.bar.com")

    if expected is None:
        assert answer.status == 404
        assert cluster.reached() == {}
    else:
        assert answer.status == 200, answer
        assert answer.service == "alpha"
        assert answer.echo["path"] == expected


@pytest.mark.parametrize(
    ("request_path", "status", "location"),
    [
        # As NGINX Ingress: "return 302 $scheme://$http_host/app", so absolute, no query.
        pytest.param("/", 302, "http://approot.test/app", id="root-redirected"),
        pytest.param("/?x=1", 302, "http://approot.test/app", id="root-query-dropped"),
        pytest.param("/app", 200, None, id="app-passes"),
        pytest.param("/other", 200, None, id="other-passes"),
    ],
)
async def test_app_root(
    cluster: Cluster,
    http: aiohttp.ClientSession,
    request_path: str,
    status: int,
    location: str | None,
) -> None:
    docs = [site("web", "approot.test", {"app-root": "/app"})]
    gw = await cluster.serve(docs)

    answer = await send(http, gw, request_path, host="approot.test")

    assert answer.status == status
    assert answer.headers.get("location") == location
    if status == 200:
        assert answer.echo["path"] == request_path
    assert cluster.reached() == ({"alpha": 1} if status == 200 else {})


@pytest.mark.parametrize(
    ("annotations", "status"),
    [
        pytest.param({"permanent-redirect": "https://new.example/"}, 301, id="permanent-301"),
        pytest.param(
            {"permanent-redirect": "https://new.example/", "permanent-redirect-code": "308"},
            308,
            id="permanent-code-308",
        ),
        pytest.param({"temporal-redirect": "https://new.example/"}, 302, id="temporal-302"),
        pytest.param(
            {"temporal-redirect": "https://new.example/", "temporal-redirect-code": "307"},
            307,
            id="temporal-code-307",
        ),
    ],
)
async def test_redirect_annotations(
    cluster: Cluster, http: aiohttp.ClientSession, annotations: dict[str, str], status: int
) -> None:
    docs = [site("moved", "old.test", annotations)]
    gw = await cluster.serve(docs)

    answer = await send(http, gw, "/some/page?x=1", host="old.test")

    assert answer.status == status
    assert answer.headers["location"] == "https://new.example/"
    assert cluster.reached() == {}


# ---------------------------------------------------------------------- HTTPS redirect


@pytest.mark.parametrize(
    ("host", "target", "location"),
    [
        pytest.param("secure.test", "/a?x=1", "https://secure.test/a?x=1", id="tls-secret-files"),
        pytest.param("secret.test:8080", "/a", "https://secret.test/a", id="tls-secret-object"),
        pytest.param("opt-out.test", "/a", None, id="ssl-redirect-false"),
        pytest.param("forced.test", "/a", "https://forced.test/a", id="force-ssl-redirect"),
        pytest.param("plain.test", "/a", None, id="host-not-in-tls"),
        pytest.param(
            "secure.test", "/api/x", "https://secure.test/api/x", id="tls-host-other-ingress"
        ),
        pytest.param("secure.test", "/public", None, id="tls-host-other-ingress-opt-out"),
    ],
)
async def test_ssl_redirect(
    cluster: Cluster,
    http: aiohttp.ClientSession,
    host: str,
    target: str,
    location: str | None,
) -> None:
    cert, key = self_signed("secure.test")
    (cluster.folder / "tls.crt").write_text(cert)
    (cluster.folder / "tls.key").write_text(key)
    secret_cert, secret_key = self_signed("secret.test")
    docs = [
        ingress(
            "secure",
            rule("secure.test", path("/", "alpha")),
            rule("plain.test", path("/", "alpha")),
            tls=[{"hosts": ["secure.test"], "secretName": "secure-tls"}],
        ),
        # Paths added to secure.test by Ingresses without a tls section of their own:
        # NGINX Ingress redirects per host, whichever Ingress names its TLS.
        ingress("secure-api", rule("secure.test", path("/api", "alpha"))),
        ingress(
            "secure-public",
            rule("secure.test", path("/public", "alpha")),
            annotations={"ssl-redirect": "false"},
        ),
        ingress(
            "secret",
            rule("secret.test", path("/", "alpha")),
            tls=[{"hosts": ["secret.test"], "secretName": "secret-tls"}],
        ),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "secret-tls", "namespace": "default"},
            "data": {
                "tls.crt": base64.b64encode(secret_cert.encode()).decode(),
                "tls.key": base64.b64encode(secret_key.encode()).decode(),
            },
        },
        ingress(
            "opt-out",
            rule("opt-out.test", path("/", "alpha")),
            tls=[{"hosts": ["opt-out.test"], "secretName": "secure-tls"}],
            annotations={"ssl-redirect": "false"},
        ),
        site("forced", "forced.test", {"force-ssl-redirect": "true"}),
    ]
    files = f'{{ cert = "{cluster.folder}/tls.crt", key = "{cluster.folder}/tls.key" }}'
    gw = await cluster.serve(
        docs, extra=f'[kubernetes.tls_secrets]\n"default/secure-tls" = {files}'
    )

    answer = await send(http, gw, target, host=host)

    if location is None:
        assert answer.status == 200, answer
        assert answer.service == "alpha"
    else:
        assert answer.status == 308
        assert answer.headers["location"] == location
        assert cluster.reached() == {}
    certificates = {tuple(c.hosts): c for c in gw.config.certificates}
    assert certificates[("secure.test",)].cert == str(cluster.folder / "tls.crt")
    assert certificates[("secret.test",)].cert_pem == secret_cert
    assert certificates[("secret.test",)].secret == "default/secret-tls"


# ---------------------------------------------------------------------- CORS

ORIGIN = "https://app.example"
PREFLIGHT = {"origin": ORIGIN, "access-control-request-method": "PUT"}


async def test_enable_cors_with_nginx_defaults(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    docs = [site("api", "cors.test", {"enable-cors": "true"})]
    gw = await cluster.serve(docs)

    pre = await send(
        http,
        gw,
        "/items",
        host="cors.test",
        method="OPTIONS",
        headers={**PREFLIGHT, "access-control-request-headers": "Authorization, Content-Type"},
    )
    assert pre.status == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-allow-methods"] == "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    # NGINX Ingress's list, not the requested headers reflected.
    assert pre.headers["access-control-allow-headers"] == (
        "DNT, Keep-Alive, User-Agent, X-Requested-With, If-Modified-Since, Cache-Control, "
        "Content-Type, Range, Authorization"
    )
    assert pre.headers["access-control-max-age"] == "1728000"
    # '*' never goes with credentials, though NGINX Ingress would allow them.
    assert "access-control-allow-credentials" not in pre.headers
    assert cluster.reached() == {}

    actual = await send(http, gw, "/items", host="cors.test", headers={"origin": ORIGIN})
    assert actual.service == "alpha"
    assert actual.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in actual.headers
    assert any("cors-allow-origin is '*' with credentials" in w for w in gw.config.warnings)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        pytest.param(ORIGIN, True, id="listed-origin"),
        pytest.param("https://admin.example", True, id="second-listed-origin"),
        pytest.param("https://evil.example", False, id="unlisted-origin"),
    ],
)
async def test_cors_with_listed_origins_and_credentials(
    cluster: Cluster, http: aiohttp.ClientSession, origin: str, allowed: bool
) -> None:
    annotations = {
        "enable-cors": "true",
        "cors-allow-origin": f"{ORIGIN}, https://admin.example",
        "cors-allow-credentials": "true",
        "cors-allow-methods": "GET, POST",
        "cors-expose-headers": "X-Request-Id, X-Total",
        "cors-max-age": "600",
    }
    docs = [site("api", "cors.test", annotations)]
    gw = await cluster.serve(docs)

    actual = await send(http, gw, "/items", host="cors.test", headers={"origin": origin})
    assert actual.service == "alpha"
    if allowed:
        assert actual.headers["access-control-allow-origin"] == origin
        assert actual.headers["access-control-allow-credentials"] == "true"
        assert actual.headers["access-control-expose-headers"] == "X-Request-Id, X-Total"
    else:
        assert "access-control-allow-origin" not in actual.headers
        assert "access-control-allow-credentials" not in actual.headers

    preflight = {"origin": origin, "access-control-request-method": "POST"}
    pre = await send(http, gw, "/items", host="cors.test", method="OPTIONS", headers=preflight)
    if allowed:
        assert pre.status == 204
        assert pre.headers["access-control-allow-origin"] == origin
        assert pre.headers["access-control-allow-credentials"] == "true"
        assert pre.headers["access-control-allow-methods"] == "GET, POST"
        assert pre.headers["access-control-max-age"] == "600"
    else:  # as NGINX Ingress: 204 without CORS headers; the browser blocks the request
        assert pre.status == 204
        assert "access-control-allow-origin" not in pre.headers
    put = {"origin": origin, "access-control-request-method": "PUT"}
    refused = await send(http, gw, "/", host="cors.test", method="OPTIONS", headers=put)
    assert refused.status == 204
    assert not any(h.lower().startswith("access-control-") for h in refused.headers)
    assert cluster.reached() == {"alpha": 1}


# ---------------------------------------------------------------------- source ranges


@pytest.mark.parametrize(
    ("annotations", "status"),
    [
        pytest.param({"whitelist-source-range": "127.0.0.1/32"}, 200, id="whitelist-us"),
        pytest.param({"whitelist-source-range": "10.0.0.0/8"}, 403, id="whitelist-others"),
        pytest.param(
            {"whitelist-source-range": "10.0.0.0/8, 127.0.0.0/8"}, 200, id="whitelist-list"
        ),
        pytest.param({"allowlist-source-range": "10.0.0.0/8"}, 403, id="allowlist-others"),
        pytest.param({"denylist-source-range": "127.0.0.1"}, 403, id="denylist-us"),
        pytest.param({"denylist-source-range": "10.0.0.0/8"}, 200, id="denylist-others"),
        pytest.param(
            {"whitelist-source-range": "127.0.0.0/8", "denylist-source-range": "127.0.0.1/32"},
            403,
            id="deny-beats-allow",
        ),
    ],
)
async def test_source_ranges(
    cluster: Cluster, http: aiohttp.ClientSession, annotations: dict[str, str], status: int
) -> None:
    docs = [site("guarded", "guarded.test", annotations)]
    gw = await cluster.serve(docs)

    answer = await send(http, gw, "/", host="guarded.test")

    assert answer.status == status
    assert cluster.reached() == ({"alpha": 1} if status == 200 else {})


# ---------------------------------------------------------------------- upstream settings


async def test_upstream_vhost(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    docs = [
        site("vhost", "public.test", {"upstream-vhost": "internal.svc.cluster.local"}),
        site("plain", "plain.test"),
    ]
    gw = await cluster.serve(docs)

    assert (await send(http, gw, "/", host="public.test")).upstream_host == (
        "internal.svc.cluster.local"
    )
    assert (await send(http, gw, "/", host="plain.test")).upstream_host == "plain.test"


@pytest.mark.parametrize(
    ("host", "size", "status"),
    [
        pytest.param("small.test", 1024, 200, id="1k-at-limit"),
        pytest.param("small.test", 1025, 413, id="1k-over"),
        pytest.param("unbounded.test", 20_000, 200, id="0-unbounded-over-server-limit"),
        pytest.param("plain.test", 1 << 20, 200, id="none-nginx-default-1m-at"),
        pytest.param("plain.test", (1 << 20) + 1, 413, id="none-nginx-default-1m-over"),
    ],
)
async def test_proxy_body_size(
    cluster: Cluster, http: aiohttp.ClientSession, host: str, size: int, status: int
) -> None:
    docs = [
        site("small", "small.test", {"proxy-body-size": "1k"}),
        site("unbounded", "unbounded.test", {"proxy-body-size": "0"}),
        site("plain", "plain.test"),
    ]
    gw = await cluster.serve(docs, server="[server.limits]\nmax_body_bytes = 4096")

    answer = await send(http, gw, "/upload", host=host, method="POST", data=b"x" * size)

    assert answer.status == status
    if status == 200:
        assert answer.echo == {"received": size, "upstream": "alpha"}
    else:
        assert cluster.reached() == {}


async def test_proxy_timeouts(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    docs = [site("slow", "slow.test", {"proxy-read-timeout": "1", "proxy-connect-timeout": "3"})]
    gw = await cluster.serve(docs)
    (upstream,) = gw.config.upstreams
    assert (upstream.read_timeout, upstream.connect_timeout) == (1.0, 3.0)

    assert (await send(http, gw, "/delay/0.1", host="slow.test")).status == 200
    # The echo would answer after 1.5 s, past the 1 s read timeout.
    answer = await send(http, gw, "/delay/1.5", host="slow.test")
    assert answer.status == 504


@pytest.mark.parametrize(
    ("annotations", "tls", "verify"),
    [
        pytest.param({"backend-protocol": "HTTPS"}, True, True, id="https"),
        pytest.param({"backend-protocol": "https"}, True, True, id="https-any-case"),
        pytest.param(
            {"backend-protocol": "HTTPS", "proxy-ssl-verify": "false"}, True, False, id="no-verify"
        ),
        pytest.param({"backend-protocol": "HTTP"}, False, True, id="http"),
    ],
)
def test_backend_protocol(
    tmp_path: Path, annotations: dict[str, str], tls: bool, verify: bool
) -> None:
    # Only the generated upstream: talking TLS to it is tested in test_upstream_tls.py.
    kube = offline(tmp_path)
    config = kube.write([site("tls", "tls.test", annotations)])

    (upstream,) = load_config(config).upstreams

    assert (upstream.tls, upstream.tls_verify) == (tls, verify)


# ---------------------------------------------------------------------- load-time checks


def test_unsupported_annotations_are_listed_in_a_warning(tmp_path: Path) -> None:
    kube = offline(tmp_path)
    annotations = {
        "configuration-snippet": "more_set_headers 'X: 1';",
        "proxy-buffering": "on",
        "auth-url": "http://auth.test/check",
        "enable-cors": "true",  # supported: not listed
    }
    docs = [
        site("legacy", "legacy.test", annotations),
        site("tidy", "tidy.test", {"app-root": "/app"}),
    ]
    config = kube.write(docs)

    warnings = [w for w in load_config(config).warnings if "unsupported annotations" in w]

    assert len(warnings) == 1
    assert "Ingress default/legacy" in warnings[0]
    listed = warnings[0].split("not applied: ", 1)[1].split(", ")
    assert listed == [
        NGINX + "auth-url",
        NGINX + "configuration-snippet",
        NGINX + "proxy-buffering",
    ]
    # An unsupported backend protocol is said too: the backend is spoken to over HTTP.
    docs = [site("fcgi", "f.test", {"backend-protocol": "FCGI"})]
    assert any("backend-protocol 'FCGI'" in w for w in load_config(kube.write(docs)).warnings)


@pytest.mark.parametrize(
    ("annotations", "key", "instead"),
    [
        pytest.param(
            {"canary": "true", "canary-weight": "abc"}, "canary-weight", "0 is used", id="weight"
        ),
        pytest.param(
            {"canary": "true", "canary-weight": "50", "canary-weight-total": "-1"},
            "canary-weight-total",
            "100, is used",
            id="weight-total",
        ),
        pytest.param(
            {"canary": "true", "canary-weight": "200"},
            "canary-weight",
            "the canary gets every request",
            id="weight-over-total",
        ),
        pytest.param(
            {"canary": "true", "canary-by-header": "x", "canary-by-header-pattern": "("},
            "canary-by-header-pattern",
            "go to the mainline",
            id="bad-pattern",
        ),
        pytest.param({"proxy-body-size": "lots"}, "proxy-body-size", "1m, applies", id="body-size"),
        pytest.param(
            {"proxy-read-timeout": "soon"}, "proxy-read-timeout", "default timeout", id="read"
        ),
        pytest.param(
            {"proxy-connect-timeout": "0"}, "proxy-connect-timeout", "default timeout", id="conn-0"
        ),
        pytest.param(
            {"ssl-redirect": "yes"}, "ssl-redirect", "its default, true, applies", id="boolean"
        ),
        pytest.param(
            {"permanent-redirect": "https://x.test", "permanent-redirect-code": "200"},
            "permanent-redirect-code",
            "301 is used",
            id="redirect-code",
        ),
        pytest.param(
            {"whitelist-source-range": "10.0.0.0/8, office"},
            "whitelist-source-range",
            "refused (503)",
            id="cidr",
        ),
        pytest.param({"app-root": "app"}, "app-root", "ignored", id="app-root-relative"),
        pytest.param(
            {"enable-cors": "true", "cors-allow-origin": "app.example"},
            "cors-allow-origin",
            "left out",
            id="cors-origin",
        ),
    ],
)
def test_a_bad_annotation_value_falls_back_naming_ingress_and_annotation(
    tmp_path: Path, annotations: dict[str, str], key: str, instead: str
) -> None:
    kube = offline(tmp_path)
    if annotations.get("canary") == "true":
        docs = [
            site("main", "bad.test"),
            canary("bad", "bad.test", annotations),
        ]
    else:
        docs = [site("bad", "bad.test", annotations)]
    config = kube.write(docs)

    cfg = load_config(config)  # never refused

    (warning,) = [w for w in cfg.warnings if f"annotation {NGINX}{key}:" in w]
    assert warning.startswith("Ingress default/bad (")
    assert "ingresses.yaml" in warning
    assert instead in warning
    assert len(cfg.routes) == 1
