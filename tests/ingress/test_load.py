"""Reading Kubernetes manifests and translating them (core/ingress/): objects, classes,
service resolution, merging and conflicts, errors that name the file, the
``wasmgate ingress import`` command, and IngressClass isolation between two real
gateway processes started side by side."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import textwrap
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from core.config import load_config, parse_config
from core.errors import ConfigError
from core.ingress.objects import load_manifests
from core.ingress.translate import Settings, translate
from plugin_sdk.testing import GatewayProcess, RecordingUpstream, free_port

ROOT = Path(__file__).resolve().parents[2]


def ingress(
    name: str,
    *,
    cls: str | None = "nginx",
    host: str | None = "test.com",
    path: str = "/",
    path_type: str = "Prefix",
    service: str = "web",
    port: int | str = 80,
    annotations: dict[str, str] | None = None,
    namespace: str = "default",
) -> str:
    port_yaml = f"number: {port}" if isinstance(port, int) else f"name: {port}"
    ann = ""
    if annotations:
        ann = "  annotations:\n" + "".join(f'    {k}: "{v}"\n' for k, v in annotations.items())
    spec_class = f"  ingressClassName: {cls}\n" if cls else ""
    host_line = f"    - host: {host}\n      http:\n" if host else "    - http:\n"
    return (
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
        f"  name: {name}\n  namespace: {namespace}\n{ann}spec:\n{spec_class}  rules:\n"
        f"{host_line}        paths:\n"
        f"          - path: {path}\n            pathType: {path_type}\n"
        "            backend:\n              service:\n"
        f"                name: {service}\n                port:\n                  {port_yaml}\n"
    )


def write(folder: Path, name: str, *docs: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("---\n".join(docs))
    return path


def translated(tmp_path: Path, *docs: str, cls: str = "nginx", services: dict | None = None):
    write(tmp_path / "k8s", "all.yaml", *docs)
    found = load_manifests([tmp_path / "k8s"])
    return translate(found, Settings(cls, services or {"default/web": ["127.0.0.1:9"]}))


# ---------------------------------------------------------------- objects and classes


def test_a_multi_document_file_a_list_and_a_folder_are_read_and_other_kinds_skipped(
    tmp_path: Path,
) -> None:
    write(
        tmp_path / "k8s",
        "a.yaml",
        ingress("one"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec: {}\n",
    )
    items = ingress("two", path="/two").replace("\n", "\n    ")
    write(tmp_path / "k8s" / "sub", "b.yml", f"apiVersion: v1\nkind: List\nitems:\n  - {items}")
    (tmp_path / "k8s" / "notes.txt").write_text("not a manifest")
    found = load_manifests([tmp_path / "k8s"])
    assert sorted(i.key for i in found.ingresses) == ["default/one", "default/two"]
    assert [p.name for p in found.files] == ["a.yaml", "b.yml"]


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (
            "kind: Ingress\nmetadata: {name: x}\nspec: {rules: [{http: {paths: [{path: /}]}}]}",
            "pathType",
        ),
        ("kind: Ingress\nmetadata: {}\n", "metadata.name"),
        ("kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 99999}]}", "spec.ports.0.port"),
        ("key: [unclosed", "not valid YAML"),
        ("- just\n- a list", "expected a Kubernetes object"),
    ],
    ids=["no-pathType", "no-name", "bad-port", "bad-yaml", "not-a-mapping"],
)
def test_a_malformed_manifest_is_refused_naming_file_and_document(
    tmp_path: Path, doc: str, problem: str
) -> None:
    path = write(tmp_path, "bad.yaml", ingress("fine"), doc)
    with pytest.raises(ConfigError) as err:
        load_manifests([path])
    text = str(err.value)
    assert problem in text
    assert "bad.yaml" in text
    if "YAML" not in problem:
        assert "(document 2)" in text


@pytest.mark.parametrize(
    ("doc", "served"),
    [
        (ingress("a", cls="nginx"), True),
        (ingress("a", cls="other"), False),
        (
            ingress("a", cls=None, annotations={"kubernetes.io/ingress.class": "nginx"}),
            True,
        ),
        (
            ingress("a", cls=None, annotations={"kubernetes.io/ingress.class": "other"}),
            False,
        ),
        (ingress("a", cls=None), False),  # no class and no default IngressClass
    ],
    ids=["ingressClassName", "other-class", "legacy-annotation", "legacy-other", "no-class"],
)
def test_an_ingress_is_served_by_its_class(tmp_path: Path, doc: str, served: bool) -> None:
    tr = translated(tmp_path, doc)
    assert tr.ingresses == (["default/a"] if served else [])


def test_an_ingress_without_class_goes_to_the_default_ingressclass(tmp_path: Path) -> None:
    default_class = textwrap.dedent(
        """\
        apiVersion: networking.k8s.io/v1
        kind: IngressClass
        metadata:
          name: nginx
          annotations:
            ingressclass.kubernetes.io/is-default-class: "true"
        spec:
          controller: k8s.io/ingress-nginx
        """
    )
    assert translated(tmp_path, default_class, ingress("a", cls=None)).ingresses == ["default/a"]
    assert translated(tmp_path, default_class, ingress("a", cls=None), cls="other").ingresses == []


# ---------------------------------------------------------------- services


SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports:
    - {name: http, port: 80, targetPort: 8080}
    - {name: admin, port: 81, targetPort: admin}
"""
ENDPOINTS = """\
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: default}
subsets:
  - addresses: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]
    ports: [{name: http, port: 8080}, {name: admin, port: 9090}]
"""
EXTERNAL = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
    "spec: {type: ExternalName, externalName: api.example.com, ports: [{port: 80}]}"
)
SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: default
  labels: {kubernetes.io/service-name: web}
endpoints:
  - addresses: [10.0.0.3]
    conditions: {ready: true}
  - addresses: [10.0.0.4]
    conditions: {ready: false}
ports: [{name: http, port: 8080}]
"""


@pytest.mark.parametrize(
    ("docs", "port", "endpoints"),
    [
        ((SERVICE, ENDPOINTS), 80, ["10.0.0.1:8080", "10.0.0.2:8080"]),
        ((SERVICE, ENDPOINTS), "admin", ["10.0.0.1:9090", "10.0.0.2:9090"]),
        ((SERVICE, SLICE), 80, ["10.0.0.3:8080"]),  # not-ready endpoints left out
        ((SERVICE, ENDPOINTS, SLICE), 80, ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]),
        ((EXTERNAL,), 80, ["api.example.com:80"]),
        ((SERVICE,), 80, []),  # no endpoints: 503, and a warning
    ],
    ids=["endpoints", "named-port", "endpointslice", "both", "externalname", "none"],
)
def test_a_backend_resolves_to_the_services_endpoints(
    tmp_path: Path, docs: tuple[str, ...], port: int | str, endpoints: list[str]
) -> None:
    write(tmp_path / "k8s", "all.yaml", ingress("a", port=port), *docs)
    tr = translate(load_manifests([tmp_path / "k8s"]), Settings("nginx"))
    (up,) = tr.upstreams
    assert up["endpoints"] == endpoints
    assert up["name"] == f"default.web.{port}"
    assert any("no ready endpoints" in w for w in tr.warnings) == (not endpoints)


def test_an_explicit_mapping_wins_and_an_unknown_service_answers_503(tmp_path: Path) -> None:
    tr = translated(
        tmp_path, ingress("a"), SERVICE, ENDPOINTS, services={"default/web": ["127.0.0.1:7"]}
    )
    assert tr.upstreams[0]["endpoints"] == ["127.0.0.1:7"]
    tr = translated(tmp_path, ingress("a", service="nope"), services={})
    assert tr.upstreams == [{"name": "default.nope.80", "endpoints": []}]  # 503, as NGINX
    assert any(
        "default/nope is neither in the manifests nor mapped" in w and "503" in w
        for w in tr.warnings
    )


# ---------------------------------------------------------------- merging


def test_several_ingresses_add_paths_to_one_host_and_the_older_keeps_a_duplicate(
    tmp_path: Path,
) -> None:
    tr = translated(tmp_path, ingress("a", path="/a"), ingress("b", path="/b"))
    assert sorted(r["paths"][0]["path"] for r in tr.routes) == ["/a", "/b"]
    tr = translated(tmp_path, ingress("a", path="/x"), ingress("b", path="/x"))
    assert [r["name"] for r in tr.routes] == ["default.a.0.0"]
    (warning,) = [w for w in tr.warnings if "also defined" in w]
    assert "path /x (Prefix) is also defined by the older Ingress default/a" in warning
    assert warning.startswith("Ingress default/b ") and "skipped" in warning
    # Same path, other path type: no conflict (Exact and Prefix are different rules).
    tr = translated(tmp_path, ingress("a", path="/x"), ingress("b", path="/x", path_type="Exact"))
    assert len(tr.routes) == 2 and not any("also defined" in w for w in tr.warnings)


def test_of_two_default_backends_the_older_is_kept(tmp_path: Path) -> None:
    def with_default(name: str) -> str:
        return ingress(name).replace(
            "spec:\n", "spec:\n  defaultBackend:\n    service: {name: web, port: {number: 80}}\n"
        )

    tr = translated(tmp_path, with_default("a"), with_default("b"))
    assert tr.default == {"upstream": "default.web.80"}
    assert tr.notes["default"].startswith("Ingress default/a ")
    assert any(w.startswith("Ingress default/b ") and "ignored" in w for w in tr.warnings)


# ---------------------------------------------------------------- gateway.toml


def test_only_the_file_itself_is_refused_and_the_error_names_the_source(tmp_path: Path) -> None:
    write(tmp_path / "k8s", "app.yaml", ingress("a", service="missing"))
    config = tmp_path / "gateway.toml"
    config.write_text('[kubernetes]\nmanifests = ["k8s"]\ningress_class = "nginx"\n')
    warnings = load_config(config).warnings  # a missing Service: 503, never a refusal
    assert any(re.match(r"Ingress default/a \(.*app.yaml.*503", w) for w in warnings)
    config.write_text('[kubernetes]\nmanifests = ["nowhere"]\n')
    with pytest.raises(ConfigError, match=r"kubernetes\.manifests: not found"):
        load_config(config)
    config.write_text('[kubernetes]\nmanifests = ["k8s"]\nservices = { "web" = ["x"] }\n')
    with pytest.raises(ConfigError, match=r"kubernetes\.services: .*namespace/name"):
        load_config(config)


def test_an_ingress_using_a_name_of_the_file_is_skipped(tmp_path: Path) -> None:
    write(tmp_path / "k8s", "app.yaml", ingress("a"), ingress("b", host="b.test", service="b"))
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[kubernetes]\nmanifests = ["k8s"]\ningress_class = "nginx"\n'
        'services = { "default/web" = ["127.0.0.1:9"], "default/b" = ["127.0.0.1:9"] }\n'
        '[[upstreams]]\nname = "default.web.80"\nendpoints = ["127.0.0.1:1"]\n'
    )
    cfg = load_config(config)
    assert [r.name for r in cfg.routes] == ["default.b.0.0"]
    assert [u.endpoints[0].address for u in cfg.upstreams if u.name == "default.web.80"] == [
        "127.0.0.1:1"
    ]  # the file's own
    assert any(
        w.startswith("Ingress default/a ")
        and "skipped" in w
        and "upstream default.web.80 is also defined in the configuration file" in w
        for w in cfg.warnings
    )


def test_unsupported_annotations_are_warned_about_at_load(tmp_path: Path) -> None:
    write(
        tmp_path / "k8s",
        "app.yaml",
        ingress("a", annotations={"nginx.ingress.kubernetes.io/auth-url": "http://auth"}),
    )
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[kubernetes]\nmanifests = ["k8s"]\ningress_class = "nginx"\n'
        'services = { "default/web" = ["127.0.0.1:9"] }\n'
    )
    cfg = load_config(config)
    assert any("nginx.ingress.kubernetes.io/auth-url" in w for w in cfg.warnings)
    assert cfg.sources == [tmp_path / "k8s" / "app.yaml"]


# ---------------------------------------------------------------- import


def wasmgate(
    *args: str | Path, cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        timeout=60,
    )


def self_signed() -> tuple[str, str]:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def test_import_writes_a_commented_config_that_loads_and_tls_secrets_as_files(
    tmp_path: Path,
) -> None:
    cert, key = self_signed()
    secret = (
        "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\n"
        "metadata: {name: test-tls, namespace: default}\ndata:\n"
        f"  tls.crt: {base64.b64encode(cert.encode()).decode()}\n"
        f"  tls.key: {base64.b64encode(key.encode()).decode()}\n"
    )
    annotations = {
        "nginx.ingress.kubernetes.io/enable-cors": "true",
        "nginx.ingress.kubernetes.io/x-unknown": "1",
    }
    tls = "spec:\n  tls:\n    - hosts: [test.com]\n      secretName: test-tls\n"
    with_tls = ingress("site", path="/", annotations=annotations).replace("spec:\n", tls)
    write(tmp_path / "k8s", "app.yaml", with_tls, SERVICE, ENDPOINTS, secret)
    out = tmp_path / "out" / "gateway.toml"
    out.parent.mkdir()
    done = wasmgate("ingress", "import", "k8s", "--ingress-class", "nginx", "-o", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "nginx.ingress.kubernetes.io/x-unknown" in done.stderr  # warned
    text = out.read_text()
    assert (
        "# Ingress default/site (k8s/app.yaml (document 1)): host test.com, path / (Prefix)" in text
    )
    assert "nginx.ingress.kubernetes.io/x-unknown" in text  # the warning is in the file too
    cfg = load_config(out)
    assert [c.hosts for c in cfg.certificates] == [["test.com"]]
    assert cfg.certificates[0].cert == "tls/default-test-tls.crt"
    assert (out.parent / "tls" / "default-test-tls.key").stat().st_mode & 0o077 == 0
    assert (out.parent / "tls" / "default-test-tls.crt").read_text() == cert
    plugins = [cfg.filters[f].plugin for f in cfg.routes[0].filters if isinstance(f, str)]
    assert plugins == ["redirect", "cors"]  # ssl-redirect (tls host), then CORS
    again = wasmgate(
        "ingress", "import", "k8s", "--ingress-class", "nginx", "-o", out, cwd=tmp_path
    )
    assert again.returncode == 1 and "--force" in again.stderr


def test_import_reads_standard_input_and_takes_service_mappings(tmp_path: Path) -> None:
    done = wasmgate(
        "ingress", "import", "-", "--ingress-class", "nginx",
        "--service", "default/web=127.0.0.1:8080,127.0.0.1:8081",
        cwd=tmp_path, stdin=ingress("a", path="/api"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cfg = parse_config(tomllib.loads(done.stdout), "<stdout>")
    assert [e.address for e in cfg.upstreams[0].endpoints] == ["127.0.0.1:8080", "127.0.0.1:8081"]
    unmapped = wasmgate("ingress", "import", "-", "--ingress-class", "nginx", cwd=tmp_path,
                        stdin=ingress("a"))  # fmt: skip
    assert unmapped.returncode == 0  # a warning: its routes answer 503
    assert "backend service default/web is neither in the manifests nor mapped" in unmapped.stderr


# ---------------------------------------------------------------- isolation


async def test_two_instances_with_different_classes_serve_disjoint_ingresses(
    tmp_path: Path,
) -> None:
    web_a, web_b = RecordingUpstream(), RecordingUpstream()
    await web_a.start()
    await web_b.start()
    write(
        tmp_path / "k8s",
        "all.yaml",
        ingress("for-a", cls="class-a", host="a.test", service="svc-a"),
        ingress("for-b", cls="class-b", host="b.test", service="svc-b"),
        ingress("legacy-b", cls=None, host="legacy.test", service="svc-b",
                annotations={"kubernetes.io/ingress.class": "class-b"}),
    )  # fmt: skip
    gateways = []
    try:
        for cls in ("class-a", "class-b"):
            port = free_port()
            toml = (
                f'[server]\nlisten = ["127.0.0.1:{port}"]\naccess_log = "off"\n'
                f'[kubernetes]\nmanifests = ["{tmp_path / "k8s"}"]\ningress_class = "{cls}"\n'
                f'services = {{ "default/svc-a" = ["127.0.0.1:{web_a.port}"], '
                f'"default/svc-b" = ["127.0.0.1:{web_b.port}"] }}\n'
            )
            workdir = tmp_path / cls
            workdir.mkdir()
            gateways.append(GatewayProcess(toml, workdir=str(workdir)).start(port))
        a, b = gateways

        def status(gw: GatewayProcess, host: str) -> int:
            req = urllib.request.Request(f"{gw.url}/", headers={"Host": host})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        import asyncio

        loop = asyncio.get_running_loop()
        got = {
            (gw_name, host): await loop.run_in_executor(None, status, gw, host)
            for gw_name, gw in (("a", a), ("b", b))
            for host in ("a.test", "b.test", "legacy.test")
        }
        assert got == {
            ("a", "a.test"): 200,
            ("a", "b.test"): 404,
            ("a", "legacy.test"): 404,
            ("b", "a.test"): 404,
            ("b", "b.test"): 200,
            ("b", "legacy.test"): 200,
        }
        assert len(web_a.requests) == 1 and len(web_b.requests) == 2
    finally:
        for gw in gateways:
            gw.terminate()
        await web_a.stop()
        await web_b.stop()


def test_the_walkthrough_example_answers_as_documented() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ingress-canary" / "demo.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "-> version: v1   [ok]" in done.stdout
    assert "-> version: v2   [ok]" in done.stdout
