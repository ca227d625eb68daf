"""``[executors]``: sizing the worker-thread pools of :mod:`plugin_sdk.pools`.

The pools live in ``plugin_sdk`` so that plugins reach them without importing the
engine; the engine only sizes them, once per process at start (a changed
``[executors]`` takes effect at the next restart, as the reloader says).
"""

from __future__ import annotations

from dataclasses import replace

from core.config import GatewayConfig
from plugin_sdk import pools


def pool_settings(cfg: GatewayConfig) -> dict[str, pools.PoolSettings]:
    """Each configured purpose's settings: its built-in ones with what is set replaced."""
    out = {}
    for name, ex in cfg.executors.items():
        base = pools.BUILTIN.get(name, pools.DEFAULT)
        changes = {k: v for k, v in ex.model_dump().items() if v is not None}
        out[name] = replace(base, **changes)
    return out


def configure(cfg: GatewayConfig) -> None:
    pools.configure(pool_settings(cfg))
