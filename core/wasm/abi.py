"""Proxy-Wasm ABI constants (spec: proxy-wasm/spec, abi-versions v0.1.0, v0.2.0, v0.2.1)."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """``proxy_status_t``: what every host function returns."""

    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    INVALID_MEMORY_ACCESS = 6
    EMPTY = 7
    CAS_MISMATCH = 8
    INTERNAL_FAILURE = 10
    UNIMPLEMENTED = 12


class Action(IntEnum):
    CONTINUE = 0
    PAUSE = 1


class LogLevel(IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5


class MapType(IntEnum):
    HTTP_REQUEST_HEADERS = 0
    HTTP_REQUEST_TRAILERS = 1
    HTTP_RESPONSE_HEADERS = 2
    HTTP_RESPONSE_TRAILERS = 3
    GRPC_CALL_INITIAL_METADATA = 4
    GRPC_CALL_TRAILING_METADATA = 5
    HTTP_CALL_RESPONSE_HEADERS = 6
    HTTP_CALL_RESPONSE_TRAILERS = 7


class BufferType(IntEnum):
    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_CALL_MESSAGE = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7
    FOREIGN_FUNCTION_ARGUMENTS = 8


class StreamType(IntEnum):
    HTTP_REQUEST = 0
    HTTP_RESPONSE = 1
    DOWNSTREAM = 2
    UPSTREAM = 3


class MetricType(IntEnum):
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


class WasiErrno(IntEnum):
    SUCCESS = 0
    BADF = 8
    FAULT = 21
    INVAL = 28
    NOSYS = 52
    NOTSUP = 58


ABI_MARKERS = {
    # Higress's Go SDK marks 0.2.1 plus its own host calls (which link to stubs here).
    "proxy_abi_version_0_2_100": "0.2.100",
    "proxy_abi_version_0_2_1": "0.2.1",
    "proxy_abi_version_0_2_0": "0.2.0",
    "proxy_abi_version_0_1_0": "0.1.0",
}

# Callbacks a module may export whose presence means it handles HTTP streams.
HTTP_CALLBACKS = (
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
)
