"""The connection that carries the store's script calls: the per-request path of
:meth:`plugin_sdk.store.Store.run`.

A batch (the calls made in one turn of the event loop) is packed into one write;
Redis answers in the order it was asked, so the answers are matched to the calls by
position as they arrive. They are parsed by hiredis (redis-py's own fast parser)
straight from ``data_received``: no task, lock or coroutine per call or per batch.

redis-py still opens the connection, so TLS, AUTH, SELECT and Sentinel's choice of
the master stay exactly what redis-py makes of the settings; then the pipe takes over
the connection's transport (:func:`take_over`) and redis-py never reads from it
again. Errors of this module are already the :class:`~plugin_sdk.store.StoreError`
tree's (it imports nothing from redis-py); the owner (``Store``) is told of each
answered batch and of a lost connection through the two callbacks it passes in.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import hiredis

from plugin_sdk import store as _store  # (a cycle: names are looked up at call time)

if TYPE_CHECKING:
    from plugin_sdk.store import Arg, Script

Call = tuple["Script", Sequence[str], Sequence["Arg"], "asyncio.Future[Any]"]


class Batch:
    """Script calls written together, with one timer that bounds them all."""

    __slots__ = ("again", "answered", "calls", "sent", "task", "timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        expired: Callable[[Batch], None],
    ) -> None:
        self.calls: list[Call] = []
        self.timer = loop.call_later(timeout, expired, self)
        self.sent = False
        self.answered = 0  # calls answered so far, in order
        self.again: list[Call] = []  # answered NOSCRIPT: to send again with the body
        self.task: asyncio.Task[None] | None = None  # sending those again


class Pipe(asyncio.Protocol):
    """One Redis connection, its batches in the order they were written."""

    def __init__(
        self,
        on_answered: Callable[[Batch], None],
        on_lost: Callable[[Pipe, BaseException], None],
    ) -> None:
        self._on_answered = on_answered
        self._on_lost = on_lost
        self._reader = hiredis.Reader()
        self._waiting: deque[Batch] = deque()  # written, not fully answered
        self._transport: asyncio.Transport | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.closed = False

    def send(self, batch: Batch) -> None:
        """Write ``batch``'s calls at once (EVALSHA each); their answers come in order."""
        assert self._transport is not None and not self.closed
        packed = b"".join([script.call(keys, args) for script, keys, args, _ in batch.calls])
        batch.sent = True
        self._waiting.append(batch)
        self._transport.write(packed)

    def close(self, error: BaseException) -> None:
        """Drop the connection; every call still waiting on it fails with ``error``."""
        if self.closed:
            return
        self.closed = True
        if self._transport is not None:
            self._transport.abort()  # answers left unread on it: never reuse it
        self._on_lost(self, error)

    def take(self) -> list[Batch]:
        """The batches left unanswered (after :meth:`close`), for the owner to fail."""
        waiting = list(self._waiting)
        self._waiting.clear()
        return waiting

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not subclasses of asyncio.Transport, but are one)
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self.close(
                    _store.StoreUnavailable(f"the store sent something that is not RESP: {exc}")
                )
                return
            if reply is False:
                return
            if not waiting:  # an answer nobody asked for: the stream is out of step
                self.close(_store.StoreUnavailable("the store answered a call that was not made"))
                return
            batch = waiting[0]
            call = batch.calls[batch.answered]
            batch.answered += 1
            future = call[3]
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                if message.startswith("NOSCRIPT"):
                    batch.again.append(call)  # not cached on this server (yet)
                elif not future.done():
                    future.set_exception(
                        _store.StoreCommandError(f"the store refused the command: {message}")
                    )
            elif not future.done():
                future.set_result(reply)
            if batch.answered == len(batch.calls):
                waiting.popleft()
                self._on_answered(batch)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self.close(
            _store.StoreUnavailable(f"cannot reach the store: the connection was closed{reason}")
        )


async def take_over(
    connection: Any,
    on_answered: Callable[[Batch], None],
    on_lost: Callable[[Pipe, BaseException], None],
) -> Pipe:
    """Connect redis-py's ``connection`` (its handshake included), then move its
    transport over to a new :class:`Pipe`; ``connection`` is not used again."""
    await connection.connect()
    # redis-py (5.x to 8.x) keeps the streams of an open connection in _reader and
    # _writer; the handshake has been answered, so nothing is left buffered in them.
    writer: asyncio.StreamWriter | None = getattr(connection, "_writer", None)
    if writer is None:
        raise RuntimeError("redis-py's connection has no stream writer: unsupported redis-py")
    connection._reader = connection._writer = None  # redis-py: "not connected" from now on
    transport = writer.transport
    pipe = Pipe(on_answered, on_lost)
    pipe.writer = writer  # kept: a StreamWriter closes its transport when collected
    transport.set_protocol(pipe)
    pipe.connection_made(transport)
    if transport.is_closing():
        pipe.connection_lost(None)
    return pipe
