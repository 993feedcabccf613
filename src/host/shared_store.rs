//! The core's counter store over proxy-wasm shared data: one map per `vm_id` in the Envoy
//! process, so every worker VM sees the same buckets.

use crate::ratelimit::store::{CounterStore, SetError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

pub struct SharedData;

impl CounterStore for SharedData {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            _ => None,
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(_) => Err(SetError::Failed),
        }
    }
}
