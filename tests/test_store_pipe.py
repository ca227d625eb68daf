"""The store's pipelined connection (plugin_sdk/store_pipe.py) against a real
redis-server: batches in one write, answers matched to their callers across batches
in flight, an error answer in the middle of a batch, a connection Redis closes while
idle or while calls wait on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from plugin_sdk import store
from tests.redis_server import RedisServer

# Answers with what it was asked, so that each caller can tell its own answer; "bad"
# is refused by Redis (an error reply in the middle of the pipeline).
ECHO = store.Script(
    "if ARGV[1] == 'bad' then return redis.error_reply('ERR bad argument') end "
    "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"
)


@pytest.fixture(autouse=True)
def no_store() -> Iterator[None]:
    yield
    store.configure(None)


def use(redis: RedisServer) -> store.Store:
    settings = store.StoreSettings(redis=redis.url, timeout=3.0, retry_interval=5.0)
    store.configure(settings)
    return store.get()


def stat(redis: RedisServer, name: str) -> int:
    for line in redis.command("INFO", "stats").splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":")[1])
    raise AssertionError(f"no {name} in INFO stats")


async def test_calls_of_one_turn_reach_redis_in_one_write(redis_server: RedisServer) -> None:
    s = use(redis_server)
    assert await s.run(ECHO, ["warm"], ["x"]) == [b"warm", b"x", 1]  # connected
    before = stat(redis_server, "total_reads_processed")
    answers = await asyncio.gather(*(s.run(ECHO, [f"k{i}"], [str(i)]) for i in range(50)))
    assert answers == [[f"k{i}".encode(), str(i).encode(), 1] for i in range(50)]
    # 50 EVALSHA in one write: Redis reads them at once (+1 for this INFO's own read).
    assert stat(redis_server, "total_reads_processed") - before <= 3


async def test_answers_reach_their_callers_across_batches_and_errors(
    redis_server: RedisServer,
) -> None:
    s = use(redis_server)

    async def caller(i: int) -> object:
        await asyncio.sleep(0.001 * (i % 7))  # calls spread over several loop turns
        arg = "bad" if i % 10 == 3 else str(i)
        try:
            return await s.run(ECHO, [f"c{i % 5}"], [arg])
        except store.StoreCommandError as exc:
            return str(exc)

    answers = await asyncio.gather(*(caller(i) for i in range(200)))
    counts: dict[int, list[int]] = {}
    for i, answer in enumerate(answers):
        if i % 10 == 3:
            assert answer == "the store refused the command: ERR bad argument"
            continue
        assert isinstance(answer, list)
        key, arg, count = answer
        assert (key, arg) == (f"c{i % 5}".encode(), str(i).encode())
        counts.setdefault(i % 5, []).append(count)
    # Each key counted every call that reached it exactly once.
    assert {k: sorted(v) for k, v in counts.items()} == {
        k: list(range(1, len(v) + 1)) for k, v in counts.items()
    }


async def test_a_connection_closed_while_idle_is_replaced_at_the_next_call(
    redis_server: RedisServer,
) -> None:
    # Redis's own `timeout` setting, a proxy or a firewall may close an idle connection:
    # that is no outage, and the next call must simply open a new one.
    s = use(redis_server)
    assert await s.run(ECHO, ["n"], ["1"]) == [b"n", b"1", 1]
    killed = redis_server.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert int(killed.strip(":\r\n")) >= 1
    await asyncio.sleep(0.2)  # the close has reached the client
    assert await s.run(ECHO, ["n"], ["2"]) == [b"n", b"2", 2]


async def test_calls_waiting_on_a_connection_that_dies_fail_at_once(
    redis_server: RedisServer,
) -> None:
    s = use(redis_server)
    assert await s.run(ECHO, ["n"], ["1"]) == [b"n", b"1", 1]
    redis_server.pause()  # the calls below are written and wait for their answers
    try:
        calls = [s.run(ECHO, ["n"], [str(i)]) for i in range(10)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        assert redis_server.proc is not None
        redis_server.proc.kill()  # stopped, it dies without answering: the connection
        redis_server.proc.wait()  # is closed with the calls on it
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        redis_server.start()
    assert all(isinstance(r, store.StoreUnavailable) for r in results), results
    assert time.monotonic() - started < 2.0  # not the 3 s timeout
    with pytest.raises(store.StoreUnavailable, match="backing off"):
        await s.run(ECHO, ["n"], ["x"])
