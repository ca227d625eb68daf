"""The shared store: state that several gateway processes and replicas must agree on.

One Redis (``[store] redis = "redis://..."`` in gateway.toml) holds what per-process
memory cannot: cluster-wide rate limits (``rate-limit`` with ``policy = "redis"``)
and the shared data of Proxy-Wasm filters with ``shared_data = "redis"``. This is the
only module that imports ``redis`` (redis-py, its asyncio API); its errors become
the :class:`StoreError` tree here::

    StoreError (RuntimeError)        the call did not produce a result
    ├── StoreUnavailable             cannot connect, connection lost, or backing off
    ├── StoreTimeout (TimeoutError)  no answer within [store].timeout
    └── StoreCommandError            Redis answered with an error (a bad script, auth)

A plugin reaches the store with :func:`get` from any phase::

    from plugin_sdk import store

    s = store.get()                       # StoreUnavailable when [store] is not set
    result = await s.run(MY_SCRIPT, [s.key("my-filter", k)], [arg])

Calls are bounded: each waits at most ``[store].timeout`` seconds (connecting
included); after a failure to connect or a timeout the store answers
:class:`StoreUnavailable` at once for ``[store].retry_interval`` seconds instead of
making every request wait, then tries again. Script calls (:meth:`Store.run`) made in
the same turn of the event loop are written to Redis at once, on one connection, up to
:data:`MAX_IN_FLIGHT` such batches on the wire (a round trip for many requests); that
connection and the parsing of its answers are :mod:`plugin_sdk.store_pipe`'s (hiredis,
no redis-py code per call). A connection Redis closes while idle is replaced at the
next call; calls waiting on one that closes fail with :class:`StoreUnavailable`. A
caller that folds a turn's requests into fewer calls registers with
:meth:`Store.before_send` and settles its own futures with ``run(..., into=...)``.

Clients are per process and per event loop, created at first use (a forked worker
opens its own connections). The gateway calls :func:`configure` when it builds a
configuration; a changed ``[store]`` takes effect for calls made after it.
:func:`count_error` and :func:`report` give a plugin the gateway's way of counting an
outage (``wasmgate_store_errors_total`` on /metrics) and logging it once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plugin_sdk import store_pipe

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from plugin_sdk.store_pipe import Batch, Call, Pipe

Arg = str | bytes | int | float
#: Batches on the wire at once: more cut the wait behind a slow answer, fewer make
#: bigger batches (less CPU per call).
MAX_IN_FLIGHT = 2
#: Commands kept packed per script and ARGV (one-key calls, by key); past it, forgotten.
PACKED_KEYS = 1024


@dataclass(frozen=True)
class StoreSettings:
    """``[store]`` as the store uses it (docs/configuration.md describes each field)."""

    redis: str | None = None
    password: str | None = None
    connect_timeout: float = 0.5
    timeout: float = 0.25
    retry_interval: float = 1.0
    max_connections: int = 32
    key_prefix: str = "wasmgate:"
    cluster: bool = False
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = "mymaster"
    tls_ca_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


class StoreError(RuntimeError):
    """A store call produced no result; ``kind`` labels it in metrics."""

    kind = "error"


class StoreUnavailable(StoreError):
    kind = "unavailable"


class StoreTimeout(StoreError, TimeoutError):
    kind = "timeout"


class StoreCommandError(StoreError):
    kind = "error"


class Script:
    """A Lua script, sent with EVALSHA (Redis caches it compiled, by its SHA1); a call
    Redis answers NOSCRIPT (its cache was flushed, or it restarted) is sent again on
    its own after one SCRIPT LOAD (see ``Store._again``)."""

    __slots__ = ("_tails", "head", "sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        # 40 hex digits instead of the whole body on every call: less to send, and less
        # for Redis to read and hash per call.
        self.head = b"$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % self.sha.encode()
        # ARGV packed, by the identity of the args object: callers such as a rate limit
        # pass the very same tuple on every call (a few are kept, not more). With it, the
        # whole command of a one-key call, by key: a busy key is packed once, not per call.
        self._tails: dict[int, tuple[Sequence[Arg], bytes, dict[str, bytes]]] = {}

    def call(self, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
        """``EVALSHA`` of this script in the Redis protocol (RESP), packed here rather than
        by redis-py: this is the per-request path of every script call."""
        known = self._tails.get(id(args))
        if known is None or known[0] is not args:
            tail = b"".join([b"$%d\r\n%s\r\n" % (len(p), p) for p in map(_encode, args)])
            if not isinstance(args, tuple) or len(self._tails) >= 64:
                return self._pack(keys, len(args), tail)
            known = self._tails[id(args)] = (args, tail, {})  # (kept alive: its id stays its own)
        if len(keys) != 1:
            return self._pack(keys, len(args), known[1])
        commands = known[2]
        command = commands.get(keys[0])
        if command is None:
            if len(commands) >= PACKED_KEYS:
                commands.clear()
            command = commands[keys[0]] = self._pack(keys, len(args), known[1])
        return command

    def _pack(self, keys: Sequence[str], nargs: int, tail: bytes) -> bytes:
        count = b"%d" % len(keys)
        return b"".join(
            [
                b"*%d\r\n" % (len(keys) + nargs + 3),
                self.head,
                b"$%d\r\n%s\r\n" % (len(count), count),
                *[b"$%d\r\n%s\r\n" % (len(p), p) for p in map(_encode, keys)],
                tail,
            ]
        )


def _encode(value: Arg) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):
        return b"%d" % value
    return repr(value).encode()


class Store:
    """One process's client of the configured Redis, on one event loop."""

    def __init__(self, settings: StoreSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.prefix = settings.key_prefix
        self.timeout = settings.timeout
        self._client: Redis | None = None
        self._down_until = 0.0
        self._open: Batch | None = None  # calls waiting to be sent
        self._pipe: Pipe | None = None  # the connection batches go out on
        self._connecting: asyncio.Task[Pipe] | None = None
        self._inflight = 0  # batches written and not yet answered
        self._gathers: list[Callable[[], None]] = []  # see before_send
        self._gathering = False

    def key(self, *parts: str) -> str:
        """A key under ``[store].key_prefix``: ``prefix + ":".join(parts)``."""
        return self.prefix + ":".join(parts)

    # -- calls

    def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        into: asyncio.Future[Any] | None = None,
    ) -> asyncio.Future[Any]:
        """Run ``script`` atomically on Redis with ``KEYS`` and ``ARGV``: await the result.

        A future rather than a coroutine (this is the per-request path): raises
        :class:`StoreUnavailable` at once while backing off, and the future fails with
        a :class:`StoreError` when the call does. ``into``: settle this future (made on
        this store's loop) rather than a new one, for a caller that handed it out before
        making the call (see :meth:`before_send`)."""
        self._check_up()
        if self.settings.cluster:
            task = self.loop.create_task(self._single_bounded(script, keys, args))
            if into is None:
                return task
            task.add_done_callback(lambda t: _settle(into, t))
            return into
        # No timer of its own: the batch's one timer bounds it.
        future: asyncio.Future[Any] = self.loop.create_future() if into is None else into
        batch = self._open
        if batch is None:
            batch = self._open = store_pipe.Batch(self.loop, self.timeout, self._expired)
            if self._inflight < MAX_IN_FLIGHT and not self._gathering:
                self.loop.call_soon(self._flush)
        batch.calls.append((script, keys, args, future))
        return future

    def before_send(self, gather: Callable[[], None]) -> None:
        """Call ``gather()`` once, at the end of this turn of the event loop, right before
        the turn's script calls are written: the calls it makes with :meth:`run` go out
        with them. For a caller that folds a turn's requests into fewer calls (the
        rate-limit takes all of a key's tokens in one); ``gather`` must not raise."""
        if not self._gathers:
            self.loop.call_soon(self._flush)
        self._gathers.append(gather)

    async def _single_bounded(
        self, script: Script, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        task = self.loop.create_task(self._single(script, keys, args))
        future: asyncio.Future[Any] = self.loop.create_future()
        task.add_done_callback(lambda t: _settle(future, t))
        return await self._wait(future)

    async def command(self, *args: Arg) -> Any:
        """Any Redis command (``"GET", key``), bounded by the timeout like :meth:`run`."""
        self._check_up()
        client = self._redis()
        call = client.execute_command(*args)  # type: ignore[no-untyped-call]
        return await self._wait(asyncio.ensure_future(self._guard(call)))

    async def close(self) -> None:
        client, self._client = self._client, None
        pipe, self._pipe = self._pipe, None
        if self._connecting is not None:
            self._connecting.cancel()
        if pipe is not None:
            pipe.close(StoreUnavailable("the store client was closed"))
        if client is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing to keep
                await client.aclose()

    # -- inside

    def _check_up(self) -> None:
        if self._down_until and time.monotonic() < self._down_until:
            raise StoreUnavailable("the store is unreachable (backing off before the next try)")

    async def _wait(self, future: asyncio.Future[Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            self._mark_down()
            raise StoreTimeout(f"the store did not answer within {self.timeout:g} s") from None
        except StoreUnavailable:
            self._mark_down()
            raise

    def _mark_down(self) -> None:
        self._down_until = time.monotonic() + self.settings.retry_interval

    def _redis(self) -> Redis:
        if self._client is None:
            self._client = _connect(self.settings)
        return self._client

    def _flush(self) -> None:
        # Pipelining on one connection: each batch is written as soon as it is formed,
        # up to MAX_IN_FLIGHT batches unanswered; the answers come back in that order.
        if self._gathers:  # first the calls that wait for the end of the turn
            gathers, self._gathers = self._gathers, []
            self._gathering = True
            try:
                for gather in gathers:
                    gather()
            finally:
                self._gathering = False
        batch = self._open
        if batch is None or self._inflight >= MAX_IN_FLIGHT:
            return
        pipe = self._pipe
        if pipe is None or pipe.closed:
            self._pipe = None
            if self._connecting is None:  # the open batch waits for the connection
                self._connecting = self.loop.create_task(self._connect_pipe())
                self._connecting.add_done_callback(self._connected)
            return
        self._open = None
        if all(item[3].done() for item in batch.calls):  # expired meanwhile
            batch.timer.cancel()
            return
        self._inflight += 1
        pipe.send(batch)

    async def _connect_pipe(self) -> Pipe:
        pool = self._redis().connection_pool
        connection = pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            return await store_pipe.take_over(connection, self._answered, self._lost)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            if isinstance(exc, Exception):
                raise _translate(exc) from exc
            raise

    def _connected(self, task: asyncio.Task[Pipe]) -> None:
        self._connecting = None
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self._pipe = task.result()
            self._flush()
            return
        if isinstance(error, StoreUnavailable | StoreTimeout):
            self._mark_down()
        batch, self._open = self._open, None  # the calls that waited for it fail
        if batch is not None:
            batch.timer.cancel()
            _fail_all(batch.calls, error)

    def _answered(self, batch: Batch) -> None:
        self._inflight -= 1
        if batch.again:  # rare: after a Redis restart or a SCRIPT FLUSH
            batch.task = self.loop.create_task(self._again(batch.again))
            batch.task.add_done_callback(lambda _: batch.timer.cancel())
        else:
            batch.timer.cancel()
        self._flush()

    def _lost(self, pipe: Pipe, error: BaseException) -> None:
        # A connection closed while idle (Redis's `timeout`, a proxy) is no outage: the
        # next call opens another. Calls that were waiting on it fail, and the store
        # backs off as after any failed call.
        if self._pipe is pipe:
            self._pipe = None
        lost = pipe.take()
        if lost:
            self._mark_down()
        for batch in lost:
            self._inflight -= 1
            batch.timer.cancel()
            _fail_all(batch.calls, error)
        self._flush()

    def _expired(self, batch: Batch) -> None:
        self._mark_down()
        if self._open is batch:  # not yet sent: later calls start a new batch
            self._open = None
        for item in batch.calls:
            _set(
                item[3],
                exception=StoreTimeout(f"the store did not answer within {self.timeout:g} s"),
            )
        if batch.task is not None:
            batch.task.cancel()
        unanswered = batch.sent and batch.answered < len(batch.calls)
        if unanswered and self._pipe is not None:  # answers still due on it: drop it
            self._pipe.close(StoreTimeout(f"the store did not answer within {self.timeout:g} s"))

    async def _again(self, items: list[Call]) -> None:
        """Calls Redis answered NOSCRIPT: load their scripts, then send them again as
        one pipeline, away from the batch's connection (its answers stay in order),
        still under the batch's timer."""
        client = self._redis()
        try:
            for source in {item[0].source for item in items}:
                await self._guard(client.script_load(source))
            pipe = client.pipeline(transaction=False)
            for script, keys, args, _ in items:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            results = await self._guard(pipe.execute(raise_on_error=False))
        except StoreError as exc:
            for item in items:
                _set(item[3], exception=type(exc)(str(exc)))
            return
        for item, result in zip(items, results, strict=True):
            if isinstance(result, Exception):
                _set(item[3], exception=_translate(result))
            else:
                _set(item[3], result=result)

    async def _single(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        from redis.exceptions import NoScriptError

        client = self._redis()
        try:
            return await self._guard(client.evalsha(script.sha, len(keys), *keys, *args))
        except StoreCommandError as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
        return await self._guard(client.eval(script.source, len(keys), *keys, *args))

    @staticmethod
    async def _guard(call: Any) -> Any:
        """Await ``call`` with redis-py's errors translated into the StoreError tree."""
        try:
            return await call
        except Exception as exc:
            raise _translate(exc) from exc


def _translate(exc: BaseException) -> StoreError:
    from redis import exceptions as rx

    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, rx.TimeoutError | TimeoutError):
        return StoreTimeout(f"the store timed out: {exc}")
    if isinstance(exc, rx.AuthenticationError | rx.ResponseError):
        return StoreCommandError(f"the store refused the command: {exc}")
    if isinstance(exc, rx.ConnectionError | OSError):
        return StoreUnavailable(f"cannot reach the store: {exc}")
    return StoreCommandError(f"store call failed: {exc!r}")


def _set(future: asyncio.Future[Any], *, result: Any = None, exception: Any = None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _settle(future: asyncio.Future[Any], task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        _set(future, exception=StoreUnavailable("the store call was cancelled"))
    elif task.exception() is not None:
        _set(future, exception=task.exception())
    else:
        _set(future, result=task.result())


def _fail_all(calls: list[Call], error: BaseException | None) -> None:
    for item in calls:
        future = item[3]
        if not future.done():  # each caller its own exception object
            if isinstance(error, StoreError):
                future.set_exception(type(error)(str(error)))
            else:
                future.set_exception(StoreUnavailable(f"no answer from the store: {error!r}"))
        if not future.cancelled():
            future.exception()  # retrieved: a caller that gave up leaves no warning behind


def _connect(s: StoreSettings) -> Redis:
    """A redis-py client for ``s`` (standalone URL, cluster or sentinel)."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    common: dict[str, Any] = {
        "socket_connect_timeout": s.connect_timeout,
        "socket_timeout": max(s.timeout, 0.05) * 4,
        "max_connections": s.max_connections,
        "retry": Retry(NoBackoff(), 0),  # our callers decide what a failure means
        **s.extra,
    }
    if s.password is not None:
        common["password"] = s.password
    if s.sentinels:
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(list(s.sentinels), **common)
        master: Redis = sentinel.master_for(s.service)
        return master
    assert s.redis is not None
    if s.tls_ca_file is not None and s.redis.startswith("rediss://"):
        common["ssl_ca_certs"] = s.tls_ca_file
    if s.cluster:
        from redis.asyncio.cluster import RedisCluster

        common.pop("max_connections")
        common.pop("retry")
        return RedisCluster.from_url(s.redis, **common)  # type: ignore[return-value]
    from redis.asyncio import Redis

    return Redis.from_url(s.redis, **common)


# -------------------------------------------------------------- the process's store

_settings: StoreSettings | None = None
_stores: dict[asyncio.AbstractEventLoop, Store] = {}
_errors: dict[tuple[str, str], int] = {}
_reported: dict[str, tuple[float, int]] = {}  # user -> (last logged, errors since)
_closing: set[asyncio.Task[None]] = set()
REPORT_INTERVAL = 10.0


def configure(settings: StoreSettings | None) -> None:
    """Set (or with None, unset) the store; clients of other settings are dropped."""
    global _settings
    if settings == _settings:
        return
    _settings = settings
    _reported.clear()  # another store: its outages are news
    old = list(_stores.values())
    _stores.clear()
    for store in old:  # the caller may be a reload's thread: hand over to each loop
        if not store.loop.is_closed():
            store.loop.call_soon_threadsafe(_close_soon, store)


def _close_soon(store: Store) -> None:
    task = store.loop.create_task(store.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def configured() -> bool:
    """Whether gateway.toml has a ``[store]`` with a Redis to use."""
    return _settings is not None and bool(_settings.redis or _settings.sentinels)


def get() -> Store:
    """This process's store on the running loop; :class:`StoreUnavailable` without one."""
    # (configure() empties _stores: a store found there is of the current settings)
    store = _stores.get(asyncio.get_running_loop()) if _stores else None
    if store is None:
        if _settings is None or not configured():
            raise StoreUnavailable("no shared store: set [store] redis in gateway.toml")
        loop = asyncio.get_running_loop()
        for other in [lp for lp in _stores if lp.is_closed()]:
            del _stores[other]
        store = _stores[loop] = Store(_settings, loop)
    return store


def count_error(user: str, kind: str) -> None:
    """Count a store error met by ``user`` (a filter's name) for /metrics."""
    key = (user, kind)
    _errors[key] = _errors.get(key, 0) + 1


def error_counts() -> dict[tuple[str, str], int]:
    """(user, kind) -> errors counted in this process."""
    return dict(_errors)


def report(
    user: str, error: StoreError, logger: logging.Logger | logging.LoggerAdapter[Any], what: str
) -> None:
    """Count ``error`` and log it, at most once per :data:`REPORT_INTERVAL` per user
    (the log line says how many were not logged since)."""
    count_error(user, error.kind)
    now = time.monotonic()
    last, since = _reported.get(user, (-REPORT_INTERVAL, 0))
    if now - last < REPORT_INTERVAL:
        _reported[user] = (last, since + 1)
        return
    _reported[user] = (now, 0)
    more = f" ({since} more since the last report)" if since else ""
    logger.warning("store error (%s): %s; %s%s", error.kind, error, what, more)


def _forget() -> None:
    # A forked worker must open its own connections.
    _stores.clear()


os.register_at_fork(after_in_child=_forget)
