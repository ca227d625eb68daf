"""The gateway's error tree.

Every error the gateway raises on purpose derives from :class:`GatewayError`::

    GatewayError
    ├── ConfigError          a configuration file or value is invalid (load time)
    ├── PluginError          a plugin cannot be loaded or does not fit the contract
    │   ├── WasmLoadError       a Wasm module cannot be compiled or instantiated
    │   └── WasmTrap            a Wasm instance trapped (deadline, memory cap, ...)
    │                           (both in core.wasm.vm, the only wasmtime importer)
    ├── CertError            `wasmgate cert` cannot write or read a certificate or key
    ├── ScaffoldError        `wasmgate plugin new` refuses its arguments (name, directory)
    └── UpstreamError        talking to an upstream failed (request time)
        ├── NoHealthyUpstream   every endpoint is ejected or the pool is empty  → 503
        ├── UpstreamConnectError  refused, unreachable, reset before a reply  → 502
        ├── UpstreamProtocolError the upstream sent something that is not HTTP → 502
        └── UpstreamTimeout      connect, read or per-try timeout              → 504
            └── RequestBodyTimeout  the client stalled mid-body meanwhile     → 408

Request-time errors are turned into local replies by the proxy; they never escape
to the event loop. Load-time errors carry the file and the dotted field path so the
message can be shown to a user as it is.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration is invalid.

    ``problems`` holds one line per problem, each starting with the dotted path of
    the field (``routes[2].paths[0].match: ...``); ``source`` names the file.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun}:\n{lines}")


class PluginError(GatewayError):
    """A plugin cannot be loaded, or it does not satisfy the filter contract."""


class CertError(GatewayError):
    """``wasmgate cert`` (:mod:`core.certs`) refuses: a file exists, is unreadable or is
    not what it should be (a CA that is not one, a key that does not match). The
    message names the file."""


class ScaffoldError(GatewayError):
    """``wasmgate plugin new`` cannot create the project (bad name, occupied directory)."""


class UpstreamError(GatewayError):
    """Talking to an upstream failed; ``status`` is the status the client sees."""

    status = 502
    reason = "upstream error"


class NoHealthyUpstream(UpstreamError):
    status = 503
    reason = "no healthy upstream"


class UpstreamConnectError(UpstreamError):
    status = 502
    reason = "upstream connect error"


class UpstreamProtocolError(UpstreamError):
    status = 502
    reason = "invalid upstream response"


class UpstreamTimeout(UpstreamError):
    status = 504
    reason = "upstream timeout"


class RequestBodyTimeout(UpstreamTimeout):
    """A try timed out while the client had not finished sending the request body: the
    wait was the client's doing, so it is not held against the endpoint's health."""

    status = 408
    reason = "request body timeout"
