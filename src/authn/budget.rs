//! The verification budget: at most so many cold signature verifications per second per worker.
//! Signature checks are the expensive part of authentication (~100–200 µs in V8 against ~3 µs for
//! a cached token); a flood of forged or fresh tokens must not be able to buy a worker's whole CPU.
//! Tokens found in the cache never touch the budget, and cheap checks (size, structure, `alg`,
//! `kid`, issuer, time claims, audience) run before it, so only plausible tokens spend it. Over
//! budget, a new token gets 503 with Retry-After instead of burning CPU.
//!
//! Per VM, in memory: a worker protects its own CPU, so no shared state is needed.
//!
//! Shared fairly, against one flooder and against many:
//! - One client address may take at most its share of the whole budget
//!   (`client_share_percent`, default 25 %), so one client's flood of fresh or forged tokens
//!   leaves the rest to others; it waits (503) while they verify. Shares are kept for the
//!   [`CLIENTS`] addresses seen last; a forgotten address starts with a full share.
//! - A part of the budget (`proven_reserve_percent`, default 25 %) is kept for addresses that
//!   presented a token whose signature verified on this worker within [`PROVEN_FOR_SECONDS`]
//!   ("proven" addresses, the [`CLIENTS`] most recent). Everyone draws from the open part first;
//!   only a proven address may go on into the reserve. A botnet of forged tokens, however many
//!   addresses it has, can never prove an address, so it drains the open part only and clients
//!   that verified before keep getting their new tokens verified. The price: addresses never
//!   seen verifying (say, every client just after a restart) share the open part, 75 % of the
//!   budget by default.

use crate::config_error::{err, ConfigError};
use crate::ratelimit::gcra::{self, Rate};
use lru::LruCache;
use serde::Deserialize;
use std::num::NonZeroUsize;

/// Client addresses whose share, and whose proof, is tracked per worker.
pub const CLIENTS: usize = 1024;

/// How long a verified signature keeps its address proven (a day: longer than any token refresh
/// interval, so a client that renews its token hourly stays proven).
pub const PROVEN_FOR_SECONDS: i64 = 86_400;

/// `verification_budget`: `burst` at once, then `requests` per `per_seconds`, per worker.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    /// Cold verifications allowed per `per_seconds`.
    requests: u32,
    /// The budget's period.
    per_seconds: u32,
    /// Verifications allowed at once (default: `requests`).
    burst: Option<u32>,
    /// The most one client address may take of the budget, in percent (100: no per-client cap).
    #[serde(default = "default_client_share")]
    client_share_percent: u32,
    /// The part of the budget only proven addresses may use, in percent (0: no reserve).
    #[serde(default = "default_proven_reserve")]
    proven_reserve_percent: u32,
}

impl Default for RawBudget {
    fn default() -> Self {
        // ~100–200 µs each in V8: at most a fifth of a worker's CPU on cold verifications.
        RawBudget {
            requests: 1000,
            per_seconds: 1,
            burst: None,
            client_share_percent: default_client_share(),
            proven_reserve_percent: default_proven_reserve(),
        }
    }
}

fn default_client_share() -> u32 {
    25
}

fn default_proven_reserve() -> u32 {
    25
}

/// The compiled budget: the open part, the reserve, and one client's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// What any client draws from.
    open: Rate,
    /// What only proven addresses may use once the open part is spent.
    reserve: Option<Rate>,
    /// One client address's cap over both parts (`None`: no per-client cap).
    client_share: Option<Rate>,
}

impl BudgetPolicy {
    pub(crate) fn compile(raw: &RawBudget) -> Result<BudgetPolicy, ConfigError> {
        let burst = raw.burst.unwrap_or(raw.requests);
        if Rate::new(raw.requests, raw.per_seconds, burst).is_none() {
            return err(
                "verification_budget",
                "requests, per_seconds and burst must be positive",
            );
        }
        let share = raw.client_share_percent;
        if !(1..=100).contains(&share) {
            return err(
                "verification_budget.client_share_percent",
                "must be between 1 and 100",
            );
        }
        let reserve = raw.proven_reserve_percent;
        if reserve > 90 {
            return err(
                "verification_budget.proven_reserve_percent",
                "must be between 0 and 90 (the open part is what new clients verify with)",
            );
        }
        // A percentage of a count, at least one.
        let part = |n: u32, percent: u32| {
            u32::try_from((u64::from(n) * u64::from(percent) / 100).max(1)).unwrap_or(n)
        };
        let rate = |requests: u32, burst: u32| Rate::new(requests, raw.per_seconds, burst);
        let client_share = if share < 100 {
            rate(part(raw.requests, share), part(burst, share))
        } else {
            None
        };
        let (open, reserve) = if reserve == 0 || raw.requests < 2 || burst < 2 {
            (rate(raw.requests, burst), None)
        } else {
            let (kept, kept_burst) = (part(raw.requests, reserve), part(burst, reserve));
            (
                rate(raw.requests - kept, burst - kept_burst),
                rate(kept, kept_burst),
            )
        };
        let Some(open) = open else {
            return err("verification_budget", "the budget is too small to split");
        };
        Ok(BudgetPolicy {
            open,
            reserve,
            client_share,
        })
    }

    /// Whether the per-client share needs the client address.
    pub fn needs_client_address(&self) -> bool {
        self.client_share.is_some() || self.reserve.is_some()
    }
}

/// One worker's state of the budget.
#[derive(Debug, Clone)]
pub struct VerificationBudget {
    /// `None`: unlimited.
    policy: Option<BudgetPolicy>,
    open_tat_us: i64,
    reserve_tat_us: i64,
    /// Each recent client's theoretical arrival time within its share.
    shares: LruCache<String, i64>,
    /// Addresses whose token verified, with the time their proof lapses.
    proven: LruCache<String, i64>,
}

impl VerificationBudget {
    pub fn new(policy: &BudgetPolicy) -> VerificationBudget {
        VerificationBudget::with(Some(*policy))
    }

    /// A budget that never refuses (tests, tools).
    pub fn unlimited() -> VerificationBudget {
        VerificationBudget::with(None)
    }

    fn with(policy: Option<BudgetPolicy>) -> VerificationBudget {
        // CLIENTS is a non-zero constant; the fallback is never taken.
        let capacity = NonZeroUsize::new(CLIENTS).unwrap_or(NonZeroUsize::MIN);
        VerificationBudget {
            policy,
            open_tat_us: 0,
            reserve_tat_us: 0,
            shares: LruCache::new(capacity),
            proven: LruCache::new(capacity),
        }
    }

    /// Takes one verification for `client` (its address, when known); `Err(seconds)` to wait
    /// when the budget, or this client's share of it, is spent.
    pub fn take(&mut self, now_us: i64, client: Option<&str>) -> Result<(), u64> {
        let Some(policy) = self.policy else {
            return Ok(());
        };
        let share_tat = match (policy.client_share, client) {
            (Some(share), Some(client)) => {
                let tat = self.shares.get(client).copied().unwrap_or(0);
                let outcome = gcra::decide(share, tat, now_us);
                if !outcome.allowed {
                    return Err(outcome.retry_after_seconds);
                }
                Some(outcome.new_tat_us)
            }
            _ => None,
        };
        let open = gcra::decide(policy.open, self.open_tat_us, now_us);
        if open.allowed {
            self.open_tat_us = open.new_tat_us;
        } else {
            let reserve = match (policy.reserve, client) {
                (Some(reserve), Some(client)) if self.is_proven(client, now_us) => {
                    gcra::decide(reserve, self.reserve_tat_us, now_us)
                }
                _ => return Err(open.retry_after_seconds),
            };
            if !reserve.allowed {
                return Err(open.retry_after_seconds.min(reserve.retry_after_seconds));
            }
            self.reserve_tat_us = reserve.new_tat_us;
        }
        if let (Some(client), Some(tat)) = (client, share_tat) {
            self.shares.put(client.to_owned(), tat);
        }
        Ok(())
    }

    /// Records that `client` presented a token whose signature verified: it may use the reserve
    /// for [`PROVEN_FOR_SECONDS`].
    pub fn proven(&mut self, now_us: i64, client: Option<&str>) {
        let Some(client) = client.filter(|_| self.policy.is_some_and(|p| p.reserve.is_some()))
        else {
            return;
        };
        let until = now_us.saturating_add(PROVEN_FOR_SECONDS * 1_000_000);
        match self.proven.get_mut(client) {
            Some(lapses) => *lapses = until,
            None => {
                self.proven.put(client.to_owned(), until);
            }
        }
    }

    fn is_proven(&mut self, client: &str, now_us: i64) -> bool {
        self.proven
            .get(client)
            .is_some_and(|lapses| *lapses > now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy(requests: u32, per_seconds: u32, share: u32, reserve: u32) -> BudgetPolicy {
        BudgetPolicy::compile(&RawBudget {
            requests,
            per_seconds,
            burst: None,
            client_share_percent: share,
            proven_reserve_percent: reserve,
        })
        .unwrap()
    }

    #[test]
    fn spends_and_refills() {
        let mut budget = VerificationBudget::new(&policy(2, 1, 100, 0));
        assert!(budget.take(0, None).is_ok());
        assert!(budget.take(0, None).is_ok());
        assert_eq!(budget.take(0, None), Err(1));
        assert!(budget.take(500_000, None).is_ok());
        let mut unlimited = VerificationBudget::unlimited();
        assert!((0..10_000).all(|_| unlimited.take(0, Some("a")).is_ok()));
    }

    #[test]
    fn one_client_takes_at_most_its_share() {
        let mut budget = VerificationBudget::new(&policy(8, 60, 25, 0));
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

    #[test]
    fn the_reserve_is_for_proven_addresses_only() {
        // 8 per minute: 6 open, 2 kept for proven addresses; no per-client cap.
        let mut budget = VerificationBudget::new(&policy(8, 60, 100, 25));
        assert!(budget.take(0, Some("b")).is_ok());
        budget.proven(0, Some("b"));
        // A botnet, one forged token per address, drains the open part and nothing more.
        let botnet: Vec<String> = (0..1000).map(|i| format!("2001:db8::{i}")).collect();
        let drained = botnet
            .iter()
            .filter(|a| budget.take(0, Some(a.as_str())).is_ok())
            .count();
        assert_eq!(drained, 5, "the open part left after b's first token");
        // A newcomer waits; the proven address verifies from the reserve, until it is spent.
        assert!(budget.take(0, Some("newcomer")).is_err());
        assert!(budget.take(0, None).is_err());
        assert!(budget.take(0, Some("b")).is_ok());
        assert!(budget.take(0, Some("b")).is_ok());
        assert!(budget.take(0, Some("b")).is_err());
        // A proof lapses.
        let later = (PROVEN_FOR_SECONDS + 1) * 1_000_000;
        let mut budget = VerificationBudget::new(&policy(8, 60, 100, 25));
        budget.proven(0, Some("b"));
        for a in &botnet {
            let _ = budget.take(later, Some(a.as_str()));
        }
        assert!(budget.take(later, Some("b")).is_err());
    }

    #[test]
    fn many_proofs_cannot_be_evicted_by_failures() {
        // Only a verified signature writes the proven set: a flood of other addresses, taking
        // from the budget, leaves it as it was.
        let mut budget = VerificationBudget::new(&policy(4000, 1, 100, 25));
        budget.proven(0, Some("b"));
        for i in 0..(3 * CLIENTS) {
            let _ = budget.take(0, Some(&format!("10.0.{}.{}", i / 256, i % 256)));
        }
        for _ in 0..4000 {
            let _ = budget.take(0, Some("flooder"));
        }
        assert!(budget.take(0, Some("newcomer")).is_err());
        assert!(budget.take(0, Some("b")).is_ok());
    }

    #[test]
    fn percentages_are_checked_and_split_whole_units() {
        let raw = |share, reserve| RawBudget {
            requests: 10,
            per_seconds: 1,
            burst: Some(4),
            client_share_percent: share,
            proven_reserve_percent: reserve,
        };
        let p = BudgetPolicy::compile(&raw(100, 25)).unwrap();
        assert_eq!((p.open.burst, p.reserve.map(|r| r.burst)), (3, Some(1)));
        assert_eq!(p.open.interval_us, 125_000, "8 per second open");
        assert!(!BudgetPolicy::compile(&raw(100, 0))
            .unwrap()
            .needs_client_address());
        assert!(BudgetPolicy::compile(&raw(25, 0))
            .unwrap()
            .needs_client_address());
        for (share, reserve, field) in [
            (0, 25, "client_share_percent"),
            (101, 25, "client_share_percent"),
            (25, 91, "proven_reserve_percent"),
        ] {
            let e = BudgetPolicy::compile(&raw(share, reserve)).unwrap_err();
            assert_eq!(e.path, format!("verification_budget.{field}"));
        }
    }
}
