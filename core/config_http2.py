"""``[server.http2]``: HTTP/2 towards clients (see docs/http2.md).

Kept apart from core/config.py, which only refers to :class:`Http2` as a field of
``[server]``; the model follows the same rules (frozen, unknown keys refused).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Http2(BaseModel):
    """How the listeners speak HTTP/2; every limit applies per client connection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tls: bool = Field(
        True,
        description="Offer h2 before http/1.1 in ALPN on the tls_listen listeners "
        "(applies to connections made after a reload).",
    )
    cleartext: bool = Field(
        True,
        description="Take h2c with prior knowledge on the plain listen listeners (a client "
        "that starts with the HTTP/2 preface). `Upgrade: h2c` is never followed.",
    )
    off: list[str] = Field(
        default_factory=list,
        description="Listeners (as written in listen or tls_listen) that speak HTTP/1.1 "
        "only, whatever tls and cleartext say. Read at start, like the listeners.",
    )
    max_concurrent_streams: int = Field(
        100, ge=1, le=10000, description="SETTINGS_MAX_CONCURRENT_STREAMS: requests in flight."
    )
    max_header_list_size: int = Field(
        65536,
        ge=1024,
        description="SETTINGS_MAX_HEADER_LIST_SIZE; a header block that decodes to more "
        "ends the connection (GOAWAY). server.limits.max_header_bytes still answers 431.",
    )
    max_frame_size: int = Field(
        16384, ge=16384, le=16777215, description="SETTINGS_MAX_FRAME_SIZE we accept."
    )
    initial_window_size: int = Field(
        262144,
        ge=65535,
        le=2147483647,
        description="Request body bytes a client may send on one stream before the "
        "gateway passes them on (per-stream flow-control window).",
    )
    connection_window_size: int = Field(
        4 << 20,
        ge=65535,
        le=2147483647,
        description="The same for all streams of a connection together.",
    )
    max_client_resets: int = Field(
        200,
        ge=1,
        description="Streams a client may cancel (RST_STREAM) in 10 s before the connection "
        "is closed with GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).",
    )
    max_control_frames: int = Field(
        1000,
        ge=10,
        description="PING, SETTINGS, PRIORITY and empty DATA frames a client may send in "
        "10 s before GOAWAY ENHANCE_YOUR_CALM (a HEADERS frame's own priority does not count).",
    )
