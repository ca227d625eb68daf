//! rust-grpc: gRPC from a Proxy-Wasm filter built with the Rust SDK (the `proxy-wasm`
//! crate): a unary call, a stream, and the request-trailer callback.
//!
//! What a request asks for is in its headers (the test's way to drive one filter
//! through every case over one gateway):
//!
//! - `x-grpc-call: unary` calls `<service>/Unary` on `cluster` with the value of
//!   `x-grpc-name` as the message. OK: the reply becomes the request header
//!   `x-grpc-reply` and the request goes on. A gRPC error: 403 with the status and
//!   its message. A call that cannot start: 503.
//! - `x-grpc-call: stream` opens `<service>/<x-grpc-method, default Bidi>` on
//!   `x-grpc-cluster` (default: `cluster`), sends each comma-separated message of
//!   `x-grpc-send`, then ends its side as `x-grpc-end` says: `flag` (the default: an
//!   empty send with end_stream), `close` (close_grpc_stream) or `none` (it then
//!   closes its side once the server has closed the stream). With
//!   `x-grpc-cancel-after: N` it cancels the stream once N messages came. The answer
//!   (a local 200) lists what came back: the messages in the body (`|`-separated),
//!   the close status, its message, and the initial and trailing metadata `x-hello`
//!   and `x-trail` in headers. A stream that cannot open: 503 with the reason.
//!   With `x-grpc-also-slow: 1` it first calls `<service>/Slow` (unary) and cancels
//!   that call too when it cancels the stream.
//! - `x-grpc-call: feed` answers with the last message of the root context's stream:
//!   with `feed` configured, the root context opens `<service>/<feed>` on its first
//!   tick, sends `start`, and keeps each reply in shared data.
//! - Request trailers: `x-check` is copied to `x-check-seen`; with a trailer
//!   `x-hold`, the trailers wait (StopIteration) for a unary call whose reply is
//!   added as `x-held-reply` before they go on. With a trailer `x-order`, the
//!   trailer `x-body-calls` lists the body callbacks that came before (`size/eos`).
//!   The request header `x-buffer-body: 1` makes the body callbacks stop
//!   (StopIterationAndBuffer) until the end of the body or the trailers.
//! - Response trailers (an HTTP/2 upstream's): with `echo-x-order`, the trailer
//!   `x-resp-body-calls` lists the response body callbacks before them; with
//!   `echo-x-hold-resp: NAME`, they wait (StopIteration) for a unary call with NAME,
//!   whose reply is added as `x-held-resp-reply`; with `echo-x-deny-resp`, the filter
//!   answers 403 (too late: the response head went). The request header
//!   `x-buffer-resp-body: 1` makes the response body callbacks stop as above.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde_json::Value;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Config {
    cluster: String,
    service: String,
    feed: String,
}

const FEED_KEY: &str = "rust-grpc.feed";

impl Config {
    fn parse(bytes: &[u8]) -> Result<Config, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let obj = value
            .as_object()
            .ok_or("the configuration must be a JSON object")?;
        if let Some(unknown) = obj.keys().find(|k| !["cluster", "service", "feed"].contains(&k.as_str())) {
            return Err(format!("unknown key {unknown}"));
        }
        let text = |key: &str, default: &str| -> Result<String, String> {
            match obj.get(key) {
                None => Ok(default.to_string()),
                Some(v) => v
                    .as_str()
                    .map(str::to_string)
                    .ok_or(format!("{key} must be a string")),
            }
        };
        Ok(Config {
            cluster: text("cluster", "")?,
            service: text("service", "pkg.Echo")?,
            feed: text("feed", "")?,
        })
    }
}

#[derive(Default)]
struct Root {
    config: Rc<Config>,
    feed: u32,
}

impl Context for Root {
    fn on_grpc_stream_message(&mut self, _token: u32, size: usize) {
        let message = self.get_grpc_stream_message(0, size).unwrap_or_default();
        if let Err(status) = self.set_shared_data(FEED_KEY, Some(&message), None) {
            log::warn!("rust-grpc: cannot keep the feed: {status:?}");
        }
    }

    fn on_grpc_stream_close(&mut self, _token: u32, status: u32) {
        log::info!("rust-grpc: the feed closed with status {status}");
        self.feed = 0;
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let bytes = if bytes.is_empty() { b"{}".to_vec() } else { bytes };
        match Config::parse(&bytes) {
            Ok(config) => {
                if !config.feed.is_empty() {
                    self.set_tick_period(Duration::from_millis(20));
                }
                self.config = Rc::new(config);
                true
            }
            Err(why) => {
                log::error!("rust-grpc: bad configuration: {why}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if self.feed != 0 {
            return;
        }
        let config = Rc::clone(&self.config);
        match self.open_grpc_stream(&config.cluster, &config.service, &config.feed, vec![]) {
            Ok(token) => {
                self.feed = token;
                self.send_grpc_stream_message(token, Some(b"start"), false);
                self.set_tick_period(Duration::from_secs(0));
            }
            Err(status) => log::warn!("rust-grpc: cannot open the feed: {status:?}"),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: Rc::clone(&self.config),
            got: RefCell::new(Got::default()),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// What a stream brought back, and what the request waits for.
#[derive(Default)]
struct Got {
    messages: Vec<String>,
    initial: String,
    trailing: String,
    cancel_after: usize,
    stream: u32,
    slow: u32,
    keep_open: bool,
    held_trailers: bool,
    held_resp_trailers: bool,
    buffer_body: bool,
    buffer_resp_body: bool,
    body_calls: Vec<String>,
    resp_body_calls: Vec<String>,
}

struct Stream {
    config: Rc<Config>,
    got: RefCell<Got>,
}

fn text(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
}

impl Stream {
    fn header(&self, name: &str) -> String {
        self.get_http_request_header(name).unwrap_or_default()
    }

    fn fail(&self, status: u32, body: &str) {
        self.send_http_response(status, vec![("content-type", "text/plain")], Some(body.as_bytes()));
    }

    fn unary(&mut self, message: &str) -> Action {
        self.dispatch("Unary", message)
    }

    fn dispatch(&mut self, method: &str, message: &str) -> Action {
        let call = self.dispatch_grpc_call(
            &self.config.cluster,
            &self.config.service,
            method,
            vec![("x-from", b"rust-grpc")],
            Some(message.as_bytes()),
            Duration::from_secs(5),
        );
        match call {
            Ok(_) => Action::Pause,
            Err(status) => {
                self.fail(503, &format!("grpc call failed: {status:?}\n"));
                Action::Pause
            }
        }
    }

    fn open(&mut self) -> Action {
        let cluster = match self.header("x-grpc-cluster") {
            c if c.is_empty() => self.config.cluster.clone(),
            c => c,
        };
        let method = match self.header("x-grpc-method") {
            m if m.is_empty() => "Bidi".to_string(),
            m => m,
        };
        if self.header("x-grpc-also-slow") == "1" {
            match self.dispatch_grpc_call(
                &self.config.cluster,
                &self.config.service,
                "Slow",
                vec![],
                Some(b"slow"),
                Duration::from_secs(10),
            ) {
                Ok(token) => self.got.borrow_mut().slow = token,
                Err(status) => {
                    self.fail(503, &format!("grpc call failed: {status:?}\n"));
                    return Action::Pause;
                }
            }
        }
        let opened = self.open_grpc_stream(
            &cluster,
            &self.config.service,
            &method,
            vec![("x-from", b"rust-grpc")],
        );
        let token = match opened {
            Ok(token) => token,
            Err(status) => {
                self.fail(503, &format!("grpc stream failed: {status:?}\n"));
                return Action::Pause;
            }
        };
        {
            let mut got = self.got.borrow_mut();
            got.stream = token;
            got.cancel_after = self.header("x-grpc-cancel-after").parse().unwrap_or(0);
        }
        let sends = self.header("x-grpc-send");
        for message in sends.split(',').filter(|m| !m.is_empty()) {
            self.send_grpc_stream_message(token, Some(message.as_bytes()), false);
        }
        match self.header("x-grpc-end").as_str() {
            "none" => self.got.borrow_mut().keep_open = true,
            "close" => self.close_grpc_stream(token),
            _ => self.send_grpc_stream_message(token, None, true),
        }
        Action::Pause
    }

    fn answer(&self, status: u32, message: &str) {
        let got = self.got.borrow();
        let status = status.to_string();
        self.send_http_response(
            200,
            vec![
                ("x-stream-status", status.as_str()),
                ("x-stream-message", message),
                ("x-stream-initial", got.initial.as_str()),
                ("x-stream-trailing", got.trailing.as_str()),
            ],
            Some(got.messages.join("|").as_bytes()),
        );
    }
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, _token: u32, status: u32, size: usize) {
        if status != 0 {
            let (code, message) = self.get_grpc_status();
            let body = format!("denied: {} {}\n", code, message.unwrap_or_default());
            self.fail(403, &body);
            return;
        }
        let reply = text(self.get_grpc_call_response_body(0, size));
        if self.got.borrow().held_resp_trailers {
            self.add_http_response_trailer("x-held-resp-reply", &reply);
            self.resume_http_response();
            return;
        }
        if self.got.borrow().held_trailers {
            self.add_http_request_trailer("x-held-reply", &reply);
        } else {
            self.set_http_request_header("x-grpc-reply", Some(&reply));
        }
        self.resume_http_request();
    }

    fn on_grpc_stream_initial_metadata(&mut self, _token: u32, _count: u32) {
        let value = text(self.get_grpc_stream_initial_metadata_value("x-hello"));
        self.got.borrow_mut().initial = value;
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        let message = text(self.get_grpc_stream_message(0, size));
        let cancel = {
            let mut got = self.got.borrow_mut();
            got.messages.push(message);
            got.cancel_after != 0 && got.messages.len() >= got.cancel_after
        };
        if cancel {
            self.cancel_grpc_stream(token);
            let slow = self.got.borrow().slow;
            if slow != 0 {
                self.cancel_grpc_call(slow);
            }
            self.answer(1, "cancelled by the filter");
        }
    }

    fn on_grpc_stream_trailing_metadata(&mut self, _token: u32, _count: u32) {
        let value = text(self.get_grpc_stream_trailing_metadata_value("x-trail"));
        self.got.borrow_mut().trailing = value;
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        let (_, message) = self.get_grpc_status();
        if self.got.borrow().keep_open {
            self.close_grpc_stream(token); // its own side, still open
        }
        self.answer(status, &message.unwrap_or_default());
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end: bool) -> Action {
        {
            let mut got = self.got.borrow_mut();
            got.buffer_body = self.header("x-buffer-body") == "1";
            got.buffer_resp_body = self.header("x-buffer-resp-body") == "1";
        }
        match self.header("x-grpc-call").as_str() {
            "unary" => {
                let name = self.header("x-grpc-name");
                self.unary(&name)
            }
            "stream" => self.open(),
            "feed" => {
                let (feed, _) = self.get_shared_data(FEED_KEY);
                self.send_http_response(200, vec![], Some(&feed.unwrap_or_default()));
                Action::Pause
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, size: usize, end: bool) -> Action {
        let mut got = self.got.borrow_mut();
        got.body_calls.push(format!("{size}/{end}"));
        if got.buffer_body && !end {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_body(&mut self, size: usize, end: bool) -> Action {
        let mut got = self.got.borrow_mut();
        got.resp_body_calls.push(format!("{size}/{end}"));
        if got.buffer_resp_body && !end {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        if self.get_http_response_trailer("echo-x-order").is_some() {
            let calls = self.got.borrow().resp_body_calls.join(",");
            self.add_http_response_trailer("x-resp-body-calls", &calls);
        }
        if self.get_http_response_trailer("echo-x-deny-resp").is_some() {
            self.fail(403, "denied after the head\n");
            return Action::Pause;
        }
        match self.get_http_response_trailer("echo-x-hold-resp") {
            Some(name) => {
                self.got.borrow_mut().held_resp_trailers = true;
                self.unary(&name)
            }
            None => Action::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if let Some(check) = self.get_http_request_trailer("x-check") {
            self.set_http_request_trailer("x-check-seen", Some(&check));
        }
        if self.get_http_request_trailer("x-order").is_some() {
            let calls = self.got.borrow().body_calls.join(",");
            self.add_http_request_trailer("x-body-calls", &calls);
        }
        match self.get_http_request_trailer("x-hold") {
            Some(name) => {
                self.got.borrow_mut().held_trailers = true;
                self.unary(&name)
            }
            None => Action::Continue,
        }
    }
}
