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

/// The sled-backed index.
#[derive(Debug)]
pub struct AuditIndex {
    db: sled::Db,
    tree: sled::Tree,
    through: AtomicU64,
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

impl AuditIndex {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, VaultError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(4 * 1024 * 1024)
            .open()
            .map_err(|e| VaultError::StoreUnavailable(format!("audit index: {e}")))?;
        let tree = db.open_tree("entries")?;
        let through = tree
            .get(THROUGH)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        Ok(Self {
            db,
            tree,
            through: AtomicU64::new(through),
        })
    }

    /// Entries `[0, n)` are indexed.
    pub fn indexed_through(&self) -> u64 {
        self.through.load(Ordering::SeqCst)
    }

    /// Indexes entries `start..` given as `(index, bytes)`; entries before `indexed_through`
    /// are skipped, so replays are harmless.
    pub fn add(&self, start: u64, entries: &[Vec<u8>]) -> Result<(), VaultError> {
        let mut batch = sled::Batch::default();
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
            if v.actor.kind == "agency" {
                batch.insert(key(b'o', v.actor.id.as_bytes(), index), &[]);
            }
            if let Some(a) = &v.actor.agency {
                batch.insert(key(b'a', a.as_bytes(), index), &[]);
            }
            if let Some(p) = &v.purpose {
                batch.insert(key(b'p', p.as_bytes(), index), &[]);
            }
            batch.insert(key(b'e', v.event.as_bytes(), index), &[]);
        }
        if let Some(last) = last {
            batch.insert(THROUGH, &(last + 1).to_be_bytes());
            self.tree.apply_batch(batch)?;
            self.through.store(last + 1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Makes the index durable (it is rebuilt from the log otherwise).
    pub fn flush(&self) -> Result<(), VaultError> {
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
        let p = if let Some(s) = &q.subject {
            prefix(b's', s.as_bytes())
        } else if let Some(o) = &q.official {
            prefix(b'o', o.as_bytes())
        } else if let Some(a) = &q.agency {
            prefix(b'a', a.as_bytes())
        } else if let Some(p) = &q.purpose {
            prefix(b'p', p.as_bytes())
        } else if let Some(e) = q.event {
            prefix(b'e', e.as_str().as_bytes())
        } else {
            return None;
        };
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
        Some(if newest_first {
            Box::new(range.rev().filter_map(decode))
        } else {
            Box::new(range.filter_map(decode))
        })
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
