//! A fixed table of counter slots in shared data, so memory stays bounded however many keys an
//! attacker invents. A key (e.g. "client-per-second" + "acme") hashes, with a per-configuration
//! secret, to a fingerprint and a home slot; it lives in the first of [`PROBES`] slots that holds
//! its fingerprint, is empty, or holds an idle record (a full bucket, an expired window), which it
//! takes over.
//!
//! When all are busy with other live keys, what happens is the caller's choice ([`WhenFull`]),
//! so that no key ever inherits another key's state:
//! - [`WhenFull::Evict`]: the live record the caller ranks lowest is taken over (a rate-limit
//!   bucket with the least debt, a lockout window with the fewest failures); a record the caller
//!   will not rank (a lockout in force) is never taken. The evicted key starts afresh later: a
//!   full bucket, no failures, so an eviction can only ever be lenient to that key, never deny
//!   it. Nothing evictable: the update is not made ([`Contended`] to the caller).
//! - [`WhenFull::Overflow`]: the key shares its namespace's overflow record (in-flight counters,
//!   whose units must be given back to the record that took them).
//!
//! [`SlotTable::read`] only ever returns the key's own record. Evictions, full tables and overflow
//! use are counted ([`Pressure`]) for the host's metrics.
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

/// The store gave up (too many lost races in a row), or a full table had no room for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contended;

/// What a key gets when its probe slots all hold other live keys.
#[derive(Clone, Copy)]
pub enum WhenFull<'r> {
    /// Take over the slot whose record ranks lowest; `None`: never take this record over.
    Evict(&'r dyn Fn(&Record) -> Option<i64>),
    /// Share the namespace's overflow record.
    Overflow,
}

/// How often a table was full, since the host last looked ([`SlotTable::take_pressure`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// A live record was taken over by another key.
    pub evicted: u64,
    /// No slot and nothing evictable: the update was not made.
    pub no_room: u64,
    /// A key shared its namespace's overflow record.
    pub overflow: u64,
}

/// Live slots among those sampled ([`SlotTable::occupancy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    pub live: u32,
    pub sampled: u32,
}

impl Occupancy {
    /// Live share of the table in percent, rounded up: one live slot in the sample is never 0.
    pub fn percent(&self) -> u64 {
        (u64::from(self.live) * 100).div_ceil(u64::from(self.sampled.max(1)))
    }
}

/// Where a key's record is.
enum Found {
    /// Its own slot, an empty or idle one, or (`evicts`) a live one it takes over.
    Slot {
        key: String,
        record: Record,
        cas: Option<u32>,
        evicts: bool,
    },
    Overflow {
        key: String,
        record: Record,
        cas: Option<u32>,
    },
    NoRoom,
}

#[derive(Debug, Clone)]
pub struct SlotTable {
    /// Shared-data key prefix, e.g. "finguard:rl:".
    prefix: &'static str,
    slots: u32,
    seed: (u64, u64),
    /// This worker's count of full-table events (the configuration is per VM).
    pressure: std::cell::Cell<Pressure>,
}

impl SlotTable {
    pub fn new(prefix: &'static str, slots: u32, seed: (u64, u64)) -> SlotTable {
        SlotTable {
            prefix,
            slots: slots.max(PROBES),
            seed,
            pressure: std::cell::Cell::new(Pressure::default()),
        }
    }

    /// The full-table events since the last call, and zero from now on.
    pub fn take_pressure(&self) -> Pressure {
        self.pressure.take()
    }

    fn note(&self, event: impl FnOnce(&mut Pressure)) {
        let mut pressure = self.pressure.get();
        event(&mut pressure);
        self.pressure.set(pressure);
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
    /// taken over freely; `when_full` what happens when none is empty or idle.
    pub fn update<R>(
        &self,
        store: &mut dyn CounterStore,
        namespace: &str,
        key: &str,
        idle: impl Fn(&Record) -> bool,
        when_full: WhenFull<'_>,
        decide: impl Fn(Record) -> (R, Option<Record>),
    ) -> Result<R, Contended> {
        let fingerprint = self.fingerprint(namespace, key);
        let home = u32::try_from(fingerprint % u64::from(self.slots)).unwrap_or(0);
        for _ in 0..MAX_ATTEMPTS {
            let fresh = Record {
                fingerprint,
                ..Record::default()
            };
            let (slot_key, base, cas, event): (String, Record, Option<u32>, fn(&mut Pressure)) =
                match self.find(store, namespace, fingerprint, home, &idle, when_full) {
                    Found::Slot {
                        key,
                        record,
                        cas,
                        evicts,
                    } => {
                        let base = if record.fingerprint == fingerprint {
                            record
                        } else {
                            fresh
                        };
                        let event: fn(&mut Pressure) =
                            if evicts { |p| p.evicted += 1 } else { |_| {} };
                        (key, base, cas, event)
                    }
                    // The overflow record is shared by every key that found no slot.
                    Found::Overflow { key, record, cas } => (
                        key,
                        Record {
                            fingerprint,
                            ..record
                        },
                        cas,
                        |p| p.overflow += 1,
                    ),
                    Found::NoRoom => {
                        self.note(|p| p.no_room += 1);
                        return Err(Contended);
                    }
                };
            let (result, write) = decide(base);
            let Some(record) = write else {
                return Ok(result);
            };
            match store.set(&slot_key, &record.encode(), cas) {
                Ok(()) => {
                    self.note(event);
                    return Ok(result);
                }
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Failed) => return Err(Contended),
            }
        }
        Err(Contended)
    }

    /// How full the table is, estimated from `sample` slots spread evenly over it (all of them
    /// when the table is no larger): a slot counts as live when it has an owner and `idle` says
    /// its record cannot be taken over freely. A sample keeps the cost fixed (one read a slot)
    /// however large the table; the host reports it as a gauge now and then, not per request.
    pub fn occupancy(
        &self,
        store: &mut dyn CounterStore,
        idle: impl Fn(&Record) -> bool,
        sample: u32,
    ) -> Occupancy {
        let sampled = sample.clamp(1, self.slots);
        let stride = u64::from(self.slots) / u64::from(sampled);
        let live = (0..u64::from(sampled))
            .filter_map(|i| u32::try_from(i * stride).ok())
            .filter(|&slot| {
                store.get(&self.slot_key(slot)).is_some_and(|(bytes, _)| {
                    let record = Record::decode(&bytes);
                    record.fingerprint != 0 && !idle(&record)
                })
            })
            .count();
        Occupancy {
            live: u32::try_from(live).unwrap_or(sampled),
            sampled,
        }
    }

    /// The key's own record, if it has one in its probe slots (never the overflow record, which
    /// belongs to no key: e.g. "is this address locked out?" is never answered by another's).
    pub fn read(&self, store: &mut dyn CounterStore, namespace: &str, key: &str) -> Option<Record> {
        let fingerprint = self.fingerprint(namespace, key);
        let home = u32::try_from(fingerprint % u64::from(self.slots)).unwrap_or(0);
        (0..PROBES).find_map(|probe| {
            let (bytes, _) = store.get(&self.slot_key((home + probe) % self.slots))?;
            let record = Record::decode(&bytes);
            (record.fingerprint == fingerprint).then_some(record)
        })
    }

    /// The slot for `fingerprint`: its own, else an empty or idle one, else as `when_full` says.
    fn find(
        &self,
        store: &mut dyn CounterStore,
        namespace: &str,
        fingerprint: u64,
        home: u32,
        idle: &impl Fn(&Record) -> bool,
        when_full: WhenFull<'_>,
    ) -> Found {
        let mut claimable: Option<(String, Record, Option<u32>)> = None;
        // The live record ranked lowest so far, with its rank.
        let mut victim: Option<(i64, String, Record, Option<u32>)> = None;
        for probe in 0..PROBES {
            let key = self.slot_key((home + probe) % self.slots);
            let (record, cas) = match store.get(&key) {
                Some((bytes, cas)) => (Record::decode(&bytes), Some(cas)),
                None => (Record::default(), None),
            };
            if record.fingerprint == fingerprint {
                return Found::Slot {
                    key,
                    record,
                    cas,
                    evicts: false,
                };
            }
            if claimable.is_none() && (record.fingerprint == 0 || idle(&record)) {
                claimable = Some((key, record, cas));
            } else if let WhenFull::Evict(rank) = when_full {
                if let Some(r) = rank(&record) {
                    if victim.as_ref().is_none_or(|(lowest, ..)| r < *lowest) {
                        victim = Some((r, key, record, cas));
                    }
                }
            }
        }
        if let Some((key, record, cas)) = claimable {
            return Found::Slot {
                key,
                record,
                cas,
                evicts: false,
            };
        }
        match when_full {
            WhenFull::Evict(_) => match victim {
                Some((_, key, record, cas)) => Found::Slot {
                    key,
                    record,
                    cas,
                    evicts: true,
                },
                None => Found::NoRoom,
            },
            WhenFull::Overflow => {
                let key = format!("{}overflow:{namespace}", self.prefix);
                let (record, cas) = match store.get(&key) {
                    Some((bytes, cas)) => (Record::decode(&bytes), Some(cas)),
                    None => (Record::default(), None),
                };
                Found::Overflow { key, record, cas }
            }
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
            WhenFull::Overflow,
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
    fn occupancy_counts_owned_live_slots_in_an_even_sample() {
        let table = SlotTable::new("t:", 1024, (1, 2));
        let mut store = MemoryStore::default();
        table.create_slots(&mut store);
        let empty = table.occupancy(&mut store, |_| false, 256);
        assert_eq!((empty.live, empty.sampled, empty.percent()), (0, 256, 0));
        for i in 0..512 {
            assert_eq!(
                count(&table, &mut store, &format!("k{i}"), 1 << 20),
                Ok(true)
            );
        }
        // Keys whose probe slots were all taken share the overflow record, which is no slot.
        let owned = (0..1024)
            .filter(|slot| {
                store
                    .get(&format!("t:{slot}"))
                    .is_some_and(|(bytes, _)| Record::decode(&bytes).fingerprint != 0)
            })
            .count();
        assert!((480..=512).contains(&owned), "{owned}");
        let all = table.occupancy(&mut store, |_| false, 2048);
        assert_eq!(
            all.sampled, 1024,
            "a sample larger than the table reads every slot once"
        );
        assert_eq!(all.live as usize, owned);
        let sampled = table.occupancy(&mut store, |_| false, 256);
        assert!(
            (96..=160).contains(&sampled.live),
            "about half of an even sample of a half-full table: {sampled:?}"
        );
        // Records the table may take over freely (full buckets, expired windows) are not live.
        assert_eq!(table.occupancy(&mut store, |_| true, 256).live, 0);
        let one = Occupancy {
            live: 1,
            sampled: 256,
        };
        assert_eq!(
            one.percent(),
            1,
            "one live slot never reads as an empty table"
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
                    WhenFull::Overflow,
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
                WhenFull::Overflow,
                |mut r| {
                    r.a = 2;
                    ((), Some(r))
                },
            )
            .unwrap();
        assert_eq!(table.read(&mut store, "ns", "new").map(|r| r.a), Some(2));
        assert_eq!(store.len(), 4);
    }

    /// Counts like [`count`], but a full table evicts the record with the lowest `a` (unless it
    /// is `a >= protect`).
    fn count_evicting(table: &SlotTable, store: &mut MemoryStore, key: &str, protect: i64) -> bool {
        let rank = |r: &Record| (r.a < protect).then_some(r.a);
        table
            .update(
                store,
                "ns",
                key,
                |_| false,
                WhenFull::Evict(&rank),
                |mut r| {
                    r.a += 1;
                    (true, Some(r))
                },
            )
            .unwrap_or(false)
    }

    #[test]
    fn a_full_table_evicts_the_lowest_ranked_record_and_never_shares_one() {
        let table = SlotTable::new("t:", 4, (1, 2));
        let mut store = MemoryStore::default();
        table.create_slots(&mut store);
        // A heavy key, then a flood of fresh ones: each newcomer gets a record of its own.
        for _ in 0..5 {
            assert!(count_evicting(&table, &mut store, "heavy", 100));
        }
        for i in 0..1000 {
            assert!(count_evicting(
                &table,
                &mut store,
                &format!("flood-{i}"),
                100
            ));
            let own = table.read(&mut store, "ns", &format!("flood-{i}")).unwrap();
            assert_eq!(
                own.a, 1,
                "a newcomer starts afresh, never with another's count"
            );
        }
        // The heavy key kept its count: the flood evicted only lighter records.
        assert_eq!(table.read(&mut store, "ns", "heavy").map(|r| r.a), Some(5));
        assert_eq!(store.len(), 4, "no overflow record");
        let pressure = table.take_pressure();
        assert_eq!(pressure.evicted, 997);
        assert_eq!((pressure.no_room, pressure.overflow), (0, 0));
        assert_eq!(table.take_pressure(), Pressure::default());
        // Nothing evictable: the update is not made, and no one else's record is touched.
        let fresh = SlotTable::new("u:", 4, (3, 4));
        fresh.create_slots(&mut store);
        for i in 0..4 {
            for _ in 0..3 {
                count_evicting(&fresh, &mut store, &format!("locked-{i}"), 2);
            }
        }
        assert!(!count_evicting(&fresh, &mut store, "newcomer", 2));
        assert_eq!(fresh.read(&mut store, "ns", "newcomer"), None);
        assert_eq!(fresh.take_pressure().no_room, 1);
    }
}
