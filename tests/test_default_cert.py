"""HTTPS listeners start with no certificate (issue 17, item 2; core/default_cert.py).

As an Ingress controller does, ``tls_listen`` without any ``[[certificates]]`` serves a
generated self-signed default certificate for every name; a TLS Ingress that arrives by
reload then brings the real one for its host. ``wasmgate check`` says which names fall
back. Real handshakes over 127.0.0.1, a real ``wasmgate run`` and ``wasmgate check``.
"""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from core.config import load_config
from plugin_sdk.testing import GatewayProcess, RecordingUpstream, free_port
from tests.ingress.test_e2e import self_signed
from tests.test_tls import cn, config, https_get, serve  # noqa: F401 (serve: a fixture)

SUBJECT = "wasmgate default certificate"
WASMGATE = str(Path(sys.executable).with_name("wasmgate"))


def _loose() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def test_https_without_certificates_serves_a_generated_default(serve) -> None:  # noqa: F811
    up = await RecordingUpstream().start()
    try:
        gw = await serve(config(up.port, ""))
        for name in ("shop.test", "other.example", None):
            status, _, cert = await https_get(gw.port("https"), _loose(), name)
            assert (status, cn(cert)) == (200, f"CN={SUBJECT}"), name
        # Self-signed: a verifying client refuses it.
        with pytest.raises(ssl.SSLCertVerificationError):
            await https_get(gw.port("https"), ssl.create_default_context(), "shop.test")
    finally:
        await up.stop()


def _served_cn(port: int, name: str) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        _loose().wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def _ingress(tls: bool) -> list[dict[str, object]]:
    spec: dict[str, object] = {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "shop.test",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ],
    }
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "shop", "namespace": "default"},
            "spec": spec,
        }
    ]
    if tls:
        cert, key = self_signed("shop.test")
        spec["tls"] = [{"hosts": ["shop.test"], "secretName": "shop-tls"}]
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": "shop-tls", "namespace": "default"},
                "data": {
                    "tls.crt": base64.b64encode(cert.encode()).decode(),
                    "tls.key": base64.b64encode(key.encode()).decode(),
                },
            }
        )
    return docs


def test_a_tls_ingress_arriving_by_reload_replaces_the_default(tmp_path: Path) -> None:
    port, tls_port = free_port(), free_port()
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    (manifests / "shop.yaml").write_text(yaml.safe_dump_all(_ingress(tls=False)))
    toml = (
        f'[server]\nlisten = ["127.0.0.1:{port}"]\ntls_listen = ["127.0.0.1:{tls_port}"]\n'
        'access_log = "off"\n\n[kubernetes]\nmanifests = ["k8s"]\ningress_class = "nginx"\n'
        '[kubernetes.services]\n"default/web" = ["127.0.0.1:9"]\n'
    )
    gw = GatewayProcess(toml, workdir=str(tmp_path)).start(port)
    try:
        check = subprocess.run(
            [WASMGATE, "check", "-c", str(gw.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
        assert (
            "https: no certificate names shop.test: the generated self-signed default "
            "certificate answers them"
        ) in check.stdout
        assert _served_cn(tls_port, "shop.test") == f"CN={SUBJECT}"

        (manifests / "shop.yaml").write_text(yaml.safe_dump_all(_ingress(tls=True)))
        deadline = time.monotonic() + 15  # the manifest folder is watched
        while _served_cn(tls_port, "shop.test") != "CN=shop.test":
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.1)
        # Names no certificate covers still get the default, as from an Ingress controller.
        assert _served_cn(tls_port, "other.test") == f"CN={SUBJECT}"
        # Now every route host has its certificate: check names none.
        from core.default_cert import fallback_names

        assert fallback_names(load_config(gw.config_path))[1] == []
    finally:
        assert gw.terminate() == 0, gw.log()
