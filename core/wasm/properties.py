"""What ``proxy_get_property`` answers: Envoy's attributes and the filter's own values.

A path is a list of segments, NUL-separated on the wire (``request\\0path``). It is
looked up, in order, in the properties the filter set on the stream
(``proxy_set_property``), Envoy's attributes (the table in docs/wasm.md), then the
filter's ``properties`` table from gateway.toml, walked one segment per nested table.

Values are serialised as Envoy serialises them: strings as their bytes, integers,
durations and timestamps as 8-byte little-endian int64 (nanoseconds for the last two),
floats as 8-byte little-endian doubles, booleans as one byte, and maps (headers, a
nested table) as the spec's pair encoding, each value itself serialised.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config import Node
    from core.wasm.plugin import PluginVm
    from plugin_sdk import Context, Response

Getter = Callable[[], bytes | None]


def encode(value: Any) -> bytes:
    """A configured value (TOML: string, integer, float, boolean, table) as Envoy would
    hand it to a filter."""
    from core.wasm.host import serialize_map

    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return struct.pack("<q", value)
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, Mapping):
        return serialize_map([(str(k).encode(), encode(v)) for k, v in value.items()])
    return str(value).encode()


def walk(table: Mapping[str, Any], segments: list[bytes]) -> bytes | None:
    """The value at ``segments`` in a nested table, serialised; None if absent."""
    value: Any = table
    for segment in segments:
        if not isinstance(value, Mapping):
            return None
        value = value.get(segment.decode("utf-8", "replace"))
        if value is None:
            return None
    return encode(value)


def _i64(n: int) -> bytes:
    return struct.pack("<q", n)


def _split(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    return (host, int(port)) if sep and port.isdigit() else None


def _node(node: Node, rest: list[bytes]) -> bytes | None:
    if rest == [b"id"]:
        return node.id.encode()
    if rest == [b"cluster"]:
        return node.cluster.encode()
    if rest[:1] == [b"metadata"]:
        return walk(node.metadata, rest[1:])
    return None


def plugin_attribute(vm: PluginVm, segments: list[bytes]) -> bytes | None:
    """The attributes that need no request: the plugin's names and the node."""
    first, rest = segments[0], segments[1:]
    if not rest:
        if first == b"plugin_name":
            return vm.plugin_name.encode()
        if first == b"plugin_root_id":
            return vm.root_id_name.encode()
        if first == b"plugin_vm_id":
            return vm.vm_id.encode()
    if first == b"node":
        return _node(vm.node, rest)
    if first == b"xds" and rest[:1] == [b"node"]:
        return _node(vm.node, rest[1:])
    return None


def _body_size(headers_len: str | None, body: bytes | None) -> bytes | None:
    if headers_len is not None and headers_len.isdigit():
        return _i64(int(headers_len))
    return _i64(len(body)) if body is not None else None


def _response_total(resp: Response) -> bytes:
    head = len("HTTP/1.1 200 OK\r\n") + sum(len(n) + len(v) + 4 for n, v in resp.headers.raw) + 2
    body = resp.headers.get("content-length") or ""
    return _i64(head + (int(body) if body.isdigit() else len(resp.body or b"")))


def stream_attributes(
    vm: PluginVm, ctx: Context, headers: Callable[[int], bytes]
) -> dict[bytes, Getter]:
    """The attributes of one request, by NUL-joined path. ``headers(kind)`` is the
    serialised header map of that kind (0: request, 2: response), as the host shows it."""
    req = ctx.request
    tls = ctx.tls

    def started_ns() -> int:
        start = getattr(req, "start", None)  # set by the gateway; not by make_request
        if not start:
            return time.time_ns()
        return time.time_ns() - int((time.monotonic() - start) * 1e9)

    def duration() -> bytes:
        start = getattr(req, "start", None)
        return _i64(int((time.monotonic() - start) * 1e9) if start else 0)

    def total_size() -> bytes:
        head = len(req.method) + len(req.wire_target()) + len("HTTP/1.1") + 4
        head += sum(len(n) + len(v) + 4 for n, v in req.headers.raw) + 2
        body = req.headers.get("content-length") or ""
        return _i64(head + (int(body) if body.isdigit() else len(req.body or b"")))

    def header(name: str) -> Getter:
        return lambda: (req.headers.get(name) or "").encode("latin-1") or None

    destination = _split(vm.listen_address)
    conn_id = int(getattr(req, "conn_id", 0) or 0)  # set by the gateway's HTTP/1.1 path

    def upstream_address() -> str:  # the endpoint picked for the request's last try
        return str(getattr(req, "upstream_address", "") or "")

    resp = ctx.response
    out: dict[bytes, Getter] = {
        b"request\0path": req.wire_target,
        b"request\0url_path": lambda: req.path.encode("latin-1"),
        b"request\0host": lambda: req.host.encode("latin-1"),
        b"request\0scheme": lambda: ctx.scheme.encode(),
        b"request\0method": lambda: req.method.encode(),
        b"request\0headers": lambda: headers(0),
        b"request\0referer": header("referer"),
        b"request\0useragent": header("user-agent"),
        b"request\0time": lambda: _i64(started_ns()),
        b"request\0id": header("x-request-id"),
        b"request\0protocol": lambda: f"HTTP/{req.version}".encode(),
        b"request\0query": lambda: req.query.encode("latin-1"),
        b"request\0duration": duration,
        b"request\0size": lambda: _body_size(req.headers.get("content-length"), req.body),
        b"request\0total_size": total_size,
        b"source\0address": lambda: f"{req.client_ip}:{req.client_port}".encode(),
        b"source\0port": lambda: _i64(req.client_port),
        b"destination\0address": lambda: vm.listen_address.encode() or None,
        b"destination\0port": lambda: _i64(destination[1]) if destination else None,
        b"connection\0mtls": lambda: b"\x01" if tls is not None and tls.peer_subject else b"\x00",
        b"connection\0requested_server_name": lambda: (
            tls.server_name.encode() if tls is not None and tls.server_name else None
        ),
        b"connection\0tls_version": lambda: tls.version.encode() if tls is not None else None,
        b"connection\0subject_peer_certificate": lambda: (
            tls.peer_subject.encode() if tls is not None and tls.peer_subject else None
        ),
        b"connection\0id": lambda: _i64(conn_id) if conn_id else None,
        b"upstream\0address": lambda: upstream_address().encode() or None,
        b"upstream\0port": lambda: _i64(up[1]) if (up := _split(upstream_address())) else None,
        b"route_name": lambda: ctx.route.encode(),
        b"xds\0route_name": lambda: ctx.route.encode(),
        b"cluster_name": lambda: ctx.upstream.encode(),
        b"xds\0cluster_name": lambda: ctx.upstream.encode(),
        b"upstream\0name": lambda: ctx.upstream.encode(),
    }
    if resp is not None:
        grpc = resp.headers.get("grpc-status")
        out |= {
            b"response\0code": lambda: _i64(resp.status),
            b"response\0code_details": lambda: (
                b"local_reply" if ctx.stopped_by is not None else b"via_upstream"
            ),
            b"response\0flags": lambda: _i64(0),
            b"response\0grpc_status": lambda: _i64(int(grpc)) if grpc and grpc.isdigit() else None,
            b"response\0headers": lambda: headers(2),
            b"response\0size": lambda: _body_size(resp.headers.get("content-length"), resp.body),
            b"response\0total_size": lambda: _response_total(resp),
        }
    return out


def lookup(
    vm: PluginVm, ctx: Context | None, path: bytes, headers: Callable[[int], bytes]
) -> bytes | None:
    """The value of ``path`` (NUL-separated) for the plugin and, if any, the request."""
    segments = path.split(b"\0")
    found = plugin_attribute(vm, segments)
    if found is not None:
        return found
    if ctx is not None:
        getter = stream_attributes(vm, ctx, headers).get(path)
        if getter is not None:
            return getter()
    return walk(vm.properties, segments)
