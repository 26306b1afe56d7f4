//! Storage behind the `VaultStore` traits, in domain types: sealed citizen records keyed by
//! blind id, grants, standing consents, idempotency keys, the wrapped keyring and marks.
//! Implementations are named by backend (`SledStore`) and pass `conformance`; callers never
//! see the engine. Nothing stored here is plaintext.

pub(crate) mod cases;
pub(crate) mod codec;
#[cfg(test)]
pub(crate) mod conformance;
pub mod dump;
mod grant_slots;
pub(crate) mod grant_state;
mod group;
mod records;
mod sled_store;

use std::collections::BTreeMap;

pub use cases::CaseRow;
pub use sled_store::{DEFAULT_CACHE_BYTES, SledStore, SlotRepairs};

use crate::audit::{AuditEntry, AuditLog, Ticket};
use crate::case::CaseKind;
use crate::clock::Timestamp;
use crate::consent::StandingConsent;
use crate::error::VaultError;
use crate::grant::{Grant, GrantState};
use crate::id::{BlindId, FieldName, GrantId};
use crate::keyring::KeyringRecord;

/// What a store fails with, in its own terms. The core converts it once (`From`, below):
/// a refusal that a change closure returned passes through as it was.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be read or written now (I/O, a lock, a full file).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored bytes do not decode, or the store is of another format.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// No grant with that id (a change to a grant that is not there).
    #[error("grant not found")]
    NotFound,
    /// A change closure refused the change (`GrantStore::update_grant`).
    #[error("{0}")]
    Refused(VaultError),
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::StoreUnavailable(m),
            StoreError::Corrupt(m) => Self::StoreCorrupt(m),
            StoreError::NotFound => Self::GrantNotFound,
            StoreError::Refused(e) => e,
        }
    }
}

/// One sealed field: its current version and its envelope (whose header repeats the version;
/// both must agree, so an older envelope replayed into place is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedField {
    /// The record version at which this field was last written.
    pub version: u64,
    /// The `crypto` field envelope.
    pub envelope: Vec<u8>,
}

/// A citizen's record at rest: wrapped DEK, audit salt, versions and sealed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// Generation of the citizen's DEK (bound into every field's AAD).
    pub dek_version: u32,
    /// The DEK wrapped under a KEK (`crypto` DEK envelope).
    pub wrapped_dek: Vec<u8>,
    /// Per-citizen salt for audit pseudonyms; erasure destroys it.
    pub audit_salt: [u8; 32],
    /// Bumped on every write that changes a field.
    pub record_version: u64,
    /// Sealed fields by name.
    pub fields: BTreeMap<FieldName, SealedField>,
}

/// A `SealedRecord` in its stored form (the store's binary codec), made by whoever holds the
/// record, so a pipeline can encode on its sealing threads and hand the store bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedRecord(Vec<u8>);

impl EncodedRecord {
    /// Encodes `record`.
    pub fn new(record: &SealedRecord) -> Self {
        Self(codec::encode(record))
    }

    /// The encoded bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for EncodedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncodedRecord({} bytes)", self.0.len())
    }
}

/// The vault's persistent state: the six parts a backend implements. Writes become durable
/// at `MetaStore::flush` (or at once where noted). Every backend passes the behavioural tests
/// of `conformance`.
pub trait VaultStore:
    RecordStore
    + GrantStore
    + ConsentStore
    + IdempotencyStore
    + CaseStore
    + MetaStore
    + AuditedStore
    + Send
    + Sync
    + Clone
    + 'static
{
}

impl<T> VaultStore for T where
    T: RecordStore
        + GrantStore
        + ConsentStore
        + IdempotencyStore
        + CaseStore
        + MetaStore
        + AuditedStore
        + Send
        + Sync
        + Clone
        + 'static
{
}

/// Sealed citizen records by blind id.
pub trait RecordStore {
    /// A citizen's sealed record.
    fn citizen(&self, id: &BlindId) -> Result<Option<SealedRecord>, StoreError>;
    /// A citizen's sealed record with only the fields `keep` accepts (a release opens a few
    /// of the ~20 a record holds; the others need not be copied out).
    fn citizen_fields(
        &self,
        id: &BlindId,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<SealedRecord>, StoreError> {
        Ok(self.citizen(id)?.map(|mut r| {
            r.fields.retain(|n, _| keep(n.as_str()));
            r
        }))
    }
    /// `citizen_fields`, and the topics of the citizen's open cases of `kind` (a release
    /// reads both; one round trip where the store is a database).
    fn citizen_fields_and_open(
        &self,
        id: &BlindId,
        keep: &dyn Fn(&str) -> bool,
        kind: CaseKind,
    ) -> Result<(Option<SealedRecord>, Vec<String>), StoreError>
    where
        Self: CaseStore,
    {
        let open = self
            .cases_of_citizen(id, kind)?
            .into_iter()
            .filter(|r| r.open)
            .map(|r| r.topic)
            .collect();
        Ok((self.citizen_fields(id, keep)?, open))
    }
    /// Writes many records atomically (all or none). Durable after `flush`.
    fn put_citizens(&self, records: &[(BlindId, SealedRecord)]) -> Result<(), StoreError> {
        let encoded: Vec<(BlindId, EncodedRecord)> = records
            .iter()
            .map(|(id, r)| (*id, EncodedRecord::new(r)))
            .collect();
        self.put_encoded(&encoded)
    }
    /// `put_citizens` for records already encoded.
    fn put_encoded(&self, records: &[(BlindId, EncodedRecord)]) -> Result<(), StoreError>;
    /// Removes a citizen's record (DEK, salt, fields, index row) and flushes.
    /// Returns whether it existed.
    fn delete_citizen(&self, id: &BlindId) -> Result<bool, StoreError>;
    /// Up to `limit` records after `after` in blind-id order (for rotation and scans).
    fn citizens_after(
        &self,
        after: Option<&BlindId>,
        limit: usize,
    ) -> Result<Vec<(BlindId, SealedRecord)>, StoreError>;
    /// Number of citizens stored.
    fn citizen_count(&self) -> Result<u64, StoreError>;
    /// Holds record writes of every process that shares this store until the lock is dropped
    /// (`Vault::lock_writes`, which also holds this process's own). A store only one process
    /// opens needs none.
    fn lock_records(&self) -> Result<RecordsLock<'_>, StoreError> {
        Ok(RecordsLock::none())
    }
}

/// Anything held until dropped.
pub trait Held {}
impl<T> Held for T {}

/// The store's record write lock (`RecordStore::lock_records`), released on drop.
pub struct RecordsLock<'a>(Option<Box<dyn Held + 'a>>);

impl<'a> RecordsLock<'a> {
    /// No lock: the store has no other process to hold off.
    pub fn none() -> Self {
        Self(None)
    }

    /// A lock released when `held` is dropped.
    pub fn holding(held: impl Held + 'a) -> Self {
        Self(Some(Box::new(held)))
    }
}

impl std::fmt::Debug for RecordsLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "RecordsLock(held)"
        } else {
            "RecordsLock(none)"
        })
    }
}

/// Grants: issued, changed by compare-and-swap, found by id, code and citizen, swept.
pub trait GrantStore {
    /// A fresh id for a grant about to be stored (`insert_grant`), made before its audit
    /// entry names it; a store may reserve room for the grant with it.
    fn new_grant_id(&self) -> Result<GrantId, StoreError> {
        crate::grant::new_grant_id()
            .map(GrantId::new)
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
    /// A grant by id.
    fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;
    /// Stores a new grant and claims its verification code; `false` (nothing stored) when the
    /// code is already taken. Durable on return.
    fn insert_grant(&self, grant: &Grant) -> Result<bool, StoreError>;
    /// Changes a grant atomically (compare-and-swap, retried): `change` sees the current
    /// grant and may refuse. Durable on return when `durable`.
    fn update_grant(
        &self,
        id: &str,
        durable: bool,
        change: &mut dyn FnMut(&mut Grant) -> Result<(), VaultError>,
    ) -> Result<Grant, StoreError>;
    /// Changes a grant's state record atomically (compare-and-swap, retried) without reading
    /// the grant: the release path. `change` sees the current state and may refuse. Not
    /// durable on return (a spent use is durable through its audit entry, `vault::uses`).
    fn update_grant_state(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut GrantState) -> Result<(), VaultError>,
    ) -> Result<GrantState, StoreError>;
    /// Every break-glass grant (the auditors' review queue is those without a review).
    fn break_glass_grants(&self) -> Result<Vec<Grant>, StoreError>;
    /// The grant holding a verification code.
    fn grant_id_by_code(&self, code: &str) -> Result<Option<GrantId>, StoreError>;
    /// Every grant concerning a citizen.
    fn grants_of_citizen(&self, citizen: &BlindId) -> Result<Vec<Grant>, StoreError>;
    /// Every grant, in pages: up to `limit` after the cursor `after` (`None`: from the
    /// start), and the cursor to go on from (`None`: the end). For a backup.
    fn grants_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Grant>, Option<String>), StoreError>;
    /// One step of the retention sweep: reads up to `scan` grants in id order after `after`
    /// and deletes those whose `Grant::latest_end_secs` is before `cutoff`, with their
    /// verification code, citizen link and idempotency key; break-glass grants are kept (they
    /// are the auditors' review record). Returns how many were deleted and where to go on
    /// (`None`: the walk reached the end). Not flushed: a crash may bring some back, and the
    /// next pass deletes them again.
    fn sweep_grants(
        &self,
        after: Option<&str>,
        scan: usize,
        cutoff: Timestamp,
    ) -> Result<(usize, Option<String>), StoreError>;
}

/// Changes that land with the audit entries recording them: in one transaction where the
/// store shares its database with the log (`AuditLog::submit_with`), else in the order each
/// method gives, so that nothing changes unrecorded.
pub trait AuditedStore: RecordStore + GrantStore + ConsentStore + CaseStore {
    /// Whether this store commits a change in one transaction with its entries (then
    /// `write_audited` is the way to write records; otherwise the entries go first and the
    /// records are written after, which lets an import overlap the two).
    fn commits_with_log(&self) -> bool {
        false
    }
    /// Changes a grant's state (as `update_grant_state`) and submits the entries that record
    /// the change (`entries`, made from the changed state), so that neither lands without the
    /// other: a store that shares its database with the log commits both in one transaction
    /// (`AuditLog::submit_with`). Here, for a store that cannot: the change (not durable on
    /// return), then the entries; the change becomes durable with or after its entries
    /// (`vault::uses`, the flusher).
    fn update_grant_state_audited(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut GrantState) -> Result<(), VaultError>,
        entries: &mut dyn FnMut(&GrantState) -> Result<Vec<AuditEntry>, VaultError>,
        log: &dyn AuditLog,
    ) -> Result<(GrantState, Ticket), StoreError> {
        let st = self.update_grant_state(id, change)?;
        let made = entries(&st).map_err(StoreError::Refused)?;
        Ok((st, log.submit(made)))
    }
    /// Changes a grant (as `update_grant`) together with the entries that record the change
    /// and the rows `also` writes: `change` changes the grant and returns the entries (none:
    /// the grant is left as it was, and `also` is not written). A store that shares its
    /// database with the log commits all in one transaction. Here, for a store that cannot,
    /// `landing` says whether the change or the entries go first; `also` goes last.
    fn update_grant_audited(
        &self,
        id: &str,
        landing: Landing,
        change: &mut dyn FnMut(&mut Grant) -> Result<Vec<AuditEntry>, VaultError>,
        also: &[Write<'_>],
        log: &dyn AuditLog,
    ) -> Result<(Grant, Ticket), StoreError> {
        let (g, ticket, made) = match landing {
            Landing::ChangeFirst => {
                let mut made = Vec::new();
                let g = self.update_grant(id, false, &mut |g| {
                    made = change(g)?;
                    Ok(())
                })?;
                let any = !made.is_empty();
                (g, log.submit(made), any)
            }
            Landing::EntriesFirst => {
                let mut probe = self.grant(id)?.ok_or(StoreError::NotFound)?;
                let made = change(&mut probe).map_err(StoreError::Refused)?;
                let any = !made.is_empty();
                let appended = log.append(made).map_err(StoreError::Refused)?;
                let g = self.update_grant(id, true, &mut |g| change(g).map(|_| ()))?;
                (g, Ticket::ready(Ok(appended)), any)
            }
        };
        if made {
            self.write_all(also)?;
        }
        Ok((g, ticket))
    }
    /// Writes rows together with the entries that record them: one transaction where the
    /// store shares the log's database; here, the entries first (durable), then the rows.
    fn write_audited(
        &self,
        writes: &[Write<'_>],
        entries: Vec<AuditEntry>,
        log: &dyn AuditLog,
    ) -> Result<Ticket, StoreError> {
        let appended = log.append(entries).map_err(StoreError::Refused)?;
        self.write_all(writes)?;
        Ok(Ticket::ready(Ok(appended)))
    }
    /// Writes rows one by one, each as its own method would.
    fn write_all(&self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        for w in writes {
            match *w {
                Write::Consent(c) => self.put_consent(c)?,
                Write::ForgetConsent(citizen, id) => {
                    self.delete_consent(citizen, id)?;
                }
                Write::Case(row) => self.put_case(row)?,
                Write::Records(records) => self.put_encoded(records)?,
                Write::Erase(citizen) => {
                    self.delete_cases_of_citizen(citizen)?;
                    self.delete_citizen(citizen)?;
                }
            }
        }
        Ok(())
    }
}

/// A row written with its audit entries (`AuditedStore`).
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// Stores (or replaces) a standing consent.
    Consent(&'a StandingConsent),
    /// Deletes a citizen's standing consent (nothing if it is gone).
    ForgetConsent(&'a BlindId, &'a str),
    /// Stores (or replaces) a case.
    Case(&'a CaseRow),
    /// Stores records (all or none, as `RecordStore::put_encoded`).
    Records(&'a [(BlindId, EncodedRecord)]),
    /// Deletes a citizen's record and cases (their consents go as `ForgetConsent`).
    Erase(&'a BlindId),
}

/// Which of a change and its entries lands first in a store that cannot commit them in one
/// transaction (`GrantStore::update_grant_audited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landing {
    /// The change first, not durable until it is flushed with or after its entries: for a
    /// change that must take effect at once (a revocation fails closed).
    ChangeFirst,
    /// The entries first, durable, then the change: for a decision that must not take effect
    /// unrecorded (a consent, a review).
    EntriesFirst,
}

/// A citizen's standing consents.
pub trait ConsentStore {
    /// Stores a standing consent. Durable on return.
    fn put_consent(&self, consent: &StandingConsent) -> Result<(), StoreError>;
    /// Every standing consent of a citizen, expired ones included.
    fn consents_of_citizen(&self, citizen: &BlindId) -> Result<Vec<StandingConsent>, StoreError>;
    /// Deletes a citizen's standing consent; `false` if there was none with that id. Durable
    /// on return.
    fn delete_consent(&self, citizen: &BlindId, id: &str) -> Result<bool, StoreError>;
    /// Deletes the standing consents that ended (expired, or withdrawn and left marked by a
    /// withdrawal cut short) before `cutoff`; how many. Not flushed.
    fn sweep_consents(&self, cutoff: Timestamp) -> Result<usize, StoreError>;
}

/// What a caller's idempotency key named the first time, stored under the key's name
/// (`crypto::answer_name`: an HMAC of the caller's scope and key, never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// SHA-256 of the request (another request under the same key is a conflict).
    pub request_hash: [u8; 32],
    /// When it was answered.
    pub created: Timestamp,
    /// The answer.
    pub answer: RememberedAnswer,
}

/// A remembered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RememberedAnswer {
    /// The grant a grant request made (deleted with the grant by the retention sweep).
    Grant(GrantId),
    /// Any other answer, sealed (`crypto::seal_answer`); deleted by
    /// `IdempotencyStore::sweep_remembered`.
    Sealed(Vec<u8>),
}

const REMEMBERED_GRANT: u8 = 1;
const REMEMBERED_SEALED: u8 = 2;

/// A `Remembered` as stored: kind, request hash, time (ms, big-endian), then the grant id or
/// the sealed answer.
pub(crate) fn encode_remembered(r: &Remembered) -> Vec<u8> {
    let (kind, rest): (u8, &[u8]) = match &r.answer {
        RememberedAnswer::Grant(id) => (REMEMBERED_GRANT, id.as_bytes()),
        RememberedAnswer::Sealed(bytes) => (REMEMBERED_SEALED, bytes),
    };
    let mut out = Vec::with_capacity(41 + rest.len());
    out.push(kind);
    out.extend_from_slice(&r.request_hash);
    out.extend_from_slice(&r.created.as_millis().to_be_bytes());
    out.extend_from_slice(rest);
    out
}

pub(crate) fn decode_remembered(v: &[u8]) -> Result<Remembered, StoreError> {
    let bad = || StoreError::Corrupt("idempotency record unreadable".into());
    let (&kind, rest) = v.split_first().ok_or_else(bad)?;
    let (hash, rest) = rest.split_first_chunk::<32>().ok_or_else(bad)?;
    let (ms, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
    let answer = match kind {
        REMEMBERED_GRANT => RememberedAnswer::Grant(GrantId::new(
            String::from_utf8(rest.to_vec()).map_err(|_| bad())?,
        )),
        REMEMBERED_SEALED => RememberedAnswer::Sealed(rest.to_vec()),
        _ => return Err(bad()),
    };
    Ok(Remembered {
        request_hash: *hash,
        created: Timestamp::from_millis(i64::from_be_bytes(*ms)),
        answer,
    })
}

/// Idempotency keys and what they answered.
pub trait IdempotencyStore {
    /// What the key named `name` answered.
    fn remembered(&self, name: &[u8; 32]) -> Result<Option<Remembered>, StoreError>;
    /// Remembers an answer under `name`; `false` (nothing changed) if the name was already
    /// taken. Durable on return.
    fn remember(&self, name: &[u8; 32], what: &Remembered) -> Result<bool, StoreError>;
    /// Deletes the sealed answers made before `cutoff`; how many. Not flushed.
    fn sweep_remembered(&self, cutoff: Timestamp) -> Result<usize, StoreError>;
}

/// Citizens' complaints, corrections and data-subject requests (`CaseRow`: routing facts in
/// the clear, the body sealed by the vault).
pub trait CaseStore {
    /// Stores a case, or replaces the one with its kind and id. Durable on return.
    fn put_case(&self, row: &CaseRow) -> Result<(), StoreError>;
    /// A case by kind and id.
    fn case(&self, kind: CaseKind, id: &str) -> Result<Option<CaseRow>, StoreError>;
    /// A citizen's cases of one kind, in id order.
    fn cases_of_citizen(
        &self,
        citizen: &BlindId,
        kind: CaseKind,
    ) -> Result<Vec<CaseRow>, StoreError>;
    /// The open cases of one kind (the queues of agencies and officers), in id order.
    fn open_cases(&self, kind: CaseKind) -> Result<Vec<CaseRow>, StoreError>;
    /// Every case of one kind, open or closed, in id order.
    fn cases_of_kind(&self, kind: CaseKind) -> Result<Vec<CaseRow>, StoreError>;
    /// Deletes every case of a citizen (erasure); how many. Durable on return.
    fn delete_cases_of_citizen(&self, citizen: &BlindId) -> Result<usize, StoreError>;
}

/// The keyring, import checkpoints, the released-through mark, and durability.
pub trait MetaStore {
    /// The stored keyring, if the vault is initialized.
    fn keyring(&self) -> Result<Option<KeyringRecord>, StoreError>;
    /// Replaces the keyring and flushes.
    fn put_keyring(&self, record: &KeyringRecord) -> Result<(), StoreError>;
    /// The last committed line of an interrupted import of the file with this hash.
    fn import_checkpoint(&self, file_hash: &[u8; 32]) -> Result<Option<u64>, StoreError>;
    /// Records (or clears, with `None`) an import checkpoint. Durable after `flush`.
    fn set_import_checkpoint(
        &self,
        file_hash: &[u8; 32],
        line: Option<u64>,
    ) -> Result<(), StoreError>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// The audit log size up to which every `record.released` entry's spent use is in the
    /// store (`None` for a new store).
    fn released_through(&self) -> Result<Option<u64>, StoreError>;
    /// Records `released_through`. Durable after `flush` (together with every use spent
    /// before it).
    fn set_released_through(&self, size: u64) -> Result<(), StoreError>;
    /// Whether `update_grant_state` is durable on return (a database commit). Then a spent
    /// use needs no replay from the audit log after a crash, and no mark is kept: with
    /// several nodes, a replay would count again uses that another node committed.
    fn uses_durable_at_once(&self) -> bool {
        false
    }
}

/// A stored grant for the store's unit tests: active, one use, token valid for the 300
/// seconds before `exp`.
#[cfg(test)]
pub(crate) fn test_grant(id: &str, exp: i64) -> Grant {
    Grant {
        id: id.into(),
        verification_code: format!("CODE{id}"),
        citizen: "ab".repeat(32),
        agency: "ubnd-phuong-sai-gon".into(),
        official: "can-bo-01".into(),
        unit: None,
        purpose: "construction_permit".into(),
        dossier_id: "HS-1".into(),
        fields: vec!["full_name".into()],
        cert_thumbprint: "t".into(),
        status: crate::grant::GrantStatus::Active,
        created: Timestamp::from_secs(exp - 300),
        token_iat: Some(Timestamp::from_secs(exp - 300)),
        token_exp: Some(Timestamp::from_secs(exp)),
        ttl_seconds: 300,
        consent_expires: None,
        max_uses: 1,
        uses: 0,
        break_glass: false,
        token_pending_delivery: false,
        review: None,
        reviewed_at: None,
        ended: None,
        consent_id: None,
    }
}
