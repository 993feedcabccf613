//! Native cost of the request body phase on the benchmark's 1 KB payment (bench V1/V2 configs).
//! Wall time is noisy on a shared machine; count instructions instead:
//!   cargo build --release --example body_cost
//!   valgrind --tool=cachegrind --cache-sim=no target/release/examples/body_cost v1 judge 2000
//! and subtract the `none` step (configuration and start-up) to get instructions per body.
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (config_name, step) = (args[1].as_str(), args[2].as_str());
    let n: usize = args[3].parse().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let jwks = std::fs::read_to_string(root.join("testkit/fixtures/jwks.json")).unwrap();
    let keys: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    let body = std::fs::read(root.join("bench/payloads/payment.json")).unwrap();
    let path = root.join(format!("bench/configs/finguard/{config_name}.json"));
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.replace("\"$JWKS_KEYS\"", &keys["keys"].to_string());
    let config = finguard::config::Config::compile(text.as_bytes()).unwrap();
    let policy = &config.routes.routes()[0].request;
    for _ in 0..n {
        match step {
            "judge" => assert!(policy
                .judge_body(Some("application/json"), black_box(&body))
                .is_ok()),
            "strict" => drop(black_box(
                finguard::json::parse_strict(black_box(&body)).unwrap(),
            )),
            "value" => drop(black_box(
                serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap(),
            )),
            "ignore" => drop(black_box(
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap(),
            )),
            _ => {}
        }
    }
}
