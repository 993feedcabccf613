//! JWKS documents as an identity provider (or an attacker in its place) might serve them.
#![no_main]
use finguard::authn::jwks::{KeyOrigin, KeySet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = KeySet::parse(data, KeyOrigin::Remote);
    let _ = KeySet::parse(data, KeyOrigin::Inline);
});
