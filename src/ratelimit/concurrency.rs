//! Throttling under load: at most `max` requests in flight per key (e.g. per client), counted in
//! the same bounded slot table as the buckets. A request takes a unit when it is admitted and
//! gives it back when its stream ends, however it ends (completion, client reset, local reply):
//! the host releases in the HTTP context's destructor.
//!
//! Records: a = requests in flight, b = time of the last change (µs). A count not touched for
//! [`STALE_AFTER_US`] is treated as zero: units leaked by a VM that died cannot block a client
//! for ever (a request running longer than that is not counted any more).

use super::slots::{Contended, Record, SlotTable, WhenFull};
use super::store::CounterStore;
use super::{Identity, KeyPart};
use crate::config_error::ConfigError;
use serde::Deserialize;

pub const STALE_AFTER_US: i64 = 300 * 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConcurrency {
    name: String,
    key: Vec<KeyPart>,
    max: u32,
}

#[derive(Debug)]
pub struct ConcurrencyLimit {
    namespace: String,
    pub name: String,
    key: Vec<KeyPart>,
    max: i64,
}

/// A unit taken: what the end of the stream must give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    pub namespace: String,
    pub key: String,
}

pub fn compile(
    raw: Vec<RawConcurrency>,
    path: &str,
    scope: &str,
) -> Result<Vec<ConcurrencyLimit>, ConfigError> {
    let mut limits: Vec<ConcurrencyLimit> = Vec::with_capacity(raw.len());
    for (i, c) in raw.into_iter().enumerate() {
        let fail = |m: &str| ConfigError {
            path: format!("{path}[{i}]"),
            message: m.to_string(),
        };
        if c.name.is_empty() || limits.iter().any(|l| l.name == c.name) {
            return Err(fail("name: non-empty and unique"));
        }
        if c.key.is_empty() || c.max == 0 {
            return Err(fail("a non-empty key and max >= 1"));
        }
        limits.push(ConcurrencyLimit {
            namespace: format!("{scope}/in-flight/{}", c.name),
            name: c.name,
            key: c.key,
            max: i64::from(c.max),
        });
    }
    Ok(limits)
}

impl ConcurrencyLimit {
    pub fn uses(&self, part: KeyPart) -> bool {
        self.key.contains(&part)
    }
}

fn current(record: &Record, now_us: i64) -> i64 {
    if now_us.saturating_sub(record.b) > STALE_AFTER_US {
        0
    } else {
        record.a.max(0)
    }
}

/// Takes one unit of every limit, or none: on a refusal (`None`) the units already taken are
/// given back. `Some`: the permits to release when the stream ends.
pub fn acquire(
    store: &mut dyn CounterStore,
    table: &SlotTable,
    limits: &[&ConcurrencyLimit],
    who: &Identity<'_>,
    now_us: i64,
) -> Option<Vec<Permit>> {
    let mut taken = Vec::with_capacity(limits.len());
    for limit in limits {
        let key = who.key(&limit.key);
        let max = limit.max;
        let result = table.update(
            store,
            &limit.namespace,
            &key,
            |r| current(r, now_us) == 0,
            // Units must go back to the record that took them: no eviction.
            WhenFull::Overflow,
            |r: Record| {
                let in_flight = current(&r, now_us);
                if in_flight >= max {
                    (false, None)
                } else {
                    (
                        true,
                        Some(Record {
                            a: in_flight + 1,
                            b: now_us,
                            ..r
                        }),
                    )
                }
            },
        );
        match result {
            Ok(true) => taken.push(Permit {
                namespace: limit.namespace.clone(),
                key,
            }),
            Ok(false) | Err(Contended) => {
                release(store, table, &taken, now_us);
                return None;
            }
        }
    }
    Some(taken)
}

/// Gives units back (at stream end).
pub fn release(store: &mut dyn CounterStore, table: &SlotTable, permits: &[Permit], now_us: i64) {
    for permit in permits {
        let _ = table.update(
            store,
            &permit.namespace,
            &permit.key,
            |r| current(r, now_us) == 0,
            // Units must go back to the record that took them: no eviction.
            WhenFull::Overflow,
            |r: Record| {
                let in_flight = current(&r, now_us);
                (
                    (),
                    Some(Record {
                        a: (in_flight - 1).max(0),
                        b: now_us,
                        ..r
                    }),
                )
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::MemoryStore;
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn at_most_max_in_flight_and_released_at_stream_end() {
        let raw: Vec<RawConcurrency> =
            serde_json::from_value(json!([{"name": "c", "key": ["client"], "max": 2}])).unwrap();
        let limits = compile(raw, "rate_limits.concurrency", "global").unwrap();
        let refs: Vec<&ConcurrencyLimit> = limits.iter().collect();
        let table = SlotTable::new("t:", 16, (1, 2));
        let mut store = MemoryStore::default();
        table.create_slots(&mut store);
        let acme = Identity {
            client: Some("acme"),
            ..Default::default()
        };
        let bank = Identity {
            client: Some("bank"),
            ..Default::default()
        };
        let first = acquire(&mut store, &table, &refs, &acme, 0).unwrap();
        let _second = acquire(&mut store, &table, &refs, &acme, 0).unwrap();
        assert!(acquire(&mut store, &table, &refs, &acme, 0).is_none());
        assert!(acquire(&mut store, &table, &refs, &bank, 0).is_some());
        release(&mut store, &table, &first, 1);
        assert!(acquire(&mut store, &table, &refs, &acme, 2).is_some());
        assert!(acquire(&mut store, &table, &refs, &acme, 3).is_none());
        // Units nobody gave back for five minutes (a VM that died) no longer count.
        assert!(acquire(&mut store, &table, &refs, &acme, 3 + STALE_AFTER_US + 1).is_some());
    }
}
