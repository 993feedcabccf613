//! Upstream response bodies through the rewriter: never a panic; a document serde accepts is
//! rewritten into one serde accepts too.
#![no_main]
use finguard::config::Config;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"{"response": {
  "rules": [{"pointer": "/*/a", "action": "remove"}, {"pointer": "/b/*", "action": "mask"},
            {"pointer": "/c", "action": "replace", "value": {"x": 1}},
            {"pointer": "/d/*/e", "action": "tokenise"}, {"pointer": "/f", "action": "pan"}],
  "detect": ["pan", "iban", "email"],
  "tokenise_key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
  "routes": [{"id": "r", "match": {"path": "/r"}, "public": true}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = Config::compile(CONFIG.as_bytes()) else {
        return;
    };
    let Some(policy) = config.response.global() else {
        return;
    };
    let result = finguard::redaction::rewrite::rewrite(data, policy, 0);
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        let out = match result {
            Ok(Some(out)) => out,
            Ok(None) => data.to_vec(),
            Err(_) => return, // too deep
        };
        assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
    }
});
