//! `SegmentLog`: the audit log on append-only files with `fdatasync` and group commit.
//!
//! Files in the log directory:
//! - `entries.log`: `len u32 | crc32 u32 | canonical entry` per entry (synced per batch);
//! - `leaves.idx`: `offset u64 | leaf hash` per entry (derived; verified and rebuilt on open);
//! - `checkpoints.log`: `size u64 | len u32 | crc32 u32 | signed note` (synced per batch).
//!
//! One writer thread owns the files. A caller hands over entries and blocks until they are
//! durable; then it gets `(index, leaf hash)`. The writer takes everything queued, writes,
//! syncs the entries once, signs one checkpoint for the new size and answers all; the
//! checkpoint file is synced at most a second later (one sync per batch on the reply path,
//! like the raw ceiling). Entries past the last durable checkpoint are kept on recovery if
//! whole, and a fresh checkpoint is signed for them. Any error answers every waiting caller with `AuditUnavailable`, rolls the files back
//! to the last good length and refuses appends until a re-check passes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::entry::{AuditEntry, EntryView};
use super::file::{FsFile, LogFile};
use super::index::{AuditIndex, AuditQuery, Page, matches};
use super::merkle::{self, Hash, ProofError};
use super::note::{Checkpoint, LogSigner, LogVerifier};
use super::ticket::{self, Answer, Appended, Durable, Ticket};
use super::tree::{ChunkedTree, LeafReader};
use crate::error::VaultError;

const ENTRY_HEADER: u64 = 8;
/// The verifier key string, published beside the log for read-only readers.
const VERIFIER_FILE: &str = "log.pub";
const LEAF_RECORD: u64 = 40;
const CHECKPOINT_HEADER: u64 = 16;
/// Entries taken into one group commit at most.
const MAX_BATCH: usize = 16_384;
/// Longest time a signed checkpoint waits for its file to be synced.
const CHECKPOINT_SYNC: Duration = Duration::from_secs(1);
/// The indexer waits this long after a hand-over before it takes what is queued, so it
/// indexes in batches of a few hundred entries under load (one write per posting file per
/// batch) instead of waking for each of the writer's small batches. Queries scan the
/// not-yet-indexed tail, so the delay is never visible in an answer.
const INDEX_COALESCE: Duration = Duration::from_millis(10);
/// Hand-overs queued for the indexer (a full queue drops them; the indexer then reads the
/// entries back from the log files).
const INDEX_QUEUE: usize = 64;

/// Statistics of the group-commit writer, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Batches committed.
    pub batches: AtomicU64,
    /// Entries committed.
    pub entries: AtomicU64,
    /// Batches that failed.
    pub failures: AtomicU64,
    /// Committed batches by size (entries): counts per bucket of `BATCH_SIZE_BUCKETS`, the
    /// last slot for larger batches.
    pub batch_sizes: [AtomicU64; BATCH_SIZE_BUCKETS.len() + 1],
    /// Commit (write + fdatasync) latency: counts per bucket of `SYNC_MICROS_BUCKETS`, the
    /// last slot for slower commits.
    pub sync_micros: [AtomicU64; SYNC_MICROS_BUCKETS.len() + 1],
    /// Sum of commit latencies, microseconds.
    pub sync_micros_sum: AtomicU64,
}

/// Upper bounds (inclusive) of the batch-size histogram.
pub const BATCH_SIZE_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/// Upper bounds (inclusive) of the commit-latency histogram, microseconds.
pub const SYNC_MICROS_BUCKETS: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

fn bucket_of(bounds: &[u64], v: u64) -> usize {
    bounds.iter().position(|&b| v <= b).unwrap_or(bounds.len())
}

impl WriterStats {
    pub(crate) fn record_batch(&self, entries: u64, micros: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.entries.fetch_add(entries, Ordering::Relaxed);
        if let Some(c) = self
            .batch_sizes
            .get(bucket_of(&BATCH_SIZE_BUCKETS, entries))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = self
            .sync_micros
            .get(bucket_of(&SYNC_MICROS_BUCKETS, micros))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sync_micros_sum.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Opens the three files; tests wrap them to inject faults.
pub type FileOpener = dyn Fn(&Path) -> std::io::Result<Box<dyn LogFile>> + Send + Sync;

fn io_unavailable(what: &str, e: &std::io::Error) -> VaultError {
    VaultError::StoreUnavailable(format!("audit {what}: {e}"))
}

fn corrupt(index: u64, reason: impl Into<String>) -> VaultError {
    VaultError::AuditCorrupt {
        index,
        reason: reason.into(),
    }
}

fn proof_err(e: ProofError) -> VaultError {
    match e {
        ProofError::OutOfRange => VaultError::AuditNotFound,
        other => VaultError::StoreUnavailable(format!("audit tree: {other}")),
    }
}

struct Files {
    entries: Box<dyn LogFile>,
    leaves: Box<dyn LogFile>,
    checkpoints: Box<dyn LogFile>,
}

impl LeafReader for Files {
    fn leaves(&self, start: u64, count: u64) -> Result<Vec<Hash>, ProofError> {
        let mut buf =
            vec![0u8; usize::try_from(count * LEAF_RECORD).map_err(|_| ProofError::OutOfRange)?];
        self.leaves
            .read_at(start * LEAF_RECORD, &mut buf)
            .map_err(|e| ProofError::Unavailable(e.to_string()))?;
        Ok(buf
            .chunks_exact(LEAF_RECORD as usize)
            .map(|r| {
                let mut h = [0u8; 32];
                h.copy_from_slice(&r[8..]);
                h
            })
            .collect())
    }
}

impl Files {
    fn leaf_record(&self, index: u64) -> Result<(u64, Hash), VaultError> {
        let mut buf = [0u8; LEAF_RECORD as usize];
        self.leaves
            .read_at(index * LEAF_RECORD, &mut buf)
            .map_err(|e| io_unavailable("leaf index", &e))?;
        let mut off = [0u8; 8];
        off.copy_from_slice(&buf[..8]);
        let mut h = [0u8; 32];
        h.copy_from_slice(&buf[8..]);
        Ok((u64::from_be_bytes(off), h))
    }

    /// The leaf records of `index` and `index + 1` in one read: the entry's offset, its leaf
    /// hash, and where the next entry starts (so the entry's record length).
    fn leaf_pair(&self, index: u64) -> Result<(u64, Hash, u64), VaultError> {
        let mut buf = [0u8; 2 * LEAF_RECORD as usize];
        self.leaves
            .read_at(index * LEAF_RECORD, &mut buf)
            .map_err(|e| io_unavailable("leaf index", &e))?;
        let (a, b) = buf.split_at(LEAF_RECORD as usize);
        let at = |r: &[u8]| {
            let mut off = [0u8; 8];
            off.copy_from_slice(r.get(..8).unwrap_or(&[0; 8]));
            u64::from_be_bytes(off)
        };
        let mut h = [0u8; 32];
        h.copy_from_slice(a.get(8..).unwrap_or(&[0; 32]));
        Ok((at(a), h, at(b)))
    }

    /// Reads a whole entry record of `record_len` bytes (header and body) at `offset` in one
    /// read; `None` if its header does not give that length or its CRC does not match.
    fn entry_record(&self, offset: u64, record_len: u64) -> Result<Option<Vec<u8>>, VaultError> {
        if record_len <= ENTRY_HEADER
            || record_len - ENTRY_HEADER > super::entry::MAX_ENTRY_BYTES as u64
        {
            return Ok(None);
        }
        let mut buf = vec![0u8; record_len as usize];
        self.entries
            .read_at(offset, &mut buf)
            .map_err(|e| io_unavailable("entries", &e))?;
        let len = u64::from(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
        let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if len + ENTRY_HEADER != record_len {
            return Ok(None);
        }
        buf.drain(..ENTRY_HEADER as usize);
        Ok((crc32fast::hash(&buf) == crc).then_some(buf))
    }

    /// Reads the entry record at `offset` if it is whole and its CRC matches.
    fn entry_at(&self, offset: u64, file_len: u64) -> Result<Option<Vec<u8>>, VaultError> {
        if offset + ENTRY_HEADER > file_len {
            return Ok(None);
        }
        let mut head = [0u8; 8];
        self.entries
            .read_at(offset, &mut head)
            .map_err(|e| io_unavailable("entries", &e))?;
        let len = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        // An entry is never empty: a zero header (length 0, CRC of nothing = 0) is a tail a
        // crash left zero-filled (the file grew, its data never reached the disk).
        if len == 0
            || len as usize > super::entry::MAX_ENTRY_BYTES
            || offset + ENTRY_HEADER + len > file_len
        {
            return Ok(None);
        }
        let mut body = vec![0u8; len as usize];
        self.entries
            .read_at(offset + ENTRY_HEADER, &mut body)
            .map_err(|e| io_unavailable("entries", &e))?;
        Ok((crc32fast::hash(&body) == crc).then_some(body))
    }
}

/// Every how many checkpoint records the index keeps one position.
const CHECKPOINT_STRIDE: u64 = 64;

/// Where the checkpoint records sit, sparsely: the (size, offset) of every
/// `CHECKPOINT_STRIDE`-th record and the end of the last one. A lookup by size starts at the
/// nearest kept position below it and reads record headers forward (at most a stride's worth,
/// ~15 KB through the page cache). There is one record per group-commit batch, a few million
/// a day under load: a position for each in memory (24 bytes) was the server's largest
/// unbounded allocation, growing ~6 bytes a request in the soak runs; this holds 16 bytes per
/// 64 records.
#[derive(Debug, Default)]
struct CheckpointIndex {
    samples: Vec<(u64, u64)>,
    count: u64,
    /// File length the index covers: readers never look past it (the writer may be appending).
    end: u64,
}

impl CheckpointIndex {
    /// Records the next record (sizes never decrease; recovery refuses a log where they do).
    fn push(&mut self, size: u64, off: u64, len: u32) {
        if self.count.is_multiple_of(CHECKPOINT_STRIDE) {
            self.samples.push((size, off));
        }
        self.count += 1;
        self.end = off + CHECKPOINT_HEADER + u64::from(len);
    }

    /// Offset of the last kept record with a size below `size` (where a scan for it starts).
    fn scan_from(&self, size: u64) -> u64 {
        match self.samples.partition_point(|s| s.0 < size) {
            0 => 0,
            at => self.samples[at - 1].1,
        }
    }
}

/// A checkpoint record header: `(size, note length, CRC-32 of the note)`.
fn checkpoint_header(head: &[u8; CHECKPOINT_HEADER as usize]) -> (u64, u32, u32) {
    let [
        s0,
        s1,
        s2,
        s3,
        s4,
        s5,
        s6,
        s7,
        l0,
        l1,
        l2,
        l3,
        c0,
        c1,
        c2,
        c3,
    ] = *head;
    (
        u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        u32::from_be_bytes([l0, l1, l2, l3]),
        u32::from_be_bytes([c0, c1, c2, c3]),
    )
}

/// Checkpoint record headers `(size, offset, len)` from `from` up to `end`.
fn checkpoint_records(
    file: &dyn LogFile,
    from: u64,
    end: u64,
) -> impl Iterator<Item = Result<(u64, u64, u32), VaultError>> + '_ {
    let mut off = from;
    std::iter::from_fn(move || {
        if off + CHECKPOINT_HEADER > end {
            return None;
        }
        let mut head = [0u8; CHECKPOINT_HEADER as usize];
        if let Err(e) = file.read_at(off, &mut head) {
            off = end;
            return Some(Err(io_unavailable("checkpoints", &e)));
        }
        let (size, len, _) = checkpoint_header(&head);
        let at = off;
        off += CHECKPOINT_HEADER + u64::from(len);
        if len == 0 || off > end {
            off = end;
            return Some(Err(corrupt(size, "checkpoint record damaged")));
        }
        Some(Ok((size, at, len)))
    })
}

/// The record for exactly `size` (the latest, if there are several), scanning from `from`
/// (`CheckpointIndex::scan_from`) up to `end`.
fn find_checkpoint(
    file: &dyn LogFile,
    from: u64,
    end: u64,
    size: u64,
) -> Result<Option<(u64, u32)>, VaultError> {
    let mut found = None;
    for r in checkpoint_records(file, from, end) {
        let (s, off, len) = r?;
        if s > size {
            break;
        }
        if s == size {
            found = Some((off, len));
        }
    }
    Ok(found)
}

struct State {
    tree: ChunkedTree,
    /// Entries durable and signed into a checkpoint (what readers may see).
    size: u64,
    /// Checkpoint record offsets by tree size.
    checkpoints: CheckpointIndex,
    latest_note: String,
}

struct Inner {
    files: Files,
    /// `None` for a read-only view (no writer).
    signer: Option<LogSigner>,
    verifier: LogVerifier,
    state: RwLock<State>,
    healthy: AtomicBool,
    stats: WriterStats,
    index: AuditIndex,
}

/// Work for the indexer thread: entries `start..` and their bytes.
type IndexJob = (u64, Vec<Vec<u8>>);

/// Durable lengths, owned by the writer.
#[derive(Debug, Clone, Copy)]
struct Lengths {
    entries: u64,
    leaves: u64,
    checkpoints: u64,
}

struct Job {
    entries: Vec<AuditEntry>,
    reply: Answer,
}

/// The segment-file audit log.
pub struct SegmentLog {
    inner: Arc<Inner>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    indexer: Mutex<Option<JoinHandle<()>>>,
    lock: Mutex<Option<std::fs::File>>,
}

impl std::fmt::Debug for SegmentLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentLog")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`, recovering and checking it.
    pub fn open(dir: &Path, signer: LogSigner) -> Result<Self, VaultError> {
        Self::open_with(dir, signer, &|p| {
            FsFile::open(p).map(|f| Box::new(f) as Box<dyn LogFile>)
        })
    }

    /// Opens with a custom file opener (fault injection).
    pub fn open_with(
        dir: &Path,
        signer: LogSigner,
        opener: &FileOpener,
    ) -> Result<Self, VaultError> {
        std::fs::create_dir_all(dir).map_err(|e| io_unavailable("directory", &e))?;
        let open = |name: &str| -> Result<Box<dyn LogFile>, VaultError> {
            let p: PathBuf = dir.join(name);
            opener(&p).map_err(|e| io_unavailable(name, &e))
        };
        let files = Files {
            entries: open("entries.log")?,
            leaves: open("leaves.idx")?,
            checkpoints: open("checkpoints.log")?,
        };
        let (state, lengths) = recover(&files, &signer)?;
        let index = AuditIndex::open(&dir.join("index"))?;
        let verifier = signer.verifier();
        publish_verifier(dir, &verifier)?;
        let inner = Arc::new(Inner {
            files,
            verifier,
            signer: Some(signer),
            state: RwLock::new(state),
            healthy: AtomicBool::new(true),
            stats: WriterStats::default(),
            index,
        });
        let (itx, irx) = mpsc::sync_channel::<IndexJob>(INDEX_QUEUE);
        let ix = Arc::clone(&inner);
        let indexer = std::thread::Builder::new()
            .name("audit-indexer".into())
            .spawn(move || indexer_loop(&ix, &irx))
            .map_err(|e| io_unavailable("indexer thread", &e))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let w = Arc::clone(&inner);
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer_loop(&w, &rx, lengths, &itx))
            .map_err(|e| io_unavailable("writer thread", &e))?;
        Ok(Self {
            inner,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            indexer: Mutex::new(Some(indexer)),
            lock: Mutex::new(None),
        })
    }

    /// A read-only view of the log in `dir` as its last whole, signed checkpoint left it,
    /// for readers beside a running writer (another process): takes no lock and writes
    /// nothing. The checkpoint must verify with `verifier` and its root must match the
    /// recorded leaves; entries past it (a batch being written) are not seen. Appends are
    /// refused (`AuditUnavailable`).
    pub fn open_read_only(dir: &Path, verifier: LogVerifier) -> Result<Self, VaultError> {
        let open = |name: &str| -> Result<Box<dyn LogFile>, VaultError> {
            FsFile::open_read_only(&dir.join(name))
                .map(|f| Box::new(f) as Box<dyn LogFile>)
                .map_err(|e| io_unavailable(name, &e))
        };
        let files = Files {
            entries: open("entries.log")?,
            leaves: open("leaves.idx")?,
            checkpoints: open("checkpoints.log")?,
        };
        let state = recovery::read_only_state(&files, &verifier)?;
        let inner = Arc::new(Inner {
            files,
            signer: None,
            verifier,
            state: RwLock::new(state),
            healthy: AtomicBool::new(false),
            stats: WriterStats::default(),
            index: AuditIndex::detached(),
        });
        Ok(Self {
            inner,
            tx: Mutex::new(None),
            writer: Mutex::new(None),
            indexer: Mutex::new(None),
            lock: Mutex::new(None),
        })
    }

    /// The verifier key string a log directory publishes (`log.pub`, written whenever the
    /// log is opened for writing): what a read-only view checks checkpoints against.
    pub fn published_verifier(dir: &Path) -> Result<LogVerifier, VaultError> {
        let path = dir.join(VERIFIER_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| VaultError::StoreUnavailable(format!("audit {}: {e}", path.display())))?;
        LogVerifier::parse(text.trim())
            .map_err(|e| VaultError::StoreUnavailable(format!("audit {}: {e}", path.display())))
    }

    /// Keeps a file lock (on the log directory) for as long as the log is open.
    pub fn hold_lock(&self, lock: std::fs::File) {
        if let Ok(mut l) = self.lock.lock() {
            *l = Some(lock);
        }
    }

    /// Appends entries and waits until they are durable (and signed into a checkpoint). All
    /// or none.
    pub fn append(&self, entries: Vec<AuditEntry>) -> Result<Vec<Appended>, VaultError> {
        self.submit(entries).wait().map(Durable::into_appended)
    }

    /// Queues entries for the writer and returns at once; the ticket resolves when they are
    /// durable (and signed into a checkpoint), all or none.
    pub fn submit(&self, entries: Vec<AuditEntry>) -> Ticket {
        if entries.is_empty() {
            return Ticket::ready(Ok(Vec::new()));
        }
        let (ticket, reply) = ticket::pair();
        if let Ok(tx) = self.tx.lock()
            && let Some(tx) = tx.as_ref()
        {
            // A failed send drops the job, whose answer then answers AuditUnavailable.
            let _ = tx.send(Job { entries, reply });
        }
        // Not sent (the log is shut down): `reply` dropped unanswered, the same answer.
        ticket
    }

    /// Whether appends are accepted, checked actively: after a failure the writer re-checks
    /// the files (rolls back a partial batch, syncs, compares lengths) without appending, so
    /// a log whose disk has space again reports ready before any request is let through.
    pub fn probe(&self) -> bool {
        if self.is_healthy() {
            return true;
        }
        let (ticket, reply) = ticket::pair();
        let sent = self
            .tx
            .lock()
            .ok()
            .and_then(|tx| {
                tx.as_ref().map(|tx| {
                    tx.send(Job {
                        entries: Vec::new(),
                        reply,
                    })
                })
            })
            .is_some_and(|r| r.is_ok());
        sent && ticket.wait().is_ok() && self.is_healthy()
    }

    /// Appends one entry.
    pub fn append_one(&self, entry: AuditEntry) -> Result<Appended, VaultError> {
        self.append(vec![entry])?
            .pop()
            .ok_or(VaultError::AuditUnavailable)
    }

    /// Stops the writer after it has answered everything queued.
    pub fn shutdown(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
        if let Some(h) = self.indexer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }

    /// Entries matching `q`, `limit` at most, after `cursor` (exclusive), oldest or newest
    /// first. Uses the most selective index the query names; never scans the log for a
    /// subject, official, agency, purpose or event query (only the not-yet-indexed tail).
    pub fn query(
        &self,
        q: &AuditQuery,
        cursor: Option<u64>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Page, VaultError> {
        let size = self.size();
        let indexed = self.inner.index.indexed_through().min(size);
        let limit = limit.clamp(1, 1000);
        let mut out = Vec::new();
        let consider = |i: u64, out: &mut Vec<u64>| -> Result<bool, VaultError> {
            if cursor.is_some_and(|c| if newest_first { i >= c } else { i <= c }) {
                return Ok(false);
            }
            let bytes = self.entry(i)?;
            if serde_json::from_slice::<EntryView>(&bytes).is_ok_and(|v| matches(q, &v)) {
                out.push(i);
            }
            Ok(out.len() >= limit)
        };
        let tail: Box<dyn Iterator<Item = u64>> = if newest_first {
            Box::new((indexed..size).rev())
        } else {
            Box::new(indexed..size)
        };
        match self.inner.index.candidates(q, cursor, newest_first) {
            Some(indexed_candidates) => {
                // Entries indexed after `indexed` was read are already covered by the tail.
                let order: Box<dyn Iterator<Item = u64>> = if newest_first {
                    Box::new(tail.chain(indexed_candidates.skip_while(move |&i| i >= indexed)))
                } else {
                    Box::new(
                        indexed_candidates
                            .take_while(move |&i| i < indexed)
                            .chain(tail),
                    )
                };
                for i in order {
                    if consider(i, &mut out)? {
                        break;
                    }
                }
            }
            None => {
                let all: Box<dyn Iterator<Item = u64>> = if newest_first {
                    Box::new((0..size).rev())
                } else {
                    Box::new(0..size)
                };
                for i in all {
                    if consider(i, &mut out)? {
                        break;
                    }
                }
            }
        }
        let next = (out.len() >= limit).then(|| out.last().copied()).flatten();
        Ok(Page { indexes: out, next })
    }

    /// Entries `[0, n)` are in the query index.
    pub fn indexed_through(&self) -> u64 {
        self.inner.index.indexed_through()
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, State>, VaultError> {
        self.inner
            .state
            .read()
            .map_err(|_| VaultError::AuditUnavailable)
    }

    /// Entries durable and signed into a checkpoint.
    pub fn size(&self) -> u64 {
        self.read().map(|s| s.size).unwrap_or(0)
    }

    /// Whether appends are accepted (false after a failure until a re-check passes).
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::SeqCst)
    }

    /// Writer statistics.
    pub fn stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// The verifier key of this log.
    pub fn verifier(&self) -> LogVerifier {
        self.inner.verifier.clone()
    }

    /// The canonical bytes of entry `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, VaultError> {
        let size = self.size();
        if index >= size {
            return Err(VaultError::AuditNotFound);
        }
        // Any entry but the last: its length is where the next one starts (two reads, no
        // `fstat`); a history page reads hundreds of entries.
        if index + 1 < size {
            let files = &self.inner.files;
            let (offset, hash, next) = files.leaf_pair(index)?;
            if let Some(body) = next
                .checked_sub(offset)
                .map(|len| files.entry_record(offset, len))
                .transpose()?
                .flatten()
            {
                if merkle::leaf_hash(&body) != hash {
                    return Err(corrupt(index, "entry does not match its leaf hash"));
                }
                return Ok(body);
            }
        }
        let (offset, hash) = self.inner.files.leaf_record(index)?;
        let len = self
            .inner
            .files
            .entries
            .size()
            .map_err(|e| io_unavailable("entries", &e))?;
        let body = self
            .inner
            .files
            .entry_at(offset, len)?
            .ok_or_else(|| corrupt(index, "entry record unreadable"))?;
        if merkle::leaf_hash(&body) != hash {
            return Err(corrupt(index, "entry does not match its leaf hash"));
        }
        Ok(body)
    }

    /// Entries `from..to` (an empty range past the end is empty) with their leaf hashes, read
    /// in two large reads: the leaf records, then the entries' bytes. Each entry's CRC and
    /// leaf hash are checked.
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<(Vec<u8>, Hash)>, VaultError> {
        let size = self.size();
        let to = to.min(size);
        if from >= to {
            return Ok(Vec::new());
        }
        let files = &self.inner.files;
        // The records of from..to, and of `to` when it exists (where the last entry ends).
        let records = to - from + u64::from(to < size);
        let mut leaves = vec![
            0u8;
            usize::try_from(records * LEAF_RECORD)
                .map_err(|_| corrupt(from, "range too large"))?
        ];
        files
            .leaves
            .read_at(from * LEAF_RECORD, &mut leaves)
            .map_err(|e| io_unavailable("leaf index", &e))?;
        let record = |k: usize| -> (u64, Hash) {
            let r = leaves
                .get(k * LEAF_RECORD as usize..(k + 1) * LEAF_RECORD as usize)
                .unwrap_or(&[0; LEAF_RECORD as usize]);
            let mut off = [0u8; 8];
            off.copy_from_slice(r.get(..8).unwrap_or(&[0; 8]));
            let mut h = [0u8; 32];
            h.copy_from_slice(r.get(8..).unwrap_or(&[0; 32]));
            (u64::from_be_bytes(off), h)
        };
        let count = usize::try_from(to - from).map_err(|_| corrupt(from, "range too large"))?;
        let start = record(0).0;
        let end = if to < size {
            record(count).0
        } else {
            files
                .entries
                .size()
                .map_err(|e| io_unavailable("entries", &e))?
        };
        let span = end
            .checked_sub(start)
            .ok_or_else(|| corrupt(from, "entry offsets go backwards"))?;
        let mut bytes =
            vec![0u8; usize::try_from(span).map_err(|_| corrupt(from, "range too large"))?];
        files
            .entries
            .read_at(start, &mut bytes)
            .map_err(|e| io_unavailable("entries", &e))?;
        let mut out = Vec::with_capacity(count);
        for k in 0..count {
            let index = from + k as u64;
            let (offset, hash) = record(k);
            let at = offset
                .checked_sub(start)
                .and_then(|o| usize::try_from(o).ok())
                .ok_or_else(|| corrupt(index, "bad offset"))?;
            let head = bytes
                .get(at..at + ENTRY_HEADER as usize)
                .ok_or_else(|| corrupt(index, "entry record unreadable"))?;
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            let body = bytes
                .get(at + ENTRY_HEADER as usize..at + ENTRY_HEADER as usize + len)
                .ok_or_else(|| corrupt(index, "entry record unreadable"))?;
            if crc32fast::hash(body) != crc {
                return Err(corrupt(index, "entry record unreadable"));
            }
            if merkle::leaf_hash(body) != hash {
                return Err(corrupt(index, "entry does not match its leaf hash"));
            }
            out.push((body.to_vec(), hash));
        }
        Ok(out)
    }

    /// The leaf hash of entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, VaultError> {
        if index >= self.size() {
            return Err(VaultError::AuditNotFound);
        }
        Ok(self.inner.files.leaf_record(index)?.1)
    }

    /// The root of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash, VaultError> {
        let st = self.read()?;
        if size > st.size {
            return Err(VaultError::AuditNotFound);
        }
        merkle::root(&st.tree.view(st.size, &self.inner.files), size).map_err(proof_err)
    }

    /// Inclusion proof of `index` in the tree of `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, VaultError> {
        let st = self.read()?;
        if size > st.size {
            return Err(VaultError::AuditNotFound);
        }
        merkle::inclusion_proof(&st.tree.view(st.size, &self.inner.files), index, size)
            .map_err(proof_err)
    }

    /// Consistency proof between sizes `from` and `to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, VaultError> {
        let st = self.read()?;
        if to > st.size {
            return Err(VaultError::AuditNotFound);
        }
        merkle::consistency_proof(&st.tree.view(st.size, &self.inner.files), from, to)
            .map_err(proof_err)
    }

    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Result<String, VaultError> {
        Ok(self.read()?.latest_note.clone())
    }

    /// The signed checkpoint for exactly `size`, if one was issued.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, VaultError> {
        // The records below `end` never change: scan them without holding the lock.
        let (from, end) = {
            let st = self.read()?;
            (st.checkpoints.scan_from(size), st.checkpoints.end)
        };
        let files = &self.inner.files;
        find_checkpoint(&*files.checkpoints, from, end, size)?
            .map(|(off, len)| read_checkpoint(files, off, len).map(|(_, n)| n))
            .transpose()
    }

    /// Sizes for which a checkpoint exists.
    pub fn checkpoint_sizes(&self) -> Result<Vec<u64>, VaultError> {
        let end = self.read()?.checkpoints.end;
        let mut sizes: Vec<u64> = checkpoint_records(&*self.inner.files.checkpoints, 0, end)
            .map(|r| r.map(|(size, _, _)| size))
            .collect::<Result<_, _>>()?;
        sizes.dedup();
        Ok(sizes)
    }

    /// The byte lengths of `entries.log`, `leaves.idx` and `checkpoints.log` that hold
    /// exactly the log up to `size` and its signed checkpoint: the prefixes a backup copies
    /// (they never change once written).
    pub fn file_lengths(&self, size: u64) -> Result<[u64; 3], VaultError> {
        let st = self.read()?;
        if size > st.size {
            return Err(VaultError::AuditNotFound);
        }
        let files = &self.inner.files;
        let entries = match size.checked_sub(1) {
            None => 0,
            Some(last) => {
                let (off, _) = files.leaf_record(last)?;
                let elen = files
                    .entries
                    .size()
                    .map_err(|e| io_unavailable("entries", &e))?;
                let body = files
                    .entry_at(off, elen)?
                    .ok_or_else(|| corrupt(last, "entry record damaged"))?;
                off + ENTRY_HEADER + body.len() as u64
            }
        };
        let (off, len) = find_checkpoint(
            &*files.checkpoints,
            st.checkpoints.scan_from(size),
            st.checkpoints.end,
            size,
        )?
        .ok_or_else(|| corrupt(size, "no signed checkpoint for this size"))?;
        Ok([
            entries,
            size * LEAF_RECORD,
            off + CHECKPOINT_HEADER + u64::from(len),
        ])
    }

    /// Full verification: re-hashes every entry against its leaf, rebuilds the tree and checks
    /// every checkpoint's signature and root. Names the first bad index.
    pub fn verify_all(&self) -> Result<VerifyReport, VaultError> {
        let st = self.read()?;
        let files = &self.inner.files;
        let verifier = self.inner.verifier.clone();
        let elen = files
            .entries
            .size()
            .map_err(|e| io_unavailable("entries", &e))?;
        let mut tree = merkle::MemoryTree::new();
        let mut expected_offset = 0u64;
        let mut cps = checkpoint_records(&*files.checkpoints, 0, st.checkpoints.end).peekable();
        let mut checked_checkpoints = 0u64;
        let mut check_cps = |tree: &merkle::MemoryTree, n: u64| -> Result<(), VaultError> {
            while let Some(next) = cps.peek() {
                let (size, off, len) = match next {
                    Ok(r) => *r,
                    Err(_) => return cps.next().map_or(Ok(()), |r| r.map(|_| ())),
                };
                if size != n {
                    break;
                }
                cps.next();
                let (_, note) = read_checkpoint(files, off, len)?;
                let cp = Checkpoint::verify(&note, &verifier)
                    .map_err(|e| corrupt(size, format!("checkpoint for size {size}: {e}")))?;
                let r = merkle::root(tree, size).map_err(proof_err)?;
                if cp.root != r || cp.size != size {
                    return Err(corrupt(
                        size.saturating_sub(1),
                        format!("checkpoint for size {size} does not match the entries"),
                    ));
                }
                checked_checkpoints += 1;
            }
            Ok(())
        };
        check_cps(&tree, 0)?;
        for i in 0..st.size {
            let (offset, stored) = files.leaf_record(i)?;
            if offset != expected_offset {
                return Err(corrupt(
                    i,
                    "entry offset does not follow the previous entry",
                ));
            }
            let body = files
                .entry_at(offset, elen)?
                .ok_or_else(|| corrupt(i, "entry record is damaged (length or checksum)"))?;
            let h = merkle::leaf_hash(&body);
            if h != stored {
                return Err(corrupt(
                    i,
                    "entry bytes do not match the recorded leaf hash",
                ));
            }
            if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                return Err(corrupt(i, "entry is not JSON"));
            }
            expected_offset = offset + ENTRY_HEADER + body.len() as u64;
            tree.push(h);
            check_cps(&tree, i + 1)?;
        }
        Ok(VerifyReport {
            entries: st.size,
            checkpoints: checked_checkpoints,
            root: merkle::root(&tree, st.size).map_err(proof_err)?,
        })
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What a full verification checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries re-hashed.
    pub entries: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// The root of the whole log.
    pub root: Hash,
}

/// Writes the verifier key string to `dir/log.pub` unless it already holds it (a public key:
/// no secret, replaced atomically).
fn publish_verifier(dir: &Path, verifier: &LogVerifier) -> Result<(), VaultError> {
    let path = dir.join(VERIFIER_FILE);
    let text = format!("{verifier}\n");
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let tmp = dir.join(format!("{VERIFIER_FILE}.tmp"));
    let written = (|| {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|e| io_unavailable("verifier key file", &e))
}

fn read_checkpoint(files: &Files, off: u64, len: u32) -> Result<(u64, String), VaultError> {
    let mut head = [0u8; CHECKPOINT_HEADER as usize];
    files
        .checkpoints
        .read_at(off, &mut head)
        .map_err(|e| io_unavailable("checkpoints", &e))?;
    let (size, _, crc) = checkpoint_header(&head);
    let mut body = vec![0u8; len as usize];
    files
        .checkpoints
        .read_at(off + CHECKPOINT_HEADER, &mut body)
        .map_err(|e| io_unavailable("checkpoints", &e))?;
    if crc32fast::hash(&body) != crc {
        return Err(corrupt(size, "checkpoint record damaged"));
    }
    String::from_utf8(body)
        .map(|n| (size, n))
        .map_err(|_| corrupt(size, "checkpoint is not UTF-8"))
}

fn checkpoint_record(size: u64, note: &str) -> Vec<u8> {
    let mut rec = Vec::with_capacity(CHECKPOINT_HEADER as usize + note.len());
    rec.extend_from_slice(&size.to_be_bytes());
    rec.extend_from_slice(&u32::try_from(note.len()).unwrap_or(u32::MAX).to_be_bytes());
    rec.extend_from_slice(&crc32fast::hash(note.as_bytes()).to_be_bytes());
    rec.extend_from_slice(note.as_bytes());
    rec
}

mod indexer;
mod recovery;
mod writer;

#[cfg(test)]
mod query_tests;
#[cfg(test)]
mod tests;

use indexer::indexer_loop;
use recovery::recover;
use writer::writer_loop;
