"""What an :class:`core.proxy.Exchange` needs from the client side of its request.

An HTTP/1.1 connection (:class:`core.http1.ClientConnection`) is one; an HTTP/2
stream (:class:`core.http2.Stream`) is another. The exchange writes the response
through it, pauses and resumes the request body with it (``reason`` bits, see
core/http1.py) and tells it when the exchange is over.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core.config import Limits
    from core.deadline import Deadline
    from core.gateway import Gateway
    from core.proxy import Exchange
    from plugin_sdk import TLSInfo


class ClientSide(Protocol):
    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    limits: Limits
    max_body_bytes: int
    tls: TLSInfo | None
    cert_headers: bytes
    write_paused: bool
    exchange_deadline: Deadline  # the running exchange's timeouts (one timer, re-armed)

    def write(self, data: bytes) -> None: ...

    def writelines(self, parts: list[bytes]) -> None: ...

    def pause(self, reason: int) -> None: ...

    def resume(self, reason: int) -> None: ...

    def abort(self) -> None: ...

    def write_reply(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        keep_alive: bool,
        head_only: bool = False,
        version: str = "1.1",
    ) -> int: ...

    def send_trailers(self, fields: list[tuple[bytes, bytes]]) -> None: ...

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None: ...

    def start_tunnel(self, exchange: Exchange) -> None: ...
