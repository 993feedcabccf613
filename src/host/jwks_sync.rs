//! Remote JWKS across worker VMs, over proxy-wasm shared data (one map per `vm_id`, per Envoy
//! process). Two keys per provider:
//!
//! - `finguard:jwks:<name>`: the last good JWKS with its fetch time ([`PublishedJwks`]); every VM
//!   installs it when its CAS version changes.
//! - `finguard:jwks-lease:<name>`: which VM may fetch and until when ([`Lease`]), taken with a
//!   compare-and-swap. After a failure the holder keeps it until the retry time.
//!
//! So the identity provider sees one fetch per refresh interval per Envoy process, not one per
//! worker. (Creating the lease key races once at first start: two VMs can both see it absent; the
//! re-read below makes that window a few microseconds wide.)

use super::log;
use crate::authn::jwks::{KeyOrigin, KeySet};
use crate::authn::keys::{Lease, PublishedJwks, RemoteJwks};
use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

pub fn data_key(provider: &str) -> String {
    format!("finguard:jwks:{provider}")
}

fn lease_key(provider: &str) -> String {
    format!("finguard:jwks-lease:{provider}")
}

/// A JWKS newer than what this VM holds.
pub struct Installed {
    pub keys: KeySet,
    pub fetched_at: i64,
    pub version: u32,
}

/// Reads the published JWKS; `None` if absent, unchanged since `seen_version`, or unusable.
pub fn read_published(provider: &str, seen_version: Option<u32>) -> Option<Installed> {
    let (bytes, version) = hostcalls::get_shared_data(&data_key(provider)).ok()?;
    let (bytes, version) = (bytes?, version?);
    if Some(version) == seen_version {
        return None;
    }
    let published = PublishedJwks::decode(&bytes)?;
    // Only validated documents are published, so this parse only fails on a corrupted record.
    let keys = KeySet::parse(published.document, KeyOrigin::Remote).ok()?;
    Some(Installed {
        keys,
        fetched_at: published.fetched_at,
        version,
    })
}

/// The fetch time of the published JWKS, without parsing it.
pub fn published_fetch_time(provider: &str) -> Option<i64> {
    let (bytes, _) = hostcalls::get_shared_data(&data_key(provider)).ok()?;
    PublishedJwks::decode(&bytes?).map(|p| p.fetched_at)
}

/// Tries to take the fetch lease for `hold_ms`. True when this VM now holds it.
pub fn try_acquire_lease(provider: &str, me: u64, now_ms: i64, hold_ms: i64) -> bool {
    let key = lease_key(provider);
    let Ok((current, cas)) = hostcalls::get_shared_data(&key) else {
        return false;
    };
    if let Some(lease) = current.as_deref().and_then(Lease::decode) {
        // Also when `me` holds it: after a failure the holder keeps it until the retry time.
        if !lease.is_free(now_ms) {
            return false;
        }
    }
    let mine = Lease {
        holder: me,
        until_ms: now_ms.saturating_add(hold_ms),
    };
    if hostcalls::set_shared_data(&key, Some(&mine.encode()), cas).is_err() {
        return false; // CAS mismatch: another VM got there first.
    }
    matches!(
        hostcalls::get_shared_data(&key),
        Ok((Some(bytes), _)) if Lease::decode(&bytes).is_some_and(|l| l.holder == me)
    )
}

/// Keeps other VMs from fetching until `until_ms` (after a failure: the retry time).
pub fn hold_lease_until(provider: &str, me: u64, until_ms: i64) {
    let lease = Lease {
        holder: me,
        until_ms,
    };
    if hostcalls::set_shared_data(&lease_key(provider), Some(&lease.encode()), None).is_err() {
        log(LogLevel::Warn, "could not update the JWKS fetch lease");
    }
}

/// Starts the HTTP fetch through the configured Envoy cluster. Returns the call token.
pub fn dispatch_fetch(remote: &RemoteJwks) -> Option<u32> {
    let headers = vec![
        (":method", "GET"),
        (":path", remote.path.as_str()),
        (":authority", remote.authority.as_str()),
        ("accept", "application/jwk-set+json, application/json"),
    ];
    let timeout = std::time::Duration::from_millis(remote.timeout_ms);
    hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout).ok()
}

/// Publishes a validated JWKS for every VM.
pub fn publish(provider: &str, fetched_at: i64, document: &[u8]) -> bool {
    let record = PublishedJwks::encode(fetched_at, document);
    hostcalls::set_shared_data(&data_key(provider), Some(&record), None).is_ok()
}

/// A fresh unique id for this VM's leases.
pub fn vm_nonce(fallback: i64) -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => fallback as u64,
    }
}

/// Four secret random words (the token cache's hash keys).
pub fn random_keys(fallback: i64) -> [u64; 4] {
    let mut bytes = [0u8; 32];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No randomness from the host: still distinct per VM and start, never constant.
        return [
            fallback as u64,
            (fallback as u64).rotate_left(17),
            vm_nonce(fallback),
            !(fallback as u64),
        ];
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    [word(0), word(1), word(2), word(3)]
}
