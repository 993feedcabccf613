//! Request bodies and query strings on a validated route (structure limits, strict JSON, schema
//! with fintech formats, negative model): refused or accepted, never a panic or a stack overflow.
#![no_main]
use finguard::config::Config;
use finguard::request::RequestView;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r##"{"routes": [{"id": "pay", "match": {"path": "/pay"}, "public": true,
  "request": {
    "schema": {"type": "object", "additionalProperties": false,
               "properties": {"amount": {"type": "string", "format": "decimal-amount"},
                              "n": {"decimal": {"precision": 10, "scale": 2}},
                              "iban": {"format": "iban"}, "bic": {"format": "bic"},
                              "ccy": {"format": "iso4217"}, "phone": {"format": "e164"},
                              "when": {"format": "date-time"}, "id": {"format": "uuid"},
                              "tags": {"type": "object", "patternProperties": {"^t": {"type": "array"}},
                                       "additionalProperties": {"type": "string", "pattern": "^[a-z]{1,8}$"}},
                              "items": {"type": "array", "items": {"$ref": "#"}}}},
    "query": {"properties": {"q": {"maxLength": 8}}},
    "negative": {"detectors": ["sql_injection", "command_injection", "path_traversal"]}
  }}]}"##;

thread_local! {
    static COMPILED: Config = Config::compile(CONFIG.as_bytes()).expect("the fuzz configuration");
}

fuzz_target!(|data: &[u8]| {
    COMPILED.with(|config| {
        let Some(route) = config.routes.routes().first() else {
            return;
        };
        let _ = route.request.judge_body(Some("application/json"), data);
        let path = format!("/pay?{}", String::from_utf8_lossy(data));
        let request = RequestView::new(vec![(":path".into(), path)]);
        let _ = route.request.check_params(&request, std::iter::empty());
    });
});
