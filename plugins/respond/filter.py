"""The ``respond`` plugin: answer the request with a fixed response, never upstream.

What Kong calls request-termination: a route under maintenance, a retired API, a
placeholder, or the Gateway API's rule that has no backend it may use (500)::

    [filters.maintenance]
    plugin = "respond"
    config.status = 503
    config.body = "down for maintenance until 14:00 UTC\n"
    config.headers = { "Retry-After" = "3600" }

The filters before it in the chain run first (an auth filter still refuses a request
without credentials); the ones after it get the response phase as for any local reply.
``Content-Length`` is the gateway's; a ``headers`` entry cannot set it or framing
fields.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from plugin_sdk import Context, Filter, LocalReply, PluginConfig

_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


class RespondConfig(PluginConfig):
    status: int = Field(200, ge=200, le=599, description="Status of the response.")
    body: str = Field("", max_length=65536, description="Body of the response (UTF-8).")
    content_type: str = Field(
        "text/plain; charset=utf-8", description="Content-Type of the response."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="More response headers, name to value."
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or any(c in name for c in " \t\r\n:") or any(c in text for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: invalid name or value")
            if name.lower() in _FRAMING:
                raise ValueError(f"header {name!r}: the gateway sets it")
        return value


class Respond(Filter[RespondConfig]):
    """Answers every request with the configured response."""

    Config = RespondConfig

    def __init__(self, config: RespondConfig) -> None:
        super().__init__(config)
        headers = [("Content-Type", config.content_type), *config.headers.items()]
        self._reply = (config.status, headers, config.body.encode())

    def on_request(self, ctx: Context) -> LocalReply:
        status, headers, body = self._reply
        return LocalReply(status, list(headers), body)
