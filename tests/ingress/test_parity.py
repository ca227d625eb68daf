"""Answers as NGINX Ingress gives them (issue 17, item 3), over one real gateway.

Unchanged manifests, one ``wasmgate run`` serving them all, one request per case:
CORS preflights get NGINX Ingress's default Access-Control-Allow-Headers list and a
refused one an empty 204; a blank ``cors-allow-origin`` means ``*`` (never with
credentials); ``app-root`` answers with an absolute Location and no query; one
Ingress's ``use-regex`` makes every path of its host a regex; a ``*.domain`` TLS
entry redirects its subdomains to HTTPS; an Ingress's own defaultBackend answers the
unrouted paths of its hosts.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import yaml

from plugin_sdk.testing import GatewayProcess, free_port
from tests.ingress.test_e2e import self_signed
from tests.ingress.test_isolation import Doc, Served, _backend, ingress, request, service_of

NGINX_ALLOW_HEADERS = (
    "DNT, Keep-Alive, User-Agent, X-Requested-With, If-Modified-Since, Cache-Control, "
    "Content-Type, Range, Authorization"
)


def with_default(doc: Doc, service: str, created: str) -> Doc:
    doc["spec"]["defaultBackend"] = {"service": {"name": service, "port": {"number": 80}}}
    doc["metadata"]["creationTimestamp"] = created
    return doc


def manifests() -> list[Doc]:
    cert, key = self_signed("*.wild.test")
    global_default = with_default(ingress("global", "unused.test"), "alpha", "2020-01-01T00:00:00Z")
    del global_default["spec"]["rules"]
    return [
        ingress("cors", "cors.test", annotations={"enable-cors": "true"}),
        ingress(
            "cors-blank", "blank.test", annotations={"enable-cors": "true", "cors-allow-origin": ""}
        ),
        ingress(
            "cors-listed",
            "listed.test",
            annotations={"enable-cors": "true", "cors-allow-origin": "https://app.example"},
        ),
        ingress("app-root", "approot.test", annotations={"app-root": "/app"}),
        ingress(
            "regex-api",
            "re.test",
            path="/api/v[0-9]+",
            path_type="ImplementationSpecific",
            annotations={"use-regex": "true"},
        ),
        # No annotation of its own: NGINX reads its path as a regex all the same.
        ingress(
            "regex-static",
            "re.test",
            service="canary",
            path="/static/.+[.]css",
            path_type="ImplementationSpecific",
        ),
        ingress(
            "wild",
            "a.wild.test",
            tls=[{"hosts": ["*.wild.test"], "secretName": "wild-tls"}],
        ),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "wild-tls", "namespace": "default"},
            "data": {
                "tls.crt": base64.b64encode(cert.encode()).decode(),
                "tls.key": base64.b64encode(key.encode()).decode(),
            },
        },
        global_default,
        with_default(ingress("own", "own.test", path="/api"), "canary", "2021-01-01T00:00:00Z"),
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    backends = {name: _backend(name) for name in ("alpha", "canary")}
    folder = tmp_path_factory.mktemp("parity")
    (folder / "manifests").mkdir()
    (folder / "manifests" / "apps.yaml").write_text(yaml.safe_dump_all(manifests()))
    port, admin = free_port(), free_port()
    mapping = "".join(
        f'"default/{name}" = ["127.0.0.1:{b.server_address[1]}"]\n' for name, b in backends.items()
    )
    toml = (
        f'[server]\nlisten = ["127.0.0.1:{port}"]\naccess_log = "off"\n\n'
        f'[kubernetes]\nmanifests = ["manifests"]\ningress_class = "nginx"\n\n'
        f"[kubernetes.services]\n{mapping}"
    )
    gw = GatewayProcess(toml, workdir=str(folder)).start(port)
    try:
        yield Served(gw, admin, folder, gw.config_path)
    finally:
        gw.terminate()
        for b in backends.values():
            b.shutdown()


ORIGIN = "https://app.example"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}

# (host, path, request headers, status, expected response headers (None: absent),
#  the Service that answers (None: the gateway itself))
CASES = [
    pytest.param(
        "cors.test",
        "/items",
        {**PREFLIGHT, "Access-Control-Request-Headers": "Authorization"},
        204,
        {"access-control-allow-headers": NGINX_ALLOW_HEADERS, "access-control-allow-origin": "*"},
        None,
        id="cors-default-allow-headers-list",
    ),
    pytest.param(
        "blank.test",
        "/items",
        {"Origin": ORIGIN},
        200,
        {"access-control-allow-origin": "*", "access-control-allow-credentials": None},
        "alpha",
        id="cors-blank-origin-is-star-without-credentials",
    ),
    pytest.param(
        "listed.test",
        "/items",
        {**PREFLIGHT, "Origin": "https://evil.example"},
        204,
        {"access-control-allow-origin": None, "access-control-allow-methods": None},
        None,
        id="cors-refused-preflight-empty-204",
    ),
    pytest.param(
        "approot.test",
        "/?x=1",
        {},
        302,
        {"location": "http://approot.test/app"},
        None,
        id="app-root-absolute-location",
    ),
    pytest.param("re.test", "/api/v2/users", {}, 200, {}, "alpha", id="use-regex-own-path"),
    pytest.param("re.test", "/static/site.css", {}, 200, {}, "canary", id="use-regex-whole-host"),
    pytest.param(
        "a.wild.test",
        "/x",
        {},
        308,
        {"location": "https://a.wild.test/x"},
        None,
        id="wildcard-tls-host-redirects",
    ),
    pytest.param("own.test", "/api", {}, 200, {}, "alpha", id="own-host-routed-path"),
    pytest.param(
        "own.test", "/other", {}, 200, {}, "canary", id="own-host-unrouted-to-own-default"
    ),
    pytest.param("else.test", "/x", {}, 200, {}, "alpha", id="other-host-global-default"),
]


@pytest.mark.parametrize(("host", "path", "headers", "status", "expect", "service"), CASES)
def test_answers_as_nginx_ingress(
    served: Served,
    host: str,
    path: str,
    headers: dict[str, str],
    status: int,
    expect: dict[str, str | None],
    service: str | None,
) -> None:
    method = "OPTIONS" if "Access-Control-Request-Method" in headers else "GET"
    got, answer, body = request(served, host, path, headers=headers, method=method)

    assert got == status, (answer, body)
    for name, value in expect.items():
        assert answer.get(name) == value, (name, answer)
    assert service_of(body, answer) == service


def test_a_blank_origin_with_credentials_is_warned(served: Served) -> None:
    # NGINX Ingress would allow credentials from '*'; wasmgate never does, and says so.
    log = served.gateway.log()
    assert "Ingress default/cors-blank" in log
    assert "cors-allow-origin is '*' with credentials allowed" in log
