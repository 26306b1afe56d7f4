//! `RecordFile`: sealed citizen records in one append-only file, each read with one
//! positioned read (the store's index maps a blind id to a `Location`), and shredded in
//! place (zeros written over the frame, then synced) once no durable index entry can point
//! at it.
//!
//! A frame is a 64-byte header then the encoded record:
//!
//! | bytes | content |
//! |---|---|
//! | 0..4 | magic `VRec` |
//! | 4 | state: 1 live, 0 shredded |
//! | 8..12 | payload length (u32, big-endian) |
//! | 12..20 | offset of the same citizen's previous frame (`NO_FRAME` if none) |
//! | 20..52 | blind id (zeros once shredded) |
//! | 52..56 | CRC-32 of bytes 0..52 (finds a torn or foreign header when scanning) |
//!
//! Every frame of a citizen is on one chain through `prev`, so an erasure reaches every copy
//! (older versions, rotations) and shreds them all. Shredding keeps the header's chain link
//! so later walks go through it. A rewrite appends a new frame and the old one becomes zeros;
//! the space comes back when the store compacts the file at open (`SledStore`): the live
//! frames are copied into the other of two slots (`records.dat`, `records.1.dat`), then the
//! old file is zeroed and removed.

use super::StoreError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::id::BlindId;

/// `prev` of a citizen's first frame.
pub(super) const NO_FRAME: u64 = u64::MAX;
const MAGIC: &[u8; 4] = b"VRec";
const HEADER: usize = 64;
const LIVE: u8 = 1;
const SHREDDED: u8 = 0;
/// Tag of an index value that is a `Location` in slot 0 (slot 1: the next byte). A record
/// encoded in the index itself, as stores before the record file kept it, starts with its
/// format byte 1.
const LOCATION_TAG: u8 = 0xF1;
/// The file of each slot.
pub(super) const SLOT_FILES: [&str; 2] = ["records.dat", "records.1.dat"];
/// Largest payload accepted when reading a header (a record is a few KiB).
const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;

/// Where a citizen's current frame is: the index value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    /// Which of the two record files (0 or 1).
    pub slot: u8,
    /// File offset of the frame's header.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

impl Location {
    /// The 13-byte index value.
    pub fn encode(self) -> [u8; 13] {
        let mut out = [0u8; 13];
        out[0] = LOCATION_TAG + (self.slot & 1);
        out[1..9].copy_from_slice(&self.offset.to_be_bytes());
        out[9..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// A location, or `None` for any other value (a corrupt index entry).
    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != 13 || !(LOCATION_TAG..=LOCATION_TAG + 1).contains(&v[0]) {
            return None;
        }
        Some(Self {
            slot: v[0] - LOCATION_TAG,
            offset: u64::from_be_bytes(v[1..9].try_into().ok()?),
            len: u32::from_be_bytes(v[9..].try_into().ok()?),
        })
    }
}

/// A frame header as read from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// Still holds its record.
    pub live: bool,
    /// Payload length.
    pub len: u32,
    /// The citizen's previous frame, or `NO_FRAME`.
    pub prev: u64,
    /// The citizen (zeros once shredded).
    pub blind: [u8; 32],
}

impl Header {
    fn encode(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(MAGIC);
        h[4] = if self.live { LIVE } else { SHREDDED };
        h[8..12].copy_from_slice(&self.len.to_be_bytes());
        h[12..20].copy_from_slice(&self.prev.to_be_bytes());
        h[20..52].copy_from_slice(&self.blind);
        let crc = crc32fast::hash(&h[..52]);
        h[52..56].copy_from_slice(&crc.to_be_bytes());
        h
    }

    /// `None` unless the bytes are a whole, well-formed header.
    fn decode(h: &[u8]) -> Option<Self> {
        if h.len() < HEADER || &h[..4] != MAGIC {
            return None;
        }
        if crc32fast::hash(&h[..52]).to_be_bytes() != h[52..56] {
            return None;
        }
        let live = match h[4] {
            LIVE => true,
            SHREDDED => false,
            _ => return None,
        };
        let len = u32::from_be_bytes(h[8..12].try_into().ok()?);
        if len > MAX_PAYLOAD {
            return None;
        }
        Some(Self {
            live,
            len,
            prev: u64::from_be_bytes(h[12..20].try_into().ok()?),
            blind: h[20..52].try_into().ok()?,
        })
    }

    /// Bytes from this header's offset to the next frame.
    pub fn frame_len(&self) -> u64 {
        HEADER as u64 + u64::from(self.len)
    }
}

/// The append side: the file's end and the frames replaced since the last shred.
#[derive(Debug, Default)]
pub(super) struct Tail {
    /// Where the next frame goes.
    pub end: u64,
    /// Frames whose citizen has a newer frame, to shred once the index that no longer
    /// points at them is durable.
    pub superseded: Vec<u64>,
    /// The clean mark last written to the store's meta.
    pub marked: u64,
    /// The shredded-bytes count last written to the store's meta.
    pub counted: u64,
}

/// The record file. Reads take no lock; appends and shreds go through `lock`.
#[derive(Debug)]
pub(super) struct RecordFile {
    file: File,
    slot: u8,
    tail: Mutex<Tail>,
    /// Bytes of frames shredded in this file (kept in the store's meta; decides compaction).
    shredded: std::sync::atomic::AtomicU64,
    /// `sync` calls (tests only).
    #[cfg(test)]
    pub syncs: std::sync::atomic::AtomicU64,
}

fn io(what: &str, e: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("record file: {what}: {e}"))
}

impl RecordFile {
    /// Opens (or creates) the file of `slot` in `dir`; appends start at its current end.
    pub fn open(dir: &Path, slot: u8) -> Result<Self, StoreError> {
        let path = &dir.join(SLOT_FILES[usize::from(slot & 1)]);
        let created = !path.exists();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io("open", &e))?;
        let end = file.metadata().map_err(|e| io("stat", &e))?.len();
        if created {
            // The new name must survive a power loss with the frames it will hold.
            if let Some(dir) = path.parent() {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io("sync directory", &e))?;
            }
        }
        Ok(Self {
            file,
            slot: slot & 1,
            shredded: std::sync::atomic::AtomicU64::new(0),
            #[cfg(test)]
            syncs: std::sync::atomic::AtomicU64::new(0),
            tail: Mutex::new(Tail {
                end,
                ..Tail::default()
            }),
        })
    }

    /// The append state (one writer at a time).
    pub fn lock(&self) -> Result<MutexGuard<'_, Tail>, StoreError> {
        self.tail
            .lock()
            .map_err(|_| StoreError::Unavailable("record file lock poisoned".into()))
    }

    /// Appends one frame per `(blind, payload)` and syncs them, so an index entry written
    /// afterwards (which sled may make durable at any time) never points at bytes a power
    /// loss could drop. `current` gives a citizen's frame before this batch (`NO_FRAME` if
    /// none); a citizen twice in the batch chains to its earlier frame. Returns each frame's
    /// location and the frames this batch supersedes.
    pub fn append(
        &self,
        tail: &mut Tail,
        frames: &[(&BlindId, &[u8])],
        current: &mut dyn FnMut(&BlindId) -> Result<u64, StoreError>,
    ) -> Result<(Vec<Location>, Vec<u64>), StoreError> {
        let total: usize = frames.iter().map(|(_, p)| HEADER + p.len()).sum();
        let mut buf = Vec::with_capacity(total);
        let mut locations = Vec::with_capacity(frames.len());
        let mut superseded = Vec::new();
        let mut in_batch = std::collections::HashMap::<[u8; 32], u64>::new();
        for (blind, payload) in frames {
            let prev = match in_batch.get(blind.as_bytes()) {
                Some(p) => *p,
                None => current(blind)?,
            };
            if prev != NO_FRAME {
                superseded.push(prev);
            }
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| *l <= MAX_PAYLOAD)
                .ok_or_else(|| StoreError::Corrupt("record too large".into()))?;
            locations.push(Location {
                slot: self.slot,
                offset: tail.end + buf.len() as u64,
                len,
            });
            let header = Header {
                live: true,
                len,
                prev,
                blind: *blind.as_bytes(),
            };
            in_batch.insert(*blind.as_bytes(), tail.end + buf.len() as u64);
            buf.extend_from_slice(&header.encode());
            buf.extend_from_slice(payload);
        }
        self.file
            .write_all_at(&buf, tail.end)
            .map_err(|e| io("append", &e))?;
        self.file.sync_data().map_err(|e| io("sync", &e))?;
        tail.end += buf.len() as u64;
        Ok((locations, superseded))
    }

    /// The payload at `at` if it is `blind`'s live frame; `None` if it was shredded.
    pub fn read(&self, at: Location, blind: &BlindId) -> Result<Option<Vec<u8>>, StoreError> {
        if at.slot != self.slot {
            return Err(StoreError::Corrupt(
                "record index entry names a record file that is gone".into(),
            ));
        }
        let mut buf = vec![0u8; HEADER + at.len as usize];
        self.file
            .read_exact_at(&mut buf, at.offset)
            .map_err(|_| StoreError::Corrupt("record frame past the end of its file".into()))?;
        let h = Header::decode(&buf)
            .ok_or_else(|| StoreError::Corrupt("record frame header damaged".into()))?;
        if !h.live {
            return Ok(None);
        }
        if h.len != at.len || h.blind != *blind.as_bytes() {
            return Err(StoreError::Corrupt(
                "record frame does not match its index entry".into(),
            ));
        }
        buf.drain(..HEADER);
        Ok(Some(buf))
    }

    /// The header at `offset`, `None` if the bytes there are not a whole frame.
    pub fn header(&self, offset: u64, file_len: u64) -> Result<Option<Header>, StoreError> {
        if offset.saturating_add(HEADER as u64) > file_len {
            return Ok(None);
        }
        let mut h = [0u8; HEADER];
        self.file
            .read_exact_at(&mut h, offset)
            .map_err(|e| io("read", &e))?;
        Ok(Header::decode(&h).filter(|h| offset + h.frame_len() <= file_len))
    }

    /// Overwrites the frame at `offset` with zeros, keeping its chain link. Returns its
    /// header as it was (`None` if no frame is there). Not synced: call `sync`.
    pub fn shred(&self, offset: u64) -> Result<Option<Header>, StoreError> {
        let file_len = self.len()?;
        let Some(h) = self.header(offset, file_len)? else {
            return Ok(None);
        };
        if h.live {
            let gone = Header {
                live: false,
                blind: [0; 32],
                ..h
            };
            let mut buf = vec![0u8; HEADER + h.len as usize];
            buf[..HEADER].copy_from_slice(&gone.encode());
            self.file
                .write_all_at(&buf, offset)
                .map_err(|e| io("shred", &e))?;
            self.shredded
                .fetch_add(h.frame_len(), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Some(h))
    }

    /// Shreds `offset` and every older frame on its chain.
    pub fn shred_chain(&self, mut offset: u64) -> Result<(), StoreError> {
        while offset != NO_FRAME {
            let Some(h) = self.shred(offset)? else {
                return Err(StoreError::Corrupt("record chain broken".into()));
            };
            // A chain only points backwards; anything else is damage (and would loop).
            if h.prev != NO_FRAME && h.prev >= offset {
                return Err(StoreError::Corrupt("record chain broken".into()));
            }
            offset = h.prev;
        }
        Ok(())
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        #[cfg(test)]
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.file.sync_data().map_err(|e| io("sync", &e))
    }

    /// Bytes of shredded frames in this file, as far as counted.
    pub fn shredded(&self) -> u64 {
        self.shredded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the count of shredded bytes (from the store's meta, at open).
    pub fn set_shredded(&self, bytes: u64) {
        self.shredded
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// This file's slot.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// Overwrites the whole file with zeros, syncs it, then removes it and syncs `dir`: the
    /// end of a compaction (every live frame has a copy in the other slot).
    pub fn zero_and_remove(&self, dir: &Path) -> Result<(), StoreError> {
        let len = self.len()?;
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(zeros.len() as u64);
            self.file
                .write_all_at(&zeros[..n as usize], at)
                .map_err(|e| io("zero", &e))?;
            at += n;
        }
        self.sync()?;
        std::fs::remove_file(dir.join(SLOT_FILES[usize::from(self.slot)]))
            .map_err(|e| io("remove", &e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync directory", &e))
    }

    /// The file's length.
    pub fn len(&self) -> Result<u64, StoreError> {
        Ok(self.file.metadata().map_err(|e| io("stat", &e))?.len())
    }

    /// Calls `visit(offset, header)` for each whole frame from `from` to the end; a torn or
    /// foreign header ends the walk and the file is cut there: frames are synced before any
    /// index entry names them, so after a crash nothing past a torn frame is in use. Before it
    /// cuts, `may_cut(offset)` must confirm that (damage in the middle of frames the index
    /// uses is refused as `StoreError::Corrupt`, never cut away). Returns the new end.
    pub fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(u64, &Header) -> Result<(), StoreError>,
        may_cut: &mut dyn FnMut(u64) -> Result<bool, StoreError>,
    ) -> Result<u64, StoreError> {
        let file_len = self.len()?;
        let mut at = from.min(file_len);
        while at < file_len {
            let Some(h) = self.header(at, file_len)? else {
                if !may_cut(at)? {
                    return Err(StoreError::Corrupt(
                        "record file damaged before frames its index uses".into(),
                    ));
                }
                self.file.set_len(at).map_err(|e| io("truncate", &e))?;
                self.sync()?;
                break;
            };
            visit(at, &h)?;
            at += h.frame_len();
        }
        let mut tail = self.lock()?;
        tail.end = at;
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blind(n: u8) -> BlindId {
        BlindId::from_bytes([n; 32])
    }

    fn none(_: &BlindId) -> Result<u64, StoreError> {
        Ok(NO_FRAME)
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn locations_round_trip_and_inline_records_are_not_locations() {
        for slot in [0, 1] {
            let at = Location {
                slot,
                offset: 123_456_789,
                len: 3_000,
            };
            assert_eq!(Location::decode(&at.encode()), Some(at));
        }
        let at = Location {
            slot: 0,
            offset: 1,
            len: 2,
        };
        assert_eq!(Location::decode(&[1u8; 13]), None);
        assert_eq!(Location::decode(&at.encode()[..12]), None);
    }

    #[test]
    fn frames_read_back_and_a_shredded_chain_leaves_only_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.dat");
        let f = RecordFile::open(dir.path(), 0).unwrap();
        let (a, b) = (blind(1), blind(2));
        let mut tail = f.lock().unwrap();
        let (first, gone) = f
            .append(&mut tail, &[(&a, b"alpha-v1"), (&b, b"beta")], &mut none)
            .unwrap();
        assert!(gone.is_empty());
        let v1 = first[0].offset;
        let (second, gone) = f
            .append(&mut tail, &[(&a, b"alpha-v2")], &mut |_| Ok(v1))
            .unwrap();
        assert_eq!(gone, vec![v1]);
        drop(tail);
        assert_eq!(f.read(first[1], &b).unwrap().unwrap(), b"beta");
        assert_eq!(f.read(second[0], &a).unwrap().unwrap(), b"alpha-v2");
        assert!(
            matches!(f.read(first[0], &b), Err(StoreError::Corrupt(_))),
            "a frame of another citizen is refused"
        );
        f.shred_chain(second[0].offset).unwrap();
        f.sync().unwrap();
        assert_eq!(f.read(second[0], &a).unwrap(), None);
        assert_eq!(f.read(first[0], &a).unwrap(), None);
        let bytes = std::fs::read(&path).unwrap();
        assert!(!contains(&bytes, b"alpha"));
        assert!(!contains(&bytes, a.as_bytes()), "no blind id left either");
        assert!(contains(&bytes, b"beta"));
        let h = f
            .header(second[0].offset, bytes.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!((h.live, h.prev), (false, first[0].offset), "the link stays");
    }

    #[test]
    fn a_scan_visits_whole_frames_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.dat");
        let f = RecordFile::open(dir.path(), 0).unwrap();
        let mut tail = f.lock().unwrap();
        let (at, _) = f
            .append(
                &mut tail,
                &[(&blind(1), b"one"), (&blind(2), b"two")],
                &mut none,
            )
            .unwrap();
        drop(tail);
        let whole = f.len().unwrap();
        // A frame cut short by a crash, then garbage that is not a header at all.
        let torn = Header {
            live: true,
            len: 500,
            prev: NO_FRAME,
            blind: [3; 32],
        }
        .encode();
        f.file.write_all_at(&torn, whole).unwrap();
        f.file.write_all_at(b"junk", whole + 64).unwrap();
        drop(f);
        let f = RecordFile::open(dir.path(), 0).unwrap();
        let mut seen = Vec::new();
        let end = f
            .scan(
                0,
                &mut |off, h| {
                    seen.push((off, h.blind[0]));
                    Ok(())
                },
                &mut |_| Ok(true),
            )
            .unwrap();
        assert_eq!(seen, vec![(at[0].offset, 1), (at[1].offset, 2)]);
        assert_eq!((end, f.len().unwrap()), (whole, whole));
        // A damaged header (one bit) is not a frame either.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at[1].offset as usize + 10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let f = RecordFile::open(dir.path(), 0).unwrap();
        assert!(matches!(
            f.scan(0, &mut |_, _| Ok(()), &mut |_| Ok(false)),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(f.len().unwrap(), whole, "refused, not cut");
        assert_eq!(
            f.scan(0, &mut |_, _| Ok(()), &mut |_| Ok(true)).unwrap(),
            at[1].offset
        );
        assert!(matches!(
            f.read(at[1], &blind(2)),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_chain_that_points_forward_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let f = RecordFile::open(dir.path(), 0).unwrap();
        let mut tail = f.lock().unwrap();
        let (at, _) = f
            .append(&mut tail, &[(&blind(1), b"loops")], &mut |_| Ok(0))
            .unwrap();
        drop(tail);
        assert!(matches!(
            f.shred_chain(at[0].offset),
            Err(StoreError::Corrupt(_))
        ));
    }
}
