// as-headers: wasmgate's example Proxy-Wasm filter in AssemblyScript, built on
// @solo-io/proxy-runtime 0.1.8 (Proxy-Wasm ABI 0.2.0). See README.md.
//
// Request phase:  deny by path prefix (local 403), add a request header, and
//                 optionally pause for an http call to an upstream whose answer
//                 decides between continue (2xx) and deny (403; 503 on failure).
// Response phase: add a response header.
// Root context:   parse the JSON configuration, set a tick period, count ticks
//                 in the counter metric `as_headers_ticks`.

// The callbacks the host calls (proxy_on_*, malloc, proxy_abi_version_0_2_0).
export * from "@solo-io/proxy-runtime/proxy";

import {
  RootContext, Context, registerRootContext, log, LogLevelValues,
  FilterHeadersStatusValues, WasmResultValues, GrpcStatusValues,
  stream_context, send_local_response, continue_request, HeaderPair, Headers,
} from "@solo-io/proxy-runtime";
import {
  get_buffer_bytes, set_tick_period_milliseconds, define_metric, increment_metric,
  BufferTypeValues, MetricTypeValues,
} from "@solo-io/proxy-runtime/runtime";
import { Config, parseConfig } from "./config";

const ROOT_ID = "as-headers";

class AsHeadersRoot extends RootContext {
  config: Config = new Config();
  tickMetric: u32 = 0;
  hasTickMetric: bool = false;

  createContext(context_id: u32): Context {
    return new AsHeaders(context_id, this);
  }

  // Overridden without calling super: the runtime's own onConfigure reads the
  // configuration as an unchecked string and passes a bad size pointer.
  onConfigure(configuration_size: u32): bool {
    let text = "";
    if (configuration_size > 0) {
      const bytes = get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size);
      text = String.UTF8.decode(bytes);
    }
    const parsed = parseConfig(text);
    if (parsed.error != "") {
      log(LogLevelValues.error, ROOT_ID + ": invalid configuration: " + parsed.error);
      return false;
    }
    this.config = parsed.config;

    const metric = define_metric(MetricTypeValues.Counter, "as_headers_ticks");
    this.hasTickMetric = metric.result == WasmResultValues.Ok;
    this.tickMetric = metric.metric_id;

    if (this.config.tick_ms > 0) {
      set_tick_period_milliseconds(this.config.tick_ms);
    }
    log(LogLevelValues.info, ROOT_ID + ": configured (tick_ms=" + this.config.tick_ms.toString() + ")");
    return true;
  }

  onTick(): void {
    if (this.hasTickMetric) increment_metric(this.tickMetric, 1);
  }
}

function deny(status: u32, reason: string): void {
  const headers: Headers = [];
  headers.push(new HeaderPair(String.UTF8.encode("content-type"), String.UTF8.encode("text/plain")));
  send_local_response(status, ROOT_ID + ": " + reason,
    String.UTF8.encode("denied by as-headers: " + reason + "\n"), headers, GrpcStatusValues.InvalidCode);
}

// Called with the requesting stream as the effective context (the runtime
// calls proxy_set_effective_context before it). headers == 0: the call failed.
function onCallResponse(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  if (headers == 0) {
    log(LogLevelValues.warn, ROOT_ID + ": http call failed");
    deny(503, "upstream check unavailable");
    return;
  }
  const status = stream_context.headers.http_callback.get(":status");
  if (status.length == 3 && status.charAt(0) == "2") {
    continue_request();
  } else {
    log(LogLevelValues.info, ROOT_ID + ": upstream check answered " + status);
    deny(403, "upstream check returned " + status);
  }
}

class AsHeaders extends Context {
  root: AsHeadersRoot;

  constructor(context_id: u32, root: AsHeadersRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const cfg = this.root.config;
    if (cfg.deny_path_prefix != "") {
      const path = stream_context.headers.request.get(":path");
      if (path.startsWith(cfg.deny_path_prefix)) {
        deny(403, "path " + path + " is denied");
        return FilterHeadersStatusValues.StopIteration;
      }
    }
    if (cfg.request_header != "") {
      stream_context.headers.request.add(cfg.request_header, cfg.request_value);
    }
    if (cfg.call_upstream == "") {
      return FilterHeadersStatusValues.Continue;
    }
    const authority = cfg.call_authority != "" ? cfg.call_authority : cfg.call_upstream;
    const call: Headers = [];
    call.push(new HeaderPair(String.UTF8.encode(":method"), String.UTF8.encode("GET")));
    call.push(new HeaderPair(String.UTF8.encode(":path"), String.UTF8.encode(cfg.call_path)));
    call.push(new HeaderPair(String.UTF8.encode(":authority"), String.UTF8.encode(authority)));
    const result = this.root.httpCall(cfg.call_upstream, call, new ArrayBuffer(0), [],
      cfg.call_timeout_ms, this, onCallResponse);
    if (result != WasmResultValues.Ok) {
      log(LogLevelValues.error, ROOT_ID + ": http call to " + cfg.call_upstream + " failed: " + result.toString());
      deny(503, "upstream check unavailable");
    }
    // Paused until onCallResponse continues or denies the request.
    return FilterHeadersStatusValues.StopIteration;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const cfg = this.root.config;
    if (cfg.response_header != "") {
      stream_context.headers.response.add(cfg.response_header, cfg.response_value);
    }
    return FilterHeadersStatusValues.Continue;
  }
}

function newRoot(context_id: u32): RootContext {
  return new AsHeadersRoot(context_id);
}

// The runtime picks the factory by the host's `plugin_root_id` property; the
// empty name serves hosts that configure no root id.
registerRootContext(newRoot, ROOT_ID);
registerRootContext(newRoot, "");
