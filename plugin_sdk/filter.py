"""The filter contract: what a plugin implements.

A plugin is a :class:`Filter` subclass plus a :class:`PluginConfig` model, registered
under the ``wasmgate.plugins`` entry-point group with its kebab-case name::

    [project.entry-points."wasmgate.plugins"]
    add-header = "my_pkg.filter:AddHeader"

The gateway makes one instance per configured filter (per configuration snapshot),
with the validated config, at load time. Per request it calls, for the filters of
the route's chain:

1. ``on_request(ctx)`` in chain order. Return ``None`` (or :data:`CONTINUE`) to go on,
   or a :class:`~plugin_sdk.http.LocalReply` to answer from the gateway and stop.
2. ``on_response(ctx)`` in reverse order, for every filter whose ``on_request`` ran
   (also when a later filter answered locally, or the upstream failed).
3. ``on_log(ctx)`` after the reply was sent, for every filter of the chain.

Each phase method may be ``async def`` or a plain ``def``: the gateway awaits the
first and calls the second directly (cheaper, for filters that never wait). A phase
a filter does not override costs nothing. An exception in a phase is handled by the
filter's fail strategy (``fail = "closed"`` answers 500; ``"open"`` skips it); it
never takes the gateway down.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from plugin_sdk.config import PluginConfig
from plugin_sdk.http import LocalReply

if TYPE_CHECKING:
    from plugin_sdk.context import Context

ConfigT = TypeVar("ConfigT", bound=PluginConfig)

#: Returned by ``on_request`` to let the request go on (same as returning None).
CONTINUE = None

RequestResult = LocalReply | None | Awaitable[LocalReply | None]
PhaseResult = None | Awaitable[None]

#: What a body-chunk hook returns: the bytes that go on (possibly empty: the hook
#: holds them), a LocalReply to stop the exchange, or None: held at the end of the
#: body until the hook calls its ``resume`` argument (with the bytes, a LocalReply or
#: the exception that stopped it). A hook that holds data before the end (returned
#: ``b""``) may also let it go before the next chunk: ``resume(data, False)``.
ChunkResult = bytes | LocalReply | None


class ChunkResume(Protocol):
    """The ``resume`` a chunk hook gets: ``resume(result)`` ends a held body (bytes, a
    LocalReply or the exception that stopped it); ``resume(data, False)`` passes on
    data held before the end, and the body goes on."""

    def __call__(self, result: bytes | LocalReply | Exception, end: bool = True, /) -> None: ...


ChunkHook = Callable[["Context", bytes, bool, ChunkResume], ChunkResult]


class Filter(Generic[ConfigT]):
    """Base class of Python filters.

    Class attributes a plugin sets:

    * ``Config`` — its :class:`PluginConfig` subclass (the default takes no fields).
    * ``request_body`` — ``True`` to have the whole request body buffered (up to
      the server's ``max_body_bytes``) and available as ``ctx.request.body`` in
      ``on_request``. Default ``False``: bodies stream past the filter.
    * ``response_body`` — the same for ``ctx.response.body`` in ``on_response``.

    Instance attributes set by the gateway before the first request:
    ``config`` (the validated config), ``name`` (the filter's name in
    gateway.toml) and ``plugin`` (the plugin's registered name).

    An instance may set ``skip_phases`` in ``__init__`` to phases its config makes
    no-ops (``{"on_response"}`` for a filter configured to touch requests only):
    the gateway then does not call them at all.

    ``request_chunks`` / ``response_chunks`` are for runtime adapters (the Proxy-Wasm
    one), not for Python plugins (those use ``request_body``): a :data:`ChunkHook` the
    gateway calls for every body chunk as it streams, ``(ctx, chunk, end, resume)``,
    after the filter's ``on_request`` (``on_response``) ran for the exchange; requests
    in chain order, responses in reverse. None (the default) costs nothing per chunk.

    ``client_gone`` is for runtime adapters too: ``(ctx) -> None``, called at once when
    the client leaves (a closed connection, an HTTP/2 reset) while the exchange runs,
    whatever phase it is in, for each filter of the route that has it; it must not
    block. The Proxy-Wasm adapter ends the stream's context there, as Envoy does.
    ``on_log`` still runs afterwards.
    """

    Config: ClassVar[type[PluginConfig]] = PluginConfig
    request_body: ClassVar[bool] = False
    response_body: ClassVar[bool] = False

    def __init__(self, config: ConfigT) -> None:
        """Called once per configuration snapshot with the validated config.

        Do all expensive preparation here (compile patterns, load keys): the
        per-request methods should only do per-request work.
        """
        self.config: ConfigT = config
        self.name: str = ""
        self.plugin: str = ""
        self.skip_phases: set[str] = set()
        self.request_chunks: ChunkHook | None = None
        self.response_chunks: ChunkHook | None = None
        self.client_gone: Callable[[Context], None] | None = None

    def on_request(self, ctx: Context) -> RequestResult:
        """Request phase: inspect or change ``ctx.request``, choose ``ctx.upstream``.

        Return None to continue or a LocalReply to answer now. ``ctx.response``
        is None here.
        """
        return None

    def on_response(self, ctx: Context) -> PhaseResult:
        """Response phase: inspect or change ``ctx.response`` (status, headers, body).

        Runs in reverse chain order, before anything is sent to the client.
        ``ctx.response`` may be a local reply (from a later filter or the gateway).
        """
        return None

    def on_log(self, ctx: Context) -> PhaseResult:
        """After the response was sent: record what happened. Changes nothing."""
        return None

    def upstreams(self) -> Iterable[str]:
        """Names of upstreams this filter may set ``ctx.upstream`` to.

        Called once at load time; the gateway refuses a configuration in which one
        of them is not an ``[[upstreams]]`` name, so a typo fails ``wasmgate check``
        instead of the first request.
        """
        return ()

    def sensitive_params(self) -> Iterable[str]:
        """Names of query parameters this filter reads credentials from.

        Called once at load time. The gateway never shows their values in the access
        log or the exported spans (they read ``[REDACTED]``), on every route. An auth
        plugin returns the parameter its config names (key-auth's ``query_param``).
        """
        return ()

    def sensitive_headers(self) -> Iterable[str]:
        """Names of request headers this filter reads credentials from (load time).

        The same as :meth:`sensitive_params` for headers the access log may show.
        """
        return ()

    def watched_files(self) -> Iterable[str | os.PathLike[str]]:
        """Files this instance was built from (a key file, a JWKS file, ...).

        Called once at load time, after ``__init__``. The running gateway watches
        them and reloads its configuration when one is written, replaced (renamed
        over), deleted or created again, so that a new instance reads the new
        content: no SIGHUP needed. A relative path is relative to the gateway's
        working directory, as for ``open()``. List a file even if it may be missing
        (an optional file): its creation then triggers a reload too.
        """
        return ()

    def close(self) -> None:
        """Called when the configuration snapshot this instance belongs to retires."""


F = TypeVar("F", bound=Callable[..., Any])


def maybe_async(method: F) -> F:
    """Mark a plain ``def`` phase that returns an awaitable only when it has to wait
    (and its result directly otherwise): the gateway awaits only what needs awaiting,
    which spares a coroutine per request in the common case."""
    method.maybe_async = True  # type: ignore[attr-defined]
    return method


def overrides(filter_cls: type[Filter[Any]], method: str) -> bool:
    """Whether ``filter_cls`` implements phase ``method`` itself."""
    return getattr(filter_cls, method) is not getattr(Filter, method)
