//! The committed test keys and key sets in `testkit/fixtures`.
//!
//! These keys exist only for tests, the benchmark and the demo; `make_jwks.py` there derives the
//! JWKS files from the PEM files. `rsa-a.pub.pem` is the public half of `rsa-a.pem`
//! (`openssl pkey -in rsa-a.pem -pubout`), used for the HS256 key-confusion attack.

use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// `testkit/fixtures/<name>`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The bytes of a fixture file; panics with its path when it cannot be read.
pub fn read(name: &str) -> Vec<u8> {
    let path = path(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// `jwks.json`: public keys rsa-a, ec-a, ed-a.
pub fn jwks() -> String {
    String::from_utf8_lossy(&read("jwks.json")).into_owned()
}

/// `jwks-rsa-b.json`: only rsa-b (the rotated-in key).
pub fn jwks_rsa_b() -> String {
    String::from_utf8_lossy(&read("jwks-rsa-b.json")).into_owned()
}

/// The HS256 secret as stored: base64url, which is also the JWK `k` value.
pub fn hs256_secret_b64() -> String {
    String::from_utf8_lossy(&read("hs256.secret"))
        .trim()
        .to_owned()
}

/// The raw HS256 secret bytes (the HMAC key).
pub fn hs256_secret() -> Vec<u8> {
    // The file may or may not carry `=` padding; decode without it.
    let text = hs256_secret_b64();
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .unwrap_or_else(|err| panic!("hs256.secret is not base64url: {err}"))
}

/// The inline JWK for the HS256 secret, kid `hs-a`.
pub fn hs256_jwk() -> Value {
    json!({"kty": "oct", "kid": "hs-a", "alg": "HS256", "k": hs256_secret_b64()})
}
