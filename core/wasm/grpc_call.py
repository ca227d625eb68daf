"""``proxy_grpc_call``: a unary gRPC call from a plugin through one of the gateway's
upstreams, and the callback with its outcome.

The ``service`` argument names the upstream, as a cluster name does for
``proxy_http_call`` (:mod:`core.wasm.clusters`); Envoy's serialized ``GrpcService``
is not read. The call is ``POST /<service name>/<method>`` with
``content-type: application/grpc`` and the message in one gRPC frame, over the
upstream's own connections (``protocol = "h2c"`` or ``"h2"`` for a gRPC server).

The context that made the call (its HTTP context, or the root context) then gets
one callback, as Envoy's unary calls do (no metadata callbacks; those are for
streams): ``proxy_on_grpc_receive`` with the reply (buffer 5) when the call ends
with status OK and a message, else ``proxy_on_grpc_close`` with the gRPC status
(``proxy_get_status`` also gives its message). A call that fails, or an upstream
that does not answer HTTP 200, closes with UNAVAILABLE (14); one past its timeout
(``0``: 5 s) with DEADLINE_EXCEEDED (4); OK without a message with INTERNAL (13).
``proxy_grpc_cancel`` or ``proxy_grpc_close`` on its token cancels it: no callback
follows. A call an HTTP context made is cancelled when that context ends. An unknown
cluster is ``PARSE_FAILURE`` at once, as in Envoy (SDKs expect that status).
Streams: :mod:`core.wasm.grpc_stream`.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from core.errors import UpstreamTimeout
from core.upstream import UpstreamPool, fetch
from core.wasm.clusters import vm_pool
from core.wasm.host import GrpcCallResult, _field_ok
from core.wasm.vm import WasmTrap

if TYPE_CHECKING:
    from core.wasm.host import Stream
    from core.wasm.plugin import PluginVm
    from core.wasm.sharing import Root

log = logging.getLogger("wasmgate.wasm")
_NAME = re.compile(rb"[A-Za-z0-9_.]+")  # a service or method name: no "/" or "?"
OK, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE = 0, 4, 13, 14


def grpc_target(
    vm: PluginVm,
    cluster: str,
    service: bytes,
    method: bytes,
    metadata: list[tuple[bytes, bytes]],
    kind: str,
) -> tuple[UpstreamPool, bytes] | str:
    """The pool and path of a gRPC ``kind`` ("call" or "stream"), or why not ("head":
    names or metadata it cannot send; "cluster": an unknown one)."""
    ok = _NAME.fullmatch(service) and _NAME.fullmatch(method)
    if not ok or not all(n[:1] != b":" and _field_ok(n, v) for n, v in metadata):
        log.warning("wasm filter %r: grpc %s to %r with an invalid head", vm.name, kind, cluster)
        return "head"
    pool = vm_pool(vm, cluster, "grpc")
    if pool is None:
        return "cluster"
    return pool, b"/" + service + b"/" + method


def start_grpc_call(
    vm: PluginVm,
    cluster: str,
    service: bytes,
    method: bytes,
    metadata: list[tuple[bytes, bytes]],
    message: bytes,
    timeout_ms: int,
) -> int | str:
    """Start the call as a task of ``vm``: its token, or why not ("cluster": an unknown
    one, PARSE_FAILURE as in Envoy; "head": names or metadata it cannot send)."""
    target = grpc_target(vm, cluster, service, method, metadata, "call")
    if isinstance(target, str):
        return target
    pool, path = target
    token = next(vm.tokens)
    owner = vm.host.stream  # the HTTP context making the call; None: the root context
    call = _call(vm, token, vm.active, owner, pool, path, metadata, message, timeout_ms)
    task = vm.grpc_calls[token] = vm.spawn_call(call)
    if owner is not None:  # cancelled when it ends (grpc_stream.close_owned), as in Envoy
        vm.grpc_call_owners[token] = owner

    def forget(_: object) -> None:
        vm.grpc_calls.pop(token, None)
        vm.grpc_call_owners.pop(token, None)

    task.add_done_callback(forget)
    return token


async def _call(
    vm: PluginVm,
    token: int,
    root: Root,
    owner: Stream | None,
    pool: UpstreamPool,
    path: bytes,
    metadata: list[tuple[bytes, bytes]],
    message: bytes,
    timeout_ms: int,
) -> None:
    headers = [(b"content-type", b"application/grpc"), *metadata]
    body = b"\0" + len(message).to_bytes(4, "big") + message
    result = GrpcCallResult()
    trailers: list[tuple[bytes, bytes]] = []
    authority = (pool.cfg.host_header or "").encode("latin-1")
    try:
        status, initial, reply = await fetch(
            pool, "POST", path, authority, headers, body, (timeout_ms or 5000) / 1000, trailers
        )
        result = _outcome(status, [(k.lower(), v) for k, v in initial], reply, trailers)
    except UpstreamTimeout as exc:
        result.status, result.text = DEADLINE_EXCEEDED, str(exc)
    except Exception as exc:  # the plugin learns of failures through the close status
        result.text = str(exc)
        log.warning("wasm filter %r: grpc call %d failed: %s", vm.name, token, exc)
    if root.context_id not in vm.roots:
        return  # its plugin was closed meanwhile
    if owner is not None and owner.id not in vm.streams:
        return  # its HTTP context ended meanwhile
    if result.status == OK and result.message is None:
        result.status, result.text = INTERNAL, "no message in the reply"
    vm.host.grpc_result = result
    context_id = owner.id if owner is not None else root.context_id
    try:
        # Envoy's unary calls: the reply on success, the status otherwise, nothing more.
        if result.status == OK and result.message is not None:
            vm.call(owner, "proxy_on_grpc_receive", context_id, token, len(result.message))
        else:
            vm.call(owner, "proxy_on_grpc_close", context_id, token, result.status)
    except WasmTrap:
        pass  # counted and logged by vm.call
    finally:
        vm.host.grpc_result = None


def _outcome(
    status: int,
    initial: list[tuple[bytes, bytes]],
    reply: bytes,
    trailers: list[tuple[bytes, bytes]],
) -> GrpcCallResult:
    """The call's metadata, first message and status from the HTTP/2 response."""
    result = GrpcCallResult(initial=initial)
    if status != 200:
        result.text = f"upstream answered HTTP {status}"
        return result
    # A trailers-only response has its status among the initial headers.
    fields = dict(trailers or initial)
    code = fields.get(b"grpc-status")
    result.status = int(code) if code is not None and code.isdigit() else 2  # UNKNOWN
    result.text = fields.get(b"grpc-message", b"").decode("utf-8", "replace")
    result.trailing = [(k.lower(), v) for k, v in trailers]
    if not trailers:
        result.initial = [(k, v) for k, v in initial if not k.startswith(b"grpc-")]
    if len(reply) >= 5:
        size = int.from_bytes(reply[1:5], "big")
        result.message = reply[5 : 5 + size]
    return result
