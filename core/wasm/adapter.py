"""A Proxy-Wasm plugin behind the filter contract.

:class:`WasmFilter` presents the plugin to the chain exactly like a Python filter
(Kong's rule: a Proxy-Wasm filter looks like a native plugin): request phase →
``proxy_on_request_headers`` (and ``_body`` when the module exports it; the body is
then buffered and given whole, with end_of_stream set), response phase →
``proxy_on_response_headers`` (and ``_body``), ``on_log`` → ``proxy_on_done``,
``proxy_on_log``, ``proxy_on_delete``. ``Pause`` suspends the request until
``proxy_continue_stream`` or a local response (from an HTTP call's callback or a tick),
bounded by ``pause_timeout``.

When the plugin cannot run (over its CPU budget, or backing off before a rebuild)
a request gets the filter's fail strategy without a call into the guest: skipped
(``fail_open``) or a 503 with Retry-After; either is counted in
``wasmgate_wasm_refused_total{filter,reason}``. A request that finds the instance
being rebuilt waits for it (the rebuild runs off the event loop).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import Any

from core.errors import PluginError
from core.metrics import count_wasm_refused
from core.upstream import UpstreamPool
from core.wasm.abi import Action
from core.wasm.host import Stream
from core.wasm.plugin import PluginVm
from core.wasm.sharing import Root
from core.wasm.vm import WasmTrap
from plugin_sdk import Context, Filter, LocalReply, PluginConfig
from plugin_sdk.chain import reply_response
from plugin_sdk.filter import maybe_async


class WasmFilter(Filter[PluginConfig]):
    """A :class:`PluginVm` behind the filter contract (see the module docstring)."""

    def __init__(
        self,
        vm: PluginVm,
        bodies: tuple[str, ...] = (),
        *,
        fail_open: bool = False,
        root: Root | None = None,
        service: bool = False,
    ) -> None:
        super().__init__(PluginConfig())
        self.vm = vm
        self.root = root or vm.roots[vm.root_id]  # its root context in the (shared) VM
        self.service = service  # a [services.NAME]: root-only, on no route
        self.fail_open = fail_open
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
        if vm.root_only or service:
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
                raise WasmTrap(
                    f"wasm filter {self.name!r} stopped (a trap, or its CPU budget) while "
                    "the stream was paused"
                )
        return stream.local_reply

    @maybe_async
    def on_request(self, ctx: Context) -> LocalReply | Awaitable[LocalReply | None] | None:
        vm = self.vm
        if vm.instance is None or vm.budget.until:  # the rare cases: look closer
            now = time.monotonic()
            reason = vm.refused(now)
            if reason is not None:
                return self._refuse(reason, now)
            if vm.instance is None:
                return self._after_rebuild(ctx)
        return self._request(ctx)

    def _refuse(self, reason: str, now: float) -> LocalReply | None:
        """The fail strategy, without calling the guest: skip it, or 503."""
        count_wasm_refused(self.name, reason)
        if self.fail_open:
            return None
        why = "over its CPU budget" if reason == "cpu_budget" else "trapping repeatedly"
        retry = str(max(1, math.ceil(self.vm.retry_after(now))))
        return LocalReply(
            503,
            {"content-type": "text/plain; charset=utf-8", "retry-after": retry},
            f"filter {self.name} is unavailable ({why})\n",
        )

    async def _after_rebuild(self, ctx: Context) -> LocalReply | None:
        await self.vm.rebuilt()
        result = self._request(ctx)
        if isinstance(result, Awaitable):
            return await result
        return result

    def _request(self, ctx: Context) -> LocalReply | Awaitable[LocalReply | None] | None:
        stream = self.vm.open_stream(ctx, self.root)
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

    def bind_gateway(
        self,
        pools: dict[str, UpstreamPool],
        listen_address: str,
        clusters: dict[str, str] | None = None,
    ) -> None:
        self.vm.bind(pools, listen_address, clusters)

    def close(self) -> None:
        self.vm.release(self.root)
