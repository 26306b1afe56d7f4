//! What the use-case modules share: naming a citizen in an entry (their pseudonym, or a
//! stand-in for one the vault does not hold), opening sealed fields inside the core, and the
//! one check a split operation makes before it acts on its audit ticket's answer.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Vault;
use crate::audit::{Pseudonym, SafeId};
use crate::crypto::{self, FieldSealer};
use crate::error::VaultError;
use crate::id::{BlindId, CitizenId, FieldName};
use crate::store::{SealedRecord, VaultStore};

/// An identifier as recorded in an entry.
pub(super) fn safe(s: &str) -> Result<SafeId, VaultError> {
    SafeId::parse(s)
}

impl<S: VaultStore> Vault<S> {
    pub(super) fn blind_hex(&self, id: &CitizenId) -> (BlindId, String) {
        let b = self.keyring.blind(id);
        (b, b.to_string())
    }

    /// A citizen's pseudonym, or for a citizen the vault does not hold, a stand-in derived
    /// from the blind id (so requests about unknown citizens are audited the same way).
    pub(super) fn subject_of(&self, blind: &BlindId, record: Option<&SealedRecord>) -> Pseudonym {
        match record {
            Some(r) => self.pseudonym(r),
            None => Pseudonym::from_bytes(crypto::pseudonym(
                self.keyring.pseudonym_key(),
                blind.as_bytes(),
            )),
        }
    }

    /// Opens some fields of a stored record (inside the core only).
    pub(super) fn open_fields(
        &self,
        blind: &BlindId,
        record: &SealedRecord,
        names: &[&str],
    ) -> Result<BTreeMap<String, Value>, VaultError> {
        let dek = self
            .keyring
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

/// The durable answer of ticket `ticket`, or `AuditUnavailable` for a failure or another
/// ticket's answer: the one check both split operations make before they act.
pub(super) fn own_answer(
    ticket: u64,
    durable: Result<crate::audit::Durable, VaultError>,
) -> Result<crate::audit::Durable, VaultError> {
    match durable {
        Ok(d) if d.ticket() == ticket => Ok(d),
        _ => Err(VaultError::AuditUnavailable),
    }
}

/// The bytes of a 64-digit hex blind id (zeros for anything else).
pub(super) fn hex_to_32(s: &str) -> [u8; 32] {
    let mut b = [0u8; 32];
    let _ = hex::decode_to_slice(s, &mut b);
    b
}
