//! cargo-fuzz target `request_json`: see `vault_fuzz::request_json`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_fuzz::request_json(data));
