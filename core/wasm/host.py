"""The Proxy-Wasm host functions (import module ``env``) and WASI preview 1.

:class:`Host` implements each function the spec lists, as a method named like the
import. Arguments arrive as plain ints; guest memory is read and written through the
:class:`~core.wasm.vm.Instance`, and every pointer is bounds-checked (a bad one gives
``INVALID_MEMORY_ACCESS``, never a host crash). What a call reads or changes depends on
the *effective context*: the plugin's root context, or one HTTP stream
(:class:`Stream`), switched before every callback and by ``proxy_set_effective_context``.

HTTP fields are presented as Envoy does: request headers start with the pseudo-headers
``:method``, ``:path``, ``:authority`` and ``:scheme``, response headers with ``:status``;
names are lower-case and lookups case-insensitive. Properties are answered by
:mod:`core.wasm.properties` (integers 8-byte little-endian, as SDKs expect), metrics
kept by :mod:`core.wasm.metrics`, foreign functions called by :mod:`core.wasm.foreign`.

What a filter makes the host hold outside its linear memory is bounded by its
``limits``: shared data and queues (per vm_id, :mod:`core.wasm.shared`), a body it
sets, a header map it grows, the properties it sets on a stream, its HTTP calls in
flight, the metrics it defines, a foreign function's arguments and result. Past a
bound the call returns ``BAD_ARGUMENT`` (the spec has no "resource
exhausted"; its BadArgument is "did not conform to the required range"), changes
nothing, and ``wasmgate_wasm_resource_exhausted_total{filter,kind}`` counts it. Sizes
are checked before the guest's bytes are copied.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.metrics import count_wasm_exhausted
from core.wasm import foreign, properties, shared
from core.wasm.abi import BufferType, LogLevel, MapType, MetricType, Status, WasiErrno
from core.wasm.fields import bad_field, scan
from core.wasm.metrics import MAX_NAME as MAX_METRIC_NAME
from core.wasm.vm import _GuestExit
from plugin_sdk import Headers, LocalReply

if TYPE_CHECKING:
    from core.wasm.plugin import PluginVm
    from core.wasm.vm import Instance
    from plugin_sdk import Context

OK, NOT_FOUND, BAD_ARGUMENT = Status.OK, Status.NOT_FOUND, Status.BAD_ARGUMENT
BAD_MEMORY = Status.INVALID_MEMORY_ACCESS
_BODIES = (BufferType.HTTP_REQUEST_BODY, BufferType.HTTP_RESPONSE_BODY)
# Plain ints for the hot paths (an enum member's lookup costs more than the compare).
_REQUEST_HEADERS, _RESPONSE_HEADERS = (
    int(MapType.HTTP_REQUEST_HEADERS),
    int(MapType.HTTP_RESPONSE_HEADERS),
)

_LEVELS = {
    LogLevel.TRACE: logging.DEBUG,
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARN: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.CRITICAL: logging.CRITICAL,
}

_BY_NUMBER = {int(k): v for k, v in _LEVELS.items()}

# What a guest may put on the wire is what a Python filter may (plugin_sdk.headers):
# a field name that is not empty and has no whitespace or ':', a value without CR, LF
# or NUL; and a request line and status line that stay one line of the right shape.
_BAD_NAME = re.compile(r"[\s:]")
_BAD_VALUE = re.compile(rb"[\r\n\0]")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")


def _field_ok(name: bytes, value: bytes | None) -> bool:
    text = name.decode("latin-1")
    return bool(text) and not _BAD_NAME.search(text) and not _BAD_VALUE.search(value or b"")


def _pseudo_ok(name: bytes, value: bytes) -> bool:
    if name == b":method":
        return _TOKEN.fullmatch(value) is not None
    if name == b":path":
        return value[:1] in (b"", b"/", b"?") and not _BAD_TARGET.search(value)
    if name == b":authority":
        return not _BAD_TARGET.search(value)
    if name == b":status":
        return value.isdigit() and _status_ok(int(value))
    return False


def _status_ok(status: int) -> bool:
    return 200 <= status <= 599  # 1xx are not final responses


def _size(pairs: Iterable[tuple[bytes, bytes]]) -> int:
    """What a header map (or a stream's properties) counts against max_header_bytes:
    names and values plus 32 bytes a field, as HTTP/2 sizes a header list (RFC 7541
    4.1), so many tiny fields cannot slip under the bound."""
    return sum(len(k) + len(v) + 32 for k, v in pairs)


# ---------------------------------------------------------------------- serialisation


def serialize_map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """The spec's map encoding: count, sizes, then NUL-terminated keys and values."""
    if not pairs:
        return b""
    sizes = b"".join(struct.pack("<II", len(k), len(v)) for k, v in pairs)
    data = b"".join(k + b"\0" + v + b"\0" for k, v in pairs)
    return struct.pack("<I", len(pairs)) + sizes + data


def deserialize_map(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """Inverse of :func:`serialize_map`; None if malformed."""
    if len(data) < 4:
        return []
    (count,) = struct.unpack_from("<I", data, 0)
    if count == 0:
        return []
    pos = 4 + 8 * count
    if pos > len(data):
        return None
    pairs = []
    for i in range(count):
        klen, vlen = struct.unpack_from("<II", data, 4 + 8 * i)
        if pos + klen + vlen + 2 > len(data):
            return None
        key = data[pos : pos + klen]
        pos += klen + 1
        value = data[pos : pos + vlen]
        pos += vlen + 1
        pairs.append((key, value))
    return pairs


# ---------------------------------------------------------------------- streams


@dataclass
class HttpCallResult:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    message: str = ""


@dataclass
class GrpcCallResult:
    """What a ``proxy_grpc_call`` got, while its callbacks run (core/wasm/grpc_call.py)."""

    initial: list[tuple[bytes, bytes]] = field(default_factory=list)
    message: bytes | None = None
    trailing: list[tuple[bytes, bytes]] = field(default_factory=list)
    status: int = 14  # UNAVAILABLE until a grpc-status says otherwise
    text: str = ""


class Stream:
    """One HTTP request/response pair: a Proxy-Wasm stream context."""

    __slots__ = (
        "body",
        "ctx",
        "done_pending",
        "id",
        "local_reply",
        "paused",
        "properties",
        "resume",
    )

    def __init__(self, context_id: int, ctx: Context) -> None:
        self.id = context_id
        self.ctx = ctx
        self.local_reply: LocalReply | None = None
        self.properties: dict[bytes, bytes] = {}
        self.resume: Callable[[], None] | None = None  # set while paused
        self.paused = False
        self.done_pending = False
        # The body a body callback works on, per direction (0 request, 1 response): the
        # chunk, or what the filter holds; None between callbacks when nothing is held.
        self.body: list[bytes | bytearray | None] = [None, None]


# ---------------------------------------------------------------------- the host


class Host:
    """Host functions for one plugin VM; see the module docstring."""

    def __init__(self, plugin: PluginVm) -> None:
        self.plugin = plugin
        self.instance: Instance | None = None
        self.stream: Stream | None = None  # the effective stream; None = root context
        self.call_result: HttpCallResult | None = None  # during proxy_on_http_call_response
        self.grpc_result: GrpcCallResult | None = None  # during the proxy_on_grpc_* callbacks
        self.log = logging.getLogger(f"wasmgate.wasm.{plugin.name}")

    # -- helpers

    @property
    def mem(self) -> Instance:
        assert self.instance is not None
        return self.instance

    def _read(self, ptr: int, size: int) -> bytes | None:
        inst = self.instance
        assert inst is not None
        return inst.reader(ptr, size)

    def _return_bytes(self, data: bytes, ptr_ptr: int, size_ptr: int) -> int:
        """Copy ``data`` into guest memory and write its pointer and size back."""
        inst = self.instance
        assert inst is not None
        done = inst.return_bytes(data, ptr_ptr, size_ptr)
        if done is None:
            return Status.INTERNAL_FAILURE
        return OK if done else BAD_MEMORY

    def _ctx(self) -> Context | None:
        return self.stream.ctx if self.stream is not None else None

    def _exhausted(self, kind: str) -> int:
        count_wasm_exhausted(self.plugin.name, kind)
        return BAD_ARGUMENT

    # -- logging, time, log level

    def log_gate(self) -> tuple[logging.Logger, tuple[int, ...]]:
        """proxy_log's logger and the Python level of each Proxy-Wasm level: with them
        the VM answers a call below the level without calling :meth:`proxy_log`."""
        return self.log, tuple(_BY_NUMBER[level] for level in range(len(_BY_NUMBER)))

    def proxy_log(self, level: int, ptr: int, size: int) -> int:
        py_level = _BY_NUMBER.get(level)
        if py_level is None:
            return BAD_ARGUMENT
        if not self.log.isEnabledFor(py_level):
            # SDKs log every callback at debug: check the pointer, copy nothing.
            inst = self.instance
            assert inst is not None
            return OK if inst.in_bounds(ptr, size) else BAD_MEMORY
        message = self._read(ptr, size)
        if message is None:
            return BAD_MEMORY
        self.log.log(py_level, "%s", message.decode("utf-8", "replace"))
        return OK

    def proxy_get_log_level(self, ptr: int) -> int:
        level = self.log.getEffectiveLevel()
        wasm = (
            LogLevel.DEBUG
            if level <= logging.DEBUG
            else LogLevel.INFO
            if level <= logging.INFO
            else LogLevel.WARN
            if level <= logging.WARNING
            else LogLevel.ERROR
        )
        return OK if self.mem.write_u32(ptr, wasm) else BAD_MEMORY

    def proxy_get_current_time_nanoseconds(self, ptr: int) -> int:
        return OK if self.mem.write_u64(ptr, time.time_ns()) else BAD_MEMORY

    def proxy_set_tick_period_milliseconds(self, period: int) -> int:
        self.plugin.set_tick(period)
        return OK

    # -- contexts

    def proxy_set_effective_context(self, context_id: int) -> int:
        root = self.plugin.roots.get(context_id)
        if root is not None:  # one of the VM's root contexts (core.wasm.sharing)
            self.stream = None
            self.plugin.active = root
            return OK
        stream = self.plugin.streams.get(context_id)
        if stream is None:
            return BAD_ARGUMENT
        self.stream = stream
        return OK

    def proxy_done(self) -> int:
        stream = self.stream
        if stream is None or not stream.done_pending:
            return NOT_FOUND
        stream.done_pending = False
        self.plugin.finish_stream(stream)
        return OK

    # -- configuration and buffers

    def proxy_get_configuration(self, ptr_ptr: int, size_ptr: int) -> int:  # ABI 0.1.0
        return self._return_bytes(self.plugin.config_bytes, ptr_ptr, size_ptr)

    def _buffer(self, kind: int) -> bytes | bytearray | None:
        stream = self.stream
        if kind == BufferType.PLUGIN_CONFIGURATION:
            return self.plugin.config_bytes
        if kind == BufferType.VM_CONFIGURATION:
            return self.plugin.vm_config
        if kind == BufferType.HTTP_CALL_RESPONSE_BODY and self.call_result is not None:
            return self.call_result.body
        if kind == BufferType.GRPC_CALL_MESSAGE and self.grpc_result is not None:
            return self.grpc_result.message
        if stream is None or kind not in _BODIES:
            return None
        streamed = stream.body[kind]  # HTTP_REQUEST_BODY 0, HTTP_RESPONSE_BODY 1
        if streamed is not None:
            return streamed
        if kind == BufferType.HTTP_REQUEST_BODY:  # given whole (a Python filter buffered it)
            return stream.ctx.request.body
        return stream.ctx.response.body if stream.ctx.response else None

    def proxy_get_buffer_bytes(
        self, kind: int, start: int, max_size: int, ptr_ptr: int, size_ptr: int
    ) -> int:
        if kind not in BufferType._value2member_map_:
            return BAD_ARGUMENT
        data = self._buffer(kind)
        if data is None:
            return NOT_FOUND
        if start > len(data):
            return BAD_ARGUMENT
        return self._return_bytes(bytes(data[start : start + max_size]), ptr_ptr, size_ptr)

    def proxy_get_buffer_status(self, kind: int, size_ptr: int, flags_ptr: int) -> int:
        if kind not in BufferType._value2member_map_:
            return BAD_ARGUMENT
        data = self._buffer(kind)
        if data is None:
            return NOT_FOUND
        ok = self.mem.write_u32(size_ptr, len(data)) and self.mem.write_u32(flags_ptr, 0)
        return OK if ok else BAD_MEMORY

    def proxy_set_buffer_bytes(
        self, kind: int, start: int, size: int, data_ptr: int, data_size: int
    ) -> int:
        """Envoy's rules (SDKs rely on them): start 0 with a length replaces the whole
        buffer, whatever the length (the Go SDK passes the new body's); start 0, length
        0 prepends; a start at or past the end appends; any other range: BAD_ARGUMENT."""
        if not self.mem.in_bounds(data_ptr, data_size):
            return BAD_MEMORY
        stream = self.stream
        if kind not in _BODIES:
            return NOT_FOUND if kind in BufferType._value2member_map_ else BAD_ARGUMENT
        current = self._buffer(kind)
        if current is None or stream is None:
            return NOT_FOUND
        if start == 0:
            kept = b"" if size else current
        elif start >= len(current):
            kept = current
        else:
            return BAD_ARGUMENT
        if len(kept) + data_size > self.plugin.limits.max_buffer_bytes:
            return self._exhausted("body")
        value = self._read(data_ptr, data_size)
        if value is None:
            return BAD_MEMORY
        body = value + bytes(kept) if start == 0 else bytes(kept) + value
        if stream.body[kind] is not None:
            stream.body[kind] = body
        elif kind == BufferType.HTTP_REQUEST_BODY:
            stream.ctx.request.body = body
        else:
            assert stream.ctx.response is not None
            stream.ctx.response.body = body
        return OK

    # -- header maps
    #
    # Where the C extension is built, the common cases of proxy_get_header_map_value and
    # proxy_{replace,add,remove}_header_map_value (the request's or response's headers,
    # no pseudo-header edit, within max_header_bytes) are answered in C before these
    # methods are called (core/wasm/_crossing_headers.c): a change of their rules here
    # must be made there too (tests/test_wasm_header_fields.py holds the two together).

    def _pairs(self, kind: int) -> list[tuple[bytes, bytes]] | None:
        ctx = self._ctx()
        if kind == MapType.HTTP_REQUEST_HEADERS and ctx is not None:
            req = ctx.request
            pseudo = [
                (b":method", req.method.encode()),
                (b":path", req.wire_target()),
                (b":authority", req.host.encode("latin-1")),
                (b":scheme", ctx.scheme.encode()),
            ]
            return pseudo + [(n.lower(), v) for n, v in req.headers.raw]
        if kind == MapType.HTTP_RESPONSE_HEADERS and ctx is not None and ctx.response:
            resp = ctx.response
            return [(b":status", str(resp.status).encode())] + [
                (n.lower(), v) for n, v in resp.headers.raw
            ]
        if kind == MapType.HTTP_CALL_RESPONSE_HEADERS and self.call_result is not None:
            result = self.call_result
            if not result.status:  # a failed call has no headers, not ":status: 0"
                return []
            return [(b":status", str(result.status).encode()), *result.headers]
        if kind == MapType.HTTP_RESPONSE_TRAILERS and ctx is not None:
            trailers = ctx.response.trailers if ctx.response is not None else None
            return [(n.lower(), v) for n, v in trailers.raw] if trailers is not None else []
        if kind == MapType.HTTP_REQUEST_TRAILERS and ctx is not None:
            trailers = ctx.request.trailers
            return [(n.lower(), v) for n, v in trailers.raw] if trailers is not None else []
        if kind == MapType.GRPC_CALL_INITIAL_METADATA and self.grpc_result is not None:
            return self.grpc_result.initial
        if kind == MapType.GRPC_CALL_TRAILING_METADATA and self.grpc_result is not None:
            return self.grpc_result.trailing
        if kind == MapType.HTTP_CALL_RESPONSE_TRAILERS and self.call_result is not None:
            return []
        return None

    def proxy_get_header_map_pairs(self, kind: int, ptr_ptr: int, size_ptr: int) -> int:
        pairs = self._pairs(kind)
        if pairs is None:
            return BAD_ARGUMENT if kind not in MapType._value2member_map_ else NOT_FOUND
        return self._return_bytes(serialize_map(pairs), ptr_ptr, size_ptr)

    def proxy_get_header_map_size(self, kind: int, size_ptr: int) -> int:
        pairs = self._pairs(kind)
        if pairs is None:
            return NOT_FOUND
        return OK if self.mem.write_u32(size_ptr, len(serialize_map(pairs))) else BAD_MEMORY

    def proxy_get_header_map_value(
        self, kind: int, key_ptr: int, key_size: int, ptr_ptr: int, size_ptr: int
    ) -> int:
        inst = self.instance
        assert inst is not None
        key = inst.reader(key_ptr, key_size)
        if key is None:
            return BAD_MEMORY
        value = self._value(kind, key.lower())
        if value is None:
            return NOT_FOUND
        done = inst.return_bytes(value, ptr_ptr, size_ptr)
        return (OK if done else BAD_MEMORY) if done is not None else Status.INTERNAL_FAILURE

    def _value(self, kind: int, key: bytes) -> bytes | None:
        """The first value of ``key`` (lower case) in map ``kind``, as :meth:`_pairs`
        lists it, without building the whole list (SDKs look up a field or two per
        callback)."""
        stream = self.stream
        ctx = stream.ctx if stream is not None else None
        raw: list[tuple[bytes, bytes]]
        if kind == _REQUEST_HEADERS and ctx is not None:
            req = ctx.request
            if key[:1] == b":":
                if key == b":method":
                    return req.method.encode()
                if key == b":path":
                    return req.wire_target()
                if key == b":authority":
                    return req.host.encode("latin-1")
                if key == b":scheme":
                    return ctx.scheme.encode()
            raw = req.headers.raw
        elif kind == _RESPONSE_HEADERS and ctx is not None and ctx.response:
            if key == b":status":
                return str(ctx.response.status).encode()
            raw = ctx.response.headers.raw
        else:
            pairs = self._pairs(kind)
            if pairs is None:
                return None
            for name, value in pairs:
                if name == key:
                    return value
            return None
        size = len(key)
        for name, value in raw:
            if len(name) == size and name.lower() == key:
                return value
        return None

    def _edit(self, kind: int, key: bytes, value: bytes | None, mode: str) -> int:
        """Change one field; ``mode`` is 'add', 'replace' or 'remove'."""
        stream = self.stream
        ctx = stream.ctx if stream is not None else None
        key = key.lower()
        if kind == _REQUEST_HEADERS and ctx is not None:
            req = ctx.request
            if key[:1] == b":":
                return self._edit_request_pseudo(key, value)
            headers = req.headers
        elif kind == _RESPONSE_HEADERS and ctx is not None and ctx.response:
            if key == b":status":
                if value is None or not _pseudo_ok(key, value):
                    return BAD_ARGUMENT
                ctx.response.status = int(value)
                return OK
            headers = ctx.response.headers
        elif (trailers := self._trailers(kind)) is not None:
            if key.startswith(b":"):
                return BAD_ARGUMENT
            headers = trailers
        elif kind in MapType._value2member_map_:
            return NOT_FOUND
        else:
            return BAD_ARGUMENT
        if bad_field(key, value):
            return BAD_ARGUMENT
        raw = headers.raw
        # Whether the field is there and what the map holds, in one pass (in C when the
        # extension is built: this runs for every header a filter sets).
        present, held = scan(raw, key, mode != "add")
        if value is not None:
            held += len(key) + len(value) + 32  # what the map holds after the change
            if held > self.plugin.limits.max_header_bytes:
                return self._exhausted("headers")
        if present and mode != "add":
            raw[:] = [p for p in raw if p[0].lower() != key]
        if value is not None:
            raw.append((key, value))
        return OK

    def _trailers(self, kind: int) -> Headers | None:
        """The request's or the response's trailers, when map ``kind`` is one and they came."""
        ctx = self._ctx()
        if ctx is None:
            return None
        if kind == MapType.HTTP_REQUEST_TRAILERS:
            return ctx.request.trailers
        if kind == MapType.HTTP_RESPONSE_TRAILERS and ctx.response is not None:
            return ctx.response.trailers
        return None

    def _edit_request_pseudo(self, key: bytes, value: bytes | None) -> int:
        ctx = self._ctx()
        assert ctx is not None
        if value is None or not _pseudo_ok(key, value):
            return BAD_ARGUMENT
        if len(value) > self.plugin.limits.max_header_bytes:
            return self._exhausted("headers")
        text = value.decode("latin-1")
        if key == b":path":
            path, _, query = text.partition("?")
            ctx.request.set_target(path or "/", query)
        elif key == b":method":
            ctx.request.method = text
        elif key == b":authority":
            ctx.request.host = text
        else:
            return BAD_ARGUMENT
        return OK

    def proxy_add_header_map_value(self, kind: int, kp: int, ks: int, vp: int, vs: int) -> int:
        inst = self.instance
        assert inst is not None
        key, value = inst.reader(kp, ks), inst.reader(vp, vs)
        if key is None or value is None:
            return BAD_MEMORY
        return self._edit(kind, key, value, "add")

    def proxy_replace_header_map_value(self, kind: int, kp: int, ks: int, vp: int, vs: int) -> int:
        inst = self.instance
        assert inst is not None
        key, value = inst.reader(kp, ks), inst.reader(vp, vs)
        if key is None or value is None:
            return BAD_MEMORY
        return self._edit(kind, key, value, "replace")

    def proxy_remove_header_map_value(self, kind: int, kp: int, ks: int) -> int:
        key = self._read(kp, ks)
        if key is None:
            return BAD_MEMORY
        return self._edit(kind, key, None, "remove")

    def proxy_set_header_map_pairs(self, kind: int, ptr: int, size: int) -> int:
        if not self.mem.in_bounds(ptr, size):
            return BAD_MEMORY
        if size > 4 + self.plugin.limits.max_header_bytes:  # no map that fits is longer
            return self._exhausted("headers")
        data = self._read(ptr, size)
        if data is None:
            return BAD_MEMORY
        pairs = deserialize_map(data)
        if pairs is None:
            return Status.PARSE_FAILURE
        if _size(pairs) > self.plugin.limits.max_header_bytes:
            return self._exhausted("headers")
        ctx = self._ctx()
        if kind == MapType.HTTP_REQUEST_HEADERS and ctx is not None:
            ctx.request.headers.raw[:] = []
        elif kind == MapType.HTTP_RESPONSE_HEADERS and ctx is not None and ctx.response:
            ctx.response.headers.raw[:] = []
        elif (trailers := self._trailers(kind)) is not None:
            trailers.raw[:] = []
        else:
            return NOT_FOUND
        for key, value in pairs:
            status = self._edit(kind, key, value, "add")
            if status != OK:
                return status
        return OK

    # -- local replies and stream control

    def proxy_send_local_response(
        self,
        status: int,
        _details_ptr: int,
        _details_size: int,
        body_ptr: int,
        body_size: int,
        headers_ptr: int,
        headers_size: int,
        _grpc_status: int,
    ) -> int:
        body = self._read(body_ptr, body_size)
        raw = self._read(headers_ptr, headers_size)
        if body is None or raw is None:
            return BAD_MEMORY
        pairs = deserialize_map(raw)
        if pairs is None:
            return Status.PARSE_FAILURE
        if not _status_ok(status) or not all(_field_ok(k, v) for k, v in pairs):
            return BAD_ARGUMENT
        stream = self.stream
        if stream is None:
            return NOT_FOUND
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in pairs]
        stream.local_reply = LocalReply(status, headers, body)
        if stream.paused and stream.resume is not None:
            stream.resume()
        return OK

    def proxy_continue_stream(self, stream_type: int) -> int:
        stream = self.stream
        if stream is None or stream_type not in (0, 1):
            return NOT_FOUND if stream_type in (0, 1) else BAD_ARGUMENT
        if stream.paused and stream.resume is not None:
            stream.resume()
        return OK

    def proxy_continue_request(self) -> int:  # ABI 0.1.0
        return self.proxy_continue_stream(0)

    def proxy_continue_response(self) -> int:  # ABI 0.1.0
        return self.proxy_continue_stream(1)

    def proxy_close_stream(self, stream_type: int) -> int:
        stream = self.stream
        if stream is None:
            return NOT_FOUND
        stream.local_reply = LocalReply(502, [("content-type", "text/plain")], b"stream closed\n")
        if stream.paused and stream.resume is not None:
            stream.resume()
        return OK

    def proxy_clear_route_cache(self) -> int:
        return OK

    # -- properties

    def _property(self, path: bytes) -> bytes | None:
        stream = self.stream
        if stream is not None and path in stream.properties:
            return stream.properties[path]
        return properties.lookup(
            self.plugin, self._ctx(), path, lambda kind: serialize_map(self._pairs(kind) or [])
        )

    def proxy_get_property(self, path_ptr: int, path_size: int, ptr_ptr: int, size_ptr: int) -> int:
        path = self._read(path_ptr, path_size)
        if path is None:
            return BAD_MEMORY
        value = self._property(path.rstrip(b"\0"))
        if value is None:
            return NOT_FOUND
        return self._return_bytes(value, ptr_ptr, size_ptr)

    def proxy_set_property(self, path_ptr: int, path_size: int, val_ptr: int, val_size: int) -> int:
        path, value = self._read(path_ptr, path_size), self._read(val_ptr, val_size)
        if path is None or value is None:
            return BAD_MEMORY
        if self.stream is None:
            return NOT_FOUND
        key = path.rstrip(b"\0")
        props = self.stream.properties
        held = _size([(k, v) for k, v in props.items() if k != key])
        if held + _size([(key, value)]) > self.plugin.limits.max_header_bytes:
            return self._exhausted("properties")
        props[key] = value
        return OK

    # -- HTTP calls

    def proxy_http_call(
        self,
        up_ptr: int,
        up_size: int,
        h_ptr: int,
        h_size: int,
        b_ptr: int,
        b_size: int,
        t_ptr: int,
        t_size: int,
        timeout_ms: int,
        token_ptr: int,
    ) -> int:
        mem, limits = self.mem, self.plugin.limits
        spans = ((up_ptr, up_size), (h_ptr, h_size), (b_ptr, b_size), (t_ptr, t_size))
        if not all(mem.in_bounds(ptr, size) for ptr, size in spans):
            return BAD_MEMORY
        if self.plugin.calls_in_flight() >= limits.max_http_calls:
            return self._exhausted("http_calls")
        if b_size > limits.max_buffer_bytes:
            return self._exhausted("body")
        if h_size > 4 + limits.max_header_bytes:  # no map that fits is longer
            return self._exhausted("headers")
        upstream, raw = self._read(up_ptr, up_size), self._read(h_ptr, h_size)
        body = self._read(b_ptr, b_size)
        if upstream is None or raw is None or body is None:
            return BAD_MEMORY
        pairs = deserialize_map(raw)
        if pairs is None:
            return Status.PARSE_FAILURE
        if _size(pairs) > limits.max_header_bytes:
            return self._exhausted("headers")
        token = self.plugin.http_call(upstream.decode("latin-1"), pairs, body, timeout_ms)
        if token is None:  # an unknown cluster or a head it cannot send (core.wasm.callout)
            return BAD_ARGUMENT
        return OK if self.mem.write_u32(token_ptr, token) else BAD_MEMORY

    def proxy_grpc_call(
        self,
        svc_ptr: int,
        svc_size: int,
        name_ptr: int,
        name_size: int,
        method_ptr: int,
        method_size: int,
        md_ptr: int,
        md_size: int,
        msg_ptr: int,
        msg_size: int,
        timeout_ms: int,
        token_ptr: int,
    ) -> int:
        """A unary gRPC call through an upstream (``service`` is its cluster name)."""
        spans = [(svc_ptr, svc_size), (name_ptr, name_size), (method_ptr, method_size)]
        read = self._grpc_args([*spans, (md_ptr, md_size), (msg_ptr, msg_size)])
        if isinstance(read, int):
            return read
        (service, name, method, _, message), metadata = read
        token = self.plugin.grpc_call(
            service.decode("latin-1"), name, method, metadata, message, timeout_ms
        )
        return self._grpc_token(token, token_ptr)

    def _grpc_args(
        self, spans: list[tuple[int, int]]
    ) -> tuple[list[bytes], list[tuple[bytes, bytes]]] | int:
        """The arguments of a gRPC call or stream read from guest memory (service,
        name, method, metadata map, and the message if a fifth span is given) with the
        metadata parsed; or the status that refuses them."""
        mem, limits = self.mem, self.plugin.limits
        if not all(mem.in_bounds(ptr, size) for ptr, size in spans):
            return BAD_MEMORY
        if self.plugin.calls_in_flight() >= limits.max_http_calls:
            return self._exhausted("http_calls")
        if len(spans) > 4 and spans[4][1] > limits.max_buffer_bytes:
            return self._exhausted("body")
        if spans[3][1] > 4 + limits.max_header_bytes:
            return self._exhausted("headers")
        parts = [self._read(ptr, size) for ptr, size in spans]
        if any(part is None for part in parts):
            return BAD_MEMORY
        values = [bytes(p or b"") for p in parts]
        metadata = deserialize_map(values[3]) if values[3] else []
        if metadata is None:
            return Status.PARSE_FAILURE
        return values, metadata

    def _grpc_token(self, token: int | str, token_ptr: int) -> int:
        """A gRPC call's or stream's token written back; an unknown cluster is
        PARSE_FAILURE (Envoy's status, which SDKs expect), a head it cannot send
        BAD_ARGUMENT."""
        if isinstance(token, str):
            return Status.PARSE_FAILURE if token == "cluster" else BAD_ARGUMENT
        return OK if self.mem.write_u32(token_ptr, token) else BAD_MEMORY

    # -- gRPC streams (core/wasm/grpc_stream.py)

    def proxy_grpc_stream(
        self,
        svc_ptr: int,
        svc_size: int,
        name_ptr: int,
        name_size: int,
        method_ptr: int,
        method_size: int,
        md_ptr: int,
        md_size: int,
        token_ptr: int,
    ) -> int:
        from core.wasm.grpc_stream import open_stream

        spans = [(svc_ptr, svc_size), (name_ptr, name_size), (method_ptr, method_size)]
        read = self._grpc_args([*spans, (md_ptr, md_size)])
        if isinstance(read, int):
            return read
        (service, name, method, _), metadata = read
        token = open_stream(
            self.plugin, service.decode("latin-1"), name, method, metadata, self.stream
        )
        return self._grpc_token(token, token_ptr)

    def proxy_grpc_send(self, token: int, msg_ptr: int, msg_size: int, end_stream: int) -> int:
        stream = self.plugin.grpc_streams.get(token)
        if stream is None:
            return BAD_ARGUMENT if token in self.plugin.grpc_calls else NOT_FOUND
        if stream.local_closed:
            return BAD_ARGUMENT
        if stream.unsent + 5 + msg_size > self.plugin.limits.max_buffer_bytes:
            return self._exhausted("body")  # what waits for the server, with this one
        message = self._read(msg_ptr, msg_size)
        if message is None:
            return BAD_MEMORY
        stream.send(message, bool(end_stream))
        return OK

    def proxy_grpc_close(self, token: int) -> int:
        """Half-close a stream; cancel a unary call."""
        stream = self.plugin.grpc_streams.get(token)
        if stream is not None:
            stream.half_close()
            return OK
        return self.proxy_grpc_cancel(token)

    def proxy_grpc_cancel(self, token: int) -> int:
        stream = self.plugin.grpc_streams.get(token)
        if stream is not None:
            stream.cancel()
            return OK
        call = self.plugin.grpc_calls.pop(token, None)
        if call is None:
            return NOT_FOUND
        call.cancel()
        return OK

    def proxy_get_status(self, code_ptr: int, msg_ptr_ptr: int, msg_size_ptr: int) -> int:
        grpc = self.grpc_result
        if grpc is not None:
            if not self.mem.write_u32(code_ptr, grpc.status):
                return BAD_MEMORY
            return self._return_bytes(grpc.text.encode(), msg_ptr_ptr, msg_size_ptr)
        result = self.call_result
        if result is None:
            return NOT_FOUND
        if not self.mem.write_u32(code_ptr, result.status):
            return BAD_MEMORY
        return self._return_bytes(result.message.encode(), msg_ptr_ptr, msg_size_ptr)

    # -- shared data and queues

    def proxy_get_shared_data(
        self, key_ptr: int, key_size: int, ptr_ptr: int, size_ptr: int, cas_ptr: int
    ) -> int:
        key = self._read(key_ptr, key_size)
        if key is None:
            return BAD_MEMORY
        home = self.plugin.shared
        if home.mirror is not None:
            home.mirror.start()
        entry = home.get(key)
        if entry is None:
            return NOT_FOUND
        value, cas = entry
        if not self.mem.write_u32(cas_ptr, cas):
            return BAD_MEMORY
        return self._return_bytes(value, ptr_ptr, size_ptr)

    def proxy_set_shared_data(
        self, key_ptr: int, key_size: int, val_ptr: int, val_size: int, cas: int
    ) -> int:
        key = self._read(key_ptr, key_size)
        if key is None or not self.mem.in_bounds(val_ptr, val_size):
            return BAD_MEMORY
        home = self.plugin.shared
        if home.mirror is not None:
            home.mirror.start()
        if not home.fits(key, val_size):
            return self._exhausted("shared")
        value = self._read(val_ptr, val_size)
        if value is None:
            return BAD_MEMORY
        status = home.set(key, value, cas)
        if status == BAD_ARGUMENT:  # another filter of the vm_id filled it meanwhile
            return self._exhausted("shared")
        return status

    def proxy_register_shared_queue(self, name_ptr: int, name_size: int, id_ptr: int) -> int:
        name = self._read(name_ptr, name_size)
        if name is None:
            return BAD_MEMORY
        qid = self.plugin.shared.register_queue(name, self.plugin.queue_owner())
        return OK if self.mem.write_u32(id_ptr, qid) else BAD_MEMORY

    def proxy_resolve_shared_queue(
        self, vm_ptr: int, vm_size: int, name_ptr: int, name_size: int, id_ptr: int
    ) -> int:
        vm_id, name = self._read(vm_ptr, vm_size), self._read(name_ptr, name_size)
        if vm_id is None or name is None:
            return BAD_MEMORY
        qid = shared.resolve_queue(vm_id or self.plugin.vm_id.encode(), name)
        if qid is None:
            return NOT_FOUND
        return OK if self.mem.write_u32(id_ptr, qid) else BAD_MEMORY

    def proxy_enqueue_shared_queue(self, qid: int, ptr: int, size: int) -> int:
        if not self.mem.in_bounds(ptr, size):
            return BAD_MEMORY
        status, owner = shared.enqueue(qid, size, lambda: self._read(ptr, size))
        if status == BAD_ARGUMENT:
            return self._exhausted("queue")
        if owner is not None:
            owner.queue_ready(qid)
        return status

    def proxy_dequeue_shared_queue(self, qid: int, ptr_ptr: int, size_ptr: int) -> int:
        item = shared.dequeue(qid)
        if isinstance(item, Status):
            return item
        return self._return_bytes(item, ptr_ptr, size_ptr)

    # -- metrics

    def proxy_define_metric(self, kind: int, name_ptr: int, name_size: int, id_ptr: int) -> int:
        if kind not in MetricType._value2member_map_:
            return BAD_ARGUMENT
        if not self.mem.in_bounds(name_ptr, name_size):
            return BAD_MEMORY
        if name_size > MAX_METRIC_NAME:
            return self._exhausted("metrics")
        name = self._read(name_ptr, name_size)
        if name is None:
            return BAD_MEMORY
        mid = self.plugin.metrics.define(kind, name.decode("utf-8", "replace"))
        if mid is None:
            return self._exhausted("metrics")
        return OK if self.mem.write_u32(id_ptr, mid) else BAD_MEMORY

    def proxy_increment_metric(self, mid: int, delta: int) -> int:
        metric = self.plugin.metrics.get(mid)
        if metric is None:
            return NOT_FOUND
        delta = delta - (1 << 64) if delta >= 1 << 63 else delta
        if metric.kind == "histogram" or (metric.kind == "counter" and delta < 0):
            return BAD_ARGUMENT
        metric.value += delta
        return OK

    def proxy_record_metric(self, mid: int, value: int) -> int:
        metric = self.plugin.metrics.get(mid)
        if metric is None:
            return NOT_FOUND
        value &= (1 << 64) - 1  # the ABI's value is a u64
        if metric.kind == "counter":
            metric.value += value
        elif metric.kind == "gauge":
            metric.value = value
        else:
            metric.observe(value)
        return OK

    def proxy_get_metric(self, mid: int, ptr: int) -> int:
        metric = self.plugin.metrics.get(mid)
        if metric is None:
            return NOT_FOUND
        if metric.kind == "histogram":
            return BAD_ARGUMENT
        return OK if self.mem.write_u64(ptr, metric.value & ((1 << 64) - 1)) else BAD_MEMORY

    def proxy_call_foreign_function(
        self,
        name_ptr: int,
        name_size: int,
        args_ptr: int,
        args_size: int,
        ret_ptr_ptr: int,
        ret_size_ptr: int,
    ) -> int:
        if not self.mem.in_bounds(args_ptr, args_size):
            return BAD_MEMORY
        if args_size > self.plugin.limits.max_buffer_bytes:
            return self._exhausted("foreign")
        name, args = self._read(name_ptr, name_size), self._read(args_ptr, args_size)
        if name is None or args is None:
            return BAD_MEMORY
        status, result = foreign.call(name.decode("utf-8", "replace"), args, self.plugin.name)
        if status != OK:
            return status
        if len(result) > self.plugin.limits.max_buffer_bytes:
            return self._exhausted("foreign")
        return self._return_bytes(result, ret_ptr_ptr, ret_size_ptr)

    # -- WASI preview 1 (both wasi_snapshot_preview1 and wasi_unstable)

    def wasi_fd_write(self, fd: int, iovs: int, count: int, written_ptr: int) -> int:
        if fd not in (1, 2):
            return WasiErrno.BADF
        if not self.mem.in_bounds(iovs, 8 * count):  # (an empty list, too, lies in memory)
            return WasiErrno.FAULT
        chunks = []
        for i in range(count):
            entry = self._read(iovs + 8 * i, 8)
            if entry is None:
                return WasiErrno.FAULT
            ptr, size = struct.unpack("<II", entry)
            data = self._read(ptr, size)
            if data is None:
                return WasiErrno.FAULT
            chunks.append(data)
        text = b"".join(chunks)
        if text.strip():
            level = logging.INFO if fd == 1 else logging.ERROR
            self.log.log(level, "%s", text.decode("utf-8", "replace").rstrip("\n"))
        if not self.mem.write_u32(written_ptr, len(text)):
            return WasiErrno.FAULT
        return WasiErrno.SUCCESS

    def wasi_clock_time_get(self, clock: int, _precision: int, ptr: int) -> int:
        if clock == 0:
            now = time.time_ns()
        elif clock == 1:
            now = time.monotonic_ns()
        else:
            return WasiErrno.NOTSUP
        return WasiErrno.SUCCESS if self.mem.write_u64(ptr, now) else WasiErrno.FAULT

    def wasi_random_get(self, ptr: int, size: int) -> int:
        if size > 1 << 20:
            return WasiErrno.INVAL
        return WasiErrno.SUCCESS if self.mem.write(ptr, os.urandom(size)) else WasiErrno.FAULT

    def wasi_environ_sizes_get(self, count_ptr: int, size_ptr: int) -> int:
        ok = self.mem.write_u32(count_ptr, 0) and self.mem.write_u32(size_ptr, 0)
        return WasiErrno.SUCCESS if ok else WasiErrno.FAULT

    def wasi_args_sizes_get(self, count_ptr: int, size_ptr: int) -> int:
        # no arguments either (a method of its own: a class-body alias is not an
        # attribute of the class once mypyc compiles it, and the resolver looks it up)
        return self.wasi_environ_sizes_get(count_ptr, size_ptr)

    def wasi_environ_get(self, _array: int, _buffer: int) -> int:
        return WasiErrno.SUCCESS

    def wasi_args_get(self, array: int, buffer: int) -> int:
        return self.wasi_environ_get(array, buffer)

    def wasi_proc_exit(self, code: int) -> None:
        raise _GuestExit(f"proc_exit({code})")

    def wasi_sched_yield(self) -> int:
        return WasiErrno.SUCCESS

    def wasi_fd_prestat_get(self, _fd: int, _ptr: int) -> int:
        return WasiErrno.BADF  # no preopened directories: no filesystem

    def wasi_fd_close(self, _fd: int) -> int:
        return WasiErrno.BADF

    def wasi_fd_fdstat_get(self, fd: int, _ptr: int) -> int:
        return WasiErrno.SUCCESS if fd in (1, 2) else WasiErrno.BADF


def resolver(host: Host) -> Callable[[str, str, Any], Callable[..., int | None] | None]:
    """Map an import (module, name) to the host method that implements it."""

    def resolve(module: str, name: str, _ty: Any) -> Callable[..., int | None] | None:
        if module == "env" and name.startswith("proxy_"):
            return getattr(host, name, None)
        if module in ("wasi_snapshot_preview1", "wasi_unstable"):
            return getattr(host, f"wasi_{name}", None)
        return None

    return resolve
