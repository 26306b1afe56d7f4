//! The writer thread: takes everything queued, appends the entries and their leaves, syncs
//! once, signs one checkpoint for the new size and answers every ticket of the batch; after
//! a failure it rolls the files back and refuses appends until a re-check passes.

use super::*;

pub(super) fn writer_loop(
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

pub(super) fn sync_checkpoints(inner: &Inner, unsynced_since: &mut Option<Instant>) {
    if unsynced_since.take().is_some() && inner.files.checkpoints.sync().is_err() {
        inner.healthy.store(false, Ordering::SeqCst);
    }
}

/// Cuts every file back to its last durable, checkpointed length.
pub(super) fn rollback(inner: &Inner, l: Lengths) -> Result<(), VaultError> {
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
pub(super) const HEADROOM: usize = 64 * 1024;

/// Writes `HEADROOM` zero bytes past `len`, syncs, and cuts the file back to `len`.
pub(super) fn has_headroom(file: &dyn LogFile, len: u64) -> std::io::Result<()> {
    let grown = file
        .write_at(len, &[0u8; HEADROOM])
        .and_then(|()| file.sync());
    let cut = file.set_len(len);
    grown.and(cut)
}

/// Before appends resume after a failure: the files are exactly the durable lengths, those
/// lengths are on disk, each file can grow again, and the last entry still matches its leaf.
pub(super) fn recheck(inner: &Inner, l: Lengths) -> Result<(), VaultError> {
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

pub(super) fn commit(
    inner: &Inner,
    jobs: &[Job],
    lengths: &mut Lengths,
) -> Result<Vec<Appended>, VaultError> {
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
    let signer = inner.signer.as_ref().ok_or(VaultError::AuditUnavailable)?;
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
            origin: inner.verifier.name().to_owned(),
            size: new_size,
            root,
        }
        .sign(signer)
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
