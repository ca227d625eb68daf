//! rust-headers: a Proxy-Wasm filter built with the Rust SDK (the `proxy-wasm` crate).
//!
//! Sets and removes request and response headers from its JSON configuration, counts
//! requests (and denials) in counter metrics, and, when `auth_cluster` is set, pauses
//! each request for a GET to that cluster: a 200 resumes it, any other status answers
//! 403, and a call that cannot be made or gets no answer answers 503.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use serde_json::Value;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The filter's configuration, parsed once in `on_configure`.
#[derive(Default)]
struct Config {
    request_add: Vec<(String, String)>,
    request_remove: Vec<String>,
    response_add: Vec<(String, String)>,
    response_remove: Vec<String>,
    auth_cluster: String,
    auth_path: String,
    auth_authority: String,
    auth_timeout_ms: u64,
    requests_metric: u32,
    denied_metric: u32,
}

fn pairs(value: Option<&Value>, key: &str) -> Result<Vec<(String, String)>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let map = value
        .as_object()
        .ok_or(format!("{key} must be an object"))?;
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.to_ascii_lowercase(), s.to_string())),
            None => Err(format!("{key}.{k} must be a string")),
        })
        .collect()
}

fn names(value: Option<&Value>, key: &str) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let list = value.as_array().ok_or(format!("{key} must be an array"))?;
    list.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_ascii_lowercase)
                .ok_or(format!("{key} holds a non-string"))
        })
        .collect()
}

fn text(value: Option<&Value>, key: &str, default: &str) -> Result<String, String> {
    match value {
        None => Ok(default.to_string()),
        Some(v) => v
            .as_str()
            .map(str::to_string)
            .ok_or(format!("{key} must be a string")),
    }
}

impl Config {
    fn parse(bytes: &[u8]) -> Result<Config, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let obj = value
            .as_object()
            .ok_or("the configuration must be a JSON object")?;
        const KNOWN: [&str; 8] = [
            "request_add",
            "request_remove",
            "response_add",
            "response_remove",
            "auth_cluster",
            "auth_path",
            "auth_authority",
            "auth_timeout_ms",
        ];
        if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("unknown key {unknown}"));
        }
        let timeout = match obj.get("auth_timeout_ms") {
            None => 1000,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=60000).contains(n))
                .ok_or("auth_timeout_ms must be an integer in 1..60000")?,
        };
        Ok(Config {
            request_add: pairs(obj.get("request_add"), "request_add")?,
            request_remove: names(obj.get("request_remove"), "request_remove")?,
            response_add: pairs(obj.get("response_add"), "response_add")?,
            response_remove: names(obj.get("response_remove"), "response_remove")?,
            auth_cluster: text(obj.get("auth_cluster"), "auth_cluster", "")?,
            auth_path: text(obj.get("auth_path"), "auth_path", "/")?,
            auth_authority: text(obj.get("auth_authority"), "auth_authority", "")?,
            auth_timeout_ms: timeout,
            ..Config::default()
        })
    }
}

#[derive(Default)]
struct Root {
    config: Rc<Config>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let bytes = if bytes.is_empty() {
            b"{}".to_vec()
        } else {
            bytes
        };
        let mut config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(why) => {
                log::error!("rust-headers: bad configuration: {why}");
                return false;
            }
        };
        let metrics = (
            hostcalls::define_metric(MetricType::Counter, "rust_headers_requests"),
            hostcalls::define_metric(MetricType::Counter, "rust_headers_denied"),
        );
        match metrics {
            (Ok(requests), Ok(denied)) => {
                config.requests_metric = requests;
                config.denied_metric = denied;
            }
            _ => {
                log::error!("rust-headers: cannot define its metrics");
                return false;
            }
        }
        self.config = Rc::new(config);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    config: Rc<Config>,
}

impl Stream {
    fn deny(&self, status: u32, body: &str) {
        let _ = hostcalls::increment_metric(self.config.denied_metric, 1);
        self.send_http_response(
            status,
            vec![("content-type", "text/plain"), ("x-rust-headers", "denied")],
            Some(body.as_bytes()),
        );
    }
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        // A call that failed (refused, reset, timed out) has no response headers at all.
        match self.get_http_call_response_header(":status").as_deref() {
            Some("200") => self.resume_http_request(),
            Some(_) => self.deny(403, "forbidden by rust-headers\n"),
            None => {
                log::warn!(
                    "rust-headers: no answer from {:?}",
                    self.config.auth_cluster
                );
                self.deny(503, "auth service unavailable\n");
            }
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let _ = hostcalls::increment_metric(self.config.requests_metric, 1);
        for name in &self.config.request_remove {
            self.set_http_request_header(name, None);
        }
        for (name, value) in &self.config.request_add {
            self.set_http_request_header(name, Some(value));
        }
        let config = Rc::clone(&self.config);
        if config.auth_cluster.is_empty() {
            return Action::Continue;
        }
        let authority = if config.auth_authority.is_empty() {
            config.auth_cluster.as_str()
        } else {
            config.auth_authority.as_str()
        };
        let headers = vec![
            (":method", "GET"),
            (":path", config.auth_path.as_str()),
            (":authority", authority),
        ];
        let timeout = Duration::from_millis(config.auth_timeout_ms);
        if let Err(status) =
            self.dispatch_http_call(&config.auth_cluster, headers, None, vec![], timeout)
        {
            log::error!(
                "rust-headers: cannot call {:?}: {:?}",
                config.auth_cluster,
                status
            );
            self.deny(503, "auth service unavailable\n");
        }
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for name in &self.config.response_remove {
            self.set_http_response_header(name, None);
        }
        for (name, value) in &self.config.response_add {
            self.set_http_response_header(name, Some(value));
        }
        Action::Continue
    }
}
