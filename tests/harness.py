"""Test helpers on top of :mod:`plugin_sdk.testing` (which holds RecordingUpstream,
GatewayProcess and free_port, the tools plugin authors get too).

:class:`InProcessGateway` builds the real gateway from a TOML string on the test's
event loop; :func:`gateway_toml` writes such a string; :func:`raw_request`,
:func:`read_response` and :func:`parse_responses` speak exact bytes over a socket.
Nothing here fakes our own code.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.config import loads_config
from core.gateway import Gateway, Snapshot
from plugin_sdk.testing import GatewayProcess, RecordingUpstream, Seen, free_port

__all__ = [
    "GatewayProcess",
    "InProcessGateway",
    "RawResponse",
    "RecordingUpstream",
    "Seen",
    "free_port",
    "gateway_toml",
    "parse_json",
    "parse_responses",
    "raw_request",
    "read_response",
]


class InProcessGateway:
    """The real gateway, built from a TOML string, serving on the test's loop."""

    def __init__(self, toml: str) -> None:
        self.config = loads_config(toml, "test.toml")
        self.gateway: Gateway | None = None

    async def start(self) -> InProcessGateway:
        loop = asyncio.get_running_loop()
        self.gateway = Gateway(Snapshot(self.config, "test.toml"), loop)
        await self.gateway.start()
        return self

    @property
    def port(self) -> int:
        assert self.gateway is not None
        return self.gateway.sockets[0][1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.drain(timeout=1.0)


def gateway_toml(
    upstreams: dict[str, list[str]],
    routes: str = "",
    *,
    default: str | None = None,
    server: str = "",
    upstream_extra: str = "",
    listen: str = "127.0.0.1:0",
    access_log: str = "off",
) -> str:
    """A config with the given upstreams (name -> endpoints) plus extra TOML."""
    parts = [f'[server]\nlisten = ["{listen}"]\naccess_log = "{access_log}"\n{server}\n']
    for name, endpoints in upstreams.items():
        eps = ", ".join(f'"{e}"' for e in endpoints)
        parts.append(f'[[upstreams]]\nname = "{name}"\nendpoints = [{eps}]\n{upstream_extra}\n')
    parts.append(routes)
    if default:
        parts.append(f'\n[default]\nupstream = "{default}"\n')
    return "\n".join(parts)


async def raw_request(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send exact bytes, read until the server closes (or the timeout); the reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    chunks = []
    try:
        async with asyncio.timeout(read_timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except TimeoutError:
        pass
    writer.close()
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    return json.loads(body)


@dataclass
class RawResponse:
    """One HTTP/1.1 response as the bytes on the wire framed it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    @property
    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> RawResponse:
    """Read exactly one response (Content-Length, chunked or until close) off ``reader``."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")[:-2]
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    resp = RawResponse(status, headers, b"")
    if head_only or status in (204, 304) or 100 <= status < 200:
        return resp
    if (resp.header("transfer-encoding") or "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        resp.body = b"".join(parts)
    elif resp.header("content-length") is not None:
        resp.body = await reader.readexactly(int(resp.header("content-length") or 0))
    else:
        resp.body = await reader.read()
    return resp


async def parse_responses(data: bytes) -> list[RawResponse]:
    """Every response in ``data`` (what :func:`raw_request` returned), in order."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out = []
    while not reader.at_eof():
        out.append(await read_response(reader))
    return out


EXAMPLE_FILTERS = Path(__file__).resolve().parent.parent / "plugins" / "wasm"


def build_example_filters(*names: str, timeout: float = 300) -> None:
    """Build the example WASM filters ``names`` with plugins/wasm/build.py (it skips
    up-to-date ones), or fail the test with the build's output."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLE_FILTERS / "build.py"), *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(f"plugins/wasm/build.py failed:\n{result.stdout}", pytrace=False)
