//! Judging a parsed token against its provider: cheap claim checks first (issuer, algorithm,
//! type, time, audience), the signature last, so a flood of forged tokens costs as little as
//! possible before it is refused.

use super::jwks::KeySet;
use super::provider::Provider;
use super::token::UnverifiedToken;
use crate::reason::Reason;
use serde_json::{Map, Value};

/// A token whose signature and claims have been verified, with everything later phases need
/// precomputed once (scopes, forwarded headers), so that a cache hit does no parsing at all.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub provider: usize,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub scopes: Vec<String>,
    /// (lowercased header name, value) for each configured claim present in the token.
    pub forward_headers: Vec<(String, String)>,
    /// The claims (a JSON object), for authorization rules.
    pub claims: Value,
}

impl VerifiedToken {
    /// The time checks that must hold on every use, including cache hits.
    pub fn check_still_valid(&self, provider: &Provider, now: i64) -> Result<(), Reason> {
        check_window(self.exp, self.nbf, provider.clock_skew_seconds, now)
    }
}

/// `iss` of an unverified token: used only to pick which provider judges it.
pub fn issuer<'t>(token: &'t UnverifiedToken<'_>) -> Result<&'t str, Reason> {
    match token.claims.get("iss") {
        Some(Value::String(iss)) => Ok(iss),
        Some(_) => Err(Reason::ClaimInvalid),
        None => Err(Reason::ClaimMissing),
    }
}

/// Claim checks that need no key.
pub fn check_claims(
    token: &UnverifiedToken<'_>,
    provider: &Provider,
    now: i64,
) -> Result<Times, Reason> {
    if !provider.algorithms.contains(&token.alg) {
        return Err(Reason::AlgorithmNotAllowed);
    }
    if !provider.accepts_typ(token.typ.as_deref()) {
        return Err(Reason::TokenTypeInvalid);
    }
    let exp = numeric_date(&token.claims, "exp", Rounding::Down)?.ok_or(Reason::ClaimMissing)?;
    let nbf = numeric_date(&token.claims, "nbf", Rounding::Up)?;
    let iat = numeric_date(&token.claims, "iat", Rounding::Up)?;
    // Read by step-up (`max_age_seconds`, src/authz): the same rule, checked here once for all.
    numeric_date(&token.claims, "auth_time", Rounding::Down)?;
    let skew = provider.clock_skew_seconds;
    check_window(exp, nbf, skew, now)?;
    if iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(Reason::TokenIssuedInFuture);
    }
    if let Some(max) = provider.max_lifetime_seconds {
        // Without `iat`, the remaining lifetime is what can be bounded.
        let start = iat.unwrap_or(now);
        if exp.saturating_sub(start) > max {
            return Err(Reason::TokenLifetimeTooLong);
        }
    }
    check_audience(&token.claims, &provider.audiences)?;
    Ok(Times { exp, nbf })
}

#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub exp: i64,
    pub nbf: Option<i64>,
}

/// Verifies the signature with the provider's candidate keys (prepared at key-set load, see
/// [`super::crypto`]). The signature is decoded once, whatever the number of candidates.
pub fn check_signature(token: &UnverifiedToken<'_>, keys: &KeySet) -> Result<(), Reason> {
    use base64::Engine;
    let mut candidates = keys.candidates(token.kid.as_deref(), token.alg).peekable();
    if candidates.peek().is_none() {
        return Err(Reason::KeyUnknown);
    }
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.signature)
        .map_err(|_| Reason::SignatureInvalid)?;
    let message = token.signing_input.as_bytes();
    if candidates.any(|key| key.key.verify(token.alg, message, &signature)) {
        Ok(())
    } else {
        Err(Reason::SignatureInvalid)
    }
}

/// Builds the verified token: scopes and forwarded headers extracted once.
pub fn accept(
    token: UnverifiedToken<'_>,
    provider_index: usize,
    provider: &Provider,
    times: Times,
) -> Result<VerifiedToken, Reason> {
    let scopes = match &provider.scope_claim {
        Some(claim) => scopes(&token.claims, claim)?,
        // RFC 9068 `scope` (space-separated), else the common `scp` array.
        None if token.claims.contains_key("scope") => scopes(&token.claims, "scope")?,
        None => scopes(&token.claims, "scp")?,
    };
    let claims = Value::Object(token.claims);
    let mut forward_headers = Vec::with_capacity(provider.forward_claims.len());
    for claim in &provider.forward_claims {
        if let Some(value) = claims.pointer(&claim.pointer) {
            forward_headers.push((claim.header.clone(), header_value(value)?));
        }
    }
    Ok(VerifiedToken {
        provider: provider_index,
        exp: times.exp,
        nbf: times.nbf,
        scopes,
        forward_headers,
        claims,
    })
}

fn check_window(exp: i64, nbf: Option<i64>, skew: i64, now: i64) -> Result<(), Reason> {
    if now > exp.saturating_add(skew) {
        return Err(Reason::TokenExpired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(Reason::TokenNotYetValid);
    }
    Ok(())
}

/// The first second finguard does not accept as a NumericDate: 10000-01-01T00:00:00Z. A time
/// claim is a finite number in `0 ..= MAX_NUMERIC_DATE` (seconds since the epoch, RFC 7519
/// section 2); anything else (negative, huge, `1e30`, `2^53`, a string, a boolean, `null`) is
/// `claim-invalid`, never "far in the future" or "never expires".
pub const NUMERIC_DATE_LIMIT: i64 = 253_402_300_800;
/// The largest accepted NumericDate: 9999-12-31T23:59:59Z.
pub const MAX_NUMERIC_DATE: i64 = NUMERIC_DATE_LIMIT - 1;

/// Which way a fractional NumericDate is rounded: always toward the stricter reading of its
/// claim, so a fraction never buys time (`exp` down, `nbf`/`iat` up, `auth_time` down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    Down,
    Up,
}

/// RFC 7519 NumericDate, checked: an integer or a fractional number (RFC 7519 allows both) in
/// `0 ..= MAX_NUMERIC_DATE`; `-0` is 0. `None` for anything else.
pub fn numeric_date_value(value: &Value, rounding: Rounding) -> Option<i64> {
    let Value::Number(n) = value else {
        return None;
    };
    let seconds = if let Some(i) = n.as_i64() {
        i
    } else if n.is_u64() {
        // Above i64::MAX: far beyond the limit.
        return None;
    } else {
        let f = n.as_f64()?;
        if !f.is_finite() || !(0.0..NUMERIC_DATE_LIMIT as f64).contains(&f) {
            return None;
        }
        // In range, so the conversion is exact for the integral part.
        match rounding {
            Rounding::Down => f.floor() as i64,
            Rounding::Up => f.ceil() as i64,
        }
    };
    (0..=MAX_NUMERIC_DATE).contains(&seconds).then_some(seconds)
}

/// A time claim: absent is `None`; present but not a valid NumericDate is `claim-invalid`.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    rounding: Rounding,
) -> Result<Option<i64>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => numeric_date_value(value, rounding)
            .map(Some)
            .ok_or(Reason::ClaimInvalid),
    }
}

fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), Reason> {
    let matches = |aud: &str| accepted.iter().any(|a| a == aud);
    match claims.get("aud") {
        Some(Value::String(aud)) if matches(aud) => Ok(()),
        Some(Value::Array(auds)) if auds.iter().any(|a| a.as_str().is_some_and(matches)) => Ok(()),
        None => Err(Reason::ClaimMissing),
        Some(_) => Err(Reason::AudienceInvalid),
    }
}

/// Scopes from a space-separated string (RFC 8693 `scope`) or an array of strings (`scp`).
fn scopes(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>, Reason> {
    match claims.get(claim) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(Reason::ClaimInvalid))
            .collect(),
        Some(_) => Err(Reason::ClaimInvalid),
    }
}

/// A claim rendered as a header value: strings as they are, arrays of strings joined with ",",
/// anything else as compact JSON. A value that is not a safe header value (control characters,
/// non-ASCII) refuses the token rather than forwarding something the upstream may misparse.
fn header_value(value: &Value) -> Result<String, Reason> {
    let rendered = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    if rendered.bytes().all(|b| (0x20..0x7f).contains(&b)) && rendered.len() <= 4096 {
        Ok(rendered)
    } else {
        Err(Reason::ClaimInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::provider::ClaimHeader;
    use crate::mode::Mode;
    use jsonwebtoken::Algorithm;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: i64 = 1_800_000_000;

    fn provider() -> Provider {
        Provider {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            audiences: vec!["payments-api".into()],
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            clock_skew_seconds: 60,
            max_lifetime_seconds: Some(3600),
            typ: None,
            scope_claim: None,
            forward_claims: vec![
                ClaimHeader {
                    pointer: "/sub".into(),
                    header: "x-auth-subject".into(),
                },
                ClaimHeader {
                    pointer: "/realm/roles".into(),
                    header: "x-auth-roles".into(),
                },
            ],
            mode: Mode::Enforce,
        }
    }

    fn token(claims: Value, alg: Algorithm) -> UnverifiedToken<'static> {
        UnverifiedToken {
            alg,
            kid: None,
            typ: None,
            claims: claims.as_object().cloned().unwrap(),
            signing_input: "",
            signature: "",
        }
    }

    fn good() -> Value {
        json!({"iss": "https://idp.example", "aud": "payments-api", "exp": NOW + 300, "iat": NOW, "sub": "alice"})
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        v[key] = value;
        v
    }

    #[test]
    fn accepts_good_claims() {
        assert!(check_claims(&token(good(), Algorithm::RS256), &provider(), NOW).is_ok());
        let aud_array = with(good(), "aud", json!(["other", "payments-api"]));
        assert!(check_claims(&token(aud_array, Algorithm::ES256), &provider(), NOW).is_ok());
    }

    #[test]
    fn each_claim_rule_has_its_reason() {
        let p = provider();
        let cases = [
            (with(good(), "exp", json!(NOW - 61)), Reason::TokenExpired),
            (
                with(good(), "nbf", json!(NOW + 61)),
                Reason::TokenNotYetValid,
            ),
            (
                with(good(), "iat", json!(NOW + 61)),
                Reason::TokenIssuedInFuture,
            ),
            (
                with(good(), "exp", json!(NOW + 3601)),
                Reason::TokenLifetimeTooLong,
            ),
            (with(good(), "aud", json!("other")), Reason::AudienceInvalid),
            (
                with(good(), "aud", json!(["other"])),
                Reason::AudienceInvalid,
            ),
            (with(good(), "exp", json!("soon")), Reason::ClaimInvalid),
        ];
        for (claims, reason) in cases {
            assert_eq!(
                check_claims(&token(claims.clone(), Algorithm::RS256), &p, NOW).unwrap_err(),
                reason,
                "{claims}"
            );
        }
        let mut no_exp = good();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            check_claims(&token(no_exp, Algorithm::RS256), &p, NOW).unwrap_err(),
            Reason::ClaimMissing
        );
        assert_eq!(
            check_claims(&token(good(), Algorithm::PS256), &p, NOW).unwrap_err(),
            Reason::AlgorithmNotAllowed
        );
    }

    /// Class 8 of issue #19: a validly signed token must not be "never expiring" because its
    /// time claim is absurd. Every claim read as a NumericDate follows one rule.
    #[test]
    fn time_claims_must_be_sane_numeric_dates() {
        // The lifetime bound must not be what refuses the absurd values.
        let mut p = provider();
        p.max_lifetime_seconds = None;
        // Parsed from text, as a token's payload is: serde_json's own reading of each spelling.
        let bad = [
            "1e30",
            "18446744075509551616", // 2^64 + NOW
            "18446744073709551615", // u64::MAX
            "9223372036854775807",  // i64::MAX
            "9007199254740992",     // 2^53
            "253402300800",         // 10000-01-01T00:00:00Z
            "253402300800.0",
            "253402300799.5e0", // rounds up past the bound for nbf/iat
            "1e308",
            "-1",
            "-1800000000",
            "-0.5",
            "-1e30",
            "\"1800000300\"",
            "true",
            "false",
            "null",
            "[1800000300]",
            "{\"$date\":1800000300}",
        ];
        for claim in ["exp", "nbf", "iat", "auth_time"] {
            for text in bad {
                let value: Value = serde_json::from_str(text).unwrap();
                let claims = with(good(), claim, value);
                let result = check_claims(&token(claims, Algorithm::RS256), &p, NOW);
                // 253402300799.5 is a valid `exp` and `auth_time` (rounded down to the bound).
                if text == "253402300799.5e0" && (claim == "exp" || claim == "auth_time") {
                    assert!(result.is_ok(), "{claim}: {text}: {result:?}");
                    continue;
                }
                assert_eq!(result.unwrap_err(), Reason::ClaimInvalid, "{claim}: {text}");
            }
        }
        // Beyond f64 the payload is not JSON finguard reads: refused at parsing (`token-malformed`).
        assert!(serde_json::from_str::<Value>("1e400").is_err());
        // The bound itself and the neighbours that are plain dates.
        assert_eq!(
            numeric_date_value(&json!(253_402_300_799i64), Rounding::Up),
            Some(MAX_NUMERIC_DATE)
        );
        for text in ["0", "-0", "-0.0", "0.0"] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                numeric_date_value(&value, Rounding::Down),
                Some(0),
                "{text}"
            );
        }
        // Fractional dates are allowed (RFC 7519) and rounded toward the stricter reading.
        let f: Value = serde_json::from_str("1800000000.25").unwrap();
        assert_eq!(numeric_date_value(&f, Rounding::Down), Some(NOW));
        assert_eq!(numeric_date_value(&f, Rounding::Up), Some(NOW + 1));
        let e: Value = serde_json::from_str("1.8e9").unwrap();
        assert_eq!(numeric_date_value(&e, Rounding::Down), Some(NOW));
        // A legitimate long-lived `exp` below the bound still meets the lifetime rule, not this one.
        assert_eq!(
            check_claims(
                &token(
                    with(good(), "exp", json!(MAX_NUMERIC_DATE)),
                    Algorithm::RS256
                ),
                &provider(),
                NOW
            )
            .unwrap_err(),
            Reason::TokenLifetimeTooLong
        );
        let ok = with(good(), "auth_time", json!(NOW - 10));
        assert!(check_claims(&token(ok, Algorithm::RS256), &p, NOW).is_ok());
    }

    #[test]
    fn skew_is_tolerated() {
        let p = provider();
        assert!(check_claims(
            &token(with(good(), "exp", json!(NOW - 59)), Algorithm::RS256),
            &p,
            NOW
        )
        .is_ok());
        assert!(check_claims(
            &token(with(good(), "nbf", json!(NOW + 59)), Algorithm::RS256),
            &p,
            NOW
        )
        .is_ok());
        assert!(check_claims(
            &token(
                with(good(), "exp", json!((NOW + 10) as f64 + 0.5)),
                Algorithm::RS256
            ),
            &p,
            NOW
        )
        .is_ok());
    }

    #[test]
    fn typ_allowlist_follows_rfc_7515() {
        let mut p = provider();
        p.typ = Some(vec!["at+jwt".into()]);
        let mut t = token(good(), Algorithm::RS256);
        assert_eq!(
            check_claims(&t, &p, NOW).unwrap_err(),
            Reason::TokenTypeInvalid
        );
        t.typ = Some("application/AT+JWT".into());
        assert!(check_claims(&t, &p, NOW).is_ok());
        t.typ = Some("JWT".into());
        assert_eq!(
            check_claims(&t, &p, NOW).unwrap_err(),
            Reason::TokenTypeInvalid
        );
    }

    #[test]
    fn accept_extracts_scopes_and_forwarded_headers() {
        let claims =
            json!({"sub": "alice", "scope": "a  b", "realm": {"roles": ["teller", "auditor"]}});
        let t = token(claims, Algorithm::RS256);
        let v = accept(
            t,
            0,
            &provider(),
            Times {
                exp: NOW,
                nbf: None,
            },
        )
        .unwrap();
        assert_eq!(v.scopes, ["a", "b"]);
        assert_eq!(
            v.forward_headers,
            [
                ("x-auth-subject".to_string(), "alice".to_string()),
                ("x-auth-roles".to_string(), "teller,auditor".to_string())
            ]
        );
        let evil = token(json!({"sub": "alice\r\nx-admin: 1"}), Algorithm::RS256);
        assert_eq!(
            accept(
                evil,
                0,
                &provider(),
                Times {
                    exp: NOW,
                    nbf: None
                }
            )
            .unwrap_err(),
            Reason::ClaimInvalid
        );
        let scp = token(json!({"scope": ["a", 1]}), Algorithm::RS256);
        assert_eq!(
            accept(
                scp,
                0,
                &provider(),
                Times {
                    exp: NOW,
                    nbf: None
                }
            )
            .unwrap_err(),
            Reason::ClaimInvalid
        );
    }
}
