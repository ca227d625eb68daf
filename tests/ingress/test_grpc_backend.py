"""backend-protocol GRPC: an Ingress in front of a gRPC service, as with ingress-nginx.

The annotation makes the upstream speak HTTP/2 (h2c; GRPCS: h2 over TLS), and a
grpcio client calls through the gateway, built from the unchanged manifest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from core.ingress.annotations import read_annotations
from tests.harness import InProcessGateway

grpc = pytest.importorskip("grpc")

INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {
        "name": "echo",
        "namespace": "default",
        "annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"},
    },
    "spec": {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "grpc.test",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "echo", "port": {"number": 50051}}},
                        }
                    ]
                },
            }
        ],
    },
}


def _echo(request: bytes, context: Any) -> bytes:
    return b"echo:" + request


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcessGateway]:
    folder: Path = tmp_path_factory.mktemp("grpc-ingress")
    (folder / "echo.yaml").write_text(yaml.safe_dump(INGRESS))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "pkg.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(_echo)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    gw = InProcessGateway(
        '[server]\nlisten = ["127.0.0.1:0"]\naccess_log = "off"\n\n'
        f'[kubernetes]\nmanifests = ["{folder / "echo.yaml"}"]\ningress_class = "nginx"\n\n'
        f'[kubernetes.services]\n"default/echo" = ["127.0.0.1:{port}"]\n'
    )
    await gw.start()
    yield gw
    await gw.stop()
    server.stop(0)


@pytest.mark.parametrize(
    ("value", "fields"),
    [
        ("GRPC", {"protocol": "h2c"}),
        ("GRPCS", {"protocol": "h2", "tls": True}),
        ("grpc", {"protocol": "h2c"}),
        ("HTTPS", {"tls": True}),
        ("AJP", {}),
    ],
)
def test_backend_protocol_sets_the_upstream(value: str, fields: dict[str, object]) -> None:
    a = read_annotations({"nginx.ingress.kubernetes.io/backend-protocol": value}, "Ingress x")
    assert a.upstream_settings == fields
    assert bool(a.warnings) == (value == "AJP")


@pytest.mark.asyncio(loop_scope="module")
async def test_a_grpc_call_goes_through_an_ingress(gateway: InProcessGateway) -> None:
    def run() -> bytes:
        with grpc.insecure_channel(
            f"127.0.0.1:{gateway.port}", options=[("grpc.default_authority", "grpc.test")]
        ) as channel:
            reply: bytes = channel.unary_unary("/pkg.Echo/Unary")(b"hi", timeout=5)
            return reply

    assert await asyncio.to_thread(run) == b"echo:hi"
