//! The counter store: proxy-wasm shared data as the core sees it, a map of byte values with a
//! compare-and-swap version. The host adapter implements it over `get_shared_data` /
//! `set_shared_data`; tests use [`MemoryStore`], which can be told to lose races.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Another writer changed the value since it was read: read again and retry.
    CasMismatch,
    /// The host refused the write.
    Failed,
}

pub trait CounterStore {
    /// The value and its CAS version, or `None` if absent.
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the version is still `cas` (`None`: unconditionally).
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

/// An in-memory store with Envoy's semantics, for tests: every write bumps the version; it can
/// inject CAS mismatches to exercise retry paths.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// The next this-many conditional writes fail with a CAS mismatch.
    pub inject_mismatches: usize,
}

impl MemoryStore {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl CounterStore for MemoryStore {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.get(key).cloned()
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        if let (Some(cas), Some((_, current))) = (cas, self.map.get(key)) {
            if self.inject_mismatches > 0 {
                self.inject_mismatches -= 1;
                return Err(SetError::CasMismatch);
            }
            if cas != *current {
                return Err(SetError::CasMismatch);
            }
        }
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.map
            .insert(key.to_string(), (value.to_vec(), self.next_cas));
        Ok(())
    }
}
