"""The Gateway API specification's ``ReplacePrefixMatch`` table, end to end.

For each row (request path, PathPrefix match, replacement, result) two HTTPRoutes are
generated on one gateway: one ``URLRewrite`` (the upstream must see the result) and
one ``RequestRedirect`` (the Location must carry it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from tests.gatewayapi.test_isolation import GATEWAY
from tests.harness import InProcessGateway, RecordingUpstream

pytestmark = pytest.mark.asyncio(loop_scope="module")

# request path, prefix matched, replacePrefixMatch, the path that results
TABLE = [
    ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
    ("/foo", "/foo", "/xyz", "/xyz"),
    ("/foo/", "/foo", "/xyz", "/xyz/"),
    ("/foo/bar", "/foo", "", "/bar"),
    ("/foo/", "/foo", "", "/"),
    ("/foo", "/foo", "", "/"),
    ("/foo/", "/foo", "/", "/"),
    ("/foo", "/foo", "/", "/"),
]


def route(name: str, prefix: str, filt: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "hostnames": [f"{name}.test"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                    "filters": [filt],
                    "backendRefs": [{"name": "web", "port": 80}],
                }
            ],
        },
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[InProcessGateway, aiohttp.ClientSession]]:
    folder = tmp_path_factory.mktemp("prefix-table")
    docs = list(GATEWAY)
    for i, (_, prefix, to, _) in enumerate(TABLE):
        path = {"type": "ReplacePrefixMatch", "replacePrefixMatch": to}
        docs.append(route(f"rw{i}", prefix, {"type": "URLRewrite", "urlRewrite": {"path": path}}))
        docs.append(
            route(f"rd{i}", prefix, {"type": "RequestRedirect", "requestRedirect": {"path": path}})
        )
    (folder / "routes.yaml").write_text(yaml.safe_dump_all(docs))
    web = await RecordingUpstream("web").start()
    gw = await InProcessGateway(
        f'[server]\nlisten = ["127.0.0.1:0"]\naccess_log = "off"\n'
        f'[kubernetes]\nmanifests = ["{folder}"]\n'
        f'[kubernetes.services]\n"default/web" = ["{web.address}"]\n'
    ).start()
    async with aiohttp.ClientSession() as http:
        yield gw, http
    await gw.stop()
    await web.stop()


ROWS = [
    pytest.param(i, *row, id=f"{row[0]}-{row[1]}-{row[2] or 'empty'}")
    for i, row in enumerate(TABLE)
]


@pytest.mark.parametrize(("i", "path", "prefix", "to", "result"), ROWS)
async def test_url_rewrite(
    gateway: tuple[InProcessGateway, aiohttp.ClientSession],
    i: int,
    path: str,
    prefix: str,
    to: str,
    result: str,
) -> None:
    gw, http = gateway
    async with http.get(gw.url + path, headers={"Host": f"rw{i}.test"}) as r:
        assert r.status == 200
        assert json.loads(await r.read())["path"] == result


@pytest.mark.parametrize(("i", "path", "prefix", "to", "result"), ROWS)
async def test_request_redirect(
    gateway: tuple[InProcessGateway, aiohttp.ClientSession],
    i: int,
    path: str,
    prefix: str,
    to: str,
    result: str,
) -> None:
    gw, http = gateway
    headers = {"Host": f"rd{i}.test"}
    async with http.get(gw.url + path, headers=headers, allow_redirects=False) as r:
        assert (r.status, r.headers.get("location")) == (302, f"http://rd{i}.test{result}")
