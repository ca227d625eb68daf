"""One Ingress that cannot be used never takes the gateway down (issue 17, item 1).

A folder of unchanged manifests holds good Ingresses beside broken ones: a bad
annotation value (which falls back to NGINX Ingress's default), a backend Service that
does not exist (503, as NGINX Ingress answers), two Ingresses claiming one host and
path (the older keeps it), a regular expression that does not compile and a malformed
object (both skipped). One real ``wasmgate run`` serves them all; the table sends a
request per case over a socket and reads the warnings the admin API's ``GET /config``
lists. ``wasmgate check`` and ``wasmgate ingress import`` run as real subprocesses and
print the same warnings; a reload that brings a new broken Ingress keeps serving.
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from plugin_sdk.testing import GatewayProcess, free_port
from tests.ingress.test_e2e import self_signed

NGINX = "nginx.ingress.kubernetes.io/"
TOKEN = "isolation-test-token-0123456789"

Doc = dict[str, Any]


def ingress(
    name: str,
    host: str,
    *,
    service: str = "alpha",
    path: str = "/",
    path_type: str = "Prefix",
    annotations: dict[str, str] | None = None,
    created: str | None = None,
    tls: list[Doc] | None = None,
) -> Doc:
    meta: Doc = {"name": name, "namespace": "default"}
    if annotations:
        meta["annotations"] = {NGINX + k: v for k, v in annotations.items()}
    if created:
        meta["creationTimestamp"] = created
    spec: Doc = {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": path,
                            "pathType": path_type,
                            "backend": {"service": {"name": service, "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ],
    }
    if tls is not None:
        spec["tls"] = tls
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def tls_secret(name: str, host: str | None) -> Doc:
    """A kubernetes.io/tls Secret: a self-signed pair for ``host``, or (None) garbage."""
    cert, key = self_signed(host) if host else ("not a certificate", "not a key")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default"},
        "data": {
            "tls.crt": base64.b64encode(cert.encode()).decode(),
            "tls.key": base64.b64encode(key.encode()).decode(),
        },
    }


MANIFESTS: list[Doc] = [
    ingress("good", "good.test"),
    ingress(
        "redirect-310",
        "r310.test",
        annotations={
            "permanent-redirect": "https://new.example/",
            "permanent-redirect-code": "310",
        },
    ),
    ingress("main", "canary.test"),
    ingress(
        "canary-bad-pattern",
        "canary.test",
        service="canary",
        annotations={
            "canary": "true",
            "canary-by-header": "x-canary",
            "canary-by-header-pattern": "(",
        },
    ),
    ingress("bad-cidr", "cidr.test", annotations={"whitelist-source-range": "10.0.0.0/8, office"}),
    ingress("missing-service", "missing.test", service="nope"),
    ingress("older", "dup.test", created="2020-01-01T00:00:00Z"),
    ingress("newer", "dup.test", service="canary", created="2021-01-01T00:00:00Z"),
    ingress(
        "bad-regex",
        "regex.test",
        path="/(unclosed",
        path_type="ImplementationSpecific",
        annotations={"use-regex": "true"},
    ),
    ingress("body-size", "size.test", annotations={"proxy-body-size": "lots"}),
    ingress("app-root", "approot.test", annotations={"app-root": "app"}),
    ingress("no-secret", "nosecret.test", tls=[{"hosts": ["nosecret.test"], "secretName": "gone"}]),
    # A malformed object: no pathType. Skipped; the rest of its file is read.
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "malformed", "namespace": "default"},
        "spec": {"ingressClassName": "nginx", "rules": [{"http": {"paths": [{"path": "/"}]}}]},
    },
    ingress("after-malformed", "after.test"),
    # Two certificates for one host: the older Ingress's serves it.
    ingress(
        "tls-first",
        "tls.test",
        created="2020-01-01T00:00:00Z",
        tls=[{"hosts": ["tls.test"], "secretName": "first"}],
    ),
    ingress(
        "tls-second",
        "tls.test",
        path="/second",
        created="2021-01-01T00:00:00Z",
        tls=[{"hosts": ["tls.test"], "secretName": "second"}],
    ),
    tls_secret("first", "tls.test"),
    tls_secret("second", "tls.test"),
    ingress("bad-pem", "badpem.test", tls=[{"hosts": ["badpem.test"], "secretName": "garbage"}]),
    tls_secret("garbage", None),
]


# ---------------------------------------------------------------------- backends


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"service": self.server.name, "path": self.path}).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _backend(name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------- the gateway


@dataclass
class Served:
    gateway: GatewayProcess
    admin: int
    folder: Path
    config: Path

    def config_view(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/config", timeout=5) as r:
            out: dict[str, Any] = json.loads(r.read())
        return out


def _gateway_toml(port: int, admin: int, manifests: Path, services: dict[str, str]) -> str:
    mapping = "".join(f'"default/{name}" = ["{address}"]\n' for name, address in services.items())
    return (
        f'[server]\nlisten = ["127.0.0.1:{port}"]\naccess_log = "off"\n\n'
        f'[admin]\nlisten = "127.0.0.1:{admin}"\ntoken = "{TOKEN}"\n\n'
        f'[kubernetes]\nmanifests = ["{manifests}"]\ningress_class = "nginx"\n\n'
        f"[kubernetes.services]\n{mapping}"
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    backends = {name: _backend(name) for name in ("alpha", "canary")}
    folder = tmp_path_factory.mktemp("isolation")
    manifests = folder / "manifests"
    manifests.mkdir()
    (manifests / "apps.yaml").write_text(yaml.safe_dump_all(MANIFESTS, sort_keys=False))
    port, admin = free_port(), free_port()
    services = {name: f"127.0.0.1:{b.server_address[1]}" for name, b in backends.items()}
    gw = GatewayProcess(_gateway_toml(port, admin, manifests, services), workdir=str(folder))
    gw.start(port)
    try:
        deadline = time.monotonic() + 10
        out = Served(gw, admin, folder, gw.config_path)
        while True:
            try:
                out.config_view()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield out
    finally:
        gw.terminate()
        for b in backends.values():
            b.shutdown()


def request(
    served: Served,
    host: str,
    path: str = "/",
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", served.gateway.port, timeout=5)
    try:
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def service_of(body: bytes, headers: dict[str, str]) -> str | None:
    if not headers.get("content-type", "").startswith("application/json"):
        return None
    return str(json.loads(body)["service"])


# ---------------------------------------------------------------------- what is served

# (host, request headers, status, the Service that answers or the Location)
ANSWERS = [
    pytest.param("good.test", {}, 200, "alpha", id="good-ingress-served"),
    pytest.param("after.test", {}, 200, "alpha", id="ingress-after-a-malformed-one"),
    pytest.param("r310.test", {}, 301, "https://new.example/", id="redirect-code-310-is-301"),
    pytest.param("canary.test", {"x-canary": "("}, 200, "alpha", id="bad-pattern-mainline"),
    pytest.param("canary.test", {"x-canary": "always"}, 200, "alpha", id="bad-pattern-always"),
    pytest.param("cidr.test", {}, 503, None, id="bad-cidr-denies-the-location"),
    pytest.param("missing.test", {}, 503, None, id="missing-service-503"),
    pytest.param("dup.test", {}, 200, "alpha", id="conflict-older-ingress-wins"),
    pytest.param("regex.test", {}, 404, None, id="uncompilable-regex-ingress-skipped"),
    pytest.param("size.test", {}, 200, "alpha", id="bad-body-size-default"),
    pytest.param("tls.test", {}, 308, "https://tls.test/", id="tls-host-twice-served"),
    pytest.param("approot.test", {}, 200, "alpha", id="relative-app-root-ignored"),
]


@pytest.mark.parametrize(("host", "headers", "status", "expected"), ANSWERS)
def test_one_bad_ingress_never_takes_the_others_down(
    served: Served, host: str, headers: dict[str, str], status: int, expected: str | None
) -> None:
    got, answer_headers, body = request(served, host, headers=headers)

    assert got == status, (host, body)
    if status in (301, 302, 308):
        assert answer_headers["location"] == expected
    else:
        assert service_of(body, answer_headers) == expected


# (Ingress, what the warning must also say)
WARNINGS = [
    pytest.param(
        "redirect-310", [NGINX + "permanent-redirect-code", "'310'", "301"], id="redirect-code"
    ),
    pytest.param(
        "canary-bad-pattern",
        [NGINX + "canary-by-header-pattern", "mainline"],
        id="canary-pattern",
    ),
    pytest.param(
        "bad-cidr", [NGINX + "whitelist-source-range", "'office'", "503"], id="source-range"
    ),
    pytest.param("missing-service", ["default/nope", "503"], id="missing-service"),
    pytest.param("newer", ["dup.test", "default/older", "skipped"], id="conflict"),
    pytest.param("bad-regex", ["skipped", "/(unclosed"], id="bad-regex"),
    pytest.param("body-size", [NGINX + "proxy-body-size", "'lots'", "1m"], id="body-size"),
    pytest.param("app-root", [NGINX + "app-root", "'app'", "ignored"], id="app-root"),
    pytest.param("no-secret", ["default/gone", "default certificate"], id="tls-secret"),
    pytest.param("malformed", ["pathType", "skipped"], id="malformed-object"),
    pytest.param(
        "tls-second", ["tls.test", "TLS secret default/first", "serves it"], id="tls-host-twice"
    ),
    pytest.param("bad-pem", ["default/garbage", "default certificate"], id="tls-secret-garbage"),
]


@pytest.mark.parametrize(("name", "says"), WARNINGS)
def test_each_problem_is_a_warning_naming_ingress_file_and_what_was_done(
    served: Served, name: str, says: list[str]
) -> None:
    warnings = served.config_view()["warnings"]

    mine = [w for w in warnings if f"default/{name} " in w or f"Ingress {name}" in w]
    assert mine, warnings
    assert any("apps.yaml" in w and all(s in w for s in says) for w in mine), mine


def test_check_and_import_print_the_same_warnings(served: Served) -> None:
    wasmgate = str(Path(sys.executable).with_name("wasmgate"))
    check = subprocess.run(
        [wasmgate, "check", "-c", str(served.config)], capture_output=True, text=True, timeout=60
    )
    imported = subprocess.run(
        [
            wasmgate,
            "ingress",
            "import",
            str(served.folder / "manifests"),
            "--ingress-class",
            "nginx",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert check.returncode == 0, check.stderr
    assert imported.returncode == 0, imported.stderr
    assert "[[routes]]" in imported.stdout
    for output in (check.stderr, imported.stderr):
        assert "permanent-redirect-code: '310'" in output
        assert "Ingress default/bad-regex" in output and "skipped" in output


def test_a_reload_that_brings_a_bad_ingress_serves_the_rest_and_warns(served: Served) -> None:
    more = [
        ingress("late", "late.test"),
        ingress(
            "late-bad",
            "latebad.test",
            annotations={"temporal-redirect-code": "399", "temporal-redirect": "/moved"},
        ),
    ]
    (served.folder / "manifests" / "more.yaml").write_text(yaml.safe_dump_all(more))
    reload = urllib.request.Request(
        f"http://127.0.0.1:{served.admin}/reload",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(reload, timeout=30) as r:
        assert r.status == 200

    status, headers, body = request(served, "late.test")
    assert (status, service_of(body, headers)) == (200, "alpha")
    status, headers, _ = request(served, "latebad.test")
    assert (status, headers["location"]) == (302, "/moved")
    assert request(served, "good.test")[0] == 200
    warnings = served.config_view()["warnings"]
    assert any("default/late-bad" in w and "more.yaml" in w for w in warnings), warnings
    assert any("default/redirect-310" in w for w in warnings)  # still said after the reload
    log = served.gateway.log()
    assert log.count("permanent-redirect-code") >= 2, log  # at start and at the reload
