"""A Proxy-Wasm plugin as a wasmgate filter.

:class:`PluginVm` owns one module instance and its root contexts (:class:`Root`), one
per plugin running in it: filters and services that name the same module and
``vm_id`` share the instance, as in Envoy. For each root it runs
``proxy_on_context_create(root, 0)``, ``proxy_on_vm_start`` and ``proxy_on_configure``
(a plugin that rejects its configuration is refused at load time), after the start
functions; a rebuild after a trap starts every root again (see
:mod:`core.wasm.sharing`). It creates a stream context per request under its plugin's
root, dispatches every callback on the arity the module actually exports (real modules
do not always match their ABI marker), and after any trap throws the instance away; the
next request builds a fresh one. A module that
exports no HTTP callbacks, or whose HTTP context creation traps (a Rust SDK plugin that
only registers a root context), runs as a root-only plugin: ticks and queues, no
per-request contexts.

The adapter to the filter contract is :class:`core.wasm.adapter.WasmFilter`.

CPU: callbacks run on the event loop, each under the per-callback deadline (Envoy's),
and the time they take is charged to the filter's :class:`~core.wasm.budget.CpuBudget`
(on the C path by each call itself, core/wasm/_crossing_meter.c: see
:meth:`PluginVm._meter`).
Over it, the filter is cut off for ``limits.cooldown``: its requests get its fail
strategy at once (``fail_closed``: 503 with Retry-After; ``fail_open``: skipped), ticks
and queue callbacks are skipped. After a trap the instance is rebuilt in a worker
thread (wasmtime releases the GIL), never on the loop; after a second trap in a row
only after a back-off (:class:`~core.wasm.budget.Backoff`), during which requests get
the fail strategy at once. Tick periods are raised to ``limits.min_tick_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Coroutine
from typing import Any

import wasmtime

from core.config import Node, WasmLimits
from core.errors import PluginError
from core.metrics import count_wasm, count_wasm_throttled
from core.upstream import UpstreamPool
from core.wasm import shared
from core.wasm.abi import ABI_MARKERS, HTTP_CALLBACKS
from core.wasm.budget import Backoff, CpuBudget
from core.wasm.callout import start_call
from core.wasm.grpc_stream import GrpcStream, close_owned
from core.wasm.host import Host, Stream, resolver
from core.wasm.metrics import FilterMetrics
from core.wasm.sharing import Root, RootContexts, RootedStream
from core.wasm.vm import CallFailed, Instance, WasmTrap, exported_markers
from plugin_sdk import Context

log = logging.getLogger("wasmgate.wasm")
# What Instance.ends calls, in order (a trap names its index).
_END_NAMES = ("proxy_on_done", "proxy_on_log", "proxy_on_delete")
_now = time.monotonic


class WasmUnavailable(WasmTrap):
    """The filter cannot run now: over its CPU budget, backing off before a rebuild,
    being rebuilt, or closed. Not a trap of its own (nothing is counted or rebuilt)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class PluginVm(RootContexts):
    """One Proxy-Wasm VM: its instance, the root context of each plugin in it
    (:class:`~core.wasm.sharing.RootContexts`) and their streams."""

    def __init__(
        self,
        name: str,
        module: wasmtime.Module,
        *,
        config: bytes,
        vm_config: bytes = b"",
        root_id: str = "",
        vm_id: str = "",
        memory_limit: int = 64 << 20,
        deadline_ms: int = 50,
        pause_timeout: float = 30.0,
        limits: WasmLimits | None = None,
        properties: dict[str, Any] | None = None,
        node: Node | None = None,
    ) -> None:
        self.name = name
        self.node = node or Node()
        self.limits = limits = limits or WasmLimits()
        self.module: wasmtime.Module | None = module
        self.closed = False
        self.vm_config = vm_config
        self.vm_id = vm_id or name
        self.memory_limit = memory_limit
        self.deadline_ms = deadline_ms
        self.pause_timeout = pause_timeout
        self.listen_address = ""
        markers = exported_markers(module, list(ABI_MARKERS))
        self.abi = ABI_MARKERS[markers[0]] if markers else "unknown"
        exports = {e.name for e in module.exports}
        self.root_only = not any(cb in exports for cb in HTTP_CALLBACKS)
        self.host = Host(self)
        self.instance: Instance | None = None
        self.root_id = 1  # the first plugin's root context
        self.roots: dict[int, Root] = {1: Root(1, name, root_id, config, properties)}
        self.active = self.roots[1]  # the root context of the callback running
        self._ids = itertools.count(2)  # one id space for root and stream contexts
        self.tokens = itertools.count(1)  # proxy_http_call tokens
        self.streams: dict[int, Stream] = {}
        self.traps = 0
        self.rebuilds = 0
        self.ticks = 0  # proxy_on_tick calls run
        self.pools: dict[str, UpstreamPool] = {}
        self.clusters: dict[str, str] = {}  # [wasm.clusters]: cluster name -> upstream
        self.resolved: dict[str, UpstreamPool] = {}  # cluster names resolved so far
        self.calls: set[asyncio.Task[None]] = set()  # HTTP and gRPC calls in flight
        # HTTP calls an HTTP context made, by token: (that context, the call's task).
        self.http_call_owners: dict[int, tuple[Stream, asyncio.Task[None]]] = {}
        self.grpc_calls: dict[int, asyncio.Task[None]] = {}  # unary gRPC calls by token
        self.grpc_call_owners: dict[int, Stream] = {}  # the HTTP context that made each
        self.grpc_streams: dict[int, GrpcStream] = {}  # open gRPC streams by token
        self._loop: asyncio.AbstractEventLoop | None = None
        self.budget = CpuBudget(limits.cpu_budget, limits.cpu_window, limits.cooldown)
        self.throttles = 0
        self.backoff = Backoff(limits.rebuild_backoff)
        self._build: asyncio.Future[None] | None = None  # a rebuild in a worker thread
        self._depth = 0  # nested callbacks (a host function calling back into the guest)
        self.shared = shared.attach(
            self.vm_id, self, max_shared=limits.max_shared_bytes, max_queue=limits.max_queue_bytes
        )
        self.metrics = FilterMetrics(name, limits.max_metrics)
        try:
            self.instance = self._new_instance()
        except BaseException:
            shared.detach(self.shared, self)
            self.metrics.close()
            raise

    # -- lifecycle

    def _new_instance(self) -> Instance:
        """Instantiate and start the module: on the loop at load time, in a worker
        thread for a rebuild (the Store is then used from one thread at a time: no
        callback runs while :attr:`instance` is None)."""
        module = self.module
        if module is None:
            raise WasmUnavailable(f"wasm filter {self.name!r} is closed", "closed")
        inst = Instance(
            module,
            resolver(self.host),
            memory_limit=self.memory_limit,
            deadline_ms=self.deadline_ms,
            name=self.name,
            log_gate=self.host.log_gate(),
        )
        self.host.instance = inst
        self.host.stream = None
        if inst.guest is not None:  # the C header path's bound, as the host would read it
            inst.guest.header_bound = self.host.plugin.limits.max_header_bytes
        try:
            if inst.has("_initialize"):
                inst.call("_initialize")
                if inst.has("main"):
                    inst.call("main", 0, 0)
            elif inst.has("_start"):
                inst.call("_start")
            self._meter(inst)
            for root in list(self.roots.values()):
                self._start_root(inst, root)
        except BaseException:
            inst.close()
            raise
        return inst

    def ensure(self) -> Instance:
        """The live instance. Without one (after a trap) a rebuild starts in a worker
        thread and this raises :class:`WasmUnavailable`; await :meth:`rebuilt` to wait
        for it. Outside an event loop (loading, tests) the rebuild runs here."""
        inst = self.instance
        if inst is not None:
            return inst
        self.rebuild()
        # read again (a local, not self.instance: mypy would keep it narrowed to None
        # across the call, and the compiled code checks what mypy believes)
        inst = self.instance
        if inst is None:
            raise WasmUnavailable(f"wasm filter {self.name!r} is being rebuilt", "rebuilding")
        return inst

    def refused(self, now: float) -> str | None:
        """Why a request cannot run this filter now ('cpu_budget', 'rebuild_backoff'),
        or None."""
        if now < self.budget.until:
            return "cpu_budget"
        if self.instance is None and self._build is None and self.backoff.waiting(now):
            return "rebuild_backoff"
        return None

    def retry_after(self, now: float) -> float:
        return max(self.budget.cooling(now), self.backoff.waiting(now))

    def rebuild(self) -> asyncio.Future[None] | None:
        """Start a rebuild (unless one runs); the future it completes, or None when the
        rebuild was done at once (no event loop) or is not allowed yet."""
        if self.closed:
            raise WasmUnavailable(
                f"wasm filter {self.name!r} is closed (its configuration was replaced)", "closed"
            )
        if self._build is not None:
            return self._build
        now = time.monotonic()
        wait = self.backoff.waiting(now)
        if wait:
            raise WasmUnavailable(
                f"wasm filter {self.name!r} traps repeatedly; rebuilding in {wait:.1f}s",
                "rebuild_backoff",
            )
        self.rebuilds += 1
        count_wasm(self.name, rebuild=True)
        log.warning("rebuilding wasm filter %r after a trap", self.name)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._adopt(self._new_instance())
            return None
        waiter: asyncio.Future[None] = loop.create_future()
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
        self._build = waiter
        work = loop.run_in_executor(None, self._new_instance)
        work.add_done_callback(self._built)
        return waiter

    async def rebuilt(self) -> None:
        """Wait until the instance is rebuilt; raises if the rebuild fails."""
        while self.instance is None:
            waiter = self.rebuild()
            if waiter is not None:
                await asyncio.shield(waiter)

    def _built(self, work: asyncio.Future[Instance]) -> None:
        waiter, self._build = self._build, None
        assert waiter is not None
        exc = None if work.cancelled() else work.exception()
        if work.cancelled() or exc is not None:
            error = exc if isinstance(exc, WasmTrap | PluginError) else WasmTrap(repr(exc))
            if not self.closed:
                self._failed_start(error)
            waiter.set_exception(error)
            return
        inst = work.result()
        if self.closed:
            inst.close()
            waiter.set_exception(WasmUnavailable(f"wasm filter {self.name!r} is closed"))
            return
        self._adopt(inst)
        waiter.set_result(None)

    def _adopt(self, inst: Instance) -> None:
        self.instance = inst
        self.host.instance = inst
        for root in self.roots.values():
            if root.tick_ms:
                self._set_tick(root, root.tick_ms)

    def _failed_start(self, exc: Exception) -> None:
        self.traps += 1
        count_wasm(self.name)
        self.host.instance = None
        delay = self.backoff.failed(time.monotonic())
        log.error(
            "wasm filter %r failed to start again: %s (next try in %.1fs)", self.name, exc, delay
        )

    def _trapped(self, exc: WasmTrap) -> None:
        self.traps += 1
        count_wasm(self.name)
        self._drop_instance()
        for stream in self.streams.values():
            if stream.resume is not None:
                stream.resume()
        self.streams.clear()
        delay = self.backoff.failed(time.monotonic())
        later = f"; rebuilding it in {delay:.1f}s (it traps repeatedly)" if delay else ""
        log.error("wasm filter %r trapped: %s%s", self.name, exc, later)

    def call(self, stream: Stream | None, name: str, *args: int) -> int | None:
        """Call a callback with ``stream`` as the effective context; args cut to its arity.
        The time it takes is charged to the CPU budget (on the C path by the call
        itself: see :meth:`_meter`); raises WasmUnavailable when the filter cannot run
        (over budget, no instance)."""
        inst = self.instance or self.ensure()
        export = inst.exports.get(name)
        if export is None:
            return None
        self.host.stream = stream
        previous = self.active
        if isinstance(stream, RootedStream):
            self.active = stream.root
        elif stream is None and args and args[0] in self.roots:
            self.active = self.roots[args[0]]  # root callbacks take the root's id first
        if self._depth:  # called back from a host function: the outer call is charged
            try:
                return inst.call_export(export, name, args[: export.nparams])
            except WasmTrap as exc:
                self._trapped(exc)
                raise
            finally:
                self.active = previous
        budget = self.budget
        if budget.until and _now() < budget.until:  # (until: 0 until first over budget)
            raise WasmUnavailable(f"wasm filter {self.name!r} is over its CPU budget", "cpu_budget")
        if len(args) > export.nparams:  # (the usual case: the arity the ABI names)
            args = args[: export.nparams]
        self._depth = 1
        callee = export.callee  # the C path's export: it charges the budget itself
        if callee is not None:
            try:
                return callee(*args)  # type: ignore[no-any-return]
            except CallFailed as exc:
                trap = inst.trap_of(name, exc)
                self._trapped(trap)
                raise trap from None
            finally:
                self._depth = 0
        started = _now()
        try:
            return inst.call_export(export, name, args)
        except WasmTrap as exc:
            self._trapped(exc)
            raise
        finally:
            self._depth = 0
            now = _now()
            spent = now - started
            # CpuBudget.charge's common case inline: same slot, under the budget.
            if now < budget.slot_end and budget.used + spent <= budget.allowed:
                budget.slots[budget.index] += spent
                budget.used += spent
            elif budget.charge(now, spent):
                self._over_budget()

    def _over_budget(self) -> None:
        self.throttles += 1
        count_wasm_throttled(self.name)
        for stream in list(self.streams.values()):  # nothing will resume them now
            if stream.paused and stream.resume is not None:
                self.streams.pop(stream.id, None)
                stream.resume()
        limits = self.limits
        log.error(
            "wasm filter %r used over %g%% of a CPU in %gs: cut off for %gs (its requests "
            "get its fail strategy)",
            self.name,
            limits.cpu_budget * 100,
            limits.cpu_window,
            limits.cooldown,
        )

    def calls_in_flight(self) -> int:
        return len(self.calls)

    def close(self) -> None:
        for root in self.roots.values():
            if root.tick is not None:
                root.tick.cancel()
                root.tick = None
        for task in self.calls:
            task.cancel()
        self._drop_instance()
        if not self.closed:
            shared.detach(self.shared, self)
            self.metrics.close()
        # The compiled module maps its code from the cache file (one fd each): let it go
        # now, even if something still holds this closed VM (an idle connection's last
        # request, say). A closed VM is never started again.
        self.module = None
        self.closed = True

    def _meter(self, inst: Instance) -> None:
        """On the C path the instance's top-level calls charge the CPU budget
        themselves: the common case in C, the rest through :meth:`_charged`."""
        guest = inst.guest
        if guest is not None:
            budget = self.budget
            guest.set_meter(self._charged, budget.slot_end, budget.allowed - budget.used)

    def _charged(self, now: float, spent: float, pending: float) -> tuple[float, float]:
        """Charge a call the C meter did not settle (a new slot, or over the budget),
        after what it settled meanwhile (``pending``, all in the current slot); the
        meter's next (slot_end, room)."""
        budget = self.budget
        if pending:
            budget.slots[budget.index] += pending
            budget.used += pending
        if budget.charge(now, spent):
            self._over_budget()
        return budget.slot_end, budget.allowed - budget.used

    def _drop_instance(self) -> None:
        if self.instance is not None:
            guest = self.instance.guest
            if guest is not None and guest.pending:  # charged, not yet in the budget
                budget = self.budget
                budget.slots[budget.index] += guest.pending
                budget.used += guest.pending
            self.instance.close()
        self.instance = None
        self.host.instance = None

    # -- streams

    def open_stream(self, ctx: Context, root: Root | None = None) -> Stream | None:
        """A stream context under ``root`` (default: the first plugin's), or None for a
        root-only plugin."""
        if self.root_only:
            return None
        self.ensure()
        root = root or self.roots[self.root_id]
        stream = RootedStream(next(self._ids), ctx, root)
        self.streams[stream.id] = stream
        try:
            self.call(stream, "proxy_on_context_create", stream.id, root.context_id)
        except WasmUnavailable:
            self.streams.pop(stream.id, None)
            raise
        except WasmTrap:
            self._no_contexts()
            return None
        return stream

    def start_stream(
        self, ctx: Context, root: Root, headers: int, end_of_stream: int
    ) -> tuple[Stream | None, int | None]:
        """:meth:`open_stream`, then ``proxy_on_request_headers``: the stream (None for a
        root-only plugin) and what the callback returned. On the C path the two calls
        run back to back (each charges the CPU budget itself: see :meth:`_meter`)."""
        inst = self.instance
        opens = inst.opens if inst is not None else None
        if opens is None or self._depth or self.root_only:
            stream = self.open_stream(ctx, root)
            if stream is None:
                return None, None
            return stream, self.call(
                stream, "proxy_on_request_headers", stream.id, headers, end_of_stream
            )
        assert inst is not None
        budget = self.budget
        if budget.until and _now() < budget.until:
            raise WasmUnavailable(f"wasm filter {self.name!r} is over its CPU budget", "cpu_budget")
        sid = next(self._ids)
        stream = RootedStream(sid, ctx, root)
        self.streams[sid] = stream
        self.host.stream = stream
        self.active = root
        name = "proxy_on_context_create"
        self._depth = 1
        try:
            opens[0](sid, root.context_id)  # (Instance.opens: the ABI's arities)
            name = "proxy_on_request_headers"
            return stream, opens[1](sid, headers, end_of_stream)
        except CallFailed as exc:
            trap = inst.trap_of(name, exc)
            self._trapped(trap)
            if name == "proxy_on_request_headers":
                raise trap from None
        finally:
            self._depth = 0
        self._no_contexts()
        return None, None

    def _no_contexts(self) -> None:
        """``proxy_on_context_create`` trapped: the plugin runs root-only from now on."""
        log.warning("wasm filter %r cannot create an HTTP context; running it root-only", self.name)
        self.root_only = True
        with contextlib.suppress(WasmUnavailable):
            self.ensure()  # its root context (config, timers) is all it has: restore it

    def finish_stream(self, stream: Stream) -> None:
        """``proxy_on_log`` and ``proxy_on_delete`` (after on_done or proxy_done)."""
        try:
            self.call(stream, "proxy_on_log", stream.id)
            self.call(stream, "proxy_on_delete", stream.id)
        except WasmUnavailable:
            pass  # cut off meanwhile: the stream ends without its last callbacks
        finally:
            self._forget_stream(stream)

    def _forget_stream(self, stream: Stream) -> None:
        """The stream is over: its context is gone, with the gRPC calls and streams it
        made (as in Envoy)."""
        self.streams.pop(stream.id, None)
        if self.grpc_streams or self.grpc_call_owners:
            close_owned(self, stream)

    def done(self, stream: Stream) -> None:
        """``proxy_on_done``, then (unless it returns false: the plugin calls proxy_done
        later) ``proxy_on_log`` and ``proxy_on_delete``."""
        inst = self.instance
        sid = stream.id
        if sid not in self.streams or inst is None or stream.done_pending:
            return  # (done_pending: on_done ran when the client left; proxy_done ends it)
        ends = inst.ends
        if ends is not None and not self._depth:
            # The C path: the three callbacks back to back, with one check of the CPU
            # budget (each call charges it itself: see _meter).
            budget = self.budget
            if budget.until and _now() < budget.until:  # over budget: ends without them
                self._forget_stream(stream)
                return
            self.host.stream = stream
            if isinstance(stream, RootedStream):
                self.active = stream.root
            self._depth = 1
            try:
                completed = ends(sid)  # (on_done, then on_log and on_delete unless false)
                if completed is not None and not completed:
                    stream.done_pending = True  # the plugin calls proxy_done later
                    return
                self.streams.pop(sid, None)  # (_forget_stream, inline)
                if self.grpc_streams or self.grpc_call_owners:
                    close_owned(self, stream)
            except CallFailed as exc:
                self._forget_stream(stream)
                trap = inst.trap_of(_END_NAMES[exc.args[2]], exc)
                self._trapped(trap)
                raise trap from None
            finally:
                self._depth = 0
            return
        try:
            completed = self.call(stream, "proxy_on_done", stream.id)
        except WasmUnavailable:
            self.streams.pop(stream.id, None)
            return
        if completed is None or completed:
            self.finish_stream(stream)
        else:
            stream.done_pending = True  # the plugin calls proxy_done later

    # -- calls out

    def bind(
        self,
        pools: dict[str, UpstreamPool],
        listen_address: str,
        clusters: dict[str, str] | None = None,
    ) -> None:
        """Called when the gateway serves: upstreams (and cluster aliases) for HTTP
        calls, tick timer."""
        self.pools = pools
        self.clusters = dict(clusters or {})
        self.resolved = {}
        self.listen_address = listen_address
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        for root in self.roots.values():
            if root.tick_ms:
                self._set_tick(root, root.tick_ms)

    def spawn_call(self, call: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run an HTTP or gRPC call's coroutine as a task of this VM (cancelled on close)."""
        task = asyncio.get_running_loop().create_task(call)
        self.calls.add(task)
        task.add_done_callback(self.calls.discard)
        return task

    def http_call(
        self, upstream: str, pairs: list[tuple[bytes, bytes]], body: bytes, timeout_ms: int
    ) -> int | None:
        """Start ``proxy_http_call``; its token, or None (unknown upstream)."""
        return start_call(self, upstream, pairs, body, timeout_ms)

    def grpc_call(
        self,
        upstream: str,
        service: bytes,
        method: bytes,
        metadata: list[tuple[bytes, bytes]],
        message: bytes,
        timeout_ms: int,
    ) -> int | str:
        """Start ``proxy_grpc_call``; its token, or why not ("cluster", "head")."""
        from core.wasm.grpc_call import start_grpc_call

        return start_grpc_call(self, upstream, service, method, metadata, message, timeout_ms)


def describe(vm: PluginVm) -> dict[str, Any]:
    return {"abi": vm.abi, "root_only": vm.root_only, "traps": vm.traps, "rebuilds": vm.rebuilds}
