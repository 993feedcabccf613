//! Rate limiting and throttling, exact across Envoy's workers: token buckets (GCRA, [`gcra`]) per
//! route and global, keyed by client, subject, API key, address, route or a combination; and a
//! failed-authentication lockout per address. State lives in proxy-wasm shared data in a fixed
//! table of slots ([`slots`]) updated by compare-and-swap, so memory is bounded whatever the key
//! cardinality. Limits are per Envoy process; across a fleet, Envoy's global rate limit service is
//! the engine.

pub mod concurrency;
pub mod gcra;
pub mod slots;
pub mod store;

use crate::config_error::ConfigError;
use gcra::Rate;
use serde::Deserialize;
use slots::{Contended, Occupancy, Record, SlotTable, WhenFull};
use store::CounterStore;

// ---- configuration ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    #[serde(default = "default_slots")]
    slots: u32,
    hash_key: Option<String>,
    #[serde(default)]
    trusted_forwarded_hops: u32,
    #[serde(default)]
    headers_on_allowed: bool,
    #[serde(default)]
    global: Vec<RawLimit>,
    #[serde(default)]
    concurrency: Vec<concurrency::RawConcurrency>,
    lockout: Option<RawLockout>,
}

fn default_slots() -> u32 {
    16_384
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    name: String,
    key: Vec<KeyPart>,
    requests: u32,
    per_seconds: u32,
    burst: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLockout {
    failures: u32,
    window_seconds: u32,
    lock_seconds: u32,
}

/// What a bucket is keyed by.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyPart {
    /// The token's `client_id` (else `azp`), or the API key's client.
    Client,
    /// The token's `sub`.
    Subject,
    /// The API key's id.
    ApiKey,
    /// The client address (Envoy's `source.address`, or a trusted `x-forwarded-for` hop).
    Address,
    /// The route id.
    Route,
}

impl Limit {
    pub fn uses(&self, part: KeyPart) -> bool {
        self.key.contains(&part)
    }
}

#[derive(Debug)]
pub struct Limit {
    /// Shared-data namespace: "<route id>/<name>" or "global/<name>".
    namespace: String,
    pub name: String,
    key: Vec<KeyPart>,
    rate: Rate,
    requests: u32,
    per_seconds: u32,
}

#[derive(Debug)]
pub struct Lockout {
    failures: i64,
    window_us: i64,
    lock_us: i64,
}

#[derive(Debug)]
pub struct RateLimiting {
    pub buckets: SlotTable,
    pub lockouts: SlotTable,
    pub global: Vec<Limit>,
    /// Global limits on requests in flight.
    pub concurrency: Vec<concurrency::ConcurrencyLimit>,
    pub lockout: Option<Lockout>,
    pub headers_on_allowed: bool,
    pub trusted_forwarded_hops: u32,
}

/// Compiles a list of limits (global or a route's); `scope` prefixes their namespaces.
pub fn compile_limits(
    raw: Vec<RawLimit>,
    path: &str,
    scope: &str,
) -> Result<Vec<Limit>, ConfigError> {
    let mut limits: Vec<Limit> = Vec::with_capacity(raw.len());
    for (i, l) in raw.into_iter().enumerate() {
        let fail = |m: &str| ConfigError {
            path: format!("{path}[{i}]"),
            message: m.to_string(),
        };
        if l.name.is_empty()
            || !l
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(fail(
                "name: letters, digits, - and _ only (it appears in RateLimit headers)",
            ));
        }
        if limits.iter().any(|other| other.name == l.name) {
            return Err(fail("name: duplicate"));
        }
        if l.key.is_empty() {
            return Err(fail(
                "key: name at least one of client, subject, api_key, address, route",
            ));
        }
        let burst = l.burst.unwrap_or(l.requests);
        let Some(rate) = Rate::new(l.requests, l.per_seconds, burst) else {
            return Err(fail("requests, per_seconds and burst must be positive, at most 1 000 000 requests per second"));
        };
        limits.push(Limit {
            namespace: format!("{scope}/{}", l.name),
            name: l.name,
            key: l.key,
            rate,
            requests: l.requests,
            per_seconds: l.per_seconds,
        });
    }
    Ok(limits)
}

impl RateLimiting {
    pub fn compile(
        raw: Option<RawRateLimits>,
        config_text: &[u8],
    ) -> Result<RateLimiting, ConfigError> {
        // Route limits work without a `rate_limits` section: then every setting is its default.
        let raw = raw.unwrap_or(RawRateLimits {
            slots: default_slots(),
            hash_key: None,
            trusted_forwarded_hops: 0,
            headers_on_allowed: false,
            global: Vec::new(),
            concurrency: Vec::new(),
            lockout: None,
        });
        if !(slots::PROBES..=1 << 20).contains(&raw.slots) {
            return Err(ConfigError {
                path: "rate_limits.slots".into(),
                message: "must be between 4 and 1048576".into(),
            });
        }
        // The slot hash is keyed so clients cannot aim their keys at someone else's slots. The
        // key must be the same in every worker VM: from the configuration, or derived from it.
        let seed = seed_from(raw.hash_key.as_deref().map_or(config_text, str::as_bytes));
        let lockout = match raw.lockout {
            None => None,
            Some(l) if l.failures > 0 && l.window_seconds > 0 && l.lock_seconds > 0 => {
                Some(Lockout {
                    failures: i64::from(l.failures),
                    window_us: i64::from(l.window_seconds) * 1_000_000,
                    lock_us: i64::from(l.lock_seconds) * 1_000_000,
                })
            }
            Some(_) => {
                return Err(ConfigError {
                    path: "rate_limits.lockout".into(),
                    message: "failures, window_seconds and lock_seconds must be positive".into(),
                });
            }
        };
        Ok(RateLimiting {
            buckets: SlotTable::new("finguard:rl:", raw.slots, seed),
            lockouts: SlotTable::new(
                "finguard:lo:",
                raw.slots.div_ceil(4).max(slots::PROBES),
                seed,
            ),
            global: compile_limits(raw.global, "rate_limits.global", "global")?,
            concurrency: concurrency::compile(
                raw.concurrency,
                "rate_limits.concurrency",
                "global",
            )?,
            lockout,
            headers_on_allowed: raw.headers_on_allowed,
            trusted_forwarded_hops: raw.trusted_forwarded_hops,
        })
    }

    pub fn is_active(&self) -> bool {
        !self.global.is_empty() || self.lockout.is_some()
    }
}

fn seed_from(bytes: &[u8]) -> (u64, u64) {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let word = |i: usize| u64::from_le_bytes(digest[i..i + 8].try_into().unwrap_or([0; 8]));
    (word(0), word(8))
}

// ---- decisions --------------------------------------------------------------------------

/// Who is asking, for bucket keys. Absent parts key as "-".
#[derive(Debug, Default, Clone, Copy)]
pub struct Identity<'a> {
    pub client: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub api_key: Option<&'a str>,
    pub address: Option<&'a str>,
    pub route: &'a str,
}

impl Identity<'_> {
    pub(crate) fn key(&self, parts: &[KeyPart]) -> String {
        let mut key = String::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push('\u{1f}');
            }
            let value = match part {
                KeyPart::Client => self.client,
                KeyPart::Subject => self.subject,
                KeyPart::ApiKey => self.api_key,
                KeyPart::Address => self.address,
                KeyPart::Route => Some(self.route),
            };
            key.push_str(value.unwrap_or("-"));
        }
        key
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitDecision {
    pub allowed: bool,
    pub retry_after_seconds: u64,
    /// `RateLimit-Policy` and `RateLimit` (IETF httpapi draft), for the response.
    pub headers: Vec<(&'static str, String)>,
}

/// Checks every limit; all must pass. Each is consumed as it is checked (like Envoy's
/// descriptors): a request refused by a later limit has still used a token of the earlier ones.
/// A store that keeps losing races fails closed (refused, retry after 1 s).
pub fn check(
    store: &mut dyn CounterStore,
    table: &SlotTable,
    limits: &[&Limit],
    who: &Identity<'_>,
    now_us: i64,
    headers_when_allowed: bool,
) -> LimitDecision {
    let mut tightest: Option<(&str, gcra::Outcome)> = None;
    let mut refusal: Option<u64> = None;
    for limit in limits {
        if refusal.is_some() {
            continue;
        }
        let rate = limit.rate;
        // A full table: the bucket with the least debt (earliest TAT) makes room. Its key
        // starts again with a full bucket, so no eviction denies anyone, and a heavy user is
        // the last to be forgotten.
        let least_debt = |r: &Record| Some(r.a);
        let result = table.update(
            store,
            &limit.namespace,
            &who.key(&limit.key),
            |r| r.a <= now_us,
            WhenFull::Evict(&least_debt),
            |record: Record| {
                let outcome = gcra::decide(rate, record.a, now_us);
                let write = outcome.allowed.then_some(Record {
                    a: outcome.new_tat_us,
                    ..record
                });
                (outcome, write)
            },
        );
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(Contended) => {
                refusal = Some(1);
                continue;
            }
        };
        if !outcome.allowed {
            refusal = Some(outcome.retry_after_seconds);
        }
        if tightest.is_none_or(|(_, t)| outcome.remaining < t.remaining) {
            tightest = Some((&limit.name, outcome));
        }
    }
    // The header fields are built only when they will be sent (a refusal, or when configured
    // for allowed responses): formatting them costs more than the bucket update.
    let mut headers = Vec::new();
    if refusal.is_some() || headers_when_allowed {
        let policies: Vec<String> = limits
            .iter()
            .map(|l| format!("\"{}\";q={};w={}", l.name, l.requests, l.per_seconds))
            .collect();
        headers.push(("ratelimit-policy", policies.join(", ")));
        if let Some((name, outcome)) = tightest {
            let remaining = if refusal.is_some() {
                0
            } else {
                outcome.remaining
            };
            headers.push((
                "ratelimit",
                format!("\"{name}\";r={remaining};t={}", outcome.reset_seconds),
            ));
        }
    }
    LimitDecision {
        allowed: refusal.is_none(),
        retry_after_seconds: refusal.unwrap_or(0),
        headers,
    }
}

impl RateLimiting {
    /// Estimated live share of each shared table in use (`"buckets"`, `"lockouts"`), from an
    /// even sample of [`OCCUPANCY_SAMPLE`] slots: live means not free for another key to take
    /// (a bucket in debt, a failure window or lock in force). For the host's gauges.
    pub fn occupancy(
        &self,
        store: &mut dyn CounterStore,
        now_us: i64,
        has_rate_limits: bool,
    ) -> Vec<(&'static str, Occupancy)> {
        let mut tables = Vec::with_capacity(2);
        if has_rate_limits {
            let full_bucket = |r: &Record| r.a <= now_us;
            tables.push((
                "buckets",
                self.buckets.occupancy(store, full_bucket, OCCUPANCY_SAMPLE),
            ));
        }
        if let Some(lockout) = &self.lockout {
            let idle = |r: &Record| lockout.idle(r, now_us);
            tables.push((
                "lockouts",
                self.lockouts.occupancy(store, idle, OCCUPANCY_SAMPLE),
            ));
        }
        tables
    }
}

/// Slots read per table for an occupancy estimate: ±6 points at 95 % for any fill level, at a
/// fixed cost of this many shared-data reads per report.
pub const OCCUPANCY_SAMPLE: u32 = 256;

/// Lockout records: a = window start, b = failures in the window, c = locked until (µs).
impl Lockout {
    fn idle(&self, record: &Record, now_us: i64) -> bool {
        record.c <= now_us && record.a.saturating_add(self.window_us) <= now_us
    }

    /// Seconds left if `address` is locked out.
    pub fn locked(
        &self,
        store: &mut dyn CounterStore,
        table: &SlotTable,
        address: &str,
        now_us: i64,
    ) -> Option<u64> {
        let record = table.read(store, "lockout", address)?;
        (record.c > now_us).then(|| {
            u64::try_from(record.c - now_us)
                .unwrap_or(0)
                .div_ceil(1_000_000)
                .max(1)
        })
    }

    /// Counts one failed authentication; true when it locks the address out (just now).
    pub fn record_failure(
        &self,
        store: &mut dyn CounterStore,
        table: &SlotTable,
        address: &str,
        now_us: i64,
    ) -> bool {
        // A full table: the window with the fewest failures makes room; a lock in force is never
        // taken over. Nothing to take: this failure is not counted (lockout degrades for this
        // address, counted as `no_room`), and no other address is touched.
        let fewest_failures = |r: &Record| (r.c <= now_us).then_some(r.b);
        let result = table.update(
            store,
            "lockout",
            address,
            |r| self.idle(r, now_us),
            WhenFull::Evict(&fewest_failures),
            |mut r: Record| {
                if r.a.saturating_add(self.window_us) <= now_us {
                    r.a = now_us;
                    r.b = 0;
                }
                r.b += 1;
                let locks_now = r.b >= self.failures && r.c <= now_us;
                if locks_now {
                    r.c = now_us.saturating_add(self.lock_us);
                    // A fresh window after the lock: the next failures count from zero.
                    r.b = 0;
                    r.a = r.c;
                }
                (locks_now, Some(r))
            },
        );
        result.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::store::MemoryStore;
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn limiting(v: serde_json::Value) -> RateLimiting {
        let raw: RawRateLimits = serde_json::from_value(v).unwrap();
        RateLimiting::compile(Some(raw), b"config").unwrap()
    }

    #[test]
    fn all_limits_must_pass_and_headers_name_the_tightest() {
        let rl = limiting(json!({"slots": 64, "global": [
            {"name": "per-second", "key": ["client"], "requests": 3, "per_seconds": 1},
            {"name": "per-hour", "key": ["client", "route"], "requests": 5, "per_seconds": 3600}
        ]}));
        let mut store = MemoryStore::default();
        rl.buckets.create_slots(&mut store);
        let limits: Vec<&Limit> = rl.global.iter().collect();
        let who = Identity {
            client: Some("acme"),
            route: "r",
            ..Default::default()
        };
        let now = 1_000_000_000_000;
        let first = check(&mut store, &rl.buckets, &limits, &who, now, true);
        assert!(first.allowed);
        assert_eq!(
            first.headers[0],
            (
                "ratelimit-policy",
                "\"per-second\";q=3;w=1, \"per-hour\";q=5;w=3600".into()
            )
        );
        assert_eq!(
            first.headers[1],
            ("ratelimit", "\"per-second\";r=2;t=1".into())
        );
        assert!(check(&mut store, &rl.buckets, &limits, &who, now, true).allowed);
        assert!(check(&mut store, &rl.buckets, &limits, &who, now, true).allowed);
        let refused = check(&mut store, &rl.buckets, &limits, &who, now, true);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_seconds, 1);
        assert!(refused.headers[1].1.contains("r=0"));
        // Another client is not affected; one second later acme may go on, until the hourly cap.
        let other = Identity {
            client: Some("bank"),
            ..who
        };
        assert!(check(&mut store, &rl.buckets, &limits, &other, now, true).allowed);
        assert!(
            check(
                &mut store,
                &rl.buckets,
                &limits,
                &who,
                now + 1_000_000,
                true
            )
            .allowed
        );
        assert!(
            check(
                &mut store,
                &rl.buckets,
                &limits,
                &who,
                now + 2_000_000,
                true
            )
            .allowed
        );
        let hourly = check(
            &mut store,
            &rl.buckets,
            &limits,
            &who,
            now + 3_000_000,
            true,
        );
        assert!(!hourly.allowed);
        assert!(hourly.retry_after_seconds > 600);
    }

    #[test]
    fn lost_races_are_retried_and_persistent_contention_fails_closed() {
        let rl = limiting(
            json!({"slots": 64, "global": [{"name": "l", "key": ["address"], "requests": 1, "per_seconds": 60}]}),
        );
        let mut store = MemoryStore::default();
        rl.buckets.create_slots(&mut store);
        let limits: Vec<&Limit> = rl.global.iter().collect();
        let who = Identity {
            address: Some("10.0.0.1"),
            ..Default::default()
        };
        store.inject_mismatches = 3;
        assert!(check(&mut store, &rl.buckets, &limits, &who, 0, false).allowed);
        assert!(!check(&mut store, &rl.buckets, &limits, &who, 0, false).allowed);
        let fresh = Identity {
            address: Some("10.0.0.2"),
            ..Default::default()
        };
        store.inject_mismatches = slots::MAX_ATTEMPTS;
        let contended = check(&mut store, &rl.buckets, &limits, &fresh, 0, false);
        assert!(!contended.allowed && contended.retry_after_seconds == 1);
    }

    #[test]
    fn lockout_after_failures_and_release() {
        let rl = limiting(
            json!({"slots": 64, "lockout": {"failures": 3, "window_seconds": 60, "lock_seconds": 300}}),
        );
        let lockout = rl.lockout.as_ref().unwrap();
        let mut store = MemoryStore::default();
        rl.lockouts.create_slots(&mut store);
        let t = 1_000_000_000;
        assert!(!lockout.record_failure(&mut store, &rl.lockouts, "1.2.3.4", t));
        assert!(!lockout.record_failure(&mut store, &rl.lockouts, "1.2.3.4", t + 1));
        assert_eq!(
            lockout.locked(&mut store, &rl.lockouts, "1.2.3.4", t + 2),
            None
        );
        assert!(lockout.record_failure(&mut store, &rl.lockouts, "1.2.3.4", t + 2));
        assert_eq!(
            lockout.locked(&mut store, &rl.lockouts, "1.2.3.4", t + 3),
            Some(300)
        );
        assert_eq!(
            lockout.locked(&mut store, &rl.lockouts, "5.6.7.8", t + 3),
            None
        );
        assert_eq!(
            lockout.locked(&mut store, &rl.lockouts, "1.2.3.4", t + 300_000_003),
            None
        );
        // Failures spread wider than the window never lock.
        let mut at = t + 400_000_000;
        for _ in 0..10 {
            assert!(!lockout.record_failure(&mut store, &rl.lockouts, "9.9.9.9", at));
            at += 31_000_000;
        }
    }

    #[test]
    fn no_address_is_locked_out_by_what_other_addresses_do() {
        let rl = limiting(
            json!({"slots": 16, "lockout": {"failures": 3, "window_seconds": 60, "lock_seconds": 300}}),
        );
        let lockout = rl.lockout.as_ref().unwrap();
        let mut store = MemoryStore::default();
        rl.lockouts.create_slots(&mut store);
        let t = 1_000_000_000;
        // A guesser locks itself out; then thousands of addresses fail, each to the limit.
        for i in 0..3 {
            lockout.record_failure(&mut store, &rl.lockouts, "6.6.6.6", t + i);
        }
        // Thousands of addresses fail once (evicting each other's windows), then as many fail
        // to the limit (filling the table with locks in force).
        for i in 0..5000 {
            let address = format!("2001:db8::1:{i:x}");
            lockout.record_failure(&mut store, &rl.lockouts, &address, t + 5);
        }
        for i in 0..5000 {
            let address = format!("2001:db8::{i:x}");
            for j in 0..3 {
                lockout.record_failure(&mut store, &rl.lockouts, &address, t + 10 + j);
            }
        }
        // Addresses that never failed (and the plain peer) are never locked out.
        for innocent in ["10.0.0.1", "127.0.0.1", "2001:db8::ffff:1"] {
            assert_eq!(
                lockout.locked(&mut store, &rl.lockouts, innocent, t + 20),
                None,
                "{innocent}"
            );
        }
        // The lock in force was never taken over.
        assert!(lockout
            .locked(&mut store, &rl.lockouts, "6.6.6.6", t + 20)
            .is_some());
        let pressure = rl.lockouts.take_pressure();
        assert!(pressure.evicted > 0 && pressure.no_room > 0, "{pressure:?}");
        assert_eq!(pressure.overflow, 0);
    }

    #[test]
    fn a_newcomer_to_a_full_bucket_table_gets_a_bucket_of_its_own() {
        let rl = limiting(json!({"slots": 16, "global": [
            {"name": "per-client", "key": ["address"], "requests": 2, "per_seconds": 60}
        ]}));
        let mut store = MemoryStore::default();
        rl.buckets.create_slots(&mut store);
        let limits: Vec<&Limit> = rl.global.iter().collect();
        let t = 1_000_000_000;
        let who = |address: &'static str| Identity {
            address: Some(address),
            ..Default::default()
        };
        // A heavy client spends its budget; a flood of fresh addresses fills the table.
        assert!(check(&mut store, &rl.buckets, &limits, &who("6.6.6.6"), t, false).allowed);
        assert!(check(&mut store, &rl.buckets, &limits, &who("6.6.6.6"), t, false).allowed);
        for i in 0..2000 {
            let address: &'static str = Box::leak(format!("2001:db8::{i:x}").into_boxed_str());
            check(
                &mut store,
                &rl.buckets,
                &limits,
                &who(address),
                t + 1,
                false,
            );
        }
        let mut allowed = |address: &'static str, at: i64| {
            check(&mut store, &rl.buckets, &limits, &who(address), at, false).allowed
        };
        // A newcomer's first requests are allowed: nobody else's drained bucket is shared.
        assert!(allowed("10.0.0.1", t + 2) && allowed("10.0.0.1", t + 2));
        assert!(!allowed("10.0.0.1", t + 2));
        // The heavy client's debt was kept: it is still refused.
        assert!(!allowed("6.6.6.6", t + 3));
        assert!(rl.buckets.take_pressure().evicted > 0);
    }

    #[test]
    fn route_limits_without_a_section_get_the_default_table() {
        let rl = RateLimiting::compile(None, b"config").unwrap();
        assert_eq!(rl.buckets.slots(), default_slots());
    }

    #[test]
    fn configuration_errors() {
        let bad = |v: serde_json::Value| {
            let raw: RawRateLimits = serde_json::from_value(v).unwrap();
            RateLimiting::compile(Some(raw), b"").unwrap_err().path
        };
        assert_eq!(
            bad(
                json!({"global": [{"name": "a b", "key": ["client"], "requests": 1, "per_seconds": 1}]})
            ),
            "rate_limits.global[0]"
        );
        assert_eq!(
            bad(json!({"global": [{"name": "a", "key": [], "requests": 1, "per_seconds": 1}]})),
            "rate_limits.global[0]"
        );
        assert_eq!(
            bad(
                json!({"global": [{"name": "a", "key": ["client"], "requests": 0, "per_seconds": 1}]})
            ),
            "rate_limits.global[0]"
        );
        assert_eq!(bad(json!({"slots": 1})), "rate_limits.slots");
        assert_eq!(
            bad(json!({"lockout": {"failures": 0, "window_seconds": 1, "lock_seconds": 1}})),
            "rate_limits.lockout"
        );
    }
}
