//! Opening the log: torn tails cut, the derived leaf index checked and completed, the tree
//! rebuilt and compared with the last signed checkpoint; a log that does not match it is
//! refused, naming the first bad entry.

use super::*;

/// Opening: torn tails cut, derived leaf index checked and completed, tree rebuilt, the
/// whole compared with the last signed checkpoint.
pub(super) fn recover(files: &Files, signer: &LogSigner) -> Result<(State, Lengths), VaultError> {
    let verifier = signer.verifier();
    // 1. Checkpoints: whole records only; sizes never decrease.
    let clen = files
        .checkpoints
        .size()
        .map_err(|e| io_unavailable("checkpoints", &e))?;
    let mut checkpoints = CheckpointIndex::default();
    let mut off = 0u64;
    let mut last: Option<(u64, u64, u32)> = None;
    while off + CHECKPOINT_HEADER <= clen {
        let mut head = [0u8; CHECKPOINT_HEADER as usize];
        files
            .checkpoints
            .read_at(off, &mut head)
            .map_err(|e| io_unavailable("checkpoints", &e))?;
        let (size, len, _) = checkpoint_header(&head);
        // A signed note is never empty: a zero header is a zero-filled tail, as a torn one.
        if len == 0
            || off + CHECKPOINT_HEADER + u64::from(len) > clen
            || read_checkpoint(files, off, len).is_err()
        {
            break; // torn tail
        }
        if last.is_some_and(|(s, _, _)| size < s) {
            return Err(corrupt(size, "checkpoint sizes go backwards"));
        }
        checkpoints.push(size, off, len);
        last = Some((size, off, len));
        off += CHECKPOINT_HEADER + u64::from(len);
    }
    if off < clen {
        files
            .checkpoints
            .set_len(off)
            .map_err(|e| io_unavailable("checkpoints", &e))?;
    }
    let mut lengths = Lengths {
        entries: 0,
        leaves: 0,
        checkpoints: off,
    };

    // 2. Leaf index: whole records; the last 64 re-checked against the entries.
    let elen = files
        .entries
        .size()
        .map_err(|e| io_unavailable("entries", &e))?;
    let llen = files
        .leaves
        .size()
        .map_err(|e| io_unavailable("leaf index", &e))?;
    let mut n = llen / LEAF_RECORD;
    let leaf_ok = |i: u64| -> Result<bool, VaultError> {
        let (o, h) = files.leaf_record(i)?;
        Ok(files
            .entry_at(o, elen)?
            .is_some_and(|b| merkle::leaf_hash(&b) == h))
    };
    // A tail of records that match no entry (zero-filled after a crash, or torn) goes first,
    // however long; then the 64 records before the end are re-checked.
    while n > 0 && !leaf_ok(n - 1)? {
        n -= 1;
    }
    let check_from = n.saturating_sub(64);
    for i in check_from..n {
        if !leaf_ok(i)? {
            n = i;
            break;
        }
    }
    // 3. Entries past the index: complete them, cut a torn tail.
    let mut eoff = if n == 0 {
        0
    } else {
        let (o, _) = files.leaf_record(n - 1)?;
        let body = files
            .entry_at(o, elen)?
            .ok_or_else(|| corrupt(n - 1, "entry record damaged"))?;
        o + ENTRY_HEADER + body.len() as u64
    };
    let mut new_leaves = Vec::new();
    while eoff < elen {
        match files.entry_at(eoff, elen)? {
            Some(body) => {
                let mut rec = Vec::with_capacity(LEAF_RECORD as usize);
                rec.extend_from_slice(&eoff.to_be_bytes());
                rec.extend_from_slice(&merkle::leaf_hash(&body));
                new_leaves.extend_from_slice(&rec);
                eoff += ENTRY_HEADER + body.len() as u64;
            }
            None => {
                // Past the last durable checkpoint, damage is a torn tail: entries acknowledged
                // there were synced whole, so only a write that never completed (never
                // acknowledged) can be damaged, barring media corruption in that last second.
                // Cut it. Damage inside the checkpointed range is corruption: refuse.
                let index = n + new_leaves.len() as u64 / LEAF_RECORD;
                let covered = last.map_or(0, |(s, _, _)| s);
                if index < covered {
                    return Err(corrupt(
                        index,
                        "entry record damaged inside the checkpointed log",
                    ));
                }
                files
                    .entries
                    .set_len(eoff)
                    .map_err(|e| io_unavailable("entries", &e))?;
                break;
            }
        }
    }
    files
        .leaves
        .set_len(n * LEAF_RECORD)
        .map_err(|e| io_unavailable("leaf index", &e))?;
    if !new_leaves.is_empty() {
        files
            .leaves
            .write_at(n * LEAF_RECORD, &new_leaves)
            .map_err(|e| io_unavailable("leaf index", &e))?;
        n += new_leaves.len() as u64 / LEAF_RECORD;
    }
    files
        .entries
        .sync()
        .map_err(|e| io_unavailable("entries", &e))?;
    files
        .leaves
        .sync()
        .map_err(|e| io_unavailable("leaf index", &e))?;
    lengths.entries = eoff;
    lengths.leaves = n * LEAF_RECORD;

    // 4. The tree.
    let mut tree = ChunkedTree::default();
    let mut i = 0u64;
    while i < n {
        let count = (n - i).min(65_536);
        for h in files.leaves(i, count).map_err(proof_err)? {
            tree.push(h);
        }
        i += count;
    }

    // 5. Against the last signed checkpoint.
    if let Some((size, off, len)) = last {
        let (_, note) = read_checkpoint(files, off, len)?;
        let cp = Checkpoint::verify(&note, &verifier).map_err(|e| {
            corrupt(
                size,
                format!("last checkpoint does not verify with the log key: {e}"),
            )
        })?;
        if n < cp.size {
            return Err(corrupt(
                n,
                format!(
                    "the log has {n} entries but its signed checkpoint covers {}: entries were removed",
                    cp.size
                ),
            ));
        }
        let view = tree.view(n, files);
        let r = merkle::root(&view, cp.size).map_err(proof_err)?;
        if r != cp.root {
            return Err(first_bad(files, &tree, n, &checkpoints, &verifier));
        }
    }
    let mut state = State {
        tree,
        size: n,
        checkpoints,
        latest_note: String::new(),
    };
    // 6. A checkpoint for the current size (a fresh log, or entries written before a crash
    //    stopped their checkpoint).
    if let Some((_, off, len)) = last.filter(|(s, _, _)| *s == n) {
        state.latest_note = read_checkpoint(files, off, len)?.1;
    } else {
        let root = merkle::root(&state.tree.view(n, files), n).map_err(proof_err)?;
        let note = Checkpoint {
            origin: verifier.name().to_owned(),
            size: n,
            root,
        }
        .sign(signer)
        .map_err(|e| VaultError::StoreUnavailable(format!("audit checkpoint: {e}")))?;
        let rec = checkpoint_record(n, &note);
        files
            .checkpoints
            .write_at(lengths.checkpoints, &rec)
            .map_err(|e| io_unavailable("checkpoints", &e))?;
        files
            .checkpoints
            .sync()
            .map_err(|e| io_unavailable("checkpoints", &e))?;
        state.checkpoints.push(
            n,
            lengths.checkpoints,
            u32::try_from(note.len()).unwrap_or(u32::MAX),
        );
        lengths.checkpoints += rec.len() as u64;
        state.latest_note = note;
    }
    Ok((state, lengths))
}

/// Locates the first entry that breaks a checkpoint: the first checkpoint whose root no
/// longer matches bounds it; inside that range, the first entry whose bytes do not match its
/// recorded leaf names it exactly.
pub(super) fn first_bad(
    files: &Files,
    tree: &ChunkedTree,
    n: u64,
    cps: &CheckpointIndex,
    verifier: &LogVerifier,
) -> VaultError {
    let view = tree.view(n, files);
    let mut prev = 0u64;
    let elen = files.entries.size().unwrap_or(0);
    for (size, off, len) in
        checkpoint_records(&*files.checkpoints, 0, cps.end).map_while(Result::ok)
    {
        let Ok((_, note)) = read_checkpoint(files, off, len) else {
            continue;
        };
        let Ok(cp) = Checkpoint::verify(&note, verifier) else {
            continue;
        };
        if size > n || merkle::root(&view, size).ok() != Some(cp.root) {
            for i in prev..size.min(n) {
                let ok = files
                    .leaf_record(i)
                    .ok()
                    .and_then(|(o, h)| {
                        files
                            .entry_at(o, elen)
                            .ok()
                            .flatten()
                            .map(|b| merkle::leaf_hash(&b) == h)
                    })
                    .unwrap_or(false);
                if !ok {
                    return corrupt(i, "entry does not match the signed checkpoints (rewritten)");
                }
            }
            return corrupt(
                prev,
                format!(
                    "entries between {prev} and {size} do not match the signed checkpoint for size {size} (rewritten)"
                ),
            );
        }
        prev = size;
    }
    corrupt(prev, "log does not match its last signed checkpoint")
}

/// What a read-only view sees: the checkpoints up to the last whole record, the last one
/// verified with `verifier`, and the tree of its size from the recorded leaves, whose root
/// must match it. Writes nothing: a torn tail or entries past the checkpoint (a batch being
/// written by the process that owns the log) are left alone and not seen.
pub(super) fn read_only_state(files: &Files, verifier: &LogVerifier) -> Result<State, VaultError> {
    let clen = files
        .checkpoints
        .size()
        .map_err(|e| io_unavailable("checkpoints", &e))?;
    let mut checkpoints = CheckpointIndex::default();
    let mut last: Option<(u64, u64, u32)> = None;
    let mut off = 0u64;
    while off + CHECKPOINT_HEADER <= clen {
        let mut head = [0u8; CHECKPOINT_HEADER as usize];
        files
            .checkpoints
            .read_at(off, &mut head)
            .map_err(|e| io_unavailable("checkpoints", &e))?;
        let (size, len, _) = checkpoint_header(&head);
        if len == 0
            || off + CHECKPOINT_HEADER + u64::from(len) > clen
            || read_checkpoint(files, off, len).is_err()
        {
            break;
        }
        if last.is_some_and(|(s, _, _)| size < s) {
            return Err(corrupt(size, "checkpoint sizes go backwards"));
        }
        checkpoints.push(size, off, len);
        last = Some((size, off, len));
        off += CHECKPOINT_HEADER + u64::from(len);
    }
    let Some((size, off, len)) = last else {
        return Ok(State {
            tree: ChunkedTree::default(),
            size: 0,
            checkpoints,
            latest_note: String::new(),
        });
    };
    let (_, note) = read_checkpoint(files, off, len)?;
    let cp = Checkpoint::verify(&note, verifier).map_err(|e| {
        corrupt(
            size,
            format!("the last checkpoint does not verify with the log's published key: {e}"),
        )
    })?;
    let recorded = files
        .leaves
        .size()
        .map_err(|e| io_unavailable("leaf index", &e))?
        / LEAF_RECORD;
    if recorded < cp.size {
        // Entries are synced before their checkpoint is written, so they are all there after
        // a crash even when the derived leaf index is not; fewer means entries were removed.
        let elen = files
            .entries
            .size()
            .map_err(|e| io_unavailable("entries", &e))?;
        let mut n = recorded;
        let mut eoff = match recorded.checked_sub(1) {
            None => 0,
            Some(i) => {
                let (o, _) = files.leaf_record(i)?;
                files
                    .entry_at(o, elen)?
                    .map_or(elen, |b| o + ENTRY_HEADER + b.len() as u64)
            }
        };
        while n < cp.size
            && let Some(body) = files.entry_at(eoff, elen)?
        {
            eoff += ENTRY_HEADER + body.len() as u64;
            n += 1;
        }
        if n < cp.size {
            return Err(corrupt(
                n,
                format!(
                    "the log has {n} entries but its signed checkpoint covers {}: entries were removed",
                    cp.size
                ),
            ));
        }
        return Err(VaultError::StoreUnavailable(format!(
            "the audit log's leaf index holds {recorded} entries but its last checkpoint covers {}: \
             the log was not recovered after a crash; start vault-server (or run a command that \
             opens the vault for writing) once, then try again",
            cp.size
        )));
    }
    let mut tree = ChunkedTree::default();
    let mut i = 0u64;
    while i < cp.size {
        let count = (cp.size - i).min(65_536);
        for h in files.leaves(i, count).map_err(proof_err)? {
            tree.push(h);
        }
        i += count;
    }
    let root = merkle::root(&tree.view(cp.size, files), cp.size).map_err(proof_err)?;
    if root != cp.root {
        return Err(first_bad(files, &tree, cp.size, &checkpoints, verifier));
    }
    Ok(State {
        tree,
        size: cp.size,
        checkpoints,
        latest_note: note,
    })
}
