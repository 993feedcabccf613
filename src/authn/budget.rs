//! The verification budget: at most so many cold signature verifications per second per worker.
//! Signature checks are the expensive part of authentication (~100–200 µs in V8 against ~3 µs for
//! a cached token); a flood of forged or fresh tokens must not be able to buy a worker's whole CPU.
//! Tokens found in the cache never touch the budget, and cheap checks (size, structure, `alg`,
//! `kid`, issuer, time claims, audience) run before it, so only plausible tokens spend it. Over
//! budget, a new token gets 503 with Retry-After instead of burning CPU.
//!
//! Per VM, in memory: a worker protects its own CPU, so no shared state is needed.
//!
//! Shared fairly: one client address may take at most its share of the budget
//! (`verification_budget.client_share_percent`, default 25 %), so one client's flood of fresh or
//! forged tokens leaves the rest to others; it waits (503) while they verify. Shares are kept
//! for the [`CLIENTS`] addresses seen last; a forgotten address starts with a full share. Many
//! addresses together still share the one budget: a botnet is answered by the lockout and by
//! the edge, and cached (already verified) tokens never need the budget at all.

use crate::ratelimit::gcra::{self, Rate};
use lru::LruCache;
use std::num::NonZeroUsize;

/// Client addresses whose share is tracked per worker.
pub const CLIENTS: usize = 1024;

#[derive(Debug, Clone)]
pub struct VerificationBudget {
    rate: Option<Rate>,
    tat_us: i64,
    /// One client's share, and each recent client's theoretical arrival time.
    share: Option<(Rate, LruCache<String, i64>)>,
}

impl VerificationBudget {
    /// `None`: unlimited.
    pub fn new(rate: Option<Rate>) -> VerificationBudget {
        VerificationBudget {
            rate,
            tat_us: 0,
            share: None,
        }
    }

    /// Limits each client address to `share` of the budget.
    pub fn with_client_share(mut self, share: Option<Rate>) -> VerificationBudget {
        self.share = share.zip(NonZeroUsize::new(CLIENTS).map(LruCache::new));
        self
    }

    /// Takes one verification for `client` (its address, when known); `Err(seconds)` to wait
    /// when the budget, or this client's share of it, is spent.
    pub fn take(&mut self, now_us: i64, client: Option<&str>) -> Result<(), u64> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let mine = match (&mut self.share, client) {
            (Some((share, clients)), Some(client)) => {
                let tat = clients.get(client).copied().unwrap_or(0);
                let outcome = gcra::decide(*share, tat, now_us);
                if !outcome.allowed {
                    return Err(outcome.retry_after_seconds);
                }
                Some(outcome.new_tat_us)
            }
            _ => None,
        };
        let outcome = gcra::decide(rate, self.tat_us, now_us);
        if !outcome.allowed {
            return Err(outcome.retry_after_seconds);
        }
        self.tat_us = outcome.new_tat_us;
        if let (Some((_, clients)), Some(client), Some(tat)) = (&mut self.share, client, mine) {
            clients.put(client.to_owned(), tat);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn spends_and_refills() {
        let mut budget = VerificationBudget::new(Rate::new(2, 1, 2));
        assert!(budget.take(0, None).is_ok());
        assert!(budget.take(0, None).is_ok());
        assert_eq!(budget.take(0, None), Err(1));
        assert!(budget.take(500_000, None).is_ok());
        let mut unlimited = VerificationBudget::new(None);
        assert!((0..10_000).all(|_| unlimited.take(0, Some("a")).is_ok()));
    }

    #[test]
    fn one_client_takes_at_most_its_share() {
        let mut budget =
            VerificationBudget::new(Rate::new(8, 60, 8)).with_client_share(Rate::new(2, 60, 2));
        assert!(budget.take(0, Some("flooder")).is_ok());
        assert!(budget.take(0, Some("flooder")).is_ok());
        // The flooder waits; its refused attempts cost the others nothing.
        for _ in 0..100 {
            assert!(budget.take(0, Some("flooder")).is_err());
        }
        for client in ["a", "a", "b", "b", "c", "c"] {
            assert!(budget.take(0, Some(client)).is_ok(), "{client}");
        }
        // The whole budget is spent now, whoever asks.
        assert!(budget.take(0, Some("d")).is_err());
        assert!(budget.take(0, None).is_err());
    }
}
