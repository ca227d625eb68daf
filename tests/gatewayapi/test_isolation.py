"""Bad values in one HTTPRoute are warnings that skip just that part; the rest serves.

Each case is one HTTPRoute (built here, beside a valid one) whose bad field would
otherwise make a generated table refuse the whole configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import loads_config

GATEWAY = [
    {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": "wasmgate"},
        "spec": {"controllerName": "wasmgate.dev/gateway-controller"},
    },
    {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": "default"},
        "spec": {
            "gatewayClassName": "wasmgate",
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
        },
    },
]


def route(name: str, rule: dict[str, Any], hostnames: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "hostnames": hostnames or [f"{name}.test"],
            "rules": [{**rule, "backendRefs": [{"name": "web", "port": 80}]}],
        },
    }


def redirect(**fields: Any) -> dict[str, Any]:
    return {"filters": [{"type": "RequestRedirect", "requestRedirect": fields}]}


def rewrite(**fields: Any) -> dict[str, Any]:
    return {"filters": [{"type": "URLRewrite", "urlRewrite": fields}]}


def headers(**fields: Any) -> dict[str, Any]:
    return {"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": fields}]}


CASES = [
    pytest.param(redirect(hostname="a.test/evil"), "invalid hostname", id="redirect-hostname"),
    pytest.param(
        redirect(path={"type": "ReplaceFullPath", "replaceFullPath": "/a?b"}),
        "not a plain path",
        id="redirect-path",
    ),
    pytest.param(rewrite(hostname="bad host"), "invalid hostname", id="rewrite-hostname"),
    pytest.param(
        headers(set=[{"name": "x-a", "value": "1\r\nx-b: 2"}]), "invalid name or value", id="crlf"
    ),
    pytest.param(headers(remove=["Host"]), "cannot be removed", id="managed-header"),
    pytest.param(
        {"matches": [{"path": {"type": "RegularExpression", "value": "(("}}]},
        "does not compile",
        id="bad-regex",
    ),
    pytest.param({"matches": [{"path": {"type": "Exact", "value": "x"}}]}, "must start", id="path"),
    pytest.param({"matches": [{"method": 7}]}, "is skipped", id="bad-type"),
]


@pytest.mark.parametrize(("rule", "warning"), CASES)
def test_bad_field_is_a_warning(tmp_path: Path, rule: dict[str, Any], warning: str) -> None:
    docs = [*GATEWAY, route("good", {}), route("bad", rule)]
    (tmp_path / "m.yaml").write_text(yaml.safe_dump_all(docs))
    cfg = loads_config(
        f'[server]\nlisten = ["127.0.0.1:0"]\n[kubernetes]\nmanifests = ["{tmp_path}"]\n'
        '[kubernetes.services]\n"default/web" = ["127.0.0.1:9"]\n',
        "test.toml",
    )
    assert "httproute.default.good.0.0" in {r.name for r in cfg.routes}
    assert any(warning in w and "bad" in w for w in cfg.warnings), cfg.warnings


def test_bad_hostname_skips_the_match(tmp_path: Path) -> None:
    docs = [*GATEWAY, route("good", {}), route("bad", {}, hostnames=["Bad_Host.test"])]
    (tmp_path / "m.yaml").write_text(yaml.safe_dump_all(docs))
    cfg = loads_config(
        f'[server]\nlisten = ["127.0.0.1:0"]\n[kubernetes]\nmanifests = ["{tmp_path}"]\n'
        '[kubernetes.services]\n"default/web" = ["127.0.0.1:9"]\n',
        "test.toml",
    )
    assert [r.name for r in cfg.routes] == ["httproute.default.good.0.0"]
    assert any("invalid host" in w for w in cfg.warnings), cfg.warnings
