"""The common case of a Proxy-Wasm filter's phases, as compiled code.

:class:`~core.wasm.adapter.WasmFilter` subclasses plugin_sdk's ``Filter``, which every
plugin subclasses and which therefore stays interpreted, so the adapter runs as
interpreted Python too. What nearly every request does through it lives here instead,
in a native class that scripts/compile.py builds with the rest of the data path: start
the stream and call ``proxy_on_request_headers``, call ``proxy_on_response_headers``,
give a body callback a chunk it lets through, end the stream. The filter hands its
phases and chunk hooks to a :class:`Phases` when it is built; whatever is rarer (a
refusal or a rebuild, a pause, a held body, trailers, a local reply's body) goes back
to the filter's own methods, which keep Envoy's rules in one place (the adapter's
module docstring).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from core.bodies import ChunkError
from core.upstream import ResponseHead
from core.wasm.abi import Action
from core.wasm.host import Stream
from plugin_sdk.chain import reply_response

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from core.wasm.adapter import WasmFilter
    from core.wasm.plugin import PluginVm
    from core.wasm.sharing import Root
    from plugin_sdk import Context, LocalReply
    from plugin_sdk.filter import ChunkResult, ChunkResume

BODY_CALLBACKS: Final = ("proxy_on_request_body", "proxy_on_response_body")
# core.wasm.abi.Action's values as plain ints: compiled, compared without an enum lookup.
CONTINUE: Final = Action.CONTINUE.value
PAUSE: Final = Action.PAUSE.value


def stops(action: int | None) -> bool:
    """Whether a header callback's answer stops: StopIteration (1), StopAllIteration
    AndBuffer / AndWatermark (3, 4: the body waits too)."""
    return action == 1 or action == 3 or action == 4


class Phases:
    """One filter's request and response phases, body hooks and end of stream."""

    def __init__(
        self,
        owner: WasmFilter,
        vm: PluginVm,
        root: Root,
        key: str,
        told: tuple[bool, bool],
        trailer_cbs: tuple[bool, ...],
        releases: dict[tuple[int, int], Any],
        trailers_ran: set[tuple[int, int]],
    ) -> None:
        self.owner = owner
        self.vm = vm
        self.root = root  # the filter's root context in its (maybe shared) VM
        self.key = key  # where a request's Stream waits in ctx.state
        # end_of_stream is false on a header callback when a body follows (per side,
        # unless `bodies` opted out of that side).
        self.told_request = told[0]
        self.told_response = told[1]
        self.trailer_cbs = trailer_cbs
        # The filter's own: data held until proxy_continue_stream, and the trailer
        # callbacks a body callback's stop brought first (the same objects).
        self.releases = releases
        self.trailers_ran = trailers_ran
        #: The module's body callbacks the filter gives chunks to (set by the filter).
        self.request_bodies = False
        self.response_bodies = False

    def on_request(self, ctx: Context) -> LocalReply | Awaitable[LocalReply | None] | None:
        vm = self.vm
        if vm.instance is None or vm.budget.until:  # the rare cases: look closer
            now = time.monotonic()
            reason = vm.refused(now)
            if reason is not None:
                return self.owner._refuse(reason, now)
            if vm.instance is None:
                return self.owner._after_rebuild(ctx)
        mirror = vm.shared.mirror
        if mirror is not None and not mirror.ready:  # shared_data = "redis", first use
            return self.owner._after_sync(ctx)
        return self.request(ctx)

    def request(self, ctx: Context) -> LocalReply | Awaitable[LocalReply | None] | None:
        """``proxy_on_request_headers`` for a new stream, and what it makes of it."""
        req = ctx.request
        has_body = self.told_request and bool(getattr(req, "has_body", False) or req.body)
        n = len(req.headers.raw) + 4
        stream, action = self.vm.start_stream(ctx, self.root, n, 0 if has_body else 1)
        if stream is None:
            return None
        ctx.state[self.key] = stream
        if stops(action) or (self.request_bodies and req.body is not None):
            return self.owner._request_stopped(stream, action, has_body)
        return stream.local_reply

    def on_response(self, ctx: Context) -> Awaitable[None] | None:
        stream = ctx.state.get(self.key)
        resp = ctx.response
        if not isinstance(stream, Stream) or resp is None or stream.id not in self.vm.streams:
            return None
        stream.local_reply = None
        # A body already whole (a local reply's, or one a Python filter buffered) is
        # given whole to the body callback; an upstream's streams through the hooks.
        whole = bool(resp.body)
        # (whole, or an upstream's head with body chunks to follow)
        follows = whole or (
            isinstance(resp, ResponseHead)
            and resp.body is None
            and resp.content_length != 0
            and resp.status != 204
            and resp.status != 304
            and not resp.codings
            and ctx.request.method != "HEAD"
        )
        eos = 0 if self.told_response and follows else 1
        action = self.vm.call(
            stream, "proxy_on_response_headers", stream.id, len(resp.headers.raw) + 1, eos
        )
        stopped = stops(action) and stream.local_reply is None
        if stopped and action == PAUSE and not eos and self.response_bodies:
            stopped = False  # as for requests: the body callbacks decide
        if stopped or (whole and self.response_bodies):  # waits, or the body callback
            return self.owner._response_rest(stream, PAUSE if stopped else CONTINUE)
        if stream.local_reply is not None:
            ctx.response = reply_response(stream.local_reply)
        return None

    def request_chunk(
        self, ctx: Context, data: bytes, end: bool, resume: ChunkResume
    ) -> ChunkResult:
        return self.chunk(ctx, data, end, resume, 0)

    def response_chunk(
        self, ctx: Context, data: bytes, end: bool, resume: ChunkResume
    ) -> ChunkResult:
        return self.chunk(ctx, data, end, resume, 1)

    def chunk(
        self, ctx: Context, data: bytes, end: bool, resume: ChunkResume, side: int
    ) -> ChunkResult:
        """One body callback (``side`` 0: the request's, 1: the response's): the chunk,
        or the accumulation it ends (Envoy's rules; the rarer cases are the filter's)."""
        stream = ctx.state.get(self.key)
        if not isinstance(stream, Stream) or stream.id not in self.vm.streams:
            return data  # refused (fail_open), or gone after a trap: stream past
        follows = False
        if end and self.trailer_cbs[side]:
            if side:
                resp = ctx.response
                follows = resp is not None and resp.trailers is not None
            else:
                follows = ctx.request.trailers is not None
        body = stream.body
        if body[side] is not None or stream.local_reply is not None or follows or self.releases:
            return self.owner._chunk_rest(stream, data, end, resume, side, follows)
        # The common case (nothing held, no trailer callback to come): one call, and a
        # Continue passes on what the filter left of the chunk.
        body[side] = data
        try:
            action = self.vm.call(stream, BODY_CALLBACKS[side], stream.id, len(data), int(end))
        except Exception as exc:
            pending = body[side]
            body[side] = None
            raise ChunkError(bytes(pending or b""), exc) from exc
        if not action and stream.local_reply is None:
            out = body[side]
            body[side] = None
            return out if isinstance(out, bytes) else bytes(out or b"")
        return self.owner._chunk_stopped(stream, side, end, False, action, resume)

    def on_log(self, ctx: Context) -> None:
        """The stream's end: ``proxy_on_done``, ``proxy_on_log``, ``proxy_on_delete``."""
        stream = ctx.state.pop(self.key, None)
        if isinstance(stream, Stream):
            if self.releases:
                self.releases.pop((stream.id, 0), None)
                self.releases.pop((stream.id, 1), None)
            if self.trailers_ran:
                self.trailers_ran.discard((stream.id, 0))
                self.trailers_ran.discard((stream.id, 1))
            self.vm.done(stream)
