//! The verification budget: at most so many cold signature verifications per second per worker.
//! Signature checks are the expensive part of authentication (~100–200 µs in V8 against ~3 µs for
//! a cached token); a flood of forged or fresh tokens must not be able to buy a worker's whole CPU.
//! Tokens found in the cache never touch the budget, and cheap checks (size, structure, `alg`,
//! `kid`, issuer, time claims, audience) run before it, so only plausible tokens spend it. Over
//! budget, a new token gets 503 with Retry-After instead of burning CPU.
//!
//! Per VM, in memory: a worker protects its own CPU, so no shared state is needed.

use crate::ratelimit::gcra::{self, Rate};

#[derive(Debug, Clone)]
pub struct VerificationBudget {
    rate: Option<Rate>,
    tat_us: i64,
}

impl VerificationBudget {
    /// `None`: unlimited.
    pub fn new(rate: Option<Rate>) -> VerificationBudget {
        VerificationBudget { rate, tat_us: 0 }
    }

    /// Takes one verification; `Err(seconds)` to wait when the budget is spent.
    pub fn take(&mut self, now_us: i64) -> Result<(), u64> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let outcome = gcra::decide(rate, self.tat_us, now_us);
        if outcome.allowed {
            self.tat_us = outcome.new_tat_us;
            Ok(())
        } else {
            Err(outcome.retry_after_seconds)
        }
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
        assert!(budget.take(0).is_ok());
        assert!(budget.take(0).is_ok());
        assert_eq!(budget.take(0), Err(1));
        assert!(budget.take(500_000).is_ok());
        let mut unlimited = VerificationBudget::new(None);
        assert!((0..10_000).all(|_| unlimited.take(0).is_ok()));
    }
}
