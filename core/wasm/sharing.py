"""VM sharing: the root context each plugin of a shared VM has, and the registry that
lets filters and services naming the same module and ``vm_id`` find one VM while a
configuration is built.

Envoy's model: a VM is one module instance; every plugin in it (each
``[filters.NAME]`` or ``[services.NAME]``) gets a root context of its own, with its
own ``root_id`` and configuration; its streams are created under that root context,
its ticks, queue deliveries and HTTP call responses go to it. Shared data and queues
belong to the ``vm_id`` (:mod:`core.wasm.shared`). The VM's CPU budget, trap count and
rebuild back-off are the VM's, shared by its plugins.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from core.wasm.host import Stream
from plugin_sdk import Context

if TYPE_CHECKING:
    from core.wasm.plugin import PluginVm


class Root:
    """One plugin's root context in a VM."""

    __slots__ = ("config", "context_id", "name", "root_id", "tick", "tick_ms")

    def __init__(self, context_id: int, name: str, root_id: str, config: bytes) -> None:
        self.context_id = context_id
        self.name = name  # the filter's or service's name (the plugin_name property)
        self.root_id = root_id
        self.config = config
        self.tick_ms = 0
        self.tick: asyncio.TimerHandle | None = None


class RootedStream(Stream):
    """A stream context and the root context it was created under."""

    __slots__ = ("root",)

    def __init__(self, context_id: int, ctx: Context, root: Root) -> None:
        super().__init__(context_id, ctx)
        self.root = root


class RootQueue:
    """A shared queue's owner: items are announced to the root context that
    registered the queue (``proxy_on_queue_ready(root, qid)``)."""

    __slots__ = ("root", "vm")

    def __init__(self, vm: PluginVm, root: Root) -> None:
        self.vm = vm
        self.root = root

    def queue_ready(self, qid: int) -> None:
        self.vm.queue_ready(qid, self.root)


# A configuration being built: (module digest, vm_id) -> the VM started for it.
VmRegistry = dict[tuple[str, str], "PluginVm"]
