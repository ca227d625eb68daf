"""VM sharing: the root context each plugin of a VM has (:class:`Root`; starting
them, their ticks and queue deliveries: :class:`RootContexts`, a part of
:class:`~core.wasm.plugin.PluginVm`), and the registry that lets filters and services
naming the same module and ``vm_id`` find one VM while a configuration is built.

Envoy's model: a VM is one module instance; every plugin in it (each
``[filters.NAME]`` or ``[services.NAME]``) gets a root context of its own, with its
own ``root_id`` and configuration; its streams are created under that root context,
its ticks, queue deliveries and HTTP call responses go to it. Shared data and queues
belong to the ``vm_id`` (:mod:`core.wasm.shared`). The VM's CPU budget, trap count and
rebuild back-off are the VM's, shared by its plugins.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from core.config import WasmLimits
from core.errors import PluginError
from core.wasm.host import Stream
from core.wasm.vm import Instance, WasmTrap
from plugin_sdk import Context

if TYPE_CHECKING:
    from core.wasm.plugin import PluginVm


class Root:
    """One plugin's root context in a VM."""

    __slots__ = ("config", "context_id", "name", "properties", "root_id", "tick", "tick_ms")

    def __init__(
        self,
        context_id: int,
        name: str,
        root_id: str,
        config: bytes,
        properties: dict[str, Any] | None = None,
    ) -> None:
        self.context_id = context_id
        self.name = name  # the filter's or service's name (the plugin_name property)
        self.root_id = root_id
        self.config = config
        self.properties = properties or {}  # its own `properties` table (proxy_get_property)
        self.tick_ms = 0
        self.tick: asyncio.TimerHandle | None = None


class RootedStream(Stream):
    """A stream context and the root context it was created under."""

    __slots__ = ("root",)

    def __init__(self, context_id: int, ctx: Context, root: Root) -> None:
        # Stream.__init__'s fields, set here (one call less per request: keep in step)
        self.id = context_id
        self.ctx = ctx
        self.local_reply = None
        self.properties = {}
        self.resume = None
        self.paused = False
        self.done_pending = False
        self.body = [None, None]
        self.root = root


class RootContexts:
    """The root-context half of :class:`~core.wasm.plugin.PluginVm` (a mixin): the
    plugins of the VM, which one is running, their start, ticks and queue deliveries."""

    roots: dict[int, Root]
    active: Root  # the root context of the callback running
    root_id: int  # the first plugin's root context
    limits: WasmLimits
    vm_config: bytes
    ticks: int
    _ids: Iterator[int]
    _loop: asyncio.AbstractEventLoop | None

    # PluginVm's: real methods, not declarations under TYPE_CHECKING (mypyc compiles
    # this class and takes no such statement in a class body); PluginVm overrides each.

    def call(self, stream: Stream | None, name: str, *args: int) -> int | None:
        raise NotImplementedError

    def ensure(self) -> Instance:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _drop_instance(self) -> None:
        raise NotImplementedError

    # -- the running plugin (the root context of the callback running)

    @property
    def config_bytes(self) -> bytes:
        return self.active.config

    @property
    def root_id_name(self) -> str:
        return self.active.root_id

    @property
    def plugin_name(self) -> str:
        return self.active.name

    @property
    def properties(self) -> dict[str, Any]:
        return self.active.properties

    # -- starting and stopping root contexts

    def _start_root(self, inst: Instance, root: Root) -> None:
        self.active = root
        inst.call("proxy_on_context_create", root.context_id, 0)
        if inst.has("proxy_on_vm_start") and not inst.call(
            "proxy_on_vm_start", root.context_id, len(self.vm_config)
        ):
            raise PluginError(f"wasm filter {root.name!r}: proxy_on_vm_start returned false")
        if inst.has("proxy_on_configure") and not inst.call(
            "proxy_on_configure", root.context_id, len(root.config)
        ):
            raise PluginError(
                f"wasm filter {root.name!r} rejected its configuration (proxy_on_configure "
                "returned false; see its log lines above)"
            )

    def add_root(
        self, name: str, root_id: str, config: bytes, properties: dict[str, Any] | None = None
    ) -> Root:
        """Start another plugin in this VM (a filter or service sharing its vm_id):
        a root context of its own, configured now; raises PluginError or WasmTrap."""
        root = Root(next(self._ids), name, root_id, config, properties)
        self.roots[root.context_id] = root
        inst = self.ensure()
        previous = self.active
        try:
            self._start_root(inst, root)
        except WasmTrap:
            del self.roots[root.context_id]
            self._drop_instance()  # half-started: the next use rebuilds it
            raise
        except BaseException:
            del self.roots[root.context_id]
            raise
        finally:
            self.active = previous
        return root

    def release(self, root: Root) -> None:
        """A plugin of this VM is closed: its root context stops (ticks, queue
        deliveries, call responses); the last one closes the VM."""
        if root.tick is not None:
            root.tick.cancel()
            root.tick = None
        root.tick_ms = 0
        self.roots.pop(root.context_id, None)
        if not self.roots:
            self.close()

    def set_tick(self, period_ms: int) -> None:
        """``proxy_set_tick_period_milliseconds`` of the running root context."""
        self._set_tick(self.active, period_ms)

    def _set_tick(self, root: Root, period_ms: int) -> None:
        if 0 < period_ms < self.limits.min_tick_ms:
            period_ms = self.limits.min_tick_ms
        root.tick_ms = period_ms
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # loading, or starting in a worker thread: bind() or _adopt() starts it
        if root.tick is not None:
            root.tick.cancel()
            root.tick = None
        if period_ms:
            root.tick = loop.call_later(period_ms / 1000, self._on_tick, root)

    def _on_tick(self, root: Root) -> None:
        root.tick = None
        if root.context_id not in self.roots:
            return
        with contextlib.suppress(WasmTrap):  # counted and logged; the next tick rebuilds
            self.call(None, "proxy_on_tick", root.context_id)
            self.ticks += 1
        if root.tick_ms and root.tick is None and root.context_id in self.roots:
            loop = asyncio.get_running_loop()
            root.tick = loop.call_later(root.tick_ms / 1000, self._on_tick, root)

    def queue_owner(self) -> RootQueue:
        """Who a queue registered now tells of new items: the running root context."""
        return RootQueue(self, self.active)

    def queue_ready(self, qid: int, root: Root | None = None) -> None:
        root = root or self.roots.get(self.root_id) or self.active
        try:
            asyncio.get_running_loop().call_soon(self._queue_ready, root, qid)
        except RuntimeError:  # from a start function in a worker thread
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._queue_ready, root, qid)

    def _queue_ready(self, root: Root, qid: int) -> None:
        if root.context_id not in self.roots:
            return
        with contextlib.suppress(WasmTrap):
            self.call(None, "proxy_on_queue_ready", root.context_id, qid)


class RootQueue:
    """A shared queue's owner: items are announced to the root context that
    registered the queue (``proxy_on_queue_ready(root, qid)``)."""

    __slots__ = ("root", "vm")

    def __init__(self, vm: RootContexts, root: Root) -> None:
        self.vm = vm
        self.root = root

    def queue_ready(self, qid: int) -> None:
        self.vm.queue_ready(qid, self.root)


# A configuration being built: (module digest, vm_id) -> the VM started for it.
VmRegistry = dict[tuple[str, str], "PluginVm"]
