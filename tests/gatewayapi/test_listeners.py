"""Gateway listeners' certificates across namespaces (ReferenceGrant), route timeouts,
and hostname intersection, checked on the loaded configuration."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import GatewayConfig, loads_config
from core.gatewayapi.attach import intersect
from tests.gatewayapi.test_isolation import GATEWAY
from tests.ingress.test_e2e import self_signed


def load(folder: Path, docs: list[dict[str, Any]]) -> GatewayConfig:
    (folder / "m.yaml").write_text(yaml.safe_dump_all(docs))
    cert, key = self_signed("secure.test")
    (folder / "c.pem").write_text(cert)
    (folder / "k.pem").write_text(key)
    return loads_config(
        f'[server]\nlisten = ["127.0.0.1:0"]\n[kubernetes]\nmanifests = ["{folder / "m.yaml"}"]\n'
        '[kubernetes.services]\n"default/web" = ["127.0.0.1:9"]\n'
        f'[kubernetes.tls_secrets]\n"certs/site" = {{ cert = "{folder / "c.pem"}", '
        f'key = "{folder / "k.pem"}" }}\n',
        "test.toml",
    )


def https_gateway() -> list[dict[str, Any]]:
    docs = copy.deepcopy(GATEWAY)
    docs[1]["spec"]["listeners"].append(
        {
            "name": "https",
            "protocol": "HTTPS",
            "port": 443,
            "hostname": "secure.test",
            "tls": {"certificateRefs": [{"name": "site", "namespace": "certs"}]},
        }
    )
    return docs


GRANT = {
    "apiVersion": "gateway.networking.k8s.io/v1beta1",
    "kind": "ReferenceGrant",
    "metadata": {"name": "gateways-may-use-site", "namespace": "certs"},
    "spec": {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default"}],
        "to": [{"group": "", "kind": "Secret", "name": "site"}],
    },
}


def test_secret_in_another_namespace_needs_a_grant(tmp_path: Path) -> None:
    cfg = load(tmp_path, https_gateway())
    assert cfg.certificates == []
    assert any("Secret certs/site is in another namespace" in w for w in cfg.warnings)


def test_granted_secret_in_another_namespace_serves(tmp_path: Path) -> None:
    cfg = load(tmp_path, [*https_gateway(), GRANT])
    assert [c.hosts for c in cfg.certificates] == [["secure.test"]]


@pytest.mark.parametrize(
    ("timeouts", "expected"),
    [
        pytest.param({"request": "10s"}, 10.0, id="seconds"),
        pytest.param({"request": "1m30s"}, 90.0, id="minutes-seconds"),
        pytest.param({"backendRequest": "500ms"}, 0.5, id="backend-request"),
        pytest.param({"request": "soon"}, None, id="bad-is-warned"),
    ],
)
def test_rule_timeouts(tmp_path: Path, timeouts: dict[str, str], expected: float | None) -> None:
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "slow", "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "rules": [{"timeouts": timeouts, "backendRefs": [{"name": "web", "port": 80}]}],
        },
    }
    cfg = load(tmp_path, [*GATEWAY, route])
    assert cfg.routes[0].timeout == expected
    assert (expected is None) == any("bad timeout" in w for w in cfg.warnings)


@pytest.mark.parametrize(
    ("listener", "route", "both"),
    [
        (None, "foo.example.com", "foo.example.com"),
        ("foo.example.com", "foo.example.com", "foo.example.com"),
        ("*.example.com", "foo.example.com", "foo.example.com"),
        ("*.example.com", "a.b.example.com", "a.b.example.com"),
        ("*.example.com", "example.com", None),
        ("foo.example.com", "*.example.com", "foo.example.com"),
        ("*.example.com", "*.foo.example.com", "*.foo.example.com"),
        ("*.foo.example.com", "*.example.com", "*.foo.example.com"),
        ("foo.example.com", "bar.example.com", None),
        ("*.example.com", "*.example.net", None),
    ],
)
def test_hostname_intersection(listener: str | None, route: str, both: str | None) -> None:
    assert intersect(listener, route) == both
