//! The one end-to-end test binary: it drives the real `vaultctl` (and later `vault-server`)
//! binaries. Add modules here rather than new test files: each file under `tests/` is a
//! separate slow link.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

mod audit;
mod cli;
mod crash;
mod faults;
mod fuzz;
mod import;
mod plaintext;
mod redteam;
mod server;
mod soak;
mod stop;
mod tls;

use std::path::Path;
use std::sync::Arc;

use vault_core::Vault;
use vault_core::keyring::FileRootKey;
use vault_core::policy::PolicySet;
use vault_core::store::SledStore;
use vault_tests::policies_dir;

/// Opens a vault that `vaultctl` created, in-process, to check what it stored.
pub fn open_vault(data: &Path) -> Vault<SledStore> {
    let policy = Arc::new(PolicySet::load_dir(&policies_dir()).unwrap());
    let store = SledStore::open(&data.join("store")).unwrap();
    let audit = vault_core::audit::SegmentLogAt(data.join("audit"));
    Vault::open(
        store,
        &FileRootKey::new(data.join("keys/root.key")),
        policy,
        &audit,
    )
    .unwrap()
}

/// Writes `count` demo citizens to `path` with `vaultctl demo-data`.
pub fn demo_file(v: &vault_tests::TestVault, path: &Path, count: u64, seed: u64) {
    let out = v.ctl(&[
        "demo-data",
        "--count",
        &count.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    assert!(out.status.success(), "{}", vault_tests::text(&out.stderr));
    std::fs::write(path, out.stdout).unwrap();
}
