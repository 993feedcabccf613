//! Response protection: what leaves the API. Field rules by pointer pattern (mask, PAN
//! truncation, removal, fixed replacement, keyed tokenisation), detectors over every string
//! (card numbers, IBANs, e-mail addresses), unmasking by scope, header scrubbing, and the limits
//! under which a response is rewritten at all.
//!
//! Configuration: `response` at the top level (the default of every route) and per route. A
//! route's rules come before the global ones (the first matching rule wins, `remove` always
//! wins), a route's detector entry replaces the global entry for the same detector, header
//! removals add up and the other settings of the route override the global ones. Compiled once
//! per route into a [`ResponsePolicy`].
//!
//! - [`pointer`]: pointer patterns with `*`;
//! - [`detect`]: the detectors;
//! - [`mask`]: the actions (and the tokenisation key);
//! - [`rewrite`]: the JSON rewriter (byte splicing: untouched values stay byte for byte);
//! - [`headers`]: header removal and additions.

pub mod detect;
pub mod headers;
pub mod mask;
pub mod pointer;
pub mod rewrite;

use crate::config_error::ConfigError;
use headers::{HeaderPolicy, RawHeaders};
use mask::{Action, TokenKey};
use pointer::Segment;
use serde::Deserialize;
use std::rc::Rc;

/// Default cap on a response body buffered for rewriting. Envoy's own buffer limit
/// (`per_connection_buffer_limit_bytes`, 1 MiB by default) must be above it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_BODY_BYTES_LIMIT: usize = 16 * 1024 * 1024;
/// Unmasking scopes are a bit set per request.
const MAX_SCOPES: usize = 64;

// ---- raw configuration -----------------------------------------------------------------------

/// A `response` block, global or per route.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawResponse {
    #[serde(default)]
    rules: Vec<RawRule>,
    /// `"pan"` or `{"detector": "pan", ...}`: read as JSON values and converted one by one
    /// (serde's untagged enums would cost module size and give vaguer errors).
    #[serde(default)]
    detect: Vec<serde_json::Value>,
    headers: Option<RawHeaders>,
    upstream_errors: Option<UpstreamErrors>,
    non_json: Option<NonJson>,
    max_body_bytes: Option<usize>,
    /// Base64 (standard or URL-safe, padding optional) of at least 32 bytes; global only.
    tokenise_key: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum UpstreamErrors {
    /// 5xx bodies are replaced by a generic problem+json (status kept).
    Sanitise,
    Pass,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum NonJson {
    /// Responses that are not JSON pass unchanged (headers are still scrubbed): on a route
    /// that redacts bodies, an explicit opt-out that lets unredacted data leave.
    Pass,
    /// Responses with a body that is not JSON are refused (502 response-unredactable): the
    /// default on routes that redact bodies.
    Refuse,
}

/// Options of an action; which ones an action takes is checked at compile time.
macro_rules! with_options {
    ($(#[$m:meta])* struct $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$m])*
        struct $name {
            $($field: $ty,)*
            keep_last: Option<usize>,
            keep_first: Option<usize>,
            mask_char: Option<char>,
            // `null` is a replacement value, not an absent one.
            #[serde(default, deserialize_with = "present")]
            value: Option<serde_json::Value>,
            prefix: Option<String>,
            unmask_scope: Option<String>,
        }
        impl $name {
            fn options(&self) -> RawOptions {
                RawOptions {
                    keep_last: self.keep_last,
                    keep_first: self.keep_first,
                    mask_char: self.mask_char,
                    value: self.value.clone(),
                    prefix: self.prefix.clone(),
                    unmask_scope: self.unmask_scope.clone(),
                }
            }
        }
    };
}

with_options! {
    #[derive(Deserialize, Clone)]
    #[serde(deny_unknown_fields)]
    struct RawRule {
        pointer: String,
        action: String,
    }
}

with_options! {
    #[derive(Deserialize, Clone)]
    #[serde(deny_unknown_fields)]
    struct RawDetector {
        detector: String,
        action: Option<String>,
    }
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

#[derive(Clone, Default)]
struct RawOptions {
    keep_last: Option<usize>,
    keep_first: Option<usize>,
    mask_char: Option<char>,
    value: Option<serde_json::Value>,
    prefix: Option<String>,
    unmask_scope: Option<String>,
}

// ---- compiled ----------------------------------------------------------------------------------

/// A field rule: a pointer pattern and what happens to the values it selects.
#[derive(Debug, Clone)]
pub struct FieldRule {
    pub segments: Vec<Segment>,
    pub action: Action,
    /// Bit (in [`ResponsePolicy::scopes`]) of the scope whose holders see the value clear.
    pub unmask: Option<u8>,
    scope: Option<String>,
}

/// A detector's action on what it finds.
#[derive(Debug, Clone)]
pub struct DetectorRule {
    pub action: Action,
    pub unmask: Option<u8>,
    scope: Option<String>,
}

/// Everything the response phase of one route needs.
#[derive(Debug)]
pub struct ResponsePolicy {
    pub rules: Vec<FieldRule>,
    pub detect_pan: Option<DetectorRule>,
    pub detect_iban: Option<DetectorRule>,
    pub detect_email: Option<DetectorRule>,
    /// The distinct unmasking scopes; bit `i` of a request's mask stands for `scopes[i]`.
    pub scopes: Vec<String>,
    pub headers: HeaderPolicy,
    pub sanitise_upstream_errors: bool,
    pub refuse_non_json: bool,
    pub max_body_bytes: usize,
}

impl ResponsePolicy {
    /// Whether JSON bodies are rewritten (otherwise only headers and 5xx bodies are handled).
    pub fn rewrites_body(&self) -> bool {
        !self.rules.is_empty()
            || self.detect_pan.is_some()
            || self.detect_iban.is_some()
            || self.detect_email.is_some()
    }

    /// The unmasking bits of a caller holding `held` scopes.
    pub fn unmasked_for(&self, held: &[String]) -> u64 {
        self.scopes
            .iter()
            .enumerate()
            .filter(|(_, scope)| held.contains(scope))
            .fold(0, |bits, (i, _)| bits | (1u64 << i))
    }
}

/// One `response` block compiled on its own; merged into a [`ResponsePolicy`] per route.
#[derive(Clone, Default)]
struct Part {
    rules: Vec<FieldRule>,
    /// `None`: not set here; `Some(None)`: turned off here.
    detectors: [Option<Option<DetectorRule>>; 3],
    headers: Option<RawHeaders>,
    upstream_errors: Option<UpstreamErrors>,
    non_json: Option<NonJson>,
    max_body_bytes: Option<usize>,
}

/// The global `response` block, compiled, and the policy of routes without their own.
#[derive(Default)]
pub struct ResponseDefaults {
    global: Option<Part>,
    key: Option<TokenKey>,
    policy: Option<Rc<ResponsePolicy>>,
}

impl std::fmt::Debug for ResponseDefaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseDefaults")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn fail<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        message: message.into(),
    })
}

impl ResponseDefaults {
    /// Compiles the top-level `response` block.
    pub fn compile(raw: Option<RawResponse>) -> Result<ResponseDefaults, ConfigError> {
        let Some(raw) = raw else {
            return Ok(ResponseDefaults::default());
        };
        let key = match &raw.tokenise_key {
            None => None,
            // The key itself never appears in an error.
            Some(text) => Some(decode_key(text).ok_or_else(|| ConfigError {
                path: "response.tokenise_key".into(),
                message: "must be base64 of at least 32 random bytes".into(),
            })?),
        };
        let part = compile_part(raw, "response", key.as_ref())?;
        let policy = merge(Some(&part), None, "response")?;
        Ok(ResponseDefaults {
            global: Some(part),
            key,
            policy: Some(Rc::new(policy)),
        })
    }

    /// The policy of a route with its own `response` block (or without: the global one).
    /// `path` names the route's block, e.g. `routes[2].response`.
    pub fn for_route(
        &self,
        raw: Option<RawResponse>,
        path: &str,
    ) -> Result<Option<Rc<ResponsePolicy>>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(self.policy.clone());
        };
        if raw.tokenise_key.is_some() {
            return fail(
                format!("{path}.tokenise_key"),
                "the tokenisation key is set once, in the top-level response block",
            );
        }
        let part = compile_part(raw, path, self.key.as_ref())?;
        Ok(Some(Rc::new(merge(
            self.global.as_ref(),
            Some(&part),
            path,
        )?)))
    }

    /// The global policy (for responses to requests that matched no route, in monitor mode).
    pub fn global(&self) -> Option<&Rc<ResponsePolicy>> {
        self.policy.as_ref()
    }
}

fn decode_key(text: &str) -> Option<TokenKey> {
    use base64::Engine;
    let trimmed = text.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .ok()?;
    TokenKey::new(&bytes)
}

const DETECTORS: [&str; 3] = ["pan", "iban", "email"];

fn compile_part(raw: RawResponse, path: &str, key: Option<&TokenKey>) -> Result<Part, ConfigError> {
    let mut part = Part {
        headers: raw.headers,
        upstream_errors: raw.upstream_errors,
        non_json: raw.non_json,
        max_body_bytes: raw.max_body_bytes,
        ..Part::default()
    };
    if let Some(max) = raw.max_body_bytes {
        if max == 0 || max > MAX_BODY_BYTES_LIMIT {
            return fail(
                format!("{path}.max_body_bytes"),
                "must be between 1 and 16777216",
            );
        }
    }
    for (i, rule) in raw.rules.into_iter().enumerate() {
        let at = format!("{path}.rules[{i}]");
        let segments = pointer::parse(&rule.pointer).map_err(|m| ConfigError {
            path: format!("{at}.pointer"),
            message: m,
        })?;
        let options = rule.options();
        let action = compile_action(&rule.action, &options, &at, key, true)?;
        part.rules.push(FieldRule {
            segments,
            action,
            unmask: None,
            scope: compile_scope(&options, &at)?,
        });
    }
    for (i, entry) in raw.detect.into_iter().enumerate() {
        let at = format!("{path}.detect[{i}]");
        let (name, action, options) = match entry {
            serde_json::Value::String(name) => (name, None, RawOptions::default()),
            object => match serde_json::from_value::<RawDetector>(object) {
                Ok(d) => {
                    let options = d.options();
                    (d.detector, d.action, options)
                }
                Err(e) => {
                    // Field names and expected shapes only (configuration, no secrets).
                    let message = e.to_string();
                    return fail(at, message.split(" at line ").next().unwrap_or("invalid"));
                }
            },
        };
        let Some(slot) = DETECTORS.iter().position(|d| *d == name) else {
            return fail(at, "detector must be one of pan, iban, email");
        };
        if part.detectors[slot].is_some() {
            return fail(at, "this detector is listed twice");
        }
        let action =
            action.unwrap_or_else(|| if name == "pan" { "pan" } else { "mask" }.to_string());
        if action == "off" {
            part.detectors[slot] = Some(None);
            continue;
        }
        if action == "remove" || (action == "pan" && name != "pan") {
            return fail(
                format!("{at}.action"),
                "a detector's action is pan (card numbers only), mask, tokenise, replace or off",
            );
        }
        if action == "replace" && !options.value.as_ref().is_some_and(|v| v.is_string()) {
            return fail(
                format!("{at}.value"),
                "a detector replaces what it finds by a string",
            );
        }
        let compiled = compile_action(&action, &options, &at, key, false)?;
        part.detectors[slot] = Some(Some(DetectorRule {
            action: compiled,
            unmask: None,
            scope: compile_scope(&options, &at)?,
        }));
    }
    Ok(part)
}

fn compile_scope(options: &RawOptions, at: &str) -> Result<Option<String>, ConfigError> {
    match &options.unmask_scope {
        None => Ok(None),
        Some(scope)
            if !scope.is_empty()
                && scope.bytes().all(|b| {
                    b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)
                }) =>
        {
            Ok(Some(scope.clone()))
        }
        Some(_) => fail(
            format!("{at}.unmask_scope"),
            "not a scope token (RFC 6749 section 3.3)",
        ),
    }
}

fn compile_action(
    name: &str,
    o: &RawOptions,
    at: &str,
    key: Option<&TokenKey>,
    field: bool,
) -> Result<Action, ConfigError> {
    let allowed: &[&str] = match name {
        "mask" => &["keep_last", "mask_char"],
        "pan" => &["keep_first", "keep_last", "mask_char"],
        "remove" => &[],
        "replace" => &["value"],
        "tokenise" => &["prefix"],
        _ => {
            return fail(
                format!("{at}.action"),
                "must be one of mask, pan, remove, replace, tokenise",
            )
        }
    };
    let given = [
        ("keep_last", o.keep_last.is_some()),
        ("keep_first", o.keep_first.is_some()),
        ("mask_char", o.mask_char.is_some()),
        ("value", o.value.is_some()),
        ("prefix", o.prefix.is_some()),
    ];
    for (option, set) in given {
        if set && !allowed.contains(&option) {
            return fail(
                format!("{at}.{option}"),
                format!("not an option of the {name} action"),
            );
        }
    }
    let mask_char = o.mask_char.unwrap_or('*');
    if mask_char.is_control() || mask_char == '"' || mask_char == '\\' {
        return fail(format!("{at}.mask_char"), "must be a printable character");
    }
    Ok(match name {
        "mask" => {
            let keep_last = o.keep_last.unwrap_or(4);
            if keep_last > 64 {
                return fail(format!("{at}.keep_last"), "at most 64");
            }
            Action::Mask {
                keep_last,
                mask_char,
            }
        }
        "pan" => {
            let keep_first = o.keep_first.unwrap_or(6);
            let keep_last = o.keep_last.unwrap_or(4);
            if keep_first > 6 {
                return fail(
                    format!("{at}.keep_first"),
                    "PCI DSS allows at most the first 6 digits",
                );
            }
            if keep_last > 4 {
                return fail(
                    format!("{at}.keep_last"),
                    "PCI DSS allows at most the last 4 digits",
                );
            }
            Action::Pan {
                keep_first,
                keep_last,
                mask_char,
            }
        }
        "remove" => Action::Remove,
        "replace" => {
            let Some(value) = &o.value else {
                return fail(format!("{at}.value"), "the replacement value is required");
            };
            if field {
                Action::Replace(value.to_string())
            } else {
                Action::Replace(value.as_str().unwrap_or("").to_string())
            }
        }
        _ => {
            let Some(key) = key else {
                return fail(
                    format!("{at}.action"),
                    "tokenise needs response.tokenise_key in the top-level response block",
                );
            };
            let prefix = o.prefix.clone().unwrap_or_else(|| "tok_".to_string());
            if prefix.len() > 32
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                return fail(
                    format!("{at}.prefix"),
                    "at most 32 printable ASCII characters",
                );
            }
            Action::Tokenise {
                prefix,
                key: key.clone(),
            }
        }
    })
}

/// The policy of a route: route rules, then global ones; per detector the route's entry, else
/// the global one; header removals of both, other settings from the route if it sets them.
fn merge(
    global: Option<&Part>,
    route: Option<&Part>,
    path: &str,
) -> Result<ResponsePolicy, ConfigError> {
    let parts = [route, global];
    let mut rules: Vec<FieldRule> = parts
        .iter()
        .flatten()
        .flat_map(|p| p.rules.iter().cloned())
        .collect();
    let detector = |slot: usize| -> Option<DetectorRule> {
        parts
            .iter()
            .flatten()
            .find_map(|p| p.detectors.get(slot).cloned().flatten())
            .flatten()
    };
    let mut detectors = [detector(0), detector(1), detector(2)];
    let setting = |f: fn(&Part) -> Option<u8>| parts.iter().flatten().find_map(|p| f(p));
    let upstream_errors = setting(|p| p.upstream_errors.map(|u| u as u8));
    let non_json = setting(|p| p.non_json.map(|n| n as u8));
    let max_body_bytes = parts
        .iter()
        .flatten()
        .find_map(|p| p.max_body_bytes)
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let headers = headers::compile(
        global.and_then(|g| g.headers.as_ref()),
        route.and_then(|r| r.headers.as_ref()),
        &format!("{path}.headers"),
    )
    .map_err(|(path, message)| ConfigError { path, message })?;

    let mut scopes: Vec<String> = Vec::new();
    let mut bit = |scope: &Option<String>| -> Result<Option<u8>, ConfigError> {
        let Some(scope) = scope else { return Ok(None) };
        let index = match scopes.iter().position(|s| s == scope) {
            Some(i) => i,
            None => {
                scopes.push(scope.clone());
                scopes.len() - 1
            }
        };
        if index >= MAX_SCOPES {
            return fail(path, "at most 64 distinct unmask scopes");
        }
        Ok(u8::try_from(index).ok())
    };
    for rule in &mut rules {
        rule.unmask = bit(&rule.scope)?;
    }
    for d in detectors.iter_mut().flatten() {
        d.unmask = bit(&d.scope)?;
    }
    let rewrites = !rules.is_empty() || detectors.iter().any(Option::is_some);
    let [detect_pan, detect_iban, detect_email] = detectors;
    Ok(ResponsePolicy {
        rules,
        detect_pan,
        detect_iban,
        detect_email,
        scopes,
        headers,
        sanitise_upstream_errors: upstream_errors != Some(UpstreamErrors::Pass as u8),
        // What finguard cannot parse cannot be redacted: refused by default where bodies are
        // rewritten; elsewhere (header scrubbing only) non-JSON passes unless refused.
        refuse_non_json: match non_json {
            Some(n) => n == NonJson::Refuse as u8,
            None => rewrites,
        },
        max_body_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn raw(v: serde_json::Value) -> RawResponse {
        serde_json::from_value(v).unwrap()
    }

    fn error(global: serde_json::Value, route: Option<serde_json::Value>) -> ConfigError {
        let defaults = match ResponseDefaults::compile(Some(raw(global))) {
            Ok(d) => d,
            Err(e) => return e,
        };
        defaults
            .for_route(route.map(raw), "routes[1].response")
            .unwrap_err()
    }

    #[test]
    fn errors_name_their_path_and_never_the_key() {
        let e = error(
            json!({"rules": [{"pointer": "/a", "action": "tokenise"}]}),
            None,
        );
        assert_eq!(e.path, "response.rules[0].action");
        let e = error(json!({"tokenise_key": "c2hvcnQ="}), None);
        assert_eq!(e.path, "response.tokenise_key");
        assert!(!e.message.contains("c2hvcnQ"));
        let e = error(json!({}), Some(json!({"tokenise_key": KEY})));
        assert_eq!(e.path, "routes[1].response.tokenise_key");
        let e = error(
            json!({}),
            Some(json!({"rules": [{"pointer": "a", "action": "mask"}]})),
        );
        assert_eq!(e.path, "routes[1].response.rules[0].pointer");
        let e = error(
            json!({}),
            Some(json!({"rules": [{"pointer": "/a", "action": "pan", "keep_first": 8}]})),
        );
        assert_eq!(e.path, "routes[1].response.rules[0].keep_first");
        let e = error(
            json!({}),
            Some(json!({"rules": [{"pointer": "/a", "action": "remove", "keep_last": 2}]})),
        );
        assert_eq!(e.path, "routes[1].response.rules[0].keep_last");
        let e = error(
            json!({"detect": [{"detector": "iban", "action": "pan"}]}),
            None,
        );
        assert_eq!(e.path, "response.detect[0].action");
        let e = error(json!({"detect": ["ssn"]}), None);
        assert_eq!(e.path, "response.detect[0]");
        let e = error(json!({"headers": {"remove": ["content-length"]}}), None);
        assert_eq!(e.path, "response.headers.remove[0]");
        let many: Vec<_> = (0..65)
            .map(|i| json!({"pointer": "/a", "action": "mask", "unmask_scope": format!("s{i}")}))
            .collect();
        assert_eq!(error(json!({"rules": many}), None).path, "response");
    }

    #[test]
    fn route_blocks_merge_with_the_global_one() {
        let defaults = ResponseDefaults::compile(Some(raw(json!({
            "rules": [{"pointer": "/a", "action": "remove"}],
            "detect": ["pan", "email"],
            "headers": {"remove": ["x-global"], "cache_control": "private"},
            "upstream_errors": "pass",
            "tokenise_key": KEY
        }))))
        .unwrap();
        let global = defaults
            .for_route(None, "routes[0].response")
            .unwrap()
            .unwrap();
        assert!(Rc::ptr_eq(&global, defaults.global().unwrap()));
        let route = defaults
            .for_route(
                Some(raw(json!({
                    "rules": [{"pointer": "/b", "action": "tokenise", "unmask_scope": "pii:read"}],
                    "detect": [{"detector": "email", "action": "off"}, "iban"],
                    "headers": {"remove": ["x-route"], "nosniff": false},
                    "max_body_bytes": 10
                }))),
                "routes[0].response",
            )
            .unwrap()
            .unwrap();
        let pointers: Vec<_> = route.rules.iter().map(|r| r.segments.clone()).collect();
        assert_eq!(
            pointers,
            [pointer::parse("/b").unwrap(), pointer::parse("/a").unwrap()]
        );
        assert!(route.detect_pan.is_some() && route.detect_iban.is_some());
        assert!(route.detect_email.is_none());
        assert_eq!(
            route.headers.remove,
            ["server", "x-powered-by", "x-global", "x-route"]
        );
        assert_eq!(route.headers.cache_control.as_deref(), Some("private"));
        assert!(!route
            .headers
            .add
            .iter()
            .any(|(n, _)| *n == "x-content-type-options"));
        assert!(!route.sanitise_upstream_errors);
        assert_eq!(route.max_body_bytes, 10);
        assert_eq!(route.unmasked_for(&["pii:read".into()]), 1);
        assert_eq!(route.unmasked_for(&["other".into()]), 0);
        assert!(ResponseDefaults::compile(None).unwrap().global().is_none());
    }
}
