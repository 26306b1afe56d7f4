//! `SledStore`: the embedded default (sled 0.34). Trees: `citizens` (blind id → sealed
//! record), `meta` (keyring, import checkpoints). Writes are durable only after `flush`.

use std::path::Path;

use super::{SealedRecord, VaultStore, codec};
use crate::error::VaultError;
use crate::id::BlindId;
use crate::keyring::KeyringRecord;

const KEYRING_KEY: &[u8] = b"keyring";
const IMPORT_PREFIX: &[u8] = b"import/";

/// The sled-backed store.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    citizens: sled::Tree,
    meta: sled::Tree,
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
        Ok(Self { db, citizens, meta })
    }

    fn import_key(file_hash: &[u8; 32]) -> Vec<u8> {
        [IMPORT_PREFIX, file_hash.as_slice()].concat()
    }
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
}
