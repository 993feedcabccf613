//! JSON Web Key Sets: parsing a JWKS document into verification keys, and finding the keys that
//! may verify a given token.
//!
//! A key is only ever used for the algorithm family its JWK declares: an RSA key verifies RS*/PS*,
//! a P-256 key ES256, an Ed25519 key EdDSA, a symmetric (`oct`) key HS*. That is what makes
//! algorithm confusion (an HS256 token "signed" with an RSA public key) impossible: there is no
//! code path that turns an RSA key into an HMAC secret.

use super::crypto::{self, PublicKey};
use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// Upper bound on keys kept from one JWKS: a token without `kid` is tried against each compatible
/// key, so the count bounds the signature work one token can cause.
pub const MAX_KEYS: usize = 32;
/// RSA moduli below 2048 bits are refused (NIST SP 800-131A). Bits, not bytes: a 2041 to
/// 2047-bit modulus also takes 256 bytes.
pub const MIN_RSA_MODULUS_BITS: usize = 2048;
/// HMAC secrets shorter than the hash output are refused (RFC 7518 section 3.2).
const fn min_hmac_secret_bytes(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
    Hmac,
}

impl KeyFamily {
    pub fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyFamily::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyFamily::EcP256 => alg == ES256,
            KeyFamily::EcP384 => alg == ES384,
            KeyFamily::Ed25519 => alg == EdDSA,
            KeyFamily::Hmac => matches!(alg, HS256 | HS384 | HS512),
        }
    }
}

pub struct VerificationKey {
    pub kid: Option<String>,
    pub family: KeyFamily,
    /// The JWK's `alg`, when it pins one.
    pub alg: Option<Algorithm>,
    /// Ready for verification: parsed and precomputed once, when the set is loaded.
    pub key: PublicKey,
    /// Secret length, for HMAC keys (checked against the token's algorithm).
    secret_len: usize,
}

impl std::fmt::Debug for VerificationKey {
    // Never print key material (HMAC secrets live here).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.family.verifies(alg)
            && self.alg.is_none_or(|pinned| pinned == alg)
            && (self.family != KeyFamily::Hmac || self.secret_len >= min_hmac_secret_bytes(alg))
    }
}

#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

/// Where a JWKS comes from decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Written in the filter configuration: symmetric keys allowed, every entry must be usable.
    Inline,
    /// Fetched from the identity provider: public keys only; entries finguard cannot use
    /// (encryption keys, other curves) are skipped, as an IdP may publish them.
    Remote,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        _ => return None,
    })
}

impl KeySet {
    /// Parses a JWKS document. For inline sets any unusable entry is an error naming its index;
    /// for remote sets unusable entries are skipped, but a set with no usable key is an error.
    pub fn parse(bytes: &[u8], origin: KeyOrigin) -> Result<KeySet, String> {
        let raw: RawJwks = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a JSON Web Key Set: {}", e.classify_name()))?;
        let mut keys = Vec::new();
        for (index, value) in raw.keys.into_iter().enumerate() {
            match parse_key(value, origin) {
                Ok(Some(key)) if keys.len() < MAX_KEYS => keys.push(key),
                Ok(Some(_)) => return Err(format!("more than {MAX_KEYS} keys")),
                Ok(None) => {}
                Err(msg) if origin == KeyOrigin::Inline => {
                    return Err(format!("keys[{index}]: {msg}"))
                }
                Err(_) => {}
            }
        }
        // An inline set holds symmetric keys or public keys, never both: which kind judges a
        // token must not depend on what the token claims (Wycheproof `MixedKeySet`).
        let symmetric = keys.iter().filter(|k| k.family == KeyFamily::Hmac).count();
        if symmetric > 0 && symmetric < keys.len() {
            return Err("symmetric and public keys in one key set".into());
        }
        // Two keys of one family under one `kid` make the key a token names ambiguous (RFC 7517
        // section 4.5; Wycheproof `DuplicateKid`). Inline: an error; remote: both are dropped.
        let ambiguous = |a: &VerificationKey, b: &VerificationKey| {
            a.kid.is_some() && a.kid == b.kid && a.family == b.family
        };
        let duplicated: Vec<bool> = keys
            .iter()
            .enumerate()
            .map(|(i, a)| {
                keys.iter()
                    .enumerate()
                    .any(|(j, b)| i != j && ambiguous(a, b))
            })
            .collect();
        if duplicated.iter().any(|&d| d) {
            if origin == KeyOrigin::Inline {
                return Err("two keys of one type share a \"kid\"".into());
            }
            let mut flags = duplicated.into_iter();
            keys.retain(|_| !flags.next().unwrap_or(true));
        }
        if keys.is_empty() {
            return Err("no usable verification key".into());
        }
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_family(&self, family: impl Fn(KeyFamily) -> bool) -> bool {
        self.keys.iter().any(|k| family(k.family))
    }

    /// Keys that may verify a token with this `kid` and `alg`. With a `kid`, only keys with that
    /// exact id; without one, every key of the right type (bounded by [`MAX_KEYS`]).
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        self.keys.iter().filter(move |key| {
            key.accepts(alg)
                && match kid {
                    Some(kid) => key.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    /// Describes a parse error without quoting the input.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "missing or mistyped member",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

fn decode_b64url(field: &str, value: Option<&String>) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let value = value.ok_or_else(|| format!("missing \"{field}\""))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("\"{field}\" is not base64url"))
}

/// `Ok(None)`: a well-formed key finguard does not verify with (e.g. `use: enc`).
fn parse_key(
    value: serde_json::Value,
    origin: KeyOrigin,
) -> Result<Option<VerificationKey>, String> {
    let jwk: RawJwk = serde_json::from_value(value).map_err(|_| "not a JWK".to_string())?;
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|op| op == "verify") {
            return Ok(None);
        }
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(parse_algorithm(name).ok_or_else(|| "unsupported \"alg\"".to_string())?),
    };
    let mut secret_len = 0;
    let (family, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let n = decode_b64url("n", jwk.n.as_ref())?;
            let e = decode_b64url("e", jwk.e.as_ref())?;
            let n = strip_leading_zeros(&n);
            let bits = n
                .first()
                .map_or(0, |&top| 8 * n.len() - top.leading_zeros() as usize);
            if bits < MIN_RSA_MODULUS_BITS {
                return Err("RSA modulus shorter than 2048 bits".into());
            }
            if crypto::roca::has_fingerprint(n) {
                return Err("RSA modulus has the ROCA fingerprint (CVE-2017-15361)".into());
            }
            if e.is_empty() || e.len() > 8 {
                return Err("RSA exponent out of range".into());
            }
            (KeyFamily::Rsa, PublicKey::rsa(n, &e)?)
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => {
            let (family, len) = if curve == "P-256" {
                (KeyFamily::EcP256, 32)
            } else {
                (KeyFamily::EcP384, 48)
            };
            let x = decode_b64url("x", jwk.x.as_ref())?;
            let y = decode_b64url("y", jwk.y.as_ref())?;
            if x.len() != len || y.len() != len {
                return Err("EC coordinates have the wrong length".into());
            }
            let key = if family == KeyFamily::EcP256 {
                PublicKey::p256(&x, &y)?
            } else {
                PublicKey::p384(&x, &y)?
            };
            (family, key)
        }
        ("OKP", Some("Ed25519")) => {
            let x = decode_b64url("x", jwk.x.as_ref())?;
            if x.len() != 32 {
                return Err("Ed25519 key has the wrong length".into());
            }
            (KeyFamily::Ed25519, PublicKey::ed25519(&x)?)
        }
        ("oct", _) if origin == KeyOrigin::Inline => {
            let k = decode_b64url("k", jwk.k.as_ref())?;
            secret_len = k.len();
            if k.len() < 32 {
                return Err("HMAC secret shorter than 256 bits".into());
            }
            (KeyFamily::Hmac, PublicKey::hmac(&k))
        }
        // A symmetric key published over HTTP is a misconfiguration: never trust it.
        ("oct", _) => return Err("symmetric key in a remote JWKS".into()),
        _ => return Err("unsupported key type or curve".into()),
    };
    if let Some(alg) = alg {
        if !family.verifies(alg) {
            return Err("\"alg\" does not match the key type".into());
        }
    }
    Ok(Some(VerificationKey {
        kid: jwk.kid,
        family,
        alg,
        key,
        secret_len,
    }))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn rsa_jwk(kid: &str) -> String {
        // A 2048-bit modulus (256 bytes) made by repeating a known-good prefix: parsing only.
        use base64::Engine;
        let n = vec![0xc5u8; 256];
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n);
        format!(r#"{{"kty":"RSA","kid":"{kid}","n":"{n}","e":"AQAB"}}"#)
    }

    #[test]
    fn rsa_key_verifies_only_rsa_algorithms() {
        let set = KeySet::parse(
            format!(r#"{{"keys":[{}]}}"#, rsa_jwk("a")).as_bytes(),
            KeyOrigin::Remote,
        )
        .unwrap();
        assert_eq!(set.candidates(Some("a"), Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(Some("a"), Algorithm::PS256).count(), 1);
        assert_eq!(set.candidates(Some("a"), Algorithm::HS256).count(), 0);
        assert_eq!(set.candidates(Some("a"), Algorithm::ES256).count(), 0);
        assert_eq!(set.candidates(Some("b"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 1);
    }

    #[test]
    fn remote_sets_skip_unusable_keys_and_never_accept_secrets() {
        let doc = format!(
            r#"{{"keys":[{},{{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}},{{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}}]}}"#,
            rsa_jwk("a")
        );
        let set = KeySet::parse(doc.as_bytes(), KeyOrigin::Remote).unwrap();
        assert_eq!(set.len(), 1);
        assert!(KeySet::parse(
            br#"{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}]}"#,
            KeyOrigin::Remote
        )
        .is_err());
    }

    #[test]
    fn inline_sets_report_the_bad_entry_and_enforce_sizes() {
        let err = KeySet::parse(
            br#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#,
            KeyOrigin::Inline,
        )
        .unwrap_err();
        assert!(err.starts_with("keys[0]: RSA modulus"), "{err}");
        let err = KeySet::parse(
            br#"{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}"#,
            KeyOrigin::Inline,
        )
        .unwrap_err();
        assert!(err.contains("HMAC secret"), "{err}");
        let set = KeySet::parse(
            br#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}]}"#,
            KeyOrigin::Inline,
        )
        .unwrap();
        assert_eq!(set.candidates(Some("h"), Algorithm::HS256).count(), 1);
        // 34-byte secret: too short for HS384.
        assert_eq!(set.candidates(Some("h"), Algorithm::HS384).count(), 0);
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Class 9 of issue #19: the 2048-bit floor counts bits (a 2041 to 2047-bit modulus also
    /// takes 256 bytes), ROCA moduli are refused, and small-order Ed25519 keys never load; from
    /// an inline set (an error naming the entry) and a remote one (the entry dropped) alike.
    #[test]
    fn key_hygiene_applies_to_inline_and_remote_sets() {
        let good = rsa_jwk("good");
        let mut weak = Vec::new();
        for bits in 2041..=2047 {
            // An odd modulus of exactly `bits` bits in 256 bytes.
            let mut n = vec![0xc5u8; 256];
            n[0] = 0xff >> (2048 - bits);
            weak.push((
                format!(
                    r#"{{"kty":"RSA","kid":"weak","n":"{}","e":"AQAB"}}"#,
                    b64(&n)
                ),
                "shorter than 2048 bits",
            ));
        }
        // With a leading zero byte: 257 bytes, still 2047 bits.
        let mut n = vec![0xc5u8; 257];
        n[0] = 0;
        n[1] = 0x7f;
        weak.push((
            format!(
                r#"{{"kty":"RSA","kid":"weak","n":"{}","e":"AQAB"}}"#,
                b64(&n)
            ),
            "shorter than 2048 bits",
        ));
        weak.push((
            format!(
                r#"{{"kty":"RSA","kid":"weak","n":"{}","e":"AQAB"}}"#,
                crypto::roca::tests::ROCA_N
            ),
            "ROCA",
        ));
        for encoding in crypto::tests::small_order_encodings() {
            weak.push((
                format!(
                    r#"{{"kty":"OKP","crv":"Ed25519","kid":"weak","x":"{}"}}"#,
                    b64(&encoding)
                ),
                "Ed25519 key",
            ));
        }
        for (jwk, message) in &weak {
            let doc = format!(r#"{{"keys":[{good},{jwk}]}}"#);
            let err = KeySet::parse(doc.as_bytes(), KeyOrigin::Inline).unwrap_err();
            assert!(
                err.starts_with("keys[1]: ") && err.contains(message),
                "{jwk}: {err}"
            );
            let set = KeySet::parse(doc.as_bytes(), KeyOrigin::Remote).unwrap();
            assert_eq!(set.len(), 1, "{jwk}");
            assert_eq!(set.candidates(Some("weak"), Algorithm::RS256).count(), 0);
            assert_eq!(set.candidates(Some("weak"), Algorithm::EdDSA).count(), 0);
            let alone = format!(r#"{{"keys":[{jwk}]}}"#);
            assert!(KeySet::parse(alone.as_bytes(), KeyOrigin::Remote).is_err());
        }
        // Exactly 2048 bits still loads.
        let mut n = vec![0xc5u8; 256];
        n[0] = 0x80;
        let exact = format!(
            r#"{{"keys":[{{"kty":"RSA","n":"{}","e":"AQAB"}}]}}"#,
            b64(&n)
        );
        assert!(KeySet::parse(exact.as_bytes(), KeyOrigin::Inline).is_ok());
    }

    #[test]
    fn duplicate_kids_and_mixed_sets_are_ambiguous() {
        let secret = r#"{"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}"#;
        let other = r#"{"kty":"oct","kid":"h","k":"b3RoZXJzZWNyZXRvdGhlcnNlY3JldG90aGVyc2VjcmV0"}"#;
        let dup = format!(r#"{{"keys":[{secret},{other}]}}"#);
        let err = KeySet::parse(dup.as_bytes(), KeyOrigin::Inline).unwrap_err();
        assert!(err.contains("kid"), "{err}");
        let mixed = format!(r#"{{"keys":[{secret},{}]}}"#, rsa_jwk("a"));
        let err = KeySet::parse(mixed.as_bytes(), KeyOrigin::Inline).unwrap_err();
        assert!(err.contains("symmetric and public"), "{err}");
        // Remote: the two keys named "a" are dropped, "b" stays; "a" alone is no key set.
        let remote = format!(
            r#"{{"keys":[{},{},{}]}}"#,
            rsa_jwk("a"),
            rsa_jwk("a"),
            rsa_jwk("b")
        );
        let set = KeySet::parse(remote.as_bytes(), KeyOrigin::Remote).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.candidates(Some("a"), Algorithm::RS256).count(), 0);
        let only_a = format!(r#"{{"keys":[{},{}]}}"#, rsa_jwk("a"), rsa_jwk("a"));
        assert!(KeySet::parse(only_a.as_bytes(), KeyOrigin::Remote).is_err());
        // One kid for keys of two types is not ambiguous: the token's alg picks the type.
        let ed = r#"{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let two_types = format!(r#"{{"keys":[{},{ed}]}}"#, rsa_jwk("a"));
        assert_eq!(
            KeySet::parse(two_types.as_bytes(), KeyOrigin::Inline)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn jwk_alg_pins_the_algorithm() {
        let doc = format!(
            r#"{{"keys":[{}]}}"#,
            rsa_jwk("a").replace("\"e\"", "\"alg\":\"PS256\",\"e\"")
        );
        let set = KeySet::parse(doc.as_bytes(), KeyOrigin::Remote).unwrap();
        assert_eq!(set.candidates(Some("a"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(Some("a"), Algorithm::PS256).count(), 1);
        let bad = format!(
            r#"{{"keys":[{}]}}"#,
            rsa_jwk("a").replace("\"e\"", "\"alg\":\"ES256\",\"e\"")
        );
        assert!(KeySet::parse(bad.as_bytes(), KeyOrigin::Inline).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for doc in [
            &b""[..],
            b"[]",
            b"{}",
            b"{\"keys\":[1]}",
            b"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"!!\"}]}",
        ] {
            assert!(KeySet::parse(doc, KeyOrigin::Remote).is_err());
        }
    }
}
