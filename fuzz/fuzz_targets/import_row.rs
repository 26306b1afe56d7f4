//! cargo-fuzz target `import_row`: see `vault_fuzz::import_row`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_fuzz::import_row(data));
