//! Token extraction and JWS parsing on arbitrary request headers: never a panic.
#![no_main]
use finguard::authn::extract::{extract, TokenSource};
use finguard::authn::token;
use finguard::request::RequestView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, auth) = text.split_once('\n').unwrap_or(("/", &text));
    let request = RequestView::new(vec![
        (":path".into(), path.into()),
        ("authorization".into(), auth.into()),
        ("cookie".into(), auth.into()),
    ]);
    let sources = [
        TokenSource::Header { name: "authorization".into(), scheme: Some("Bearer".into()) },
        TokenSource::Cookie { name: "at".into() },
    ];
    let _ = extract(&sources, &request);
    let _ = token::parse(auth, 8192);
});
