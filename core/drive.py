"""Running an exchange's coroutine without an asyncio Task, until it needs one.

Most HTTP/1.1 requests on a keep-alive connection wait for exactly one thing: the
upstream's response head, through the exchange's own future. A Task per request
costs more than that wait: its creation, its registration in asyncio's task set, a
loop turn before its first step and another for its done callback. :class:`Driven`
instead takes the coroutine's first step at once, from the parser callback that
completed the request head, and resumes it from the done callback of whatever
future it awaits.

Code that needs a real Task (``asyncio.timeout``, ``asyncio.current_task``, and
whatever an ``async`` filter may use) first awaits :data:`IN_TASK`: run by a
:class:`Driven`, that hands the coroutine over to a Task, which takes it from there;
in a Task it costs one no-op await. The exchange awaits it before opening a new
upstream connection and before running a chain with an ``async def`` phase; a chain
of ``maybe_async`` phases (a Proxy-Wasm filter's) awaits it, through
``Chain(handover=IN_TASK)``, only before awaiting what a phase returned to wait on.
So only the pooled path whose filters do not wait runs task-less.

Every coroutine being driven is counted in :attr:`Runner.driven`, so that a drain
can wait for them as it waits for tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Final, Protocol


class Runner(Protocol):
    """What a :class:`Driven` reports to (the gateway)."""

    driven: int

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
    def log_error(self, message: str, exc: BaseException) -> None: ...


class _Handover:
    """What a driven coroutine yields to ask for a Task (see :data:`IN_TASK`)."""

    __slots__ = ()


_HANDOVER: Final = _Handover()


class _InTask:
    """``await IN_TASK``: continue in a Task (a no-op when already in one)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        if asyncio.current_task() is None:
            yield _HANDOVER


IN_TASK: Final = _InTask()


class Driven:
    """Steps one coroutine from future callbacks (see the module docstring)."""

    __slots__ = ("_coro", "_loop", "_runner")

    def __init__(
        self,
        coro: Coroutine[Any, Any, None],
        runner: Runner,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._coro = coro
        self._runner = runner
        self._loop = loop
        runner.driven += 1
        self._step(None)

    def _step(self, _done: object) -> None:
        try:
            waited = self._coro.send(None)
        except StopIteration:
            self._runner.driven -= 1
            return
        except Exception as exc:  # the exchange catches its own; this is a bug
            self._runner.driven -= 1
            self._runner.log_error("proxy error", exc)
            return
        step: Callable[[object], None] = self._step
        # A Future yields itself with this flag set (asyncio's contract with Task).
        if getattr(waited, "_asyncio_future_blocking", False):
            waited._asyncio_future_blocking = False
            waited.add_done_callback(step)
        elif waited is _HANDOVER:
            self._runner.driven -= 1
            self._runner.spawn(self._coro)  # its first step resumes after the yield
        elif waited is None:  # a bare yield (asyncio.sleep(0)): once round the loop
            self._loop.call_soon(step, None)
        else:  # nothing in the exchange yields anything else
            self._runner.driven -= 1
            self._runner.log_error("proxy error", RuntimeError(f"bad yield {waited!r}"))
            self._coro.close()
