//! The indexer thread: postings for what the writer committed, from the bytes the writer
//! hands over or, when it falls behind, read back from the log files.

use super::*;

/// Indexes entries `[indexed_through, upto)` reading them back from the log files.
pub(super) fn index_from_files(inner: &Inner, upto: u64) {
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
pub(super) fn indexer_loop(inner: &Inner, rx: &mpsc::Receiver<IndexJob>) {
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
