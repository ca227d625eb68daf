"""`wasmgate run --workers N`: N processes share one port; SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from tests.harness import GatewayProcess, RecordingUpstream, free_port, gateway_toml


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def test_two_workers_share_the_port_and_drain_on_sigterm(upstream: RecordingUpstream) -> None:
    port = free_port()
    toml = gateway_toml({"v1": [upstream.address]}, default="v1", listen=f"127.0.0.1:{port}")
    gw = GatewayProcess(toml).start(port, "--workers", "2")
    try:
        assert gw.proc is not None
        await asyncio.sleep(0.3)  # let both workers bind
        workers = _children(gw.proc.pid)
        assert len(workers) == 2, gw.log()
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                # A new connection each time, so the kernel spreads them over workers.
                async with http.get(
                    f"http://127.0.0.1:{port}/", headers={"Connection": "close"}
                ) as r:
                    assert r.status == 200

        # A worker that dies is replaced.
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(50):
            await asyncio.sleep(0.1)
            now = _children(gw.proc.pid)
            if len(now) == 2 and workers[0] not in now:
                break
        assert len(now) == 2 and workers[0] not in now, gw.log()
    finally:
        code = await asyncio.to_thread(gw.terminate)
    assert code == 0, gw.log()
    assert gw.log().count("stopped") == 2
    assert len(upstream.requests) == 20
