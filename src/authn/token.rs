//! Parsing a compact JWS (RFC 7515) without trusting it: strict base64url, strict JSON, header
//! parameters finguard refuses, and the signing input kept for verification.
//!
//! Nothing here checks a signature or a claim value; that is [`super::verify`]'s job. Everything
//! here is cheap and runs before any signature work.

use super::jwks::parse_algorithm;
use crate::json::parse_strict_object;
use crate::reason::Reason;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// Header parameters that would let the token choose its own key or demand extensions: keys come
/// from configuration only, and no critical extension is understood (RFC 7515 section 4.1.11).
const FORBIDDEN_HEADER_PARAMETERS: [&str; 6] = ["crit", "jku", "x5u", "jwk", "x5c", "b64"];

#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub signing_input: &'a str,
    /// The signature segment, still base64url (checked to be strictly so).
    pub signature: &'a str,
}

pub fn parse(token: &str, max_bytes: usize) -> Result<UnverifiedToken<'_>, Reason> {
    let (mut parsed, payload) = parse_jws(token, max_bytes)?;
    parsed.claims = parse_strict_object(&payload).ok_or(Reason::TokenMalformed)?;
    Ok(parsed)
}

/// The JWS layer of [`parse`]: structure, header, strict base64url everywhere; the payload is
/// returned decoded but not read (`claims` left empty). [`parse`] then requires it to be a JSON
/// object; the Wycheproof JWS vectors, whose payloads are not claims, use this layer directly.
pub(crate) fn parse_jws(
    token: &str,
    max_bytes: usize,
) -> Result<(UnverifiedToken<'_>, Vec<u8>), Reason> {
    if token.len() > max_bytes {
        return Err(Reason::TokenTooLarge);
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(Reason::TokenMalformed);
    };
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];

    let header = decode_json_object(header_b64)?;
    if FORBIDDEN_HEADER_PARAMETERS
        .iter()
        .any(|name| header.contains_key(*name))
    {
        return Err(Reason::TokenHeaderForbidden);
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => parse_algorithm(name).ok_or(Reason::AlgorithmNotAllowed)?,
        _ => return Err(Reason::TokenMalformed),
    };
    let kid = optional_string(&header, "kid")?;
    let typ = optional_string(&header, "typ")?;
    let payload = decode_b64url(payload_b64)?;
    if signature.is_empty() || !is_strict_base64url(signature) {
        return Err(Reason::TokenMalformed);
    }
    Ok((
        UnverifiedToken {
            alg,
            kid,
            typ,
            claims: Map::new(),
            signing_input,
            signature,
        },
        payload,
    ))
}

fn optional_string(header: &Map<String, Value>, name: &str) -> Result<Option<String>, Reason> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(Reason::TokenMalformed),
    }
}

fn decode_b64url(segment: &str) -> Result<Vec<u8>, Reason> {
    // URL_SAFE_NO_PAD refuses padding, the standard alphabet and non-canonical trailing bits.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Reason::TokenMalformed)
}

fn decode_json_object(segment: &str) -> Result<Map<String, Value>, Reason> {
    parse_strict_object(&decode_b64url(segment)?).ok_or(Reason::TokenMalformed)
}

fn is_strict_base64url(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && segment.len() % 4 != 1
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"sub":"alice"}"#,
        );
        let parsed = parse(&t, 8192).unwrap();
        assert_eq!(parsed.alg, Algorithm::ES256);
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.typ.as_deref(), Some("at+jwt"));
        assert_eq!(parsed.claims["sub"], "alice");
        assert_eq!(parsed.signature, "c2ln");
        assert!(t.starts_with(parsed.signing_input));
        assert_eq!(parsed.signing_input.matches('.').count(), 1);
    }

    #[test]
    fn refuses_none_unknown_and_missing_algorithms() {
        assert_eq!(
            parse(&token(r#"{"alg":"none"}"#, "{}"), 8192).unwrap_err(),
            Reason::AlgorithmNotAllowed
        );
        assert_eq!(
            parse(&token(r#"{"alg":"HS1"}"#, "{}"), 8192).unwrap_err(),
            Reason::AlgorithmNotAllowed
        );
        assert_eq!(
            parse(&token(r#"{"typ":"JWT"}"#, "{}"), 8192).unwrap_err(),
            Reason::TokenMalformed
        );
        assert_eq!(
            parse(&token(r#"{"alg":256}"#, "{}"), 8192).unwrap_err(),
            Reason::TokenMalformed
        );
    }

    #[test]
    fn refuses_duplicate_members_and_forbidden_headers() {
        let dup = token(r#"{"alg":"RS256","alg":"HS256"}"#, "{}");
        assert_eq!(parse(&dup, 8192).unwrap_err(), Reason::TokenMalformed);
        let dup_claim = token(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#);
        assert_eq!(parse(&dup_claim, 8192).unwrap_err(), Reason::TokenMalformed);
        for name in FORBIDDEN_HEADER_PARAMETERS {
            let t = token(&format!(r#"{{"alg":"RS256","{name}":"x"}}"#), "{}");
            assert_eq!(parse(&t, 8192).unwrap_err(), Reason::TokenHeaderForbidden);
        }
    }

    #[test]
    fn refuses_bad_structure_and_encoding() {
        let good = token(r#"{"alg":"RS256"}"#, "{}");
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            &format!("{good}."),
            &format!("{}=", good),
            &good.replace("c2ln", ""),
            &format!("{}.{}.c2ln=", b64(r#"{"alg":"RS256"}"#), b64("{}")),
            &format!("{}.{}.c2l+", b64(r#"{"alg":"RS256"}"#), b64("{}")),
            &format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64("[]")),
            &format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64("{} trailing")),
        ] {
            assert!(parse(bad, 8192).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn enforces_the_size_limit_before_decoding() {
        let t = token(
            r#"{"alg":"RS256"}"#,
            &format!(r#"{{"pad":"{}"}}"#, "x".repeat(9000)),
        );
        assert_eq!(parse(&t, 8192).unwrap_err(), Reason::TokenTooLarge);
    }
}
