"""Running a chain's phases: the ordering and fail-strategy rules, in one place.

The gateway and :mod:`plugin_sdk.testing` both run filters through :class:`Chain`, so
a filter behaves the same in a unit test as in production:

* the request phase runs in chain order and stops at the first local reply;
* the response phase runs in reverse, for the filters whose request phase ran
  (also when a later filter answered locally, or the upstream failed);
* ``on_log`` runs for every filter after the reply;
* a filter that raises (or returns something other than None or a LocalReply) is
  logged with its name and counted; with ``fail_open`` it is skipped, otherwise
  (``fail_closed``, the default) the client gets a 500 local reply (503 when the
  error is a :class:`~plugin_sdk.pools.OffloadError`: a worker pool full or too slow);
* the filter whose local reply (or fail-closed 500) the client gets is named in
  ``ctx.stopped_by``.

Every phase call is also counted in the filter's :class:`FilterStats` (calls per
phase, errors, a histogram of how long each call took), which the gateway's metrics
read. Where plugin_sdk/_timing.c is built the counting is one call into C per phase
call (a clock read, the bucket found, two counters); otherwise a clock read and a list
append, the durations put in their buckets in batches (see :meth:`FilterStats.flush`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import types
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

from plugin_sdk.context import Context, filter_logger
from plugin_sdk.filter import Filter, overrides
from plugin_sdk.headers import Headers
from plugin_sdk.http import LocalReply, Response
from plugin_sdk.pools import OffloadError

try:  # the phase calls' clock in C (plugin_sdk/_timing.c), built by `pip install` where gcc is
    from plugin_sdk import _timing
except ImportError:  # pragma: no cover - the runners then read the clock in Python
    _timing = None  # type: ignore[assignment]

#: Whether the compiled runners of a Chain built from now on time their calls with
#: plugin_sdk/_timing.c's Clock and Lap, counting them in FilterStats.bins (True where
#: it is built), or read ``time.perf_counter`` themselves and append the durations to
#: FilterStats.pending (set it False to have them do so). Either way every call is
#: counted in the same buckets.
timing_in_c: bool = _timing is not None


def _probe() -> None:
    """Only looked at: a plain function here unless this module runs compiled."""


#: Whether a Chain built from now on runs its request and response phases by the
#: loops of :class:`Chain` (with ``timing_in_c``: every call timed by a Lap) rather than
#: by straight-line functions generated for it. The loops are native code where this
#: module runs as the mypyc-compiled build (plugin_sdk/_compiled.py), and the default
#: there; interpreted, the generated functions cost less.
loop_runners: bool = not isinstance(_probe, types.FunctionType)

log = logging.getLogger("wasmgate.chain")

REQUEST, RESPONSE, LOG = 0, 1, 2  # indexes of FilterStats.buckets


class FilterStats:
    """What the chain counts for one filter: calls per phase, errors, time per call.

    Plain counters, written without locks on the request path and read by the
    gateway's metrics. The gateway may give the instances one filter gets at each
    reload the same object (it sets :attr:`FilterInstance.stats` before the
    :class:`Chain` is built), so that the counts go on across reloads.
    """

    #: Upper bounds (seconds) of the duration histogram's buckets; a last one is +Inf.
    BOUNDS: ClassVar[tuple[float, ...]] = (
        5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2, 0.25, 1.0,
    )  # fmt: skip

    #: How many durations a phase's :attr:`pending` list holds before the chain's
    #: runners have them binned (that many per route when routes share the filter).
    PENDING: ClassVar[int] = 256

    __slots__ = ("_buckets", "_seconds", "bins", "errors", "pending")

    def __init__(self) -> None:
        # Per phase (REQUEST, RESPONSE, LOG), calls per bucket, not cumulative:
        # buckets[phase][i] counts durations <= BOUNDS[i] (and above the bound before);
        # the last one, those above every bound. A phase's calls are its sum.
        self._buckets = [[0] * (len(self.BOUNDS) + 1) for _ in range(3)]
        self.errors = 0
        self._seconds = 0.0  # the sum of every call's duration, all phases
        #: Per phase, durations (seconds) the chain's compiled runners appended and
        #: that are not binned yet: a list append is all a call costs on the request
        #: path (a bisect and two counter updates per call cost as much again as a
        #: plain filter call). Reading :attr:`buckets`, :attr:`seconds` or
        #: :attr:`calls` bins them first, so every read is exact.
        self.pending: tuple[list[float], list[float], list[float]] = ([], [], [])
        #: Per phase, where plugin_sdk/_timing.c is built, the C histogram the compiled
        #: runners count their calls in (no float made per call, no batch to sort);
        #: drained into the same buckets at every read, as :attr:`pending` is.
        self.bins: tuple[Any, ...] = (
            tuple(_timing.Bins(self.BOUNDS) for _ in range(3)) if _timing is not None else ()
        )

    @property
    def buckets(self) -> list[list[int]]:
        """Per phase, calls per duration bucket (see ``BOUNDS``), pending ones binned."""
        self.flush()
        return self._buckets

    @property
    def seconds(self) -> float:
        """The sum of every call's duration (all phases), pending ones included."""
        self.flush()
        return self._seconds

    @property
    def calls(self) -> list[int]:
        """Calls per phase: [request, response, log]."""
        return [sum(b) for b in self.buckets]

    def observe(self, phase: int, seconds: float) -> None:
        """Count one call of ``phase`` (REQUEST, RESPONSE, LOG) that took ``seconds``."""
        self._buckets[phase][bisect_left(self.BOUNDS, seconds)] += 1
        self._seconds += seconds

    def flush(self) -> None:
        """Put the :attr:`pending` durations in their buckets (and add what
        :attr:`bins` counted): each batch is sorted once and cut at the bounds between
        its shortest and its longest call (a bisect per bound, not one per call)."""
        for phase, bins in enumerate(self.bins):
            self._seconds += bins.drain(self._buckets[phase])
        bounds = self.BOUNDS
        for phase, pending in enumerate(self.pending):
            n = len(pending)
            if not n:
                continue
            batch = pending[:n]
            del pending[:n]  # what was appended meanwhile stays for the next flush
            batch.sort()
            self._seconds += sum(batch)
            row = self._buckets[phase]
            first = bisect_left(bounds, batch[0])
            last = bisect_left(bounds, batch[-1])
            below = 0
            for i in range(first, last):
                upto = bisect_right(batch, bounds[i])  # the durations <= bounds[i]
                row[i] += upto - below
                below = upto
            row[last] += n - below


class FilterInstance:
    """One configured filter: the plugin's instance, its fail strategy, its phases."""

    __slots__ = (
        "errors",
        "fail_open",
        "files",
        "filter",
        "logger",
        "name",
        "on_log",
        "on_request",
        "on_response",
        "plugin",
        "stats",
    )

    def __init__(self, name: str, plugin: str, flt: Filter[Any], fail_open: bool) -> None:
        self.name = name
        self.plugin = plugin
        self.filter = flt
        self.fail_open = fail_open
        self.logger = filter_logger(name)
        self.errors = 0  # this instance's; stats.errors goes on across reloads
        self.stats = FilterStats()
        self.on_request = _phase(flt, "on_request")
        self.on_response = _phase(flt, "on_response")
        self.on_log = _phase(flt, "on_log")
        # The files the instance was built from, absolute; set by whoever builds it
        # (the gateway: from Filter.watched_files(), or the .wasm module and manifest).
        self.files: tuple[Path, ...] = ()

    def __repr__(self) -> str:
        return f"<filter {self.name} ({self.plugin})>"


@dataclass(frozen=True, slots=True)
class _Phase:
    call: Callable[[Context], Any]
    is_async: bool  # may return an awaitable: a coroutine function, or maybe_async
    coroutine: bool  # always returns one (``async def``)


def _phases(inst: FilterInstance) -> tuple[_Phase, ...]:
    return tuple(p for p in (inst.on_request, inst.on_response, inst.on_log) if p is not None)


def _phase(flt: Filter[Any], name: str) -> _Phase | None:
    """How to call phase ``name``; None when the filter does not need it.

    What is called is what the instance has under that name: the class's method, or a
    callable the instance set in its place (the Proxy-Wasm adapter hands its phases to
    compiled code so). Whether the phase may return an awaitable is what the method
    says, or, for such a replacement, what the class's method declares (``maybe_async``).
    """
    if not overrides(type(flt), name) or name in getattr(flt, "skip_phases", ()):
        return None
    method = getattr(flt, name)
    coroutine = inspect.iscoroutinefunction(method)
    maybe = getattr(method, "maybe_async", False) or getattr(
        getattr(type(flt), name), "maybe_async", False
    )
    return _Phase(method, coroutine or maybe, coroutine)


class _Step:
    """One filter's phase in a loop runner of :class:`Chain` (where ``compiled``)."""

    __slots__ = ("awaits", "call", "inst", "lap", "logger", "name", "position")

    def __init__(
        self, position: int, inst: FilterInstance, phase: _Phase, lap: Callable[[], None]
    ) -> None:
        self.position = position  # in the chain, from 1
        self.inst = inst
        self.call = phase.call
        self.awaits = phase.is_async  # may return an awaitable (maybe_async)
        self.logger = inst.logger
        self.name = inst.name
        #: Counts the call's time in its filter's FilterStats.bins: from the clock's
        #: last note (the runner's start, or the call before's end) to now.
        self.lap = lap


class Chain:
    """The filters of one route, in execution order.

    Each phase's callers are listed once, when the chain is built, so a request
    pays only for the phases its filters implement.
    """

    __slots__ = (
        "_handover",
        "_logs",
        "_request_clock",
        "_request_steps",
        "_requests",
        "_response_clock",
        "_response_steps",
        "_responses",
        "client_gone",
        "filters",
        "inline",
        "logs",
        "native_requests",
        "native_responses",
        "request_body",
        "request_chunks",
        "request_trailers",
        "requests",
        "response_body",
        "response_chunks",
        "response_trailers",
        "responses",
        "run_request_inline",
        "run_request_sync",
        "run_response_inline",
        "run_response_sync",
        "sync",
        "sync_requests",
        "sync_responses",
    )

    def __init__(
        self, filters: Iterable[FilterInstance], *, handover: Awaitable[None] | None = None
    ) -> None:
        self.filters = tuple(filters)
        # Awaited before the first awaitable a maybe_async phase returns (the gateway's
        # core.drive.IN_TASK: what waits runs in an asyncio Task; see :attr:`inline`).
        self._handover = handover
        # (position in the chain, instance, callable, awaits?) for the filters that have
        # the phase, in the order the phase runs.
        self._requests = tuple(
            (i + 1, f, f.on_request.call, f.on_request.is_async)
            for i, f in enumerate(self.filters)
            if f.on_request
        )
        self._responses = tuple(
            (i + 1, f, f.on_response.call, f.on_response.is_async)
            for i, f in reversed(list(enumerate(self.filters)))
            if f.on_response
        )
        self._logs = tuple((f, f.on_log) for f in self.filters if f.on_log)
        self.requests = bool(self._requests)
        self.responses = bool(self._responses)
        self.logs = bool(self._logs)
        self.request_body = any(f.filter.request_body for f in self.filters)
        self.response_body = any(f.filter.response_body for f in self.filters)
        #: (position in the chain, instance, hook) of the filters that take body chunks
        #: as they stream (Filter.request_chunks / response_chunks), in the order the
        #: chunks pass them: requests in chain order, responses in reverse.
        self.request_chunks = self._hooks("request_chunks", in_response_order=False)
        self.response_chunks = self._hooks("response_chunks", in_response_order=True)
        #: (position, instance, hook) of the filters called when the request's trailers
        #: are about to go upstream (Filter.request_trailers: a Proxy-Wasm module's
        #: trailer callback), in chain order.
        self.request_trailers = self._hooks("request_trailers", in_response_order=False)
        #: (position, instance, hook) of the filters called when the response's trailers
        #: came (Filter.response_trailers: a Proxy-Wasm module's trailer callback), in
        #: response order.
        self.response_trailers = self._hooks("response_trailers", in_response_order=True)
        #: (instance, hook) of the filters told at once when the client leaves
        #: (Filter.client_gone: the Proxy-Wasm adapter ends the stream's context).
        self.client_gone = tuple(
            (f, hook)
            for f in self.filters
            if (hook := getattr(f.filter, "client_gone", None)) is not None
        )
        # When no phase awaits, the gateway calls the *_sync runners: no coroutine.
        self.sync_requests = not any(awaits for *_, awaits in self._requests)
        self.sync_responses = not any(awaits for *_, awaits in self._responses)
        #: No phase at all awaits (on_log included): a request can be served without
        #: an asyncio Task (the gateway's core/drive.py).
        self.sync = (
            self.sync_requests
            and self.sync_responses
            and not any(phase.is_async for _, phase in self._logs)
        )
        #: No phase is an ``async def`` and on_log awaits nothing: with a ``handover``,
        #: a request starts without a Task, and gets one only when a maybe_async phase
        #: returns an awaitable (a Proxy-Wasm filter that pauses, say).
        self.inline = self.sync or (
            handover is not None
            and not any(phase.coroutine for f in self.filters for phase in _phases(f))
            and not any(phase.is_async for _, phase in self._logs)
        )
        # The loop runners' steps and clocks (see loop_requests), where they are used.
        self._request_steps: tuple[_Step, ...] = ()
        self._response_steps: tuple[_Step, ...] = ()
        self._request_clock: Any = None  # plugin_sdk._timing.Clock
        self._response_clock: Any = None
        #: Request phases, when :attr:`sync_requests`: (local reply or None, how many ran).
        self.run_request_sync: Callable[[Context], tuple[LocalReply | None, int]]
        #: Response phases in reverse over the first ``ran`` filters, when sync.
        self.run_response_sync: Callable[[Context, int], None]
        #: The same when :attr:`inline`, without a coroutine while no phase waits: what
        #: the sync runner returns, or, once a maybe_async phase returned an awaitable,
        #: an awaitable of it (the rest of the phases run after that one's wait).
        self.run_request_inline: Callable[
            [Context], tuple[LocalReply | None, int] | Awaitable[tuple[LocalReply | None, int]]
        ]
        self.run_response_inline: Callable[[Context, int], Awaitable[None] | None]
        #: The runners are :meth:`loop_requests` / :meth:`loop_responses` and serve where
        #: the sync or inline runner would: compiled code calls them directly (a native
        #: call, no bound method object), the gateway does (core/proxy.py).
        self.native_requests = self.native_responses = False
        if loop_runners and timing_in_c and _timing is not None:
            # One loop per direction serves both forms: a step that may return an
            # awaitable is looked at only where one can (sync chains have none).
            self._request_clock = clock = _timing.Clock()
            self._request_steps = tuple(
                _Step(position, inst, phase, _timing.Lap(clock, inst.stats.bins[REQUEST]))
                for position, inst in enumerate(self.filters, 1)
                if (phase := inst.on_request) is not None
            )
            self._response_clock = clock = _timing.Clock()
            self._response_steps = tuple(
                _Step(position, inst, phase, _timing.Lap(clock, inst.stats.bins[RESPONSE]))
                for position, inst in reversed(list(enumerate(self.filters, 1)))
                if (phase := inst.on_response) is not None
            )
            # (The sync forms never see an awaitable: no phase of theirs returns one.)
            self.run_request_sync = cast(Any, self.loop_requests)
            self.run_response_sync = cast(Any, self.loop_responses)
            self.run_request_inline = self.loop_requests
            self.run_response_inline = self.loop_responses
            self.native_requests = self.sync_requests or self.inline
            self.native_responses = self.sync_responses or self.inline
            return
        self.run_request_sync = self._compile_request(inline=False)
        self.run_response_sync = self._compile_response(inline=False)
        self.run_request_inline = self.run_request_sync
        self.run_response_inline = self.run_response_sync
        if self.inline and not self.sync_requests:
            self.run_request_inline = self._compile_request(inline=True)
        if self.inline and not self.sync_responses:
            self.run_response_inline = self._compile_response(inline=True)

    def __bool__(self) -> bool:
        return bool(self.filters)

    def names(self) -> list[str]:
        return [f.name for f in self.filters]

    # The request and response runners come in two forms with the same rules. For
    # chains whose phases are all plain ``def`` (the usual case), the chain is compiled
    # once into straight-line functions (see _compile_*): no loop, no coroutine per
    # request — the hot path notices both. Otherwise the async loops below run.

    async def run_request(self, ctx: Context) -> tuple[LocalReply | None, int]:
        """Run request phases in order; (local reply or None, how many filters ran)."""
        if self.sync_requests:
            return self.run_request_sync(ctx)
        return await self._requests_from(ctx, 0)

    async def _request_rest(
        self, ctx: Context, k: int, pending: Awaitable[Any], started: float
    ) -> tuple[LocalReply | None, int]:
        """The request phases after phase ``k`` returned ``pending`` (started then)."""
        position, inst = self._requests[k][:2]
        try:
            if self._handover is not None:
                await self._handover
            reply = self._verdict(inst, await pending)
        except Exception as exc:
            reply = self._failed(inst, "request", exc)
        inst.stats.observe(REQUEST, time.perf_counter() - started)
        if reply is not None:
            ctx.stopped_by = inst.name
            return reply, position
        return await self._requests_from(ctx, k + 1)

    async def _requests_from(self, ctx: Context, first: int) -> tuple[LocalReply | None, int]:
        for position, inst, call, awaits in self._requests[first:]:
            ctx.log = inst.logger
            started = time.perf_counter()
            try:
                result = call(ctx)
                if awaits and hasattr(result, "__await__"):
                    if self._handover is not None:
                        await self._handover
                    result = await result
                reply = self._verdict(inst, result)
            except Exception as exc:
                reply = self._failed(inst, "request", exc)
            inst.stats.observe(REQUEST, time.perf_counter() - started)
            if reply is not None:
                ctx.stopped_by = inst.name
                return reply, position
        return None, len(self.filters)

    async def run_response(self, ctx: Context, ran: int) -> None:
        """Run response phases in reverse over the first ``ran`` filters."""
        if self.sync_responses:
            self.run_response_sync(ctx, ran)
            return
        await self._responses_from(ctx, ran, 0)

    async def _response_rest(
        self, ctx: Context, ran: int, k: int, pending: Awaitable[Any], started: float
    ) -> None:
        """The response phases after phase ``k`` returned ``pending`` (started then)."""
        inst = self._responses[k][1]
        try:
            if self._handover is not None:
                await self._handover
            await pending
        except Exception as exc:
            self._response_failed(ctx, inst, exc)
        inst.stats.observe(RESPONSE, time.perf_counter() - started)
        await self._responses_from(ctx, ran, k + 1)

    async def _responses_from(self, ctx: Context, ran: int, first: int) -> None:
        for position, inst, call, awaits in self._responses[first:]:
            if position <= ran:
                ctx.log = inst.logger
                started = time.perf_counter()
                try:
                    result = call(ctx)
                    if awaits and hasattr(result, "__await__"):
                        if self._handover is not None:
                            await self._handover
                        await result
                except Exception as exc:
                    self._response_failed(ctx, inst, exc)
                inst.stats.observe(RESPONSE, time.perf_counter() - started)

    # Where this module runs compiled (and the C clock is built), the runners are two
    # loops over the phases' steps: native code, where a generated function would be
    # bytecode for the interpreter. Every call is timed by its step's Lap. A step that
    # returns an awaitable (maybe_async) hands the rest to _request_rest/_response_rest,
    # timed from the clock's last note: the start of that call.

    def loop_requests(
        self, ctx: Context
    ) -> tuple[LocalReply | None, int] | Awaitable[tuple[LocalReply | None, int]]:
        """:meth:`run_request`'s rules as a loop (see above; where
        :attr:`native_requests`)."""
        clock = self._request_clock
        clock()
        for k, step in enumerate(self._request_steps):
            ctx.log = step.logger
            try:
                result = step.call(ctx)
            except Exception as exc:
                result = self._failed(step.inst, "request", exc)
            if result is None:
                step.lap()
                continue
            if step.awaits and not isinstance(result, LocalReply) and hasattr(result, "__await__"):
                return self._request_rest(ctx, k, result, clock.last)
            step.lap()
            reply = self._verdict(step.inst, result)
            if reply is not None:
                ctx.stopped_by = step.name
                return reply, step.position
        return None, len(self.filters)

    def loop_responses(self, ctx: Context, ran: int) -> Awaitable[None] | None:
        """:meth:`run_response`'s rules as a loop (see above; where
        :attr:`native_responses`)."""
        clock = self._response_clock
        clock()
        for k, step in enumerate(self._response_steps):
            if ran < step.position:
                continue
            ctx.log = step.logger
            try:
                result = step.call(ctx)
            except Exception as exc:
                result = None
                self._response_failed(ctx, step.inst, exc)
            if step.awaits and result is not None and hasattr(result, "__await__"):
                return self._response_rest(ctx, ran, k, result, clock.last)
            step.lap()
        return None

    # The generated runners read the clock once per call: a call's end is the next one's
    # start (the few operations between two calls count with the later filter). Where
    # plugin_sdk/_timing.c is built (``timing_in_c``), one C call after each filter's
    # reads it and counts the duration in FilterStats.bins (``S``: the runner's Clock,
    # ``P<k>``: a Lap); otherwise the duration is appended to FilterStats.pending, binned
    # later. A phase that may return an awaitable (``inline``) is timed in Python either
    # way: its time runs on past its return.

    def _compile_request(self, *, inline: bool) -> Callable[[Context], Any]:
        """``run_request`` as one straight-line function (all phases plain ``def``; or,
        ``inline``, maybe_async too: one that returns an awaitable hands the rest to
        :meth:`_request_rest`)."""
        names: dict[str, Any] = {"clock": time.perf_counter, "Reply": LocalReply}
        names["Rest"] = self._request_rest
        laps = _laps(self._requests, REQUEST, inline, names)
        lines = ["def run_request_sync(ctx):"]
        if not any(laps):
            lines += _flush_lines(self._requests, REQUEST, names)
        lines.append("    S()" if any(laps) else "    t = clock()")
        for k, (position, inst, call, awaits) in enumerate(self._requests):
            names[f"A{k}"] = inst.stats.pending[REQUEST].append
            names[f"L{k}"], names[f"C{k}"] = inst.logger, call
            names[f"F{k}"] = functools.partial(self._failed, inst, "request")
            names[f"V{k}"] = functools.partial(self._verdict, inst)
            names[f"N{k}"] = inst.name
            lines.append(f"    ctx.log = L{k}")
            if any(laps) and not laps[k]:
                lines.append("    t = clock()")
            lines += [
                "    try:",
                f"        r = C{k}(ctx)",
                "    except Exception as exc:",
                f"        r = F{k}(exc)",
            ]
            if inline and awaits:
                lines += [
                    "    if r is not None and not isinstance(r, Reply):",
                    "        if hasattr(r, '__await__'):",
                    f"            return Rest(ctx, {k}, r, t)",
                ]
            if laps[k]:
                lines.append(f"    P{k}()")
            elif any(laps):  # (its list looked at alone: it may not run every time)
                lines += ["    u = clock()", f"    A{k}(u - t)", "    S()"]
                lines += [f"    if len(Q{k}) >= {FilterStats.PENDING}:", f"        B{k}()"]
            else:
                lines += ["    u = clock()", f"    A{k}(u - t)", "    t = u"]
            lines += [
                "    if r is not None:",
                f"        r = V{k}(r)",
                "        if r is not None:",
                f"            ctx.stopped_by = N{k}",
                f"            return r, {position}",
            ]
        lines.append(f"    return None, {len(self.filters)}")
        return _build(lines, names)

    def _compile_response(self, *, inline: bool) -> Callable[[Context, int], Any]:
        """``run_response`` as one straight-line function (all phases plain ``def``; or,
        ``inline``, maybe_async too: one that returns an awaitable hands the rest to
        :meth:`_response_rest`)."""
        names: dict[str, Any] = {"clock": time.perf_counter, "Rest": self._response_rest}
        # The filter nearest the chain's start runs whenever any response phase does.
        laps = _laps(self._responses, RESPONSE, inline, names)
        lines = ["def run_response_sync(ctx, ran):"]
        if not any(laps):
            lines += _flush_lines(self._responses[::-1], RESPONSE, names)
        lines.append("    S()" if any(laps) else "    t = clock()")
        for k, (position, inst, call, awaits) in enumerate(self._responses):
            names[f"A{k}"] = inst.stats.pending[RESPONSE].append
            names[f"L{k}"], names[f"C{k}"] = inst.logger, call
            names[f"F{k}"] = functools.partial(self._response_failed, inst=inst)
            lines += [f"    if ran >= {position}:", f"        ctx.log = L{k}"]
            if any(laps) and not laps[k]:
                lines.append("        t = clock()")
            lines += [
                "        try:",
                f"            r = C{k}(ctx)",
                "        except Exception as exc:",
                "            r = None",
                f"            F{k}(ctx, exc=exc)",
            ]
            if inline and awaits:
                lines += [
                    "        if r is not None and hasattr(r, '__await__'):",
                    f"            return Rest(ctx, ran, {k}, r, t)",
                ]
            if laps[k]:
                lines.append(f"        P{k}()")
            elif any(laps):
                lines += ["        u = clock()", f"        A{k}(u - t)", "        S()"]
                lines += [f"        if len(Q{k}) >= {FilterStats.PENDING}:", f"            B{k}()"]
            else:
                lines += ["        u = clock()", f"        A{k}(u - t)", "        t = u"]
        lines.append("    return None")
        return _build(lines, names)

    def _verdict(self, inst: FilterInstance, result: object) -> LocalReply | None:
        """A request phase's return value: None goes on, a LocalReply stops."""
        if result is None or isinstance(result, LocalReply):
            return result
        bad = TypeError(f"on_request returned {result!r}, not None or a LocalReply")
        return self._failed(inst, "request", bad)

    def run_request_trailers(
        self, ctx: Context, ran: int
    ) -> LocalReply | Awaitable[LocalReply | None] | None:
        """Run the request trailer hooks (in chain order, over the first ``ran`` filters)
        on ``ctx.request.trailers``, before they go upstream. A hook returns None to go
        on, a LocalReply to answer instead, or an awaitable of either (it stopped the
        trailers: Envoy's StopIteration); then the rest run once it is done, and so is
        what this returns. A hook that raises gets its filter's fail strategy."""
        return self._run_trailers(ctx, ran, self.request_trailers, "request trailers")

    def run_response_trailers(
        self, ctx: Context, ran: int
    ) -> LocalReply | Awaitable[LocalReply | None] | None:
        """Run the response trailer hooks (in response order, over the first ``ran``
        filters) on ``ctx.response.trailers``, before they (and the response's end) go
        to the client; what a hook returns means what it does for the request's
        trailers. The response head has usually gone by then: the gateway resets the
        response on a LocalReply (Envoy's rule), as on a fail_closed failure."""
        return self._run_trailers(ctx, ran, self.response_trailers, "response trailers")

    def _run_trailers(
        self, ctx: Context, ran: int, hooks: tuple[Any, ...], phase: str
    ) -> LocalReply | Awaitable[LocalReply | None] | None:
        for index, (position, inst, hook) in enumerate(hooks):
            if position > ran:
                continue
            ctx.log = inst.logger
            try:
                result = hook(ctx)
            except Exception as exc:
                result = self._failed(inst, phase, exc)
            if result is None:
                continue
            if isinstance(result, LocalReply):
                ctx.stopped_by = inst.name
                return result
            return self._trailers_rest(ctx, ran, hooks[index:], phase, result)
        return None

    async def _trailers_rest(
        self,
        ctx: Context,
        ran: int,
        hooks: tuple[Any, ...],
        phase: str,
        held: Awaitable[LocalReply | None],
    ) -> LocalReply | None:
        """The hooks after one that stopped (``hooks[0]``), once it went on."""
        inst = hooks[0][1]
        try:
            reply = await held
        except Exception as exc:
            reply = self._failed(inst, phase, exc)
        if reply is not None:
            ctx.stopped_by = inst.name
            return reply
        for position, inst, hook in hooks[1:]:
            if position > ran:
                continue
            ctx.log = inst.logger
            try:
                result: LocalReply | None = hook(ctx)
                if result is not None and not isinstance(result, LocalReply):
                    result = await result
            except Exception as exc:
                result = self._failed(inst, phase, exc)
            if result is not None:
                ctx.stopped_by = inst.name
                return result
        return None

    def _response_failed(self, ctx: Context, inst: FilterInstance, exc: Exception) -> None:
        """A response phase raised: fail_closed replaces the response with a 500."""
        reply = self._failed(inst, "response", exc)
        if reply is not None:
            ctx.stopped_by = inst.name
            ctx.response = reply_response(reply)

    def run_client_gone(self, ctx: Context) -> None:
        """Tell the filters that take it that the client left; errors are logged."""
        for inst, hook in self.client_gone:
            try:
                hook(ctx)
            except Exception as exc:
                self._hook_failed(inst, "client_gone", exc)

    def run_log_sync(self, ctx: Context) -> None:
        """:meth:`run_log` without a coroutine, when :attr:`inline` (no on_log awaits)."""
        for inst, phase in self._logs:
            ctx.log = inst.logger
            started = time.perf_counter()
            try:
                phase.call(ctx)
            except Exception as exc:
                self._hook_failed(inst, "on_log", exc)
            inst.stats.observe(LOG, time.perf_counter() - started)

    async def run_log(self, ctx: Context) -> None:
        """Run every filter's ``on_log``; errors are logged and counted, nothing more."""
        for inst, phase in self._logs:
            ctx.log = inst.logger
            started = time.perf_counter()
            try:
                if phase.is_async:
                    await phase.call(ctx)
                else:
                    phase.call(ctx)
            except Exception as exc:
                self._hook_failed(inst, "on_log", exc)
            inst.stats.observe(LOG, time.perf_counter() - started)

    def _hooks(
        self, name: str, *, in_response_order: bool
    ) -> tuple[tuple[int, FilterInstance, Any], ...]:
        """(position in the chain, instance, hook) of the filters that have hook ``name``,
        in chain order or, for a response, in reverse."""
        numbered = list(enumerate(self.filters, 1))
        if in_response_order:
            numbered.reverse()
        return tuple(
            (i, f, hook) for i, f in numbered if (hook := getattr(f.filter, name, None)) is not None
        )

    @staticmethod
    def _hook_failed(inst: FilterInstance, hook: str, exc: Exception) -> None:
        """A hook that cannot answer (on_log, client_gone) failed: logged and counted."""
        inst.errors += 1
        inst.stats.errors += 1
        log.error("filter %s (%s) failed in %s: %r", inst.name, inst.plugin, hook, exc)

    @staticmethod
    def _failed(inst: FilterInstance, phase: str, exc: Exception) -> LocalReply | None:
        inst.errors += 1
        inst.stats.errors += 1
        # A worker pool that is full or too slow is overload, not a bug: 503, no traceback.
        overloaded = isinstance(exc, OffloadError)
        status = 503 if overloaded else 500
        strategy = "fail_open: skipped" if inst.fail_open else f"fail_closed: {status}"
        log.error(
            "filter %s (%s) raised in %s phase (%s): %r",
            inst.name,
            inst.plugin,
            phase,
            strategy,
            exc,
            exc_info=None if overloaded else exc,
        )
        if inst.fail_open:
            return None
        return LocalReply(
            status, {"content-type": "text/plain; charset=utf-8"}, f"filter {inst.name} failed\n"
        )


def reply_response(reply: LocalReply) -> Response:
    """A :class:`Response` carrying a local reply (for the response phase)."""
    return Response(reply.status, Headers.of(reply.header_pairs()), reply.body_bytes())


def _laps(entries: tuple[Any, ...], phase: int, inline: bool, names: dict[str, Any]) -> list[bool]:
    """Per runner entry, whether its call is timed in C (see ``timing_in_c``): then
    ``P<k>`` in ``names`` is its Lap on the runner's Clock ``S``, counting in its
    filter's :attr:`FilterStats.bins`. Otherwise, when some are, ``Q<k>`` is its
    pending list and ``B<k>`` flushes it."""
    plan = [timing_in_c and _timing is not None and not (inline and e[3]) for e in entries]
    if any(plan):
        assert _timing is not None
        names["S"] = clock = _timing.Clock()
        for k, (_, inst, *_) in enumerate(entries):
            if plan[k]:
                names[f"P{k}"] = _timing.Lap(clock, inst.stats.bins[phase])
            else:
                names[f"Q{k}"] = inst.stats.pending[phase]
                names[f"B{k}"] = inst.stats.flush
    return plan


def _flush_lines(entries: tuple[Any, ...], phase: int, names: dict[str, Any]) -> list[str]:
    """Source that bins the pending durations of ``entries``' filters (phase ``phase``)
    once the first one's list is full. That filter's phase runs whenever any of theirs
    does, so no list of theirs grows by more than ``PENDING`` between two looks."""
    if not entries:
        return []
    stats = tuple(dict.fromkeys(inst.stats for _, inst, *_ in entries))
    names["P"] = entries[0][1].stats.pending[phase]
    names["flush"] = functools.partial(_flush_all, stats)
    return [f"    if len(P) >= {FilterStats.PENDING}:", "        flush()"]


def _flush_all(stats: tuple[FilterStats, ...]) -> None:
    for one in stats:
        one.flush()


def _build(lines: list[str], names: dict[str, Any]) -> Callable[..., Any]:
    """Compile generated source whose free names are all in ``names``."""
    code = "\n".join(lines)
    namespace = dict(names)
    exec(compile(code, "<wasmgate chain>", "exec"), namespace)  # only our own source
    return namespace[lines[0][4 : lines[0].index("(")]]  # type: ignore[no-any-return]
