//! The floor of any Proxy-Wasm filter's cost in Envoy. With an empty plugin configuration (W0) it
//! reads `authorization` and continues. With `{"hold_body": true}` (W1) it also holds every request
//! until its body is complete and reads the body once, as any filter that judges a body must: W1 -
//! W0 is what holding and reading a body costs before any validation is done. With
//! `{"rewrite_response": true}` (W2) it holds every response until its body is complete, reads it
//! and writes it back unchanged with its `content-length`, as a response rewriter must: W2 - W0 is
//! the floor under response redaction.
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root { hold_body: false, rewrite_response: false }));
}}

struct Root {
    hold_body: bool,
    rewrite_response: bool,
}
impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.hold_body = config.windows(9).any(|w| w == b"hold_body");
        self.rewrite_response = config.windows(16).any(|w| w == b"rewrite_response");
        true
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            hold_body: self.hold_body,
            rewrite_response: self.rewrite_response,
        }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    hold_body: bool,
    rewrite_response: bool,
}
impl Context for Filter {}
impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let _ = hostcalls::get_map_value(MapType::HttpRequestHeaders, "authorization");
        if self.hold_body && !end_of_stream {
            Action::Pause
        } else {
            Action::Continue
        }
    }
    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.hold_body {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size);
        std::hint::black_box(&body);
        Action::Continue
    }
    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if self.rewrite_response && !end_of_stream {
            Action::Pause
        } else {
            Action::Continue
        }
    }
    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.rewrite_response {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if let Ok(Some(body)) = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size) {
            let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &body);
            let length = body.len().to_string();
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                "content-length",
                Some(&length),
            );
        }
        Action::Continue
    }
}
