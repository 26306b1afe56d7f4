//! The `Vault` façade: the only public way to seal, open, erase and re-key citizen records.
//! It validates values against the policy catalog, keeps the DEK hierarchy consistent and
//! never lets plaintext reach the store.

mod anomalies;
mod audited;
mod backup;
#[cfg(test)]
mod case_tests;
mod cases;
mod consent;
mod grants;
mod idempotency;
mod oversight;
mod reads;
mod refusal;
mod release;
mod reports;
mod revocation;
mod sealed;
#[cfg(test)]
mod use_case_tests;
mod uses;

pub use anomalies::Anomaly;
pub use audited::{AfterAudit, Audited};
pub use cases::{Notification, NotificationKind, QueuedCorrection, settable_status};
pub use consent::{ConsentDecision, Decided};
pub use grants::{AgencyCaller, CONSENT_WINDOW_SECS, GrantOutcome, GrantRequest};
pub use idempotency::{Answered, IdempotencyKey, Once};
pub use oversight::{BreakGlassItem, RequestFilter};
pub use reads::{AuditorAnswer, AuditorRead, CodeInfo, HistoryItem, Receipt};
pub use refusal::{Attempt, Caller};
pub use release::Released;
pub use reports::{BreachReport, ReuseLine};

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditEntry, AuditLog, AuditOpener, EntryContext, Pseudonym, SafeId};
use crate::clock::Timestamp;
use crate::crypto::{self, FieldSealer};
use crate::error::VaultError;
use crate::id::{BlindId, CitizenId, FieldName};
use crate::keyring::{Keyring, RootKeySource};
use crate::policy::PolicySet;
use crate::store::{EncodedRecord, SealedField, SealedRecord, VaultStore, Write};

/// Record writes held off (`Vault::lock_writes`): this process's and, with a store that
/// several processes share, theirs. Released on drop (the store's first).
#[derive(Debug)]
pub struct WritesLock<'a> {
    _shared: crate::store::RecordsLock<'a>,
    _local: std::sync::MutexGuard<'a, ()>,
}

/// Fields to write for one citizen. Only `Vault::validate_write` builds one, so every value
/// in it has been checked against the catalog.
pub struct RecordWrite {
    citizen: CitizenId,
    fields: Vec<(FieldName, Value)>,
}

/// Sealed records ready to commit: the CPU-heavy half of a write, done without touching
/// the store's contents, so callers may prepare on one thread and commit on another.
/// A prepared batch must be committed before another batch touching the same citizens is
/// prepared (the import pipeline guarantees it by refusing duplicate ids).
pub struct PreparedWrites {
    /// Encoded where prepared (a sealing thread), so the committing thread only writes.
    batch: Vec<(BlindId, EncodedRecord)>,
    outcomes: Vec<WriteOutcome>,
    /// Per written citizen: its pseudonym and the names of the fields that changed.
    written: Vec<(Pseudonym, Vec<FieldName>)>,
}

impl std::fmt::Debug for PreparedWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedWrites")
            .field("records", &self.batch.len())
            .finish()
    }
}

/// A prepared batch whose audit entries are queued (`Vault::audit_writes`): the only way to
/// a store write, so a batch cannot be stored without its entries having been submitted, and
/// `Vault::store_writes` stores it only once they are durable.
pub type AuditedWrites = Audited<PreparedWrites>;

impl std::fmt::Debug for RecordWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordWrite(<redacted>)")
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new citizen, at this record version.
    Created(u64),
    /// Some fields changed; the new record version.
    Updated(u64),
    /// Every value was already stored; the record version is unchanged.
    Unchanged(u64),
}

impl WriteOutcome {
    /// The record version after the write.
    pub fn version(self) -> u64 {
        match self {
            Self::Created(v) | Self::Updated(v) | Self::Unchanged(v) => v,
        }
    }
}

/// A citizen's opened record. Never printed.
pub struct Record {
    /// Record version.
    pub version: u64,
    /// Values by field name.
    pub fields: BTreeMap<String, Value>,
    /// Fields with an open correction (disputed), in name order.
    pub disputed: Vec<String>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("version", &self.version)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<S: VaultStore> Vault<S> {
    /// The store (sealed rows only: what an engine-specific caller needs, such as the
    /// slot repairs sled made at open or the database a node shares).
    pub fn store(&self) -> &S {
        &self.store
    }
}

/// What `Vault::readiness` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The store answers and its background flush keeps up.
    pub store: bool,
    /// The keyring is loaded.
    pub keys: bool,
    /// The audit log accepts appends.
    pub audit_log: bool,
}

impl Readiness {
    /// Everything is ready.
    pub fn ready(self) -> bool {
        self.store && self.keys && self.audit_log
    }
}

/// Progress of a key rotation, passed to the caller's callback after each batch.
#[derive(Debug, Clone, Copy)]
pub struct RotationProgress {
    /// Records visited so far.
    pub visited: u64,
    /// Records in the store when the pass started.
    pub total: u64,
}

/// The result of `rotate_keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationReport {
    /// The KEK version DEKs were moved from.
    pub from: u32,
    /// The new current KEK version.
    pub to: u32,
    /// DEKs re-wrapped in this run.
    pub rewrapped: u64,
    /// Whether this run resumed an interrupted rotation.
    pub resumed: bool,
    /// Whether the rotation finished (old KEKs retired). `false` if the callback stopped it.
    pub completed: bool,
}

/// The vault over a store.
pub struct Vault<S: VaultStore> {
    store: S,
    /// The keyring, the policy set and the token keys are replaced while the vault serves
    /// (key rotation, policy reload); a call takes the current one once and keeps it.
    keyring: Swap<Keyring>,
    policy: Swap<PolicySet>,
    audit: Arc<dyn AuditLog>,
    tokens: Swap<crate::token::TokenKeys>,
    /// Token signatures already checked (a later use skips the Ed25519 verification).
    token_cache: crate::token::VerifiedCache,
    /// Where the grant retention sweep goes on (the last grant id it looked at).
    sweep_cursor: std::sync::Mutex<Option<String>>,
    /// Serializes read-modify-write of records (`write_records`, `erase`) within a process;
    /// sled's directory lock keeps other processes out.
    write_lock: std::sync::Mutex<()>,
    /// Flushes spent uses in the background, marking how far the audit log is covered
    /// (`vault/uses.rs`).
    flusher: crate::flush::BackgroundFlusher,
    /// The spent-use mark, shared with the flusher.
    marker: Arc<uses::Marker>,
    /// Orders a grant's state changes with the queuing of their entries (`refusal.rs`).
    grant_order: refusal::GrantOrder,
    /// One idempotent call at a time per key name (`idempotency.rs`), striped the same way.
    answer_order: refusal::GrantOrder,
    /// One change at a time per case (and per citizen filing a correction), striped. Apart
    /// from `answer_order`, which an idempotent call holds while it runs a case change.
    case_order: refusal::GrantOrder,
    /// The anomaly detector, fed as the log grows (`anomalies.rs`).
    anomalies: std::sync::Mutex<anomalies::Detector>,
}

/// A value replaced while readers use it: each reader takes the current `Arc` (a read
/// lock held for a clone) and keeps it for its call.
struct Swap<T>(std::sync::RwLock<Arc<T>>);

impl<T> Swap<T> {
    fn new(v: Arc<T>) -> Self {
        Self(std::sync::RwLock::new(v))
    }

    fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set(&self, v: Arc<T>) {
        match self.0.write() {
            Ok(mut g) => *g = v,
            Err(poisoned) => *poisoned.into_inner() = v,
        }
    }
}

/// How often, at most, spent uses are flushed to the store. Recovery replays the
/// `record.released` entries of at most about this long before a crash.
pub const SPENT_USE_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// How often the mark is moved when nothing is spent but other entries come in, so that
/// the replay after a crash reads a short tail.
const SPENT_USE_IDLE_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// The vault's default origin (`iss`/`aud` of its tokens).
pub const DEFAULT_ORIGIN: &str = "https://vault.hochiminhcity.gov.vn";

impl<S: VaultStore> std::fmt::Debug for Vault<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("keyring", &self.keyring())
            .finish_non_exhaustive()
    }
}

impl<S: VaultStore> Vault<S> {
    /// Creates a new vault's keyring in an empty store. Refuses an initialized store.
    pub fn init(
        store: S,
        root: &dyn RootKeySource,
        policy: Arc<PolicySet>,
        log_origin: &str,
        audit: &dyn AuditOpener,
    ) -> Result<Self, VaultError> {
        if store.keyring()?.is_some() {
            return Err(VaultError::VaultExists);
        }
        let root = root.load()?;
        let (keyring, record) = Keyring::create(&*root, log_origin)?;
        let audit = audit.open(keyring.audit_signer().clone_signer()?)?;
        store.put_keyring(&record)?;
        Self::assemble(store, keyring, policy, audit)
    }

    /// Opens an initialized vault. A wrong root key fails with `WrongRootKey` before anything
    /// else is read or written.
    pub fn open(
        store: S,
        root: &dyn RootKeySource,
        policy: Arc<PolicySet>,
        audit: &dyn AuditOpener,
    ) -> Result<Self, VaultError> {
        let record = store.keyring()?.ok_or(VaultError::VaultNotInitialized)?;
        let keyring = Keyring::open(&*root.load()?, &record)?;
        let audit = audit.open(keyring.audit_signer().clone_signer()?)?;
        Self::assemble(store, keyring, policy, audit)
    }

    fn assemble(
        store: S,
        keyring: Keyring,
        policy: Arc<PolicySet>,
        audit: Arc<dyn AuditLog>,
    ) -> Result<Self, VaultError> {
        let tokens = keyring.token_keys(DEFAULT_ORIGIN)?;
        let (marker, _) = uses::replay_released(&store, audit.as_ref())?;
        let marker = Arc::new(marker);
        let (flush_store, flush_audit, flush_marker) =
            (store.clone(), Arc::clone(&audit), Arc::clone(&marker));
        let flusher = crate::flush::BackgroundFlusher::start(
            SPENT_USE_FLUSH_INTERVAL,
            SPENT_USE_IDLE_FLUSH,
            move || flush_marker.mark(&flush_store, flush_audit.as_ref(), true),
        )?;
        Ok(Self {
            store,
            keyring: Swap::new(Arc::new(keyring)),
            policy: Swap::new(policy),
            audit,
            tokens: Swap::new(Arc::new(tokens)),
            token_cache: crate::token::VerifiedCache::default(),
            sweep_cursor: std::sync::Mutex::new(None),
            write_lock: std::sync::Mutex::new(()),
            flusher,
            marker,
            grant_order: refusal::GrantOrder::default(),
            answer_order: refusal::GrantOrder::default(),
            case_order: refusal::GrantOrder::default(),
            anomalies: std::sync::Mutex::new(anomalies::Detector::default()),
        })
    }

    /// Sets the vault's origin (the `iss` and `aud` of its tokens).
    pub fn with_origin(self, origin: &str) -> Result<Self, VaultError> {
        self.tokens
            .set(Arc::new(self.keyring().token_keys(origin)?));
        self.token_cache.clear();
        Ok(self)
    }

    /// The token keys (for verifying presented tokens).
    pub fn token_keys(&self) -> Arc<crate::token::TokenKeys> {
        self.tokens.get()
    }

    /// The keyring in force (this crate only: outside, DEKs must not be unwrapped around
    /// the audited paths).
    pub(crate) fn keyring(&self) -> Arc<Keyring> {
        self.keyring.get()
    }

    /// The audit log.
    pub fn audit(&self) -> &dyn AuditLog {
        self.audit.as_ref()
    }

    /// The audit pseudonym of a stored citizen.
    fn pseudonym(&self, record: &SealedRecord) -> Pseudonym {
        Pseudonym::from_bytes(crypto::pseudonym(
            self.keyring().pseudonym_key(),
            &record.audit_salt,
        ))
    }

    /// The audit pseudonym of a citizen, if stored.
    pub fn citizen_pseudonym(&self, id: &CitizenId) -> Result<Option<Pseudonym>, VaultError> {
        Ok(self
            .store
            .citizen(&self.keyring().blind(id))?
            .map(|r| self.pseudonym(&r)))
    }

    fn entry_context(&self, now: Timestamp) -> EntryContext {
        EntryContext {
            time: now,
            policy: self.policy().sha256(),
        }
    }

    /// The policy set in force.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.policy.get()
    }

    /// Replaces the policy set (a reload): calls that started keep the set they took, later
    /// ones use `policy` and record its hash in their entries.
    pub fn set_policy(&self, policy: Arc<PolicySet>) {
        self.policy.set(policy);
    }

    /// The number of citizens the vault holds.
    pub fn citizen_count(&self) -> Result<u64, VaultError> {
        Ok(self.store.citizen_count()?)
    }

    /// Where an interrupted import of the file with this hash stopped (its last committed
    /// line).
    pub fn import_checkpoint(&self, file_hash: &[u8; 32]) -> Result<Option<u64>, VaultError> {
        Ok(self.store.import_checkpoint(file_hash)?)
    }

    /// Records (or clears, with `None`) an import's checkpoint. Durable after `flush`.
    pub fn set_import_checkpoint(
        &self,
        file_hash: &[u8; 32],
        line: Option<u64>,
    ) -> Result<(), VaultError> {
        Ok(self.store.set_import_checkpoint(file_hash, line)?)
    }

    /// Readiness: the store answers (one small read, never a scan) and its background flush
    /// keeps up, the keyring is loaded, the audit log accepts appends (an active re-check
    /// after a failure).
    pub fn readiness(&self) -> Readiness {
        let keyring = self.store.keyring();
        Readiness {
            store: keyring.is_ok() && self.store_flush_ok(),
            keys: keyring.is_ok_and(|k| k.is_some()),
            audit_log: self.audit.probe(),
        }
    }

    /// The current KEK version (new data keys are wrapped under it).
    pub fn kek_version(&self) -> u32 {
        self.keyring().current_version()
    }

    /// The oldest KEK version still accepted.
    pub fn min_decryption_version(&self) -> u32 {
        self.keyring().min_decryption_version()
    }

    /// The blind index of a citizen id.
    pub fn blind(&self, id: &CitizenId) -> BlindId {
        self.keyring().blind(id)
    }

    /// Checks a JSON object of fields against the catalog. Errors name the field, never the
    /// value.
    pub fn validate_fields(
        &self,
        fields: serde_json::Map<String, Value>,
    ) -> Result<Vec<(FieldName, Value)>, VaultError> {
        self.policy().validate_fields(fields)
    }

    /// Validates a citizen's fields into a `RecordWrite`.
    pub fn validate_write(
        &self,
        citizen: CitizenId,
        fields: serde_json::Map<String, Value>,
    ) -> Result<RecordWrite, VaultError> {
        Ok(RecordWrite {
            citizen,
            fields: self.validate_fields(fields)?,
        })
    }

    /// A source-of-truth agency writes a citizen's fields (SPEC §2 `PUT /v1/citizens/{id}`),
    /// as `source` (the agency's system), durably. An agency that may not write
    /// (`writes_not_allowed`), a malformed citizen id or an invalid field is refused and the
    /// refusal audited (`access.denied`, action `record.write`). Returns the record version.
    pub fn write_as_agency(
        &self,
        agency: &str,
        citizen_id: &str,
        fields: serde_json::Map<String, Value>,
        source: &SafeId,
        now: Timestamp,
    ) -> Result<u64, VaultError> {
        let citizen = CitizenId::parse(citizen_id)
            .ok()
            .map(|c| self.keyring().blind(&c));
        let attempt = refusal::Attempt {
            action: "record.write",
            grant: None,
            citizen: citizen.as_ref(),
        };
        let checked = (|| {
            if !self.policy().agency(agency).is_some_and(|a| a.writes) {
                return Err(VaultError::WritesNotAllowed);
            }
            let write = self.validate_write(CitizenId::parse(citizen_id)?, fields)?;
            Ok((write, SafeId::parse(agency)?))
        })();
        let (write, agency_id) = match checked {
            Ok(v) => v,
            Err(e) => return self.refused(refusal::Caller::Agency(agency), attempt, e, now),
        };
        let actor = Actor::official(source.clone(), agency_id, None);
        let outcome = self.write_records(&[write], &actor, now)?;
        self.flush()?;
        Ok(outcome.first().map_or(0, |o| o.version()))
    }

    /// Writes many citizens' fields in one atomic store batch (durable after `flush`).
    /// Unchanged values are detected by opening the stored ciphertext, so writing the same
    /// data twice changes nothing, not even the record version.
    pub fn write_records(
        &self,
        writes: &[RecordWrite],
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Vec<WriteOutcome>, VaultError> {
        let _serial = self.lock_writes()?;
        self.commit_writes(self.prepare_writes(writes)?, actor, now)
    }

    /// Takes the record write lock: record writes (`write_records`, `erase`, key rotation's
    /// batches) wait until the guard is dropped. A pipeline that prepares and commits
    /// separately (an import beside a serving vault) holds it throughout.
    /// With a store that several processes share, the store's lock holds off theirs too.
    pub fn lock_writes(&self) -> Result<WritesLock<'_>, VaultError> {
        let local = self
            .write_lock
            .lock()
            .map_err(|_| VaultError::StoreUnavailable("write lock poisoned".into()))?;
        Ok(WritesLock {
            _shared: self.store.lock_records()?,
            _local: local,
        })
    }

    /// Seals a batch against the records currently stored; nothing is written yet. Callers
    /// that prepare and commit separately (the import pipeline) must be the only writer:
    /// beside other writers, they hold `lock_writes` from the first prepare to the last
    /// commit.
    pub fn prepare_writes(&self, writes: &[RecordWrite]) -> Result<PreparedWrites, VaultError> {
        let blinds: Vec<BlindId> = writes
            .iter()
            .map(|w| self.keyring().blind(&w.citizen))
            .collect();
        // Look the batch up in key order: neighbouring lookups share the store's pages.
        let mut sorted: Vec<BlindId> = blinds.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let mut pending: HashMap<BlindId, SealedRecord> = HashMap::with_capacity(sorted.len());
        for b in &sorted {
            if let Some(r) = self.store.citizen(b)? {
                pending.insert(*b, r);
            }
        }
        let mut order: Vec<BlindId> = Vec::new();
        let mut in_order: std::collections::HashSet<BlindId> = std::collections::HashSet::new();
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut written = Vec::new();
        for (w, &blind) in writes.iter().zip(&blinds) {
            let existing = pending.remove(&blind);
            let (record, outcome) = match existing {
                None => {
                    let r = self.seal_new(&blind, &w.fields)?;
                    let v = r.record_version;
                    (r, WriteOutcome::Created(v))
                }
                Some(r) => self.seal_update(&blind, r, &w.fields)?,
            };
            if !matches!(outcome, WriteOutcome::Unchanged(_)) {
                if in_order.insert(blind) {
                    order.push(blind);
                }
                let changed = w
                    .fields
                    .iter()
                    .filter(|(n, _)| {
                        record
                            .fields
                            .get(n)
                            .is_some_and(|f| f.version == record.record_version)
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                written.push((self.pseudonym(&record), changed));
            }
            pending.insert(blind, record);
            outcomes.push(outcome);
        }
        // In key order, as the lookups above: the store's index lookups and inserts for the
        // batch then walk its pages in order instead of at random.
        order.sort_unstable();
        let batch = order
            .into_iter()
            .filter_map(|b| pending.remove(&b).map(|r| (b, EncodedRecord::new(&r))))
            .collect();
        Ok(PreparedWrites {
            batch,
            outcomes,
            written,
        })
    }

    /// Audits then stores a prepared batch: one durable `record.written` entry per created or
    /// changed citizen first (field names only), then the records in one atomic store batch
    /// (durable after `flush`). If the audit append fails, nothing is stored.
    pub fn commit_writes(
        &self,
        prepared: PreparedWrites,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Vec<WriteOutcome>, VaultError> {
        self.store_writes(self.audit_writes(prepared, actor, now)?)
    }

    /// The first half of `commit_writes`: queues the batch's `record.written` entries and
    /// returns at once, so a pipeline can queue the next batch's entries while this one is
    /// stored. Batches must go to `store_writes` in the order they were audited.
    pub fn audit_writes(
        &self,
        prepared: PreparedWrites,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<AuditedWrites, VaultError> {
        let mut prepared = prepared;
        // Nothing changed: no entry and nothing to store (a ready ticket of its own).
        let ticket = if prepared.batch.is_empty() {
            crate::audit::Ticket::ready(Ok(Vec::new()))
        } else {
            let ctx = self.entry_context(now);
            let entries = prepared
                .written
                .iter()
                .map(|(p, fields)| AuditEntry::record_written(&ctx, actor, p, fields))
                .collect::<Result<Vec<_>, _>>()?;
            if self.store.commits_with_log() {
                // The records and their entries in one transaction: nothing left to store.
                let batch = std::mem::take(&mut prepared.batch);
                self.store
                    .write_audited(&[Write::Records(&batch)], entries, &*self.audit)?
            } else {
                self.audit.submit(entries)
            }
        };
        Ok(Audited::new(ticket, prepared))
    }

    /// The second half of `commit_writes`: waits until the batch's entries are durable, then
    /// stores its records in one atomic store batch (durable after `flush`). If the audit
    /// append failed, nothing is stored.
    pub fn store_writes(&self, audited: AuditedWrites) -> Result<Vec<WriteOutcome>, VaultError> {
        let (ticket, after) = audited.into_parts();
        let (_, prepared) = after.open(ticket.wait())?;
        if !prepared.batch.is_empty() {
            self.store.put_encoded(&prepared.batch)?;
        }
        Ok(prepared.outcomes)
    }

    fn seal_new(
        &self,
        blind: &BlindId,
        fields: &[(FieldName, Value)],
    ) -> Result<SealedRecord, VaultError> {
        let dek = crypto::generate_dek()?;
        let dek_version = 1;
        let mut audit_salt = [0u8; 32];
        crypto::random_bytes(&mut audit_salt)?;
        let sealer = FieldSealer::new(&dek, *blind, dek_version);
        let mut sealed = BTreeMap::new();
        for (name, value) in fields {
            let pt = encode_value(value)?;
            sealed.insert(
                name.clone(),
                SealedField {
                    version: 1,
                    envelope: sealer.seal(name, 1, &pt)?,
                },
            );
        }
        Ok(SealedRecord {
            dek_version,
            wrapped_dek: self.keyring().wrap_dek(blind, dek_version, &dek)?,
            audit_salt,
            record_version: 1,
            fields: sealed,
        })
    }

    fn seal_update(
        &self,
        blind: &BlindId,
        mut record: SealedRecord,
        fields: &[(FieldName, Value)],
    ) -> Result<(SealedRecord, WriteOutcome), VaultError> {
        let dek = self
            .keyring()
            .unwrap_dek(blind, record.dek_version, &record.wrapped_dek)?;
        let sealer = FieldSealer::new(&dek, *blind, record.dek_version);
        let mut changed = Vec::new();
        for (name, value) in fields {
            let pt = encode_value(value)?;
            let same = match record.fields.get(name) {
                Some(f) => sealer.open(name, f.version, &f.envelope)?.expose() == pt.as_slice(),
                None => false,
            };
            if !same {
                changed.push((name, pt));
            }
        }
        if changed.is_empty() {
            let v = record.record_version;
            return Ok((record, WriteOutcome::Unchanged(v)));
        }
        let version = record
            .record_version
            .checked_add(1)
            .ok_or_else(|| VaultError::StoreCorrupt("record version overflow".into()))?;
        for (name, pt) in changed {
            record.fields.insert(
                name.clone(),
                SealedField {
                    version,
                    envelope: sealer.seal(name, version, &pt)?,
                },
            );
        }
        record.record_version = version;
        Ok((record, WriteOutcome::Updated(version)))
    }

    /// Whether the store's background flush is keeping up (false after a failed flush until
    /// one succeeds; releases are refused meanwhile).
    pub fn store_flush_ok(&self) -> bool {
        self.flusher.check().is_ok()
    }

    /// Makes every write so far durable (and moves the spent-use mark to the log's end).
    pub fn flush(&self) -> Result<(), VaultError> {
        self.marker.mark(&self.store, self.audit.as_ref(), false)
    }

    /// Opens a citizen's whole record **without writing an audit entry**: for operators'
    /// checks and tests only. Never expose it through the API; citizens use `my_record` and
    /// agencies `release`, which audit before anything is decrypted.
    pub(crate) fn read_record_unaudited(&self, id: &CitizenId) -> Result<Record, VaultError> {
        let blind = self.keyring().blind(id);
        let record = self
            .store
            .citizen(&blind)?
            .ok_or(VaultError::CitizenNotFound)?;
        let dek = self
            .keyring()
            .unwrap_dek(&blind, record.dek_version, &record.wrapped_dek)?;
        let sealer = FieldSealer::new(&dek, blind, record.dek_version);
        let mut fields = BTreeMap::new();
        for (name, f) in &record.fields {
            let pt = sealer.open(name, f.version, &f.envelope)?;
            let value: Value = serde_json::from_slice(pt.expose())
                .map_err(|_| VaultError::StoreCorrupt("sealed value is not JSON".into()))?;
            fields.insert(name.to_string(), value);
        }
        Ok(Record {
            version: record.record_version,
            fields,
            disputed: Vec::new(),
        })
    }

    /// Crypto-shredding: destroys the citizen's wrapped DEK, audit salt, sealed fields and
    /// index row. Nothing can open the data afterwards; a later import starts a fresh DEK.
    /// The `record.erased` entry is appended (under the pseudonym the citizen had) before the
    /// salt is destroyed; afterwards no entry can be linked to the citizen.
    pub fn erase(&self, id: &CitizenId, actor: &Actor, now: Timestamp) -> Result<(), VaultError> {
        self.erase_blind(&self.keyring().blind(id), actor, now)
    }

    /// `erase` of the citizen with this blind id (a completed erasure request knows its
    /// citizen by blind id only).
    pub(crate) fn erase_blind(
        &self,
        blind: &BlindId,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), VaultError> {
        let _serial = self.lock_writes()?;
        let blind = *blind;
        let record = self
            .store
            .citizen(&blind)?
            .ok_or(VaultError::CitizenNotFound)?;
        // Grants and standing consents go with the citizen: a citizen imported again later
        // (the same blind id) starts without them. Each live grant is revoked with its own
        // entry first.
        let subject = self.pseudonym(&record);
        for g in self.store.grants_of_citizen(&blind)? {
            self.revoke_live(&g.id, actor, &subject, "citizen_erased", now)?;
        }
        let consents = self.store.consents_of_citizen(&blind)?;
        let mut writes: Vec<Write<'_>> = consents
            .iter()
            .map(|c| Write::ForgetConsent(&blind, &c.id))
            .collect();
        writes.push(Write::Erase(&blind));
        // The record, its consents and cases go with the `record.erased` entry (one
        // transaction where the store shares the log's database; elsewhere the entry first).
        let entry = AuditEntry::record_erased(&self.entry_context(now), actor, &subject)?;
        self.store
            .write_audited(&writes, vec![entry], &*self.audit)?
            .wait()?;
        Ok(())
    }

    /// Adds a new token signing key (audited `key.rotated`, code `token_vN`): new tokens are
    /// signed with it; tokens signed with older keys keep verifying until they are retired.
    pub fn rotate_token_key(
        &self,
        root: &dyn RootKeySource,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<u32, VaultError> {
        let root = root.load()?;
        let record = self
            .store
            .keyring()?
            .ok_or(VaultError::VaultNotInitialized)?;
        let next = Keyring::rotate_token_key(&*root, &record)?;
        let version = next.token_keys.keys().last().copied().unwrap_or(1);
        self.audit.append(vec![AuditEntry::key_rotated(
            &self.entry_context(now),
            actor,
            "token",
            version,
        )?])?;
        self.store.put_keyring(&next)?;
        self.reload_keys(&*root, &next)?;
        Ok(version)
    }

    /// Retires every token key but the newest (audited `key.rotated`, code
    /// `token_retired_vN`): tokens they signed stop verifying at once.
    pub fn retire_old_token_keys(
        &self,
        root: &dyn RootKeySource,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<usize, VaultError> {
        let root = root.load()?;
        let record = self
            .store
            .keyring()?
            .ok_or(VaultError::VaultNotInitialized)?;
        let retired = record.token_keys.len().saturating_sub(1);
        let next = Keyring::retire_old_token_keys(&record);
        let newest = next.token_keys.keys().last().copied().unwrap_or(1);
        self.audit.append(vec![AuditEntry::key_rotated(
            &self.entry_context(now),
            actor,
            "token_retired",
            newest,
        )?])?;
        self.store.put_keyring(&next)?;
        self.reload_keys(&*root, &next)?;
        Ok(retired)
    }

    fn reload_keys(
        &self,
        root: &dyn crate::keyring::Root,
        record: &crate::keyring::KeyringRecord,
    ) -> Result<(), VaultError> {
        let keyring = Arc::new(Keyring::open(root, record)?);
        let tokens = keyring.token_keys(self.token_keys().origin())?;
        self.keyring.set(keyring);
        self.tokens.set(Arc::new(tokens));
        self.token_cache.clear();
        Ok(())
    }

    /// Rotates the KEK: a new version becomes current, every DEK is re-wrapped under it, then
    /// older KEKs are retired. Resumable: if a previous run was interrupted, this run finishes
    /// it instead of starting another. `progress` may stop the run after any batch.
    pub fn rotate_keys(
        &self,
        root: &dyn RootKeySource,
        batch: usize,
        actor: &Actor,
        now: Timestamp,
        progress: &mut dyn FnMut(RotationProgress) -> ControlFlow<()>,
    ) -> Result<RotationReport, VaultError> {
        let root = root.load()?;
        let mut record = self
            .store
            .keyring()?
            .ok_or(VaultError::VaultNotInitialized)?;
        let resumed = record.rotating_from.is_some();
        if !resumed {
            record = Keyring::begin_rotation(&*root, &record)?;
            self.store.put_keyring(&record)?;
        }
        // Under the write lock: a writer seals and stores under it, so every record stored
        // after this point is wrapped under the new KEK, and every record stored before it
        // is visited below (each batch also takes the lock, so none is re-wrapped from a
        // stale copy while a writer changes it).
        {
            let _serial = self.lock_writes()?;
            self.keyring.set(Arc::new(Keyring::open(&*root, &record)?));
        }
        let from = record.rotating_from.unwrap_or(record.current);
        let to = record.current;
        let total = self.store.citizen_count()?;
        let (mut visited, mut rewrapped) = (0u64, 0u64);
        let mut cursor: Option<BlindId> = None;
        loop {
            let _serial = self.lock_writes()?;
            let rows = self.store.citizens_after(cursor.as_ref(), batch.max(1))?;
            let Some((last, _)) = rows.last() else { break };
            cursor = Some(*last);
            visited += rows.len() as u64;
            let mut changed = Vec::new();
            for (blind, mut rec) in rows {
                if crypto::wrapped_dek_kek_version(&rec.wrapped_dek)? == to {
                    continue;
                }
                let dek = self
                    .keyring()
                    .unwrap_dek(&blind, rec.dek_version, &rec.wrapped_dek)?;
                rec.wrapped_dek = self.keyring().wrap_dek(&blind, rec.dek_version, &dek)?;
                changed.push((blind, rec));
            }
            if !changed.is_empty() {
                rewrapped += changed.len() as u64;
                self.store.put_citizens(&changed)?;
                self.store.flush()?;
            }
            drop(_serial);
            if progress(RotationProgress { visited, total }).is_break() {
                return Ok(RotationReport {
                    from,
                    to,
                    rewrapped,
                    resumed,
                    completed: false,
                });
            }
        }
        let entry = AuditEntry::key_rotated(&self.entry_context(now), actor, "kek", to)?;
        self.audit.append(vec![entry])?;
        let done = Keyring::finish_rotation(&record);
        self.store.put_keyring(&done)?;
        self.keyring.set(Arc::new(Keyring::open(&*root, &done)?));
        Ok(RotationReport {
            from,
            to,
            rewrapped,
            resumed,
            completed: true,
        })
    }
}

fn encode_value(v: &Value) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    serde_json::to_vec(v)
        .map(Zeroizing::new)
        .map_err(|_| VaultError::StoreCorrupt("value cannot be encoded".into()))
}

/// A field name safe to echo in an error: catalog syntax only, else a placeholder.
#[cfg(test)]
mod tests;
