"""``wasmgate ingress import`` translates Gateway API manifests too (a real subprocess).

The fixture manifests are imported unchanged; the written gateway.toml must load, hold
the HTTPRoutes' routes and filters with their origins, and the warnings must be on
standard error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.config import load_config

MANIFESTS = Path(__file__).parent.parent / "fixtures" / "gateway-api"


def test_import_gateway_api(tmp_path: Path) -> None:
    out = tmp_path / "gateway.toml"
    services = [
        f"--service=default/{name}=127.0.0.1:{9000 + i}"
        for i, name in enumerate(("alpha", "beta", "gamma", "delta", "epsilon"))
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.cli",
            "ingress",
            "import",
            str(MANIFESTS),
            *services,
            "--service=other/zeta=127.0.0.1:9010",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "from 0 Ingresses and 12 HTTPRoutes" in done.stderr
    assert "sessionPersistence is not supported" in done.stderr
    text = out.read_text()
    assert "# Gateway controller served: 'wasmgate.dev/gateway-controller'" in text
    assert "# HTTPRoute default/split (" in text
    cfg = load_config(out)
    routes = {r.name: r for r in cfg.routes}
    assert routes["httproute.default.precedence.4.1"].query[2].name == "c"
    assert routes["httproute.default.wildcard.0.0"].host_wildcard == "suffix"
    weights = [cfg.filters[f"httproute.default.split.0.0.weight{i}"].config for i in (1, 2)]
    assert [(w["upstream"], w["weight"], w["weight_total"]) for w in weights] == [
        ("default.beta.80", 1, 2),
        ("default.gamma.80", 2, 4),
    ]
