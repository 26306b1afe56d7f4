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
use super::ticket::{self, Answer, Durable, Ticket};
use super::tree::{ChunkedTree, LeafReader};
use crate::error::VaultError;

const ENTRY_HEADER: u64 = 8;
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

/// Where an appended entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its index in the log.
    pub index: u64,
    /// Its RFC 9162 leaf hash.
    pub leaf_hash: Hash,
}

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
    fn record_batch(&self, entries: u64, micros: u64) {
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
    signer: LogSigner,
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
        let inner = Arc::new(Inner {
            files,
            signer,
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
        self.inner.signer.verifier()
    }

    /// The canonical bytes of entry `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, VaultError> {
        if index >= self.size() {
            return Err(VaultError::AuditNotFound);
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

    /// Full verification: re-hashes every entry against its leaf, rebuilds the tree and checks
    /// every checkpoint's signature and root. Names the first bad index.
    pub fn verify_all(&self) -> Result<VerifyReport, VaultError> {
        let st = self.read()?;
        let files = &self.inner.files;
        let verifier = self.inner.signer.verifier();
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

/// Opening: torn tails cut, derived leaf index checked and completed, tree rebuilt, the
/// whole compared with the last signed checkpoint.
fn recover(files: &Files, signer: &LogSigner) -> Result<(State, Lengths), VaultError> {
    let verifier = signer.verifier();
    // 1. Checkpoints: whole records only; sizes never decrease.
    let clen = files
        .checkpoints
        .size()
        .map_err(|e| io_unavailable("checkpoints", &e))?;
    let mut checkpoints = CheckpointIndex::default();
    let mut off = 0u64;
    let mut last: Option<(u64, u64, u32)> = None;
    while off + CHECKPOINT_HEADER <= clen {
        let mut head = [0u8; CHECKPOINT_HEADER as usize];
        files
            .checkpoints
            .read_at(off, &mut head)
            .map_err(|e| io_unavailable("checkpoints", &e))?;
        let (size, len, _) = checkpoint_header(&head);
        // A signed note is never empty: a zero header is a zero-filled tail, as a torn one.
        if len == 0
            || off + CHECKPOINT_HEADER + u64::from(len) > clen
            || read_checkpoint(files, off, len).is_err()
        {
            break; // torn tail
        }
        if last.is_some_and(|(s, _, _)| size < s) {
            return Err(corrupt(size, "checkpoint sizes go backwards"));
        }
        checkpoints.push(size, off, len);
        last = Some((size, off, len));
        off += CHECKPOINT_HEADER + u64::from(len);
    }
    if off < clen {
        files
            .checkpoints
            .set_len(off)
            .map_err(|e| io_unavailable("checkpoints", &e))?;
    }
    let mut lengths = Lengths {
        entries: 0,
        leaves: 0,
        checkpoints: off,
    };

    // 2. Leaf index: whole records; the last 64 re-checked against the entries.
    let elen = files
        .entries
        .size()
        .map_err(|e| io_unavailable("entries", &e))?;
    let llen = files
        .leaves
        .size()
        .map_err(|e| io_unavailable("leaf index", &e))?;
    let mut n = llen / LEAF_RECORD;
    let leaf_ok = |i: u64| -> Result<bool, VaultError> {
        let (o, h) = files.leaf_record(i)?;
        Ok(files
            .entry_at(o, elen)?
            .is_some_and(|b| merkle::leaf_hash(&b) == h))
    };
    // A tail of records that match no entry (zero-filled after a crash, or torn) goes first,
    // however long; then the 64 records before the end are re-checked.
    while n > 0 && !leaf_ok(n - 1)? {
        n -= 1;
    }
    let check_from = n.saturating_sub(64);
    for i in check_from..n {
        if !leaf_ok(i)? {
            n = i;
            break;
        }
    }
    // 3. Entries past the index: complete them, cut a torn tail.
    let mut eoff = if n == 0 {
        0
    } else {
        let (o, _) = files.leaf_record(n - 1)?;
        let body = files
            .entry_at(o, elen)?
            .ok_or_else(|| corrupt(n - 1, "entry record damaged"))?;
        o + ENTRY_HEADER + body.len() as u64
    };
    let mut new_leaves = Vec::new();
    while eoff < elen {
        match files.entry_at(eoff, elen)? {
            Some(body) => {
                let mut rec = Vec::with_capacity(LEAF_RECORD as usize);
                rec.extend_from_slice(&eoff.to_be_bytes());
                rec.extend_from_slice(&merkle::leaf_hash(&body));
                new_leaves.extend_from_slice(&rec);
                eoff += ENTRY_HEADER + body.len() as u64;
            }
            None => {
                // Past the last durable checkpoint, damage is a torn tail: entries acknowledged
                // there were synced whole, so only a write that never completed (never
                // acknowledged) can be damaged, barring media corruption in that last second.
                // Cut it. Damage inside the checkpointed range is corruption: refuse.
                let index = n + new_leaves.len() as u64 / LEAF_RECORD;
                let covered = last.map_or(0, |(s, _, _)| s);
                if index < covered {
                    return Err(corrupt(
                        index,
                        "entry record damaged inside the checkpointed log",
                    ));
                }
                files
                    .entries
                    .set_len(eoff)
                    .map_err(|e| io_unavailable("entries", &e))?;
                break;
            }
        }
    }
    files
        .leaves
        .set_len(n * LEAF_RECORD)
        .map_err(|e| io_unavailable("leaf index", &e))?;
    if !new_leaves.is_empty() {
        files
            .leaves
            .write_at(n * LEAF_RECORD, &new_leaves)
            .map_err(|e| io_unavailable("leaf index", &e))?;
        n += new_leaves.len() as u64 / LEAF_RECORD;
    }
    files
        .entries
        .sync()
        .map_err(|e| io_unavailable("entries", &e))?;
    files
        .leaves
        .sync()
        .map_err(|e| io_unavailable("leaf index", &e))?;
    lengths.entries = eoff;
    lengths.leaves = n * LEAF_RECORD;

    // 4. The tree.
    let mut tree = ChunkedTree::default();
    let mut i = 0u64;
    while i < n {
        let count = (n - i).min(65_536);
        for h in files.leaves(i, count).map_err(proof_err)? {
            tree.push(h);
        }
        i += count;
    }

    // 5. Against the last signed checkpoint.
    if let Some((size, off, len)) = last {
        let (_, note) = read_checkpoint(files, off, len)?;
        let cp = Checkpoint::verify(&note, &verifier).map_err(|e| {
            corrupt(
                size,
                format!("last checkpoint does not verify with the log key: {e}"),
            )
        })?;
        if n < cp.size {
            return Err(corrupt(
                n,
                format!(
                    "the log has {n} entries but its signed checkpoint covers {}: entries were removed",
                    cp.size
                ),
            ));
        }
        let view = tree.view(n, files);
        let r = merkle::root(&view, cp.size).map_err(proof_err)?;
        if r != cp.root {
            return Err(first_bad(files, &tree, n, &checkpoints, &verifier));
        }
    }
    let mut state = State {
        tree,
        size: n,
        checkpoints,
        latest_note: String::new(),
    };
    // 6. A checkpoint for the current size (a fresh log, or entries written before a crash
    //    stopped their checkpoint).
    if let Some((_, off, len)) = last.filter(|(s, _, _)| *s == n) {
        state.latest_note = read_checkpoint(files, off, len)?.1;
    } else {
        let root = merkle::root(&state.tree.view(n, files), n).map_err(proof_err)?;
        let note = Checkpoint {
            origin: verifier.name().to_owned(),
            size: n,
            root,
        }
        .sign(signer)
        .map_err(|e| VaultError::StoreUnavailable(format!("audit checkpoint: {e}")))?;
        let rec = checkpoint_record(n, &note);
        files
            .checkpoints
            .write_at(lengths.checkpoints, &rec)
            .map_err(|e| io_unavailable("checkpoints", &e))?;
        files
            .checkpoints
            .sync()
            .map_err(|e| io_unavailable("checkpoints", &e))?;
        state.checkpoints.push(
            n,
            lengths.checkpoints,
            u32::try_from(note.len()).unwrap_or(u32::MAX),
        );
        lengths.checkpoints += rec.len() as u64;
        state.latest_note = note;
    }
    Ok((state, lengths))
}

/// Locates the first entry that breaks a checkpoint: the first checkpoint whose root no
/// longer matches bounds it; inside that range, the first entry whose bytes do not match its
/// recorded leaf names it exactly.
fn first_bad(
    files: &Files,
    tree: &ChunkedTree,
    n: u64,
    cps: &CheckpointIndex,
    verifier: &LogVerifier,
) -> VaultError {
    let view = tree.view(n, files);
    let mut prev = 0u64;
    let elen = files.entries.size().unwrap_or(0);
    for (size, off, len) in
        checkpoint_records(&*files.checkpoints, 0, cps.end).map_while(Result::ok)
    {
        let Ok((_, note)) = read_checkpoint(files, off, len) else {
            continue;
        };
        let Ok(cp) = Checkpoint::verify(&note, verifier) else {
            continue;
        };
        if size > n || merkle::root(&view, size).ok() != Some(cp.root) {
            for i in prev..size.min(n) {
                let ok = files
                    .leaf_record(i)
                    .ok()
                    .and_then(|(o, h)| {
                        files
                            .entry_at(o, elen)
                            .ok()
                            .flatten()
                            .map(|b| merkle::leaf_hash(&b) == h)
                    })
                    .unwrap_or(false);
                if !ok {
                    return corrupt(i, "entry does not match the signed checkpoints (rewritten)");
                }
            }
            return corrupt(
                prev,
                format!(
                    "entries between {prev} and {size} do not match the signed checkpoint for size {size} (rewritten)"
                ),
            );
        }
        prev = size;
    }
    corrupt(prev, "log does not match its last signed checkpoint")
}

/// Indexes entries `[indexed_through, upto)` reading them back from the log files.
fn index_from_files(inner: &Inner, upto: u64) {
    let mut next = inner.index.indexed_through();
    let elen = inner.files.entries.size().unwrap_or(0);
    while next < upto {
        let end = (next + 4096).min(upto);
        let batch: Vec<Vec<u8>> = (next..end)
            .map(|i| {
                inner
                    .files
                    .leaf_record(i)
                    .ok()
                    .and_then(|(o, _)| inner.files.entry_at(o, elen).ok().flatten())
                    .unwrap_or_default()
            })
            .collect();
        if inner.index.add(next, &batch).is_err() {
            return;
        }
        next = end;
    }
}

/// The indexer: takes the bytes the writer hands over when it keeps up, reads the log when
/// it falls behind (the writer never waits for it: a full queue just drops the hand-over).
fn indexer_loop(inner: &Inner, rx: &mpsc::Receiver<IndexJob>) {
    let published = || inner.state.read().map(|s| s.size).unwrap_or(0);
    index_from_files(inner, published());
    let mut since_flush = 0u64;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok((start, mut entries)) => {
                // Coalesce what else is queued and contiguous: fewer, larger index batches.
                std::thread::sleep(INDEX_COALESCE);
                while let Ok((next_start, more)) = rx.try_recv() {
                    if next_start == start + entries.len() as u64 {
                        entries.extend(more);
                    } else {
                        break; // a gap: the files fill it below
                    }
                    if entries.len() >= 16_384 {
                        break;
                    }
                }
                if start > inner.index.indexed_through() {
                    index_from_files(inner, start);
                }
                let before = inner.index.indexed_through();
                let _ = inner.index.add(start, &entries);
                since_flush += inner.index.indexed_through().saturating_sub(before);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => index_from_files(inner, published()),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if since_flush >= 100_000 {
            let _ = inner.index.flush();
            since_flush = 0;
        }
    }
    index_from_files(inner, published());
    let _ = inner.index.flush();
}

fn writer_loop(
    inner: &Inner,
    rx: &mpsc::Receiver<Job>,
    mut lengths: Lengths,
    indexer: &mpsc::SyncSender<IndexJob>,
) {
    // Checkpoints are signed for every batch; their file is synced at most once a second
    // (and on shutdown), off the acknowledgement path: entries are durable before the reply.
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let first = match unsynced_since {
            Some(t) => match rx.recv_timeout(CHECKPOINT_SYNC.saturating_sub(t.elapsed())) {
                Ok(j) => j,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    sync_checkpoints(inner, &mut unsynced_since);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            },
        };
        let mut jobs = vec![first];
        let mut count = jobs[0].entries.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => {
                    count += j.entries.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        if !inner.healthy.load(Ordering::SeqCst) && recheck(inner, lengths).is_err() {
            for j in jobs {
                j.reply.send(Err(VaultError::AuditUnavailable));
            }
            continue;
        }
        inner.healthy.store(true, Ordering::SeqCst);
        if count == 0 {
            // Probes only: the re-check above passed.
            for j in jobs {
                j.reply.send(Ok(Vec::new()));
            }
            continue;
        }
        let started = Instant::now();
        match commit(inner, &jobs, &mut lengths) {
            Ok(mut results) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                inner.stats.record_batch(count as u64, micros);
                let start = results.first().map_or(0, |r| r.index);
                let bytes: Vec<Vec<u8>> = jobs
                    .iter()
                    .flat_map(|j| j.entries.iter().map(|e| e.bytes().to_vec()))
                    .collect();
                for j in jobs.into_iter().rev() {
                    let mine = results.split_off(results.len() - j.entries.len());
                    j.reply.send(Ok(mine));
                }
                let _ = indexer.try_send((start, bytes));
                let since = *unsynced_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= CHECKPOINT_SYNC {
                    sync_checkpoints(inner, &mut unsynced_since);
                }
            }
            Err(_) => {
                inner.stats.failures.fetch_add(1, Ordering::Relaxed);
                inner.healthy.store(false, Ordering::SeqCst);
                let _ = rollback(inner, lengths);
                for j in jobs {
                    j.reply.send(Err(VaultError::AuditUnavailable));
                }
            }
        }
    }
    sync_checkpoints(inner, &mut unsynced_since);
}

fn sync_checkpoints(inner: &Inner, unsynced_since: &mut Option<Instant>) {
    if unsynced_since.take().is_some() && inner.files.checkpoints.sync().is_err() {
        inner.healthy.store(false, Ordering::SeqCst);
    }
}

/// Cuts every file back to its last durable, checkpointed length.
fn rollback(inner: &Inner, l: Lengths) -> Result<(), VaultError> {
    let f = &inner.files;
    f.entries
        .set_len(l.entries)
        .map_err(|e| io_unavailable("entries", &e))?;
    f.leaves
        .set_len(l.leaves)
        .map_err(|e| io_unavailable("leaf index", &e))?;
    f.checkpoints
        .set_len(l.checkpoints)
        .map_err(|e| io_unavailable("checkpoints", &e))?;
    let mut st = inner
        .state
        .write()
        .map_err(|_| VaultError::AuditUnavailable)?;
    let size = st.size;
    st.tree.truncate(size, f).map_err(proof_err)?;
    Ok(())
}

/// Bytes each file must be able to grow by before appends resume after a failure: a full
/// disk whose rolled-back batch freed a few bytes is still full.
const HEADROOM: usize = 64 * 1024;

/// Writes `HEADROOM` zero bytes past `len`, syncs, and cuts the file back to `len`.
fn has_headroom(file: &dyn LogFile, len: u64) -> std::io::Result<()> {
    let grown = file
        .write_at(len, &[0u8; HEADROOM])
        .and_then(|()| file.sync());
    let cut = file.set_len(len);
    grown.and(cut)
}

/// Before appends resume after a failure: the files are exactly the durable lengths, those
/// lengths are on disk, each file can grow again, and the last entry still matches its leaf.
fn recheck(inner: &Inner, l: Lengths) -> Result<(), VaultError> {
    rollback(inner, l)?;
    let f = &inner.files;
    for (name, file, len) in [
        ("entries", &f.entries, l.entries),
        ("leaf index", &f.leaves, l.leaves),
        ("checkpoints", &f.checkpoints, l.checkpoints),
    ] {
        has_headroom(file.as_ref(), len).map_err(|e| io_unavailable(name, &e))?;
    }
    f.entries
        .sync()
        .map_err(|e| io_unavailable("entries", &e))?;
    f.leaves
        .sync()
        .map_err(|e| io_unavailable("leaf index", &e))?;
    f.checkpoints
        .sync()
        .map_err(|e| io_unavailable("checkpoints", &e))?;
    let lens = (
        f.entries
            .size()
            .map_err(|e| io_unavailable("entries", &e))?,
        f.leaves
            .size()
            .map_err(|e| io_unavailable("leaf index", &e))?,
        f.checkpoints
            .size()
            .map_err(|e| io_unavailable("checkpoints", &e))?,
    );
    if lens != (l.entries, l.leaves, l.checkpoints) {
        return Err(VaultError::AuditUnavailable);
    }
    let n = l.leaves / LEAF_RECORD;
    if n > 0 {
        let (o, h) = f.leaf_record(n - 1)?;
        let body = f
            .entry_at(o, l.entries)?
            .ok_or(VaultError::AuditUnavailable)?;
        if merkle::leaf_hash(&body) != h {
            return Err(VaultError::AuditUnavailable);
        }
    }
    Ok(())
}

fn commit(inner: &Inner, jobs: &[Job], lengths: &mut Lengths) -> Result<Vec<Appended>, VaultError> {
    let f = &inner.files;
    let start_index = lengths.leaves / LEAF_RECORD;
    let mut buf = Vec::new();
    let mut leaf_buf = Vec::new();
    let mut results = Vec::new();
    let mut off = lengths.entries;
    for e in jobs.iter().flat_map(|j| j.entries.iter()) {
        let bytes = e.bytes();
        let h = merkle::leaf_hash(bytes);
        buf.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(&crc32fast::hash(bytes).to_be_bytes());
        buf.extend_from_slice(bytes);
        leaf_buf.extend_from_slice(&off.to_be_bytes());
        leaf_buf.extend_from_slice(&h);
        results.push(Appended {
            index: start_index + results.len() as u64,
            leaf_hash: h,
        });
        off += ENTRY_HEADER + bytes.len() as u64;
    }
    f.entries
        .write_at(lengths.entries, &buf)
        .map_err(|e| io_unavailable("entries", &e))?;
    f.entries
        .sync()
        .map_err(|e| io_unavailable("entries", &e))?;
    f.leaves
        .write_at(lengths.leaves, &leaf_buf)
        .map_err(|e| io_unavailable("leaf index", &e))?;
    let new_size = start_index + results.len() as u64;
    // Extend the tree (readers still see only `size`), sign, make the checkpoint durable.
    let note = {
        let mut st = inner
            .state
            .write()
            .map_err(|_| VaultError::AuditUnavailable)?;
        for r in &results {
            st.tree.push(r.leaf_hash);
        }
        let root = merkle::root(&st.tree.view(new_size, f), new_size).map_err(proof_err)?;
        Checkpoint {
            origin: inner.signer.verifier().name().to_owned(),
            size: new_size,
            root,
        }
        .sign(&inner.signer)
        .map_err(|e| VaultError::StoreUnavailable(format!("audit checkpoint: {e}")))?
    };
    let rec = checkpoint_record(new_size, &note);
    f.checkpoints
        .write_at(lengths.checkpoints, &rec)
        .map_err(|e| io_unavailable("checkpoints", &e))?;
    // Durable: publish.
    let mut st = inner
        .state
        .write()
        .map_err(|_| VaultError::AuditUnavailable)?;
    st.checkpoints.push(
        new_size,
        lengths.checkpoints,
        u32::try_from(note.len()).unwrap_or(u32::MAX),
    );
    st.size = new_size;
    st.latest_note = note;
    lengths.entries = off;
    lengths.leaves += leaf_buf.len() as u64;
    lengths.checkpoints += rec.len() as u64;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::super::entry::{Actor, EntryContext, Pseudonym};
    use super::super::file::{Faults, FaultyFile};
    use super::*;
    use crate::clock::Timestamp;
    use crate::id::FieldName;
    use crate::id::SafeId;

    fn signer() -> LogSigner {
        LogSigner::from_seed("test.vault/audit", &[42; 32]).unwrap()
    }

    #[test]
    fn the_sparse_checkpoint_index_finds_exact_sizes_and_the_latest_record_for_a_size() {
        let dir = tempfile::tempdir().unwrap();
        let file = FsFile::open(&dir.path().join("checkpoints.log")).unwrap();
        // Sizes with gaps (odd sizes missing) and repeats, one repeat straddling a stride.
        let mut sizes = Vec::new();
        for k in 0..200u64 {
            sizes.push(k * 2);
            if k % 7 == 0 || sizes.len() as u64 == CHECKPOINT_STRIDE {
                sizes.push(k * 2);
            }
        }
        let stride = CHECKPOINT_STRIDE as usize;
        assert_eq!(sizes[stride - 1], sizes[stride], "a repeat across a stride");
        let mut idx = CheckpointIndex::default();
        let mut latest = std::collections::HashMap::new();
        let mut off = 0u64;
        for (i, &size) in sizes.iter().enumerate() {
            let note = format!("note {i} {}", "x".repeat(i % 50));
            let rec = checkpoint_record(size, &note);
            file.write_at(off, &rec).unwrap();
            idx.push(size, off, note.len() as u32);
            latest.insert(size, (off, note.len() as u32));
            off += rec.len() as u64;
        }
        assert_eq!(idx.end, off);
        assert!(idx.samples.len() <= sizes.len() / stride + 1, "sparse");
        let top = *sizes.last().unwrap();
        for size in (0..=top + 3).chain([u64::MAX]) {
            let got = find_checkpoint(&file, idx.scan_from(size), idx.end, size).unwrap();
            assert_eq!(got, latest.get(&size).copied(), "size {size}");
        }
        // A record past the covered end is not seen; a damaged header is an error.
        let rec = checkpoint_record(top + 2, "later");
        file.write_at(off, &rec).unwrap();
        assert_eq!(
            find_checkpoint(&file, idx.scan_from(top + 2), idx.end, top + 2).unwrap(),
            None
        );
        file.write_at(0, &[0u8; 16]).unwrap();
        assert!(find_checkpoint(&file, 0, idx.end, 0).is_err());
    }

    fn entry(i: u64) -> AuditEntry {
        let ctx = EntryContext {
            time: Timestamp::from_millis(1_700_000_000_000 + i as i64),
            policy: [1; 32],
        };
        AuditEntry::record_written(
            &ctx,
            &Actor::operator(SafeId::parse("vaultctl").unwrap()),
            &Pseudonym::from_bytes([(i % 251) as u8; 32]),
            &[FieldName::parse("full_name").unwrap()],
        )
        .unwrap()
    }

    fn fill(log: &SegmentLog, n: u64) {
        for i in 0..n {
            log.append_one(entry(i)).unwrap();
        }
    }

    fn entries_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("entries.log")).unwrap().len()
    }

    #[test]
    fn concurrent_appends_get_distinct_consecutive_indexes_with_verifying_proofs() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(SegmentLog::open(dir.path(), signer()).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    (0..5000u64)
                        .map(|i| log.append_one(entry(t * 10_000 + i)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Appended> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_by_key(|a| a.index);
        assert_eq!(all.len(), 80_000);
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a.index, i as u64, "indexes are consecutive");
        }
        let size = log.size();
        assert_eq!(size, 80_000);
        let root = log.root(size).unwrap();
        let cp = Checkpoint::verify(&log.latest_checkpoint().unwrap(), &log.verifier()).unwrap();
        assert_eq!((cp.size, cp.root), (size, root));
        for a in &all {
            let bytes = log.entry(a.index).unwrap();
            assert_eq!(merkle::leaf_hash(&bytes), a.leaf_hash);
            let proof = log.inclusion_proof(a.index, size).unwrap();
            merkle::verify_inclusion(a.index, size, &a.leaf_hash, &proof, &root).unwrap();
        }
        assert!(
            log.stats().batches.load(Ordering::Relaxed) < 80_000,
            "group commit batched"
        );
        log.verify_all().unwrap();
    }

    #[test]
    fn every_checkpoint_is_kept_and_consistent_with_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        fill(&log, 150); // more than two strides of the sparse index
        let sizes = log.checkpoint_sizes().unwrap();
        assert_eq!(sizes, (0..=150).collect::<Vec<_>>());
        let v = log.verifier();
        for w in sizes.windows(2) {
            let a = Checkpoint::verify(&log.checkpoint_at(w[0]).unwrap().unwrap(), &v).unwrap();
            let b = Checkpoint::verify(&log.checkpoint_at(w[1]).unwrap().unwrap(), &v).unwrap();
            let p = log.consistency_proof(a.size, b.size).unwrap();
            merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &p).unwrap();
        }
        drop(log);
        // Reopening keeps them all and adds none.
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        assert_eq!(log.checkpoint_sizes().unwrap().len(), 151);
        assert_eq!(log.size(), 150);
        assert!(log.checkpoint_at(150).unwrap().is_some());
        assert_eq!(log.checkpoint_at(151).unwrap(), None);
    }

    #[test]
    fn a_torn_tail_is_cut_to_the_last_whole_entry_and_the_root_matches_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = SegmentLog::open(dir.path(), signer()).unwrap();
            fill(&log, 30);
        }
        // A crash while a batch was being written: whole records, then one cut mid-record,
        // and no checkpoint for them (they were never acknowledged).
        let mut tail = Vec::new();
        for i in 30..33 {
            let e = entry(i);
            tail.extend_from_slice(&(e.bytes().len() as u32).to_be_bytes());
            tail.extend_from_slice(&crc32fast::hash(e.bytes()).to_be_bytes());
            tail.extend_from_slice(e.bytes());
        }
        let cut = tail.len() - 17;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("entries.log"))
            .unwrap();
        std::io::Write::write_all(&mut f, &tail[..cut]).unwrap();
        drop(f);
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        assert_eq!(
            log.size(),
            32,
            "the two whole records are kept, the cut one is dropped"
        );
        let mut fresh = merkle::MemoryTree::new();
        for i in 0..32 {
            fresh.push(merkle::leaf_hash(&log.entry(i).unwrap()));
        }
        assert_eq!(log.root(32).unwrap(), merkle::root(&fresh, 32).unwrap());
        log.verify_all().unwrap();
        log.append_one(entry(99)).unwrap();
        assert_eq!(log.size(), 33);
    }

    #[test]
    fn zero_filled_tails_left_by_a_crash_are_cut_not_read_as_records() {
        // After a power loss a file system may keep a file's new length but not its new
        // data: the tail reads as zeros, and a zero header is length 0 with the CRC of
        // nothing (0). Such tails are torn tails, in every file.
        let dir = tempfile::tempdir().unwrap();
        let root = {
            let log = SegmentLog::open(dir.path(), signer()).unwrap();
            fill(&log, 25);
            log.root(25).unwrap()
        };
        for name in ["entries.log", "checkpoints.log", "leaves.idx"] {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join(name))
                .unwrap();
            std::io::Write::write_all(&mut f, &[0u8; 4096]).unwrap();
        }
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        assert_eq!(log.size(), 25, "no empty entries read from the zeros");
        assert_eq!(log.root(25).unwrap(), root);
        assert_eq!(log.checkpoint_sizes().unwrap().last(), Some(&25));
        log.verify_all().unwrap();
        log.append_one(entry(99)).unwrap();
        assert_eq!(log.size(), 26);
        drop(log);
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        assert_eq!(log.size(), 26);
        log.verify_all().unwrap();
    }

    #[test]
    fn a_flipped_byte_in_an_old_entry_fails_verification_naming_that_index() {
        let dir = tempfile::tempdir().unwrap();
        let offset_of_10 = {
            let log = SegmentLog::open(dir.path(), signer()).unwrap();
            fill(&log, 200);
            log.inner.files.leaf_record(10).unwrap().0
        };
        let path = dir.path().join("entries.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(offset_of_10 + ENTRY_HEADER + 20) as usize] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        match log.verify_all() {
            Err(VaultError::AuditCorrupt { index, .. }) => assert_eq!(index, 10),
            other => panic!("expected corruption at 10, got {other:?}"),
        }
        assert!(log.entry(10).is_err());
    }

    #[test]
    fn a_flipped_byte_near_the_tail_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let offset = {
            let log = SegmentLog::open(dir.path(), signer()).unwrap();
            fill(&log, 50);
            log.inner.files.leaf_record(45).unwrap().0
        };
        let path = dir.path().join("entries.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(offset + ENTRY_HEADER + 3) as usize] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        match SegmentLog::open(dir.path(), signer()) {
            Err(VaultError::AuditCorrupt { index, .. }) => assert_eq!(index, 45),
            other => panic!("expected corruption at 45, got {other:?}"),
        }
    }

    #[test]
    fn removing_checkpointed_entries_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let keep = {
            let log = SegmentLog::open(dir.path(), signer()).unwrap();
            fill(&log, 100);
            log.inner.files.leaf_record(90).unwrap().0
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("entries.log"))
            .unwrap();
        f.set_len(keep).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("leaves.idx"))
            .unwrap();
        f.set_len(90 * LEAF_RECORD).unwrap();
        match SegmentLog::open(dir.path(), signer()) {
            Err(VaultError::AuditCorrupt { index, reason }) => {
                assert_eq!(index, 90);
                assert!(reason.contains("removed"), "{reason}");
            }
            other => panic!("expected refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_rewritten_entry_with_a_matching_leaf_index_is_caught_by_the_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = SegmentLog::open(dir.path(), signer()).unwrap();
            fill(&log, 120);
        }
        // Rewrite entry 5 consistently in both files (CRC and leaf hash updated).
        let files = Files {
            entries: Box::new(FsFile::open(&dir.path().join("entries.log")).unwrap()),
            leaves: Box::new(FsFile::open(&dir.path().join("leaves.idx")).unwrap()),
            checkpoints: Box::new(FsFile::open(&dir.path().join("checkpoints.log")).unwrap()),
        };
        let (off, _) = files.leaf_record(5).unwrap();
        let elen = files.entries.size().unwrap();
        let mut body = files.entry_at(off, elen).unwrap().unwrap();
        let pos = body.iter().position(|&b| b == b'"').unwrap() + 1;
        body[pos] = if body[pos] == b'a' { b'b' } else { b'a' };
        files
            .entries
            .write_at(off + 4, &crc32fast::hash(&body).to_be_bytes())
            .unwrap();
        files.entries.write_at(off + 8, &body).unwrap();
        let mut rec = off.to_be_bytes().to_vec();
        rec.extend_from_slice(&merkle::leaf_hash(&body));
        files.leaves.write_at(5 * LEAF_RECORD, &rec).unwrap();
        match SegmentLog::open(dir.path(), signer()) {
            Err(VaultError::AuditCorrupt { index, .. }) => assert_eq!(index, 5),
            other => panic!("expected refusal naming 5, got {other:?}"),
        }
    }

    fn faulty_log(dir: &Path, faults: &Arc<Faults>) -> SegmentLog {
        let f = Arc::clone(faults);
        SegmentLog::open_with(dir, signer(), &move |p| {
            Ok(
                Box::new(FaultyFile::new(Box::new(FsFile::open(p)?), Arc::clone(&f)))
                    as Box<dyn LogFile>,
            )
        })
        .unwrap()
    }

    #[test]
    fn a_probe_recovers_the_log_without_appending() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let log = faulty_log(dir.path(), &faults);
        fill(&log, 3);
        assert!(log.probe());
        faults.set_sync(true);
        assert!(log.append(vec![entry(9)]).is_err());
        assert!(!log.is_healthy());
        assert!(!log.probe(), "still failing: not ready");
        faults.set_sync(false);
        assert!(log.probe(), "storage works again: ready, without an append");
        assert_eq!(log.size(), 3);
        log.verify_all().unwrap();
    }

    #[test]
    fn write_and_sync_failures_acknowledge_nothing_and_the_log_recovers() {
        for fail_sync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let faults = Faults::new();
            let log = faulty_log(dir.path(), &faults);
            fill(&log, 10);
            let len_before = entries_len(dir.path());
            if fail_sync {
                faults.set_sync(true)
            } else {
                faults.set_write(true)
            }
            let results: Vec<_> = (0..4)
                .map(|i| log.append(vec![entry(100 + i), entry(200 + i)]))
                .collect();
            assert!(
                results
                    .iter()
                    .all(|r| matches!(r, Err(VaultError::AuditUnavailable)))
            );
            assert!(!log.is_healthy());
            assert_eq!(log.size(), 10, "nothing acknowledged");
            assert_eq!(
                entries_len(dir.path()),
                len_before,
                "no half-written entries left"
            );
            faults.set_sync(false);
            faults.set_write(false);
            let a = log.append_one(entry(300)).unwrap();
            assert_eq!(a.index, 10, "no gap");
            assert!(log.is_healthy());
            log.verify_all().unwrap();
            drop(log);
            let reopened = SegmentLog::open(dir.path(), signer()).unwrap();
            assert_eq!(reopened.size(), 11);
            reopened.verify_all().unwrap();
        }
    }

    #[test]
    fn proofs_for_every_index_and_size_up_to_130_verify_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        fill(&log, 130);
        let roots: Vec<Hash> = (0..=130).map(|n| log.root(n).unwrap()).collect();
        for n in 1..=130u64 {
            for i in 0..n {
                let p = log.inclusion_proof(i, n).unwrap();
                merkle::verify_inclusion(i, n, &log.leaf_hash(i).unwrap(), &p, &roots[n as usize])
                    .unwrap();
            }
        }
        for m in 0..=130u64 {
            for n in m..=130u64 {
                let p = log.consistency_proof(m, n).unwrap();
                merkle::verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &p)
                    .unwrap();
            }
        }
        assert!(matches!(
            log.inclusion_proof(5, 131),
            Err(VaultError::AuditNotFound)
        ));
    }
}

#[cfg(test)]
mod query_tests {
    use super::super::entry::{Access, Actor, EntryContext, Event, Pseudonym};
    use super::*;
    use crate::clock::Timestamp;
    use crate::id::FieldName;
    use crate::id::SafeId;

    fn wait_indexed(log: &SegmentLog) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while log.indexed_through() < log.size() {
            assert!(std::time::Instant::now() < deadline, "indexer stalled");
            std::thread::yield_now();
        }
    }

    #[test]
    fn queries_page_by_subject_official_agency_event_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            SegmentLog::open(dir.path(), LogSigner::from_seed("t/log", &[1; 32]).unwrap()).unwrap();
        let id = |s: &str| SafeId::parse(s).unwrap();
        let fields = [FieldName::parse("full_name").unwrap()];
        let (purpose, dossier) = (id("birth_registration"), id("HS-1"));
        for i in 0..300u64 {
            let ctx = EntryContext {
                time: Timestamp::from_millis(1_000_000 + i as i64 * 1000),
                policy: [0; 32],
            };
            let subject = Pseudonym::from_bytes([(i % 3) as u8; 32]);
            let official = Actor::official(
                id(&format!("cb-{}", i % 5)),
                id(if i % 2 == 0 {
                    "ubnd-phuong-sai-gon"
                } else {
                    "bhxh-tphcm"
                }),
                None,
            );
            let access = Access {
                purpose: Some(&purpose),
                dossier: &dossier,
                fields: &fields,
                grant: None,
                break_glass: false,
                consent: None,
            };
            let e = if i % 4 == 0 {
                AuditEntry::record_released(&ctx, &official, &subject, &access)
            } else {
                AuditEntry::grant_issued(&ctx, &official, &subject, &access)
            };
            log.append_one(e.unwrap()).unwrap();
            if i == 150 {
                wait_indexed(&log); // half indexed, half possibly in the tail: both paths run
            }
        }
        // Newest 50 of citizen 1, then the next page.
        let q = AuditQuery {
            subject: Some(Pseudonym::from_bytes([1; 32])),
            ..Default::default()
        };
        let p1 = log.query(&q, None, 50, true).unwrap();
        assert_eq!(p1.indexes.len(), 50);
        assert_eq!(p1.indexes[0], 298);
        assert!(
            p1.indexes
                .windows(2)
                .all(|w| w[0] > w[1] && w[0] - w[1] == 3)
        );
        let p2 = log.query(&q, p1.next, 50, true).unwrap();
        assert_eq!(p2.indexes[0], p1.indexes[49] - 3);
        wait_indexed(&log);
        let q = AuditQuery {
            official: Some(SafeId::parse("cb-2").unwrap()),
            event: Some(Event::RecordReleased),
            ..Default::default()
        };
        let all = log.query(&q, None, 1000, false).unwrap();
        assert!(all.indexes.iter().all(|i| i % 5 == 2 && i % 4 == 0));
        assert_eq!(all.indexes.len(), 15);
        assert_eq!(all.next, None);
        let q = AuditQuery {
            agency: Some(SafeId::parse("bhxh-tphcm").unwrap()),
            from: Some(Timestamp::from_millis(1_000_000 + 100_000)),
            to: Some(Timestamp::from_millis(1_000_000 + 120_000)),
            ..Default::default()
        };
        let r = log.query(&q, None, 1000, false).unwrap();
        assert_eq!(
            r.indexes,
            (100..=120).filter(|i| i % 2 == 1).collect::<Vec<_>>()
        );
        // Reopen: the index persists or is rebuilt, same answers.
        drop(log);
        let log =
            SegmentLog::open(dir.path(), LogSigner::from_seed("t/log", &[1; 32]).unwrap()).unwrap();
        wait_indexed(&log);
        assert_eq!(log.query(&q, None, 1000, false).unwrap(), r);
    }
}
