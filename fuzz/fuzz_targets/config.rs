//! Plugin configurations: refused with a message, never a panic.
#![no_main]
use finguard::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Config::compile(data);
});
