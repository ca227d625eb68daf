"""``proxy_http_call``: a call from a plugin to one of the gateway's upstreams, and the
``proxy_on_http_call_response`` callback with its result (a failure is a result with
no headers, as in Envoy)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from core.upstream import UpstreamPool, fetch
from core.wasm.host import HttpCallResult
from core.wasm.vm import WasmTrap

if TYPE_CHECKING:
    from core.wasm.plugin import PluginVm

log = logging.getLogger("wasmgate.wasm")


def start_call(
    vm: PluginVm, upstream: str, pairs: list[tuple[bytes, bytes]], body: bytes, timeout_ms: int
) -> int | None:
    """Start the call as a task of ``vm``; its token, or None for an unknown upstream."""
    pool = vm.pools.get(upstream)
    if pool is None:
        log.warning("wasm filter %r: http call to unknown upstream %r", vm.name, upstream)
        return None
    token = next(vm.tokens)
    task = asyncio.get_running_loop().create_task(_call(vm, token, pool, pairs, body, timeout_ms))
    vm.calls.add(task)
    task.add_done_callback(vm.calls.discard)
    return token


async def _call(
    vm: PluginVm,
    token: int,
    pool: UpstreamPool,
    pairs: list[tuple[bytes, bytes]],
    body: bytes,
    timeout_ms: int,
) -> None:
    pseudo = {k: v for k, v in pairs if k.startswith(b":")}
    headers = [(k, v) for k, v in pairs if not k.startswith(b":")]
    result = HttpCallResult()
    try:
        status, resp_headers, resp_body = await fetch(
            pool,
            (pseudo.get(b":method") or b"GET").decode("latin-1"),
            pseudo.get(b":path") or b"/",
            pseudo.get(b":authority") or b"",
            headers,
            body,
            (timeout_ms or 5000) / 1000,
        )
        result = HttpCallResult(status, [(k.lower(), v) for k, v in resp_headers], resp_body)
    except Exception as exc:  # the plugin learns of failures through num_headers == 0
        result.message = str(exc)
        log.warning("wasm filter %r: http call %d failed: %s", vm.name, token, exc)
    vm.host.call_result = result
    try:
        n = len(result.headers) + 1 if result.status else 0
        vm.call(None, "proxy_on_http_call_response", vm.root_id, token, n, len(result.body), 0)
    except WasmTrap:
        pass  # counted and logged by vm.call; WasmUnavailable: cut off meanwhile
    finally:
        vm.host.call_result = None
