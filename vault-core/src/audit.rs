//! The tamper-evident audit log (SPEC §4): entries, the RFC 9162 Merkle tree, signed C2SP
//! checkpoints, the durable segment log with group commit, recovery and query indexes.
//! Everything the vault does to a citizen's data is appended here, durably, before it acts.

pub mod entry;
pub mod export;
pub mod file;
pub mod index;
pub mod merkle;
pub mod note;
pub mod segment;
pub mod ticket;
pub mod tree;

use std::path::PathBuf;
use std::sync::Arc;

/// Identifiers safe to record live in `id`; named here too, where entries use them.
pub use crate::id::SafeId;
pub use entry::{Access, Actor, AuditEntry, EntryContext, Event, Outcome, Pseudonym, parse_time};
pub use index::{AuditQuery, Page};
pub use merkle::Hash;
pub use note::{Checkpoint, LogSigner, LogVerifier};
pub use segment::{BATCH_SIZE_BUCKETS, SYNC_MICROS_BUCKETS, SegmentLog, VerifyReport, WriterStats};
pub use ticket::{Appended, Durable, Ticket};

use crate::error::VaultError;

/// An append-only, verifiable audit log. `append` returns only once the entries are durable
/// (and signed into a checkpoint, whose own file is synced within a second); on any failure it
/// returns `AuditUnavailable` and acknowledges nothing.
pub trait AuditLog: Send + Sync {
    /// Appends entries (all or none) and waits until they are durable.
    fn append(&self, entries: Vec<AuditEntry>) -> Result<Vec<Appended>, VaultError> {
        self.submit(entries).wait().map(Durable::into_appended)
    }
    /// Queues entries (all or none) and returns at once: the ticket resolves when they are
    /// durable, or to `AuditUnavailable`.
    fn submit(&self, entries: Vec<AuditEntry>) -> Ticket;
    /// Queues entries in one transaction with a store's `write` (a store and a log in one
    /// database) and blocks until that transaction has committed or failed: both land or
    /// neither. `Stale` when the write's comparison failed (nothing written, nothing queued:
    /// read again and retry). The ticket resolves as `submit`'s does. A log that shares no
    /// database with a store has no such transaction and fails.
    fn submit_with(
        &self,
        entries: Vec<AuditEntry>,
        write: BoundWrite,
    ) -> Result<Ticket, BoundRefusal> {
        let _ = (entries, write);
        Err(BoundRefusal::Failed(VaultError::AuditUnavailable))
    }
    /// Number of durable entries.
    fn size(&self) -> u64;
    /// Whether appends are currently accepted.
    fn is_healthy(&self) -> bool;
    /// Like `is_healthy`, but after a failure re-checks the storage (without appending).
    fn probe(&self) -> bool {
        self.is_healthy()
    }
    /// The canonical bytes of an entry.
    fn entry(&self, index: u64) -> Result<Vec<u8>, VaultError>;
    /// The leaf hash of an entry.
    fn leaf_hash(&self, index: u64) -> Result<Hash, VaultError>;
    /// Entries `from..to` with their leaf hashes, each checked against its leaf hash (an
    /// export reads them in a few large reads instead of one entry at a time).
    fn entries(&self, from: u64, to: u64) -> Result<Vec<(Vec<u8>, Hash)>, VaultError> {
        (from..to)
            .map(|i| Ok((self.entry(i)?, self.leaf_hash(i)?)))
            .collect()
    }
    /// Inclusion proof of `index` in the tree of `size`.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, VaultError>;
    /// Consistency proof between two sizes.
    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, VaultError>;
    /// The latest signed checkpoint.
    fn latest_checkpoint(&self) -> Result<String, VaultError>;
    /// The signed checkpoint for exactly `size`.
    fn checkpoint_at(&self, size: u64) -> Result<Option<String>, VaultError>;
    /// The log's verifier key.
    fn verifier(&self) -> LogVerifier;
    /// A page of entry indexes matching a query.
    fn query(
        &self,
        q: &AuditQuery,
        cursor: Option<u64>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Page, VaultError>;
    /// Re-hashes everything and checks every checkpoint.
    fn verify_all(&self) -> Result<VerifyReport, VaultError>;
    /// Writer statistics, for metrics (none for logs that keep none).
    fn stats(&self) -> Option<&WriterStats> {
        None
    }
    /// Answers everything queued, syncs the checkpoints and stops accepting appends.
    fn shutdown(&self) {}
    /// The byte lengths of the log's files that hold exactly the log up to `size` (a
    /// backup's copy); `None` for a log that is not kept in those files.
    fn file_lengths(&self, size: u64) -> Result<Option<[u64; 3]>, VaultError> {
        let _ = size;
        Ok(None)
    }
}

impl AuditLog for SegmentLog {
    fn submit(&self, entries: Vec<AuditEntry>) -> Ticket {
        SegmentLog::submit(self, entries)
    }
    fn size(&self) -> u64 {
        SegmentLog::size(self)
    }
    fn is_healthy(&self) -> bool {
        SegmentLog::is_healthy(self)
    }
    fn probe(&self) -> bool {
        SegmentLog::probe(self)
    }
    fn entry(&self, index: u64) -> Result<Vec<u8>, VaultError> {
        SegmentLog::entry(self, index)
    }
    fn leaf_hash(&self, index: u64) -> Result<Hash, VaultError> {
        SegmentLog::leaf_hash(self, index)
    }
    fn entries(&self, from: u64, to: u64) -> Result<Vec<(Vec<u8>, Hash)>, VaultError> {
        SegmentLog::entries(self, from, to)
    }
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, VaultError> {
        SegmentLog::inclusion_proof(self, index, size)
    }
    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, VaultError> {
        SegmentLog::consistency_proof(self, from, to)
    }
    fn latest_checkpoint(&self) -> Result<String, VaultError> {
        SegmentLog::latest_checkpoint(self)
    }
    fn checkpoint_at(&self, size: u64) -> Result<Option<String>, VaultError> {
        SegmentLog::checkpoint_at(self, size)
    }
    fn verifier(&self) -> LogVerifier {
        SegmentLog::verifier(self)
    }
    fn query(
        &self,
        q: &AuditQuery,
        cursor: Option<u64>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Page, VaultError> {
        SegmentLog::query(self, q, cursor, limit, newest_first)
    }
    fn verify_all(&self) -> Result<VerifyReport, VaultError> {
        SegmentLog::verify_all(self)
    }
    fn stats(&self) -> Option<&WriterStats> {
        Some(SegmentLog::stats(self))
    }
    fn file_lengths(&self, size: u64) -> Result<Option<[u64; 3]>, VaultError> {
        SegmentLog::file_lengths(self, size).map(Some)
    }
    fn shutdown(&self) {
        SegmentLog::shutdown(self);
    }
}

/// A store's write that must commit in one transaction with the entries submitted with it
/// (`AuditLog::submit_with`): made by a store that shares its database with the log, and
/// carried by the log without the core looking inside.
pub struct BoundWrite(Box<dyn std::any::Any + Send>);

impl BoundWrite {
    /// Wraps a backend's write.
    pub fn new<W: std::any::Any + Send>(write: W) -> Self {
        Self(Box::new(write))
    }

    /// The backend's write, if it is a `W`.
    pub fn take<W: std::any::Any + Send>(self) -> Option<W> {
        self.0.downcast::<W>().ok().map(|b| *b)
    }
}

impl std::fmt::Debug for BoundWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoundWrite")
    }
}

/// Why `AuditLog::submit_with` queued nothing.
#[derive(Debug)]
pub enum BoundRefusal {
    /// The write's comparison failed: another writer changed the row first.
    Stale,
    /// The transaction failed (the log or the database is unavailable).
    Failed(VaultError),
}

/// How a vault gets its audit log once the keyring (and so the signing key) is open.
pub trait AuditOpener {
    /// Opens the log with this signer.
    fn open(&self, signer: LogSigner) -> Result<Arc<dyn AuditLog>, VaultError>;
}

/// A `SegmentLog` in a directory, locked against a second process.
#[derive(Debug, Clone)]
pub struct SegmentLogAt(pub PathBuf);

impl AuditOpener for SegmentLogAt {
    fn open(&self, signer: LogSigner) -> Result<Arc<dyn AuditLog>, VaultError> {
        std::fs::create_dir_all(&self.0)
            .map_err(|e| VaultError::StoreUnavailable(format!("audit directory: {e}")))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.0.join("LOCK"))
            .map_err(|e| VaultError::StoreUnavailable(format!("audit lock: {e}")))?;
        lock.try_lock().map_err(|_| {
            VaultError::StoreUnavailable("the audit log is in use by another process".into())
        })?;
        let log = SegmentLog::open(&self.0, signer)?;
        log.hold_lock(lock);
        Ok(Arc::new(log))
    }
}

/// A `SegmentLog` in a directory whose files fail on demand (`Faults`): the opener that
/// fault-injection tests of the vault and the server use. No directory lock.
#[derive(Debug, Clone)]
pub struct FaultyLogAt(pub PathBuf, pub Arc<file::Faults>);

impl AuditOpener for FaultyLogAt {
    fn open(&self, signer: LogSigner) -> Result<Arc<dyn AuditLog>, VaultError> {
        let faults = Arc::clone(&self.1);
        Ok(Arc::new(SegmentLog::open_with(
            &self.0,
            signer,
            &move |p| {
                Ok(Box::new(file::FaultyFile::new(
                    Box::new(file::FsFile::open(p)?),
                    Arc::clone(&faults),
                )) as Box<dyn file::LogFile>)
            },
        )?))
    }
}
