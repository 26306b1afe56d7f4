//! cargo-fuzz target `checkpoint`: see `vault_fuzz::checkpoint`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_fuzz::checkpoint(data));
