//! What a backup needs from the vault: its store's rows (`store::dump`), the log's file
//! lengths for a tree size, and the `backup.created` entry.

use super::Vault;
use crate::audit::{Actor, AuditEntry};
use crate::clock::Timestamp;
use crate::error::VaultError;
use crate::store::VaultStore;
use crate::store::dump::{self, Counts, Row};

impl<S: VaultStore> Vault<S> {
    /// Hands every row of the store to `emit` (sealed: no plaintext, no citizen id).
    pub fn dump_store(
        &self,
        emit: &mut dyn FnMut(&Row) -> Result<(), crate::store::StoreError>,
    ) -> Result<Counts, VaultError> {
        Ok(dump::dump(&self.store, emit)?)
    }

    /// Records that a backup holding the log up to `tree_size` was written.
    pub fn backup_created(
        &self,
        actor: &Actor,
        tree_size: u64,
        now: Timestamp,
    ) -> Result<(), VaultError> {
        let entry = AuditEntry::backup_created(&self.entry_context(now), actor, tree_size)?;
        self.audit.append(vec![entry]).map(|_| ())
    }
}
