"""Body chunks through the filters that take them as they stream (Envoy's data callbacks).

A :class:`BodyPipe` is one direction of one exchange: the chunk hooks
(:attr:`plugin_sdk.Filter.request_chunks` / ``response_chunks``) of the filters whose
phase ran, in the order the body passes them (requests in chain order, responses in
reverse). A chunk goes through them in turn: what a hook returns goes on to the next
one, and what the last one returns goes to the sink (towards the upstream or the
client). A hook may hold data (it returns ``b""`` and gets the accumulation with the
next chunk, or passes it on earlier with ``resume(data, False)``), answer locally (a
LocalReply), or, at the end of the body, keep it until it calls the ``resume`` it was
given (it returns None).

A hook that raises follows its filter's fail strategy: ``fail_open`` passes on what it
held and was given, and is not called again for this exchange; ``fail_closed`` stops
the exchange with a 500. A hook that would hold more than it may raises
:class:`BodyTooLarge`: 413 for a request body, 502 for a response body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial as _partial
from typing import TYPE_CHECKING

from plugin_sdk import LocalReply
from plugin_sdk.chain import Chain

if TYPE_CHECKING:
    from plugin_sdk import Context
    from plugin_sdk.chain import FilterInstance
    from plugin_sdk.filter import ChunkHook, ChunkResult, ChunkResume

Sink = Callable[[bytes, bool], None]


def _closed(*_args: object) -> None:
    """What a closed pipe's sink and reply callback became (never called: stopped)."""


class BodyTooLarge(Exception):
    """A chunk hook was asked to hold more body than its bound."""


class ChunkError(Exception):
    """A chunk hook failed; ``pending`` is the body it held and was given."""

    def __init__(self, pending: bytes, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.pending = pending
        self.cause = cause


def _hook_failed(
    inst: FilterInstance, phase: str, data: bytes, exc: Exception
) -> bytes | LocalReply:
    """A hook that raised: the reply its fail strategy gives, or (``fail_open``) the
    body it held and was given, to pass on."""
    if isinstance(exc, BodyTooLarge):
        status = 502 if phase == "response" else 413
        return LocalReply(
            status,
            {"content-type": "text/plain; charset=utf-8"},
            f"{phase} body too large for filter {inst.name} to hold\n",
        )
    pending = data
    if isinstance(exc, ChunkError):
        pending, exc = exc.pending, exc.cause if isinstance(exc.cause, Exception) else exc
    reply = Chain._failed(inst, phase, exc)
    return pending if reply is None else reply


def through_whole(
    ctx: Context,
    stages: Sequence[tuple[FilterInstance, ChunkHook]],
    data: bytes,
    resume: ChunkResume,
) -> tuple[int, ChunkResult]:
    """A response body that is all here (one chunk, the end) through the hooks of
    ``stages``, as a :class:`BodyPipe` would pass it, without one: ``(len(stages),
    bytes)`` what goes to the client, ``(k, LocalReply)`` stage ``k`` answered (or
    failed closed), ``(k, None)`` stage ``k`` holds the end until it calls ``resume``
    (the caller then opens :meth:`BodyPipe.held_at` ``k`` for it)."""
    k = 0
    for inst, hook in stages:
        out: ChunkResult
        try:
            out = hook(ctx, data, True, resume)
        except Exception as exc:
            out = _hook_failed(inst, "response", data, exc)
        if out is None or isinstance(out, LocalReply):
            return k, out
        data = out
        k += 1
    return k, data


class BodyPipe:
    """One body direction of one exchange; see the module docstring."""

    __slots__ = (
        "_ctx",
        "_fed_end",
        "_held",
        "_hooks",
        "_insts",
        "_on_reply",
        "_phase",
        "_sink",
        "emitted",
        "ended",
        "stopped",
    )

    def __init__(
        self,
        ctx: Context,
        stages: Sequence[tuple[FilterInstance, ChunkHook]],
        sink: Sink,
        on_reply: Callable[[LocalReply], None],
        *,
        response: bool,
    ) -> None:
        self._ctx = ctx
        # (no comprehensions: each is a function call, and a pipe opens per request)
        if len(stages) == 1:  # the common case: one filter takes the body
            inst, hook = stages[0]
            self._insts: Sequence[FilterInstance] = (inst,)
            self._hooks: list[ChunkHook | None] = [hook]
        else:
            insts, hooks = zip(*stages, strict=True) if stages else ((), ())
            self._insts = insts
            self._hooks = list(hooks)
        # A hook's ``resume`` is made when the hook is called (most never use it).
        self._sink = sink
        self._on_reply = on_reply
        self._phase = "response" if response else "request"
        self._fed_end = False
        self._held = 0  # the stage held_at says holds the end
        self.emitted = False  # some body bytes went to the sink
        self.ended = False  # the end of the body went to the sink
        self.stopped = False  # a local reply, a failure or the exchange's end stopped it

    def feed(self, data: bytes, end: bool) -> None:
        """Pass one chunk (``end``: the last one, possibly empty) through the hooks."""
        if not self.stopped and not self._fed_end:
            self._fed_end = end
            self._run(0, data, end)

    def held_at(self, k: int) -> BodyPipe:
        """The pipe of a body :func:`through_whole` passed as far as stage ``k``, which
        holds its end: :meth:`resume_held` goes on from there."""
        self._fed_end = True
        self._held = k
        return self

    def resume_held(self, result: bytes | LocalReply | Exception, end: bool = True) -> None:
        """The ``resume`` of the stage :meth:`held_at` named."""
        self._resumed(self._held, result, end)

    def close(self) -> None:
        """The exchange is over: a hook that resumes later finds nobody listening.

        The pipe also lets go of the exchange's callbacks: they made a reference cycle
        (exchange -> pipe -> bound method -> exchange) that only the cycle collector
        freed, one per request through a filter that takes bodies. (The ``resume``
        partials are not kept on the pipe, so they make no cycle through it.)"""
        self.stopped = True
        self._sink = _closed
        self._on_reply = _closed

    def _run(self, i: int, data: bytes, end: bool) -> None:
        hooks = self._hooks
        ctx = self._ctx
        for k in range(i, len(hooks)):
            hook = hooks[k]
            if hook is None:  # failed open earlier: skipped for the rest of the body
                continue
            out: bytes | LocalReply | None
            try:
                out = hook(ctx, data, end, _partial(self._resumed, k))
            except Exception as exc:
                out = self._failed(k, data, exc)
            if out is None:  # holding the end until it resumes
                return
            if isinstance(out, LocalReply):
                self._stop(k, out)
                return
            data = out
            if not data and not end:
                return  # held, or nothing left to pass on
        if data:
            self.emitted = True
        if end:
            self.ended = True
        self._sink(data, end)

    def _resumed(self, k: int, result: bytes | LocalReply | Exception, end: bool = True) -> None:
        if self.stopped or self.ended:
            return
        out = self._failed(k, b"", result) if isinstance(result, Exception) else result
        if isinstance(out, LocalReply):
            self._stop(k, out)
            return
        if end or out:  # (held data let go before the end: the body goes on after it)
            self._run(k + 1, out, end)

    def _failed(self, k: int, data: bytes, exc: Exception) -> bytes | LocalReply:
        out = _hook_failed(self._insts[k], self._phase, data, exc)
        if not isinstance(out, LocalReply):
            self._hooks[k] = None  # fail_open
        return out

    def _stop(self, k: int, reply: LocalReply) -> None:
        self.stopped = True
        self._ctx.stopped_by = self._insts[k].name
        self._on_reply(reply)
