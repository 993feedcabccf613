//! JWTs for tests: well-formed tokens signed with the fixture keys, and the malformed or hostile
//! ones an attacker would send.
//!
//! Tokens are assembled by hand (header JSON, claims JSON, base64url, then
//! [`jsonwebtoken::crypto::sign`]) rather than with `jsonwebtoken::encode`, so that a test can put
//! anything in the header — unknown members, a duplicate `alg`, `crit` — and still sign it properly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map, Value};

use crate::config::{AUDIENCE, HS_ISSUER, ISSUER};
use crate::fixtures;

/// A fixture signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// `rsa-a.pem`, in `jwks.json`.
    RsaA,
    /// `rsa-b.pem`, only in `jwks-rsa-b.json` (rotation).
    RsaB,
    /// `ec256.pem`, P-256.
    Ec,
    /// `ed25519.pem`.
    Ed,
    /// `hs256.secret`, only configured inline as an `oct` key.
    Hs,
}

impl Key {
    /// The `kid` the fixture JWKS files give this key.
    pub fn kid(self) -> &'static str {
        match self {
            Key::RsaA => "rsa-a",
            Key::RsaB => "rsa-b",
            Key::Ec => "ec-a",
            Key::Ed => "ed-a",
            Key::Hs => "hs-a",
        }
    }

    /// The key the fixtures hold for an algorithm (HS* -> hs-a, RS*/PS* -> rsa-a, ...).
    pub fn for_algorithm(alg: Algorithm) -> Key {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Key::Hs,
            Algorithm::ES256 | Algorithm::ES384 => Key::Ec,
            Algorithm::EdDSA => Key::Ed,
            _ => Key::RsaA,
        }
    }

    fn encoding_key(self) -> EncodingKey {
        let loaded = match self {
            Key::RsaA => EncodingKey::from_rsa_pem(&fixtures::read("rsa-a.pem")),
            Key::RsaB => EncodingKey::from_rsa_pem(&fixtures::read("rsa-b.pem")),
            Key::Ec => EncodingKey::from_ec_pem(&fixtures::read("ec256.pem")),
            Key::Ed => EncodingKey::from_ed_pem(&fixtures::read("ed25519.pem")),
            Key::Hs => Ok(EncodingKey::from_secret(&fixtures::hs256_secret())),
        };
        loaded.unwrap_or_else(|err| panic!("loading fixture key {self:?}: {err}"))
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A process-unique token id.
fn unique_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        now(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Builds a signed JWT. Defaults: `typ: JWT`, the `kid` of the fixture key for the algorithm;
/// claims `iss` https://idp.example (https://hs.example for HS*), `aud` payments-api,
/// `sub` cust-42, `iat` now, `exp` now+300, `scope` "accounts:read payments:write", and a unique
/// `jti`, so that two built tokens never share finguard's verified-token cache entry.
#[derive(Clone, Debug)]
pub struct TokenBuilder {
    alg: Algorithm,
    key: Key,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl TokenBuilder {
    pub fn new(alg: Algorithm) -> Self {
        let key = Key::for_algorithm(alg);
        let issuer = if key == Key::Hs { HS_ISSUER } else { ISSUER };
        let now = now();
        let header = json!({"alg": alg_name(alg), "typ": "JWT", "kid": key.kid()});
        let claims = json!({
            "iss": issuer,
            "aud": AUDIENCE,
            "sub": "cust-42",
            "iat": now,
            "exp": now + 300,
            "scope": "accounts:read payments:write",
            "jti": unique_id(),
        });
        TokenBuilder {
            alg,
            key,
            header: into_map(header),
            claims: into_map(claims),
        }
    }

    /// RS256 with rsa-a, the common case.
    pub fn rs256() -> Self {
        Self::new(Algorithm::RS256)
    }

    /// Signs with another fixture key and sets its `kid` (use [`TokenBuilder::header`] after this
    /// to lie about the kid).
    pub fn key(mut self, key: Key) -> Self {
        self.key = key;
        self.header.insert("kid".into(), key.kid().into());
        self
    }

    /// Sets (or replaces) a header member.
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.into(), value.into());
        self
    }

    /// Removes a header member.
    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    /// Sets (or replaces) a claim.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Removes a claim.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets `sub`.
    pub fn subject(self, sub: &str) -> Self {
        self.claim("sub", sub)
    }

    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", scope)
    }

    pub fn iss(self, iss: &str) -> Self {
        self.claim("iss", iss)
    }

    pub fn aud(self, aud: impl Into<Value>) -> Self {
        self.claim("aud", aud)
    }

    /// `exp` = now + `secs` (negative: already expired).
    pub fn expires_in(self, secs: i64) -> Self {
        self.claim("exp", now() + secs)
    }

    /// `nbf` = now + `secs`.
    pub fn not_before_in(self, secs: i64) -> Self {
        self.claim("nbf", now() + secs)
    }

    /// `iat` = now + `secs`.
    pub fn issued_in(self, secs: i64) -> Self {
        self.claim("iat", now() + secs)
    }

    /// The claims as they will be signed.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The compact serialisation.
    pub fn sign(&self) -> String {
        let header = serde_json::to_vec(&self.header).unwrap_or_default();
        sign_raw(&header, &claims_json(&self.claims), self.key, self.alg)
    }
}

/// Signs `header_json.claims_json` exactly as given (no re-serialisation of the header), so the
/// header can be JSON that `serde_json` would never produce.
pub fn sign_raw(header_json: &[u8], claims_json: &[u8], key: Key, alg: Algorithm) -> String {
    let signing_input = format!("{}.{}", b64(header_json), b64(claims_json));
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key.encoding_key(), alg)
        .unwrap_or_else(|err| panic!("signing with {key:?} as {alg:?}: {err}"));
    format!("{signing_input}.{signature}")
}

/// `{"alg":"none"}` and an empty signature, with the default claims.
pub fn alg_none() -> String {
    let claims = TokenBuilder::rs256().claims().clone();
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims_json(&claims))
    )
}

/// A valid RS256 token whose payload was then rewritten by `edit` and re-encoded, keeping the
/// original signature.
pub fn tampered(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let token = TokenBuilder::rs256().scope("accounts:read").sign();
    let mut parts = token.split('.');
    let (header, payload, signature) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut claims: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    edit(&mut claims);
    format!("{header}.{}.{signature}", b64(&claims_json(&claims)))
}

/// A header with two `alg` members, properly signed with RS256: a parser that keeps the last
/// member sees a valid RS256 token, one that keeps the first sees `none`. Must be refused.
pub fn duplicate_alg() -> String {
    let header = br#"{"alg":"none","typ":"JWT","kid":"rsa-a","alg":"RS256"}"#;
    let claims = TokenBuilder::rs256().claims().clone();
    sign_raw(header, &claims_json(&claims), Key::RsaA, Algorithm::RS256)
}

/// Algorithm confusion: HS256 with the rsa-a public key PEM as the HMAC secret and `kid: rsa-a`.
/// A verifier that picks the algorithm from the token and feeds it the RSA key's bytes accepts it.
pub fn hs256_with_rsa_public_key() -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": Key::RsaA.kid()});
    let claims = TokenBuilder::rs256().claims().clone();
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(&claims_json(&claims))
    );
    let key = EncodingKey::from_secret(&fixtures::read("rsa-a.pub.pem"));
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256)
        .unwrap_or_else(|err| panic!("HMAC signing: {err}"));
    format!("{signing_input}.{signature}")
}

/// A properly signed RS256 token longer than 8 KiB (the default `token.max_bytes` is 8192).
pub fn oversized() -> String {
    let token = TokenBuilder::rs256().claim("pad", "x".repeat(9000)).sign();
    debug_assert!(token.len() > 8192);
    token
}

/// A properly signed RS256 token whose header carries `jku` (a key URL the verifier must never
/// follow).
pub fn with_jku() -> String {
    TokenBuilder::rs256()
        .header("jku", "https://attacker.example/jwks.json")
        .sign()
}

/// A properly signed RS256 token whose header carries `crit` naming an extension finguard does
/// not understand (RFC 7515 §4.1.11: must be rejected).
pub fn with_crit() -> String {
    TokenBuilder::rs256()
        .header("crit", json!(["exp-ext"]))
        .header("exp-ext", true)
        .sign()
}

fn alg_name(alg: Algorithm) -> String {
    // `Algorithm` serialises as its JOSE name ("RS256", "EdDSA", ...).
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{alg:?}"))
}

fn claims_json(claims: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(claims).unwrap_or_default()
}

fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{decode, DecodingKey, Validation};

    use super::*;

    fn verify(token: &str, alg: Algorithm, key: DecodingKey) -> Map<String, Value> {
        let mut validation = Validation::new(alg);
        validation.set_audience(&[AUDIENCE]);
        decode::<Map<String, Value>>(token, &key, &validation)
            .unwrap_or_else(|err| panic!("{alg:?} token does not verify: {err}"))
            .claims
    }

    #[test]
    fn signed_tokens_verify_with_the_fixture_jwks() {
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&fixtures::jwks()).unwrap();
        for alg in [
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ] {
            let kid = Key::for_algorithm(alg).kid();
            let jwk = jwks.find(kid).unwrap();
            let claims = verify(
                &TokenBuilder::new(alg).sign(),
                alg,
                DecodingKey::from_jwk(jwk).unwrap(),
            );
            assert_eq!(claims["iss"], ISSUER);
        }
        let hs = verify(
            &TokenBuilder::new(Algorithm::HS256).sign(),
            Algorithm::HS256,
            DecodingKey::from_secret(&fixtures::hs256_secret()),
        );
        assert_eq!(hs["iss"], HS_ISSUER);
    }

    #[test]
    fn attack_tokens_have_the_intended_shape() {
        assert!(alg_none().ends_with('.'));
        assert!(oversized().len() > 8192);

        let dup = duplicate_alg();
        let header = URL_SAFE_NO_PAD
            .decode(dup.split('.').next().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(header)
                .unwrap()
                .matches("\"alg\"")
                .count(),
            2
        );

        // The confusion token verifies with the public key PEM as an HMAC secret.
        let confused = hs256_with_rsa_public_key();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        decode::<Map<String, Value>>(
            &confused,
            &DecodingKey::from_secret(&fixtures::read("rsa-a.pub.pem")),
            &validation,
        )
        .unwrap();

        // Tampering keeps the signature but changes the payload.
        let tampered = tampered(|claims| {
            claims.insert("scope".into(), "payments:write".into());
        });
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&fixtures::jwks()).unwrap();
        let key = DecodingKey::from_jwk(jwks.find("rsa-a").unwrap()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[AUDIENCE]);
        assert!(decode::<Map<String, Value>>(&tampered, &key, &validation).is_err());
    }
}
