//! `SledStore`: the embedded default (sled 0.34) with the record file beside it. Trees:
//! `citizens` (blind id → the `Location` of the citizen's frame in `records.dat`,
//! `records.rs`; a store written before the record file holds the sealed record itself, read
//! as before and moved to the file when next written), `meta` (keyring, import checkpoints, the released-through mark), `grant_info`
//! (id → grant JSON as inserted) and `grant_state` (id → the grant's mutable state,
//! `grant_state.rs`), with
//! `verification_codes`, `citizen_grants`, `standing_consents` (blind id, consent id → a
//! `StandingConsent` as JSON), `idempotency`, and
//! `grant_idempotency` (id → the idempotency key naming it). Writes are durable only after
//! `flush`. The four grant trees hold only grants made before the slot file: a new grant
//! gets a slot id (`SledStore::new_grant_id`) and lives in `grants.slots`
//! (`grant_slots.rs`), which the flush syncs before sled; older grants stay here and age
//! out through the retention sweep, whose one walk covers both.
//!
//! A grant's state record is the one place its mutable fields live: every change
//! (a release's spent use, a revoke, an approval) is one compare-and-swap on it, so exactly
//! one caller wins a grant's last use and a revoke orders cleanly against releases, while a
//! release rewrites a few dozen bytes instead of the whole grant. The state record exists for
//! every live grant: it is written before the grant's JSON and deleted first, so a grant whose
//! state is gone reads as not found. Stores written before the split (grant JSON with its
//! state in the `grants` tree) are migrated when opened.
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

use super::grant_slots::{self, GrantSlots};
use super::group::FlushGroup;
use super::records::{Location, NO_FRAME, RecordFile, SLOT_FILES, Tail};
use super::{EncodedRecord, SealedRecord, VaultStore, codec, grant_state};
use crate::consent::StandingConsent;
use crate::error::VaultError;
use crate::grant::{Grant, GrantState};
use crate::id::BlindId;
use crate::keyring::KeyringRecord;

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
    grants: sled::Tree,
    states: sled::Tree,
    codes: sled::Tree,
    citizen_grants: sled::Tree,
    consents: sled::Tree,
    idempotency: sled::Tree,
    grant_idempotency: sled::Tree,
    records: Arc<RecordFile>,
    /// Grants with slot ids (`grant_slots.rs`); the trees above hold the older ones.
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
    pub fn open(dir: &Path) -> Result<Self, VaultError> {
        Self::open_cached(dir, DEFAULT_CACHE_BYTES)
    }

    /// As `open`, with sled's page cache limited to `cache_bytes` (sled's own accounting; the
    /// heap it holds is about twice that).
    pub fn open_cached(dir: &Path, cache_bytes: u64) -> Result<Self, VaultError> {
        Self::open_with(dir, COMPACT_MIN_DEAD_BYTES, cache_bytes)
    }

    fn open_with(dir: &Path, compact_min_dead: u64, cache_bytes: u64) -> Result<Self, VaultError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| {
                VaultError::StoreUnavailable(format!("cannot open {}: {e}", dir.display()))
            })?;
        let citizens = db.open_tree("citizens")?;
        let meta = db.open_tree("meta")?;
        let slot = u64_at(&meta, SLOT_KEY, "bad records slot")?
            .unwrap_or(0)
            .try_into()
            .ok()
            .filter(|s: &u8| *s < 2)
            .ok_or_else(|| VaultError::StoreCorrupt("bad records slot".into()))?;
        let records = Arc::new(RecordFile::open(dir, slot)?);
        let log = std::fs::File::open(dir.join(SLED_LOG)).map_err(|e| {
            VaultError::StoreUnavailable(format!("cannot open the store's log: {e}"))
        })?;
        records.set_shredded(u64_at(&meta, SHREDDED_KEY, "bad shredded count")?.unwrap_or(0));
        let (slots, report) = GrantSlots::open(dir)?;
        // Consent decisions kept per agency and purpose, before consent was specific: they
        // are not standing consents (the citizen never asked for one), so they go.
        db.drop_tree("consents")?;
        let mut store = Self {
            grants: db.open_tree("grant_info")?,
            states: db.open_tree("grant_state")?,
            codes: db.open_tree("verification_codes")?,
            citizen_grants: db.open_tree("citizen_grants")?,
            consents: db.open_tree("standing_consents")?,
            idempotency: db.open_tree("idempotency")?,
            grant_idempotency: db.open_tree("grant_idempotency")?,
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
        store.migrate_combined_grants()?;
        store.recover_records()?;
        store.compact_records(dir, compact_min_dead)?;
        Ok(store)
    }

    /// Copies the live frames into the other slot's file when the current one is mostly
    /// shredded frames (or finishes a copy a crash cut short), switches the slot durably, then
    /// zeroes and removes the old file. Runs at open, before anything else uses the store.
    fn compact_records(&mut self, dir: &Path, min_dead: u64) -> Result<(), VaultError> {
        let to = 1 - self.records.slot();
        match self.meta_u64(COMPACTING_KEY, "bad compaction mark")? {
            Some(t) if t == u64::from(to) => {}
            Some(_) => return Err(VaultError::StoreCorrupt("bad compaction mark".into())),
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
    ) -> Result<(), VaultError> {
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
                let Some(at) = Location::decode(&v).filter(|l| l.slot == from) else {
                    continue;
                };
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
    fn live_bytes(&self) -> Result<u64, VaultError> {
        let slot = self.records.slot();
        let mut live = 0u64;
        for kv in self.citizens.iter() {
            let (_, v) = kv?;
            if let Some(at) = Location::decode(&v).filter(|l| l.slot == slot) {
                live += 64 + u64::from(at.len);
            }
        }
        Ok(live)
    }

    /// Shreds what a crash left unshredded past the clean mark (module docs), then moves the
    /// mark to the end of the file durably.
    fn recover_records(&self) -> Result<(), VaultError> {
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
                    .ok_or_else(|| VaultError::StoreCorrupt("record chain broken".into()))?;
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
    ) -> Result<(), VaultError> {
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
    fn unused_from(&self, slot: u8, cut: u64) -> Result<bool, VaultError> {
        for kv in self.citizens.iter() {
            let (_, v) = kv?;
            if Location::decode(&v).is_some_and(|l| l.slot == slot && l.offset >= cut) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Where a citizen's frame is (`None`: no record, or one stored inline by an older store).
    fn location(&self, id: &BlindId) -> Result<Option<Location>, VaultError> {
        Ok(self
            .citizens
            .get(id.as_bytes())?
            .and_then(|v| Location::decode(&v)))
    }

    /// The record an index value names: read from the file, or decoded in place for a record
    /// stored inline. `None` if its frame was shredded (an erasure cut short by a crash).
    fn record_of(&self, id: &BlindId, value: &[u8]) -> Result<Option<SealedRecord>, VaultError> {
        self.record_with(id, value, &|_| true)
    }

    /// The record an index value names, with only the fields `keep` accepts.
    fn record_with(
        &self,
        id: &BlindId,
        value: &[u8],
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<SealedRecord>, VaultError> {
        match Location::decode(value) {
            Some(at) => self
                .records
                .read(at, id)?
                .map(|p| codec::decode_fields(&p, keep))
                .transpose(),
            None => codec::decode_fields(value, keep).map(Some),
        }
    }

    /// Makes every slot write so far durable, group-committed like `flush`: a slot grant's
    /// insert and durable changes need only this (sled holds nothing of the grant).
    fn sync_slots(&self) -> Result<(), VaultError> {
        self.slot_syncs.run(|| self.slots.sync())
    }

    /// What opening the grant slot file repaired.
    pub fn slot_repairs(&self) -> SlotRepairs {
        self.slot_repairs
    }

    /// Moves grants from the pre-split `grants` tree (JSON holding its own state) into
    /// `grant_state` and `grant_info`, then drops that tree. Safe to repeat after a crash: a
    /// state record already written is kept (it may be newer than the old JSON).
    fn migrate_combined_grants(&self) -> Result<(), VaultError> {
        const LEGACY: &[u8] = b"grants";
        if !self.db.tree_names().iter().any(|n| n.as_ref() == LEGACY) {
            return Ok(());
        }
        let legacy = self.db.open_tree(LEGACY)?;
        for kv in legacy.iter() {
            let (id, json) = kv?;
            let g = decode_grant(&json)?;
            let _ = self.states.compare_and_swap(
                &id,
                None as Option<&[u8]>,
                Some(grant_state::encode(&g)),
            )?;
            self.grants.insert(&id, json)?;
        }
        self.flush()?;
        self.db.drop_tree(LEGACY)?;
        self.flush()
    }

    /// The grant's JSON and its current state record, read in that order (a grant being
    /// inserted has its state first; one being deleted loses its state first).
    fn load_grant(&self, id: &[u8]) -> Result<Option<(Grant, sled::IVec)>, VaultError> {
        let Some(json) = self.grants.get(id)? else {
            return Ok(None);
        };
        let Some(state) = self.states.get(id)? else {
            return Ok(None);
        };
        let mut g = decode_grant(&json)?;
        grant_state::apply(&state, &mut g)?;
        Ok(Some((g, state)))
    }

    /// Removes a grant whose state record is already gone: its JSON, verification code,
    /// citizen link and idempotency key.
    fn remove_grant_links(&self, id: &[u8], g: &Grant) -> Result<(), VaultError> {
        self.grants.remove(id)?;
        let _ = self.codes.compare_and_swap(
            g.verification_code.as_bytes(),
            Some(id),
            None as Option<&[u8]>,
        )?;
        self.citizen_grants.remove(joined(&[&g.citizen, &g.id]))?;
        if let Some(name) = self.grant_idempotency.remove(id)? {
            self.idempotency.remove(name)?;
        }
        Ok(())
    }

    /// One flush (under `flushes`, one at a time): sled's, then a real `fdatasync` of its
    /// log, then the shreds it made safe.
    fn flush_once(&self) -> Result<(), VaultError> {
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
            .and_then(|()| self.db.flush().map_err(VaultError::from))
            .and_then(|_| {
                // sled 0.34 makes its writes "stable" with `sync_file_range`, which flushes
                // neither the drive's write cache nor the file's size: after a power loss a
                // flushed grant, revoke or consent could be gone (sled's own thread syncs for
                // real only every half second).
                self.log
                    .sync_data()
                    .map_err(|e| VaultError::StoreUnavailable(format!("store log sync: {e}")))
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

    /// `sweep_grants` over the older grants, in sled; also returns how many it read.
    fn sweep_sled(
        &self,
        after: Option<&str>,
        scan: usize,
        cutoff_secs: i64,
    ) -> Result<(usize, Option<String>, usize), VaultError> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.as_bytes().to_vec()));
        let batch: Vec<(sled::IVec, sled::IVec)> = self
            .grants
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(scan.max(1))
            .collect::<Result<_, _>>()?;
        let next = if batch.len() < scan.max(1) {
            None
        } else {
            batch
                .last()
                .and_then(|(k, _)| String::from_utf8(k.to_vec()).ok())
        };
        let mut purged = 0;
        let read = batch.len();
        for (id, json) in batch {
            let Some(state) = self.states.get(&id)? else {
                // A deletion interrupted by a crash (its state went first): finish it.
                let g = decode_grant(&json)?;
                self.remove_grant_links(&id, &g)?;
                continue;
            };
            // The state record decides most grants without the JSON: the sweep reads every
            // grant once per cycle, and all but the ended ones are kept.
            let quick = grant_state::decode_state(&state)?;
            if let Some(st) = &quick
                && (st.break_glass || st.end_bound_secs().is_some_and(|b| b >= cutoff_secs))
            {
                #[cfg(debug_assertions)]
                {
                    let mut g = decode_grant(&json)?;
                    grant_state::apply(&state, &mut g)?;
                    debug_assert!(g.break_glass || g.latest_end_secs() >= cutoff_secs);
                }
                continue;
            }
            let mut g = decode_grant(&json)?;
            grant_state::apply(&state, &mut g)?;
            if g.break_glass || g.latest_end_secs() >= cutoff_secs {
                continue;
            }
            // Only if unchanged since read (a concurrent update keeps it for the next pass).
            if self
                .states
                .compare_and_swap(&id, Some(&state), None as Option<&[u8]>)?
                .is_err()
            {
                continue;
            }
            self.remove_grant_links(&id, &g)?;
            purged += 1;
        }
        Ok((purged, next, read))
    }

    /// A big-endian u64 kept in `meta` under `key`; `what` names it if it is malformed.
    fn meta_u64(&self, key: &[u8], what: &str) -> Result<Option<u64>, VaultError> {
        u64_at(&self.meta, key, what)
    }

    fn import_key(file_hash: &[u8; 32]) -> Vec<u8> {
        [IMPORT_PREFIX, file_hash.as_slice()].concat()
    }
}

/// A big-endian u64 stored under `key` (`what` names it in the error if it is not one).
fn u64_at(tree: &sled::Tree, key: &[u8], what: &str) -> Result<Option<u64>, VaultError> {
    tree.get(key)?
        .map(|v| {
            let b: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| VaultError::StoreCorrupt(what.into()))?;
            Ok(u64::from_be_bytes(b))
        })
        .transpose()
}

fn encode_grant(g: &Grant) -> Result<Vec<u8>, VaultError> {
    serde_json::to_vec(g).map_err(|_| VaultError::StoreCorrupt("grant unencodable".into()))
}

fn decode_grant(b: &[u8]) -> Result<Grant, VaultError> {
    serde_json::from_slice(b).map_err(|_| VaultError::StoreCorrupt("grant unreadable".into()))
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

/// sled's errors become the store's one failure, converted here at the store's edge only.
impl From<sled::Error> for VaultError {
    fn from(e: sled::Error) -> Self {
        Self::StoreUnavailable(e.to_string())
    }
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
        self.citizen_fields(id, &|_| true)
    }

    fn citizen_fields(
        &self,
        id: &BlindId,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<SealedRecord>, VaultError> {
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

    fn put_encoded(&self, records: &[(BlindId, EncodedRecord)]) -> Result<(), VaultError> {
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

    fn delete_citizen(&self, id: &BlindId) -> Result<bool, VaultError> {
        let tail = self.records.lock()?;
        let existed = match self.citizens.get(id.as_bytes())? {
            Some(v) => {
                if let Some(at) = Location::decode(&v) {
                    if at.slot != self.records.slot() {
                        return Err(VaultError::StoreCorrupt(
                            "record index entry names a record file that is gone".into(),
                        ));
                    }
                    self.records.shred_chain(at.offset)?;
                    self.records.sync()?;
                }
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
    ) -> Result<Vec<(BlindId, SealedRecord)>, VaultError> {
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

    fn citizen_count(&self) -> Result<u64, VaultError> {
        Ok(self.citizens.len() as u64)
    }

    fn import_checkpoint(&self, file_hash: &[u8; 32]) -> Result<Option<u64>, VaultError> {
        self.meta_u64(&Self::import_key(file_hash), "bad import checkpoint")
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
        self.flushes.run(|| self.flush_once())
    }

    fn released_through(&self) -> Result<Option<u64>, VaultError> {
        self.meta_u64(RELEASED_THROUGH_KEY, "bad released-through mark")
    }

    fn set_released_through(&self, size: u64) -> Result<(), VaultError> {
        // The uses spent so far are in the slot file's pages: durable before the mark can be
        // (sled may write its log, with the mark, before the store's next flush).
        self.slots.sync()?;
        self.meta
            .insert(RELEASED_THROUGH_KEY, size.to_be_bytes().as_slice())?;
        Ok(())
    }

    fn new_grant_id(&self) -> Result<String, VaultError> {
        match self.slots.reserve()? {
            Some(id) => Ok(id),
            None => crate::grant::new_grant_id(),
        }
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>, VaultError> {
        if grant_slots::parse_id(id).is_some() {
            return self.slots.get(id);
        }
        Ok(self.load_grant(id.as_bytes())?.map(|(g, _)| g))
    }

    fn insert_grant(&self, grant: &Grant) -> Result<bool, VaultError> {
        if grant_slots::parse_id(&grant.id).is_some() {
            let stored = self
                .slots
                .insert(grant, &|code| Ok(self.codes.contains_key(code)?))?;
            if stored {
                self.sync_slots()?;
            }
            return Ok(stored);
        }
        let claimed = self.codes.compare_and_swap(
            grant.verification_code.as_bytes(),
            None as Option<&[u8]>,
            Some(grant.id.as_bytes()),
        )?;
        if claimed.is_err() {
            return Ok(false);
        }
        // Claimed, then checked against the slots' codes (which claim theirs before checking
        // these): of two inserts racing for one code, one sees the other.
        if self.slots.has_code(&grant.verification_code)? {
            self.codes.remove(grant.verification_code.as_bytes())?;
            return Ok(false);
        }
        self.states
            .insert(grant.id.as_bytes(), grant_state::encode(grant))?;
        self.grants
            .insert(grant.id.as_bytes(), encode_grant(grant)?)?;
        self.citizen_grants
            .insert(joined(&[&grant.citizen, &grant.id]), grant.id.as_bytes())?;
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
        if grant_slots::parse_id(id).is_some() {
            let g = self.slots.update(id, change)?;
            if durable {
                self.sync_slots()?;
            }
            return Ok(g);
        }
        loop {
            let (mut g, old) = self
                .load_grant(id.as_bytes())?
                .ok_or(VaultError::GrantNotFound)?;
            let new = grant_state::change_state(&mut g, change)?;
            if self
                .states
                .compare_and_swap(id, Some(old), Some(new))?
                .is_ok()
            {
                if durable {
                    self.flush()?;
                }
                return Ok(g);
            }
        }
    }

    fn update_grant_state(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut GrantState) -> Result<(), VaultError>,
    ) -> Result<GrantState, VaultError> {
        if grant_slots::parse_id(id).is_some() {
            return self.slots.update_state(id, change);
        }
        loop {
            let old = self.states.get(id)?.ok_or(VaultError::GrantNotFound)?;
            let mut st = match grant_state::decode_state(&old)? {
                Some(st) => st,
                // A format-1 record (older store): the grant gives the fixed facts, and the
                // swap below writes format 2.
                None => {
                    let json = self.grants.get(id)?.ok_or(VaultError::GrantNotFound)?;
                    let mut g = decode_grant(&json)?;
                    grant_state::apply(&old, &mut g)?;
                    GrantState::of(&g)
                }
            };
            change(&mut st)?;
            let new = grant_state::encode_state(&st);
            if self
                .states
                .compare_and_swap(id, Some(old), Some(new))?
                .is_ok()
            {
                return Ok(st);
            }
        }
    }

    fn break_glass_grants(&self) -> Result<Vec<Grant>, VaultError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(joined(&["break_glass", ""])) {
            let (_, id) = kv?;
            if let Some((g, _)) = self.load_grant(&id)? {
                out.push(g);
            }
        }
        out.extend(self.slots.break_glass()?);
        Ok(out)
    }

    fn grant_id_by_code(&self, code: &str) -> Result<Option<String>, VaultError> {
        if let Some(id) = self.slots.id_by_code(code)? {
            return Ok(Some(id));
        }
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
            if let Some((g, _)) = self.load_grant(&id)? {
                out.push(g);
            }
        }
        out.extend(self.slots.of_citizen(citizen)?);
        Ok(out)
    }

    fn put_consent(&self, consent: &StandingConsent) -> Result<(), VaultError> {
        let bytes = serde_json::to_vec(consent)
            .map_err(|_| VaultError::StoreCorrupt("consent not encodable".into()))?;
        self.consents
            .insert(joined(&[&consent.citizen, &consent.id]), bytes)?;
        self.flush()
    }

    fn consents_of_citizen(&self, citizen: &str) -> Result<Vec<StandingConsent>, VaultError> {
        let mut prefix = citizen.as_bytes().to_vec();
        prefix.push(0);
        self.consents
            .scan_prefix(prefix)
            .map(|kv| {
                let (_, v) = kv?;
                serde_json::from_slice(&v)
                    .map_err(|_| VaultError::StoreCorrupt("consent unreadable".into()))
            })
            .collect()
    }

    fn delete_consent(&self, citizen: &str, id: &str) -> Result<bool, VaultError> {
        let existed = self.consents.remove(joined(&[citizen, id]))?.is_some();
        if existed {
            self.flush()?;
        }
        Ok(existed)
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

    fn sweep_grants(
        &self,
        after: Option<&str>,
        scan: usize,
        cutoff_secs: i64,
    ) -> Result<(usize, Option<String>), VaultError> {
        // One walk in id order: the older grants in sled, then the slots (whose ids sort
        // after every older one).
        let (purged, from, left) = match after.and_then(grant_slots::resume_from) {
            Some(slot) => (0, slot, scan.max(1)),
            None => {
                let (purged, next, read) = self.sweep_sled(after, scan, cutoff_secs)?;
                match next {
                    Some(next) => return Ok((purged, Some(next))),
                    // sled's walk ended inside this step: the slots get what is left of it.
                    None => (purged, 0, scan.max(1).saturating_sub(read).max(1)),
                }
            }
        };
        let (deleted, next) = self.slots.sweep(from, left, cutoff_secs)?;
        for id in &deleted {
            if let Some(name) = self.grant_idempotency.remove(id.as_bytes())? {
                self.idempotency.remove(name)?;
            }
        }
        Ok((
            purged + deleted.len(),
            next.map(|slot| grant_slots::cursor_after(slot.saturating_sub(1))),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::GrantStatus;

    /// An active one-use grant whose token expires at `exp` (seconds).
    fn grant(id: &str, exp: i64) -> Grant {
        super::super::test_grant(id, exp)
    }

    /// A grant with a slot id from `s` and a real code, for `citizen` (one byte, repeated).
    fn slot_grant(s: &SledStore, citizen: u8, exp: i64) -> Grant {
        let mut g = grant("x", exp);
        g.id = s.new_grant_id().unwrap();
        g.verification_code = crate::grant::new_verification_code().unwrap();
        g.citizen = format!("{citizen:02x}").repeat(32);
        g
    }

    #[test]
    fn older_grants_in_sled_and_slot_grants_are_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut old = grant("g-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1_000);
        old.verification_code = crate::grant::new_verification_code().unwrap();
        let citizen = old.citizen.clone();
        assert!(s.insert_grant(&old).unwrap());
        let mut new = slot_grant(&s, 0xab, 1_000);
        assert!(grant_slots::parse_id(&new.id).is_some());
        assert_eq!(new.citizen, citizen);
        // A code the other side holds is refused on either side.
        new.verification_code = old.verification_code.clone();
        assert!(!s.insert_grant(&new).unwrap());
        new.verification_code = crate::grant::new_verification_code().unwrap();
        assert!(s.insert_grant(&new).unwrap());
        let mut clash = grant("g-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 1_000);
        clash.verification_code = new.verification_code.clone();
        assert!(!s.insert_grant(&clash).unwrap());
        assert_eq!(s.grant(&clash.id).unwrap(), None);
        let kept = slot_grant(&s, 0xab, 9_000);
        assert!(s.insert_grant(&kept).unwrap());
        for g in [&old, &new, &kept] {
            assert_eq!(s.grant(&g.id).unwrap().as_ref(), Some(g));
            assert_eq!(
                s.grant_id_by_code(&g.verification_code).unwrap().as_deref(),
                Some(g.id.as_str())
            );
        }
        assert_eq!(s.grants_of_citizen(&citizen).unwrap().len(), 3);
        // A spent use and a durable revoke, both through the store, survive a reopen.
        s.update_grant_state(&new.id, &mut |st| {
            st.spend(crate::Timestamp::from_millis(500_000))
        })
        .unwrap();
        s.set_released_through(7).unwrap();
        s.update_grant(&kept.id, true, &mut |g| {
            g.end(
                GrantStatus::Revoked,
                crate::Timestamp::from_millis(8_000_000),
            );
            Ok(())
        })
        .unwrap();
        drop(s);
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.released_through().unwrap(), Some(7));
        assert_eq!(s.grant(&new.id).unwrap().unwrap().uses, 1);
        assert_eq!(
            s.grant(&kept.id).unwrap().unwrap().status,
            GrantStatus::Revoked
        );
        // One sweep walks both, in steps of one grant, and deletes the ended ones of each.
        let (mut purged, mut cursor, mut steps) = (0, None, 0);
        loop {
            let (n, next) = s.sweep_grants(cursor.as_deref(), 1, 5_000).unwrap();
            purged += n;
            steps += 1;
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(purged, 2);
        assert!(steps >= 3, "{steps}");
        assert_eq!(s.grant(&old.id).unwrap(), None);
        assert_eq!(s.grant(&new.id).unwrap(), None);
        assert_eq!(s.grant_id_by_code(&new.verification_code).unwrap(), None);
        assert_eq!(
            s.grants_of_citizen(&citizen).unwrap(),
            vec![s.grant(&kept.id).unwrap().unwrap()]
        );
    }

    #[test]
    fn the_store_reports_what_opening_the_slot_file_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.slot_repairs(), SlotRepairs::default());
        let g = slot_grant(&s, 0xab, 9_000);
        assert!(s.insert_grant(&g).unwrap());
        drop(s);
        let path = dir.path().join(grant_slots::FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            s.slot_repairs(),
            SlotRepairs {
                freed_torn: 0,
                ended_unreadable: 1
            }
        );
        assert_eq!(
            s.grant(&g.id).unwrap().unwrap().status,
            GrantStatus::Revoked
        );
    }

    #[test]
    fn a_sweep_walks_the_grants_in_steps_and_deletes_only_ended_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        for (id, exp) in [
            ("g-3", 3_000),
            ("g-1", 1_000),
            ("g-2", 2_000),
            ("g-4", 1_500),
        ] {
            assert!(s.insert_grant(&grant(id, exp)).unwrap());
        }
        let mut bg = grant("g-5", 1_000);
        bg.break_glass = true;
        assert!(s.insert_grant(&bg).unwrap());
        assert_eq!(s.sweep_grants(None, 10, 999).unwrap(), (0, None));
        // Steps of two: g-1 g-2 | g-3 g-4 | g-5.
        let (n, next) = s.sweep_grants(None, 2, 2_500).unwrap();
        assert_eq!((n, next.as_deref()), (2, Some("g-2")));
        let (n, next) = s.sweep_grants(next.as_deref(), 2, 2_500).unwrap();
        assert_eq!((n, next.as_deref()), (1, Some("g-4")));
        assert_eq!(
            s.sweep_grants(next.as_deref(), 2, 2_500).unwrap(),
            (0, None)
        );
        for gone in ["g-1", "g-2", "g-4"] {
            assert!(s.grant(gone).unwrap().is_none());
            assert!(
                s.grant_id_by_code(&format!("CODE{gone}"))
                    .unwrap()
                    .is_none()
            );
        }
        assert_eq!(s.grants_of_citizen(&"ab".repeat(32)).unwrap().len(), 2);
        assert_eq!(s.sweep_grants(None, 10, i64::MAX).unwrap(), (1, None));
        assert_eq!(s.grants.len(), 1, "the break-glass grant stays");
        assert_eq!(s.states.len(), 1, "with its state alone");
        assert_eq!((s.codes.len(), s.citizen_grants.len()), (1, 1));
    }

    #[test]
    fn the_sweep_decides_from_the_state_where_it_can_and_from_the_grant_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        // Active: token until 2,000 s. Pending: no token, consent until 1,000 s, TTL 300 s,
        // so in force at most until 1,301 s. Refused at 500 s: ended at 501 s.
        let active = grant("g-a", 2_000);
        let mut pending = grant("g-p", 0);
        pending.status = GrantStatus::PendingConsent;
        (pending.token_iat, pending.token_exp) = (None, None);
        pending.consent_expires_ms = Some(1_000_000);
        let mut refused = pending.clone();
        refused.id = "g-r".into();
        refused.verification_code = "CODEg-r".into();
        refused.end(
            GrantStatus::Refused,
            crate::clock::Timestamp::from_millis(500_000),
        );
        for g in [&active, &pending, &refused] {
            assert!(s.insert_grant(g).unwrap());
        }
        // The state's bound is the grant's end wherever it has one.
        assert_eq!(GrantState::of(&active).end_bound_secs(), Some(2_000));
        assert_eq!(active.latest_end_secs(), 2_000);
        assert_eq!(GrantState::of(&refused).end_bound_secs(), Some(501));
        assert_eq!(refused.latest_end_secs(), 501);
        assert_eq!(GrantState::of(&pending).end_bound_secs(), None);
        assert_eq!(pending.latest_end_secs(), 1_301);
        let left = |s: &SledStore| {
            ["g-a", "g-p", "g-r"]
                .into_iter()
                .filter(|id| s.grant(id).unwrap().is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(s.sweep_grants(None, 10, 501).unwrap(), (0, None));
        assert_eq!(s.sweep_grants(None, 10, 502).unwrap(), (1, None));
        assert_eq!(left(&s), ["g-a", "g-p"]);
        assert_eq!(s.sweep_grants(None, 10, 1_301).unwrap(), (0, None));
        assert_eq!(s.sweep_grants(None, 10, 1_302).unwrap(), (1, None));
        assert_eq!(left(&s), ["g-a"]);
        assert_eq!(s.sweep_grants(None, 10, 2_000).unwrap(), (0, None));
        assert_eq!(s.sweep_grants(None, 10, 2_001).unwrap(), (1, None));
        assert!(left(&s).is_empty());
    }

    #[test]
    fn a_release_rewrites_only_the_state_and_one_caller_wins_each_use() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut g = grant("g-1", 2_000);
        g.max_uses = 40;
        assert!(s.insert_grant(&g).unwrap());
        let json = s.grants.get("g-1").unwrap().unwrap();
        let now = crate::Timestamp::from_millis(1_800_000);
        let wins = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for i in 0..10 {
                        // The release path (state only) and the whole-grant path race alike.
                        let won = if i % 2 == 0 {
                            s.update_grant_state("g-1", &mut |st| st.spend(now)).is_ok()
                        } else {
                            s.update_grant("g-1", false, &mut |g| g.spend(now)).is_ok()
                        };
                        if won {
                            wins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(wins.into_inner(), 40, "80 tries, 40 uses");
        let spent = s.grant("g-1").unwrap().unwrap();
        assert_eq!((spent.uses, spent.status), (40, GrantStatus::Exhausted));
        assert_eq!(spent.ended_ms, Some(1_800_000));
        assert_eq!(
            s.grants.get("g-1").unwrap().unwrap(),
            json,
            "JSON as inserted"
        );
        assert!(s.states.get("g-1").unwrap().unwrap().len() < 64);
    }

    #[test]
    fn a_format_1_state_is_read_through_its_grant_and_rewritten_as_format_2() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut g = grant("g-1", 2_000);
        g.max_uses = 5;
        g.unit = Some("phong-tn".into());
        assert!(s.insert_grant(&g).unwrap());
        // As a store written before format 2 holds it: status, flags, uses, iat, exp.
        let mut v1 = vec![1, 1, 0b110];
        v1.extend_from_slice(&0u32.to_be_bytes());
        v1.extend_from_slice(&g.token_iat.unwrap().to_be_bytes());
        v1.extend_from_slice(&g.token_exp.unwrap().to_be_bytes());
        s.states.insert("g-1", v1).unwrap();
        let now = crate::Timestamp::from_millis(1_800_000);
        let st = s
            .update_grant_state("g-1", &mut |st| st.spend(now))
            .unwrap();
        assert_eq!((st.uses, st.max_uses, st.binding), (1, 5, g.binding()));
        assert_eq!(st.unit.as_deref(), Some("phong-tn"));
        assert_eq!(s.states.get("g-1").unwrap().unwrap()[0], 2, "now format 2");
        let st = s
            .update_grant_state("g-1", &mut |st| st.spend(now))
            .unwrap();
        assert_eq!(st.uses, 2);
        assert_eq!(s.grant("g-1").unwrap().unwrap().uses, 2);
        assert!(matches!(
            s.update_grant_state("g-9", &mut |st| st.spend(now)),
            Err(VaultError::GrantNotFound)
        ));
    }

    #[test]
    fn a_grant_whose_state_is_gone_is_not_found_and_the_sweep_finishes_its_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        assert!(s.insert_grant(&grant("g-1", 2_000)).unwrap());
        s.states.remove("g-1").unwrap();
        assert!(s.grant("g-1").unwrap().is_none());
        assert!(s.grants_of_citizen(&"ab".repeat(32)).unwrap().is_empty());
        assert!(matches!(
            s.update_grant("g-1", false, &mut |_| Ok(())),
            Err(VaultError::GrantNotFound)
        ));
        assert_eq!(s.sweep_grants(None, 10, 0).unwrap(), (0, None));
        assert_eq!(
            (s.grants.len(), s.codes.len(), s.citizen_grants.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_store_from_before_the_split_is_migrated_with_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut used = grant("g-1", 2_000);
        used.uses = 1;
        used.end(
            GrantStatus::Exhausted,
            crate::Timestamp::from_millis(1_900_000),
        );
        {
            let db = sled::open(dir.path()).unwrap();
            let legacy = db.open_tree("grants").unwrap();
            legacy.insert("g-1", encode_grant(&used).unwrap()).unwrap();
            legacy
                .insert("g-2", encode_grant(&grant("g-2", 2_000)).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.grant("g-1").unwrap().unwrap(), used);
        assert!(
            !s.db.tree_names().iter().any(|n| n.as_ref() == b"grants"),
            "the old tree is dropped"
        );
        let now = crate::Timestamp::from_millis(1_800_000);
        assert!(matches!(
            s.update_grant("g-1", false, &mut |g| g.spend(now)),
            Err(VaultError::GrantExhausted)
        ));
        s.update_grant("g-2", true, &mut |g| g.spend(now)).unwrap();
        drop(s);
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            s.grant("g-2").unwrap().unwrap().uses,
            1,
            "reopening keeps state"
        );
    }

    /// A record whose one envelope is `marker` (so the raw file can be searched for it).
    fn record(marker: &str) -> SealedRecord {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(
            crate::id::FieldName::parse("full_name").unwrap(),
            super::super::SealedField {
                version: 1,
                envelope: marker.as_bytes().to_vec(),
            },
        );
        SealedRecord {
            dek_version: 1,
            wrapped_dek: vec![7; 60],
            audit_salt: [9; 32],
            record_version: 1,
            fields,
        }
    }

    fn envelope_of(s: &SledStore, id: &BlindId) -> Option<String> {
        s.citizen(id)
            .unwrap()
            .map(|r| String::from_utf8(r.fields.values().next().unwrap().envelope.clone()).unwrap())
    }

    /// Which of `markers` are anywhere in the record file.
    fn on_disk(dir: &Path, markers: &[&str]) -> Vec<String> {
        let bytes: Vec<u8> = SLOT_FILES
            .iter()
            .filter_map(|f| std::fs::read(dir.join(f)).ok())
            .flatten()
            .collect();
        markers
            .iter()
            .filter(|m| bytes.windows(m.len()).any(|w| w == m.as_bytes()))
            .map(|m| (*m).to_owned())
            .collect()
    }

    fn blind(n: u8) -> BlindId {
        BlindId::from_bytes([n; 32])
    }

    #[test]
    fn a_rewrite_shreds_the_old_frame_at_flush_and_erasure_shreds_every_copy() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let (a, b) = (blind(1), blind(2));
        s.put_citizens(&[(a, record("A-ONE")), (b, record("B-ONE"))])
            .unwrap();
        s.flush().unwrap();
        // Twice in one batch: the first copy is on the chain too.
        s.put_citizens(&[(a, record("A-TWO")), (a, record("A-THREE"))])
            .unwrap();
        assert_eq!(envelope_of(&s, &a).as_deref(), Some("A-THREE"));
        assert_eq!(on_disk(dir.path(), &["A-ONE", "A-TWO"]).len(), 2);
        s.flush().unwrap();
        assert_eq!(
            on_disk(dir.path(), &["A-ONE", "A-TWO", "A-THREE", "B-ONE"]),
            vec!["A-THREE", "B-ONE"]
        );
        // Rotation-style scans see each citizen once, at its current frame.
        let all = s.citizens_after(None, 10).unwrap();
        assert_eq!(all.len(), 2);
        s.put_citizens(&[(a, record("A-FOUR"))]).unwrap();
        assert!(s.delete_citizen(&a).unwrap());
        assert!(s.citizen(&a).unwrap().is_none());
        assert!(on_disk(dir.path(), &["A-THREE", "A-FOUR"]).is_empty());
        let bytes = std::fs::read(dir.path().join(SLOT_FILES[0])).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == a.as_bytes()),
            "nor its blind id"
        );
        assert!(!s.delete_citizen(&a).unwrap());
        assert_eq!(envelope_of(&s, &b).as_deref(), Some("B-ONE"));
    }

    #[test]
    fn a_flush_syncs_the_record_file_only_when_it_shredded_something() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let syncs = || s.records.syncs.load(std::sync::atomic::Ordering::Relaxed);
        s.put_citizens(&[(blind(1), record("A-ONE"))]).unwrap();
        s.flush().unwrap();
        let before = syncs();
        // A grant's flush (the grant path's one flush) leaves the record file alone.
        assert!(s.insert_grant(&grant("g-1", 1_000)).unwrap());
        s.flush().unwrap();
        assert_eq!(syncs(), before);
        // A rewrite's flush shreds the old frame and syncs the shred.
        s.put_citizens(&[(blind(1), record("A-TWO"))]).unwrap();
        let appended = syncs();
        s.flush().unwrap();
        assert_eq!(syncs(), appended + 1);
        assert!(on_disk(dir.path(), &["A-ONE"]).is_empty());
    }

    #[test]
    fn opening_after_a_crash_shreds_what_no_durable_index_points_at() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (blind(1), blind(2), blind(3));
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.put_citizens(&[(a, record("A-OLD")), (c, record("C-KEPT"))])
                .unwrap();
            s.flush().unwrap();
            s.flush().unwrap();
            // A crash after sled wrote the index but before the flush shredded: two newer
            // frames of A past the clean mark, the old one below it, none shredded.
            s.put_citizens(&[(a, record("A-MID"))]).unwrap();
            s.put_citizens(&[(a, record("A-NEW"))]).unwrap();
            // And a batch whose index write was lost: a frame no entry points at.
            let mut tail = s.records.lock().unwrap();
            s.records
                .append(&mut tail, &[(&b, b"B-ORPHAN".as_slice())], &mut |_| {
                    Ok(NO_FRAME)
                })
                .unwrap();
            drop(tail);
            s.db.flush().unwrap();
            assert_eq!(
                on_disk(dir.path(), &["A-OLD", "A-MID", "A-NEW", "B-ORPHAN"]).len(),
                4
            );
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            on_disk(
                dir.path(),
                &["A-OLD", "A-MID", "A-NEW", "B-ORPHAN", "C-KEPT"]
            ),
            vec!["A-NEW", "C-KEPT"]
        );
        assert_eq!(envelope_of(&s, &a).as_deref(), Some("A-NEW"));
        assert_eq!(envelope_of(&s, &c).as_deref(), Some("C-KEPT"));
        assert!(s.citizen(&b).unwrap().is_none());
        let mark = s.meta_u64(CLEAN_THROUGH_KEY, "").unwrap();
        assert_eq!(
            mark,
            Some(s.records.len().unwrap()),
            "the mark moved to the end"
        );
    }

    #[test]
    fn a_record_stored_inline_by_an_older_store_reads_and_moves_to_the_file_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (blind(1), blind(2));
        {
            let db = sled::open(dir.path()).unwrap();
            let citizens = db.open_tree("citizens").unwrap();
            citizens
                .insert(a.as_bytes(), codec::encode(&record("A-INLINE")))
                .unwrap();
            citizens
                .insert(b.as_bytes(), codec::encode(&record("B-INLINE")))
                .unwrap();
            db.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(envelope_of(&s, &a).as_deref(), Some("A-INLINE"));
        s.put_citizens(&[(a, record("A-FILED"))]).unwrap();
        s.flush().unwrap();
        assert_eq!(envelope_of(&s, &a).as_deref(), Some("A-FILED"));
        assert!(Location::decode(&s.citizens.get(a.as_bytes()).unwrap().unwrap()).is_some());
        assert_eq!(s.citizens_after(None, 10).unwrap().len(), 2);
        assert!(s.delete_citizen(&b).unwrap());
        assert!(s.citizen(&b).unwrap().is_none());
    }

    /// Bytes of every record file in `dir` (by slot; `None` where a slot has no file).
    fn slot_files(dir: &Path) -> [Option<u64>; 2] {
        SLOT_FILES.map(|f| std::fs::metadata(dir.join(f)).ok().map(|m| m.len()))
    }

    #[test]
    fn a_file_mostly_of_shredded_frames_is_compacted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [blind(1), blind(2), blind(3), blind(4)];
        {
            let s = SledStore::open_with(dir.path(), u64::MAX, DEFAULT_CACHE_BYTES).unwrap();
            for version in 0..4 {
                let batch: Vec<_> = ids
                    .iter()
                    .map(|id| (*id, record(&format!("R{}-V{version}", id.as_bytes()[0]))))
                    .collect();
                s.put_citizens(&batch).unwrap();
                s.flush().unwrap();
            }
            assert!(s.delete_citizen(&ids[3]).unwrap());
        }
        let before = slot_files(dir.path());
        // Not compacted while the dead bytes are under the threshold.
        let s = SledStore::open_with(dir.path(), before[0].unwrap(), DEFAULT_CACHE_BYTES).unwrap();
        // 13 of the 16 equal frames written are zeroed (three old versions of each of the
        // four citizens and the erased citizen's current one): the count survived the reopen.
        assert_eq!(s.records.shredded() * 16, before[0].unwrap() * 13);
        drop(s);
        assert_eq!(slot_files(dir.path()), before);
        let s = SledStore::open_with(dir.path(), 1, DEFAULT_CACHE_BYTES).unwrap();
        let [old, new] = slot_files(dir.path());
        assert_eq!(old, None, "the old file is removed");
        let live = s.live_bytes().unwrap();
        assert_eq!(new, Some(live), "only the three live frames are left");
        assert_eq!(s.records.shredded(), 0);
        assert!(live * 5 < before[0].unwrap());
        for (n, id) in ids[..3].iter().enumerate() {
            let want = format!("R{}-V3", n + 1);
            assert_eq!(envelope_of(&s, id), Some(want));
        }
        assert!(s.citizen(&ids[3]).unwrap().is_none());
        assert_eq!(s.citizens_after(None, 10).unwrap().len(), 3);
        // The new slot works like the old: a rewrite shreds at flush, erasure shreds all.
        s.put_citizens(&[(ids[0], record("R1-V4"))]).unwrap();
        s.flush().unwrap();
        assert!(s.delete_citizen(&ids[1]).unwrap());
        assert_eq!(
            on_disk(dir.path(), &["R1-V3", "R1-V4", "R2-V3", "R3-V3"]),
            vec!["R1-V4", "R3-V3"]
        );
        drop(s);
        let s = SledStore::open_with(dir.path(), 1, DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(envelope_of(&s, &ids[0]).as_deref(), Some("R1-V4"));
        // Half of slot 1 was zeroed frames again: compacted back into slot 0.
        let live = s.live_bytes().unwrap();
        assert_eq!(slot_files(dir.path()), [Some(live), None]);
        assert_eq!(envelope_of(&s, &ids[2]).as_deref(), Some("R3-V3"));
    }

    #[test]
    fn a_compaction_cut_short_by_a_crash_finishes_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [blind(1), blind(2), blind(3), blind(4)];
        {
            let s = SledStore::open_with(dir.path(), u64::MAX, DEFAULT_CACHE_BYTES).unwrap();
            for version in ["OLD", "NEW"] {
                let batch: Vec<_> = ids
                    .iter()
                    .map(|id| (*id, record(&format!("R{}-{version}", id.as_bytes()[0]))))
                    .collect();
                s.put_citizens(&batch).unwrap();
                s.flush().unwrap();
            }
            // A compaction into slot 1 that moved two records, then crashed in the middle of
            // a batch whose frame reached the file but not the index.
            s.meta
                .insert(COMPACTING_KEY, 1u64.to_be_bytes().as_slice())
                .unwrap();
            let target = RecordFile::open(dir.path(), 1).unwrap();
            s.move_records(&target, 1, 2).unwrap();
            let mut tail = target.lock().unwrap();
            target
                .append(
                    &mut tail,
                    &[(&ids[3], b"R4-ORPHAN".as_slice())],
                    &mut |_| Ok(NO_FRAME),
                )
                .unwrap();
            drop(tail);
            s.db.flush().unwrap();
            let moved = s
                .citizens
                .iter()
                .filter(|kv| Location::decode(&kv.as_ref().unwrap().1).unwrap().slot == 1)
                .count();
            assert_eq!(moved, 2);
        }
        // Far under any threshold: the open finishes the copy because it had started.
        let s = SledStore::open_with(dir.path(), u64::MAX, DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(slot_files(dir.path())[0], None);
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(envelope_of(&s, id), Some(format!("R{}-NEW", n + 1)));
        }
        assert!(on_disk(dir.path(), &["R4-ORPHAN", "R1-OLD", "R4-OLD"]).is_empty());
        assert_eq!(s.meta_u64(COMPACTING_KEY, "").unwrap(), None);
        drop(s);
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.records.slot(), 1, "the switch is durable");
        assert_eq!(envelope_of(&s, &ids[2]).as_deref(), Some("R3-NEW"));
    }

    #[test]
    fn a_damaged_frame_the_index_uses_stops_the_open_instead_of_being_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SLOT_FILES[0]);
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.put_citizens(&[(blind(1), record("A")), (blind(2), record("B"))])
                .unwrap();
            s.db.flush().unwrap();
        }
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[9] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            SledStore::open(dir.path()),
            Err(VaultError::StoreCorrupt(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), bad, "nothing was cut");
        std::fs::write(&path, &good).unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(envelope_of(&s, &blind(2)).as_deref(), Some("B"));
    }
}
