//! The verified-token cache: a bounded LRU from SHA-256(token) to the verified result, so an
//! honest client pays for signature verification once per token, not once per request.
//!
//! Per VM (per Envoy worker): no locking, no cross-worker traffic. Entries never outlive the
//! token's `exp` (a hit re-checks the time window against `now`), and the whole cache is dropped
//! when a provider's keys change, so a removed key stops being honoured at once.

use super::verify::VerifiedToken;
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;
use std::rc::Rc;

pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

pub struct TokenCache {
    entries: Option<LruCache<TokenDigest, Rc<VerifiedToken>>>,
}

impl TokenCache {
    /// `capacity` 0 disables caching.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: NonZeroUsize::new(capacity).map(LruCache::new),
        }
    }

    pub fn get(&mut self, digest: &TokenDigest) -> Option<Rc<VerifiedToken>> {
        self.entries.as_mut()?.get(digest).cloned()
    }

    pub fn insert(&mut self, digest: TokenDigest, token: Rc<VerifiedToken>) {
        if let Some(entries) = self.entries.as_mut() {
            entries.put(digest, token);
        }
    }

    pub fn remove(&mut self, digest: &TokenDigest) {
        if let Some(entries) = self.entries.as_mut() {
            entries.pop(digest);
        }
    }

    pub fn clear(&mut self) {
        if let Some(entries) = self.entries.as_mut() {
            entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, LruCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn verified(exp: i64) -> Rc<VerifiedToken> {
        Rc::new(VerifiedToken {
            provider: 0,
            exp,
            nbf: None,
            scopes: vec![],
            forward_headers: vec![],
            claims: serde_json::Value::Null,
        })
    }

    #[test]
    fn bounded_and_least_recently_used_goes_first() {
        let mut cache = TokenCache::new(2);
        cache.insert(digest("a"), verified(1));
        cache.insert(digest("b"), verified(2));
        assert!(cache.get(&digest("a")).is_some());
        cache.insert(digest("c"), verified(3));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&digest("b")).is_none());
        assert!(cache.get(&digest("a")).is_some());
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn zero_capacity_disables() {
        let mut cache = TokenCache::new(0);
        cache.insert(digest("a"), verified(1));
        assert!(cache.get(&digest("a")).is_none());
    }
}
