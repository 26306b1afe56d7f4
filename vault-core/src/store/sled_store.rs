//! `SledStore`: the embedded default (sled 0.34). Trees: `citizens` (blind id → sealed
//! record), `meta` (keyring, import checkpoints), `grants` (id → grant JSON) with
//! `verification_codes`, `citizen_grants`, `consents`, `idempotency`, and the retention
//! indexes `grant_ends` (latest end ‖ id, in time order) and `grant_idempotency` (id → the
//! idempotency key naming it). Writes are durable only after `flush`.

use std::path::Path;

use super::{SealedRecord, VaultStore, codec};
use crate::error::VaultError;
use crate::grant::Grant;
use crate::id::BlindId;
use crate::keyring::KeyringRecord;
use crate::policy::ConsentState;

const KEYRING_KEY: &[u8] = b"keyring";
const IMPORT_PREFIX: &[u8] = b"import/";

/// The sled-backed store.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    citizens: sled::Tree,
    meta: sled::Tree,
    grants: sled::Tree,
    codes: sled::Tree,
    citizen_grants: sled::Tree,
    consents: sled::Tree,
    idempotency: sled::Tree,
    grant_ends: sled::Tree,
    grant_idempotency: sled::Tree,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Self, VaultError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| {
                VaultError::StoreUnavailable(format!("cannot open {}: {e}", dir.display()))
            })?;
        let citizens = db.open_tree("citizens")?;
        let meta = db.open_tree("meta")?;
        let store = Self {
            grants: db.open_tree("grants")?,
            codes: db.open_tree("verification_codes")?,
            citizen_grants: db.open_tree("citizen_grants")?,
            consents: db.open_tree("consents")?,
            idempotency: db.open_tree("idempotency")?,
            grant_ends: db.open_tree("grant_ends")?,
            grant_idempotency: db.open_tree("grant_idempotency")?,
            db,
            citizens,
            meta,
        };
        // A store written before the retention index existed: index its grants once.
        if store.grant_ends.is_empty() && !store.grants.is_empty() {
            for kv in store.grants.iter() {
                let (_, v) = kv?;
                let g = decode_grant(&v)?;
                store.grant_ends.insert(end_key(&g), &[])?;
            }
            store.flush()?;
        }
        Ok(store)
    }

    fn import_key(file_hash: &[u8; 32]) -> Vec<u8> {
        [IMPORT_PREFIX, file_hash.as_slice()].concat()
    }
}

fn encode_grant(g: &Grant) -> Result<Vec<u8>, VaultError> {
    serde_json::to_vec(g).map_err(|_| VaultError::StoreCorrupt("grant unencodable".into()))
}

fn decode_grant(b: &[u8]) -> Result<Grant, VaultError> {
    serde_json::from_slice(b).map_err(|_| VaultError::StoreCorrupt("grant unreadable".into()))
}

/// `grant_ends` key: the latest end in seconds, order-preserving (sign bit flipped,
/// big-endian), then the grant id.
fn end_key(g: &Grant) -> Vec<u8> {
    let mut k = end_prefix(g.latest_end_secs()).to_vec();
    k.extend_from_slice(g.id.as_bytes());
    k
}

fn end_prefix(secs: i64) -> [u8; 8] {
    (secs.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

fn joined(parts: &[&str]) -> Vec<u8> {
    parts.join("\u{0}").into_bytes()
}

fn blind_from_key(k: &[u8]) -> Result<BlindId, VaultError> {
    let b: [u8; 32] = k
        .try_into()
        .map_err(|_| VaultError::StoreCorrupt("bad citizen key".into()))?;
    Ok(BlindId::from_bytes(b))
}

impl VaultStore for SledStore {
    fn keyring(&self) -> Result<Option<KeyringRecord>, VaultError> {
        self.meta
            .get(KEYRING_KEY)?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|_| VaultError::StoreCorrupt("keyring record unreadable".into()))
            })
            .transpose()
    }

    fn put_keyring(&self, record: &KeyringRecord) -> Result<(), VaultError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|_| VaultError::StoreCorrupt("keyring record unencodable".into()))?;
        self.meta.insert(KEYRING_KEY, bytes)?;
        self.flush()
    }

    fn citizen(&self, id: &BlindId) -> Result<Option<SealedRecord>, VaultError> {
        self.citizens
            .get(id.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    fn put_citizens(&self, records: &[(BlindId, SealedRecord)]) -> Result<(), VaultError> {
        let mut batch = sled::Batch::default();
        for (id, rec) in records {
            batch.insert(id.as_bytes().as_slice(), codec::encode(rec));
        }
        self.citizens.apply_batch(batch)?;
        Ok(())
    }

    fn delete_citizen(&self, id: &BlindId) -> Result<bool, VaultError> {
        let existed = self.citizens.remove(id.as_bytes())?.is_some();
        self.flush()?;
        Ok(existed)
    }

    fn citizens_after(
        &self,
        after: Option<&BlindId>,
        limit: usize,
    ) -> Result<Vec<(BlindId, SealedRecord)>, VaultError> {
        let iter = match after {
            Some(a) => self.citizens.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes().as_slice()),
                std::ops::Bound::Unbounded,
            )),
            None => self.citizens.iter(),
        };
        iter.take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((blind_from_key(&k)?, codec::decode(&v)?))
            })
            .collect()
    }

    fn citizen_count(&self) -> Result<u64, VaultError> {
        Ok(self.citizens.len() as u64)
    }

    fn import_checkpoint(&self, file_hash: &[u8; 32]) -> Result<Option<u64>, VaultError> {
        self.meta
            .get(Self::import_key(file_hash))?
            .map(|v| {
                let b: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| VaultError::StoreCorrupt("bad import checkpoint".into()))?;
                Ok(u64::from_be_bytes(b))
            })
            .transpose()
    }

    fn set_import_checkpoint(
        &self,
        file_hash: &[u8; 32],
        line: Option<u64>,
    ) -> Result<(), VaultError> {
        let key = Self::import_key(file_hash);
        match line {
            Some(l) => self.meta.insert(key, l.to_be_bytes().as_slice())?,
            None => self.meta.remove(key)?,
        };
        Ok(())
    }

    fn flush(&self) -> Result<(), VaultError> {
        self.db.flush()?;
        Ok(())
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>, VaultError> {
        self.grants.get(id)?.map(|v| decode_grant(&v)).transpose()
    }

    fn insert_grant(&self, grant: &Grant) -> Result<bool, VaultError> {
        let claimed = self.codes.compare_and_swap(
            grant.verification_code.as_bytes(),
            None as Option<&[u8]>,
            Some(grant.id.as_bytes()),
        )?;
        if claimed.is_err() {
            return Ok(false);
        }
        self.grants
            .insert(grant.id.as_bytes(), encode_grant(grant)?)?;
        self.citizen_grants
            .insert(joined(&[&grant.citizen, &grant.id]), grant.id.as_bytes())?;
        self.grant_ends.insert(end_key(grant), &[])?;
        if grant.break_glass {
            self.meta
                .insert(joined(&["break_glass", &grant.id]), grant.id.as_bytes())?;
        }
        self.flush()?;
        Ok(true)
    }

    fn update_grant(
        &self,
        id: &str,
        durable: bool,
        change: &mut dyn FnMut(&mut Grant) -> Result<(), VaultError>,
    ) -> Result<Grant, VaultError> {
        loop {
            let old = self.grants.get(id)?.ok_or(VaultError::GrantNotFound)?;
            let mut g = decode_grant(&old)?;
            let old_end = end_key(&g);
            change(&mut g)?;
            let new = encode_grant(&g)?;
            if self
                .grants
                .compare_and_swap(id, Some(old), Some(new))?
                .is_ok()
            {
                let new_end = end_key(&g);
                if new_end != old_end {
                    self.grant_ends.insert(new_end, &[])?;
                    self.grant_ends.remove(old_end)?;
                }
                if durable {
                    self.flush()?;
                }
                return Ok(g);
            }
        }
    }

    fn break_glass_grants(&self) -> Result<Vec<Grant>, VaultError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(joined(&["break_glass", ""])) {
            let (_, id) = kv?;
            if let Some(g) = self.grants.get(&id)? {
                out.push(decode_grant(&g)?);
            }
        }
        Ok(out)
    }

    fn grant_id_by_code(&self, code: &str) -> Result<Option<String>, VaultError> {
        Ok(self
            .codes
            .get(code)?
            .and_then(|v| String::from_utf8(v.to_vec()).ok()))
    }

    fn grants_of_citizen(&self, citizen: &str) -> Result<Vec<Grant>, VaultError> {
        let mut prefix = citizen.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.citizen_grants.scan_prefix(prefix) {
            let (_, id) = kv?;
            if let Some(g) = self.grants.get(&id)? {
                out.push(decode_grant(&g)?);
            }
        }
        Ok(out)
    }

    fn consent(
        &self,
        citizen: &str,
        agency: &str,
        purpose: &str,
    ) -> Result<ConsentState, VaultError> {
        Ok(
            match self
                .consents
                .get(joined(&[citizen, agency, purpose]))?
                .as_deref()
            {
                Some(b"given") => ConsentState::Given,
                Some(b"refused") => ConsentState::Refused,
                _ => ConsentState::None,
            },
        )
    }

    fn set_consent(
        &self,
        citizen: &str,
        agency: &str,
        purpose: &str,
        state: ConsentState,
    ) -> Result<(), VaultError> {
        let key = joined(&[citizen, agency, purpose]);
        match state {
            ConsentState::Given => self.consents.insert(key, b"given".as_slice())?,
            ConsentState::Refused => self.consents.insert(key, b"refused".as_slice())?,
            ConsentState::None => self.consents.remove(key)?,
        };
        self.flush()
    }

    fn idempotency(&self, agency: &str, key: &str) -> Result<Option<(String, String)>, VaultError> {
        Ok(self.idempotency.get(joined(&[agency, key]))?.and_then(|v| {
            let s = String::from_utf8(v.to_vec()).ok()?;
            let (h, g) = s.split_once(' ')?;
            Some((h.to_owned(), g.to_owned()))
        }))
    }

    fn put_idempotency(
        &self,
        agency: &str,
        key: &str,
        hash: &str,
        grant_id: &str,
    ) -> Result<bool, VaultError> {
        let value = format!("{hash} {grant_id}");
        let name = joined(&[agency, key]);
        let r = self.idempotency.compare_and_swap(
            name.as_slice(),
            None as Option<&[u8]>,
            Some(value.as_bytes()),
        )?;
        if r.is_ok() {
            self.grant_idempotency.insert(grant_id, name)?;
        }
        self.flush()?;
        Ok(r.is_ok())
    }

    fn purge_grants(&self, cutoff_secs: i64, max: usize) -> Result<usize, VaultError> {
        let mut purged = 0;
        let due: Vec<sled::IVec> = self
            .grant_ends
            .range(..end_prefix(cutoff_secs).to_vec())
            .keys()
            .take(max)
            .collect::<Result<_, _>>()?;
        for key in due {
            let id = key.get(8..).unwrap_or_default();
            if let Some(v) = self.grants.get(id)? {
                let g = decode_grant(&v)?;
                if g.break_glass {
                    self.grant_ends.remove(&key)?;
                    continue;
                }
                let current = end_key(&g);
                if current.as_slice() != key.as_ref() {
                    // Left by two racing updates; the grant's own key stays.
                    self.grant_ends.insert(current, &[])?;
                    self.grant_ends.remove(&key)?;
                    continue;
                }
                if g.latest_end_secs() >= cutoff_secs {
                    continue;
                }
                let _ = self.codes.compare_and_swap(
                    g.verification_code.as_bytes(),
                    Some(id),
                    None as Option<&[u8]>,
                )?;
                self.citizen_grants.remove(joined(&[&g.citizen, &g.id]))?;
                if let Some(name) = self.grant_idempotency.remove(id)? {
                    self.idempotency.remove(name)?;
                }
                self.grants.remove(id)?;
                purged += 1;
            }
            self.grant_ends.remove(&key)?;
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::GrantStatus;

    fn grant(id: &str, exp: i64) -> Grant {
        Grant {
            id: id.into(),
            verification_code: format!("CODE{id}"),
            citizen: "ab".repeat(32),
            agency: "ubnd-quan-1".into(),
            official: "can-bo-01".into(),
            unit: None,
            purpose: "construction_permit".into(),
            dossier_id: "HS-1".into(),
            fields: vec!["full_name".into()],
            cert_thumbprint: "t".into(),
            status: GrantStatus::Active,
            created_ms: (exp - 300) * 1000,
            token_iat: Some(exp - 300),
            token_exp: Some(exp),
            ttl_seconds: 300,
            consent_expires_ms: None,
            max_uses: 1,
            uses: 0,
            break_glass: false,
            token_pending_delivery: false,
            review: None,
            ended_ms: None,
        }
    }

    #[test]
    fn grants_from_before_the_retention_index_are_indexed_on_open_and_purged_in_end_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            for (id, exp) in [("g-3", 3_000), ("g-1", 1_000), ("g-2", 2_000)] {
                assert!(s.insert_grant(&grant(id, exp)).unwrap());
            }
            // As written by a version without the index.
            s.grant_ends.clear().unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.grant_ends.len(), 3);
        assert_eq!(s.purge_grants(999, 10).unwrap(), 0);
        assert_eq!(s.purge_grants(2_500, 1).unwrap(), 1);
        assert!(s.grant("g-1").unwrap().is_none());
        assert!(s.grant_id_by_code("CODEg-1").unwrap().is_none());
        assert!(s.grants_of_citizen(&"ab".repeat(32)).unwrap().len() == 2);
        assert_eq!(s.purge_grants(2_500, 10).unwrap(), 1);
        assert_eq!(s.purge_grants(i64::MAX, 10).unwrap(), 1);
        assert!(s.grants.is_empty() && s.grant_ends.is_empty() && s.codes.is_empty());
        assert!(s.citizen_grants.is_empty());
    }
}
