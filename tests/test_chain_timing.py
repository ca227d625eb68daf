"""The compiled runners time each phase call with plugin_sdk/_timing.c's Clock and Lap
(``timing_in_c``) where the extension is built, and in Python otherwise: both must give
a request the same outcome and a filter the same counts, and measure each call's
duration."""

from __future__ import annotations

import asyncio
import functools
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

import pytest

import plugin_sdk.chain as chain_module
from core.drive import IN_TASK
from plugin_sdk import Context, Filter, LocalReply, PluginConfig
from plugin_sdk.chain import LOG, REQUEST, RESPONSE, Chain, FilterInstance, FilterStats
from plugin_sdk.filter import maybe_async
from plugin_sdk.http import Response
from plugin_sdk.testing import make_filter, make_request

try:  # the C extension, built by `pip install` where gcc is
    from plugin_sdk import _timing
except ImportError:  # pragma: no cover
    _timing = None  # type: ignore[assignment]
NOT_BUILT = "plugin_sdk._timing not built (needs gcc and Python's headers)"
SLEEP = 0.003  # what the slow filter's request phase takes at least


@pytest.fixture(params=["loop", "c", "python"])
def timing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Chains built in the test run the loop runners (timed in C: the compiled build's
    default), or generated runners timed in C, or in Python (the fallback)."""
    if request.param in ("loop", "c"):
        if _timing is None:
            pytest.skip(NOT_BUILT)
        monkeypatch.setattr(chain_module, "timing_in_c", True)
    else:
        monkeypatch.setattr(chain_module, "timing_in_c", False)
    monkeypatch.setattr(chain_module, "loop_runners", request.param == "loop")
    yield request.param


class _Tag(Filter[PluginConfig]):
    """Appends its name to a request header and to the response's, in both phases."""

    def on_request(self, ctx: Context) -> None:
        ctx.state.setdefault("order", []).append(
            f"req:{self.name}:{getattr(ctx.log, 'extra', None)}"
        )
        ctx.request.headers.add("x-seen", self.name)

    def on_response(self, ctx: Context) -> None:
        ctx.state["order"].append(f"resp:{self.name}")
        assert ctx.response is not None
        ctx.response.headers.add("x-back", self.name)


class _Slow(_Tag):
    def on_request(self, ctx: Context) -> None:
        time.sleep(SLEEP)
        super().on_request(ctx)


class _Raises(Filter[PluginConfig]):
    def on_request(self, ctx: Context) -> None:
        if ctx.request.headers.get(f"x-raise-{self.name}") == "request":
            raise RuntimeError("request phase")

    def on_response(self, ctx: Context) -> None:
        if ctx.request.headers.get(f"x-raise-{self.name}") == "response":
            raise RuntimeError("response phase")


class _Denies(Filter[PluginConfig]):
    def on_request(self, ctx: Context) -> LocalReply | None:
        return LocalReply(403, body="no\n") if ctx.request.headers.get("x-deny") else None


class _Wrong(Filter[PluginConfig]):
    def on_request(self, ctx: Context) -> Any:
        return 42 if ctx.request.headers.get("x-wrong") else None


class _Pauses(Filter[PluginConfig]):
    """maybe_async: an awaitable only when the request asks it to wait."""

    @maybe_async
    def on_request(self, ctx: Context) -> Any:
        if ctx.request.headers.get("x-pause"):
            return asyncio.sleep(SLEEP)
        return None

    @maybe_async
    def on_response(self, ctx: Context) -> Any:
        if ctx.request.headers.get("x-pause"):
            return asyncio.sleep(0)
        return None


def _chain(*, handover: bool = False) -> Chain:
    filters: list[FilterInstance] = [
        make_filter(_Tag, name="outer"),
        make_filter(_Raises, name="open", fail_open=True),
        make_filter(_Slow, name="slow"),
        make_filter(_Raises, name="closed"),
        make_filter(_Denies, name="deny"),
        make_filter(_Wrong, name="wrong"),
        make_filter(_Tag, name="inner"),
    ]
    if handover:
        filters.insert(3, make_filter(_Pauses, name="pause"))
    return Chain(filters, handover=IN_TASK if handover else None)


# (id, request headers): the request's way through the chain above.
CASES = [
    ("through", {}),
    ("fail-open-request", {"x-raise-open": "request"}),
    ("fail-open-response", {"x-raise-open": "response"}),
    ("fail-closed-request", {"x-raise-closed": "request"}),
    ("local-reply", {"x-deny": "1"}),
    ("not-a-reply", {"x-wrong": "1"}),
    ("fail-closed-response", {"x-raise-closed": "response"}),
    ("pause", {"x-pause": "1"}),
]


def _observe(chain: Chain, ctx: Context, reply: LocalReply | None, ran: int) -> dict[str, Any]:
    assert ctx.response is not None
    return {
        "reply": None if reply is None else (reply.status, reply.body_bytes()),
        "ran": ran,
        "stopped_by": ctx.stopped_by,
        "seen": ctx.request.headers.get_all("x-seen"),
        "order": ctx.state.get("order"),
        "status": ctx.response.status,
        "back": ctx.response.headers.get_all("x-back"),
        "calls": {f.name: f.stats.calls for f in chain.filters},
        "errors": {f.name: (f.errors, f.stats.errors) for f in chain.filters},
    }


def _request(headers: dict[str, str]) -> Context:
    return Context(make_request("GET", "/a", headers=headers))


def _run_sync(chain: Chain, headers: dict[str, str]) -> dict[str, Any]:
    ctx = _request(headers)
    reply, ran = chain.run_request_sync(ctx)
    ctx.response = Response(reply.status if reply else 200)
    chain.run_response_sync(ctx, ran)
    return _observe(chain, ctx, reply, ran)


async def _run_inline(chain: Chain, headers: dict[str, str]) -> dict[str, Any]:
    ctx = _request(headers)
    done = chain.run_request_inline(ctx)
    reply, ran = done if isinstance(done, tuple) else await done
    ctx.response = Response(reply.status if reply else 200)
    pending = chain.run_response_inline(ctx, ran)
    if pending is not None:
        await pending
    return _observe(chain, ctx, reply, ran)


EXPECTED = {
    "through": (None, 7, None, ["outer", "slow", "inner"], 200),
    "fail-open-request": (None, 7, None, ["outer", "slow", "inner"], 200),
    "fail-open-response": (None, 7, None, ["outer", "slow", "inner"], 200),
    "fail-closed-request": ((500, b"filter closed failed\n"), 4, "closed", ["outer", "slow"], 500),
    "local-reply": ((403, b"no\n"), 5, "deny", ["outer", "slow"], 403),
    "not-a-reply": ((500, b"filter wrong failed\n"), 6, "wrong", ["outer", "slow"], 500),
    "fail-closed-response": (None, 7, "closed", ["outer", "slow", "inner"], 500),
    "pause": (None, 7, None, ["outer", "slow", "inner"], 200),
}


@pytest.mark.parametrize(("headers"), [h for _, h in CASES], ids=[i for i, _ in CASES])
def test_sync_runners_same_outcome_either_way(timing: str, headers: dict[str, str]) -> None:
    chain = _chain()
    assert chain.sync_requests and chain.sync_responses
    got = _run_sync(chain, headers)
    case = next(i for i, h in CASES if h is headers)
    assert (got["reply"], got["ran"], got["stopped_by"], got["seen"], got["status"]) == (
        EXPECTED[case]
    )
    # Every phase that ran was counted once, whether it returned, replied or raised.
    ran = got["ran"]
    for k, inst in enumerate(chain.filters, 1):
        req = 1 if inst.on_request and k <= ran else 0
        resp = 1 if inst.on_response and k <= ran else 0
        assert got["calls"][inst.name] == [req, resp, 0], inst.name
    assert got["order"][0] == "req:outer:{'filter': 'outer'}"  # ctx.log was the filter's
    back = [n for n in ("inner", "slow", "outer") if n in got["seen"]]
    if case == "fail-closed-response":  # closed's 500 replaced inner's response
        back = ["slow", "outer"]
    assert got["back"] == back


async def test_inline_runners_same_outcome_either_way(timing: str) -> None:
    """With a maybe_async phase (timed in Python either way) among the others."""
    observed = {}
    for case, headers in CASES:
        chain = _chain(handover=True)
        assert chain.inline and not chain.sync_requests
        got = await _run_inline(chain, headers)
        observed[case] = got
        reply, ran, stopped_by, seen, status = EXPECTED[case]
        assert (got["reply"], got["stopped_by"], got["seen"], got["status"]) == (
            reply,
            stopped_by,
            seen,
            status,
        ), case
        assert got["ran"] == (ran + 1 if ran > 3 else ran), case  # "pause" is 4th
        assert got["calls"]["pause"] == [1, 1, 0], case
    assert observed["pause"]["calls"]["outer"] == [1, 1, 0]
    # The request phase that waited 3 ms was timed from its call to the wait's end.
    chain = _chain(handover=True)
    await _run_inline(chain, {"x-pause": "1"})
    pause = chain.filters[3]
    assert pause.name == "pause" and pause.stats.calls[REQUEST] == 1
    assert sum(pause.stats.buckets[REQUEST][: bisect_left(FilterStats.BOUNDS, SLEEP)]) == 0
    assert SLEEP <= pause.stats.seconds < 1.0


def test_durations_measured_and_bounded(timing: str) -> None:
    """A call that sleeps 3 ms is counted at 3 ms or more; the others' are counted too;
    no pending list outgrows FilterStats.PENDING and the sums agree with the counts."""
    chain = _chain()
    runs = FilterStats.PENDING + 9
    for _ in range(runs):
        _run_sync(chain, {})
        for inst in chain.filters:
            assert all(len(p) <= FilterStats.PENDING for p in inst.stats.pending)
    slow = chain.filters[2]
    below = bisect_left(FilterStats.BOUNDS, SLEEP)
    assert slow.stats.calls == [runs, runs, 0]
    assert sum(slow.stats.buckets[REQUEST][:below]) == 0  # none shorter than its sleep
    assert slow.stats.seconds >= runs * SLEEP
    for inst in chain.filters:
        assert inst.stats.calls[REQUEST] == runs and inst.stats.calls[LOG] == 0
        assert sum(inst.stats.buckets[RESPONSE]) == (runs if inst.on_response else 0)
        assert inst.stats.seconds > 0.0


def test_runners_use_the_path_asked_for(timing: str) -> None:
    """What the runners' names hold: Laps on one Clock per runner in C, none in Python."""
    chain = _chain()
    if timing == "loop":
        assert _timing is not None
        assert chain.run_request_sync == chain.run_request_inline == chain.loop_requests
        assert chain.run_response_sync == chain.run_response_inline == chain.loop_responses
        assert chain.native_requests and chain.native_responses
        for steps, clock in (
            (chain._request_steps, chain._request_clock),
            (chain._response_steps, chain._response_clock),
        ):
            assert isinstance(clock, _timing.Clock) and steps
            assert all(isinstance(s.lap, _timing.Lap) and s.lap.clock is clock for s in steps)
        return
    assert not chain.native_requests and not chain.native_responses
    for runner in (chain.run_request_sync, chain.run_response_sync):
        laps = {k: v for k, v in runner.__globals__.items() if k[0] == "P" and k[1:].isdigit()}
        if timing == "c":
            assert _timing is not None
            assert laps and all(isinstance(v, _timing.Lap) for v in laps.values())
            assert len({id(v.clock) for v in laps.values()}) == 1
        else:
            assert not laps


EDGES = [0.0, 1e-9, 5e-6, 5.000001e-6, 1e-5, 3e-3, 0.25, 1.0, 1.5, 1e9]


def test_bins_count_as_the_python_batches_do() -> None:
    """The C histogram puts a duration where FilterStats' own binning does (the first
    bound >= it), and its drain adds to the buckets and the sum exactly once."""
    if _timing is None:
        pytest.skip(NOT_BUILT)
    bins = _timing.Bins(FilterStats.BOUNDS)
    python = FilterStats()
    for d in EDGES * 3:
        bins.add(d)
        python.pending[REQUEST].append(d)
    assert bins.calls == len(EDGES) * 3
    row = [0] * (len(FilterStats.BOUNDS) + 1)
    total = bins.drain(row)
    assert row == python.buckets[REQUEST]
    assert total == pytest.approx(python.seconds)
    assert bins.calls == 0 and bins.drain(row) == 0.0 and row == python.buckets[REQUEST]
    with pytest.raises(TypeError):
        bins.drain([0])
    with pytest.raises(ValueError, match="increase"):
        _timing.Bins((1.0, 0.5))


def test_lap_counts_the_time_since_the_clock_noted_it() -> None:
    if _timing is None:
        pytest.skip(NOT_BUILT)
    clock = _timing.Clock()
    first, second = _timing.Bins(FilterStats.BOUNDS), _timing.Bins(FilterStats.BOUNDS)
    lap, other = _timing.Lap(clock, first), _timing.Lap(clock, second)
    clock()
    time.sleep(SLEEP)
    lap()  # one sleep since the clock's note
    other()  # (almost) nothing since the first lap
    row_first, row_second = [0] * 14, [0] * 14
    slept, after = first.drain(row_first), second.drain(row_second)
    assert slept >= SLEEP and 0.0 <= after < slept
    assert sum(row_first[: bisect_left(FilterStats.BOUNDS, SLEEP)]) == 0
    assert sum(row_first) == sum(row_second) == 1
    before = time.perf_counter()
    clock()
    assert abs(clock.last - before) < 1.0  # the clock time.perf_counter reads
    with pytest.raises(TypeError):
        lap(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _timing.Lap(clock, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _timing.Lap(object(), first)  # type: ignore[arg-type]


class _Handed(Filter[PluginConfig]):
    """Declares maybe_async phases, and hands them to other callables per instance (as
    the Proxy-Wasm adapter hands its phases to compiled code)."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.on_request = self._waits  # type: ignore[method-assign]
        self.on_response = functools.partial(self._replies, "handed")  # type: ignore[method-assign]

    @maybe_async
    def on_request(self, ctx: Context) -> Any:
        raise AssertionError("the instance's replacement runs, not this")

    @maybe_async
    def on_response(self, ctx: Context) -> Any:
        raise AssertionError("the instance's replacement runs, not this")

    def _waits(self, ctx: Context) -> Any:
        ctx.state["request"] = "replacement"
        return asyncio.sleep(0, result=None)

    def _replies(self, tag: str, ctx: Context) -> None:
        ctx.state["response"] = tag


async def test_a_phase_handed_to_another_callable_keeps_the_class_declaration(
    timing: str,
) -> None:
    """The chain calls what the instance has under the phase's name, and takes whether
    it may return an awaitable from the class's method (a builtin or a partial carries
    no ``maybe_async`` of its own): the awaitable is awaited, not refused as a wrong
    return value."""
    inst = make_filter(_Handed, name="handed")
    assert inst.on_request is not None and inst.on_request.is_async
    assert inst.on_response is not None and inst.on_response.is_async
    chain = Chain([inst], handover=IN_TASK)
    assert chain.inline
    got = await _run_inline(chain, {})
    assert got["reply"] is None and got["ran"] == 1 and got["status"] == 200
    assert got["calls"]["handed"] == [1, 1, 0] and got["errors"]["handed"] == (0, 0)
