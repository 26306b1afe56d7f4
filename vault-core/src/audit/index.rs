//! Query indexes over the audit log (derived, rebuildable): by subject pseudonym, official,
//! agency, purpose and event, each key ending in the entry index so a range scan in either
//! direction pages through one dimension without reading the log. A background thread
//! indexes what the writer commits; queries also scan the not-yet-indexed tail.

use std::sync::atomic::{AtomicU64, Ordering};

use super::entry::{EntryView, Event, Pseudonym, parse_time};
use crate::clock::Timestamp;
use crate::error::VaultError;

const THROUGH: &[u8] = b"indexed_through";

/// What to look for. Every given filter must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries about this citizen (pseudonym).
    pub subject: Option<Pseudonym>,
    /// Entries by this official (agency actor id).
    pub official: Option<String>,
    /// Entries by or concerning this agency.
    pub agency: Option<String>,
    /// Entries for this purpose.
    pub purpose: Option<String>,
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

/// Dimensions kept in posting files (few distinct values each).
const POSTING_DIMS: [u8; 4] = [b'o', b'a', b'p', b'e'];

/// The index: subject pseudonyms in sled (millions of values, one key per entry); officials,
/// agencies, purposes and events in append-only posting files, one per value, holding the
/// sorted entry indexes (a buffered 8-byte append per entry instead of a B-tree insert).
#[derive(Debug)]
pub struct AuditIndex {
    db: sled::Db,
    tree: sled::Tree,
    through: AtomicU64,
    dir: std::path::PathBuf,
    writers: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, std::fs::File>>,
}

fn key(prefix: u8, value: &[u8], index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + value.len() + 8);
    k.push(prefix);
    k.extend_from_slice(value);
    k.push(0);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn prefix(prefix: u8, value: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + value.len());
    k.push(prefix);
    k.extend_from_slice(value);
    k.push(0);
    k
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

impl AuditIndex {
    /// Opens (or creates) the index in `dir`; posting files are cut back to what the
    /// persisted watermark covers (the rest is re-indexed).
    pub fn open(dir: &std::path::Path) -> Result<Self, VaultError> {
        let db = sled::Config::new()
            .path(dir.join("subjects"))
            .cache_capacity(4 * 1024 * 1024)
            .open()
            .map_err(|e| VaultError::StoreUnavailable(format!("audit index: {e}")))?;
        let tree = db.open_tree("entries")?;
        let through = tree
            .get(THROUGH)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let pdir = dir.join("postings");
        std::fs::create_dir_all(&pdir)
            .map_err(|e| VaultError::StoreUnavailable(format!("audit index: {e}")))?;
        for e in std::fs::read_dir(&pdir)
            .map_err(|e| VaultError::StoreUnavailable(format!("audit index: {e}")))?
            .flatten()
        {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(e.path())
                .map_err(|e| VaultError::StoreUnavailable(format!("audit index: {e}")))?;
            let mut n = f.metadata().map(|m| m.len() / 8).unwrap_or(0);
            while n > 0 && read_u64_at(&f, n - 1).is_none_or(|i| i >= through) {
                n -= 1;
            }
            f.set_len(n * 8)
                .map_err(|e| VaultError::StoreUnavailable(format!("audit index: {e}")))?;
        }
        Ok(Self {
            db,
            tree,
            through: AtomicU64::new(through),
            dir: pdir,
            writers: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    fn posting_path(&self, dim: u8, value: &[u8]) -> std::path::PathBuf {
        self.dir
            .join(format!("{}-{}", char::from(dim), hex::encode(value)))
    }

    /// Entries `[0, n)` are indexed.
    pub fn indexed_through(&self) -> u64 {
        self.through.load(Ordering::SeqCst)
    }

    /// Indexes entries `start..` given as `(index, bytes)`; entries before `indexed_through`
    /// are skipped, so replays are harmless.
    pub fn add(&self, start: u64, entries: &[Vec<u8>]) -> Result<(), VaultError> {
        use std::io::Write;
        let mut batch = sled::Batch::default();
        let mut appends: std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> =
            std::collections::BTreeMap::new();
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
                batch.insert(key(b's', p.as_bytes(), index), &[]);
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
            if !writers.contains_key(&path) {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .read(true)
                    .open(&path)
                    .map_err(|e| VaultError::StoreUnavailable(format!("audit index: {e}")))?;
                writers.insert(path.clone(), f);
            }
            if let Some(f) = writers.get_mut(&path) {
                f.write_all(&bytes)
                    .map_err(|e| VaultError::StoreUnavailable(format!("audit index: {e}")))?;
            }
        }
        drop(writers);
        self.tree.apply_batch(batch)?;
        self.through.store(last + 1, Ordering::SeqCst);
        Ok(())
    }

    /// Makes the index durable up to `indexed_through` (it is rebuilt from the log otherwise):
    /// posting files are synced before the watermark that covers them is written.
    pub fn flush(&self) -> Result<(), VaultError> {
        let through = self.indexed_through();
        if let Ok(writers) = self.writers.lock() {
            for f in writers.values() {
                f.sync_data()
                    .map_err(|e| VaultError::StoreUnavailable(format!("audit index: {e}")))?;
            }
        }
        self.tree.insert(THROUGH, &through.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Candidate indexes from the most selective index the query names, in order, after
    /// `cursor`. `None` when the query names no indexed dimension.
    pub fn candidates(
        &self,
        q: &AuditQuery,
        cursor: Option<u64>,
        newest_first: bool,
    ) -> Option<Box<dyn Iterator<Item = u64> + '_>> {
        if let Some(s) = &q.subject {
            let p = prefix(b's', s.as_bytes());
            let decode = |r: sled::Result<(sled::IVec, sled::IVec)>| -> Option<u64> {
                let (k, _) = r.ok()?;
                let tail: [u8; 8] = k.get(k.len().checked_sub(8)?..)?.try_into().ok()?;
                Some(u64::from_be_bytes(tail))
            };
            let mut lo = p.clone();
            let mut hi = p.clone();
            hi.extend_from_slice(&[0xff; 8]);
            match (cursor, newest_first) {
                (Some(c), false) => lo.extend_from_slice(&(c + 1).to_be_bytes()),
                (Some(c), true) => {
                    hi = p.clone();
                    hi.extend_from_slice(&c.to_be_bytes());
                }
                _ => {}
            }
            let range = self.tree.range(lo..hi);
            return Some(if newest_first {
                Box::new(range.rev().filter_map(decode))
            } else {
                Box::new(range.filter_map(decode))
            });
        }
        let (dim, value): (u8, &str) = if let Some(o) = &q.official {
            (b'o', o)
        } else if let Some(a) = &q.agency {
            (b'a', a)
        } else if let Some(p) = &q.purpose {
            (b'p', p)
        } else if let Some(e) = q.event {
            (b'e', e.as_str())
        } else {
            return None;
        };
        debug_assert!(POSTING_DIMS.contains(&dim));
        let Ok(file) = std::fs::File::open(self.posting_path(dim, value.as_bytes())) else {
            return Some(Box::new(std::iter::empty()));
        };
        // Only what the watermark covers (a write may be in flight past it).
        let through = self.indexed_through();
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
        .is_none_or(|s| v.subject.as_deref() == Some(s.to_string().as_str()))
        && q.official
            .as_deref()
            .is_none_or(|o| v.actor.kind == "agency" && v.actor.id == o)
        && q.agency
            .as_deref()
            .is_none_or(|a| v.actor.agency.as_deref() == Some(a))
        && q.purpose
            .as_deref()
            .is_none_or(|p| v.purpose.as_deref() == Some(p))
        && q.event.is_none_or(|e| v.event == e.as_str())
        && q.from.is_none_or(|f| time.is_some_and(|t| t >= f))
        && q.to.is_none_or(|t2| time.is_some_and(|t| t <= t2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Vec<u8> {
        format!(
            "{{\"event\":\"record.released\",\"time\":\"2026-11-23T01:02:03.456Z\",\"actor\":{{\"kind\":\"agency\",\"id\":\"cb-{}\",\"agency\":\"ubnd-quan-1\"}},\"subject\":\"{}\",\"purpose\":\"construction_permit\"}}",
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
            agency: Some("ubnd-quan-1".into()),
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
            official: Some("cb-1".into()),
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
}
