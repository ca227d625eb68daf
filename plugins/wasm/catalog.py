"""The example Proxy-Wasm filters: what each is, how it builds, and its config schema.

:mod:`build` builds them and writes each ``manifest.json`` from this table: name,
version, abi, root_id, module path, description and the JSON Schema of the filter's
configuration, which the gateway enforces when it loads the plugin.

Standard library only, like build.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

_HEADER_NAME = "^[a-z0-9!#$%&'*+.^_`|~-]*$"  # lowercase HTTP token, or empty (off)


@dataclass(frozen=True)
class Filter:
    name: str
    version: str
    abi: str  # Proxy-Wasm ABI version, as in the module's proxy_abi_version_* export
    root_id: str
    description: str
    toolchain: str  # "assemblyscript", "c", "go" or "rust": the builder in build.py
    sources: tuple[str, ...]  # globs relative to the filter directory
    config_schema: dict[str, Any]

    @property
    def root(self) -> Path:
        return HERE / self.name

    @property
    def output(self) -> Path:
        return self.root / "build" / "filter.wasm"

    def inputs(self) -> list[Path]:
        found = {p for pattern in self.sources for p in self.root.glob(pattern) if p.is_file()}
        return [*sorted(found), Path(__file__).resolve(), HERE / "build.py"]

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kind": "wasm",
            "abi": self.abi,
            "root_id": self.root_id,
            "module": "build/filter.wasm",
            "description": self.description,
            "config_schema": self.config_schema,
        }


def _string(default: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "default": default, "description": description, **extra}


def _integer(default: int, description: str, minimum: int, maximum: int) -> dict[str, Any]:
    return {
        "type": "integer",
        "default": default,
        "minimum": minimum,
        "maximum": maximum,
        "description": description,
    }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


AS_HEADERS = Filter(
    name="as-headers",
    version="0.1.0",
    abi="0.2.0",
    root_id="as-headers",
    description=(
        "AssemblyScript example: adds a request and a response header, denies paths by "
        "prefix, optionally gates each request on an http call, counts timer ticks."
    ),
    toolchain="assemblyscript",
    sources=("assembly/**/*.ts", "package.json", "package-lock.json"),
    config_schema=_object(
        {
            "request_header": _string(
                "x-wasm",
                "Header added to requests going upstream; empty: none.",
                pattern=_HEADER_NAME,
                maxLength=128,
            ),
            "request_value": _string("as", "Value of request_header.", maxLength=1024),
            "response_header": _string(
                "x-wasm-filter",
                "Header added to responses; empty: none.",
                pattern=_HEADER_NAME,
                maxLength=128,
            ),
            "response_value": _string("as-headers", "Value of response_header.", maxLength=1024),
            "deny_path_prefix": _string(
                "",
                "Requests whose path starts with this get a local 403; empty: off.",
                maxLength=1024,
            ),
            "call_upstream": _string(
                "",
                "Upstream asked before each request (GET call_path); 2xx continues, "
                "anything else denies with 403, no answer with 503; empty: off.",
                maxLength=256,
            ),
            "call_path": _string("/", "Path of the check request.", pattern="^/", maxLength=1024),
            "call_authority": _string(
                "", "':authority' of the check request; empty: call_upstream.", maxLength=256
            ),
            "call_timeout_ms": _integer(1000, "Timeout of the check request.", 1, 60000),
            "tick_ms": _integer(
                0, "Timer period; each tick increments as_headers_ticks; 0: off.", 0, 86400000
            ),
        }
    ),
)

C_FILTER = Filter(
    name="c-filter",
    version="0.1.0",
    abi="0.2.1",
    root_id="",
    description=(
        "C example: denies requests carrying a header, counts requests in shared data, "
        "adds a response header, rewrites the response body, logs on a timer."
    ),
    toolchain="c",
    sources=("src/*.c", "src/*.h"),
    config_schema=_object(
        {
            "deny_header": _string(
                "x-block",
                "Requests carrying this header get a local 403; empty: off.",
                pattern=_HEADER_NAME,
                maxLength=127,
            ),
            "count_header": _string(
                "x-c-filter-count",
                "Request header carrying the shared request count upstream; empty: none.",
                pattern=_HEADER_NAME,
                maxLength=127,
            ),
            "response_header": _string(
                "x-c-filter",
                "Header added to responses; empty: none.",
                pattern=_HEADER_NAME,
                maxLength=127,
            ),
            "response_value": _string("c-filter", "Value of response_header.", maxLength=127),
            "body_from": _string(
                "",
                "Text replaced in response bodies (buffers the body); empty: off.",
                maxLength=255,
            ),
            "body_to": _string("", "Replacement for body_from.", maxLength=255),
            "tick_ms": _integer(
                0, "Timer period; each tick logs the request count; 0: off.", 0, 86400000
            ),
        }
    ),
)


# ---------------------------------------------------------------- Go (proxy-wasm-go-sdk)

GO_SOURCES = ("*.go", "go.mod", "go.sum")
_GO_DESCRIPTION = "Go example (proxy-wasm-go-sdk, Go >= 1.24, wasip1): "


def _headers_map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "default": {},
        "description": description,
        "propertyNames": {"pattern": "^[a-z0-9!#$%&'*+.^_`|~-]+$", "maxLength": 128},
        "additionalProperties": {"type": "string", "maxLength": 1024},
    }


def _names(description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "default": [],
        "description": description,
        "items": {"type": "string", "pattern": "^[a-z0-9!#$%&'*+.^_`|~-]+$", "maxLength": 128},
        "maxItems": 64,
    }


GO_HEADERS = Filter(
    name="go-headers",
    version="0.1.0",
    abi="0.2.0",
    root_id="",
    description=_GO_DESCRIPTION + "adds and removes request and response headers; logs "
    "each request.",
    toolchain="go",
    sources=GO_SOURCES,
    config_schema=_object(
        {
            "request_add": _headers_map("Request headers set (replaced) before the upstream."),
            "request_remove": _names("Request headers removed before the upstream."),
            "response_add": _headers_map("Response headers set (replaced) for the client."),
            "response_remove": _names("Response headers removed before the client."),
        }
    ),
)

GO_BODY = Filter(
    name="go-body",
    version="0.1.0",
    abi="0.2.0",
    root_id="",
    description=_GO_DESCRIPTION + "rewrites request and response bodies chunk by chunk "
    "(a word replaced in each chunk, a trailer appended to the last).",
    toolchain="go",
    sources=GO_SOURCES,
    config_schema=_object(
        {
            "from": _string("", "Text replaced in each body chunk; empty: off.", maxLength=256),
            "to": _string("", "Replacement for `from`.", maxLength=256),
            "request_trailer": _string(
                "", "Appended to the request body's last chunk; empty: none.", maxLength=1024
            ),
            "response_trailer": _string(
                "", "Appended to the response body's last chunk; empty: none.", maxLength=1024
            ),
        }
    ),
)

GO_AUTH = Filter(
    name="go-auth",
    version="0.1.0",
    abi="0.2.0",
    root_id="",
    description=_GO_DESCRIPTION + "pauses each request for a GET to an auth cluster "
    "(DispatchHttpCall); 200 resumes it, other statuses answer 403, no answer 503.",
    toolchain="go",
    sources=GO_SOURCES,
    config_schema={
        **_object(
            {
                "cluster": _string(
                    "", "Cluster (a gateway upstream's name) the check goes to.", minLength=1
                ),
                "path": _string("/", "Path of the check request.", pattern="^/", maxLength=1024),
                "authority": _string(
                    "", "':authority' of the check request; empty: the cluster.", maxLength=256
                ),
                "timeout_ms": _integer(1000, "Timeout of the check request.", 1, 60000),
                "forward_headers": _names("Client request headers copied onto the check.")
                | {"default": ["authorization"]},
            }
        ),
        "required": ["cluster"],
    },
)

GO_TICK = Filter(
    name="go-tick",
    version="0.1.0",
    abi="0.2.0",
    root_id="",
    description=_GO_DESCRIPTION + "counts timer ticks in shared data (CAS) and in the "
    "counter go_tick_ticks; responses carry the count in a header.",
    toolchain="go",
    sources=GO_SOURCES,
    config_schema=_object(
        {
            "tick_ms": _integer(1000, "Timer period.", 1, 86400000),
            "header": _string(
                "x-go-ticks",
                "Response header carrying the tick count; empty: none.",
                pattern=_HEADER_NAME,
                maxLength=128,
            ),
        }
    ),
)

GO_METRICS = Filter(
    name="go-metrics",
    version="0.1.0",
    abi="0.2.0",
    root_id="",
    description=_GO_DESCRIPTION + "defines a counter, a gauge and a histogram and updates "
    "them on every request.",
    toolchain="go",
    sources=GO_SOURCES,
    config_schema=_object(
        {
            "prefix": _string(
                "go_metrics",
                "Start of the metric names: PREFIX_requests (counter), PREFIX_in_flight "
                "(gauge), PREFIX_path_bytes (histogram).",
                pattern="^[a-zA-Z_][a-zA-Z0-9_]*$",
                maxLength=64,
            ),
        }
    ),
)

GO_SHARED = Filter(
    name="go-shared",
    version="0.1.0",
    abi="0.2.0",
    root_id="",
    description=_GO_DESCRIPTION + "numbers requests with a shared-data counter updated "
    "with CAS (retried on CasMismatch).",
    toolchain="go",
    sources=GO_SOURCES,
    config_schema=_object(
        {
            "key": _string(
                "go-shared.requests", "Shared-data key of the counter.", minLength=1, maxLength=256
            ),
            "header": _string(
                "x-go-shared-count",
                "Request and response header carrying the request's number.",
                pattern="^[a-z0-9!#$%&'*+.^_`|~-]+$",
                maxLength=128,
            ),
            "max_retries": _integer(16, "Retries after a CAS mismatch.", 0, 1000),
        }
    ),
)

HIGRESS_DEMO = Filter(
    name="higress-demo",
    version="0.1.0",
    abi="0.2.100",
    root_id="",
    description="Higress wasm-go example (github.com/higress-group/wasm-go v1.0.0): blocks "
    "path prefixes, tags each request with the answer of a callout to a cluster.",
    toolchain="go",
    sources=GO_SOURCES,
    config_schema={
        **_object(
            {
                "service": {
                    "type": "object",
                    "description": "Where the callout goes.",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "type": _string(
                            "target",
                            "target: `name` is the cluster; fqdn: outbound|PORT||NAME; "
                            "static: outbound|PORT||NAME.static (Higress's names).",
                            enum=["target", "fqdn", "static"],
                        ),
                        "name": _string("", "Cluster or service name.", minLength=1),
                        "port": _integer(80, "Service port (fqdn, static).", 0, 65535),
                        "host": _string("", "':authority' of the callout; empty: name."),
                    },
                },
                "path": _string("/", "Path of the callout.", pattern="^/", maxLength=1024),
                "header": _string(
                    "x-higress-demo",
                    "Request header set to the first line of the callout's answer.",
                    pattern="^[a-z0-9!#$%&'*+.^_`|~-]+$",
                    maxLength=128,
                ),
                "timeout_ms": _integer(1000, "Timeout of the callout.", 1, 60000),
                "block_paths": {
                    "type": "array",
                    "default": [],
                    "description": "Path prefixes answered with 403 without a callout.",
                    "items": {"type": "string", "pattern": "^/", "maxLength": 1024},
                },
            }
        ),
        "required": ["service"],
    },
)

# ---------------------------------------------------------------- Rust (proxy-wasm crate)

RUST_HEADERS = Filter(
    name="rust-headers",
    version="0.1.0",
    abi="0.2.1",
    root_id="",
    description="Rust example (proxy-wasm crate 0.2.5, wasm32-wasip1): sets and removes "
    "request and response headers, counts requests in counters, and optionally pauses each "
    "request for a GET to an auth cluster (200 resumes, other statuses 403, no answer 503).",
    toolchain="rust",
    sources=("src/*.rs", "Cargo.toml", "Cargo.lock"),
    config_schema=_object(
        {
            "request_add": _headers_map("Request headers set (replaced) before the upstream."),
            "request_remove": _names("Request headers removed before the upstream."),
            "response_add": _headers_map("Response headers set (replaced) for the client."),
            "response_remove": _names("Response headers removed before the client."),
            "auth_cluster": _string(
                "",
                "Cluster (a gateway upstream's name) asked before each request; empty: off.",
                maxLength=256,
            ),
            "auth_path": _string("/", "Path of the check request.", pattern="^/", maxLength=1024),
            "auth_authority": _string(
                "", "':authority' of the check request; empty: auth_cluster.", maxLength=256
            ),
            "auth_timeout_ms": _integer(1000, "Timeout of the check request.", 1, 60000),
        }
    ),
)

RUST_GRPC = Filter(
    name="rust-grpc",
    version="0.1.0",
    abi="0.2.1",
    root_id="",
    description="Rust example (proxy-wasm crate 0.2.5, wasm32-wasip1): gRPC from a filter. "
    "A unary dispatch_grpc_call whose reply becomes a request header (a gRPC error: 403), "
    "a gRPC stream (open, send, half-close, cancel) whose replies, status and metadata "
    "answer the request, a stream the root context keeps open, request and response trailers "
    "read, extended and held for a call (on_http_request_trailers, on_http_response_trailers) "
    "with the body callbacks before them; each driven by request headers (see its README).",
    toolchain="rust",
    sources=("src/*.rs", "Cargo.toml", "Cargo.lock"),
    config_schema=_object(
        {
            "cluster": _string(
                "", "Cluster (a gateway upstream's name) of the gRPC server.", maxLength=256
            ),
            "service": _string("pkg.Echo", "gRPC service called (package.Service).", maxLength=256),
            "feed": _string(
                "",
                "Method the root context streams from, opened on its first tick; empty: off.",
                maxLength=256,
            ),
        }
    ),
)

FILTERS = {
    f.name: f
    for f in (
        AS_HEADERS,
        C_FILTER,
        GO_HEADERS,
        GO_BODY,
        GO_AUTH,
        GO_TICK,
        GO_METRICS,
        GO_SHARED,
        HIGRESS_DEMO,
        RUST_HEADERS,
        RUST_GRPC,
    )
}
