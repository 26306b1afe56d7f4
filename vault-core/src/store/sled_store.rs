//! `SledStore`: the embedded default (sled 0.34) with two files beside it. sled's trees:
//! `citizens` (blind id → the `Location` of the citizen's frame in `records.dat`,
//! `records.rs`), `meta` (the format version, the keyring, import checkpoints, the
//! released-through mark, the record file's marks), `standing_consents` (blind id, consent
//! id → a `StandingConsent` as JSON), `idempotency` and `grant_idempotency` (grant id → the
//! idempotency key naming it). Grants live in `grants.slots` (`grant_slots.rs`), which the
//! flush syncs before sled. Writes are durable only after `flush`.
//!
//! The store's format version is kept in `meta` and checked at open: a directory written by
//! another format is refused with a message that says so, never read as if it were this one.
//!
//! A grant's state record is the one place its mutable fields live: every change
//! (a release's spent use, a revoke, an approval) is one compare-and-swap on it, so exactly
//! one caller wins a grant's last use and a revoke orders cleanly against releases, while a
//! release rewrites a few dozen bytes instead of the whole grant.
//!
//! Records live outside sled because a release reads one: sled reads and decodes a whole
//! leaf (up to 16 records of ~3 KiB) on a cache miss, which was the largest cost of a release
//! once the working set outgrew its cache; a frame is one positioned read. A rewrite appends
//! a new frame; the replaced one is shredded (zeros, synced) at the next `flush`, once the
//! index that points elsewhere is durable, and the file's `records_clean_through` mark moves
//! to the end. Opening the store shreds what a crash left past the mark: frames no index
//! entry points at (a batch whose index write was lost) and, for each current frame past
//! the mark, the older frames of its chain. Erasure shreds the citizen's whole chain before
//! it removes the index entry.
//!
//! No tree is keyed by time: sled 0.34 never frees a tree node once emptied, so a
//! time-ordered index swept from its old end would leak a node per few hundred entries
//! forever; the retention sweep walks the (random) grant ids instead.

use std::path::Path;
use std::sync::Arc;

use super::cases::{self, CaseRow};
use super::grant_slots::{self, GrantSlots};
use super::group::FlushGroup;
use super::records::{Location, NO_FRAME, RecordFile, SLOT_FILES, Tail};
use super::{
    AuditedStore, CaseStore, ConsentStore, EncodedRecord, GrantStore, IdempotencyStore, MetaStore,
    RecordStore, Remembered, RememberedAnswer, SealedRecord, codec,
};
use super::{StoreError, decode_remembered, encode_remembered};
use crate::case::CaseKind;
use crate::clock::Timestamp;
use crate::consent::StandingConsent;
use crate::error::VaultError;
use crate::grant::{Grant, GrantState};
use crate::id::{BlindId, GrantId};
use crate::keyring::KeyringRecord;

const FORMAT_KEY: &[u8] = b"format";
/// The on-disk format this build reads and writes (sled's trees, `records.dat` and
/// `grants.slots` together).
pub const STORE_FORMAT: u64 = 1;
const KEYRING_KEY: &[u8] = b"keyring";
const IMPORT_PREFIX: &[u8] = b"import/";
const RELEASED_THROUGH_KEY: &[u8] = b"released_through";
const CLEAN_THROUGH_KEY: &[u8] = b"records_clean_through";
const SLOT_KEY: &[u8] = b"records_slot";
const COMPACTING_KEY: &[u8] = b"records_compacting";
const SHREDDED_KEY: &[u8] = b"records_shredded_bytes";
/// A record file is compacted at open when its dead bytes (shredded frames) are at least
/// this many and at least as many as its live ones.
const COMPACT_MIN_DEAD_BYTES: u64 = 64 << 20;
/// sled's page cache unless the caller says otherwise (`open_cached`). 16 MiB since the
/// grants left sled for their slot file: sled then holds the citizen index and a few small
/// trees, and 64 bought no release at 100,000 or 1,000,000 citizens for ~110 MiB more at a
/// million (BENCHMARKS.md).
pub const DEFAULT_CACHE_BYTES: u64 = 16 << 20;
/// Records copied per step of a compaction (one append and one index batch).
const COMPACT_BATCH: usize = 1024;
/// sled 0.34's log file in the store's directory.
const SLED_LOG: &str = "db";

/// What opening the grant slot file repaired after a crash (`grant_slots.rs`): for the
/// server to report at start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SlotRepairs {
    /// Slots an unacknowledged insert left half-written, freed.
    pub freed_torn: u64,
    /// Grants whose state sector did not check, ended as revoked.
    pub ended_unreadable: u64,
}

/// The sled-backed store.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    citizens: sled::Tree,
    meta: sled::Tree,
    consents: sled::Tree,
    idempotency: sled::Tree,
    grant_idempotency: sled::Tree,
    /// Cases by `kind || id`; `case_owners` by `blind id || kind || id` and `open_cases` by
    /// `kind || id` index them (written together in one transaction).
    cases: sled::Tree,
    case_owners: sled::Tree,
    open_cases: sled::Tree,
    records: Arc<RecordFile>,
    /// The grants (`grant_slots.rs`).
    slots: Arc<GrantSlots>,
    /// What opening the slot file repaired.
    slot_repairs: SlotRepairs,
    /// sled's log file, opened again to `fdatasync` it after each flush (see `flush_once`).
    log: Arc<std::fs::File>,
    flushes: Arc<FlushGroup>,
    /// Group commits of the slot file alone (a slot grant's insert or durable change, which
    /// touch nothing in sled).
    slot_syncs: Arc<FlushGroup>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_cached(dir, DEFAULT_CACHE_BYTES)
    }

    /// As `open`, with sled's page cache limited to `cache_bytes` (sled's own accounting; the
    /// heap it holds is about twice that).
    pub fn open_cached(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::open_with(dir, COMPACT_MIN_DEAD_BYTES, cache_bytes)
    }

    fn open_with(dir: &Path, compact_min_dead: u64, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = open_sled(dir, cache_bytes)?;
        check_format(&db, dir)?;
        let citizens = db.open_tree("citizens")?;
        let meta = db.open_tree("meta")?;
        let slot = u64_at(&meta, SLOT_KEY, "bad records slot")?
            .unwrap_or(0)
            .try_into()
            .ok()
            .filter(|s: &u8| *s < 2)
            .ok_or_else(|| StoreError::Corrupt("bad records slot".into()))?;
        let records = Arc::new(RecordFile::open(dir, slot)?);
        let log = std::fs::File::open(dir.join(SLED_LOG))
            .map_err(|e| StoreError::Unavailable(format!("cannot open the store's log: {e}")))?;
        records.set_shredded(u64_at(&meta, SHREDDED_KEY, "bad shredded count")?.unwrap_or(0));
        let (slots, report) = GrantSlots::open(dir)?;
        let mut store = Self {
            consents: db.open_tree("standing_consents")?,
            idempotency: db.open_tree("idempotency")?,
            grant_idempotency: db.open_tree("grant_idempotency")?,
            cases: db.open_tree("cases")?,
            case_owners: db.open_tree("case_owners")?,
            open_cases: db.open_tree("open_cases")?,
            db,
            citizens,
            meta,
            records,
            slots: Arc::new(slots),
            slot_repairs: SlotRepairs {
                freed_torn: report.freed_torn,
                ended_unreadable: report.ended_unreadable,
            },
            log: Arc::new(log),
            flushes: Arc::default(),
            slot_syncs: Arc::default(),
        };
        store.recover_records()?;
        store.compact_records(dir, compact_min_dead)?;
        Ok(store)
    }

    /// Copies the live frames into the other slot's file when the current one is mostly
    /// shredded frames (or finishes a copy a crash cut short), switches the slot durably, then
    /// zeroes and removes the old file. Runs at open, before anything else uses the store.
    fn compact_records(&mut self, dir: &Path, min_dead: u64) -> Result<(), StoreError> {
        let to = 1 - self.records.slot();
        match self.meta_u64(COMPACTING_KEY, "bad compaction mark")? {
            Some(t) if t == u64::from(to) => {}
            Some(_) => return Err(StoreError::Corrupt("bad compaction mark".into())),
            None => {
                if dir.join(SLOT_FILES[usize::from(to)]).exists() {
                    // The old file of a compaction that switched slots just before a crash.
                    return RecordFile::open(dir, to)?.zero_and_remove(dir);
                }
                // The count is kept at each flush (a crash can lose the last few, or count a
                // frame twice): good enough to decide, never needed for correctness.
                let dead = self.records.shredded();
                let live = self.records.len()?.saturating_sub(dead);
                if dead < min_dead.max(live) {
                    return Ok(());
                }
                self.meta
                    .insert(COMPACTING_KEY, u64::from(to).to_be_bytes().as_slice())?;
                self.db.flush()?;
            }
        }
        let target = RecordFile::open(dir, to)?;
        // A cut-short copy may have left frames no index entry points at.
        let mut orphans = Vec::new();
        target.scan(
            0,
            &mut |at, h| {
                let current = self.location(&BlindId::from_bytes(h.blind))?;
                if h.live && current.map(|l| (l.slot, l.offset)) != Some((to, at)) {
                    orphans.push(at);
                }
                Ok(())
            },
            &mut |cut| self.unused_from(to, cut),
        )?;
        for at in orphans {
            target.shred(at)?;
        }
        self.move_records(&target, COMPACT_BATCH, usize::MAX)?;
        let end = target.lock()?.end;
        self.db.flush()?;
        self.meta
            .insert(SLOT_KEY, u64::from(to).to_be_bytes().as_slice())?;
        self.meta.remove(COMPACTING_KEY)?;
        self.write_marks(&target, &mut *target.lock()?, end, true)?;
        self.db.flush()?;
        let old = std::mem::replace(&mut self.records, Arc::new(target));
        old.zero_and_remove(dir)
    }

    /// Copies up to `max_batches` batches of records from the current file into `target`,
    /// pointing their index entries there. An entry whose frame was shredded (an erasure cut
    /// short by a crash) is removed.
    fn move_records(
        &self,
        target: &RecordFile,
        batch: usize,
        max_batches: usize,
    ) -> Result<(), StoreError> {
        use std::ops::Bound;
        let from = self.records.slot();
        let mut after: Option<sled::IVec> = None;
        for _ in 0..max_batches {
            let start = after.clone().map_or(Bound::Unbounded, Bound::Excluded);
            let mut ids = Vec::new();
            let mut payloads = Vec::new();
            let mut seen = 0;
            for kv in self
                .citizens
                .range::<sled::IVec, _>((start, Bound::Unbounded))
            {
                let (k, v) = kv?;
                after = Some(k.clone());
                seen += 1;
                let at = location_of(&v)?;
                if at.slot != from {
                    continue;
                }
                let id = blind_from_key(&k)?;
                match self.records.read(at, &id)? {
                    Some(p) => {
                        ids.push(id);
                        payloads.push(p);
                    }
                    None => {
                        self.citizens.remove(&k)?;
                    }
                }
                if ids.len() >= batch {
                    break;
                }
            }
            if !ids.is_empty() {
                let frames: Vec<(&BlindId, &[u8])> = ids
                    .iter()
                    .zip(&payloads)
                    .map(|(i, p)| (i, p.as_slice()))
                    .collect();
                let mut tail = target.lock()?;
                let (locations, _) =
                    target.append(&mut tail, &frames, &mut |_: &BlindId| Ok(NO_FRAME))?;
                let mut b = sled::Batch::default();
                for (id, at) in ids.iter().zip(&locations) {
                    b.insert(id.as_bytes().as_slice(), at.encode().as_slice());
                }
                self.citizens.apply_batch(b)?;
            }
            if seen == 0 || ids.len() < batch {
                break;
            }
        }
        Ok(())
    }

    /// Bytes of the current file that live frames take.
    #[cfg(test)]
    fn live_bytes(&self) -> Result<u64, StoreError> {
        let slot = self.records.slot();
        let mut live = 0u64;
        for kv in self.citizens.iter() {
            let (_, v) = kv?;
            let at = location_of(&v)?;
            if at.slot == slot {
                live += 64 + u64::from(at.len);
            }
        }
        Ok(live)
    }

    /// Shreds what a crash left unshredded past the clean mark (module docs), then moves the
    /// mark to the end of the file durably.
    fn recover_records(&self) -> Result<(), StoreError> {
        let mark = self
            .meta_u64(CLEAN_THROUGH_KEY, "bad records mark")?
            .unwrap_or(0);
        let mut doomed = Vec::new();
        let mut visit = |at: u64, h: &super::records::Header| {
            if !h.live {
                return Ok(());
            }
            let slot = self.records.slot();
            let current = self.location(&BlindId::from_bytes(h.blind))?;
            if current.map(|l| (l.slot, l.offset)) != Some((slot, at)) {
                doomed.push(at);
                return Ok(());
            }
            // Older frames past the mark are visited themselves; the first one below it
            // was current when the mark was set and may not have been shredded since.
            let mut prev = h.prev;
            while prev != NO_FRAME && prev >= mark {
                let next = self
                    .records
                    .header(prev, u64::MAX)?
                    .map(|p| p.prev)
                    .filter(|p| *p == NO_FRAME || *p < prev)
                    .ok_or_else(|| StoreError::Corrupt("record chain broken".into()))?;
                prev = next;
            }
            if prev != NO_FRAME {
                doomed.push(prev);
            }
            Ok(())
        };
        let slot = self.records.slot();
        let end = self
            .records
            .scan(mark, &mut visit, &mut |cut| self.unused_from(slot, cut))?;
        if doomed.is_empty() && end == mark {
            let mut tail = self.records.lock()?;
            tail.marked = mark;
            tail.counted = self.records.shredded();
            return Ok(());
        }
        for at in doomed {
            self.records.shred(at)?;
        }
        self.records.sync()?;
        self.write_marks(&self.records, &mut *self.records.lock()?, end, true)?;
        self.db.flush()?;
        Ok(())
    }

    /// Writes `file`'s clean mark (`end`) and shredded-bytes count to meta where they differ
    /// from what `tail` says was written last (both when `force`), and notes them in `tail`.
    /// Durable at the next sled flush.
    fn write_marks(
        &self,
        file: &RecordFile,
        tail: &mut Tail,
        end: u64,
        force: bool,
    ) -> Result<(), StoreError> {
        if force || tail.marked != end {
            self.meta
                .insert(CLEAN_THROUGH_KEY, end.to_be_bytes().as_slice())?;
            tail.marked = end;
        }
        let dead = file.shredded();
        if force || tail.counted != dead {
            self.meta
                .insert(SHREDDED_KEY, dead.to_be_bytes().as_slice())?;
            tail.counted = dead;
        }
        Ok(())
    }

    /// No index entry names a frame of `slot` at or past `cut` (reads the whole index: only
    /// after a crash left a torn frame).
    fn unused_from(&self, slot: u8, cut: u64) -> Result<bool, StoreError> {
        for kv in self.citizens.iter() {
            let (_, v) = kv?;
            let at = location_of(&v)?;
            if at.slot == slot && at.offset >= cut {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Where a citizen's frame is (`None`: no record).
    fn location(&self, id: &BlindId) -> Result<Option<Location>, StoreError> {
        self.citizens
            .get(id.as_bytes())?
            .map(|v| location_of(&v))
            .transpose()
    }

    /// The record an index value names, read from the file. `None` if its frame was
    /// shredded (an erasure cut short by a crash).
    fn record_of(&self, id: &BlindId, value: &[u8]) -> Result<Option<SealedRecord>, StoreError> {
        self.record_with(id, value, &|_| true)
    }

    /// The record an index value names, with only the fields `keep` accepts.
    fn record_with(
        &self,
        id: &BlindId,
        value: &[u8],
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<SealedRecord>, StoreError> {
        self.records
            .read(location_of(value)?, id)?
            .map(|p| codec::decode_fields(&p, keep))
            .transpose()
    }

    /// Makes every slot write so far durable, group-committed like `flush`: a slot grant's
    /// insert and durable changes need only this (sled holds nothing of the grant).
    fn sync_slots(&self) -> Result<(), StoreError> {
        self.slot_syncs.run(|| self.slots.sync())
    }

    /// What opening the grant slot file repaired.
    pub fn slot_repairs(&self) -> SlotRepairs {
        self.slot_repairs
    }

    /// One flush (under `flushes`, one at a time): sled's, then a real `fdatasync` of its
    /// log, then the shreds it made safe.
    fn flush_once(&self) -> Result<(), StoreError> {
        let (end, superseded) = {
            let mut tail = self.records.lock()?;
            (tail.end, std::mem::take(&mut tail.superseded))
        };
        // Frames are synced when appended; this makes the index that points past the
        // superseded ones durable, and only then are they shredded.
        // The grant slots first: sled's `released_through` mark must not be durable ahead
        // of the uses it covers.
        let durable = self
            .slots
            .sync()
            .and_then(|()| self.db.flush().map_err(StoreError::from))
            .and_then(|_| {
                // sled 0.34 makes its writes "stable" with `sync_file_range`, which flushes
                // neither the drive's write cache nor the file's size: after a power loss a
                // flushed grant, revoke or consent could be gone (sled's own thread syncs for
                // real only every half second).
                self.log
                    .sync_data()
                    .map_err(|e| StoreError::Unavailable(format!("store log sync: {e}")))
            });
        // Nothing to shred, nothing to sync: appended frames were synced when written (and
        // a grant's or consent's flush, the common case, never touches the record file).
        // A failed flush shreds nothing: the frames wait for the next one.
        let shredded = durable.and_then(|()| {
            if superseded.is_empty() {
                return Ok(());
            }
            superseded
                .iter()
                .try_for_each(|at| self.records.shred(*at).map(drop))
                .and_then(|()| self.records.sync())
        });
        let mut tail = self.records.lock()?;
        if let Err(e) = shredded {
            tail.superseded.extend(superseded);
            return Err(e);
        }
        // Durable at the next flush; until then the older mark only makes an open scan more.
        self.write_marks(&self.records, &mut tail, end, false)
    }

    /// A big-endian u64 kept in `meta` under `key`; `what` names it if it is malformed.
    fn meta_u64(&self, key: &[u8], what: &str) -> Result<Option<u64>, StoreError> {
        u64_at(&self.meta, key, what)
    }

    fn import_key(file_hash: &[u8; 32]) -> Vec<u8> {
        [IMPORT_PREFIX, file_hash.as_slice()].concat()
    }
}

/// A big-endian u64 stored under `key` (`what` names it in the error if it is not one).
fn u64_at(tree: &sled::Tree, key: &[u8], what: &str) -> Result<Option<u64>, StoreError> {
    tree.get(key)?
        .map(|v| {
            let b: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt(what.into()))?;
            Ok(u64::from_be_bytes(b))
        })
        .transpose()
}

/// Opens sled in `dir`. sled's lock of a store closed in this process is released by its
/// background threads a moment after the close, so a lock held is waited for up to two
/// seconds before the store is reported as in use.
fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    const TRIES: u32 = 40;
    let mut waited = 0;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open();
        let locked = matches!(&opened, Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock"));
        match opened {
            Ok(db) => return Ok(db),
            Err(_) if locked && waited < TRIES => {
                waited += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(_) if locked => {
                return Err(StoreError::Unavailable(format!(
                    "the store in {} is in use by another process",
                    dir.display()
                )));
            }
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot open {}: {e}",
                    dir.display()
                )));
            }
        }
    }
}

/// The `Location` a `citizens` value holds.
fn location_of(v: &[u8]) -> Result<Location, StoreError> {
    Location::decode(v).ok_or_else(|| StoreError::Corrupt("record index entry unreadable".into()))
}

/// Checks the store's format version, or writes it into a new store. A store with content
/// and no version was written before versions were kept; one with another version by another
/// build: both are refused, naming the directory and the versions.
fn check_format(db: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    let meta = db.open_tree("meta")?;
    let found = u64_at(&meta, FORMAT_KEY, "bad store format version")?;
    match found {
        Some(STORE_FORMAT) => Ok(()),
        Some(v) => Err(StoreError::Unavailable(format!(
            "the store in {} has format {v}; this build reads format {STORE_FORMAT} only",
            dir.display()
        ))),
        None => {
            let empty = db
                .tree_names()
                .iter()
                .all(|name| db.open_tree(name).map(|t| t.is_empty()).unwrap_or(false))
                && !dir.join(grant_slots::FILE).exists()
                && !super::records::SLOT_FILES
                    .iter()
                    .any(|f| dir.join(f).exists());
            if !empty {
                return Err(StoreError::Unavailable(format!(
                    "the store in {} has no format version (written by an older build); \
                     this build reads format {STORE_FORMAT} only",
                    dir.display()
                )));
            }
            meta.insert(FORMAT_KEY, STORE_FORMAT.to_be_bytes().as_slice())?;
            db.flush()?;
            Ok(())
        }
    }
}

fn joined(parts: &[&str]) -> Vec<u8> {
    parts.join("\u{0}").into_bytes()
}

fn blind_from_key(k: &[u8]) -> Result<BlindId, StoreError> {
    let b: [u8; 32] = k
        .try_into()
        .map_err(|_| StoreError::Corrupt("bad citizen key".into()))?;
    Ok(BlindId::from_bytes(b))
}

/// sled's errors become the store's one failure, converted here at the store's edge only.
impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// Sled cannot commit with the log: the defaults' orders (its spent uses are replayed from
/// the log, `vault::uses`).
impl AuditedStore for SledStore {}

impl RecordStore for SledStore {
    fn citizen(&self, id: &BlindId) -> Result<Option<SealedRecord>, StoreError> {
        self.citizen_fields(id, &|_| true)
    }

    fn citizen_fields(
        &self,
        id: &BlindId,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<SealedRecord>, StoreError> {
        let mut value = self.citizens.get(id.as_bytes())?;
        let mut tries = 0;
        loop {
            let Some(v) = &value else { return Ok(None) };
            let read = self.record_with(id, v, keep);
            if matches!(read, Ok(Some(_))) {
                return read;
            }
            // A rewrite between the index read and the frame read, whose flush then shredded
            // the old frame, looks like a shredded or torn frame: read the index again.
            let again = self.citizens.get(id.as_bytes())?;
            tries += 1;
            if again == value || tries == 4 {
                return read;
            }
            value = again;
        }
    }

    fn put_encoded(&self, records: &[(BlindId, EncodedRecord)]) -> Result<(), StoreError> {
        let frames: Vec<(&BlindId, &[u8])> =
            records.iter().map(|(id, e)| (id, e.bytes())).collect();
        let mut tail = self.records.lock()?;
        let (locations, superseded) =
            self.records
                .append(&mut tail, &frames, &mut |id: &BlindId| {
                    Ok(self
                        .location(id)?
                        .filter(|l| l.slot == self.records.slot())
                        .map_or(NO_FRAME, |l| l.offset))
                })?;
        let mut batch = sled::Batch::default();
        for ((id, _), at) in records.iter().zip(&locations) {
            batch.insert(id.as_bytes().as_slice(), at.encode().as_slice());
        }
        if let Err(e) = self.citizens.apply_batch(batch) {
            // Nothing points at the new frames: shred them now (or at the next open).
            for at in &locations {
                let _ = self.records.shred(at.offset);
            }
            let _ = self.records.sync();
            return Err(e.into());
        }
        tail.superseded.extend(superseded);
        Ok(())
    }

    fn delete_citizen(&self, id: &BlindId) -> Result<bool, StoreError> {
        let tail = self.records.lock()?;
        let existed = match self.citizens.get(id.as_bytes())? {
            Some(v) => {
                let at = location_of(&v)?;
                if at.slot != self.records.slot() {
                    return Err(StoreError::Corrupt(
                        "record index entry names a record file that is gone".into(),
                    ));
                }
                self.records.shred_chain(at.offset)?;
                self.records.sync()?;
                self.citizens.remove(id.as_bytes())?;
                true
            }
            None => false,
        };
        drop(tail);
        self.flush()?;
        Ok(existed)
    }

    fn citizens_after(
        &self,
        after: Option<&BlindId>,
        limit: usize,
    ) -> Result<Vec<(BlindId, SealedRecord)>, StoreError> {
        let iter = match after {
            Some(a) => self.citizens.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes().as_slice()),
                std::ops::Bound::Unbounded,
            )),
            None => self.citizens.iter(),
        };
        let mut out = Vec::with_capacity(limit.min(4096));
        for kv in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            let id = blind_from_key(&k)?;
            if let Some(r) = self.record_of(&id, &v)? {
                out.push((id, r));
            }
        }
        Ok(out)
    }

    fn citizen_count(&self) -> Result<u64, StoreError> {
        Ok(self.citizens.len() as u64)
    }
}

impl GrantStore for SledStore {
    fn new_grant_id(&self) -> Result<GrantId, StoreError> {
        self.slots.reserve()
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        self.slots.get(id)
    }

    fn insert_grant(&self, grant: &Grant) -> Result<bool, StoreError> {
        let stored = self.slots.insert(grant)?;
        if stored {
            self.sync_slots()?;
        }
        Ok(stored)
    }

    fn update_grant(
        &self,
        id: &str,
        durable: bool,
        change: &mut dyn FnMut(&mut Grant) -> Result<(), VaultError>,
    ) -> Result<Grant, StoreError> {
        let g = self.slots.update(id, change)?;
        if durable {
            self.sync_slots()?;
        }
        Ok(g)
    }

    fn update_grant_state(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut GrantState) -> Result<(), VaultError>,
    ) -> Result<GrantState, StoreError> {
        self.slots.update_state(id, change)
    }

    fn break_glass_grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.slots.break_glass()
    }

    fn grant_id_by_code(&self, code: &str) -> Result<Option<GrantId>, StoreError> {
        self.slots.id_by_code(code)
    }

    fn grants_of_citizen(&self, citizen: &BlindId) -> Result<Vec<Grant>, StoreError> {
        self.slots.of_citizen(&citizen.to_string())
    }

    fn grants_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Grant>, Option<String>), StoreError> {
        let from = after.and_then(grant_slots::resume_from).unwrap_or(0);
        let (grants, next) = self.slots.page(from, limit)?;
        Ok((
            grants,
            next.map(|slot| grant_slots::cursor_after(slot.saturating_sub(1))),
        ))
    }

    fn sweep_grants(
        &self,
        after: Option<&str>,
        scan: usize,
        cutoff: Timestamp,
    ) -> Result<(usize, Option<String>), StoreError> {
        let from = after.and_then(grant_slots::resume_from).unwrap_or(0);
        let (deleted, next) = self.slots.sweep(from, scan.max(1), cutoff.as_secs())?;
        for id in &deleted {
            if let Some(name) = self.grant_idempotency.remove(id.as_bytes())? {
                self.idempotency.remove(name)?;
            }
        }
        Ok((
            deleted.len(),
            next.map(|slot| grant_slots::cursor_after(slot.saturating_sub(1))),
        ))
    }
}

impl ConsentStore for SledStore {
    fn put_consent(&self, consent: &StandingConsent) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(consent)
            .map_err(|_| StoreError::Corrupt("consent not encodable".into()))?;
        self.consents
            .insert(joined(&[&consent.citizen, &consent.id]), bytes)?;
        self.flush()
    }

    fn consents_of_citizen(&self, citizen: &BlindId) -> Result<Vec<StandingConsent>, StoreError> {
        let mut prefix = citizen.to_string().into_bytes();
        prefix.push(0);
        self.consents
            .scan_prefix(prefix)
            .map(|kv| {
                let (_, v) = kv?;
                serde_json::from_slice(&v)
                    .map_err(|_| StoreError::Corrupt("consent unreadable".into()))
            })
            .collect()
    }

    fn delete_consent(&self, citizen: &BlindId, id: &str) -> Result<bool, StoreError> {
        let existed = self
            .consents
            .remove(joined(&[&citizen.to_string(), id]))?
            .is_some();
        if existed {
            self.flush()?;
        }
        Ok(existed)
    }

    fn sweep_consents(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for kv in self.consents.iter() {
            let (k, v) = kv?;
            let c: StandingConsent = serde_json::from_slice(&v)
                .map_err(|_| StoreError::Corrupt("consent unreadable".into()))?;
            let ended = c.withdrawn.unwrap_or(c.expires).min(c.expires);
            if ended < cutoff && self.consents.remove(k)?.is_some() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

impl IdempotencyStore for SledStore {
    fn remembered(&self, name: &[u8; 32]) -> Result<Option<Remembered>, StoreError> {
        self.idempotency
            .get(name)?
            .map(|v| decode_remembered(&v))
            .transpose()
    }

    fn remember(&self, name: &[u8; 32], what: &Remembered) -> Result<bool, StoreError> {
        let r = self.idempotency.compare_and_swap(
            name,
            None as Option<&[u8]>,
            Some(encode_remembered(what)),
        )?;
        if r.is_ok()
            && let RememberedAnswer::Grant(id) = &what.answer
        {
            self.grant_idempotency.insert(id.as_bytes(), name)?;
        }
        self.flush()?;
        Ok(r.is_ok())
    }

    fn sweep_remembered(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for kv in self.idempotency.iter() {
            let (k, v) = kv?;
            // An unreadable record stays (a read of it reports it); it does not stop the
            // sweep of the others.
            let Ok(r) = decode_remembered(&v) else {
                continue;
            };
            if matches!(r.answer, RememberedAnswer::Sealed(_))
                && r.created < cutoff
                && self
                    .idempotency
                    .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)?
                    .is_ok()
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

impl SledStore {
    fn rows_at(
        &self,
        keys: impl Iterator<Item = Result<Vec<u8>, StoreError>>,
    ) -> Result<Vec<CaseRow>, StoreError> {
        let mut rows = Vec::new();
        for key in keys {
            // An index row whose case is gone (deleted by an erasure) is skipped.
            if let Some(v) = self.cases.get(key?)? {
                rows.push(cases::decode(&v)?);
            }
        }
        Ok(rows)
    }
}

impl CaseStore for SledStore {
    fn put_case(&self, row: &CaseRow) -> Result<(), StoreError> {
        use sled::Transactional as _;
        let key = cases::case_key(row.kind, &row.id);
        let owner = cases::citizen_key(&row.citizen, row.kind, &row.id);
        let bytes = cases::encode(row)?;
        (&self.cases, &self.case_owners, &self.open_cases)
            .transaction(|(all, owners, open)| {
                all.insert(key.as_slice(), bytes.as_slice())?;
                owners.insert(owner.as_slice(), &[] as &[u8])?;
                if row.open {
                    open.insert(key.as_slice(), &[] as &[u8])?;
                } else {
                    open.remove(key.as_slice())?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| StoreError::Unavailable(format!("case not stored: {e:?}")))?;
        self.flush()
    }

    fn case(&self, kind: CaseKind, id: &str) -> Result<Option<CaseRow>, StoreError> {
        self.cases
            .get(cases::case_key(kind, id))?
            .map(|v| cases::decode(&v))
            .transpose()
    }

    fn cases_of_citizen(
        &self,
        citizen: &BlindId,
        kind: CaseKind,
    ) -> Result<Vec<CaseRow>, StoreError> {
        let prefix = cases::citizen_key(citizen, kind, "");
        self.rows_at(self.case_owners.scan_prefix(prefix).map(|kv| {
            let (k, _) = kv?;
            Ok(k.get(32..).unwrap_or_default().to_vec())
        }))
    }

    fn open_cases(&self, kind: CaseKind) -> Result<Vec<CaseRow>, StoreError> {
        let prefix = cases::case_key(kind, "");
        self.rows_at(
            self.open_cases
                .scan_prefix(prefix)
                .map(|kv| Ok(kv?.0.to_vec())),
        )
    }

    fn cases_of_kind(&self, kind: CaseKind) -> Result<Vec<CaseRow>, StoreError> {
        self.cases
            .scan_prefix(cases::case_key(kind, ""))
            .map(|kv| cases::decode(&kv?.1))
            .collect()
    }

    fn delete_cases_of_citizen(&self, citizen: &BlindId) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for kv in self.case_owners.scan_prefix(citizen.as_bytes()) {
            let (owner, _) = kv?;
            let key = owner.get(32..).unwrap_or_default();
            if self.cases.remove(key)?.is_some() {
                deleted += 1;
            }
            self.open_cases.remove(key)?;
            self.case_owners.remove(&owner)?;
        }
        self.flush()?;
        Ok(deleted)
    }
}

impl MetaStore for SledStore {
    fn keyring(&self) -> Result<Option<KeyringRecord>, StoreError> {
        self.meta
            .get(KEYRING_KEY)?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|_| StoreError::Corrupt("keyring record unreadable".into()))
            })
            .transpose()
    }

    fn put_keyring(&self, record: &KeyringRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|_| StoreError::Corrupt("keyring record unencodable".into()))?;
        self.meta.insert(KEYRING_KEY, bytes)?;
        self.flush()
    }

    fn import_checkpoint(&self, file_hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        self.meta_u64(&Self::import_key(file_hash), "bad import checkpoint")
    }

    fn set_import_checkpoint(
        &self,
        file_hash: &[u8; 32],
        line: Option<u64>,
    ) -> Result<(), StoreError> {
        let key = Self::import_key(file_hash);
        match line {
            Some(l) => self.meta.insert(key, l.to_be_bytes().as_slice())?,
            None => self.meta.remove(key)?,
        };
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.flushes.run(|| self.flush_once())
    }

    fn released_through(&self) -> Result<Option<u64>, StoreError> {
        self.meta_u64(RELEASED_THROUGH_KEY, "bad released-through mark")
    }

    fn set_released_through(&self, size: u64) -> Result<(), StoreError> {
        // The uses spent so far are in the slot file's pages: durable before the mark can be
        // (sled may write its log, with the mark, before the store's next flush).
        self.slots.sync()?;
        self.meta
            .insert(RELEASED_THROUGH_KEY, size.to_be_bytes().as_slice())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
