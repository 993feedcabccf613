//! The floor of any Proxy-Wasm filter's cost in Envoy. With an empty plugin configuration (W0) it
//! reads `authorization` and continues. With `{"hold_body": true}` (W1) it also holds every request
//! until its body is complete and reads the body once, as any filter that judges a body must: W1 -
//! W0 is what holding and reading a body costs before any validation is done.
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root { hold_body: false }));
}}

struct Root {
    hold_body: bool,
}
impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.hold_body = config.windows(9).any(|w| w == b"hold_body");
        true
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { hold_body: self.hold_body }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    hold_body: bool,
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
}
