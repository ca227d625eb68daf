"""The trailer callbacks of a Proxy-Wasm filter (:class:`TrailerCallbacks`, a part of
:class:`core.wasm.adapter.WasmFilter`), in Envoy's order.

``proxy_on_request_trailers`` runs when the request's trailers are about to go
upstream, ``proxy_on_response_trailers`` once an upstream's came (the chain calls
the hooks: core/exchange_trailers.py), each with its trailer map (1, 3) readable and
writable. What it returns counts: Continue lets the trailers go on, StopIteration
holds them and the end of the message until ``proxy_continue_stream`` (bounded by
``pause_timeout``), a local response answers (after a response head: the response
is reset).

When trailers follow a body, the last body callback says ``end_of_stream = false``
and the trailer callback comes after it, once; the end of the body gets no body
callback of its own. A body callback that stopped on the last data
(StopIterationAndBuffer) keeps the body for the trailer callback, which comes at
once (:meth:`TrailerCallbacks._trailers_now`) and whose action then decides for both.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from core.bodies import ChunkError
from core.wasm.abi import Action
from core.wasm.host import Stream
from plugin_sdk import Context, Headers, LocalReply
from plugin_sdk.filter import ChunkResult, ChunkResume

if TYPE_CHECKING:
    from core.wasm.plugin import PluginVm

TRAILER_CALLBACKS = ("proxy_on_request_trailers", "proxy_on_response_trailers")


class TrailerCallbacks:
    """Trailer callbacks of a WasmFilter (see the module docstring)."""

    # What the filter has (core/wasm/adapter.py).
    vm: PluginVm
    _key: str
    _trailer_cbs: tuple[bool, ...]  # the module takes trailers, per side (0, 1)
    _trailers_ran: set[tuple[int, int]]  # (stream id, side) whose callback came first

    if TYPE_CHECKING:

        async def _outcome(self, stream: Stream, action: int | None) -> LocalReply | None: ...
        def _hold_end(self, stream: Stream, side: int, resume: ChunkResume) -> None: ...

    def _request_trailers(self, ctx: Context) -> LocalReply | Awaitable[LocalReply | None] | None:
        """The request's trailers are about to go upstream (after the body callbacks):
        the module reads and changes them in its trailer map (1). StopIteration holds
        them, and the request's end, until proxy_continue_stream (or pause_timeout),
        as in Envoy; a local response answers instead."""
        return self._trailers(ctx, 0)

    def _response_trailers(self, ctx: Context) -> LocalReply | Awaitable[LocalReply | None] | None:
        """The response's trailers came (an HTTP/2 upstream's, after its body): the
        module reads and changes them in its trailer map (3). StopIteration holds them,
        and the response's end, until proxy_continue_stream (or pause_timeout); a local
        response resets a response whose head went (core/exchange_trailers.py)."""
        return self._trailers(ctx, 1)

    def _trailers(
        self, ctx: Context, side: int
    ) -> LocalReply | Awaitable[LocalReply | None] | None:
        stream = ctx.state.get(self._key)
        if not isinstance(stream, Stream) or stream.id not in self.vm.streams:
            return None
        if self._trailers_ran and (stream.id, side) in self._trailers_ran:
            return None  # a body callback's stop brought it already (see _trailers_now)
        if trailers_of(ctx, side) is None:
            return None
        action = self._trailers_call(stream, side)
        if stream.local_reply is None and action == Action.PAUSE:
            return self._outcome(stream, action)
        return stream.local_reply

    def _trailers_follow(self, ctx: Context, side: int) -> bool:
        """Whether the module's trailer callback comes after this body: then its last
        body callback says end_of_stream = false, as in Envoy."""
        return self._trailer_cbs[side] and trailers_of(ctx, side) is not None

    def _trailers_call(self, stream: Stream, side: int) -> int | None:
        """The trailer callback, once per message side."""
        self._trailers_ran.add((stream.id, side))
        trailers = trailers_of(stream.ctx, side)
        n = len(trailers) if trailers is not None else 0
        return self.vm.call(stream, TRAILER_CALLBACKS[side], stream.id, n)

    def _trailers_now(self, stream: Stream, side: int, resume: ChunkResume) -> ChunkResult:
        """The body callback stopped on the last data, with trailers to come: as in
        Envoy, the trailer callback comes next, and its action lets the held body go
        (Continue), keeps it with the trailers until proxy_continue_stream
        (StopIteration), or answers."""
        try:
            action = self._trailers_call(stream, side)
        except Exception as exc:
            pending = stream.body[side]
            stream.body[side] = None
            raise ChunkError(bytes(pending or b""), exc) from exc
        if stream.local_reply is not None:
            stream.body[side] = None
            return stream.local_reply
        if action == Action.PAUSE:
            self._hold_end(stream, side, resume)
            return None
        out = stream.body[side]
        stream.body[side] = None
        return bytes(out or b"")


def trailers_of(ctx: Context, side: int) -> Headers | None:
    """The request's (0) or the response's (1) trailers, when there are any."""
    if side == 0:
        return ctx.request.trailers
    resp = ctx.response
    return resp.trailers if resp is not None else None
