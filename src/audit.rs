//! The audit trail: one JSON event per request, built at stream end from what the phases
//! decided, and the names of the metrics finguard defines.
//!
//! An event never carries a token, secret, API key, body, path or personal data in the clear:
//! the caller is named by client id, by a keyed hash of its subject (or the subject, or nothing:
//! `audit.subject`) and by a keyed hash of the token's `jti`. The hash is HMAC-SHA-256 keyed by
//! `audit.hash_key` (or by a fixed key when none is configured, which still correlates but
//! can be brute-forced for guessable subjects such as e-mail addresses: configure a key).

use crate::authn::apikey::ApiKeys;
use crate::authn::caller::Caller;
use crate::config_error::ConfigError;
use crate::problem::is_safe_request_id;
use crate::reason::{Class, Reason};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    subject: SubjectMode,
    /// Base64 (standard or URL-safe) key of at least 16 bytes for the identifier hashes.
    hash_key: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            enabled: true,
            subject: SubjectMode::default(),
            hash_key: None,
        }
    }
}

/// How the token subject appears in audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectMode {
    /// A keyed hash: correlates one subject's requests without naming them.
    #[default]
    Hash,
    /// The `sub` claim as it is (when subjects are opaque ids, not personal data).
    Clear,
    /// Left out.
    Omit,
}

const DEFAULT_HASH_KEY: &[u8] = b"finguard-audit-default-hash-key!";

#[derive(Debug)]
pub struct AuditSettings {
    pub enabled: bool,
    pub subject: SubjectMode,
    hash_key: Vec<u8>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            subject: SubjectMode::Hash,
            hash_key: DEFAULT_HASH_KEY.to_vec(),
        }
    }
}

impl AuditSettings {
    pub fn compile(raw: RawAudit) -> Result<AuditSettings, ConfigError> {
        let hash_key = match raw.hash_key {
            None => DEFAULT_HASH_KEY.to_vec(),
            Some(text) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .or_else(|_| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim())
                    });
                match decoded {
                    Ok(key) if key.len() >= 16 => key,
                    // Never quote the key back.
                    _ => {
                        return Err(ConfigError {
                            path: "audit.hash_key".into(),
                            message: "must be base64 of at least 16 bytes".into(),
                        })
                    }
                }
            }
        };
        Ok(AuditSettings {
            enabled: raw.enabled,
            subject: raw.subject,
            hash_key,
        })
    }

    /// 128 bits of HMAC-SHA-256, hex: enough to correlate, short enough for log lines.
    pub fn hash(&self, value: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.hash_key) else {
            return String::new();
        };
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        digest
            .iter()
            .take(16)
            .fold(String::with_capacity(32), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

/// What was decided for the request as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Forwarded: every check passed (or the route is public).
    #[default]
    Allow,
    /// Answered by finguard with a refusal.
    Refuse,
    /// A refusal that monitor mode turned into a forward.
    Monitor,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Refuse => "refuse",
            Decision::Monitor => "monitor",
        }
    }
}

/// What the host accumulates for one request while its phases run.
#[derive(Debug, Default, Clone)]
pub struct AuditRecord {
    pub decision: Decision,
    pub reason: Option<Reason>,
    pub route: Option<String>,
    pub caller: Option<Caller>,
    pub locked_out: bool,
    /// Fields the response phase redacted.
    pub redacted_fields: u32,
    /// Microseconds spent inside finguard's callbacks for this request (timed requests only:
    /// those whose audit line is written, and a sample of the others).
    pub filter_us: u64,
    /// The decision and reason last published to Envoy's filter state for the access log, so
    /// that a phase that changes neither does not publish them again.
    pub published: Option<(Decision, Option<Reason>)>,
}

/// One line of the audit trail (serialised as JSON).
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub request_id: Option<&'a str>,
    pub method: Option<&'a str>,
    pub route: Option<&'a str>,
    /// `jwt`, `api_key` or `none`.
    pub credential: &'static str,
    pub client_id: Option<&'a str>,
    /// Per `audit.subject`: keyed hash (`h:` prefix), clear, or absent.
    pub subject: Option<String>,
    /// Keyed hash of the token's `jti`.
    pub jti_hash: Option<String>,
    pub api_key_id: Option<&'a str>,
    pub decision: &'static str,
    /// The refusal (or, in monitor mode, the would-be refusal) reason slug.
    pub reason: Option<&'static str>,
    /// The status sent to the client.
    pub status: Option<u32>,
    /// `limited` when a rate or in-flight limit refused, `checked` when limits applied and
    /// passed, `none` when the route has none.
    pub rate_limit: &'static str,
    pub locked_out: bool,
    pub redacted_fields: u32,
    pub filter_us: u64,
}

/// Everything the host knows at stream end.
pub struct StreamFacts<'a> {
    pub now_ms: i64,
    pub request_id: Option<&'a str>,
    pub method: Option<&'a str>,
    pub status: Option<u32>,
    pub route_has_limits: bool,
}

impl AuditRecord {
    pub fn event<'a>(
        &'a self,
        settings: &AuditSettings,
        api_keys: &'a ApiKeys,
        facts: StreamFacts<'a>,
    ) -> AuditEvent<'a> {
        let mut event = AuditEvent {
            time: rfc3339_ms(facts.now_ms),
            // Envoy's UUIDs, or a client's validated the same way as in problem bodies.
            request_id: facts.request_id.filter(|id| is_safe_request_id(id)),
            method: facts
                .method
                .filter(|m| m.bytes().all(|b| b.is_ascii_alphabetic())),
            route: self.route.as_deref(),
            credential: "none",
            client_id: None,
            subject: None,
            jti_hash: None,
            api_key_id: None,
            decision: self.decision.as_str(),
            reason: self.reason.map(Reason::slug),
            status: facts.status,
            rate_limit: match self.reason.map(Reason::class) {
                Some(Class::Limited) => "limited",
                _ if facts.route_has_limits => "checked",
                _ => "none",
            },
            locked_out: self.locked_out,
            redacted_fields: self.redacted_fields,
            filter_us: self.filter_us,
        };
        match &self.caller {
            Some(Caller::Token(token)) => {
                let claim = |name: &str| token.claims.get(name).and_then(|v| v.as_str());
                event.credential = "jwt";
                event.client_id = claim("client_id").or_else(|| claim("azp"));
                event.subject = claim("sub").and_then(|sub| match settings.subject {
                    SubjectMode::Hash => Some(format!("h:{}", settings.hash(sub))),
                    SubjectMode::Clear => Some(sub.to_owned()),
                    SubjectMode::Omit => None,
                });
                event.jti_hash = claim("jti").map(|jti| settings.hash(jti));
            }
            Some(Caller::ApiKey(index)) => {
                event.credential = "api_key";
                if let Some(key) = api_keys.keys.get(*index) {
                    event.client_id = Some(&key.client);
                    event.api_key_id = Some(&key.id);
                }
            }
            None => {}
        }
        event
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from Unix milliseconds (proleptic Gregorian, days-from-civil
/// inverse), without a date-time dependency.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

/// Metric names. Envoy prefixes them with `wasmcustom.`; the dotted `name.value` pairs become
/// Prometheus labels through the `stats_tags` rules in envoy/envoy.yaml (see docs/deploying.md).
pub mod metric {
    use crate::reason::Reason;

    /// Requests by decision, reason and route: `finguard.requests.decision.<d>.reason.<r>.route.<id>`.
    pub fn requests(decision: &str, reason: Option<Reason>, route: Option<&str>) -> String {
        format!(
            "finguard.requests.decision.{decision}.reason.{}.route.{}",
            reason.map_or("none", Reason::slug),
            route.map_or_else(|| "none".to_owned(), sanitize)
        )
    }

    /// Filter time per phase (histograms, microseconds): `finguard.filter_time_us.phase.<p>`.
    /// Constants, so that recording one allocates nothing.
    pub mod phase_time {
        pub const REQUEST_HEADERS: &str = "finguard.filter_time_us.phase.request_headers";
        pub const REQUEST_BODY: &str = "finguard.filter_time_us.phase.request_body";
        pub const RESPONSE_HEADERS: &str = "finguard.filter_time_us.phase.response_headers";
        pub const RESPONSE_BODY: &str = "finguard.filter_time_us.phase.response_body";
    }

    pub const AUTHN_FAILURES: &str = "finguard.authn_failures";
    pub const LOCKOUTS: &str = "finguard.lockouts";
    pub const RATE_LIMITED: &str = "finguard.rate_limited";
    pub const REDACTED_FIELDS: &str = "finguard.redacted_fields";
    pub const CONFIG_LOADED: &str = "finguard.config.loaded";
    pub const CONFIG_REJECTED: &str = "finguard.config.rejected";

    pub fn jwks_fetch(provider: &str, ok: bool) -> String {
        format!(
            "finguard.jwks_fetch.provider.{}.result.{}",
            sanitize(provider),
            if ok { "success" } else { "failure" }
        )
    }

    pub fn jwks_key_age(provider: &str) -> String {
        format!(
            "finguard.jwks_key_age_seconds.provider.{}",
            sanitize(provider)
        )
    }

    /// Stat name segments are configuration values; dots would shift the tag rules.
    fn sanitize(value: &str) -> String {
        value
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::verify::VerifiedToken;
    use std::rc::Rc;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn time_is_rfc3339_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_478_400_123), "2026-11-24T00:00:00.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    fn token_caller() -> Caller {
        Caller::Token(Rc::new(VerifiedToken {
            provider: 0,
            exp: 0,
            nbf: None,
            scopes: vec![],
            forward_headers: vec![],
            claims: serde_json::json!({
                "sub": "alice@example.com", "client_id": "app-1", "jti": "tok-123"
            }),
        }))
    }

    #[test]
    fn event_names_the_caller_without_personal_data() {
        let record = AuditRecord {
            decision: Decision::Refuse,
            reason: Some(Reason::ScopeInsufficient),
            route: Some("pay".into()),
            caller: Some(token_caller()),
            ..AuditRecord::default()
        };
        let settings = AuditSettings::default();
        let keys = ApiKeys::default();
        let facts = StreamFacts {
            now_ms: 0,
            request_id: Some("<x>"),
            method: Some("POST"),
            status: Some(403),
            route_has_limits: false,
        };
        let line = serde_json::to_string(&record.event(&settings, &keys, facts)).unwrap();
        assert!(!line.contains("alice"), "{line}");
        assert!(!line.contains("tok-123"), "{line}");
        assert!(!line.contains("<x>"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["client_id"], "app-1");
        assert_eq!(v["reason"], "scope-insufficient");
        assert_eq!(v["credential"], "jwt");
        assert_eq!(v["status"], 403);
        assert_eq!(
            v["subject"].as_str().unwrap(),
            format!("h:{}", settings.hash("alice@example.com"))
        );
        assert_eq!(v["jti_hash"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn hash_key_changes_the_hash_and_is_never_quoted() {
        let raw: RawAudit = serde_json::from_value(serde_json::json!({
            "hash_key": "c2VjcmV0LWtleS0xMjM0NTY3OA=="
        }))
        .unwrap();
        let keyed = AuditSettings::compile(raw).unwrap();
        assert_ne!(keyed.hash("a"), AuditSettings::default().hash("a"));
        let raw: RawAudit =
            serde_json::from_value(serde_json::json!({"hash_key": "c2hvcnQ="})).unwrap();
        let e = AuditSettings::compile(raw).unwrap_err();
        assert_eq!(e.path, "audit.hash_key");
        assert!(!e.message.contains("c2hvcnQ"));
    }

    #[test]
    fn metric_names_keep_their_tag_structure() {
        assert_eq!(
            metric::requests("refuse", Some(Reason::TokenExpired), Some("pay.v1")),
            "finguard.requests.decision.refuse.reason.token-expired.route.pay_v1"
        );
    }
}
