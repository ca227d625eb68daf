"""wasmgate's plugin SDK: the stable API that Python filters are written against.

Write a filter::

    from plugin_sdk import Context, Filter, LocalReply, PluginConfig
    from pydantic import Field

    class StaticTokenConfig(PluginConfig):
        token: str = Field(description="The one token we accept.")

    class StaticToken(Filter[StaticTokenConfig]):
        Config = StaticTokenConfig

        def on_request(self, ctx: Context) -> LocalReply | None:
            if ctx.request.headers.get("x-token") != self.config.token:
                return LocalReply(401, {"content-type": "text/plain"}, "no\\n")
            return None

register it in your ``pyproject.toml`` under ``[project.entry-points."wasmgate.plugins"]``,
and test it with :mod:`plugin_sdk.testing`. This package imports nothing from the
gateway's engine; the engine imports it. Blocking work (hashing, file reads, synchronous
clients) goes to a worker pool with ``await offload("crypto", fn, *args)``
(:mod:`plugin_sdk.pools`).
"""

# First, before any of plugin_sdk's modules: whether they (and core's data path) run
# as the mypyc-compiled build (WASMGATE_COMPILED, plugin_sdk/_compiled.py).
from plugin_sdk._compiled import activate_from_env

activate_from_env()

from plugin_sdk.config import PluginConfig, Secret  # noqa: E402
from plugin_sdk.context import Context, filter_logger  # noqa: E402
from plugin_sdk.filter import CONTINUE, Filter, overrides  # noqa: E402
from plugin_sdk.headers import Headers  # noqa: E402
from plugin_sdk.http import LocalReply, Request, Response, TLSInfo  # noqa: E402
from plugin_sdk.pools import OffloadBusy, OffloadError, OffloadTimeout, offload  # noqa: E402

__all__ = [
    "CONTINUE",
    "Context",
    "Filter",
    "Headers",
    "LocalReply",
    "OffloadBusy",
    "OffloadError",
    "OffloadTimeout",
    "PluginConfig",
    "Request",
    "Response",
    "Secret",
    "TLSInfo",
    "filter_logger",
    "offload",
    "overrides",
]
