//! API keys: a client sends a secret in a configured header; the configuration holds only its
//! SHA-256, with an id, a client name and scopes. The presented key is hashed and compared with
//! every configured hash in constant time, so response timing does not reveal how much of a hash
//! matched. Keys are a weaker credential than tokens (long-lived, no user, no step-up): routes
//! accept them only when they say so (`auth.credentials`).

use crate::reason::Reason;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug)]
pub struct ApiKey {
    pub id: String,
    pub client: String,
    pub sha256: [u8; 32],
    pub scopes: Vec<String>,
    pub disabled: bool,
}

#[derive(Debug, Default)]
pub struct ApiKeys {
    /// Lowercased header carrying the key; always removed before forwarding.
    pub header: String,
    pub keys: Vec<ApiKey>,
    /// Headers set upstream for API-key requests: the key id and the client name.
    pub forward_id: Option<String>,
    pub forward_client: Option<String>,
}

impl ApiKeys {
    /// The configured key matching `presented`. Unknown and disabled keys are one reason, so a
    /// caller cannot tell a revoked key from a guess.
    pub fn verify(&self, presented: &str) -> Result<usize, Reason> {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut found = None;
        // Every entry is compared: the time taken does not depend on which one matches.
        for (index, key) in self.keys.iter().enumerate() {
            if bool::from(key.sha256.ct_eq(&digest)) {
                found = Some(index);
            }
        }
        match found {
            Some(index) if self.keys.get(index).is_some_and(|k| !k.disabled) => Ok(index),
            _ => Err(Reason::ApiKeyInvalid),
        }
    }

    /// Upstream headers for an accepted key.
    pub fn forward_headers(&self, index: usize) -> Vec<(String, String)> {
        let Some(key) = self.keys.get(index) else {
            return Vec::new();
        };
        let mut headers = Vec::with_capacity(2);
        if let Some(h) = &self.forward_id {
            headers.push((h.clone(), key.id.clone()));
        }
        if let Some(h) = &self.forward_client {
            headers.push((h.clone(), key.client.clone()));
        }
        headers
    }
}

/// Parses 64 hex digits.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn keys() -> ApiKeys {
        let hash = |s: &str| -> [u8; 32] { Sha256::digest(s.as_bytes()).into() };
        ApiKeys {
            header: "x-api-key".into(),
            keys: vec![
                ApiKey {
                    id: "a".into(),
                    client: "acme".into(),
                    sha256: hash("secret-a"),
                    scopes: vec!["s".into()],
                    disabled: false,
                },
                ApiKey {
                    id: "b".into(),
                    client: "bank".into(),
                    sha256: hash("secret-b"),
                    scopes: vec![],
                    disabled: true,
                },
            ],
            forward_id: Some("x-auth-api-key-id".into()),
            forward_client: Some("x-auth-client".into()),
        }
    }

    #[test]
    fn known_enabled_keys_only() {
        let k = keys();
        assert_eq!(k.verify("secret-a"), Ok(0));
        assert_eq!(k.verify("secret-b"), Err(Reason::ApiKeyInvalid));
        assert_eq!(k.verify("secret-c"), Err(Reason::ApiKeyInvalid));
        assert_eq!(k.verify(""), Err(Reason::ApiKeyInvalid));
        assert_eq!(
            k.forward_headers(0),
            [
                ("x-auth-api-key-id".to_string(), "a".to_string()),
                ("x-auth-client".to_string(), "acme".to_string())
            ]
        );
    }

    #[test]
    fn hex_parsing() {
        let hex = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
        assert_eq!(parse_sha256_hex(hex).unwrap()[0], 0x2b);
        assert!(parse_sha256_hex(&hex[1..]).is_none());
        assert!(parse_sha256_hex(&hex.replace('2', "g")).is_none());
    }
}
