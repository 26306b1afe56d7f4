//! cargo-fuzz target `token`: see `vault_fuzz::token`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_fuzz::token(data));
