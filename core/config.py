"""``gateway.toml``: the configuration models and the loader.

Models are frozen pydantic models with ``extra="forbid"``; every field has a default
where one is sane and a description (shown by ``wasmgate check --schema``). The loader
turns pydantic's errors and our own cross-reference checks into :class:`ConfigError`
lines of the form ``routes[2].upstream: unknown upstream 'bakend'; did you mean
'backend'?`` so the user sees the file, the field and, for typos, a suggestion.

The full reference with a commented example lives in ``docs/configuration.md``.
"""

from __future__ import annotations

import difflib
import json
import re
import socket
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from core.config_http2 import Http2
from core.errors import ConfigError
from core.store import StoreConfig
from plugin_sdk.config import Secret, check_regex

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
_HOST_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
HOST_RE = re.compile(rf"^(\*\.)?{_HOST_LABEL}(\.{_HOST_LABEL})*$")


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_address(
    text: str, *, default_port: int | None = None, allow_zero: bool = False
) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) into its parts; raises ValueError.

    ``allow_zero`` admits port 0 (a listener on an ephemeral port, as tests use).
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"invalid address {text!r}: missing ']'")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not host:
        raise ValueError(f"invalid address {text!r}: empty host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"invalid address {text!r}: expected host:port")
        return host, default_port
    low = 0 if allow_zero else 1
    if not port_text.isdigit() or not low <= int(port_text) < 65536:
        raise ValueError(f"invalid address {text!r}: port must be {low}-65535")
    return host, int(port_text)


class Limits(Model):
    max_header_bytes: int = Field(
        16384, gt=0, description="Request line plus headers; larger gets 431 (URL alone: 414)."
    )
    max_url_bytes: int = Field(8192, gt=0, description="Request target length; longer gets 414.")
    max_body_bytes: int = Field(
        1 << 30, ge=0, description="Request body bound (streamed, never buffered); 0 = no bound."
    )
    max_buffer_bytes: int = Field(
        8 << 20,
        gt=0,
        description="Bound on a body buffered for a filter that asked to see it whole.",
    )
    request_header_timeout: float = Field(
        10.0, gt=0, description="Seconds to receive a request's headers; slower gets 408."
    )
    idle_timeout: float = Field(
        60.0, gt=0, description="Seconds a keep-alive client connection may sit idle."
    )
    drain_timeout: float = Field(
        30.0, ge=0, description="On SIGTERM, seconds to let in-flight requests finish."
    )


# Mozilla's "intermediate" TLS 1.2 suites (forward secrecy, AEAD only); TLS 1.3 has its own.
DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
ClientAuth = Literal["none", "optional", "required"]


class ServerTLS(Model):
    """``[server.tls]``: how the HTTPS listeners speak TLS."""

    min_version: Literal["1.0", "1.1", "1.2", "1.3"] = Field(
        "1.2", description="Oldest TLS version accepted."
    )
    ciphers: str = Field(
        DEFAULT_CIPHERS, min_length=1, description="TLS 1.2 cipher suites (OpenSSL syntax)."
    )
    client_auth: ClientAuth = Field(
        "none",
        description="Client certificates for every host: 'none', 'optional' (verified when "
        "sent) or 'required'; [[certificates]] may override it per host.",
    )
    client_ca: str | None = Field(
        None, description="PEM CA bundle client certificates must chain to (relative to this file)."
    )
    forward_client_cert: bool = Field(
        True,
        description="Send the verified client certificate's subject and SANs upstream as "
        "X-Client-Cert-Subject / X-Client-Cert-SAN (clients' own are always removed).",
    )
    expiry_warning_days: int = Field(
        30, ge=0, description="Warn at load about certificates expiring within this many days."
    )


class Server(Model):
    listen: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:8080"],
        description="host:port list for plain HTTP (may be empty with tls_listen).",
    )
    tls_listen: list[str] = Field(
        default_factory=list,
        description="host:port list for HTTPS, serving [[certificates]] by SNI (without "
        "any: a generated self-signed default certificate).",
    )
    tls: ServerTLS = Field(
        default_factory=lambda: ServerTLS(), description="TLS settings of the HTTPS listeners."
    )
    http2: Http2 = Field(
        default_factory=lambda: Http2(), description="HTTP/2 to clients (docs/http2.md)."
    )
    workers: int | Literal["auto"] = Field(
        1, description="Processes sharing the port (SO_REUSEPORT); 'auto' = CPU count."
    )
    trusted_hops: int = Field(
        0,
        ge=0,
        description="Proxies in front of us whose X-Forwarded-* we trust; 0 = trust none.",
    )
    access_log: str = Field("stdout", description="'stdout', 'stderr', 'off' or a file path.")
    access_log_format: Literal["json", "combined"] = Field("json", description="Log line format.")
    limits: Limits = Field(default_factory=lambda: Limits(), description="Client-side limits.")
    watch_files: Literal["auto", "poll", "off"] = Field(
        "auto",
        description="How `wasmgate run` follows the files its configuration was built from: "
        "'auto' (inotify; polling once a second where inotify cannot be used), 'poll' (once "
        "a second: network filesystems), 'off' (reload on SIGHUP or POST /reload only).",
    )

    @field_validator("listen", "tls_listen")
    @classmethod
    def _listen(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_address(item, allow_zero=True)
        return value

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("workers must be >= 1 or 'auto'")
        return value


class Endpoint(Model):
    address: str = Field(description="host:port of one upstream server.")
    weight: int = Field(1, ge=1, le=1000, description="Relative share of traffic.")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_address(value)
        return value


class HashOn(Model):
    header: str | None = Field(None, description="Hash on this request header's value.")
    cookie: str | None = Field(None, description="Hash on this cookie's value.")

    @model_validator(mode="after")
    def _one(self) -> HashOn:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("set exactly one of 'header' or 'cookie'")
        return self


class Health(Model):
    max_failures: int = Field(
        3, ge=1, description="Consecutive failures (connect error, 5xx from 502-504) that eject."
    )
    eject_seconds: float = Field(10.0, gt=0, description="How long an ejected endpoint rests.")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def seconds(value: Any) -> Any:
    """A duration in seconds: a number, or a string: ``"500ms"``, ``"5s"``, ``"1m"``, ``"1h"``."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(f'{value!r} is not a duration (e.g. 5, "500ms", "5s", "1m", "1h")')
        return float(m.group(1)) * _UNITS[m.group(2)]
    return value


# A duration of at most an hour; its JSON Schema admits the strings too.
Seconds = Annotated[
    float,
    BeforeValidator(seconds),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                {"type": "string", "pattern": _DURATION.pattern},
            ]
        }
    ),
]
_STATUS_RANGE = re.compile(r"^\s*(\d{3})\s*-\s*(\d{3})\s*$")
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: no space, CR, LF or control


class HealthCheck(Model):
    """``[upstreams.health_check]``: active checks, probing each endpoint on a timer."""

    type: Literal["http", "tcp"] = Field(
        "http",
        description="'http': a GET of `path` must answer with an expected status; "
        "'tcp': a TCP connection must open.",
    )
    path: str = Field("/", description="HTTP: the path (and query) to GET.")
    host: str | None = Field(
        None,
        description="HTTP: the Host header; default the upstream's host_header, "
        "else the endpoint's address.",
    )
    expected_statuses: list[int | str] = Field(
        default_factory=lambda: list[int | str](["200-399"]),
        min_length=1,
        description="HTTP: statuses that pass, as numbers or ranges ('200-299').",
    )
    interval: Seconds = Field(
        5.0, gt=0, le=3600, description="Time between two checks of an endpoint (5, '5s', '500ms')."
    )
    timeout: Seconds = Field(
        1.0,
        gt=0,
        le=3600,
        description="Bound on one check: connect, TLS handshake and (HTTP) the response head.",
    )
    healthy_threshold: int = Field(
        2,
        ge=1,
        le=1000,
        description="Passed checks in a row that make an unhealthy endpoint healthy.",
    )
    unhealthy_threshold: int = Field(
        3,
        ge=1,
        le=1000,
        description="Failed checks in a row that make a healthy endpoint unhealthy.",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or not _TOKEN_CHARS.match(value):
            raise ValueError(
                f"{value!r}: write a path starting with '/', without spaces or controls"
            )
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not _TOKEN_CHARS.match(value):
            raise ValueError(f"{value!r}: a host without spaces or controls")
        return value

    @field_validator("expected_statuses")
    @classmethod
    def _statuses(cls, value: list[int | str]) -> list[int | str]:
        status_ranges(value)
        return value

    @model_validator(mode="after")
    def _kind(self) -> HealthCheck:
        if self.type == "tcp":
            # As for the tls_* fields: a default is let through (a dumped config reloads).
            for name in ("path", "host", "expected_statuses"):
                if getattr(self, name) != HealthCheck.model_fields[name].get_default(
                    call_default_factory=True
                ):
                    raise ValueError(f"'{name}' is for type = 'http' only")
        return self


def status_ranges(items: Sequence[int | str]) -> list[tuple[int, int]]:
    """``[200, "300-399"]`` as inclusive ranges; raises ValueError naming a bad item."""
    out = []
    for item in items:
        if isinstance(item, int):
            low = high = item
        else:
            m = _STATUS_RANGE.match(item)
            if m is None:
                raise ValueError(f"{item!r}: write a status (200) or a range ('200-299')")
            low, high = int(m.group(1)), int(m.group(2))
        if not 100 <= low <= high <= 599:
            raise ValueError(f"{item!r}: statuses are 100-599, the lower bound first")
        out.append((low, high))
    return out


class Upstream(Model):
    name: str = Field(description="Name routes refer to.")
    endpoints: list[Endpoint] = Field(
        description="Servers, 'host:port' or tables; none: requests get 503 (as for a "
        "Kubernetes Service without ready endpoints)."
    )
    balance: Literal["round_robin", "least_request", "random", "consistent_hash"] = Field(
        "round_robin", description="Load-balancing policy."
    )
    hash_on: HashOn | None = Field(None, description="Key for consistent_hash.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection.")
    read_timeout: float = Field(
        60.0, gt=0, description="Seconds of upstream silence (waiting for or during the reply)."
    )
    retries: int = Field(1, ge=0, le=10, description="Extra tries where retrying is safe.")
    per_try_timeout: float | None = Field(
        None, gt=0, description="Bound on one try up to the response head; default read_timeout."
    )
    keepalive: int = Field(64, ge=0, description="Idle keep-alive connections kept per endpoint.")
    preserve_host: bool = Field(True, description="Send the client's Host upstream.")
    host_header: str | None = Field(None, description="Host to send when not preserving.")
    health: Health = Field(default_factory=lambda: Health(), description="Passive health checking.")
    health_check: HealthCheck | None = Field(
        None, description="Active health checks (HTTP or TCP probes); off without the table."
    )
    tls: bool = Field(False, description="Connect to the endpoints over TLS.")
    protocol: Literal["http1", "h2", "h2c"] = Field(
        "http1",
        description="HTTP/1.1; 'h2': HTTP/2 over TLS (needs tls = true; ALPN h2); 'h2c': "
        "HTTP/2 over plain TCP with prior knowledge. gRPC upstreams need h2 or h2c.",
    )
    tls_verify: bool = Field(
        True, description="Verify the upstream's certificate chain and name; off only for testing."
    )
    tls_ca: str | None = Field(
        None,
        description="PEM CA bundle to verify with (relative to this file); "
        "default: the system's trust store.",
    )
    tls_sni: str | None = Field(
        None,
        description="Server name to send and to verify; default: the endpoint's host, "
        "or host_header's when set.",
    )
    tls_cert: str | None = Field(
        None, description="Client certificate (PEM chain) for mutual TLS, relative to this file."
    )
    tls_key: str | None = Field(None, description="Its private key (PEM).")

    @field_validator("tls_verify", "tls_ca", "tls_sni", "tls_cert", "tls_key")
    @classmethod
    def _needs_tls(cls, value: Any, info: ValidationInfo) -> Any:
        # A TLS setting on a plain-text pool is a forgotten `tls = true`, not something
        # to ignore. The default itself is let through (a dumped config is reloaded).
        default = cls.model_fields[str(info.field_name)].default
        if value != default and not info.data.get("tls", True):
            raise ValueError("needs tls = true")
        return value

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoints(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"address": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _hash(self) -> Upstream:
        if self.balance == "consistent_hash" and self.hash_on is None:
            raise ValueError("balance = 'consistent_hash' needs hash_on = {header = ...}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key (a client certificate and its key)")
        if self.protocol == "h2" and not self.tls:
            raise ValueError("protocol = 'h2' needs tls = true ('h2c' is HTTP/2 without TLS)")
        if self.protocol == "h2c" and self.tls:
            raise ValueError("protocol = 'h2c' is without TLS; over TLS use 'h2'")
        return self


class PathRule(Model):
    path: str = Field(description="Path, prefix or regular expression.")
    match: Literal["exact", "prefix", "regex"] = Field("prefix", description="How to compare.")

    @model_validator(mode="after")
    def _check(self) -> PathRule:
        if self.match == "regex":
            check_regex(self.path)
        elif not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must start with '/'")
        return self


class HeaderMatch(Model):
    name: str = Field(min_length=1, description="Header name (case-insensitive).")
    value: str = Field("", description="Value to compare with (not used by 'present').")
    match: Literal["exact", "prefix", "regex", "present"] = Field(
        "exact", description="How to compare."
    )
    invert: bool = Field(False, description="Match when the comparison fails.")

    @model_validator(mode="after")
    def _check(self) -> HeaderMatch:
        if self.match == "regex":
            check_regex(self.value)
        return self


class QueryMatch(Model):
    name: str = Field(min_length=1, description="Query parameter name (case-sensitive).")
    value: str = Field("", description="Value to compare with, decoded (not used by 'present').")
    match: Literal["exact", "regex", "present"] = Field("exact", description="How to compare.")

    @model_validator(mode="after")
    def _check(self) -> QueryMatch:
        if self.match == "regex":
            check_regex(self.value)
        return self


FailMode = Literal["closed", "open"]


class WasmLimits(Model):
    memory_mb: int = Field(64, ge=1, le=4096, description="Linear-memory cap of the instance.")
    deadline_ms: int = Field(
        50, ge=1, le=10_000, description="CPU deadline per callback; past it the instance traps."
    )
    pause_timeout: float = Field(
        30.0, gt=0, description="Longest a filter may keep a request paused (Pause)."
    )
    # What the filter can make the host hold outside its linear memory. Past a bound the
    # host function returns BAD_ARGUMENT and wasmgate_wasm_resource_exhausted_total counts.
    max_shared_bytes: int = Field(
        16 << 20, ge=0, description="Shared data (keys and values) the filter's VM may hold."
    )
    max_queue_bytes: int = Field(
        16 << 20, ge=0, description="Items waiting in the shared queues of the filter's VM."
    )
    max_buffer_bytes: int = Field(
        8 << 20,
        ge=0,
        description="Largest body the filter may make (proxy_set_buffer_bytes) or send "
        "(proxy_http_call).",
    )
    max_header_bytes: int = Field(
        64 << 10,
        ge=0,
        description="Largest header map the filter may make or send in an HTTP call, and the "
        "most properties it may set on one stream: names and values plus 32 bytes a field.",
    )
    max_http_calls: int = Field(
        64,
        ge=0,
        description="HTTP and gRPC calls (proxy_http_call, proxy_grpc_call) and gRPC streams "
        "(proxy_grpc_stream) the filter may have open at once.",
    )
    max_metrics: int = Field(
        1000, ge=0, description="Metrics (proxy_define_metric) the filter may define."
    )
    # CPU: callbacks run on the event loop, so a filter's share of it is bounded.
    cpu_budget: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of one CPU the filter's callbacks may use over cpu_window; past "
        "it the filter fails its requests (fail strategy) for the cooldown.",
    )
    cpu_window: float = Field(
        1.0, gt=0, le=60, description="Seconds of the sliding window cpu_budget is measured on."
    )
    cooldown: float = Field(
        5.0, gt=0, le=3600, description="Seconds a filter over its CPU budget stays cut off."
    )
    rebuild_backoff: float = Field(
        1.0,
        ge=0,
        le=60,
        description="After a second trap in a row, seconds to wait before rebuilding the "
        "instance; doubles with each further trap, up to 60 s. 0: rebuild at once.",
    )
    min_tick_ms: int = Field(
        10, ge=1, le=60_000, description="Shortest tick period; shorter requests are raised to it."
    )


# The first segment of the attributes the Proxy-Wasm host answers itself
# (core/wasm/properties.py); a filter's own `properties` may not hide them. `xds` is
# left open: a filter's properties may supply `xds.route_metadata...` (Istio's), and the
# built-in `xds.*` paths still win.
WASM_ATTRIBUTE_ROOTS = frozenset(
    {
        "request", "response", "source", "destination", "connection", "upstream", "node",
        "cluster_name", "route_name", "plugin_name", "plugin_root_id", "plugin_vm_id",
    }
)  # fmt: skip


def check_property_values(table: dict[str, Any], prefix: str = "") -> None:
    """Refuse what a property cannot be: lists and other non-scalar values."""
    for key, value in table.items():
        if isinstance(value, dict):
            check_property_values(value, f"{prefix}{key}.")
        elif not isinstance(value, str | int | float | bool):
            kind = "a list" if isinstance(value, list) else type(value).__name__
            raise ValueError(
                f"{prefix + key!r} is {kind}; a property is a string, number, boolean or table"
            )


class Node(Model):
    """``[node]``: who this gateway is, as Envoy's bootstrap ``node`` says; Proxy-Wasm
    filters read it as the ``node.*`` properties."""

    id: str = Field(
        default_factory=socket.gethostname,
        description="The node's id (property node.id); default: the host name.",
    )
    cluster: str = Field("wasmgate", description="The node's cluster (property node.cluster).")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Node metadata (property node.metadata.KEY...): strings, numbers, "
        "booleans, nested tables.",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_property_values(value)
        return value


class FilterDef(Model):
    """A named filter instance: ``[filters.NAME]``."""

    plugin: str | None = Field(None, description="Plugin name; defaults to the table's NAME.")
    wasm: str | None = Field(
        None,
        description="Path of a Proxy-Wasm module (relative to this file) instead of a plugin.",
    )
    config: dict[str, Any] | str = Field(
        default_factory=dict,
        description="The plugin's own config: a table; for a wasm filter also a string, "
        "handed over verbatim (a table is handed over as JSON).",
    )
    fail: FailMode = Field(
        "closed", description="If it raises: 'closed' answers 500, 'open' skips the filter."
    )
    root_id: str = Field("", description="Wasm: the root context id the module registers.")
    bodies: list[Literal["request", "response"]] | None = Field(
        None,
        description="Wasm: an opt-out. Unset, the module's body callbacks get every body "
        "chunk by chunk as it streams (as in Envoy); a list keeps only the bodies it "
        "names ([] none: bodies then stream past the filter, untouched).",
    )
    vm_config: str | dict[str, Any] = Field(
        "",
        description="Wasm: the VM configuration (proxy_on_vm_start): a string handed over "
        "verbatim, or a table handed over as JSON.",
        json_schema_extra={"writeOnly": True},  # may hold secrets; no schema says otherwise
    )
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="Wasm: values the filter reads with proxy_get_property, by key path "
        "(strings, numbers, booleans, nested tables).",
    )
    vm_id: str = Field(
        "",
        description="Wasm: the VM this filter runs in; default its own name. Filters and "
        "services naming the same module and vm_id share one instance (a root context "
        "each), and shared data and queues are per vm_id.",
    )
    manifest: str | None = Field(
        None,
        description="Wasm: manifest with the config's JSON Schema; default manifest.json "
        "beside the module or one folder up.",
    )
    limits: WasmLimits = Field(
        default_factory=lambda: WasmLimits(), description="Wasm: sandbox limits."
    )
    shared_data: Literal["local", "redis"] = Field(
        "local",
        description='Wasm: where the vm_id\'s shared data lives: "local" (this process) or '
        '"redis" (the [store] Redis, for every process and replica; see docs/wasm.md).',
    )

    @field_validator("config", "vm_config", mode="before")
    @classmethod
    def _table_or_string(cls, value: Any) -> Any:
        if not isinstance(value, dict | str):
            raise ValueError(
                "must be a table (handed over as JSON) or a string (handed over verbatim)"
            )
        return value

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in WASM_ATTRIBUTE_ROOTS or key.startswith("plugin_"):
                raise ValueError(f"{key!r} shadows the built-in attribute of that name")
        check_property_values(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> FilterDef:
        if self.wasm is not None and self.plugin is not None:
            raise ValueError("set either 'plugin' or 'wasm', not both")
        return self


class ServiceDef(Model):
    """A root-only Proxy-Wasm plugin with no route: ``[services.NAME]`` (ticks, queues,
    HTTP calls; see docs/wasm.md)."""

    wasm: str = Field(description="Path of the Proxy-Wasm module (relative to this file).")
    config: dict[str, Any] = Field(
        default_factory=dict, description="JSON given to proxy_on_configure."
    )
    root_id: str = Field("", description="The root context id the module registers.")
    vm_id: str = Field(
        "", description="The VM it runs in (as for [filters.NAME]); default its own name."
    )
    vm_config: str = Field("", description="The VM configuration (proxy_on_vm_start).")
    manifest: str | None = Field(None, description="As for [filters.NAME].")
    limits: WasmLimits = Field(default_factory=lambda: WasmLimits(), description="Sandbox limits.")
    shared_data: Literal["local", "redis"] = Field(
        "local", description="As for [filters.NAME]: local, or in the [store] Redis."
    )


class InlineFilter(Model):
    """A filter defined inside a route's list: ``{ plugin = "...", config = {...} }``."""

    plugin: str = Field(description="Plugin name.")
    name: str | None = Field(None, description="Instance name (logs); default ROUTE.PLUGIN.")
    config: dict[str, Any] = Field(default_factory=dict, description="The plugin's own config.")
    fail: FailMode = Field("closed", description="As for [filters.NAME].")


# A route's filter: the name of a [filters.NAME] instance (or of a plugin, used with
# its default config), or an inline table.
FilterRef = str | InlineFilter


class Route(Model):
    name: str = Field(description="Unique route name (logs, metrics).")
    hosts: list[str] = Field(
        default_factory=list, description="Exact or '*.example.com' hosts; empty = any host."
    )
    paths: list[PathRule] = Field(
        default_factory=lambda: [PathRule(path="/", match="prefix")],
        description="Path rules; '/x' = prefix.",
    )
    methods: list[str] = Field(default_factory=list, description="Allowed methods; empty = any.")
    headers: list[HeaderMatch] = Field(default_factory=list, description="All must match.")
    query: list[QueryMatch] = Field(
        default_factory=list, description="Query parameter conditions; all must match."
    )
    host_wildcard: Literal["label", "suffix"] = Field(
        "label",
        description="What '*.example.com' covers: one label (Ingress) or any number of "
        "labels (the Gateway API).",
    )
    upstream: str = Field(description="Name of the upstream to proxy to.")
    filters: list[FilterRef] = Field(
        default_factory=list, description="Filters after the global ones, in order."
    )
    disable_filters: list[str] = Field(
        default_factory=list, description="Global filters this route turns off."
    )
    timeout: float | None = Field(
        None, gt=0, description="Bound on the whole exchange up to the response head."
    )
    max_body_bytes: int | None = Field(
        None,
        ge=0,
        description="Request body bound for this route; default: server.limits.max_body_bytes; "
        "0 = no bound.",
    )

    @field_validator("paths", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for host in value:
            low = host.lower().rstrip(".")
            if not HOST_RE.match(low):
                raise ValueError(
                    f"invalid host {host!r}: use 'example.com' or '*.example.com' (no port)"
                )
            out.append(low)
        return out

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]


class DefaultRoute(Model):
    upstream: str = Field(description="Upstream for requests no route matches.")
    filters: list[FilterRef] = Field(default_factory=list, description="As for routes.")
    disable_filters: list[str] = Field(default_factory=list, description="As for routes.")
    timeout: float | None = Field(None, gt=0, description="As for routes.")
    max_body_bytes: int | None = Field(None, ge=0, description="As for routes.")


class Certificate(Model):
    """``[[certificates]]``: a certificate and key for HTTPS, chosen by SNI host name."""

    hosts: list[str] = Field(
        default_factory=list,
        description="Host names it serves, exact or '*.example.com'; empty: the default one.",
    )
    cert: str | None = Field(
        None, description="PEM certificate chain file (relative to this file)."
    )
    key: str | None = Field(None, description="PEM private key file (relative to this file).")
    cert_pem: str | None = Field(
        None, description="The chain itself, inline (what an Ingress's TLS Secret gives)."
    )
    key_pem: Secret | None = Field(None, description="The key itself, inline.")
    secret: str | None = Field(None, description="Kubernetes Secret it came from (namespace/name).")
    client_auth: ClientAuth | None = Field(
        None, description="Client certificates for these hosts; default server.tls.client_auth."
    )
    client_ca: str | None = Field(
        None, description="CA bundle for these hosts' client certificates; default server.tls's."
    )

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for host in value:
            low = host.lower().rstrip(".")
            if not HOST_RE.match(low):
                raise ValueError(f"invalid host {host!r}: use 'example.com' or '*.example.com'")
            out.append(low)
        return out

    @model_validator(mode="after")
    def _one_source(self) -> Certificate:
        files = self.cert is not None or self.key is not None
        inline = self.cert_pem is not None or self.key_pem is not None
        if files == inline:
            raise ValueError("give cert and key (files) or cert_pem and key_pem (inline)")
        if files and (self.cert is None or self.key is None):
            raise ValueError("give both cert and key")
        if inline and (self.cert_pem is None or self.key_pem is None):
            raise ValueError("give both cert_pem and key_pem")
        return self


class TlsFiles(Model):
    cert: str = Field(description="PEM certificate chain file (relative to gateway.toml).")
    key: str = Field(description="PEM private key file (relative to gateway.toml).")


class Kubernetes(Model):
    """``[kubernetes]``: Ingress manifests read as part of this configuration."""

    manifests: list[str] = Field(
        min_length=1,
        description="YAML/JSON manifest files or folders (relative to this file) with "
        "Ingress, IngressClass, Service, Endpoints, EndpointSlice and TLS Secret objects, "
        "and Gateway API GatewayClass, Gateway, HTTPRoute and ReferenceGrant objects.",
    )
    ingress_class: str = Field(
        "wasmgate",
        min_length=1,
        description="The IngressClass this gateway serves; other Ingresses are ignored.",
    )
    gateway_controller: str = Field(
        "wasmgate.dev/gateway-controller",
        min_length=1,
        description="Gateway API: the GatewayClass controllerName whose Gateways (and their "
        "HTTPRoutes) this gateway serves.",
    )
    services: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Endpoints per service, overriding Endpoints objects: "
        '"namespace/name" or "namespace/name:port" = ["host:port", ...].',
    )
    tls_secrets: dict[str, TlsFiles] = Field(
        default_factory=dict,
        description='Certificate files per TLS secret: "namespace/name" = { cert, key }.',
    )

    @field_validator("services")
    @classmethod
    def _services(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, addresses in value.items():
            if "/" not in key:
                raise ValueError(f"{key!r}: write the service as 'namespace/name'")
            for address in addresses:
                parse_address(address)
        return value


class Admin(Model):
    """``[admin]``: the admin API's own listener (see docs/admin.md)."""

    listen: str = Field("127.0.0.1:9901", description="host:port; keep it off public networks.")
    token: Secret | None = Field(
        None,
        min_length=16,
        description="Bearer token for state-changing calls (POST /reload, installs) and, "
        "when listen is not a loopback address, for reads; without one those calls are "
        "refused. Prefer token_file.",
    )
    token_file: str | None = Field(
        None, description="File holding the token (relative to this file)."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Names besides the listener's own that the Host header of an admin "
        "request may carry ('*.example.com': any name under it); others get 421. IP "
        "addresses always pass, and 'localhost' when listening on loopback. Read at start.",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_address(value, allow_zero=True)
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        names = [h.strip().lower().rstrip(".") for h in value]
        for name in names:
            if not HOST_RE.match(name):
                raise ValueError(f"invalid host name {name!r} (a name, or '*.' and a name)")
        return names


class Tracing(Model):
    """``[tracing]``: W3C trace sampling and, optionally, OpenTelemetry export."""

    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP JSON traces URL of a collector, e.g. "
        "'http://127.0.0.1:4318/v1/traces'; unset: no spans are exported.",
    )
    service_name: str = Field(
        "wasmgate", min_length=1, description="service.name of the exported spans."
    )
    sample_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of new traces marked sampled (and exported); a client's "
        "traceparent keeps its own sampled flag.",
    )
    batch_seconds: float = Field(1.0, gt=0, description="Seconds between exports.")
    max_queue: int = Field(
        10000, ge=1, description="Spans held awaiting export; more are dropped and counted."
    )

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class Redact(Model):
    """``[redact]``: more names whose values the access log and the spans never show.

    They add to the built-in names (``core.redact.QUERY`` / ``HEADERS``) and to those
    the configured auth filters read credentials from; matched case-insensitively.
    """

    query: list[str] = Field(
        default_factory=list, description="Query parameters whose values are replaced."
    )
    headers: list[str] = Field(
        default_factory=list, description="Logged request headers whose values are replaced."
    )

    @field_validator("query", "headers")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or name != name.strip() or any(c in name for c in "&;=?#"):
                raise ValueError(f"invalid name {name!r}")
        return value


class Executor(Model):
    """``[executors.NAME]``: the bounds of one purpose's worker-thread pool.

    Unset fields keep the purpose's built-in default (see docs/configuration.md).
    """

    workers: int | None = Field(None, ge=1, le=256, description="Threads running calls at once.")
    queue: int | None = Field(
        None, ge=0, le=100_000, description="Calls waiting for a thread; more are refused."
    )
    timeout: float | None = Field(
        None, gt=0, le=3600, description="Seconds a caller waits for its call, queueing included."
    )


class MarketSettings(Model):
    """``[market]``: where installed plugins come from (``wasmgate plugin install``).

    Paths are relative to this file. The gateway itself reads only ``lockfile`` and
    ``plugin_dir``, and never the network; ``registry``, ``trust`` and
    ``max_package_size`` are for the ``wasmgate plugin`` commands.
    """

    registry: str | None = Field(
        None, description="Registry to install from: an http(s) URL or a folder."
    )
    trust: str | None = Field(
        None,
        description="Trust store: a folder of publisher *.pub keys (default ~/.wasmgate/trust).",
    )
    plugin_dir: str = Field(
        "wasmgate_plugins", description="Where installed packages are unpacked."
    )
    lockfile: str = Field("gateway.lock", description="Pins name, version, digest and signer.")
    max_package_size: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description="Largest package archive `wasmgate plugin` downloads: bytes, or a "
        'string with KiB, MiB or GiB ("64MiB", the default).',
    )

    @field_validator("max_package_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        # The same forms market/installer.py reads for the `wasmgate plugin` commands.
        if not isinstance(value, str):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*(|B|KiB|MiB|GiB)\s*", value)
        if m is None:
            raise ValueError(f"{value!r} is not a size (bytes, or a number with KiB, MiB, GiB)")
        units = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
        return int(m.group(1)) * units[m.group(2)]


class WasmSettings(Model):
    """``[wasm]``: settings shared by every Proxy-Wasm filter (see docs/wasm.md)."""

    clusters: dict[str, str] = Field(
        default_factory=dict,
        description="Cluster names filters pass to proxy_http_call, mapped to upstream "
        'names: "outbound|80||auth.default.svc.cluster.local" = "auth". Names not '
        "listed resolve by the rules in docs/wasm.md.",
    )


class GatewayConfig(Model):
    # Set by parse_config: load-time warnings (e.g. unsupported Ingress annotations)
    # and the files read besides the config itself (manifests).
    _warnings: list[str] = PrivateAttr(default_factory=list)
    _sources: list[Path] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """What loading noticed but did not refuse, one line each."""
        return self._warnings

    @property
    def sources(self) -> list[Path]:
        """Files besides the config file that this configuration was read from."""
        return self._sources

    server: Server = Field(default_factory=lambda: Server(), description="Listeners and limits.")
    upstreams: list[Upstream] = Field(default_factory=list, description="Named upstream pools.")
    routes: list[Route] = Field(default_factory=list, description="Routes.")
    default: DefaultRoute | None = Field(
        None, description="Where unmatched requests go (Ingress defaultBackend); else 404."
    )
    node: Node = Field(
        default_factory=lambda: Node(),
        description="This gateway as a node (Proxy-Wasm node.* properties).",
    )
    filters: dict[str, FilterDef] = Field(
        default_factory=dict, description="Named filter instances, [filters.NAME]."
    )
    global_filters: list[str] = Field(
        default_factory=list, description="Filters every route runs first, in order."
    )
    services: dict[str, ServiceDef] = Field(
        default_factory=dict,
        description="Root-only Proxy-Wasm plugins started with the configuration, [services.NAME].",
    )
    wasm: WasmSettings = Field(
        default_factory=lambda: WasmSettings(),
        description="Proxy-Wasm settings: cluster aliases for proxy_http_call.",
    )
    certificates: list[Certificate] = Field(
        default_factory=list, description="Certificates for HTTPS listeners, by SNI host."
    )
    kubernetes: Kubernetes | None = Field(
        None, description="Ingress manifests translated into routes at every load."
    )
    admin: Admin | None = Field(
        None, description="The admin API (health, config, routes, metrics, reload); off without it."
    )
    market: MarketSettings = Field(
        default_factory=lambda: MarketSettings(),
        description="Installed plugins: lockfile, plugin folder, registry, trust store.",
    )
    tracing: Tracing = Field(
        default_factory=lambda: Tracing(),
        description="Trace sampling and OpenTelemetry (OTLP) span export; off by default.",
    )
    redact: Redact = Field(
        default_factory=lambda: Redact(),
        description="Extra query parameters and headers hidden in the access log and spans.",
    )
    store: StoreConfig | None = Field(
        None, description="The Redis that processes and replicas share (core/store.py)."
    )
    executors: dict[str, Executor] = Field(
        default_factory=dict,
        description="Worker-thread pools for blocking work, by purpose ('crypto', "
        "'registry', 'files', or a plugin's own).",
    )

    @field_validator("executors")
    @classmethod
    def _executor_names(cls, value: dict[str, Executor]) -> dict[str, Executor]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(f"invalid executor name {name!r}: use lowercase a-z, 0-9, . _ -")
        return value


# --------------------------------------------------------------------------- loading


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that owns the field at ``loc`` (for suggesting field names)."""
    model: Any = GatewayConfig
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        field = fields.get(part) if fields else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


# Names pydantic puts into an error's location for the branch of a union it tried.
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "InlineFilter"})


def _is_tag(part: int | str) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or "[" in part or "-" in part)


def _tags(loc: Sequence[int | str], data: Any) -> list[bool]:
    """Which parts of an error's location are union tags rather than the document's own
    keys and indexes: a key may look like a tag (``[filters.my-cors]``, ``"str" = 1``),
    so a part is a tag only where the document has no such key."""
    flags = []
    for part in loc:
        if isinstance(data, list) and isinstance(part, int):
            found = 0 <= part < len(data)
        else:
            found = isinstance(data, dict) and part in data
        tag = not found and _is_tag(part)
        if found:
            data = data[part]
        elif not tag:
            data = None
        flags.append(tag)
    return flags


def _pydantic_problems(
    exc: ValidationError, data: Any, at: tuple[int | str, ...] = ()
) -> list[str]:
    """One line per problem, ``dotted.path: message``; ``at`` is where ``data`` sits
    in the whole document (``("kubernetes",)`` for that table validated alone)."""
    # For a union (``"name" | { plugin = ... }``) pydantic reports every branch it
    # tried. Report the branch the user meant: the one that got past the type check.
    # If none did, one line says which types would do.
    groups: dict[tuple[int | str, ...], dict[str, list[Any]]] = {}
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        cut = next((i for i, tag in enumerate(_tags(loc, data)) if tag), len(loc))
        branch = str(loc[cut]) if cut < len(loc) else ""
        groups.setdefault(tuple(loc[:cut]), {}).setdefault(branch, []).append(err)
    kept: list[Any] = []
    for base, branches in groups.items():
        if len(branches) == 1:
            kept.extend(next(iter(branches.values())))
            continue
        deep = [
            errs
            for errs in branches.values()
            if not all(e["type"].endswith(("_type", "_parsing", "literal_error")) for e in errs)
        ]
        if deep:
            kept.extend(deep[0])
        else:
            names = {"InlineFilter": "a table", "str": "a string", "int": "a whole number"}
            wanted = " or ".join(
                names.get(b, b.removeprefix("literal[").removesuffix("]")) for b in branches
            )
            kept.append({"loc": base, "type": "union", "msg": f"expected {wanted}"})
    problems = []
    for err in kept:
        loc = err["loc"]
        where: list[int | str] = [
            *at,
            *(p for p, tag in zip(loc, _tags(loc, data), strict=True) if not tag),
        ]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            owner = _model_at(where[:-1])
            field = str(where[-1])
            hint = _misplaced(where) or (suggest(field, owner.model_fields) if owner else "")
            msg = f"unknown field {field!r}{hint}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(f"{dotted(where)}: {msg}")
    return problems


def _misplaced(where: Sequence[int | str]) -> str:
    """The hint for a top-level key that TOML read into the table above it.

    In TOML every key after a ``[table]`` or ``[[table]]`` header belongs to that
    table, so ``global_filters = [...]`` written below an ``[[upstreams]]`` entry is
    ``upstreams[0].global_filters``. Only tables a header can open are considered:
    the owner's path is names, with at most an index right after the first (an entry
    of a top-level array of tables). Deeper entries are inline tables in practice.
    """
    field, owner = where[-1], where[:-1]
    if not owner or field not in GatewayConfig.model_fields:
        return ""
    if any(isinstance(p, int) for i, p in enumerate(owner) if i != 1):
        return ""
    names = ".".join(str(p) for p in owner if isinstance(p, str))
    header = f"[[{names}]]" if isinstance(owner[-1], int) else f"[{names}]"
    return (
        f"; {field!r} is a top-level key, but TOML put it in the {header} table above it "
        "(a key belongs to the last table header before it): move it above the first "
        "table header"
    )


def _cross_problems(cfg: GatewayConfig) -> list[str]:
    problems: list[str] = []
    if not cfg.server.listen and not cfg.server.tls_listen:
        problems.append("server.listen: empty, and no tls_listen either: nothing to serve")
    listeners = {*cfg.server.listen, *cfg.server.tls_listen}
    for i, item in enumerate(cfg.server.http2.off):
        if item not in listeners:
            problems.append(f"server.http2.off[{i}]: {item!r} is not in listen or tls_listen")
    names: dict[str, int] = {}
    for i, up in enumerate(cfg.upstreams):
        if not NAME_RE.match(up.name):
            problems.append(f"upstreams[{i}].name: {up.name!r} is not a valid name (a-z 0-9 . _ -)")
        if up.name in names:
            problems.append(
                f"upstreams[{i}].name: duplicate upstream {up.name!r} "
                f"(first at upstreams[{names[up.name]}])"
            )
        names.setdefault(up.name, i)
    routes: dict[str, int] = {}
    for i, route in enumerate(cfg.routes):
        if route.name in routes:
            problems.append(
                f"routes[{i}].name: duplicate route {route.name!r} "
                f"(first at routes[{routes[route.name]}])"
            )
        routes.setdefault(route.name, i)
        if route.upstream not in names:
            problems.append(
                f"routes[{i}].upstream: unknown upstream {route.upstream!r}"
                f"{suggest(route.upstream, names)}"
            )
    for name in cfg.services:
        if name in cfg.filters:
            problems.append(f"services.{name}: a [filters.{name}] has that name too")
    for cluster, target in cfg.wasm.clusters.items():
        if target not in names:
            problems.append(
                f"wasm.clusters.{json.dumps(cluster)}: unknown upstream {target!r}"
                f"{suggest(target, names)}"
            )
    if cfg.default and cfg.default.upstream not in names:
        problems.append(
            f"default.upstream: unknown upstream {cfg.default.upstream!r}"
            f"{suggest(cfg.default.upstream, names)}"
        )
    return problems


def parse_config(data: dict[str, Any], source: str = "<config>") -> GatewayConfig:
    """Validate an already-parsed TOML document; raises :class:`ConfigError`.

    With a ``[kubernetes]`` table, the Ingresses of its manifests are translated and
    added first (:mod:`core.ingress.source`), then everything is validated together.
    """
    warnings: list[str] = []
    files: list[Path] = []
    origins: dict[str, str] = {}
    if isinstance(data.get("kubernetes"), dict):
        try:
            table = Kubernetes.model_validate(data["kubernetes"])
        except ValidationError as exc:
            problems = _pydantic_problems(exc, data["kubernetes"], ("kubernetes",))
            raise ConfigError(source, problems) from None
        from core.ingress.source import expand  # reads YAML: only when used

        expanded = expand(data, table.model_dump(), source)
        data, warnings, files = expanded.data, expanded.warnings, expanded.files
        origins = expanded.origins
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _with_origins(_pydantic_problems(exc, data), origins)) from None
    problems = _cross_problems(cfg)
    if problems:
        raise ConfigError(source, _with_origins(problems, origins))
    cfg._warnings.extend(warnings)
    cfg._sources.extend(files)
    return cfg


def _with_origins(problems: list[str], origins: dict[str, str]) -> list[str]:
    if not origins:
        return problems
    from core.ingress.source import annotate

    return annotate(problems, origins)


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate ``path``; raises :class:`ConfigError` naming the file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"not UTF-8 text: {exc}"]) from None
    return loads_config(text, source)


def loads_config(text: str, source: str = "<string>") -> GatewayConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"TOML syntax error: {exc}"]) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(source, ["TOML syntax error: arrays or tables nested too deep"]) from None
    return parse_config(data, source)
