"""A Proxy-Wasm plugin as a wasmgate filter.

:class:`PluginVm` owns one module instance and its root context: it runs the start
functions, ``proxy_on_context_create(root, 0)``, ``proxy_on_vm_start`` and
``proxy_on_configure`` (a plugin that rejects its configuration is refused at load
time), creates a stream context per request, dispatches every callback on the arity the
module actually exports (real modules do not always match their ABI marker), and after
any trap throws the instance away; the next request builds a fresh one. A module that
exports no HTTP callbacks, or whose HTTP context creation traps (a Rust SDK plugin that
only registers a root context), runs as a root-only plugin: ticks and queues, no
per-request contexts.

:class:`WasmFilter` presents the plugin to the chain exactly like a Python filter
(Kong's rule: a Proxy-Wasm filter looks like a native plugin): request phase →
``proxy_on_request_headers`` (and ``_body`` when the module exports it; the body is
then buffered and given whole, with end_of_stream set), response phase →
``proxy_on_response_headers`` (and ``_body``), ``on_log`` → ``proxy_on_done``,
``proxy_on_log``, ``proxy_on_delete``. ``Pause`` suspends the request until
``proxy_continue_stream`` or a local response (from an HTTP call's callback or a tick),
bounded by ``pause_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable
from typing import Any

import wasmtime

from core.errors import PluginError
from core.metrics import count_wasm
from core.upstream import UpstreamPool, fetch
from core.wasm.abi import ABI_MARKERS, HTTP_CALLBACKS, Action
from core.wasm.host import Host, HttpCallResult, Stream, resolver
from core.wasm.vm import Instance, WasmTrap, exported_markers
from plugin_sdk import Context, Filter, LocalReply, PluginConfig
from plugin_sdk.chain import reply_response
from plugin_sdk.filter import maybe_async

log = logging.getLogger("wasmgate.wasm")


class PluginVm:
    """One configured Proxy-Wasm plugin: its instance, root context and streams."""

    def __init__(
        self,
        name: str,
        module: wasmtime.Module,
        *,
        config: bytes,
        vm_config: bytes = b"",
        root_id: str = "",
        vm_id: str = "",
        memory_limit: int = 64 << 20,
        deadline_ms: int = 50,
        pause_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.module: wasmtime.Module | None = module
        self.closed = False
        self.config_bytes = config
        self.vm_config = vm_config
        self.root_id_name = root_id
        self.vm_id = vm_id or name
        self.memory_limit = memory_limit
        self.deadline_ms = deadline_ms
        self.pause_timeout = pause_timeout
        self.listen_address = ""
        markers = exported_markers(module, list(ABI_MARKERS))
        self.abi = ABI_MARKERS[markers[0]] if markers else "unknown"
        exports = {e.name for e in module.exports}
        self.root_only = not any(cb in exports for cb in HTTP_CALLBACKS)
        self.host = Host(self)
        self.instance: Instance | None = None
        self.root_id = 1
        self._ids = itertools.count(2)
        self._tokens = itertools.count(1)
        self.streams: dict[int, Stream] = {}
        self.traps = 0
        self.rebuilds = 0
        self.tick_ms = 0
        self._tick: asyncio.TimerHandle | None = None
        self.pools: dict[str, UpstreamPool] = {}
        self._calls: set[asyncio.Task[None]] = set()
        self._start()

    # -- lifecycle

    def _start(self) -> None:
        assert self.module is not None, "a closed PluginVm is never started again"
        inst = Instance(
            self.module,
            resolver(self.host),
            memory_limit=self.memory_limit,
            deadline_ms=self.deadline_ms,
            name=self.name,
        )
        self.host.instance = inst
        self.host.stream = None
        if inst.has("_initialize"):
            inst.call("_initialize")
            if inst.has("main"):
                inst.call("main", 0, 0)
        elif inst.has("_start"):
            inst.call("_start")
        inst.call("proxy_on_context_create", self.root_id, 0)
        if inst.has("proxy_on_vm_start") and not inst.call(
            "proxy_on_vm_start", self.root_id, len(self.vm_config)
        ):
            raise PluginError(f"wasm filter {self.name!r}: proxy_on_vm_start returned false")
        if inst.has("proxy_on_configure") and not inst.call(
            "proxy_on_configure", self.root_id, len(self.config_bytes)
        ):
            raise PluginError(
                f"wasm filter {self.name!r} rejected its configuration (proxy_on_configure "
                "returned false; see its log lines above)"
            )
        self.instance = inst

    def ensure(self) -> Instance:
        """The live instance; a trapped one is rebuilt first."""
        if self.instance is None:
            if self.closed:
                raise WasmTrap(
                    f"wasm filter {self.name!r} is closed (its configuration was replaced)"
                )
            self.rebuilds += 1
            count_wasm(self.name, rebuild=True)
            log.warning("rebuilding wasm filter %r after a trap", self.name)
            self._start()
            if self.tick_ms:
                self.set_tick(self.tick_ms)
        assert self.instance is not None
        return self.instance

    def _trapped(self, exc: WasmTrap) -> None:
        self.traps += 1
        count_wasm(self.name)
        self._drop_instance()
        for stream in self.streams.values():
            if stream.resume is not None:
                stream.resume()
        self.streams.clear()
        log.error("wasm filter %r trapped: %s", self.name, exc)

    def call(self, stream: Stream | None, name: str, *args: int) -> int | None:
        """Call a callback with ``stream`` as the effective context; args cut to its arity."""
        inst = self.instance or self.ensure()
        export = inst.exports.get(name)
        if export is None:
            return None
        self.host.stream = stream
        try:
            return inst.call_export(export, name, args[: export.nparams])
        except WasmTrap as exc:
            self._trapped(exc)
            raise

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        for task in self._calls:
            task.cancel()
        self._drop_instance()
        # The compiled module maps its code from the cache file (one fd each): let it go
        # now, even if something still holds this closed VM (an idle connection's last
        # request, say). A closed VM is never started again.
        self.module = None
        self.closed = True

    def _drop_instance(self) -> None:
        if self.instance is not None:
            self.instance.close()
        self.instance = None
        self.host.instance = None

    # -- streams

    def open_stream(self, ctx: Context) -> Stream | None:
        if self.root_only:
            return None
        self.ensure()
        stream = Stream(next(self._ids), ctx)
        self.streams[stream.id] = stream
        try:
            self.call(stream, "proxy_on_context_create", stream.id, self.root_id)
        except WasmTrap:
            log.warning(
                "wasm filter %r cannot create an HTTP context; running it root-only", self.name
            )
            self.root_only = True
            self.ensure()  # its root context (config, timers) is all it has: restore it now
            return None
        return stream

    def finish_stream(self, stream: Stream) -> None:
        """``proxy_on_log`` and ``proxy_on_delete`` (after on_done or proxy_done)."""
        try:
            self.call(stream, "proxy_on_log", stream.id)
            self.call(stream, "proxy_on_delete", stream.id)
        finally:
            self.streams.pop(stream.id, None)

    def done(self, stream: Stream) -> None:
        if stream.id not in self.streams or self.instance is None:
            return
        completed = self.call(stream, "proxy_on_done", stream.id)
        if completed is None or completed:
            self.finish_stream(stream)
        else:
            stream.done_pending = True  # the plugin calls proxy_done later

    # -- timers, queues, calls out

    def set_tick(self, period_ms: int) -> None:
        self.tick_ms = period_ms
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if period_ms:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # loading (no loop yet): started by bind() when serving
            self._tick = loop.call_later(period_ms / 1000, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        with contextlib.suppress(WasmTrap):  # counted and logged; the next tick rebuilds
            self.call(None, "proxy_on_tick", self.root_id)
        if self.tick_ms and self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(self.tick_ms / 1000, self._on_tick)

    def queue_ready(self, qid: int) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon(self._queue_ready, qid)

    def _queue_ready(self, qid: int) -> None:
        with contextlib.suppress(WasmTrap):
            self.call(None, "proxy_on_queue_ready", self.root_id, qid)

    def bind(self, pools: dict[str, UpstreamPool], listen_address: str) -> None:
        """Called when the gateway serves: upstreams for HTTP calls, tick timer."""
        self.pools = pools
        self.listen_address = listen_address
        if self.tick_ms:
            self.set_tick(self.tick_ms)

    def http_call(
        self, upstream: str, pairs: list[tuple[bytes, bytes]], body: bytes, timeout_ms: int
    ) -> int | None:
        pool = self.pools.get(upstream)
        if pool is None:
            log.warning("wasm filter %r: http call to unknown upstream %r", self.name, upstream)
            return None
        token = next(self._tokens)
        task = asyncio.get_running_loop().create_task(
            self._http_call(token, pool, pairs, body, timeout_ms)
        )
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return token

    async def _http_call(
        self,
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
            log.warning("wasm filter %r: http call %d failed: %s", self.name, token, exc)
        self.host.call_result = result
        try:
            n = len(result.headers) + 1 if result.status else 0
            self.call(
                None, "proxy_on_http_call_response", self.root_id, token, n, len(result.body), 0
            )
        except WasmTrap:
            pass
        finally:
            self.host.call_result = None


class WasmFilter(Filter[PluginConfig]):
    """A :class:`PluginVm` behind the filter contract (see the module docstring)."""

    def __init__(self, vm: PluginVm, bodies: tuple[str, ...] = ()) -> None:
        super().__init__(PluginConfig())
        self.vm = vm
        # The manifest's JSON Schema of the config, when there is one (the admin API
        # redacts by it); set by build_wasm_filter.
        self.config_schema: dict[str, Any] | None = None
        self._key = f"wasm.{id(self)}"
        assert vm.module is not None
        exports = {e.name for e in vm.module.exports}
        # SDKs export every callback whether the filter uses it or not, so bodies are
        # delivered only when the configuration asks (`bodies`): buffering them costs.
        # Instance attributes: the chain reads them per filter instance.
        wants = {b for b in bodies if f"proxy_on_{b}_body" in exports}
        self.request_body = "request" in wants  # type: ignore[misc]
        self.response_body = "response" in wants  # type: ignore[misc]
        if vm.root_only:
            self.skip_phases |= {"on_request", "on_response", "on_log"}

    @property
    def traps(self) -> int:
        return self.vm.traps

    async def _outcome(self, stream: Stream, action: int | None) -> LocalReply | None:
        if stream.local_reply is None and action == Action.PAUSE:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            stream.paused = True

            def resume() -> None:
                if not waiter.done():
                    waiter.set_result(None)

            stream.resume = resume
            try:
                await asyncio.wait_for(waiter, self.vm.pause_timeout)
            except TimeoutError:
                raise PluginError(
                    f"wasm filter {self.name!r} paused the stream for over "
                    f"{self.vm.pause_timeout:g}s"
                ) from None
            finally:
                stream.paused = False
                stream.resume = None
            if stream.id not in self.vm.streams and stream.local_reply is None:
                raise WasmTrap(f"wasm filter {self.name!r} trapped while the stream was paused")
        return stream.local_reply

    @maybe_async
    def on_request(self, ctx: Context) -> LocalReply | Awaitable[LocalReply | None] | None:
        stream = self.vm.open_stream(ctx)
        if stream is None:
            return None
        ctx.state[self._key] = stream
        req = ctx.request
        # end_of_stream says whether body callbacks follow: when the filter does not get
        # the body (`bodies`), it must not wait for one.
        has_body = self.request_body and bool(getattr(req, "has_body", False) or req.body)
        n = len(req.headers) + 4
        action = self.vm.call(stream, "proxy_on_request_headers", stream.id, n, int(not has_body))
        if action == Action.PAUSE and stream.local_reply is None:
            return self._request_paused(stream)  # the rare case: a coroutine to await
        if stream.local_reply is None and self.request_body and req.body is not None:
            return self._request_body(stream)
        return stream.local_reply

    async def _request_paused(self, stream: Stream) -> LocalReply | None:
        reply = await self._outcome(stream, Action.PAUSE)
        if reply is None and self.request_body and stream.ctx.request.body is not None:
            return await self._request_body(stream)
        return reply

    async def _request_body(self, stream: Stream) -> LocalReply | None:
        body = stream.ctx.request.body or b""
        action = self.vm.call(stream, "proxy_on_request_body", stream.id, len(body), 1)
        return await self._outcome(stream, action)

    @maybe_async
    def on_response(self, ctx: Context) -> Awaitable[None] | None:
        stream = ctx.state.get(self._key)
        resp = ctx.response
        if not isinstance(stream, Stream) or resp is None or stream.id not in self.vm.streams:
            return None
        stream.local_reply = None
        eos = int(not self.response_body or resp.body is None)
        action = self.vm.call(
            stream, "proxy_on_response_headers", stream.id, len(resp.headers) + 1, eos
        )
        if (action == Action.PAUSE and stream.local_reply is None) or (
            self.response_body and resp.body is not None
        ):
            return self._response_rest(stream, action)  # waits, or the body callback
        if stream.local_reply is not None:
            ctx.response = reply_response(stream.local_reply)
        return None

    async def _response_rest(self, stream: Stream, action: int | None) -> None:
        ctx = stream.ctx
        reply = stream.local_reply
        if action == Action.PAUSE and reply is None:
            reply = await self._outcome(stream, action)
        resp = ctx.response
        if reply is None and self.response_body and resp is not None and resp.body is not None:
            action = self.vm.call(stream, "proxy_on_response_body", stream.id, len(resp.body), 1)
            reply = await self._outcome(stream, action)
        if reply is not None:
            ctx.response = reply_response(reply)

    def on_log(self, ctx: Context) -> None:
        stream = ctx.state.pop(self._key, None)
        if isinstance(stream, Stream):
            self.vm.done(stream)

    def bind_gateway(self, pools: dict[str, UpstreamPool], listen_address: str) -> None:
        self.vm.bind(pools, listen_address)

    def close(self) -> None:
        self.vm.close()


def describe(vm: PluginVm) -> dict[str, Any]:
    return {"abi": vm.abi, "root_only": vm.root_only, "traps": vm.traps, "rebuilds": vm.rebuilds}
