//! The one end-to-end test binary: it drives the real `vaultctl` (and later `vault-server`)
//! binaries. Add modules here rather than new test files: each file under `tests/` is a
//! separate slow link.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

mod audit;
mod browser;
mod cli;
mod crash;
mod deploy;
mod faults;
mod fuzz;
mod hsm;
mod import;
mod nodes;
mod ops;
mod plaintext;
mod portal;
mod redteam;
mod rights;
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

/// A vault that `vaultctl` created, opened in-process to check what it stored, with a handle
/// on its store (the façade keeps the store to itself).
#[derive(Debug)]
pub struct Opened {
    /// The vault.
    pub vault: Vault<SledStore>,
    /// Its store (sealed data only).
    pub store: SledStore,
}

impl std::ops::Deref for Opened {
    type Target = Vault<SledStore>;
    fn deref(&self) -> &Self::Target {
        &self.vault
    }
}

impl Opened {
    /// A citizen's record as the citizen sees it (audited as `record.self_viewed`).
    pub fn record(
        &self,
        id: &vault_core::CitizenId,
    ) -> Result<vault_core::Record, vault_core::VaultError> {
        use vault_core::Clock as _;
        self.vault.my_record(id, vault_core::SystemClock.now())
    }
}

/// Opens a vault that `vaultctl` created, in-process, to check what it stored.
pub fn open_vault(data: &Path) -> Opened {
    let policy = Arc::new(PolicySet::load_dir(&policies_dir()).unwrap());
    let store = SledStore::open(&data.join("store")).unwrap();
    let audit = vault_core::audit::SegmentLogAt(data.join("audit"));
    let vault = Vault::open(
        store.clone(),
        &FileRootKey::new(data.join("keys/root.key")),
        policy,
        &audit,
    )
    .unwrap();
    Opened { vault, store }
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
