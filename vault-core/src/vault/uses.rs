//! Spent uses across a crash. A release spends its grant's use by compare-and-swap in the
//! store's memory and is made durable by its `record.released` audit entry alone (one fsync
//! on the release path, the audit log's). The background flush writes, just before each store
//! flush, the audit log's durable size as the store's `released_through` mark; on open, the
//! `record.released` entries from the mark on are counted again as spent uses.
//!
//! Why the mark is safe: a release spends its use before it appends its entry, so every
//! entry below a size read at some moment had its use spent before that moment, and the
//! flush that follows makes it durable. Entries at or past the mark may or may not have their
//! use in the store already (the store may also have written it on its own): counting them
//! again can only use a grant up early, never let it release more than `max_uses` times.

use serde::Deserialize;

use crate::audit::AuditLog;
use crate::audit::entry::{Event, parse_time};
use crate::clock::Timestamp;
use crate::error::VaultError;
use crate::store::{StoreError, VaultStore};

/// What the replay reads of an entry.
#[derive(Deserialize)]
struct ReleasedView {
    event: String,
    time: String,
    grant_id: Option<String>,
}

/// Moves the mark. One per vault, shared by the background flusher and `Vault::flush`: the
/// lock keeps two marks from crossing (a later size written before an earlier one would move
/// the mark back, and the entries between would be counted twice after a crash).
#[derive(Debug, Default)]
pub(super) struct Marker {
    /// The size the last mark wrote.
    last: std::sync::Mutex<u64>,
}

impl Marker {
    /// Marks the audit log's current durable size as covered, then flushes the store. With
    /// `only_if_moved`, does nothing while the log has not grown since the last mark (the
    /// mark stands, and the entries below it are covered by the flush that set it).
    pub(super) fn mark<S: VaultStore>(
        &self,
        store: &S,
        audit: &dyn AuditLog,
        only_if_moved: bool,
    ) -> Result<(), VaultError> {
        let mut last = self
            .last
            .lock()
            .map_err(|_| VaultError::StoreUnavailable("spent-use mark poisoned".into()))?;
        if store.uses_durable_at_once() {
            // Every use is committed before its entry is queued: no mark to keep.
            return store.flush().map_err(Into::into);
        }
        // Read before the flush: every released entry below it had its use spent already.
        let size = audit.size();
        if only_if_moved && size == *last {
            return Ok(());
        }
        store.set_released_through(size)?;
        store.flush()?;
        *last = size;
        Ok(())
    }
}

/// Counts the `record.released` entries past the store's mark as spent uses, then moves the
/// mark to the log's end (durably). Returns the marker (at that end) and how many uses were
/// counted again. A store with no mark (new, or written by a version that flushed each use
/// before releasing) has nothing to replay.
pub(super) fn replay_released<S: VaultStore>(
    store: &S,
    audit: &dyn AuditLog,
) -> Result<(Marker, u64), VaultError> {
    if store.uses_durable_at_once() {
        return Ok((Marker::default(), 0));
    }
    let size = audit.size();
    let from = store.released_through()?.unwrap_or(size).min(size);
    let mut replayed = 0;
    for index in from..size {
        let bytes = audit.entry(index)?;
        let view: ReleasedView = serde_json::from_slice(&bytes).map_err(|_| {
            VaultError::StoreCorrupt(format!("audit entry {index} unreadable in replay"))
        })?;
        if view.event != Event::RecordReleased.as_str() {
            continue;
        }
        let Some(grant_id) = view.grant_id else {
            continue;
        };
        let at = parse_time(&view.time).unwrap_or(Timestamp::from_millis(0));
        match store.update_grant(&grant_id, false, &mut |g| {
            g.replay_use(at);
            Ok(())
        }) {
            Ok(_) => replayed += 1,
            // Swept by retention since: nothing left to count.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let marker = Marker::default();
    marker.mark(store, audit, false)?;
    Ok((marker, replayed))
}
