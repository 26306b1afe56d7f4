//! Query indexes over the audit log (derived, rebuildable): by subject pseudonym, official,
//! agency, purpose and event, kept in append-only posting files so a query pages through one
//! dimension without reading the log. A background thread indexes what the writer commits;
//! queries also scan the not-yet-indexed tail.

use std::sync::atomic::{AtomicU64, Ordering};

use super::entry::{EntryView, Event, Pseudonym, parse_time};
use crate::clock::Timestamp;
use crate::error::VaultError;
use crate::id::SafeId;

/// What to look for. Every given filter must match. Identifier filters are `SafeId`s: entries
/// record only identifiers of that shape, so a filter of any other shape is refused where it
/// is parsed instead of silently matching nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries about this citizen (pseudonym).
    pub subject: Option<Pseudonym>,
    /// Entries by this official (agency actor id).
    pub official: Option<SafeId>,
    /// Entries by or concerning this agency.
    pub agency: Option<SafeId>,
    /// Entries for this purpose.
    pub purpose: Option<SafeId>,
    /// Entries of this event.
    pub event: Option<Event>,
    /// At or after this time.
    pub from: Option<Timestamp>,
    /// At or before this time.
    pub to: Option<Timestamp>,
}

/// A page of entry indexes and the cursor for the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Entry indexes, in the requested order.
    pub indexes: Vec<u64>,
    /// Where the next page starts (exclusive), if there may be more.
    pub next: Option<u64>,
}

/// Subject postings are spread over this many bucket files by the pseudonym's first byte.
const SUBJECT_BUCKETS: usize = 256;

/// Posting files the indexer keeps open at most: the 256 subject buckets and 128 others.
/// There is a file per official id, and agency systems name their officials, so the set of
/// files is open-ended; an open file for each (as before) would end at the process's file
/// limit, after which the server could not accept connections.
const MAX_OPEN_POSTINGS: usize = SUBJECT_BUCKETS + 128;

/// The posting files open for appending.
#[derive(Debug, Default)]
struct Writers {
    open: std::collections::HashMap<std::path::PathBuf, std::fs::File>,
    /// A file was created since the directory was last synced.
    created: bool,
}

/// The index, in plain append-only files (no B-tree: a B-tree store held ~2 KB of memory per
/// indexed entry and ran out of memory near ten million entries):
/// - officials, agencies, purposes and events: one posting file per value holding the sorted
///   entry indexes (8 bytes each);
/// - subjects: 256 bucket files by the pseudonym's first byte, each holding
///   (first 8 bytes of the pseudonym, entry index) records; a citizen's history reads one
///   bucket and keeps their records (and `matches` re-checks the full pseudonym);
/// - `through`: the watermark, written after the postings it covers are synced (and, for
///   new files, their directory).
///
/// At most `MAX_OPEN_POSTINGS` files are open at once; past that, all are synced and closed.
#[derive(Debug)]
pub struct AuditIndex {
    through: AtomicU64,
    dir: std::path::PathBuf,
    writers: std::sync::Mutex<Writers>,
    /// `MAX_OPEN_POSTINGS`; smaller in tests.
    max_open: usize,
}

fn io(e: std::io::Error) -> VaultError {
    VaultError::StoreUnavailable(format!("audit index: {e}"))
}

fn read_u64_at(f: &std::fs::File, pos: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, pos * 8).ok()?;
    Some(u64::from_be_bytes(b))
}

/// Entry indexes from one posting file, in order, after (or, newest first, before) `cursor`.
struct Postings {
    file: std::fs::File,
    next: u64,
    end: u64,
    newest_first: bool,
}

impl Iterator for Postings {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        if self.newest_first {
            if self.next == 0 {
                return None;
            }
            self.next -= 1;
            read_u64_at(&self.file, self.next)
        } else {
            if self.next >= self.end {
                return None;
            }
            self.next += 1;
            read_u64_at(&self.file, self.next - 1)
        }
    }
}

/// Bytes of a subject bucket read at a time: the bucket grows with the whole log (1/256 of
/// it), so it is streamed through a fixed buffer instead of read whole, keeping every history
/// query's allocation the same size however long the log gets.
const BUCKET_READ: usize = 64 * 1024;

/// The entry indexes below `through` of one subject in its bucket file, in order.
fn subject_postings(
    path: &std::path::Path,
    s: &Pseudonym,
    through: u64,
    read_size: usize,
) -> Vec<u64> {
    use std::io::Read;
    let mut mine = Vec::new();
    let Ok(mut file) = std::fs::File::open(path) else {
        return mine;
    };
    let mut buf = vec![0u8; read_size.max(16)];
    // Bytes of a record cut by the previous read, kept at the front of `buf`.
    let mut kept = 0usize;
    loop {
        let n = match file.read(&mut buf[kept..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let filled = kept + n;
        let whole = filled - filled % 16;
        mine.extend(
            buf[..whole]
                .chunks_exact(16)
                .filter(|r| r[..8] == s.as_bytes()[..8])
                .filter_map(|r| <[u8; 8]>::try_from(&r[8..]).ok().map(u64::from_be_bytes))
                .filter(|&i| i < through),
        );
        buf.copy_within(whole..filled, 0);
        kept = filled - whole;
    }
    mine
}

/// Cuts a file of fixed-size records whose last 8 bytes are an entry index back to the
/// records below `through`.
fn cut_past(path: &std::path::Path, record: u64, through: u64) -> Result<(), VaultError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut n = f.metadata().map(|m| m.len() / record).unwrap_or(0);
    let mut b = [0u8; 8];
    while n > 0 {
        if f.read_exact_at(&mut b, n * record - 8).is_ok() && u64::from_be_bytes(b) < through {
            break;
        }
        n -= 1;
    }
    f.set_len(n * record).map_err(io)
}

impl AuditIndex {
    /// Opens (or creates) the index in `dir`; postings past the persisted watermark are cut
    /// (they are re-indexed from the log).
    pub fn open(dir: &std::path::Path) -> Result<Self, VaultError> {
        let pdir = dir.join("postings");
        std::fs::create_dir_all(&pdir).map_err(io)?;
        let through = std::fs::read(dir.join("through"))
            .ok()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        for e in std::fs::read_dir(&pdir).map_err(io)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let record = if name.starts_with("s-") { 16 } else { 8 };
            cut_past(&e.path(), record, through)?;
        }
        Ok(Self {
            through: AtomicU64::new(through),
            dir: pdir,
            writers: std::sync::Mutex::new(Writers::default()),
            max_open: MAX_OPEN_POSTINGS,
        })
    }

    /// An index that covers nothing and is never written (a read-only view of the log:
    /// queries scan the log).
    pub fn detached() -> Self {
        Self {
            through: AtomicU64::new(0),
            dir: std::path::PathBuf::new(),
            writers: std::sync::Mutex::new(Writers::default()),
            max_open: 0,
        }
    }

    fn posting_path(&self, dim: u8, value: &[u8]) -> std::path::PathBuf {
        self.dir
            .join(format!("{}-{}", char::from(dim), hex::encode(value)))
    }

    fn subject_path(&self, p: &Pseudonym) -> std::path::PathBuf {
        self.dir.join(format!(
            "s-{:02x}",
            p.as_bytes()[0] as usize % SUBJECT_BUCKETS
        ))
    }

    /// Entries `[0, n)` are indexed.
    pub fn indexed_through(&self) -> u64 {
        self.through.load(Ordering::SeqCst)
    }

    /// Indexes entries `start..` given as `(index, bytes)`; entries before `indexed_through`
    /// are skipped, so replays are harmless.
    pub fn add(&self, start: u64, entries: &[Vec<u8>]) -> Result<(), VaultError> {
        use std::io::Write;
        // Hashed, not ordered: each file's postings keep their order in its own vector, and
        // comparing paths component by component was a quarter of the indexer's time.
        let mut appends: std::collections::HashMap<std::path::PathBuf, Vec<u8>> =
            std::collections::HashMap::new();
        let mut last = None;
        for (i, bytes) in entries.iter().enumerate() {
            let index = start + i as u64;
            if index < self.indexed_through() {
                continue;
            }
            last = Some(index);
            let Ok(v) = serde_json::from_slice::<EntryView>(bytes) else {
                continue;
            };
            if let Some(p) = v.subject.as_deref().and_then(Pseudonym::parse_hex) {
                let rec = appends.entry(self.subject_path(&p)).or_default();
                rec.extend_from_slice(&p.as_bytes()[..8]);
                rec.extend_from_slice(&index.to_be_bytes());
            }
            let mut post = |dim: u8, value: &str| {
                appends
                    .entry(self.posting_path(dim, value.as_bytes()))
                    .or_default()
                    .extend_from_slice(&index.to_be_bytes());
            };
            if v.actor.kind == "agency" {
                post(b'o', &v.actor.id);
            }
            if let Some(a) = &v.actor.agency {
                post(b'a', a);
            }
            if let Some(p) = &v.purpose {
                post(b'p', p);
            }
            post(b'e', &v.event);
        }
        let Some(last) = last else { return Ok(()) };
        let mut writers = self
            .writers
            .lock()
            .map_err(|_| VaultError::AuditUnavailable)?;
        for (path, bytes) in appends {
            if !writers.open.contains_key(&path) {
                if writers.open.len() >= self.max_open {
                    // Closing a file does not make it durable: sync what is closed now, as
                    // `flush` would have, before the watermark can cover it.
                    for f in writers.open.values() {
                        f.sync_data().map_err(io)?;
                    }
                    writers.open.clear();
                }
                writers.created |= !path.exists();
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .read(true)
                    .open(&path)
                    .map_err(io)?;
                writers.open.insert(path.clone(), f);
            }
            if let Some(f) = writers.open.get_mut(&path) {
                f.write_all(&bytes).map_err(io)?;
            }
        }
        drop(writers);
        self.through.store(last + 1, Ordering::SeqCst);
        Ok(())
    }

    /// Makes the index durable up to `indexed_through` (it is rebuilt from the log otherwise):
    /// postings are synced before the watermark that covers them is written.
    pub fn flush(&self) -> Result<(), VaultError> {
        let through = self.indexed_through();
        {
            // Never write the watermark over postings that may not be synced.
            let mut writers = self
                .writers
                .lock()
                .map_err(|_| VaultError::AuditUnavailable)?;
            for f in writers.open.values() {
                f.sync_data().map_err(io)?;
            }
            // A new file's name is durable once its directory is synced.
            if writers.created {
                std::fs::File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io)?;
                writers.created = false;
            }
        }
        let parent = self.dir.parent().unwrap_or(&self.dir);
        let tmp = parent.join("through.tmp");
        std::fs::write(&tmp, through.to_be_bytes()).map_err(io)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, parent.join("through")).map_err(io)
    }

    /// Candidate indexes from the most selective index the query names, in order, after
    /// `cursor`. `None` when the query names no indexed dimension.
    pub fn candidates(
        &self,
        q: &AuditQuery,
        cursor: Option<u64>,
        newest_first: bool,
    ) -> Option<Box<dyn Iterator<Item = u64> + '_>> {
        let through = self.indexed_through();
        if let Some(s) = &q.subject {
            let mut mine = subject_postings(&self.subject_path(s), s, through, BUCKET_READ);
            mine.retain(|&i| match (cursor, newest_first) {
                (Some(c), false) => i > c,
                (Some(c), true) => i < c,
                (None, _) => true,
            });
            if newest_first {
                mine.reverse();
            }
            return Some(Box::new(mine.into_iter()));
        }
        let (dim, value): (u8, &str) = if let Some(o) = &q.official {
            (b'o', o.as_str())
        } else if let Some(a) = &q.agency {
            (b'a', a.as_str())
        } else if let Some(p) = &q.purpose {
            (b'p', p.as_str())
        } else if let Some(e) = q.event {
            (b'e', e.as_str())
        } else {
            return None;
        };
        let Ok(file) = std::fs::File::open(self.posting_path(dim, value.as_bytes())) else {
            return Some(Box::new(std::iter::empty()));
        };
        // Only what the watermark covers (a write may be in flight past it).
        let mut len = file.metadata().map(|m| m.len() / 8).unwrap_or(0);
        while len > 0 && read_u64_at(&file, len - 1).is_none_or(|i| i >= through) {
            len -= 1;
        }
        // First position whose index is > cursor (ascending) or >= cursor (descending bound).
        let bound = |c: u64, strict: bool| -> u64 {
            let (mut lo, mut hi) = (0u64, len);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let v = read_u64_at(&file, mid).unwrap_or(u64::MAX);
                if (strict && v <= c) || (!strict && v < c) {
                    lo = mid + 1
                } else {
                    hi = mid
                }
            }
            lo
        };
        let (next, end) = match (cursor, newest_first) {
            (Some(c), false) => (bound(c, true), len),
            (Some(c), true) => (bound(c, false), len),
            (None, false) => (0, len),
            (None, true) => (len, len),
        };
        Some(Box::new(Postings {
            file,
            next,
            end,
            newest_first,
        }))
    }
}

/// Whether a stored entry matches every filter of `q`.
pub fn matches(q: &AuditQuery, v: &EntryView) -> bool {
    let time = parse_time(&v.time);
    q.subject
        .is_none_or(|s| v.subject.as_deref().and_then(Pseudonym::parse_hex) == Some(s))
        && q.official
            .as_ref()
            .is_none_or(|o| v.actor.kind == "agency" && v.actor.id == o.as_str())
        && q.agency
            .as_ref()
            .is_none_or(|a| v.actor.agency.as_deref() == Some(a.as_str()))
        && q.purpose
            .as_ref()
            .is_none_or(|p| v.purpose.as_deref() == Some(p.as_str()))
        && q.event.is_none_or(|e| v.event == e.as_str())
        && q.from.is_none_or(|f| time.is_some_and(|t| t >= f))
        && q.to.is_none_or(|t2| time.is_some_and(|t| t <= t2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Vec<u8> {
        format!(
            "{{\"event\":\"record.released\",\"time\":\"2026-11-23T01:02:03.456Z\",\"actor\":{{\"kind\":\"agency\",\"id\":\"cb-{}\",\"agency\":\"ubnd-phuong-sai-gon\"}},\"subject\":\"{}\",\"purpose\":\"construction_permit\"}}",
            i % 2,
            hex::encode([(i % 3) as u8; 32])
        )
        .into_bytes()
    }

    #[test]
    fn postings_past_the_persisted_watermark_are_cut_and_reindexed_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        {
            let idx = AuditIndex::open(dir.path()).unwrap();
            idx.add(0, &(0..10).map(entry).collect::<Vec<_>>()).unwrap();
            idx.flush().unwrap();
            idx.add(10, &(10..20).map(entry).collect::<Vec<_>>())
                .unwrap();
            // No flush: a crash here leaves postings for 10..20 past the watermark.
        }
        let idx = AuditIndex::open(dir.path()).unwrap();
        assert_eq!(idx.indexed_through(), 10);
        idx.add(10, &(10..20).map(entry).collect::<Vec<_>>())
            .unwrap();
        let q = AuditQuery {
            agency: Some(SafeId::parse("ubnd-phuong-sai-gon").unwrap()),
            ..Default::default()
        };
        let all: Vec<u64> = idx.candidates(&q, None, false).unwrap().collect();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        let newest: Vec<u64> = idx
            .candidates(&q, Some(15), true)
            .unwrap()
            .take(3)
            .collect();
        assert_eq!(newest, vec![14, 13, 12]);
        let after: Vec<u64> = idx.candidates(&q, Some(15), false).unwrap().collect();
        assert_eq!(after, vec![16, 17, 18, 19]);
        let q = AuditQuery {
            official: Some(SafeId::parse("cb-1").unwrap()),
            ..Default::default()
        };
        assert_eq!(idx.candidates(&q, None, false).unwrap().count(), 10);
        let q = AuditQuery {
            subject: Some(Pseudonym::from_bytes([2; 32])),
            ..Default::default()
        };
        assert_eq!(
            idx.candidates(&q, None, true).unwrap().collect::<Vec<_>>(),
            vec![17, 14, 11, 8, 5, 2]
        );
    }

    #[test]
    fn open_posting_files_stay_bounded_however_many_officials_and_answers_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let by_official = |i: u64| {
            format!(
                "{{\"event\":\"record.released\",\"time\":\"2026-11-24T01:02:03.456Z\",\"actor\":{{\"kind\":\"agency\",\"id\":\"official-{}\",\"agency\":\"ubnd-phuong-sai-gon\"}},\"subject\":\"{}\"}}",
                i % 40,
                hex::encode([(i % 7) as u8; 32])
            )
            .into_bytes()
        };
        let official = |n: u64| AuditQuery {
            official: Some(SafeId::parse(&format!("official-{n}")).unwrap()),
            ..Default::default()
        };
        {
            let mut idx = AuditIndex::open(dir.path()).unwrap();
            idx.max_open = 6;
            for batch in 0..4u64 {
                let start = batch * 30;
                idx.add(
                    start,
                    &(start..start + 30).map(by_official).collect::<Vec<_>>(),
                )
                .unwrap();
                assert!(idx.writers.lock().unwrap().open.len() <= 6);
            }
            idx.flush().unwrap();
            assert!(
                !idx.writers.lock().unwrap().created,
                "the directory was synced"
            );
            for n in 0..40 {
                let got: Vec<u64> = idx.candidates(&official(n), None, false).unwrap().collect();
                let want: Vec<u64> = (0..120).filter(|i| i % 40 == n).collect();
                assert_eq!(got, want, "official-{n}");
            }
        }
        // Every file closed early was synced and complete: the same answers after reopening.
        let idx = AuditIndex::open(dir.path()).unwrap();
        assert_eq!(idx.indexed_through(), 120);
        assert_eq!(
            idx.candidates(&official(39), None, false)
                .unwrap()
                .collect::<Vec<_>>(),
            vec![39, 79, 119]
        );
        let q = AuditQuery {
            subject: Some(Pseudonym::from_bytes([3; 32])),
            ..Default::default()
        };
        let want: Vec<u64> = (0..120).filter(|i| i % 7 == 3).collect();
        assert_eq!(
            idx.candidates(&q, None, false).unwrap().collect::<Vec<_>>(),
            want
        );
    }

    #[test]
    fn a_subject_bucket_is_read_through_a_small_buffer_with_records_cut_at_its_edges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s-07");
        let me = Pseudonym::from_bytes([7; 32]);
        let other = Pseudonym::from_bytes([8; 32]);
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for i in 0..1_000u64 {
            let p = if i % 3 == 0 { &me } else { &other };
            bytes.extend_from_slice(&p.as_bytes()[..8]);
            bytes.extend_from_slice(&i.to_be_bytes());
            if i % 3 == 0 && i < 900 {
                expected.push(i);
            }
        }
        // A torn last record (a crash mid-append) is ignored.
        bytes.extend_from_slice(&me.as_bytes()[..8]);
        std::fs::write(&path, &bytes).unwrap();
        // Buffer sizes that cut records at every offset, and the real one.
        for read_size in [1, 16, 17, 40, 100, 4096, BUCKET_READ] {
            assert_eq!(
                subject_postings(&path, &me, 900, read_size),
                expected,
                "read size {read_size}"
            );
        }
        assert!(subject_postings(&dir.path().join("none"), &me, 900, 64).is_empty());
    }
}
