"""A Proxy-Wasm plugin behind the filter contract.

:class:`WasmFilter` presents the plugin to the chain exactly like a Python filter
(Kong's rule: a Proxy-Wasm filter looks like a native plugin): request phase →
``proxy_on_request_headers``, response phase → ``proxy_on_response_headers``,
``on_log`` → ``proxy_on_done``, ``proxy_on_log``, ``proxy_on_delete``. ``Pause``
from a header callback suspends the request until ``proxy_continue_stream`` or a
local response (from an HTTP call's callback or a tick), bounded by ``pause_timeout``.

Bodies go as Envoy gives them: when the module exports ``proxy_on_request_body`` /
``proxy_on_response_body`` (and ``bodies`` does not opt out), the filter's chunk hooks
(:mod:`core.bodies`) call them per chunk as the body streams, ``end_of_stream`` on the
last. ``Continue`` passes the chunk on (with what ``proxy_set_buffer_bytes`` made of
it); ``StopIterationAndBuffer`` / ``StopIterationAndWatermark`` hold it, and the next
call gets the accumulation (bounded by ``limits.max_buffer_bytes``); stopping on the
last chunk keeps the body until ``proxy_continue_stream`` (or ``pause_timeout``). The
header callbacks get ``end_of_stream = false`` when a body follows; one that stops
then does not wait: the body callbacks decide, as in Envoy. When a Python filter on
the route buffered the whole body, the body callback gets it whole, once.

A client that leaves ends the stream's context at once, whatever it waits for
(:mod:`core.wasm.context_end`), as Envoy destroys a stream.

Trailers come as Envoy orders them (:mod:`core.wasm.adapter_trailers`): when trailers
follow a body, the last body callback says ``end_of_stream = false`` and the trailer
callback comes after it, and what it returns holds or lets go the message's end.

When the plugin cannot run (over its CPU budget, or backing off before a rebuild)
a request gets the filter's fail strategy without a call into the guest: skipped
(``fail_open``) or a 503 with Retry-After; either is counted in
``wasmgate_wasm_refused_total{filter,reason}``. A request that finds the instance
being rebuilt waits for it (the rebuild runs off the event loop).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from core.bodies import BodyTooLarge, ChunkError
from core.errors import PluginError
from core.metrics import count_wasm_refused
from core.upstream import UpstreamPool
from core.wasm.abi import Action
from core.wasm.adapter_trailers import TRAILER_CALLBACKS, TrailerCallbacks
from core.wasm.context_end import end_context
from core.wasm.host import Stream
from core.wasm.phases import BODY_CALLBACKS as _BODY_CALLBACKS
from core.wasm.phases import Phases, stops
from core.wasm.plugin import PluginVm
from core.wasm.sharing import Root
from core.wasm.vm import WasmTrap
from plugin_sdk import Context, Filter, LocalReply, PluginConfig
from plugin_sdk.chain import reply_response
from plugin_sdk.filter import ChunkResult, ChunkResume, maybe_async


class WasmFilter(TrailerCallbacks, Filter[PluginConfig]):
    """A :class:`PluginVm` behind the filter contract (see the module docstring)."""

    def __init__(
        self,
        vm: PluginVm,
        bodies: tuple[str, ...] | None = None,
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
        # Data held before the end of a body, by (stream id, side): what lets it go on
        # when the filter calls proxy_continue_stream (see _hold_more).
        self._releases: dict[tuple[int, int], Callable[[], None]] = {}
        assert vm.module is not None
        exports = {e.name for e in vm.module.exports}
        # Body callbacks for every body the module takes (Envoy's rule), unless the
        # configuration opts out (`bodies` lists the directions to keep). A module that
        # exports none gets no chunk hook, so its chunks cost nothing.
        wants = {"request", "response"} if bodies is None else set(bodies)
        if vm.root_only or service:  # no HTTP contexts: nothing to give bodies to
            wants = set()
        self._told = ("request" in wants, "response" in wants)  # end_of_stream truthful
        # Whether the module takes trailers, per side (0 request, 1 response).
        self._trailer_cbs = tuple(
            not (vm.root_only or service) and name in exports for name in TRAILER_CALLBACKS
        )
        # (stream id, side) whose trailer callback a body callback's stop brought first.
        self._trailers_ran: set[tuple[int, int]] = set()
        # The common case of every phase and hook, compiled (core/wasm/phases.py); the
        # instance's phases are its methods, so the chain calls them directly. The
        # class's methods below say what the phases are (maybe_async) and hand over.
        self._phases = phases = Phases(
            self, vm, self.root, self._key, self._told, self._trailer_cbs,
            self._releases, self._trailers_ran,
        )  # fmt: skip
        self.on_request = phases.on_request  # type: ignore[method-assign]
        self.on_response = phases.on_response  # type: ignore[method-assign]
        self.on_log = phases.on_log  # type: ignore[method-assign]
        if "request" in wants and _BODY_CALLBACKS[0] in exports:
            self.request_chunks = phases.request_chunk
            phases.request_bodies = True
        if "response" in wants and _BODY_CALLBACKS[1] in exports:
            self.response_chunks = phases.response_chunk
            phases.response_bodies = True
        if self._trailer_cbs[0]:
            self.request_trailers = self._request_trailers
        if self._trailer_cbs[1]:
            self.response_trailers = self._response_trailers
        if vm.root_only or service:
            self.skip_phases |= {"on_request", "on_response", "on_log"}
        else:
            self.client_gone = self._client_gone

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
        return self._phases.on_request(ctx)

    async def _after_sync(self, ctx: Context) -> LocalReply | None:
        mirror = self.vm.shared.mirror
        if mirror is not None:
            await mirror.first_sync()
        result = self._request(ctx)
        if isinstance(result, Awaitable):
            return await result
        return result

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
        return self._phases.request(ctx)

    def _request_stopped(
        self, stream: Stream, action: int | None, has_body: bool
    ) -> LocalReply | Awaitable[LocalReply | None] | None:
        """What the request phase returns after ``proxy_on_request_headers``."""
        req = stream.ctx.request
        if stops(action) and stream.local_reply is None:
            if action == Action.PAUSE and has_body and self.request_chunks is not None:
                # Envoy's StopIteration with a body to come: the body callbacks still
                # come, and what they return decides (the head waits for them here).
                return None if req.body is None else self._request_body(stream)
            return self._request_paused(stream)  # the rare case: a coroutine to await
        if stream.local_reply is None and self.request_chunks and req.body is not None:
            return self._request_body(stream)  # a Python filter buffered it: whole, once
        return stream.local_reply

    async def _request_paused(self, stream: Stream) -> LocalReply | None:
        reply = await self._outcome(stream, Action.PAUSE)
        if reply is None and self.request_chunks and stream.ctx.request.body is not None:
            return await self._request_body(stream)
        return reply

    async def _request_body(self, stream: Stream) -> LocalReply | None:
        body = stream.ctx.request.body or b""
        follows = self._trailers_follow(stream.ctx, 0)
        action = self.vm.call(
            stream, "proxy_on_request_body", stream.id, len(body), int(not follows)
        )
        if follows and action and stream.local_reply is None:
            action = self._trailers_call(stream, 0)  # Envoy's next callback: it decides
        return await self._outcome(stream, action)

    @maybe_async
    def on_response(self, ctx: Context) -> Awaitable[None] | None:
        return self._phases.on_response(ctx)

    async def _response_rest(self, stream: Stream, action: int | None) -> None:
        ctx = stream.ctx
        reply = stream.local_reply
        if action == Action.PAUSE and reply is None:
            reply = await self._outcome(stream, action)
        resp = ctx.response
        if reply is None and self.response_chunks and resp is not None and resp.body:
            follows = self._trailers_follow(ctx, 1)
            action = self.vm.call(
                stream, "proxy_on_response_body", stream.id, len(resp.body), int(not follows)
            )
            if follows and action and stream.local_reply is None:
                action = self._trailers_call(stream, 1)
            reply = await self._outcome(stream, action)
        if reply is not None:
            ctx.response = reply_response(reply)

    # -- bodies as they stream (core.bodies calls these per chunk)

    def _chunk_rest(
        self,
        stream: Stream,
        data: bytes,
        end: bool,
        resume: ChunkResume,
        side: int,
        follows: bool,
    ) -> ChunkResult:
        """A body callback past the common case (core/wasm/phases.py): data held from
        before, a local reply meanwhile, trailers to come, or data waiting for
        proxy_continue_stream."""
        if self._releases and self._releases.pop((stream.id, side), None) is not None:
            stream.paused = False  # a new chunk came first: it decides what is held
            stream.resume = None
        held = stream.body[side]
        if follows and not data:
            # The body's end, trailers after it: no body callback (Envoy's next one is
            # the trailer callback); what the filter holds waits for that.
            if stream.local_reply is None and held:
                return self._trailers_now(stream, side, resume)
            stream.body[side] = None
            return stream.local_reply or bytes(held or b"")
        buf: bytes | bytearray
        if held is None:
            buf = data
        else:
            buf = held if isinstance(held, bytearray) else bytearray(held)
            buf += data
            if len(buf) > self.vm.limits.max_buffer_bytes:
                stream.body[side] = None
                raise BodyTooLarge(f"wasm filter {self.name!r} holds over max_buffer_bytes")
        if stream.local_reply is not None:  # from an HTTP call's answer or a tick meanwhile
            stream.body[side] = None
            return stream.local_reply
        stream.body[side] = buf
        try:
            eos = int(end and not follows)
            action = self.vm.call(stream, _BODY_CALLBACKS[side], stream.id, len(buf), eos)
        except Exception as exc:
            pending = stream.body[side]
            stream.body[side] = None
            raise ChunkError(bytes(pending or b""), exc) from exc
        return self._chunk_stopped(stream, side, end, follows, action, resume)

    def _chunk_stopped(
        self,
        stream: Stream,
        side: int,
        end: bool,
        follows: bool,
        action: int | None,
        resume: ChunkResume,
    ) -> ChunkResult:
        """What a body callback's answer (``action``) makes of the data it was given."""
        if stream.local_reply is not None:
            stream.body[side] = None
            return stream.local_reply
        if not action:  # Continue (0), or no such callback
            out = stream.body[side]
            stream.body[side] = None
            return out if isinstance(out, bytes) else bytes(out or b"")
        held = stream.body[side]
        if held is not None and len(held) > self.vm.limits.max_buffer_bytes:
            stream.body[side] = None
            raise BodyTooLarge(f"wasm filter {self.name!r} holds over max_buffer_bytes")
        if not end:  # StopIterationAndBuffer / AndWatermark: hold, and accumulate
            self._hold_more(stream, side, resume)
            return b""
        if follows:
            return self._trailers_now(stream, side, resume)
        self._hold_end(stream, side, resume)
        return None  # core.bodies waits for resume

    def _hold_more(self, stream: Stream, side: int, resume: ChunkResume) -> None:
        """Stopped before the last chunk: the data waits for the next chunk, or for
        proxy_continue_stream, which passes it on at once (as Envoy does)."""
        loop = asyncio.get_running_loop()
        key = (stream.id, side)

        def release() -> None:
            if self._releases.get(key) is not continued:
                return  # a later chunk (or the stream's end) came first
            del self._releases[key]
            stream.paused = False
            stream.resume = None
            out = stream.body[side]
            stream.body[side] = None
            if stream.local_reply is not None:
                resume(stream.local_reply)
            elif out:
                resume(bytes(out), False)

        def continued() -> None:  # from inside the guest: go on once it returned
            loop.call_soon(release)

        self._releases[key] = continued
        stream.paused = True
        stream.resume = continued

    def _hold_end(self, stream: Stream, side: int, resume: ChunkResume) -> None:
        """Stopped on the last chunk: keep the body until proxy_continue_stream."""
        loop = asyncio.get_running_loop()
        settled = False

        def finish(failure: Exception | None = None) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            timer.cancel()
            stream.paused = False
            stream.resume = None
            out = bytes(stream.body[side] or b"")
            stream.body[side] = None
            if failure is None and stream.id not in self.vm.streams and stream.local_reply is None:
                failure = WasmTrap(f"wasm filter {self.name!r} stopped while holding the body")
            if failure is not None:
                resume(ChunkError(out, failure))
            elif stream.local_reply is not None:
                resume(stream.local_reply)
            else:
                resume(out)

        timer = loop.call_later(
            self.vm.pause_timeout,
            finish,
            PluginError(
                f"wasm filter {self.name!r} held the body for over {self.vm.pause_timeout:g}s"
            ),
        )

        def continued() -> None:  # from inside the guest: go on once it returned
            loop.call_soon(finish)

        stream.paused = True
        stream.resume = continued

    def on_log(self, ctx: Context) -> None:
        self._phases.on_log(ctx)

    def _client_gone(self, ctx: Context) -> None:
        """The client left: the context ends now, as in Envoy (core/wasm/context_end.py)."""
        stream = ctx.state.get(self._key)
        if isinstance(stream, Stream):
            if self._releases:
                self._releases.pop((stream.id, 0), None)
                self._releases.pop((stream.id, 1), None)
            end_context(self.vm, stream)

    def bind_gateway(
        self,
        pools: dict[str, UpstreamPool],
        listen_address: str,
        clusters: dict[str, str] | None = None,
    ) -> None:
        self.vm.bind(pools, listen_address, clusters)

    def close(self) -> None:
        self.vm.release(self.root)
