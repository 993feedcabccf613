//! Input validation (the positive model first, then an optional negative model): what a route
//! accepts as parameters and as a body. Compiled once from `routes[i].request`; judged by the
//! pipeline in two places:
//!
//! - headers phase ([`RequestPolicy::check_params`]): path parameters, query parameters and
//!   selected headers against their schemas (400 `parameter-invalid`), and the negative model
//!   on query values;
//! - body phase ([`RequestPolicy::judge_body`]), in this order, each step cheaper than the next
//!   and run before it: size (413) -> body required / forbidden (400) -> content type, one
//!   JSON media type parsed strictly (415, [`media_type`]) -> UTF-8 (400 `body-malformed`) ->
//!   structure limits on the raw bytes (400 `json-limit-exceeded`) -> strict JSON, duplicate
//!   member names refused, by default also names equal under case folding
//!   ([`crate::tape::MemberNames`]) (400 `body-malformed`) ->
//!   schema (422 `schema-violation`) -> negative model (400 `input-suspicious`, or a log line in
//!   monitor mode). The parsed document is handed on to body-bound authorization.

pub mod formats;
pub mod limits;
pub mod negative;
pub mod params;
pub mod schema;

use crate::media_type;
use crate::problem::Violation;
use crate::reason::Reason;
use crate::tape::{MemberNames, Tape};
use limits::{LimitError, Limits, RawLimits};
use negative::{Negative, NegativeMode, RawNegative};
use schema::{BodySchema, Dialect};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Default cap on a body finguard buffers to judge.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// `routes[i].request`, as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    max_body_bytes: Option<usize>,
    content_types: Option<Vec<String>>,
    body: Option<BodyRule>,
    schema: Option<Value>,
    limits: Option<RawLimits>,
    query: Option<Value>,
    headers: Option<Value>,
    path: Option<Value>,
    negative: Option<RawNegative>,
    member_names: Option<MemberNames>,
}

/// Whether the operation takes a body.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BodyRule {
    Required,
    Optional,
    Forbidden,
}

/// What a route accepts, compiled.
#[derive(Debug)]
pub struct RequestPolicy {
    pub max_body_bytes: usize,
    /// Accepted media types (lower-case essence, no parameters); `None`: any JSON media type.
    content_types: Option<Vec<String>>,
    /// Which member names count as the same (a body naming one twice is refused).
    member_names: MemberNames,
    body: BodyRule,
    schema: Option<BodySchema>,
    limits: Limits,
    query: Option<BodySchema>,
    /// The header schema and the header names it selects.
    headers: Option<(BodySchema, Vec<String>)>,
    path: Option<BodySchema>,
    negative: Option<Negative>,
}

impl Default for RequestPolicy {
    fn default() -> RequestPolicy {
        RequestPolicy {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            content_types: None,
            member_names: MemberNames::default(),
            body: BodyRule::Optional,
            schema: None,
            limits: Limits::default(),
            query: None,
            headers: None,
            path: None,
            negative: None,
        }
    }
}

/// A refusal from validation: the reason and what broke (pointer + keyword, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: Reason,
    pub violations: Vec<Violation>,
}

impl Invalid {
    fn bare(reason: Reason) -> Invalid {
        Invalid {
            reason,
            violations: Vec::new(),
        }
    }

    fn one(reason: Reason, pointer: &str, keyword: &str) -> Invalid {
        Invalid {
            reason,
            violations: vec![Violation {
                pointer: pointer.into(),
                keyword: keyword.into(),
            }],
        }
    }
}

/// A body that passed: the parsed document (see [`Accepted::document`]) and, in
/// negative-model monitor mode, the match that was let through (for the log line).
#[derive(Debug)]
pub struct Accepted<'b> {
    /// The body on a tape (`None`: empty body).
    tape: Option<Tape<'b>>,
    /// The body as a `Value`, when judging it already needed one (negative model).
    value: Option<Value>,
    pub suspicious: Option<Violation>,
}

impl Accepted<'_> {
    /// The body as a `serde_json::Value` (`null` for an empty body): what body-bound
    /// authorization reads. Judging a body builds none unless the negative model needs it, so
    /// this builds it (from the tape, no second parse) on a route that asks for it.
    pub fn document(&self) -> Cow<'_, Value> {
        match (&self.value, &self.tape) {
            (Some(value), _) => Cow::Borrowed(value),
            (None, Some(tape)) => Cow::Owned(tape.to_value()),
            (None, None) => Cow::Owned(Value::Null),
        }
    }
}

impl RequestPolicy {
    /// Compiles `raw`; `path` is the configuration path of the `request` object
    /// (`routes[3].request`), `template_params` the route's path parameters.
    pub fn compile(
        raw: RawRequest,
        path: &str,
        template_params: &[String],
    ) -> Result<RequestPolicy, crate::config_error::ConfigError> {
        let fail = |field: &str, message: String| crate::config_error::ConfigError {
            path: format!("{path}.{field}"),
            message,
        };
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 || max_body_bytes > 16 * 1024 * 1024 {
            return Err(fail(
                "max_body_bytes",
                "must be between 1 and 16777216".into(),
            ));
        }
        let content_types = match raw.content_types {
            None => None,
            Some(types) if types.is_empty() => {
                return Err(fail("content_types", "name at least one media type".into()))
            }
            Some(types) => {
                let mut out = Vec::with_capacity(types.len());
                for (i, t) in types.iter().enumerate() {
                    // The parser requests are judged with, so that a listed type can match.
                    match media_type::parse(t) {
                        Some(m) if !m.has_parameters && m.is_json_essence() => {
                            out.push(m.essence.to_ascii_lowercase())
                        }
                        _ => {
                            return Err(fail(
                                &format!("content_types[{i}]"),
                                "must be a JSON media type (application/json or application/*+json) without parameters".into(),
                            ))
                        }
                    }
                }
                Some(out)
            }
        };
        let schema = match &raw.schema {
            None => None,
            Some(value) => {
                let dialect = Dialect::of(value).map_err(|m| fail("schema", m))?;
                Some(BodySchema::compile(value, dialect).map_err(|m| fail("schema", m))?)
            }
        };
        // A route that declares a body schema expects a body unless told otherwise.
        let body = raw.body.unwrap_or(if schema.is_some() {
            BodyRule::Required
        } else {
            BodyRule::Optional
        });
        if body == BodyRule::Forbidden && schema.is_some() {
            return Err(fail("body", "a forbidden body has no schema".into()));
        }
        let limits = match &raw.limits {
            None => Limits::default(),
            Some(l) => Limits::compile(l)
                .map_err(|(field, m)| fail(&format!("limits.{field}"), m.into()))?,
        };
        let group = |value: &Option<Value>,
                     name: &str|
         -> Result<Option<BodySchema>, crate::config_error::ConfigError> {
            value
                .as_ref()
                .map(|v| params::compile_group(v, name, template_params).map_err(|m| fail(name, m)))
                .transpose()
        };
        let query = group(&raw.query, "query")?;
        let path_schema = group(&raw.path, "path")?;
        let headers = match &raw.headers {
            None => None,
            Some(value) => {
                let names = params::selected_headers(value).map_err(|m| fail("headers", m))?;
                let compiled =
                    params::compile_group(value, "headers", &[]).map_err(|m| fail("headers", m))?;
                Some((compiled, names))
            }
        };
        let negative = raw
            .negative
            .map(Negative::compile)
            .transpose()
            .map_err(|m| fail("negative", m))?;
        Ok(RequestPolicy {
            max_body_bytes,
            content_types,
            member_names: raw.member_names.unwrap_or_default(),
            body,
            schema,
            limits,
            query,
            headers,
            path: path_schema,
            negative,
        })
    }

    /// Whether the request must be held until its body has been judged.
    pub fn reads_body(&self) -> bool {
        self.schema.is_some()
            || self.body != BodyRule::Optional
            || self.content_types.is_some()
            || self.negative.is_some()
    }

    /// Headers phase: path parameters, query parameters, selected headers, and the negative
    /// model on query values. `Ok(Some(_))`: a monitor-mode negative match to log.
    pub fn check_params<'p>(
        &self,
        request: &crate::request::RequestView,
        path_params: impl Iterator<Item = (&'p str, &'p str)>,
    ) -> Result<Option<Violation>, Invalid> {
        let invalid = |violations: Vec<Violation>| Invalid {
            reason: Reason::ParameterInvalid,
            violations,
        };
        if let Some(schema) = &self.path {
            let mut object = Map::new();
            for (name, raw) in path_params {
                let Some(value) = params::decode(raw, false) else {
                    return Err(Invalid::one(
                        Reason::ParameterInvalid,
                        "/path/*",
                        "encoding",
                    ));
                };
                object.insert(name.to_owned(), Value::String(value));
            }
            let violations = params::check(schema, &Value::Object(object), "path");
            if !violations.is_empty() {
                return Err(invalid(violations));
            }
        }
        let mut query_values: Option<Value> = None;
        if let Some(schema) = &self.query {
            let object =
                params::query_object(request.query(), schema).map_err(|v| invalid(vec![v]))?;
            let violations = params::check(schema, &object, "query");
            if !violations.is_empty() {
                return Err(invalid(violations));
            }
            query_values = Some(object);
        }
        if let Some((schema, names)) = &self.headers {
            let mut object = Map::new();
            for name in names {
                let mut values = request.headers_named(name);
                if let Some(first) = values.next() {
                    if values.next().is_some() {
                        return Err(Invalid::one(
                            Reason::ParameterInvalid,
                            &format!("/headers/{}", schema::escape(name)),
                            "duplicate",
                        ));
                    }
                    object.insert(name.clone(), Value::String(first.to_owned()));
                }
            }
            let violations = params::check(schema, &Value::Object(object), "headers");
            if !violations.is_empty() {
                return Err(invalid(violations));
            }
        }
        let Some(negative) = &self.negative else {
            return Ok(None);
        };
        let query = match (query_values, request.query()) {
            (Some(object), _) => object,
            (None, Some(raw)) => {
                // No query schema: still decode it for the detectors (undecodable: refused).
                let mut map = Map::new();
                for pair in raw.split('&').filter(|p| !p.is_empty()) {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let decoded = params::decode(name, true).zip(params::decode(value, true));
                    let Some((name, value)) = decoded else {
                        return Err(Invalid::one(
                            Reason::ParameterInvalid,
                            "/query/*",
                            "encoding",
                        ));
                    };
                    map.insert(name, Value::String(value));
                }
                Value::Object(map)
            }
            (None, None) => return Ok(None),
        };
        let declared = |name: &str| self.query.as_ref().is_some_and(|s| s.declares(name));
        let Some(mut hit) = negative.check_document(&query, &declared) else {
            return Ok(None);
        };
        hit.pointer.insert_str(0, "/query");
        match negative.mode {
            NegativeMode::Monitor => Ok(Some(hit)),
            NegativeMode::Enforce => Err(Invalid {
                reason: Reason::InputSuspicious,
                violations: vec![hit],
            }),
        }
    }

    /// Body phase, from the size check to the negative model (see the module docs). `body`
    /// is the whole body; `content_type` the request's header.
    pub fn judge_body<'b>(
        &self,
        content_type: Option<&str>,
        body: &'b [u8],
    ) -> Result<Accepted<'b>, Invalid> {
        if body.len() > self.max_body_bytes {
            return Err(Invalid::bare(Reason::BodyTooLarge));
        }
        match (self.body, body.is_empty()) {
            (BodyRule::Required, true) => return Err(Invalid::bare(Reason::BodyRequired)),
            (BodyRule::Forbidden, false) => return Err(Invalid::bare(Reason::BodyForbidden)),
            _ => {}
        }
        if body.is_empty() {
            // An absent body is judged as `null`: every body-bound rule then fails closed.
            return Ok(Accepted {
                tape: None,
                value: Some(Value::Null),
                suspicious: None,
            });
        }
        if !content_type.is_some_and(|ct| self.accepts(ct)) {
            return Err(Invalid::bare(Reason::ContentTypeUnsupported));
        }
        // A body that is not UTF-8 is refused as such, whatever else is wrong with it. The check
        // is named here only when something failed (the limit scan runs first, on bytes); on the
        // way to success the tape checks UTF-8 once itself (`Tape::parse`).
        let not_utf8 = || {
            std::str::from_utf8(body)
                .is_err()
                .then(|| Invalid::one(Reason::BodyMalformed, "", "utf-8"))
        };
        match limits::scan(body, &self.limits) {
            Ok(()) => {}
            Err(LimitError::Malformed) => {
                return Err(not_utf8().unwrap_or_else(|| Invalid::bare(Reason::BodyMalformed)))
            }
            Err(LimitError::Exceeded(limit)) => {
                return Err(not_utf8()
                    .unwrap_or_else(|| Invalid::one(Reason::JsonLimitExceeded, "", limit)))
            }
        }
        // Strict JSON onto a tape (the same documents `json::parse_strict` accepts), validated
        // in place: no `serde_json::Value` is built unless something below needs one.
        let Ok(tape) = Tape::parse_with(body, self.member_names) else {
            return Err(not_utf8().unwrap_or_else(|| Invalid::bare(Reason::BodyMalformed)));
        };
        if let Some(schema) = &self.schema {
            if !schema.is_valid(tape.root()) {
                return Err(Invalid {
                    reason: Reason::SchemaViolation,
                    violations: schema.violations(tape.root(), ""),
                });
            }
        }
        let mut suspicious = None;
        let mut value = None;
        if let Some(negative) = &self.negative {
            let declared = |name: &str| self.schema.as_ref().is_some_and(|s| s.declares(name));
            let document = value.insert(tape.to_value());
            if let Some(hit) = negative.check_document(document, &declared) {
                if negative.mode == NegativeMode::Enforce {
                    return Err(Invalid {
                        reason: Reason::InputSuspicious,
                        violations: vec![hit],
                    });
                }
                suspicious = Some(hit);
            }
        }
        Ok(Accepted {
            tape: Some(tape),
            value,
            suspicious,
        })
    }

    /// The content type is exactly one media type ([`media_type::parse`]), a JSON one in
    /// UTF-8, and, on a route with a list, listed.
    fn accepts(&self, content_type: &str) -> bool {
        let Some(media) = media_type::parse(content_type) else {
            return false;
        };
        media.is_json_utf8()
            && self.content_types.as_ref().is_none_or(|list| {
                list.iter()
                    .any(|listed| listed.eq_ignore_ascii_case(media.essence))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy(request: Value) -> Result<RequestPolicy, crate::config_error::ConfigError> {
        let raw: RawRequest =
            serde_json::from_value(request).map_err(|e| crate::config_error::ConfigError {
                path: "raw".into(),
                message: e.to_string(),
            })?;
        RequestPolicy::compile(raw, "routes[0].request", &[])
    }

    fn reason(p: &RequestPolicy, content_type: Option<&str>, body: &str) -> Option<Reason> {
        p.judge_body(content_type, body.as_bytes())
            .err()
            .map(|i| i.reason)
    }

    #[test]
    fn content_types_lists_are_compiled_with_the_strict_parser() {
        for bad in [
            "application/json; charset=utf-8",
            "text/x+json",
            "application/json, text/plain",
            "application /json",
            "application/json+x",
        ] {
            let error = policy(json!({"content_types": [bad]})).unwrap_err();
            assert_eq!(error.path, "routes[0].request.content_types[0]", "{bad}");
        }
        let p = policy(json!({"content_types": [" Application/Merge-Patch+JSON "]})).unwrap();
        let body = r#"{"a":1}"#;
        assert_eq!(
            reason(
                &p,
                Some("application/merge-patch+json; charset=UTF-8"),
                body
            ),
            None
        );
        for refused in [
            None,
            Some(""),
            Some("application/json"),
            Some("application/merge-patch+json, application/merge-patch+json"),
            Some("application/merge-patch+json; charset=utf-16"),
        ] {
            assert_eq!(
                reason(&p, refused, body),
                Some(Reason::ContentTypeUnsupported),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn member_names_default_to_unique_ignoring_case() {
        let body = r#"{"amount":1,"AMOUNT":5000}"#;
        let default = policy(json!({"body": "required"})).unwrap();
        assert_eq!(
            reason(&default, Some("application/json"), body),
            Some(Reason::BodyMalformed)
        );
        let exact = policy(json!({"body": "required", "member_names": "unique_exact"})).unwrap();
        assert_eq!(reason(&exact, Some("application/json"), body), None);
        assert_eq!(
            reason(&exact, Some("application/json"), r#"{"a":1,"\u0061":2}"#),
            Some(Reason::BodyMalformed)
        );
        let named =
            policy(json!({"body": "required", "member_names": "unique_ignoring_case"})).unwrap();
        assert_eq!(
            reason(&named, Some("application/json"), body),
            Some(Reason::BodyMalformed)
        );
        assert!(policy(json!({"member_names": "case_insensitive"})).is_err());
    }
}
