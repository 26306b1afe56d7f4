//! cargo-fuzz target `policy`: see `vault_fuzz::policy`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_fuzz::policy(data));
