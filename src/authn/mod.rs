//! Authentication: from a request to a verified token, in the order Envoy's `jwt_authn` also keeps
//! apart: extract ([`extract`]) -> cache ([`cache`]) -> parse ([`token`]) -> claims, key lookup
//! and signature ([`verify`]) against keys held per provider ([`keys`], [`jwks`]).

pub mod apikey;
pub mod budget;
pub mod cache;
pub mod caller;
pub mod crypto;
pub mod extract;
pub mod jwks;
pub mod keys;
pub mod provider;
pub mod token;
pub mod verify;

use crate::reason::Reason;
use budget::VerificationBudget;
use cache::TokenCache;
use keys::{KeySource, KeyStatus, ProviderKeys};
use provider::Provider;
use std::rc::Rc;
use verify::VerifiedToken;

/// Why authentication did not produce a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthnError {
    /// Refused, with the provider that judged the token when one was identified (its `mode`
    /// decides whether the refusal is enforced).
    Refused(Reason, Option<usize>),
    /// The verification budget is spent: retry after this many seconds.
    Overloaded(u64),
    /// The named provider's keys may still arrive (first fetch, or a rotation refetch):
    /// hold the request and try again when they do.
    WaitForKeys(usize),
}

impl From<Reason> for AuthnError {
    fn from(reason: Reason) -> Self {
        AuthnError::Refused(reason, None)
    }
}

/// The per-worker state authentication reads and updates.
pub struct AuthnState<'a> {
    pub keys: &'a mut [ProviderKeys],
    pub cache: &'a mut TokenCache,
    pub budget: &'a mut VerificationBudget,
    /// The client address, whose share of the budget a cold verification takes.
    pub client: Option<&'a str>,
}

/// The provider-side state authentication reads: compiled providers and the keys each VM holds.
pub struct Authenticator<'a> {
    pub providers: &'a [Provider],
    pub sources: &'a [KeySource],
    pub max_token_bytes: usize,
}

impl Authenticator<'_> {
    /// Verifies `token` for a route that accepts `allowed` providers (`None`: any).
    /// `may_wait`: false when re-judging a request that already waited once.
    pub fn authenticate(
        &self,
        token: &str,
        allowed: Option<&[usize]>,
        state: AuthnState<'_>,
        now_ms: i64,
        may_wait: bool,
    ) -> Result<Rc<VerifiedToken>, AuthnError> {
        let AuthnState {
            keys,
            cache,
            budget,
            client,
        } = state;
        let now = now_ms.div_euclid(1000);
        let provider_allowed = |index: usize| allowed.is_none_or(|list| list.contains(&index));
        if token.len() > self.max_token_bytes {
            return Err(Reason::TokenTooLarge.into());
        }
        let digest = cache.digest(token);
        if let Some(hit) = cache.get(&digest) {
            let provider = self
                .providers
                .get(hit.provider)
                .ok_or(Reason::IssuerUnknown)?;
            if !provider_allowed(hit.provider) {
                return Err(AuthnError::Refused(
                    Reason::IssuerUnknown,
                    Some(hit.provider),
                ));
            }
            if let Err(reason) = hit.check_still_valid(provider, now) {
                cache.remove(&digest);
                return Err(AuthnError::Refused(reason, Some(hit.provider)));
            }
            // A token verified with keys that have since expired (fetches failing past the
            // grace) is refused like any other: the cache never outlives the keys.
            let keys_ready = match (keys.get(hit.provider), self.sources.get(hit.provider)) {
                (Some(state), Some(source)) => {
                    matches!(state.status(source, now), KeyStatus::Ready(_))
                }
                _ => false,
            };
            if !keys_ready {
                return Err(AuthnError::Refused(
                    Reason::KeysUnavailable,
                    Some(hit.provider),
                ));
            }
            return Ok(hit);
        }
        // A token whose signature already failed: refused again without signature work.
        if let Some(index) = cache.refused(&digest, now) {
            if provider_allowed(index) {
                return Err(AuthnError::Refused(Reason::SignatureInvalid, Some(index)));
            }
        }

        let parsed = token::parse(token, self.max_token_bytes)?;
        let issuer = verify::issuer(&parsed)?;
        let (index, provider) = self
            .providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.issuer == issuer)
            .filter(|(i, _)| provider_allowed(*i))
            .ok_or(Reason::IssuerUnknown)?;
        let refused = |reason: Reason| AuthnError::Refused(reason, Some(index));
        let times = verify::check_claims(&parsed, provider, now).map_err(refused)?;
        let (Some(state), Some(source)) = (keys.get_mut(index), self.sources.get(index)) else {
            return Err(refused(Reason::KeysUnavailable));
        };
        let key_set = match state.status(source, now) {
            KeyStatus::Ready(set) => set,
            KeyStatus::Pending if may_wait => return Err(AuthnError::WaitForKeys(index)),
            KeyStatus::Pending | KeyStatus::Expired => {
                return Err(refused(Reason::KeysUnavailable))
            }
        };
        // Signature work is what the budget protects: one unit per key the token will be tried
        // against (several only for a token without `kid`), none when no key could verify it.
        let attempts = key_set
            .candidates(parsed.kid.as_deref(), parsed.alg)
            .count();
        for _ in 0..attempts {
            if let Err(seconds) = budget.take(now_ms.saturating_mul(1000), client) {
                return Err(AuthnError::Overloaded(seconds));
            }
        }
        match verify::check_signature(&parsed, key_set) {
            Ok(()) => {}
            Err(Reason::KeyUnknown) if may_wait && state.may_refetch(source, now) => {
                // Possibly a key rotated in since the last fetch: ask for a refetch and wait.
                state.refetch_wanted = true;
                return Err(AuthnError::WaitForKeys(index));
            }
            Err(Reason::SignatureInvalid) => {
                // Remembered for at most a day, never past the token's own `exp`.
                let until = times.exp.min(now.saturating_add(86_400));
                cache.insert_refused(digest, index, until);
                return Err(refused(Reason::SignatureInvalid));
            }
            Err(reason) => return Err(refused(reason)),
        }
        // The signature verified: this address has proven itself (the budget's reserve).
        budget.proven(now_ms.saturating_mul(1000), client);
        let verified = Rc::new(verify::accept(parsed, index, provider, times).map_err(refused)?);
        cache.insert(digest, Rc::clone(&verified));
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::jwks::KeySet;
    use crate::authn::keys::RemoteJwks;
    use crate::mode::Mode;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_cache_hit_needs_usable_keys() {
        let providers = [Provider {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            audiences: vec!["api".into()],
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            clock_skew_seconds: 0,
            max_lifetime_seconds: None,
            typ: None,
            scope_claim: None,
            forward_claims: vec![],
            mode: Mode::Enforce,
        }];
        let sources = [KeySource::Remote(RemoteJwks {
            cluster: "c".into(),
            path: "/j".into(),
            authority: "c".into(),
            refresh_seconds: 10,
            timeout_ms: 1000,
            grace_seconds: 10,
            min_refetch_seconds: 5,
            retry_seconds: 1,
        })];
        let authenticator = Authenticator {
            providers: &providers,
            sources: &sources,
            max_token_bytes: 8192,
        };
        let mut keys = [ProviderKeys {
            keys: Some(Rc::new(KeySet::default())),
            fetched_at: Some(1000),
            refetch_wanted: false,
        }];
        let mut cache = TokenCache::new(4, [1, 2, 3, 4]);
        let token = "header.payload.signature";
        cache.insert(
            cache.digest(token),
            Rc::new(VerifiedToken {
                provider: 0,
                exp: 5000,
                nbf: None,
                scopes: vec![],
                forward_headers: vec![],
                claims: Default::default(),
            }),
        );
        assert!(authenticator
            .authenticate(
                token,
                None,
                AuthnState {
                    keys: &mut keys,
                    cache: &mut cache,
                    budget: &mut VerificationBudget::unlimited(),
                    client: None
                },
                1019_000,
                true
            )
            .is_ok());
        assert_eq!(
            authenticator
                .authenticate(
                    token,
                    None,
                    AuthnState {
                        keys: &mut keys,
                        cache: &mut cache,
                        budget: &mut VerificationBudget::unlimited(),
                        client: None
                    },
                    1020_000,
                    true
                )
                .unwrap_err(),
            AuthnError::Refused(Reason::KeysUnavailable, Some(0))
        );
        assert_eq!(
            authenticator
                .authenticate(
                    token,
                    Some(&[]),
                    AuthnState {
                        keys: &mut keys,
                        cache: &mut cache,
                        budget: &mut VerificationBudget::unlimited(),
                        client: None
                    },
                    1000_000,
                    true
                )
                .unwrap_err(),
            AuthnError::Refused(Reason::IssuerUnknown, Some(0))
        );
    }
}
