//! Response headers: what is removed (implementation details such as `server` and
//! `x-powered-by`, plus configured ones) and what is added (HSTS, `nosniff`, and `cache-control:
//! no-store` on responses to authenticated callers).

use serde::Deserialize;

/// `headers` in a `response` block, as written. Every field may be left out (a route then keeps
/// the global value).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    /// Added to the headers always removed (`server`, `x-powered-by`).
    #[serde(default)]
    pub remove: Vec<String>,
    /// `strict-transport-security` value; `""` sends none.
    pub strict_transport_security: Option<String>,
    /// `x-content-type-options: nosniff`.
    pub nosniff: Option<bool>,
    /// `cache-control` on responses to authenticated callers; `""` leaves the upstream's.
    pub cache_control: Option<String>,
}

pub const ALWAYS_REMOVED: [&str; 2] = ["server", "x-powered-by"];
pub const DEFAULT_HSTS: &str = "max-age=31536000; includeSubDomains";
pub const DEFAULT_CACHE_CONTROL: &str = "no-store";

/// The compiled header rules of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPolicy {
    /// Lowercase names.
    pub remove: Vec<String>,
    /// Set on every response (replacing the upstream's).
    pub add: Vec<(&'static str, String)>,
    /// Set on responses to authenticated callers.
    pub cache_control: Option<String>,
}

/// Merges the global and the route's header settings (route values win; removals add up).
pub fn compile(
    global: Option<&RawHeaders>,
    route: Option<&RawHeaders>,
    path: &str,
) -> Result<HeaderPolicy, (String, String)> {
    let mut remove: Vec<String> = ALWAYS_REMOVED.iter().map(|s| (*s).to_string()).collect();
    for (which, raw) in [("response.headers", global), (path, route)] {
        let Some(raw) = raw else { continue };
        for (i, name) in raw.remove.iter().enumerate() {
            let lower = name.to_ascii_lowercase();
            let valid = !lower.is_empty()
                && lower.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !valid {
                return Err((format!("{which}.remove[{i}]"), "not a header name".into()));
            }
            if matches!(lower.as_str(), "content-type" | "content-length") {
                return Err((
                    format!("{which}.remove[{i}]"),
                    "content-type and content-length describe the body; they cannot be removed"
                        .into(),
                ));
            }
            if !remove.contains(&lower) {
                remove.push(lower);
            }
        }
    }
    let pick = |f: fn(&RawHeaders) -> Option<&String>| {
        route
            .and_then(f)
            .or_else(|| global.and_then(f))
            .map(String::as_str)
    };
    let hsts = pick(|h| h.strict_transport_security.as_ref()).unwrap_or(DEFAULT_HSTS);
    let cache = pick(|h| h.cache_control.as_ref()).unwrap_or(DEFAULT_CACHE_CONTROL);
    for (field, value) in [
        ("strict_transport_security", hsts),
        ("cache_control", cache),
    ] {
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err((format!("{path}.{field}"), "must be printable ASCII".into()));
        }
    }
    let nosniff = route
        .and_then(|h| h.nosniff)
        .or_else(|| global.and_then(|h| h.nosniff))
        .unwrap_or(true);
    let mut add = Vec::new();
    if !hsts.is_empty() {
        add.push(("strict-transport-security", hsts.to_string()));
    }
    if nosniff {
        add.push(("x-content-type-options", "nosniff".to_string()));
    }
    Ok(HeaderPolicy {
        remove,
        add,
        cache_control: (!cache.is_empty()).then(|| cache.to_string()),
    })
}
