//! Project Wycheproof (C2SP/wycheproof `testvectors_v1`, in `../shared/conformance/wycheproof`,
//! commit in its `COMMIT` file) through finguard's own key loading and verification path: every
//! key becomes a JWK and goes through [`KeySet::parse`] (inline origin, so a refusal is reported
//! rather than skipped), every signature through the loaded key's `verify`, as
//! [`verify::check_signature`] calls it; the JWS files go through [`token::parse_jws`] and
//! `check_signature` themselves.
//!
//! The rule per vector: "valid" must be accepted, unless a documented policy refuses it (the
//! policy is predicted from the vector's parameters before the outcome is known, and a vector
//! predicted refused must indeed be refused); "invalid" must be refused, no exception;
//! "acceptable" is counted both ways. The policies are docs/authentication.md's ("Token
//! verification", "Wycheproof conformance"). The vectors are compiled in (`include_str!`) so that the same test
//! runs natively and on wasm32 under Node, where no file can be read.

use super::super::jwks::{KeyOrigin, KeySet};
use super::super::{token, verify};
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

macro_rules! vectors {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/conformance/wycheproof/",
            $name
        )))),*]
    };
}

/// Documented refusals of vectors Wycheproof calls valid.
const RSA_TOO_SMALL: &str = "RSA modulus below 2048 bits";
const RSA_TOO_LARGE: &str = "RSA modulus above 4096 bits";
const CURVE: &str = "curve or algorithm finguard does not verify (P-521/ES512, secp256k1)";
const HMAC_SHORT_KEY: &str = "HMAC key shorter than the hash output";
const HMAC_TRUNCATED: &str = "truncated HMAC tag (JWS HS* tags are full length)";
const HASH: &str = "hash not used by a JWS algorithm (SHA-1, SHA-224, SHA-512/t, SHAKE)";
const PSS_PARAMETERS: &str =
    "PSS parameters other than RFC 7518's (MGF1 with the same hash, salt = hash length)";
const COMPRESSED: &str = "compressed or non-uncompressed EC point (a JWK has both coordinates)";
const JWK_ALG_PINS: &str = "the JWK's alg pins the algorithm (RFC 7517 section 4.4)";
const STRICT_BASE64URL: &str = "not strict base64url (RFC 7515 section 2)";
const JWE: &str = "JWE: finguard accepts signed tokens only";
const KEY_OPS: &str = "key_ops without \"verify\" (RFC 7517 section 4.3)";

#[derive(Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable_accepted: usize,
    acceptable_refused: usize,
    policy: BTreeMap<&'static str, usize>,
    /// "invalid" vectors of a scheme finguard does not implement (PSS parameter sets, hashes
    /// outside JWS): refused by construction, so not counted as refusals.
    not_applicable: usize,
    /// "invalid" vectors byte-identical to a "valid" one of the same file (a defect of the file).
    contradictory: Vec<u64>,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, id: &Value, result: &str, accepted: bool, policy: Option<&'static str>) {
        match (result, accepted, policy) {
            ("valid", true, None) => self.valid += 1,
            ("valid", false, Some(policy)) => *self.policy.entry(policy).or_default() += 1,
            ("valid", false, None) => self.failures.push(format!("tc {id}: valid, refused")),
            ("valid", true, Some(policy)) => self
                .failures
                .push(format!("tc {id}: accepted although {policy}")),
            ("invalid", false, _) => self.invalid += 1,
            ("invalid", true, _) => self.failures.push(format!("tc {id}: invalid, accepted")),
            ("acceptable", true, _) => self.acceptable_accepted += 1,
            ("acceptable", false, _) => self.acceptable_refused += 1,
            (other, _, _) => self.failures.push(format!("tc {id}: result {other:?}")),
        }
    }

    fn total(&self) -> usize {
        self.valid
            + self.invalid
            + self.acceptable_accepted
            + self.acceptable_refused
            + self.policy.values().sum::<usize>()
            + self.not_applicable
            + self.contradictory.len()
            + self.failures.len()
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The key set finguard loads from these JWKs, or the documented policy that refuses it, or
/// `Err(None)` for a key refused as invalid.
fn load(jwks: Vec<Value>) -> Result<KeySet, Option<&'static str>> {
    let doc = json!({ "keys": jwks }).to_string();
    KeySet::parse(doc.as_bytes(), KeyOrigin::Inline).map_err(|err| {
        if err.contains("shorter than 2048 bits") {
            Some(RSA_TOO_SMALL)
        } else if err.contains("longer than 4096 bits") {
            Some(RSA_TOO_LARGE)
        } else if err.contains("unsupported key type or curve")
            || err.contains("unsupported \"alg\"")
        {
            Some(CURVE)
        } else if err.contains("HMAC secret shorter") {
            Some(HMAC_SHORT_KEY)
        } else {
            None
        }
    })
}

fn verifies(keys: &KeySet, algs: &[Algorithm], message: &[u8], signature: &[u8]) -> bool {
    algs.iter().any(|&alg| {
        keys.candidates(None, alg)
            .any(|key| key.key.verify(alg, message, signature))
    })
}

/// One signature-verification file: each group gives a JWK, the algorithms to try and the
/// policy (if any) that refuses its valid vectors.
fn run_signature_file(
    text: &str,
    group_key: impl Fn(&Value) -> (Value, Vec<Algorithm>, Option<&'static str>),
) -> Tally {
    let doc: Value = serde_json::from_str(text).unwrap_or_default();
    let mut tally = Tally::default();
    for group in doc["testGroups"].as_array().into_iter().flatten() {
        let (jwk, algs, group_policy) = group_key(group);
        let keys = load(vec![jwk]);
        for test in group["tests"].as_array().into_iter().flatten() {
            let result = test["result"].as_str().unwrap_or_default();
            if result == "invalid" && matches!(group_policy, Some(HASH | PSS_PARAMETERS)) {
                tally.not_applicable += 1;
                continue;
            }
            let (accepted, policy) = match &keys {
                Ok(keys) => {
                    let message = hex(test["msg"].as_str().unwrap_or_default());
                    let signature = hex(test["sig"]
                        .as_str()
                        .or(test["tag"].as_str())
                        .unwrap_or_default());
                    (verifies(keys, &algs, &message, &signature), group_policy)
                }
                Err(policy) => (false, policy.or(group_policy)),
            };
            tally.record(&test["tcId"], result, accepted, policy);
        }
    }
    tally
}

fn rsa_jwk(modulus_hex: &str, exponent_hex: &str) -> Value {
    json!({"kty": "RSA", "n": b64(&hex(modulus_hex)), "e": b64(&hex(exponent_hex))})
}

/// PKCS#1 v1.5 (`rsa_signature_*`, `rsa_pkcs1_*_sig_gen`): the hash picks RS256/384/512.
fn pkcs1_group(group: &Value) -> (Value, Vec<Algorithm>, Option<&'static str>) {
    let key = if group["publicKey"].is_object() {
        &group["publicKey"]
    } else {
        &group["privateKey"]
    };
    let jwk = rsa_jwk(
        key["modulus"].as_str().unwrap_or_default(),
        key["publicExponent"].as_str().unwrap_or_default(),
    );
    match group["sha"].as_str() {
        Some("SHA-256") => (jwk, vec![Algorithm::RS256], None),
        Some("SHA-384") => (jwk, vec![Algorithm::RS384], None),
        Some("SHA-512") => (jwk, vec![Algorithm::RS512], None),
        // A digest of another hash cannot match RS256's but by a collision: one algorithm is
        // tried, to show the signature is not accepted (and to keep the wasm32 run short).
        _ => (jwk, vec![Algorithm::RS256], Some(HASH)),
    }
}

/// RSASSA-PSS: only RFC 7518's parameter sets are PS256/384/512; the valid vectors of any other
/// group must be refused.
fn pss_group(group: &Value) -> (Value, Vec<Algorithm>, Option<&'static str>) {
    let key = &group["publicKey"];
    let jwk = rsa_jwk(
        key["modulus"].as_str().unwrap_or_default(),
        key["publicExponent"].as_str().unwrap_or_default(),
    );
    let sha = group["sha"].as_str().unwrap_or_default();
    let supported = match sha {
        "SHA-256" => Some((Algorithm::PS256, 32)),
        "SHA-384" => Some((Algorithm::PS384, 48)),
        "SHA-512" => Some((Algorithm::PS512, 64)),
        _ => None,
    };
    match supported {
        Some((alg, h_len))
            if group["mgf"] == "MGF1"
                && group["mgfSha"] == sha
                && group["sLen"].as_u64() == Some(h_len) =>
        {
            (jwk, vec![alg], None)
        }
        // Another parameter set with a JWS hash: the PS algorithm of that hash must not accept it
        // (e.g. a salt of 0 under PS256). Another hash: as for PKCS#1, PS256 stands for all.
        Some((alg, _)) => (jwk, vec![alg], Some(PSS_PARAMETERS)),
        None => (jwk, vec![Algorithm::PS256], Some(HASH)),
    }
}

/// ECDSA in P1363 form: the group's JWK, or one built from its coordinates.
fn ecdsa_group(
    group: &Value,
    crv: &str,
    len: usize,
    alg: Algorithm,
) -> (Value, Vec<Algorithm>, Option<&'static str>) {
    if group["publicKeyJwk"].is_object() {
        return (group["publicKeyJwk"].clone(), vec![alg], None);
    }
    let coordinate = |name: &str| {
        let bytes = hex(group["publicKey"][name].as_str().unwrap_or_default());
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let mut out = vec![0u8; len.saturating_sub(bytes.len() - first)];
        out.extend_from_slice(&bytes[first..]);
        b64(&out)
    };
    let jwk = json!({"kty": "EC", "crv": crv, "x": coordinate("wx"), "y": coordinate("wy")});
    (jwk, vec![alg], None)
}

fn hmac_group(group: &Value, alg: Algorithm, bits: u64) -> Tally {
    let mut tally = Tally::default();
    let truncated = group["tagSize"].as_u64() != Some(bits);
    let short_key = group["keySize"].as_u64().is_some_and(|k| k < bits);
    for test in group["tests"].as_array().into_iter().flatten() {
        let jwk = json!({"kty": "oct", "k": b64(&hex(test["key"].as_str().unwrap_or_default()))});
        let result = test["result"].as_str().unwrap_or_default();
        let policy = if truncated {
            Some(HMAC_TRUNCATED)
        } else if short_key {
            Some(HMAC_SHORT_KEY)
        } else {
            None
        };
        let accepted = match load(vec![jwk]) {
            Ok(keys) => verifies(
                &keys,
                &[alg],
                &hex(test["msg"].as_str().unwrap_or_default()),
                &hex(test["tag"].as_str().unwrap_or_default()),
            ),
            Err(_) => false,
        };
        tally.record(&test["tcId"], result, accepted, policy);
    }
    tally
}

/// EC public-key import: a JWK (webcrypto) or a SEC1 point (ecpoint) must load exactly when
/// it is a valid point of the curve.
fn ec_import_file(text: &str, crv: &str, len: usize) -> Tally {
    use super::super::jwks::KeyFamily;
    // A key of another curve loads as that curve's key, which never verifies this curve's
    // algorithm (Wycheproof `WrongCurve`): what counts is a key of this curve.
    let family = if crv == "P-256" {
        KeyFamily::EcP256
    } else {
        KeyFamily::EcP384
    };
    let doc: Value = serde_json::from_str(text).unwrap_or_default();
    let mut tally = Tally::default();
    for group in doc["testGroups"].as_array().into_iter().flatten() {
        for test in group["tests"].as_array().into_iter().flatten() {
            let result = test["result"].as_str().unwrap_or_default();
            let (jwk, policy) = match &test["public"] {
                Value::Object(_) => (Some(test["public"].clone()), None),
                Value::String(point) => {
                    let bytes = hex(point);
                    if bytes.len() == 1 + 2 * len && bytes[0] == 4 {
                        let jwk = json!({"kty": "EC", "crv": crv,
                            "x": b64(&bytes[1..1 + len]), "y": b64(&bytes[1 + len..])});
                        (Some(jwk), None)
                    } else {
                        (None, Some(COMPRESSED))
                    }
                }
                _ => (None, None),
            };
            let (accepted, policy) = match jwk.map(|jwk| load(vec![jwk])) {
                Some(Ok(keys)) => (keys.has_family(|f| f == family), policy),
                Some(Err(key_policy)) => (false, key_policy.or(policy)),
                None => (false, policy),
            };
            tally.record(&test["tcId"], result, accepted, policy);
        }
    }
    tally
}

/// The JWS / JWK / JWE files: the group's private keys made public (private members dropped),
/// loaded as one set; each compact serialisation through `parse_jws` and `check_signature`.
fn jose_file(text: &str) -> Tally {
    let doc: Value = serde_json::from_str(text).unwrap_or_default();
    let mut tally = Tally::default();
    for group in doc["testGroups"].as_array().into_iter().flatten() {
        // The same string with the same keys cannot be both valid and invalid.
        let valid: Vec<&str> = group["tests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["result"] == "valid")
            .filter_map(|t| t["jws"].as_str())
            .collect();
        let private = &group["private"];
        let jwks: Vec<Value> = match private["keys"].as_array() {
            Some(keys) => keys.clone(),
            None => vec![private.clone()],
        };
        let public: Vec<Value> = jwks
            .iter()
            .map(|jwk| {
                let mut jwk: Map<String, Value> = jwk.as_object().cloned().unwrap_or_default();
                for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
                    jwk.remove(member);
                }
                Value::Object(jwk)
            })
            .collect();
        let keys = load(public.clone());
        let key_ops_policy = public
            .iter()
            .any(|k| {
                k["key_ops"]
                    .as_array()
                    .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
            })
            .then_some(KEY_OPS);
        for test in group["tests"].as_array().into_iter().flatten() {
            let result = test["result"].as_str().unwrap_or_default();
            let id = test["tcId"].as_u64().unwrap_or_default();
            if result == "invalid" && test["jws"].as_str().is_some_and(|jws| valid.contains(&jws)) {
                tally.contradictory.push(id);
                continue;
            }
            let jws = test["jws"].as_str().filter(|s| !s.starts_with('{'));
            let mut policy = match &keys {
                Err(policy) => policy.or(key_ops_policy),
                Ok(_) => None,
            };
            if test.get("jwe").is_some() {
                policy = Some(JWE);
            }
            let Some(jws) = jws else {
                // JSON serialisation, or a JWE: not a compact JWS, refused.
                tally.record(&test["tcId"], result, false, policy);
                continue;
            };
            if jws.split('.').any(|s| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .is_err()
            }) {
                policy = policy.or(Some(STRICT_BASE64URL));
            }
            let header_alg = jws
                .split('.')
                .next()
                .and_then(|h| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(h)
                        .ok()
                })
                .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
                .and_then(|h| h["alg"].as_str().map(str::to_owned));
            if let Some(alg) = &header_alg {
                let pinned: Vec<&str> = public.iter().filter_map(|k| k["alg"].as_str()).collect();
                if !pinned.is_empty() && pinned.iter().all(|p| p != alg) {
                    policy = policy.or(Some(JWK_ALG_PINS));
                }
            }
            let accepted = match (&keys, token::parse_jws(jws, 16 * 1024)) {
                (Ok(keys), Ok((parsed, _payload))) => {
                    verify::check_signature(&parsed, keys).is_ok()
                }
                _ => false,
            };
            tally.record(&test["tcId"], result, accepted, policy);
        }
    }
    tally
}

fn report(name: &str, tally: &Tally, all: &mut Vec<String>) {
    let line = format!(
        "{name}: {} vectors: valid accepted {}, invalid refused {}, acceptable accepted {} / refused {}, valid refused by policy {:?}, invalid of a scheme not implemented {}, contradictory {:?}",
        tally.total(),
        tally.valid,
        tally.invalid,
        tally.acceptable_accepted,
        tally.acceptable_refused,
        tally.policy,
        tally.not_applicable,
        tally.contradictory,
    );
    #[cfg(not(target_arch = "wasm32"))]
    println!("{line}");
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{line}");
    for failure in &tally.failures {
        all.push(format!("{name}: {failure}"));
    }
    // tc 367 and 370 ("invalidBase64Padding...") carry exactly the string of the valid tc 357
    // of their group, with the same key:
    // their padding was lost upstream. Nothing else may be set aside this way.
    let expected: &[u64] = if name == "json_web_signature_test.json" {
        &[367, 370]
    } else {
        &[]
    };
    assert_eq!(tally.contradictory, expected, "{name}");
    assert!(tally.total() > 0, "{name}: no vectors read");
}

#[test]
fn wycheproof_signatures() {
    let mut failures = Vec::new();
    for (name, text) in vectors!(
        "rsa_signature_2048_sha256_test.json",
        "rsa_signature_2048_sha384_test.json",
        "rsa_signature_2048_sha512_test.json",
        "rsa_signature_3072_sha256_test.json",
        "rsa_signature_3072_sha384_test.json",
        "rsa_signature_3072_sha512_test.json",
        "rsa_signature_4096_sha256_test.json",
        "rsa_signature_4096_sha384_test.json",
        "rsa_signature_4096_sha512_test.json",
        "rsa_signature_8192_sha256_test.json",
        "rsa_signature_8192_sha384_test.json",
        "rsa_signature_8192_sha512_test.json",
        "rsa_pkcs1_1024_sig_gen_test.json",
        "rsa_pkcs1_1536_sig_gen_test.json",
        "rsa_pkcs1_2048_sig_gen_test.json",
        "rsa_pkcs1_3072_sig_gen_test.json",
        "rsa_pkcs1_4096_sig_gen_test.json",
    ) {
        report(name, &run_signature_file(text, pkcs1_group), &mut failures);
    }
    for (name, text) in vectors!(
        "rsa_pss_2048_sha1_mgf1_20_params_test.json",
        "rsa_pss_2048_sha1_mgf1_20_test.json",
        "rsa_pss_2048_sha256_mgf1_0_params_test.json",
        "rsa_pss_2048_sha256_mgf1_0_test.json",
        "rsa_pss_2048_sha256_mgf1_32_params_test.json",
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        "rsa_pss_2048_sha256_mgf1sha1_20_test.json",
        "rsa_pss_2048_sha384_mgf1_48_test.json",
        "rsa_pss_2048_sha512_224_mgf1_28_test.json",
        "rsa_pss_2048_sha512_256_mgf1_32_test.json",
        "rsa_pss_2048_sha512_mgf1sha256_32_params_test.json",
        "rsa_pss_2048_shake128_test.json",
        "rsa_pss_2048_shake256_test.json",
        "rsa_pss_3072_sha256_mgf1_32_params_test.json",
        "rsa_pss_3072_sha256_mgf1_32_test.json",
        "rsa_pss_3072_shake128_test.json",
        "rsa_pss_3072_shake256_test.json",
        "rsa_pss_4096_sha256_mgf1_32_test.json",
        "rsa_pss_4096_sha384_mgf1_48_test.json",
        "rsa_pss_4096_sha512_mgf1_32_params_test.json",
        "rsa_pss_4096_sha512_mgf1_32_test.json",
        "rsa_pss_4096_sha512_mgf1_64_params_test.json",
        "rsa_pss_4096_sha512_mgf1_64_test.json",
        "rsa_pss_4096_shake256_test.json",
        "rsa_pss_misc_params_test.json",
        "rsa_pss_misc_test.json",
    ) {
        report(name, &run_signature_file(text, pss_group), &mut failures);
    }
    for (name, text) in vectors!("ecdsa_secp256r1_sha256_p1363_test.json") {
        let tally = run_signature_file(text, |g| ecdsa_group(g, "P-256", 32, Algorithm::ES256));
        report(name, &tally, &mut failures);
    }
    for (name, text) in vectors!("ecdsa_secp384r1_sha384_p1363_test.json") {
        let tally = run_signature_file(text, |g| ecdsa_group(g, "P-384", 48, Algorithm::ES384));
        report(name, &tally, &mut failures);
    }
    for (name, text) in vectors!("ed25519_test.json") {
        let tally = run_signature_file(text, |g| {
            (g["publicKeyJwk"].clone(), vec![Algorithm::EdDSA], None)
        });
        report(name, &tally, &mut failures);
    }
    for (name, text, alg, bits) in [
        (vectors!("hmac_sha256_test.json")[0], Algorithm::HS256, 256),
        (vectors!("hmac_sha384_test.json")[0], Algorithm::HS384, 384),
        (vectors!("hmac_sha512_test.json")[0], Algorithm::HS512, 512),
    ]
    .map(|((name, text), alg, bits)| (name, text, alg, bits))
    {
        let doc: Value = serde_json::from_str(text).unwrap_or_default();
        let mut tally = Tally::default();
        for group in doc["testGroups"].as_array().into_iter().flatten() {
            let part = hmac_group(group, alg, bits);
            tally.valid += part.valid;
            tally.invalid += part.invalid;
            tally.acceptable_accepted += part.acceptable_accepted;
            tally.acceptable_refused += part.acceptable_refused;
            for (policy, n) in part.policy {
                *tally.policy.entry(policy).or_default() += n;
            }
            tally.failures.extend(part.failures);
        }
        report(name, &tally, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} Wycheproof vectors judged wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn wycheproof_key_import_and_jose() {
    let mut failures = Vec::new();
    for ((name, text), crv, len) in [
        (
            vectors!("ecdh_secp256r1_webcrypto_test.json")[0],
            "P-256",
            32,
        ),
        (vectors!("ecdh_secp256r1_ecpoint_test.json")[0], "P-256", 32),
        (
            vectors!("ecdh_secp384r1_webcrypto_test.json")[0],
            "P-384",
            48,
        ),
        (vectors!("ecdh_secp384r1_ecpoint_test.json")[0], "P-384", 48),
    ] {
        report(name, &ec_import_file(text, crv, len), &mut failures);
    }
    for (name, text) in vectors!(
        "json_web_signature_test.json",
        "json_web_key_test.json",
        "json_web_crypto_test.json",
    ) {
        report(name, &jose_file(text), &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} Wycheproof vectors judged wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
