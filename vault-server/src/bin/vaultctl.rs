//! `vaultctl`: the operator's command-line tool.

/// mimalloc: bulk import and rotation allocate and free millions of small buffers; glibc's
/// allocator spent about a quarter of the import's time there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Same reason as the server (`vault_server::memory`); a refusal changes nothing else.
    let _ = vault_server::memory::disable_transparent_huge_pages();
    vault_server::ctl::main()
}
