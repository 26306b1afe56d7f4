//! What the use-case modules share: naming a citizen in an entry (their pseudonym, or a
//! stand-in for one the vault does not hold) and opening sealed fields inside the core: a
//! release's fields only with the policy's `Release`, and a citizen's residence for a grant
//! decision.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Vault;
use crate::audit::{Pseudonym, SafeId};
use crate::crypto::{self, FieldSealer};
use crate::error::VaultError;
use crate::id::{BlindId, CitizenId, FieldName};
use crate::policy::derive;
use crate::policy::release::Release;
use crate::store::{SealedRecord, VaultStore};

/// An identifier as recorded in an entry.
pub(super) fn safe(s: &str) -> Result<SafeId, VaultError> {
    SafeId::parse(s)
}

impl<S: VaultStore> Vault<S> {
    pub(super) fn blind_hex(&self, id: &CitizenId) -> (BlindId, String) {
        let b = self.keyring().blind(id);
        (b, b.to_string())
    }

    /// A citizen's pseudonym, or for a citizen the vault does not hold, a stand-in derived
    /// from the blind id (so requests about unknown citizens are audited the same way).
    pub(super) fn subject_of(&self, blind: &BlindId, record: Option<&SealedRecord>) -> Pseudonym {
        match record {
            Some(r) => self.pseudonym(r),
            None => Pseudonym::from_bytes(crypto::pseudonym(
                self.keyring().pseudonym_key(),
                blind.as_bytes(),
            )),
        }
    }

    /// Opens the stored fields a release needs (its fields, and what its derived answers
    /// are computed from): only with the policy's `Release` for them.
    pub(super) fn open_fields(
        &self,
        release: &Release,
        blind: &BlindId,
        record: &SealedRecord,
    ) -> Result<BTreeMap<String, Value>, VaultError> {
        self.open_named(blind, record, &derive::sources(release.fields()))
    }

    /// Opens where a citizen resides, for a grant decision's jurisdiction check (the value
    /// never leaves the core).
    pub(super) fn open_residence(
        &self,
        blind: &BlindId,
        record: &SealedRecord,
    ) -> Result<BTreeMap<String, Value>, VaultError> {
        self.open_named(blind, record, &derive::RESIDENCE)
    }

    fn open_named(
        &self,
        blind: &BlindId,
        record: &SealedRecord,
        names: &[&str],
    ) -> Result<BTreeMap<String, Value>, VaultError> {
        let dek = self
            .keyring()
            .unwrap_dek(blind, record.dek_version, &record.wrapped_dek)?;
        let sealer = FieldSealer::new(&dek, *blind, record.dek_version);
        let mut out = BTreeMap::new();
        for n in names {
            let Some(name) = FieldName::parse(n) else {
                continue;
            };
            if let Some(f) = record.fields.get(&name) {
                let pt = sealer.open(&name, f.version, &f.envelope)?;
                let v: Value = serde_json::from_slice(pt.expose())
                    .map_err(|_| VaultError::StoreCorrupt("sealed value is not JSON".into()))?;
                out.insert((*n).to_owned(), v);
            }
        }
        Ok(out)
    }
}

/// The bytes of a 64-digit hex blind id (zeros for anything else).
pub(super) fn hex_to_32(s: &str) -> [u8; 32] {
    let mut b = [0u8; 32];
    let _ = hex::decode_to_slice(s, &mut b);
    b
}
