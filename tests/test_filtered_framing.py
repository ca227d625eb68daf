"""A response that went through filters is framed by the gateway: whatever a filter
did to Content-Length or Transfer-Encoding, the client gets the upstream's body with
its true length, once (the ``framing`` test plugin edits those headers)."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import StartGateway
from tests.harness import RecordingUpstream, gateway_toml, read_response

# (path, the framing filter's config, or None for a route without filters)
CASES = [
    ("/plain", None),
    ("/other-header", '{ set = { "X-Extra" = "1" } }'),
    ("/wrong-length", '{ set = { "Content-Length" = "999999" } }'),
    ("/removed-length", '{ remove = ["Content-Length"] }'),
    ("/chunked-added", '{ set = { "Transfer-Encoding" = "chunked" } }'),
    (
        "/both",
        '{ set = { "Content-Length" = "1", "Transfer-Encoding" = "gzip, chunked" } }',
    ),
]


def routes() -> str:
    out = []
    for path, config in CASES:
        chain = f'filters = [{{ plugin = "framing", config = {config} }}]\n' if config else ""
        name = path.strip("/")
        out.append(f'[[routes]]\nname = "{name}"\npaths = ["{path}"]\nupstream = "v1"\n{chain}')
    return "\n".join(out)


async def test_filtered_responses_carry_the_upstreams_length_once(
    upstream: RecordingUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(gateway_toml({"v1": [upstream.address]}, routes()))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        for path, _ in CASES * 2:  # twice: the same lengths again on one connection
            writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            resp = await asyncio.wait_for(read_response(reader), 5)
            assert resp.status == 200, path
            lengths = [v for n, v in resp.headers if n.lower() == "content-length"]
            assert lengths == [str(len(resp.body))], (path, resp.headers)
            assert "transfer-encoding" not in resp.names, (path, resp.headers)
            assert json.loads(resp.body)["path"] == path
            if path == "/other-header":
                assert resp.header("x-extra") == "1"
    finally:
        writer.close()
