//! cargo-fuzz target `envelope`: see `vault_fuzz::envelope`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_fuzz::envelope(data));
