//! Reads `authorization` and continues: the floor of any Proxy-Wasm filter's cost in Envoy.
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ReadOneHeader))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ReadOneHeader;
impl Context for ReadOneHeader {}
impl HttpContext for ReadOneHeader {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let _ = hostcalls::get_map_value(MapType::HttpRequestHeaders, "authorization");
        Action::Continue
    }
}
