//! Where a provider's keys come from and when they may be used: the remote-JWKS freshness rules
//! (refresh, grace, rotation refetch, retry) and the record that carries fetched keys between
//! Envoy's worker VMs through shared data. Pure policy: the host adapter does the I/O.
//!
//! One fetch serves the whole Envoy process: the VM that wins a lease (a compare-and-swap on a
//! shared-data key) fetches, validates and publishes the JWKS with its fetch time; every VM
//! installs what is published. Keys are usable until `fetched_at + refresh + grace`, the same
//! instant for every worker.

use super::jwks::KeySet;
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub refresh_seconds: i64,
    pub timeout_ms: u64,
    /// How long past a missed refresh the last good keys keep serving.
    pub grace_seconds: i64,
    /// Minimum interval between fetches triggered by an unknown `kid` (key rotation).
    pub min_refetch_seconds: i64,
    /// Pause after a failed fetch before the next attempt.
    pub retry_seconds: i64,
}

impl RemoteJwks {
    pub fn usable_until(&self, fetched_at: i64) -> i64 {
        fetched_at
            .saturating_add(self.refresh_seconds)
            .saturating_add(self.grace_seconds)
    }

    /// Whether a VM should try to fetch now, given the published fetch time.
    pub fn fetch_due(&self, fetched_at: Option<i64>, refetch_wanted: bool, now: i64) -> bool {
        match fetched_at {
            None => true,
            Some(at) => {
                now >= at.saturating_add(self.refresh_seconds)
                    || (refetch_wanted && now >= at.saturating_add(self.min_refetch_seconds))
            }
        }
    }
}

#[derive(Debug)]
pub enum KeySource {
    Inline(Rc<KeySet>),
    Remote(RemoteJwks),
}

/// What one VM currently holds for one provider.
#[derive(Debug, Default)]
pub struct ProviderKeys {
    pub keys: Option<Rc<KeySet>>,
    /// Fetch time of `keys` (seconds), as published in shared data.
    pub fetched_at: Option<i64>,
    /// Set when a token named a `kid` the keys lack: fetch again once `min_refetch_seconds` allow.
    pub refetch_wanted: bool,
}

pub enum KeyStatus<'a> {
    Ready(&'a KeySet),
    /// No keys yet in this process: the first fetch is pending (or failing).
    Pending,
    /// Keys are older than refresh + grace: fetches have been failing too long.
    Expired,
}

impl ProviderKeys {
    pub fn status(&self, source: &KeySource, now: i64) -> KeyStatus<'_> {
        match (source, &self.keys, self.fetched_at) {
            (KeySource::Inline(_), Some(keys), _) => KeyStatus::Ready(keys),
            (KeySource::Remote(remote), Some(keys), Some(at)) if now < remote.usable_until(at) => {
                KeyStatus::Ready(keys)
            }
            (_, None, _) => KeyStatus::Pending,
            _ => KeyStatus::Expired,
        }
    }

    /// A kid was not found: may a refetch still change that? Only if one is allowed soon.
    pub fn may_refetch(&self, source: &KeySource, now: i64) -> bool {
        match (source, self.fetched_at) {
            (KeySource::Remote(remote), Some(at)) => {
                now >= at.saturating_add(remote.min_refetch_seconds)
            }
            _ => false,
        }
    }
}

/// The record published in shared data: `fetched_at` line, then the JWKS document as fetched.
pub struct PublishedJwks<'a> {
    pub fetched_at: i64,
    pub document: &'a [u8],
}

impl<'a> PublishedJwks<'a> {
    pub fn encode(fetched_at: i64, document: &[u8]) -> Vec<u8> {
        let mut out = format!("{fetched_at}\n").into_bytes();
        out.extend_from_slice(document);
        out
    }

    pub fn decode(bytes: &'a [u8]) -> Option<PublishedJwks<'a>> {
        let newline = bytes.iter().position(|&b| b == b'\n')?;
        let fetched_at = std::str::from_utf8(&bytes[..newline]).ok()?.parse().ok()?;
        Some(PublishedJwks {
            fetched_at,
            document: &bytes[newline + 1..],
        })
    }
}

/// The fetch lease in shared data: which VM may fetch, and until when (milliseconds). After a
/// failed fetch the holder keeps the lease until the retry time, so no VM retries sooner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub holder: u64,
    pub until_ms: i64,
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.holder, self.until_ms).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (holder, until) = text.split_once(' ')?;
        Some(Lease {
            holder: holder.parse().ok()?,
            until_ms: until.parse().ok()?,
        })
    }

    pub fn is_free(&self, now_ms: i64) -> bool {
        now_ms >= self.until_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn remote() -> RemoteJwks {
        RemoteJwks {
            cluster: "idp".into(),
            path: "/jwks.json".into(),
            authority: "idp".into(),
            refresh_seconds: 300,
            timeout_ms: 2000,
            grace_seconds: 600,
            min_refetch_seconds: 30,
            retry_seconds: 2,
        }
    }

    #[test]
    fn fetch_is_due_at_start_after_refresh_and_on_rotation() {
        let r = remote();
        assert!(r.fetch_due(None, false, 0));
        assert!(!r.fetch_due(Some(1000), false, 1299));
        assert!(r.fetch_due(Some(1000), false, 1300));
        assert!(!r.fetch_due(Some(1000), true, 1029));
        assert!(r.fetch_due(Some(1000), true, 1030));
    }

    #[test]
    fn keys_serve_through_grace_then_expire() {
        let source = KeySource::Remote(remote());
        let mut state = ProviderKeys::default();
        assert!(matches!(state.status(&source, 0), KeyStatus::Pending));
        state.keys = Some(Rc::new(KeySet::default()));
        state.fetched_at = Some(1000);
        assert!(matches!(state.status(&source, 1899), KeyStatus::Ready(_)));
        assert!(matches!(state.status(&source, 1900), KeyStatus::Expired));
    }

    #[test]
    fn records_round_trip_and_garbage_is_rejected() {
        let bytes = PublishedJwks::encode(1234, b"{\"keys\":[]}");
        let decoded = PublishedJwks::decode(&bytes).unwrap();
        assert_eq!(decoded.fetched_at, 1234);
        assert_eq!(decoded.document, b"{\"keys\":[]}");
        assert!(PublishedJwks::decode(b"nonsense").is_none());
        let lease = Lease {
            holder: 7,
            until_ms: 99,
        };
        assert_eq!(Lease::decode(&lease.encode()), Some(lease));
        assert!(Lease::decode(b"7").is_none());
        assert!(lease.is_free(99) && !lease.is_free(98));
    }
}
