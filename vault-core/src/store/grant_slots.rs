//! `GrantSlots`: grants in one file of fixed 2 KiB slots (`grants.slots`) beside sled, each
//! found by the slot its id carries, with the in-memory tables that find one by
//! verification code and by citizen (rebuilt by one scan of the file at open).
//!
//! Why not sled: sled 0.34 keeps ~45 bytes of memory for every entry it holds, whatever its
//! cache size, and a grant was four entries (its JSON, its state record, its code and its
//! citizen link): ~180 MiB at a million grants (BENCHMARKS.md, `sled-mem`). Here a grant
//! costs memory only in the two tables (one `u64` in each) and its bytes live in the page
//! cache; a release's compare-and-swap is one positioned read and one positioned write of
//! its 512-byte state sector under one of 4,096 striped locks.
//!
//! A slot, at `slot * 2048`:
//!
//! | bytes | content |
//! |---|---|
//! | 0 | `0xA7` (0: free) |
//! | 1 | format (1) |
//! | 2..4 | state length (u16, big-endian) |
//! | 4..8 | CRC-32 of bytes 0..4 and 8..32 + length |
//! | 8..31 | the id's 23 random letters (a stale id, its slot reused, does not match) |
//! | 32.. | the state record (`grant_state`), at most 480 bytes |
//! | 512 | `0x5F` (0: free) |
//! | 513 | format (1) |
//! | 514..516 | facts length (u16, big-endian) |
//! | 516..520 | CRC-32 of bytes 512..516 and the facts |
//! | 520.. | the grant's JSON as inserted (its fixed facts; the state record overrides the rest) |
//!
//! Ids are `g-t`, 8 letters for the slot (4 bits each) and 23 random letters (92 bits):
//! in id order among themselves in slot order, so the retention sweep's cursor is a slot.
//! The file holds at most 16,777,216 grants at once (the tables pack a slot in 24 bits);
//! past that a new grant is refused with `StoreError::Unavailable` until the sweep frees slots.
//!
//! Durability, as with sled's trees: a write reaches the page cache and is durable after
//! `sync` (the store's flush syncs this file before sled, and before it writes the
//! `released_through` mark, so the mark is never durable ahead of the uses it covers). The
//! facts are written once, with the first state, and never again until the slot is freed; a
//! state change rewrites the state sector alone, one 512-byte sector, which drives write
//! whole. At open, a slot whose facts do not check (an insert a crash tore, never
//! acknowledged: the store acknowledges an insert only after syncing this file) is zeroed and freed; a slot whose
//! facts check but whose state does not (a torn sector) is ended as revoked, failing closed:
//! it releases nothing more. Deletion (the retention sweep) zeroes the slot, unsynced like
//! sled's deletions: a crash may bring a grant back and the next pass deletes it again.
//!
//! A slot is reserved when its id is made (`reserve`), before the grant's audit entry; one
//! never inserted (the audit write failed) stays reserved until the next open, which finds
//! it zero and frees it.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};

use super::StoreError;
use super::grant_state;
use crate::crypto;
use crate::error::VaultError;
use crate::grant::{CODE_ALPHABET, Grant, GrantState, GrantStatus};
use crate::id::GrantId;

/// The file's name in the store's directory.
pub(super) const FILE: &str = "grants.slots";
const SLOT: usize = 2048;
const SECTOR: usize = 512;
const STATE_MAGIC: u8 = 0xA7;
const FACTS_MAGIC: u8 = 0x5F;
const FORMAT: u8 = 1;
const STATE_HEAD: usize = 32;
const FACTS_HEAD: usize = 8;
const RANDOM: usize = 23;
const SLOT_LETTERS: usize = 8;
/// Every slot id starts so; `PREFIX` alone is the sweep's cursor before slot 0.
pub(super) const PREFIX: &str = "g-t";
const LETTERS: &[u8; 16] = b"abcdefghjkmnpqrs";
/// Slots a file holds at most (the tables pack a slot in 24 bits).
const MAX_SLOTS: u32 = 1 << 24;
const SLOT_MASK: u64 = (1 << 24) - 1;
const STRIPES: usize = 4096;
/// Slots read at a time by the scan at open.
const SCAN_CHUNK: usize = 512;

/// What the scan at open found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct OpenReport {
    /// Grants in the file.
    pub live: u64,
    /// Slots a crash left half-written by an insert, zeroed and freed.
    pub freed_torn: u64,
    /// Grants whose state sector did not check, ended as revoked.
    pub ended_unreadable: u64,
}

/// The in-memory tables (one lock: they change together).
#[derive(Debug, Default)]
struct Tables {
    /// `code << 24 | slot` (a code's 40 bits).
    codes: BTreeSet<u64>,
    /// `citizen prefix << 24 | slot` (the blind id's first 40 bits; a match is checked
    /// against the grant).
    citizens: BTreeSet<u64>,
    /// Slots holding break-glass grants (the auditors' queue).
    break_glass: BTreeSet<u32>,
    /// Zeroed slots below `next`.
    free: Vec<u32>,
    /// Slots below this are in the file or reserved.
    next: u32,
}

impl Tables {
    fn add(&mut self, slot: u32, g: &Grant) -> Result<(), StoreError> {
        self.codes
            .insert(code_key(&g.verification_code)? | u64::from(slot));
        self.citizens
            .insert(citizen_key(&g.citizen)? | u64::from(slot));
        if g.break_glass {
            self.break_glass.insert(slot);
        }
        Ok(())
    }

    fn remove(&mut self, slot: u32, g: &Grant) -> Result<(), StoreError> {
        self.codes
            .remove(&(code_key(&g.verification_code)? | u64::from(slot)));
        self.citizens
            .remove(&(citizen_key(&g.citizen)? | u64::from(slot)));
        self.break_glass.remove(&slot);
        Ok(())
    }

    /// The slot holding `code` (none for a string that is not a code).
    fn code_slot(&self, code: &str) -> Result<Option<u32>, StoreError> {
        let Ok(k) = code_key(code) else {
            return Ok(None);
        };
        Ok(self
            .codes
            .range(k..=k | SLOT_MASK)
            .next()
            .map(|v| slot_of(*v)))
    }
}

/// The slot part of a table value.
fn slot_of(v: u64) -> u32 {
    // Masked to 24 bits, so the conversion cannot fail.
    u32::try_from(v & SLOT_MASK).unwrap_or(u32::MAX)
}

/// A verification code's 40 bits, shifted above the slot.
fn code_key(code: &str) -> Result<u64, StoreError> {
    let b = code.as_bytes();
    if b.len() != 8 {
        return Err(StoreError::Corrupt("verification code malformed".into()));
    }
    let mut v = 0u64;
    for c in b {
        let d = CODE_ALPHABET
            .iter()
            .position(|x| x == c)
            .ok_or_else(|| StoreError::Corrupt("verification code malformed".into()))?;
        v = (v << 5) | d as u64;
    }
    Ok(v << 24)
}

/// The first 40 bits of a blind id (hex), shifted above the slot.
fn citizen_key(hex: &str) -> Result<u64, StoreError> {
    let head = hex
        .get(..10)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| StoreError::Corrupt("grant citizen malformed".into()))?;
    Ok(head << 24)
}

/// The slot and random letters of an id this table made (`None`: an older, sled-kept id).
pub(super) fn parse_id(id: &str) -> Option<(u32, [u8; RANDOM])> {
    let b = id.strip_prefix(PREFIX)?.as_bytes();
    if b.len() != SLOT_LETTERS + RANDOM {
        return None;
    }
    let mut slot = 0u32;
    for c in &b[..SLOT_LETTERS] {
        let d = LETTERS.iter().position(|x| x == c)?;
        slot = (slot << 4) | u32::try_from(d).ok()?;
    }
    let random: [u8; RANDOM] = b[SLOT_LETTERS..].try_into().ok()?;
    (slot < MAX_SLOTS && random.iter().all(|c| LETTERS.contains(c))).then_some((slot, random))
}

fn make_id(slot: u32, random: &[u8; RANDOM]) -> String {
    let mut out = String::with_capacity(PREFIX.len() + SLOT_LETTERS + RANDOM);
    out.push_str(PREFIX);
    for i in (0..SLOT_LETTERS).rev() {
        out.push(char::from(LETTERS[((slot >> (i * 4)) & 15) as usize]));
    }
    out.extend(random.iter().map(|c| char::from(*c)));
    out
}

/// The sweep's cursor after `slot` (an id of that slot's shape; only its slot is read back).
pub(super) fn cursor_after(slot: u32) -> String {
    make_id(slot, &[b'a'; RANDOM])
}

/// Where the sweep's slot walk goes on from, for a cursor (`None`: not a slot cursor).
pub(super) fn resume_from(cursor: &str) -> Option<u32> {
    if cursor == PREFIX {
        return Some(0);
    }
    parse_id(cursor).map(|(slot, _)| slot.saturating_add(1))
}

fn io(what: &str, e: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("grant slots {what}: {e}"))
}

fn corrupt(slot: u32, what: &str) -> StoreError {
    StoreError::Corrupt(format!("grant slot {slot}: {what}"))
}

fn offset(slot: u32) -> u64 {
    u64::from(slot) * SLOT as u64
}

/// A checked state sector: the id's random letters and the state record.
struct StateSector<'a> {
    random: [u8; RANDOM],
    bytes: &'a [u8],
}

/// Both areas of a slot (the state sector and the facts) start alike: magic, format, the
/// payload's length (u16), then a CRC-32 of bytes 0..4 and 8..head + length. The CRC.
fn area_crc(area: &[u8], head: usize, len: usize) -> [u8; 4] {
    let mut h = crc32fast::Hasher::new();
    h.update(&area[..4]);
    h.update(&area[8..head + len]);
    h.finalize().to_be_bytes()
}

/// The payload's length of an area that checks; `Ok(None)` for a free one (magic 0),
/// `Err(())` for one that does not check.
fn check_area(area: &[u8], magic: u8, head: usize) -> Result<Option<usize>, ()> {
    if area[0] == 0 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([area[2], area[3]]));
    if area[0] != magic || area[1] != FORMAT || head + len > area.len() {
        return Err(());
    }
    if area_crc(area, head, len) != area[4..8] {
        return Err(());
    }
    Ok(Some(len))
}

/// Writes `payload` and the header around it (the bytes between 8 and `head` are the
/// caller's, written before).
fn seal_area(area: &mut [u8], magic: u8, head: usize, payload: &[u8]) -> Result<(), StoreError> {
    let len = u16::try_from(payload.len())
        .ok()
        .filter(|l| head + usize::from(*l) <= area.len())
        .ok_or_else(|| StoreError::Corrupt("grant too large for its slot".into()))?;
    area[0] = magic;
    area[1] = FORMAT;
    area[2..4].copy_from_slice(&len.to_be_bytes());
    area[head..head + payload.len()].copy_from_slice(payload);
    let crc = area_crc(area, head, payload.len());
    area[4..8].copy_from_slice(&crc);
    Ok(())
}

/// `Ok(None)`: a free slot's sector; `Err(())`: one that does not check.
fn parse_state(sector: &[u8]) -> Result<Option<StateSector<'_>>, ()> {
    let Some(len) = check_area(sector, STATE_MAGIC, STATE_HEAD)? else {
        return Ok(None);
    };
    let random: [u8; RANDOM] = sector[8..8 + RANDOM].try_into().map_err(|_| ())?;
    Ok(Some(StateSector {
        random,
        bytes: &sector[STATE_HEAD..STATE_HEAD + len],
    }))
}

fn write_state_sector(
    sector: &mut [u8],
    random: &[u8; RANDOM],
    state: &[u8],
) -> Result<(), StoreError> {
    sector.fill(0);
    sector[8..8 + RANDOM].copy_from_slice(random);
    seal_area(sector, STATE_MAGIC, STATE_HEAD, state)
}

/// The facts area's JSON; `Ok(None)` for a free slot's, `Err(())` for one that does not check.
fn parse_facts(area: &[u8]) -> Result<Option<&[u8]>, ()> {
    Ok(check_area(area, FACTS_MAGIC, FACTS_HEAD)?.map(|len| &area[FACTS_HEAD..FACTS_HEAD + len]))
}

fn decode_facts(slot: u32, json: &[u8]) -> Result<Grant, StoreError> {
    serde_json::from_slice(json).map_err(|_| corrupt(slot, "grant unreadable"))
}

/// A whole slot, read.
type SlotBytes = [u8; SLOT];

/// The grants' slot file and its tables.
#[derive(Debug)]
pub(super) struct GrantSlots {
    file: File,
    tables: RwLock<Tables>,
    stripes: Box<[Mutex<()>]>,
}

impl GrantSlots {
    /// Opens (or creates) `dir/grants.slots` and rebuilds the tables from it, repairing what
    /// a crash left (see the module's notes).
    pub fn open(dir: &Path) -> Result<(Self, OpenReport), StoreError> {
        let path = dir.join(FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("open", &e))?;
        if !existed {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("directory sync", &e))?;
        }
        let slots = Self {
            file,
            tables: RwLock::default(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        };
        let report = slots.scan()?;
        Ok((slots, report))
    }

    fn scan(&self) -> Result<OpenReport, StoreError> {
        let len = self.file.metadata().map_err(|e| io("size", &e))?.len();
        // A partial slot at the end is an insert cut short: the next insert there overwrites it.
        let count = u32::try_from(len / SLOT as u64)
            .unwrap_or(MAX_SLOTS)
            .min(MAX_SLOTS);
        let mut report = OpenReport::default();
        let mut tables = Tables {
            next: count,
            ..Tables::default()
        };
        let mut repaired = false;
        let mut buf = vec![0u8; SCAN_CHUNK * SLOT];
        let mut first = 0u32;
        while first < count {
            let n = (count - first).min(SCAN_CHUNK as u32);
            let chunk = &mut buf[..n as usize * SLOT];
            self.file
                .read_exact_at(chunk, offset(first))
                .map_err(|e| io("scan", &e))?;
            for (i, bytes) in chunk.chunks_exact_mut(SLOT).enumerate() {
                let slot = first + i as u32;
                let (state_area, facts_area) = bytes.split_at_mut(SECTOR);
                let facts = match parse_facts(facts_area) {
                    Ok(Some(json)) => Some(decode_facts(slot, json)?),
                    Ok(None) if state_area[0] == 0 => {
                        tables.free.push(slot);
                        continue;
                    }
                    Ok(None) | Err(()) => None,
                };
                let Some(mut g) = facts else {
                    // An insert torn by a crash (never acknowledged) or a deletion half
                    // written: either way the slot is free.
                    self.write(slot, &[0u8; SLOT])?;
                    repaired = true;
                    report.freed_torn += 1;
                    tables.free.push(slot);
                    continue;
                };
                let Some((id_slot, random)) = parse_id(&g.id) else {
                    return Err(corrupt(slot, "grant id not of this file"));
                };
                if id_slot != slot {
                    return Err(corrupt(slot, "grant id names another slot"));
                }
                match parse_state(state_area) {
                    Ok(Some(st)) if st.random == random => grant_state::apply(st.bytes, &mut g)
                        .map_err(|_| corrupt(slot, "grant state unreadable"))?,
                    _ => {
                        // A torn state sector: what the grant had spent is unknown, so it
                        // releases nothing more.
                        if g.status != GrantStatus::Revoked {
                            g.status = GrantStatus::Revoked;
                            g.ended = Some(g.created);
                        }
                        g.token_pending_delivery = false;
                        let mut sector = [0u8; SECTOR];
                        write_state_sector(&mut sector, &random, &grant_state::encode(&g))?;
                        self.write(slot, &sector)?;
                        repaired = true;
                        report.ended_unreadable += 1;
                    }
                }
                tables.add(slot, &g)?;
                report.live += 1;
            }
            first += n;
        }
        if repaired {
            self.sync()?;
        }
        *self.tables.write().map_err(|_| poisoned())? = tables;
        Ok(report)
    }

    fn tables_read(&self) -> Result<std::sync::RwLockReadGuard<'_, Tables>, StoreError> {
        self.tables.read().map_err(|_| poisoned())
    }

    fn tables_write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Tables>, StoreError> {
        self.tables.write().map_err(|_| poisoned())
    }

    fn stripe(&self, slot: u32) -> Result<MutexGuard<'_, ()>, StoreError> {
        self.stripes[slot as usize % STRIPES]
            .lock()
            .map_err(|_| poisoned())
    }

    fn write(&self, slot: u32, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all_at(bytes, offset(slot))
            .map_err(|e| io("write", &e))
    }

    /// The slot's bytes; a reserved slot past the file's end reads as zeros.
    fn read(&self, slot: u32) -> Result<Box<SlotBytes>, StoreError> {
        let mut buf = Box::new([0u8; SLOT]);
        match self.file.read_exact_at(&mut buf[..], offset(slot)) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(Box::new([0u8; SLOT])),
            Err(e) => Err(io("read", &e)),
        }
    }

    fn read_state(&self, slot: u32) -> Result<[u8; SECTOR], StoreError> {
        let mut buf = [0u8; SECTOR];
        match self.file.read_exact_at(&mut buf, offset(slot)) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok([0u8; SECTOR]),
            Err(e) => Err(io("read", &e)),
        }
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(|e| io("sync", &e))
    }

    /// A new grant id with a slot reserved for it; `StoreError::Unavailable` when every slot holds
    /// a grant the retention sweep has not freed yet.
    pub fn reserve(&self) -> Result<GrantId, StoreError> {
        let mut random = [0u8; RANDOM];
        crypto::random_bytes(&mut random).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        for c in &mut random {
            *c = LETTERS[usize::from(*c & 15)];
        }
        let mut t = self.tables_write()?;
        let slot = match t.free.pop() {
            Some(s) => s,
            None if t.next < MAX_SLOTS => {
                t.next += 1;
                t.next - 1
            }
            None => {
                return Err(StoreError::Unavailable(format!(
                    "the grant file is full ({MAX_SLOTS} grants not yet swept)"
                )));
            }
        };
        Ok(GrantId::new(make_id(slot, &random)))
    }

    /// Stores `g` in the slot its id names (made by `reserve`, or past the reserved slots for
    /// a grant loaded from a backup), claiming its verification code unless a grant here holds
    /// it: then `false` and nothing stored. Not durable until `sync`.
    pub fn insert(&self, g: &Grant) -> Result<bool, StoreError> {
        let (slot, random) = parse_id(&g.id).ok_or(StoreError::NotFound)?;
        let facts =
            serde_json::to_vec(g).map_err(|_| StoreError::Corrupt("grant unencodable".into()))?;
        let mut bytes = Box::new([0u8; SLOT]);
        let (state_area, facts_area) = bytes.split_at_mut(SECTOR);
        write_state_sector(state_area, &random, &grant_state::encode(g))?;
        seal_area(facts_area, FACTS_MAGIC, FACTS_HEAD, &facts)?;
        {
            let mut t = self.tables_write()?;
            if t.code_slot(&g.verification_code)?.is_some() {
                return Ok(false);
            }
            // A slot past the reserved ones (a grant loaded from a backup, in slot order):
            // the slots skipped on the way are free.
            if slot >= t.next {
                if slot >= MAX_SLOTS {
                    return Err(StoreError::NotFound);
                }
                let skipped = t.next..slot;
                t.free.extend(skipped);
                t.next = slot + 1;
            }
            t.add(slot, g)?;
        }
        let _lock = self.stripe(slot)?;
        if let Err(e) = self.write(slot, &bytes[..]) {
            drop(_lock);
            self.tables_write()?.remove(slot, g)?;
            return Err(e);
        }
        Ok(true)
    }

    /// The grant `id` names, facts and state, read under its slot's lock.
    /// `random`: the id's letters the slot must hold (`None`: whichever grant is there).
    fn load(&self, slot: u32, random: Option<&[u8; RANDOM]>) -> Result<Option<Grant>, StoreError> {
        let bytes = self.read(slot)?;
        let (state_area, facts_area) = bytes.split_at(SECTOR);
        let Ok(Some(st)) = parse_state(state_area) else {
            return Ok(None);
        };
        if random.is_some_and(|r| r != &st.random) {
            return Ok(None);
        }
        let json = parse_facts(facts_area)
            .map_err(|()| corrupt(slot, "grant facts do not check"))?
            .ok_or_else(|| corrupt(slot, "grant facts missing"))?;
        let mut g = decode_facts(slot, json)?;
        grant_state::apply(st.bytes, &mut g)?;
        Ok(Some(g))
    }

    /// A grant by id.
    pub fn get(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let Some((slot, random)) = parse_id(id) else {
            return Ok(None);
        };
        let _lock = self.stripe(slot)?;
        self.load(slot, Some(&random))
    }

    /// Changes a grant under its slot's lock: `change` sees the current grant and may
    /// refuse; only its state may change (the facts are written once).
    pub fn update(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut Grant) -> Result<(), VaultError>,
    ) -> Result<Grant, StoreError> {
        let (slot, random) = parse_id(id).ok_or(StoreError::NotFound)?;
        let _lock = self.stripe(slot)?;
        let mut g = self
            .load(slot, Some(&random))?
            .ok_or(StoreError::NotFound)?;
        let state = grant_state::change_state(&mut g, change)?;
        let mut sector = [0u8; SECTOR];
        write_state_sector(&mut sector, &random, &state)?;
        self.write(slot, &sector)?;
        Ok(g)
    }

    /// Changes a grant's state under its slot's lock without reading its facts: the release
    /// path.
    pub fn update_state(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut GrantState) -> Result<(), VaultError>,
    ) -> Result<GrantState, StoreError> {
        let (slot, random) = parse_id(id).ok_or(StoreError::NotFound)?;
        let _lock = self.stripe(slot)?;
        let mut sector = self.read_state(slot)?;
        let mut st = match parse_state(&sector) {
            Ok(Some(s)) if s.random == random => grant_state::decode_state(s.bytes)?,
            _ => return Err(StoreError::NotFound),
        };
        change(&mut st).map_err(StoreError::Refused)?;
        write_state_sector(&mut sector, &random, &grant_state::encode_state(&st))?;
        self.write(slot, &sector)?;
        Ok(st)
    }

    /// The id of the grant holding `code`.
    pub fn id_by_code(&self, code: &str) -> Result<Option<GrantId>, StoreError> {
        if code.len() != 8 || !code.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
            return Ok(None);
        }
        let Some(slot) = self.tables_read()?.code_slot(code)? else {
            return Ok(None);
        };
        let _lock = self.stripe(slot)?;
        let sector = self.read_state(slot)?;
        Ok(match parse_state(&sector) {
            Ok(Some(st)) => Some(GrantId::new(make_id(slot, &st.random))),
            _ => None,
        })
    }

    /// The grants in `slots` (those still there).
    fn grants_in(&self, slots: impl IntoIterator<Item = u32>) -> Result<Vec<Grant>, StoreError> {
        let mut out = Vec::new();
        for slot in slots {
            let _lock = self.stripe(slot)?;
            if let Some(g) = self.load(slot, None)? {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Every grant concerning a citizen (blind id hex).
    pub fn of_citizen(&self, citizen: &str) -> Result<Vec<Grant>, StoreError> {
        let Ok(k) = citizen_key(citizen) else {
            return Ok(Vec::new());
        };
        let slots: Vec<u32> = self
            .tables_read()?
            .citizens
            .range(k..=k | SLOT_MASK)
            .map(|v| slot_of(*v))
            .collect();
        let mut out = self.grants_in(slots)?;
        out.retain(|g| g.citizen == citizen);
        Ok(out)
    }

    /// The grants in up to `count` slots from `from`, and the slot to go on from (`None`:
    /// the end): a walk over every grant (a backup).
    pub fn page(&self, from: u32, count: usize) -> Result<(Vec<Grant>, Option<u32>), StoreError> {
        let end = self.tables_read()?.next;
        let stop = from
            .saturating_add(u32::try_from(count.max(1)).unwrap_or(u32::MAX))
            .min(end);
        Ok((self.grants_in(from..stop)?, (stop < end).then_some(stop)))
    }

    /// Every break-glass grant here.
    pub fn break_glass(&self) -> Result<Vec<Grant>, StoreError> {
        let slots: Vec<u32> = self.tables_read()?.break_glass.iter().copied().collect();
        self.grants_in(slots)
    }

    /// One step of the retention sweep over the slots from `from`: reads up to `scan` slots
    /// and deletes the grants whose `Grant::latest_end_secs` is before `cutoff_secs`
    /// (break-glass grants are kept). Returns the deleted grants' ids and the slot to go on
    /// from (`None`: the end).
    pub fn sweep(
        &self,
        from: u32,
        scan: usize,
        cutoff_secs: i64,
    ) -> Result<(Vec<GrantId>, Option<u32>), StoreError> {
        let end = self.tables_read()?.next;
        let stop = from.saturating_add(u32::try_from(scan.max(1)).unwrap_or(u32::MAX));
        let mut deleted = Vec::new();
        let mut slot = from;
        while slot < end && slot < stop {
            if let Some(g) = self.sweep_one(slot, cutoff_secs)? {
                let mut t = self.tables_write()?;
                t.remove(slot, &g)?;
                t.free.push(slot);
                deleted.push(g.id);
            }
            slot += 1;
        }
        Ok((deleted, (slot < end).then_some(slot)))
    }

    /// Deletes the grant in `slot` if it ended before `cutoff_secs`; returns it if so.
    fn sweep_one(&self, slot: u32, cutoff_secs: i64) -> Result<Option<Grant>, StoreError> {
        let _lock = self.stripe(slot)?;
        let sector = self.read_state(slot)?;
        let Ok(Some(st)) = parse_state(&sector) else {
            return Ok(None);
        };
        // The state decides most grants without the facts.
        let quick = grant_state::decode_state(st.bytes)?;
        if quick.break_glass || quick.end_bound_secs().is_some_and(|b| b >= cutoff_secs) {
            return Ok(None);
        }
        let random = st.random;
        let Some(g) = self.load(slot, Some(&random))? else {
            return Ok(None);
        };
        if g.break_glass || g.latest_end_secs() >= cutoff_secs {
            return Ok(None);
        }
        self.write(slot, &[0u8; SLOT])?;
        Ok(Some(g))
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("grant slots lock poisoned".into())
}

#[cfg(test)]
mod tests;
