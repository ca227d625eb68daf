"""examples/zero-trust/demo.py --check: JWT at the edge, mTLS to the upstream, end to end
(real certificates from core.certs, the real gateway as a child process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import Server, Upstream

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    "tls_listen" not in Server.model_fields or "tls_cert" not in Upstream.model_fields,
    reason="needs HTTPS listeners (server.tls_listen) and upstream client certificates "
    "(tls_cert) in core.config",
)


def test_the_zero_trust_walkthrough_answers_as_documented() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "zero-trust" / "demo.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "-> 401 Unauthorized: a bearer token is required   [ok]" in out
    assert "-> 401 Unauthorized: the token signature is invalid   [ok]" in out
    assert "-> 200; the upstream verified client cert CN=gateway, X-Consumer: alice" in out
    assert out.count("-> refused: ") == 2
    assert "UNEXPECTED" not in out
