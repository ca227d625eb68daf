"""``proxy_http_call``: a call from a plugin to one of the gateway's upstreams, and the
``proxy_on_http_call_response`` callback with its result.

The cluster name is resolved by :mod:`core.wasm.clusters`; an unknown one, or a head
that cannot be sent (a pseudo-header other than ``:method``, ``:path``,
``:authority``, ``:scheme``), is refused at once with ``BAD_ARGUMENT``. Trailers are
accepted and not sent (calls go out with a Content-Length). A call that fails or
outlives its timeout (``0``: 5 s) is a result with no headers, no body and no
trailers, as Envoy reports a failed call; the response's trailers are not kept
(always 0).

A call made with an HTTP context as the effective context is that context's until it
answers: when the context's client leaves (:mod:`core.wasm.context_end`) the call is
cancelled (its upstream connection closed) and the root context gets it as a failed
call at once."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from core.upstream import UpstreamPool, fetch
from core.wasm.clusters import vm_pool
from core.wasm.host import HttpCallResult, _field_ok, _pseudo_ok
from core.wasm.vm import WasmTrap

if TYPE_CHECKING:
    from core.wasm.plugin import PluginVm
    from core.wasm.sharing import Root

log = logging.getLogger("wasmgate.wasm")


def head_ok(pairs: list[tuple[bytes, bytes]]) -> bool:
    """Whether ``pairs`` can be the head of a request to an upstream."""
    for name, value in pairs:
        if name == b":scheme":
            ok = value in (b"http", b"https")  # the pool's `tls` decides the transport
        elif name[:1] == b":":
            ok = name != b":status" and _pseudo_ok(name, value)
        else:
            ok = _field_ok(name, value)
        if not ok:
            return False
    return True


def start_call(
    vm: PluginVm, cluster: str, pairs: list[tuple[bytes, bytes]], body: bytes, timeout_ms: int
) -> int | None:
    """Start the call as a task of ``vm``; its token, or None (refused: BAD_ARGUMENT)."""
    if not head_ok(pairs):
        log.warning("wasm filter %r: http call to %r with an invalid head", vm.name, cluster)
        return None
    pool = vm_pool(vm, cluster, "http")
    if pool is None:
        return None
    token = next(vm.tokens)
    root = vm.active  # the response goes to the caller's root context
    task = vm.spawn_call(_call(vm, token, root, pool, pairs, body, timeout_ms))
    owner = vm.host.stream
    if owner is not None:  # cancelled if its client leaves (core.wasm.context_end)
        vm.http_call_owners[token] = (owner, task)
        task.add_done_callback(lambda _: vm.http_call_owners.pop(token, None))
    return token


async def _call(
    vm: PluginVm,
    token: int,
    root: Root,
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
            pseudo.get(b":authority") or (pool.cfg.host_header or "").encode("latin-1"),
            headers,
            body,
            (timeout_ms or 5000) / 1000,
        )
        result = HttpCallResult(status, [(k.lower(), v) for k, v in resp_headers], resp_body)
    except asyncio.CancelledError:
        if vm.closed or root.context_id not in vm.roots:
            raise  # the plugin is closed: nobody to tell
        # Its HTTP context's client left (core.wasm.context_end): a failed call for the
        # root context, so that the SDK forgets it.
        result.message = "cancelled: the HTTP context that made the call ended"
    except Exception as exc:  # the plugin learns of failures through num_headers == 0
        result.message = str(exc)
        log.warning("wasm filter %r: http call %d failed: %s", vm.name, token, exc)
    if root.context_id not in vm.roots:
        return  # its plugin was closed meanwhile
    vm.host.call_result = result
    try:
        n = len(result.headers) + 1 if result.status else 0
        vm.call(None, "proxy_on_http_call_response", root.context_id, token, n, len(result.body), 0)
    except WasmTrap:
        pass  # counted and logged by vm.call; WasmUnavailable: cut off meanwhile
    finally:
        vm.host.call_result = None
