"""What the chain counts per filter (FilterStats): the compiled runners append each
call's duration to a pending list and the histogram is filled in batches; every read
must still be exact, and the pending lists must stay bounded."""

from __future__ import annotations

import math
from bisect import bisect_left

import pytest

from plugin_sdk import Context, Filter, LocalReply, PluginConfig
from plugin_sdk.chain import REQUEST, RESPONSE, Chain, FilterStats
from plugin_sdk.http import Response
from plugin_sdk.testing import make_filter, make_request

BOUNDS = FilterStats.BOUNDS


def _edges() -> list[float]:
    """Every bound, and the floats just below and above it, plus the extremes."""
    out = [0.0, 1e-9, 3.0, 1e9]
    for b in BOUNDS:
        out += [math.nextafter(b, 0.0), b, math.nextafter(b, math.inf)]
    return out


BATCHES = {
    "every-edge": _edges() * 3,
    "one-bucket": [1.1e-5, 2e-5, 2.5e-5, 1.5e-5] * 50,  # (1e-5, 2.5e-5]: counted at once
    "middle-buckets": [6e-5, 1e-4, 2e-4, 3e-4, 5e-4, 7e-5, 2.4e-4] * 20,
    "first-bucket": [0.0, 1e-7, 5e-6],
}


@pytest.mark.parametrize("durations", list(BATCHES.values()), ids=list(BATCHES))
def test_batched_binning_matches_one_bisect_per_call(durations: list[float]) -> None:
    batched, direct = FilterStats(), FilterStats()
    for phase in (REQUEST, RESPONSE):
        for d in durations:
            batched.pending[phase].append(d)
            direct.observe(phase, d)
        batched.flush()
        batched.pending[phase].append(2e-6)  # left pending: the read below bins it
        direct.observe(phase, 2e-6)
    assert batched.buckets == direct.buckets
    assert batched.calls == direct.calls == [len(durations) + 1] * 2 + [0]
    assert math.isclose(batched.seconds, direct.seconds, rel_tol=1e-12)
    assert batched.pending == ([], [], [])


def test_each_edge_lands_in_the_bucket_bisect_gives() -> None:
    for d in _edges():
        stats = FilterStats()
        stats.pending[RESPONSE].append(d)
        row = stats.buckets[RESPONSE]
        assert row[bisect_left(BOUNDS, d)] == 1, d
        assert sum(row) == 1


class _Pass(Filter[PluginConfig]):
    def on_request(self, ctx: Context) -> None:
        return None

    def on_response(self, ctx: Context) -> None:
        return None


class _ResponseOnly(Filter[PluginConfig]):
    def on_response(self, ctx: Context) -> None:
        return None


class _Deny(Filter[PluginConfig]):
    def on_request(self, ctx: Context) -> LocalReply:
        return LocalReply(401)


@pytest.mark.parametrize("runs", [1, FilterStats.PENDING * 3 + 7])
def test_compiled_runners_count_every_call_and_stay_bounded(runs: int) -> None:
    """Chain [outer, deny, pass, inner]: deny answers every request, so of the response
    phases only outer's runs (outer and inner have no request phase, so only the
    response runner looks at their lists). Counts stay exact; no pending list outgrows
    its bound."""
    outer = make_filter(_ResponseOnly, name="outer")
    deny, after = make_filter(_Deny), make_filter(_Pass)
    inner = make_filter(_ResponseOnly, name="inner")
    chain = Chain([outer, deny, after, inner])
    assert chain.sync_requests and chain.sync_responses
    for _ in range(runs):
        ctx = Context(make_request())
        reply, ran = chain.run_request_sync(ctx)
        assert isinstance(reply, LocalReply) and ran == 2
        ctx.response = Response(401)
        chain.run_response_sync(ctx, ran)
        for inst in chain.filters:
            assert all(len(p) <= FilterStats.PENDING for p in inst.stats.pending)
    assert outer.stats.calls == [0, runs, 0]
    assert deny.stats.calls == [runs, 0, 0]
    assert after.stats.calls == inner.stats.calls == [0, 0, 0]
    assert outer.stats.seconds > 0.0
    assert all(p == [] for inst in chain.filters for p in inst.stats.pending)
