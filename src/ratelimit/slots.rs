//! A fixed table of counter slots in shared data, so memory stays bounded however many keys an
//! attacker invents. A key (e.g. "client-per-second" + "acme") hashes, with a per-configuration
//! secret, to a fingerprint and a home slot; it lives in the first of [`PROBES`] slots that holds
//! its fingerprint, is empty, or holds an idle record (a full bucket, an expired window), which it
//! takes over. When all are busy with other live keys, the key shares its namespace's overflow
//! record: a flood of fresh keys exhausts that one shared budget, never the buckets of keys
//! already in the table.
//!
//! Every update is a compare-and-swap; on a lost race the whole lookup is retried, at most
//! [`MAX_ATTEMPTS`] times, then the caller fails closed ([`Contended`]).

use super::store::{CounterStore, SetError};
use std::hash::Hasher;

pub const PROBES: u32 = 4;
pub const MAX_ATTEMPTS: usize = 16;
pub const RECORD_LEN: usize = 32;

/// A slot's content: the owner's fingerprint (0: empty) and three numbers whose meaning belongs
/// to the record type (bucket: TAT; lockout: window start, failures, locked-until).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    pub fingerprint: u64,
    pub a: i64,
    pub b: i64,
    pub c: i64,
}

impl Record {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..8].copy_from_slice(&self.fingerprint.to_le_bytes());
        out[8..16].copy_from_slice(&self.a.to_le_bytes());
        out[16..24].copy_from_slice(&self.b.to_le_bytes());
        out[24..32].copy_from_slice(&self.c.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Record {
        let word = |i: usize| -> [u8; 8] {
            let mut w = [0u8; 8];
            if let Some(src) = bytes.get(i..i + 8) {
                w.copy_from_slice(src);
            }
            w
        };
        Record {
            fingerprint: u64::from_le_bytes(word(0)),
            a: i64::from_le_bytes(word(8)),
            b: i64::from_le_bytes(word(16)),
            c: i64::from_le_bytes(word(24)),
        }
    }
}

/// The store gave up: too many lost races in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contended;

#[derive(Debug, Clone)]
pub struct SlotTable {
    /// Shared-data key prefix, e.g. "finguard:rl:".
    prefix: &'static str,
    slots: u32,
    seed: (u64, u64),
}

impl SlotTable {
    pub fn new(prefix: &'static str, slots: u32, seed: (u64, u64)) -> SlotTable {
        SlotTable {
            prefix,
            slots: slots.max(PROBES),
            seed,
        }
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Creates every slot that does not exist yet (at configuration, before traffic), so later
    /// updates are all compare-and-swaps: a first write racing another could lose an update.
    pub fn create_slots(&self, store: &mut dyn CounterStore) {
        let empty = Record::default().encode();
        for slot in 0..self.slots {
            let key = self.slot_key(slot);
            if store.get(&key).is_none() {
                let _ = store.set(&key, &empty, None);
            }
        }
    }

    fn slot_key(&self, slot: u32) -> String {
        format!("{}{slot}", self.prefix)
    }

    fn fingerprint(&self, namespace: &str, key: &str) -> u64 {
        #[allow(deprecated)] // SipHash-2-4 from std: keyed, fast, and all this needs.
        let mut hasher = std::hash::SipHasher::new_with_keys(self.seed.0, self.seed.1);
        hasher.write(namespace.as_bytes());
        hasher.write_u8(0xff);
        hasher.write(key.as_bytes());
        hasher.finish().max(1)
    }

    /// Reads the record for (`namespace`, `key`), lets `decide` compute the result and the new
    /// record (fresh keys see `Record::default()` with their fingerprint), and writes it with a
    /// compare-and-swap, retrying lost races. `idle` says whether another key's record may be
    /// taken over.
    pub fn update<R>(
        &self,
        store: &mut dyn CounterStore,
        namespace: &str,
        key: &str,
        idle: impl Fn(&Record) -> bool,
        decide: impl Fn(Record) -> (R, Option<Record>),
    ) -> Result<R, Contended> {
        let fingerprint = self.fingerprint(namespace, key);
        let home = u32::try_from(fingerprint % u64::from(self.slots)).unwrap_or(0);
        for _ in 0..MAX_ATTEMPTS {
            let (slot_key, current, cas) = self.find(store, namespace, fingerprint, home, &idle);
            let base = if current.fingerprint == fingerprint {
                current
            } else {
                Record {
                    fingerprint,
                    ..Record::default()
                }
            };
            let (result, write) = decide(base);
            let Some(record) = write else {
                return Ok(result);
            };
            match store.set(&slot_key, &record.encode(), cas) {
                Ok(()) => return Ok(result),
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Failed) => return Err(Contended),
            }
        }
        Err(Contended)
    }

    /// Reads without writing (e.g. "is this address locked out?").
    pub fn read(
        &self,
        store: &mut dyn CounterStore,
        namespace: &str,
        key: &str,
        idle: impl Fn(&Record) -> bool,
    ) -> Option<Record> {
        let fingerprint = self.fingerprint(namespace, key);
        let home = u32::try_from(fingerprint % u64::from(self.slots)).unwrap_or(0);
        let (_, record, _) = self.find(store, namespace, fingerprint, home, &idle);
        (record.fingerprint == fingerprint).then_some(record)
    }

    /// The slot for `fingerprint`: its own, else an empty or idle one, else the overflow record.
    fn find(
        &self,
        store: &mut dyn CounterStore,
        namespace: &str,
        fingerprint: u64,
        home: u32,
        idle: &impl Fn(&Record) -> bool,
    ) -> (String, Record, Option<u32>) {
        let mut claimable: Option<(String, Record, Option<u32>)> = None;
        for probe in 0..PROBES {
            let key = self.slot_key((home + probe) % self.slots);
            let (record, cas) = match store.get(&key) {
                Some((bytes, cas)) => (Record::decode(&bytes), Some(cas)),
                None => (Record::default(), None),
            };
            if record.fingerprint == fingerprint {
                return (key, record, cas);
            }
            if claimable.is_none() && (record.fingerprint == 0 || idle(&record)) {
                claimable = Some((key, record, cas));
            }
        }
        if let Some(found) = claimable {
            return found;
        }
        let key = format!("{}overflow:{namespace}", self.prefix);
        match store.get(&key) {
            // The overflow record is shared by every key that found no slot: it keeps its own
            // fingerprint so `update` treats it as the key's record.
            Some((bytes, cas)) => (
                key,
                Record {
                    fingerprint,
                    ..Record::decode(&bytes)
                },
                Some(cas),
            ),
            None => (
                key,
                Record {
                    fingerprint,
                    ..Record::default()
                },
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::MemoryStore;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn count(
        table: &SlotTable,
        store: &mut MemoryStore,
        key: &str,
        limit: i64,
    ) -> Result<bool, Contended> {
        table.update(
            store,
            "ns",
            key,
            |_| false,
            |mut r| {
                if r.a >= limit {
                    (false, None)
                } else {
                    r.a += 1;
                    (true, Some(r))
                }
            },
        )
    }

    #[test]
    fn records_round_trip() {
        let r = Record {
            fingerprint: 9,
            a: -1,
            b: i64::MAX,
            c: 3,
        };
        assert_eq!(Record::decode(&r.encode()), r);
        assert_eq!(
            Record::decode(b"short"),
            Record {
                fingerprint: 0,
                a: 0,
                b: 0,
                c: 0
            }
        );
    }

    #[test]
    fn keys_are_counted_apart_and_survive_lost_races() {
        let table = SlotTable::new("t:", 64, (1, 2));
        let mut store = MemoryStore::default();
        table.create_slots(&mut store);
        assert_eq!(store.len(), 64);
        store.inject_mismatches = 5;
        for _ in 0..3 {
            assert_eq!(count(&table, &mut store, "alice", 3), Ok(true));
        }
        assert_eq!(count(&table, &mut store, "alice", 3), Ok(false));
        assert_eq!(count(&table, &mut store, "bob", 3), Ok(true));
        store.inject_mismatches = MAX_ATTEMPTS;
        assert_eq!(count(&table, &mut store, "carol", 3), Err(Contended));
    }

    #[test]
    fn memory_stays_bounded_and_overflow_is_shared() {
        let table = SlotTable::new("t:", 8, (1, 2));
        let mut store = MemoryStore::default();
        table.create_slots(&mut store);
        let mut allowed = 0;
        for i in 0..10_000 {
            if count(&table, &mut store, &format!("key-{i}"), 1).unwrap() {
                allowed += 1;
            }
        }
        // 8 slots + 1 overflow record, whatever the number of keys.
        assert_eq!(store.len(), 9);
        // Each slot admitted its first key once, the overflow record admitted one more.
        assert_eq!(allowed, 9);
    }

    #[test]
    fn idle_records_are_taken_over() {
        let table = SlotTable::new("t:", 4, (1, 2));
        let mut store = MemoryStore::default();
        table.create_slots(&mut store);
        for i in 0..4 {
            table
                .update(
                    &mut store,
                    "ns",
                    &format!("old-{i}"),
                    |_| false,
                    |mut r| {
                        r.a = 1;
                        ((), Some(r))
                    },
                )
                .unwrap();
        }
        // Every slot is taken; with old records idle, a new key still gets a slot of its own.
        table
            .update(
                &mut store,
                "ns",
                "new",
                |r| r.a == 1,
                |mut r| {
                    r.a = 2;
                    ((), Some(r))
                },
            )
            .unwrap();
        assert_eq!(
            table.read(&mut store, "ns", "new", |_| false).map(|r| r.a),
            Some(2)
        );
        assert_eq!(store.len(), 4);
    }
}
