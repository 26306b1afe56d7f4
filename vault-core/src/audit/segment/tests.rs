//! Tests of the segment log: appends, recovery, faults, checkpoints and proofs.

use super::super::entry::{Actor, EntryContext, Pseudonym};
use super::super::file::{Faults, FaultyFile};
use super::*;
use crate::clock::Timestamp;
use crate::id::FieldName;
use crate::id::SafeId;

fn signer() -> LogSigner {
    LogSigner::from_seed("test.vault/audit", &[42; 32]).unwrap()
}

#[test]
fn the_sparse_checkpoint_index_finds_exact_sizes_and_the_latest_record_for_a_size() {
    let dir = tempfile::tempdir().unwrap();
    let file = FsFile::open(&dir.path().join("checkpoints.log")).unwrap();
    // Sizes with gaps (odd sizes missing) and repeats, one repeat straddling a stride.
    let mut sizes = Vec::new();
    for k in 0..200u64 {
        sizes.push(k * 2);
        if k % 7 == 0 || sizes.len() as u64 == CHECKPOINT_STRIDE {
            sizes.push(k * 2);
        }
    }
    let stride = CHECKPOINT_STRIDE as usize;
    assert_eq!(sizes[stride - 1], sizes[stride], "a repeat across a stride");
    let mut idx = CheckpointIndex::default();
    let mut latest = std::collections::HashMap::new();
    let mut off = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        let note = format!("note {i} {}", "x".repeat(i % 50));
        let rec = checkpoint_record(size, &note);
        file.write_at(off, &rec).unwrap();
        idx.push(size, off, note.len() as u32);
        latest.insert(size, (off, note.len() as u32));
        off += rec.len() as u64;
    }
    assert_eq!(idx.end, off);
    assert!(idx.samples.len() <= sizes.len() / stride + 1, "sparse");
    let top = *sizes.last().unwrap();
    for size in (0..=top + 3).chain([u64::MAX]) {
        let got = find_checkpoint(&file, idx.scan_from(size), idx.end, size).unwrap();
        assert_eq!(got, latest.get(&size).copied(), "size {size}");
    }
    // A record past the covered end is not seen; a damaged header is an error.
    let rec = checkpoint_record(top + 2, "later");
    file.write_at(off, &rec).unwrap();
    assert_eq!(
        find_checkpoint(&file, idx.scan_from(top + 2), idx.end, top + 2).unwrap(),
        None
    );
    file.write_at(0, &[0u8; 16]).unwrap();
    assert!(find_checkpoint(&file, 0, idx.end, 0).is_err());
}

fn entry(i: u64) -> AuditEntry {
    let ctx = EntryContext {
        time: Timestamp::from_millis(1_700_000_000_000 + i as i64),
        policy: [1; 32],
    };
    AuditEntry::record_written(
        &ctx,
        &Actor::operator(SafeId::parse("vaultctl").unwrap()),
        &Pseudonym::from_bytes([(i % 251) as u8; 32]),
        &[FieldName::parse("full_name").unwrap()],
    )
    .unwrap()
}

fn fill(log: &SegmentLog, n: u64) {
    for i in 0..n {
        log.append_one(entry(i)).unwrap();
    }
}

fn entries_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("entries.log")).unwrap().len()
}

#[test]
fn concurrent_appends_get_distinct_consecutive_indexes_with_verifying_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SegmentLog::open(dir.path(), signer()).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..5000u64)
                    .map(|i| log.append_one(entry(t * 10_000 + i)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Appended> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_by_key(|a| a.index);
    assert_eq!(all.len(), 80_000);
    for (i, a) in all.iter().enumerate() {
        assert_eq!(a.index, i as u64, "indexes are consecutive");
    }
    let size = log.size();
    assert_eq!(size, 80_000);
    let root = log.root(size).unwrap();
    let cp = Checkpoint::verify(&log.latest_checkpoint().unwrap(), &log.verifier()).unwrap();
    assert_eq!((cp.size, cp.root), (size, root));
    for a in &all {
        let bytes = log.entry(a.index).unwrap();
        assert_eq!(merkle::leaf_hash(&bytes), a.leaf_hash);
        let proof = log.inclusion_proof(a.index, size).unwrap();
        merkle::verify_inclusion(a.index, size, &a.leaf_hash, &proof, &root).unwrap();
    }
    assert!(
        log.stats().batches.load(Ordering::Relaxed) < 80_000,
        "group commit batched"
    );
    log.verify_all().unwrap();
}

#[test]
fn every_checkpoint_is_kept_and_consistent_with_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), signer()).unwrap();
    fill(&log, 150); // more than two strides of the sparse index
    let sizes = log.checkpoint_sizes().unwrap();
    assert_eq!(sizes, (0..=150).collect::<Vec<_>>());
    let v = log.verifier();
    for w in sizes.windows(2) {
        let a = Checkpoint::verify(&log.checkpoint_at(w[0]).unwrap().unwrap(), &v).unwrap();
        let b = Checkpoint::verify(&log.checkpoint_at(w[1]).unwrap().unwrap(), &v).unwrap();
        let p = log.consistency_proof(a.size, b.size).unwrap();
        merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &p).unwrap();
    }
    drop(log);
    // Reopening keeps them all and adds none.
    let log = SegmentLog::open(dir.path(), signer()).unwrap();
    assert_eq!(log.checkpoint_sizes().unwrap().len(), 151);
    assert_eq!(log.size(), 150);
    assert!(log.checkpoint_at(150).unwrap().is_some());
    assert_eq!(log.checkpoint_at(151).unwrap(), None);
}

#[test]
fn a_torn_tail_is_cut_to_the_last_whole_entry_and_the_root_matches_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        fill(&log, 30);
    }
    // A crash while a batch was being written: whole records, then one cut mid-record,
    // and no checkpoint for them (they were never acknowledged).
    let mut tail = Vec::new();
    for i in 30..33 {
        let e = entry(i);
        tail.extend_from_slice(&(e.bytes().len() as u32).to_be_bytes());
        tail.extend_from_slice(&crc32fast::hash(e.bytes()).to_be_bytes());
        tail.extend_from_slice(e.bytes());
    }
    let cut = tail.len() - 17;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("entries.log"))
        .unwrap();
    std::io::Write::write_all(&mut f, &tail[..cut]).unwrap();
    drop(f);
    let log = SegmentLog::open(dir.path(), signer()).unwrap();
    assert_eq!(
        log.size(),
        32,
        "the two whole records are kept, the cut one is dropped"
    );
    let mut fresh = merkle::MemoryTree::new();
    for i in 0..32 {
        fresh.push(merkle::leaf_hash(&log.entry(i).unwrap()));
    }
    assert_eq!(log.root(32).unwrap(), merkle::root(&fresh, 32).unwrap());
    log.verify_all().unwrap();
    log.append_one(entry(99)).unwrap();
    assert_eq!(log.size(), 33);
}

#[test]
fn zero_filled_tails_left_by_a_crash_are_cut_not_read_as_records() {
    // After a power loss a file system may keep a file's new length but not its new
    // data: the tail reads as zeros, and a zero header is length 0 with the CRC of
    // nothing (0). Such tails are torn tails, in every file.
    let dir = tempfile::tempdir().unwrap();
    let root = {
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        fill(&log, 25);
        log.root(25).unwrap()
    };
    for name in ["entries.log", "checkpoints.log", "leaves.idx"] {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(name))
            .unwrap();
        std::io::Write::write_all(&mut f, &[0u8; 4096]).unwrap();
    }
    let log = SegmentLog::open(dir.path(), signer()).unwrap();
    assert_eq!(log.size(), 25, "no empty entries read from the zeros");
    assert_eq!(log.root(25).unwrap(), root);
    assert_eq!(log.checkpoint_sizes().unwrap().last(), Some(&25));
    log.verify_all().unwrap();
    log.append_one(entry(99)).unwrap();
    assert_eq!(log.size(), 26);
    drop(log);
    let log = SegmentLog::open(dir.path(), signer()).unwrap();
    assert_eq!(log.size(), 26);
    log.verify_all().unwrap();
}

#[test]
fn a_flipped_byte_in_an_old_entry_fails_verification_naming_that_index() {
    let dir = tempfile::tempdir().unwrap();
    let offset_of_10 = {
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        fill(&log, 200);
        log.inner.files.leaf_record(10).unwrap().0
    };
    let path = dir.path().join("entries.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(offset_of_10 + ENTRY_HEADER + 20) as usize] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let log = SegmentLog::open(dir.path(), signer()).unwrap();
    match log.verify_all() {
        Err(VaultError::AuditCorrupt { index, .. }) => assert_eq!(index, 10),
        other => panic!("expected corruption at 10, got {other:?}"),
    }
    assert!(log.entry(10).is_err());
}

#[test]
fn a_flipped_byte_near_the_tail_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let offset = {
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        fill(&log, 50);
        log.inner.files.leaf_record(45).unwrap().0
    };
    let path = dir.path().join("entries.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(offset + ENTRY_HEADER + 3) as usize] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    match SegmentLog::open(dir.path(), signer()) {
        Err(VaultError::AuditCorrupt { index, .. }) => assert_eq!(index, 45),
        other => panic!("expected corruption at 45, got {other:?}"),
    }
}

#[test]
fn removing_checkpointed_entries_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let keep = {
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        fill(&log, 100);
        log.inner.files.leaf_record(90).unwrap().0
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("entries.log"))
        .unwrap();
    f.set_len(keep).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("leaves.idx"))
        .unwrap();
    f.set_len(90 * LEAF_RECORD).unwrap();
    match SegmentLog::open(dir.path(), signer()) {
        Err(VaultError::AuditCorrupt { index, reason }) => {
            assert_eq!(index, 90);
            assert!(reason.contains("removed"), "{reason}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[test]
fn a_rewritten_entry_with_a_matching_leaf_index_is_caught_by_the_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SegmentLog::open(dir.path(), signer()).unwrap();
        fill(&log, 120);
    }
    // Rewrite entry 5 consistently in both files (CRC and leaf hash updated).
    let files = Files {
        entries: Box::new(FsFile::open(&dir.path().join("entries.log")).unwrap()),
        leaves: Box::new(FsFile::open(&dir.path().join("leaves.idx")).unwrap()),
        checkpoints: Box::new(FsFile::open(&dir.path().join("checkpoints.log")).unwrap()),
    };
    let (off, _) = files.leaf_record(5).unwrap();
    let elen = files.entries.size().unwrap();
    let mut body = files.entry_at(off, elen).unwrap().unwrap();
    let pos = body.iter().position(|&b| b == b'"').unwrap() + 1;
    body[pos] = if body[pos] == b'a' { b'b' } else { b'a' };
    files
        .entries
        .write_at(off + 4, &crc32fast::hash(&body).to_be_bytes())
        .unwrap();
    files.entries.write_at(off + 8, &body).unwrap();
    let mut rec = off.to_be_bytes().to_vec();
    rec.extend_from_slice(&merkle::leaf_hash(&body));
    files.leaves.write_at(5 * LEAF_RECORD, &rec).unwrap();
    match SegmentLog::open(dir.path(), signer()) {
        Err(VaultError::AuditCorrupt { index, .. }) => assert_eq!(index, 5),
        other => panic!("expected refusal naming 5, got {other:?}"),
    }
}

fn faulty_log(dir: &Path, faults: &Arc<Faults>) -> SegmentLog {
    let f = Arc::clone(faults);
    SegmentLog::open_with(dir, signer(), &move |p| {
        Ok(
            Box::new(FaultyFile::new(Box::new(FsFile::open(p)?), Arc::clone(&f)))
                as Box<dyn LogFile>,
        )
    })
    .unwrap()
}

#[test]
fn a_probe_recovers_the_log_without_appending() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let log = faulty_log(dir.path(), &faults);
    fill(&log, 3);
    assert!(log.probe());
    faults.set_sync(true);
    assert!(log.append(vec![entry(9)]).is_err());
    assert!(!log.is_healthy());
    assert!(!log.probe(), "still failing: not ready");
    faults.set_sync(false);
    assert!(log.probe(), "storage works again: ready, without an append");
    assert_eq!(log.size(), 3);
    log.verify_all().unwrap();
}

#[test]
fn write_and_sync_failures_acknowledge_nothing_and_the_log_recovers() {
    for fail_sync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let log = faulty_log(dir.path(), &faults);
        fill(&log, 10);
        let len_before = entries_len(dir.path());
        if fail_sync {
            faults.set_sync(true)
        } else {
            faults.set_write(true)
        }
        let results: Vec<_> = (0..4)
            .map(|i| log.append(vec![entry(100 + i), entry(200 + i)]))
            .collect();
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(VaultError::AuditUnavailable)))
        );
        assert!(!log.is_healthy());
        assert_eq!(log.size(), 10, "nothing acknowledged");
        assert_eq!(
            entries_len(dir.path()),
            len_before,
            "no half-written entries left"
        );
        faults.set_sync(false);
        faults.set_write(false);
        let a = log.append_one(entry(300)).unwrap();
        assert_eq!(a.index, 10, "no gap");
        assert!(log.is_healthy());
        log.verify_all().unwrap();
        drop(log);
        let reopened = SegmentLog::open(dir.path(), signer()).unwrap();
        assert_eq!(reopened.size(), 11);
        reopened.verify_all().unwrap();
    }
}

#[test]
fn proofs_for_every_index_and_size_up_to_130_verify_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), signer()).unwrap();
    fill(&log, 130);
    let roots: Vec<Hash> = (0..=130).map(|n| log.root(n).unwrap()).collect();
    for n in 1..=130u64 {
        for i in 0..n {
            let p = log.inclusion_proof(i, n).unwrap();
            merkle::verify_inclusion(i, n, &log.leaf_hash(i).unwrap(), &p, &roots[n as usize])
                .unwrap();
        }
    }
    for m in 0..=130u64 {
        for n in m..=130u64 {
            let p = log.consistency_proof(m, n).unwrap();
            merkle::verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &p).unwrap();
        }
    }
    assert!(matches!(
        log.inclusion_proof(5, 131),
        Err(VaultError::AuditNotFound)
    ));
}

#[test]
fn ranges_read_in_bulk_match_entries_read_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), signer()).unwrap();
    fill(&log, 40);
    let one = |i: u64| (log.entry(i).unwrap(), log.leaf_hash(i).unwrap());
    for (from, to) in [
        (0, 40),
        (0, 1),
        (5, 17),
        (39, 40),
        (38, 100),
        (40, 41),
        (7, 7),
    ] {
        let bulk = log.entries(from, to).unwrap();
        let single: Vec<_> = (from..to.min(40)).map(one).collect();
        assert_eq!(bulk, single, "{from}..{to}");
    }
    // A flipped byte in an entry is caught by the bulk read too.
    let path = dir.path().join("entries.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert!(log.entries(0, 40).is_err());
}

#[test]
fn a_read_only_view_beside_the_writer_sees_the_last_checkpoint_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SegmentLog::open(dir.path(), signer()).unwrap());
    fill(&log, 300);
    let published = SegmentLog::published_verifier(dir.path()).unwrap();
    assert_eq!(published, log.verifier());
    let before: Vec<(String, u64)> = ["entries.log", "leaves.idx", "checkpoints.log"]
        .iter()
        .map(|f| {
            (
                (*f).to_owned(),
                std::fs::metadata(dir.path().join(f)).unwrap().len(),
            )
        })
        .collect();
    // While the writer keeps appending, a view opened now sees a whole, signed prefix.
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for i in (300..2_000).step_by(5) {
                log.append((i..i + 5).map(entry).collect()).unwrap();
            }
        })
    };
    for _ in 0..20 {
        let view = SegmentLog::open_read_only(dir.path(), published.clone()).unwrap();
        let size = view.size();
        assert!(size >= 300);
        let cp = Checkpoint::verify(&view.latest_checkpoint().unwrap(), &published).unwrap();
        assert_eq!(cp.size, size);
        assert_eq!(view.root(size).unwrap(), cp.root);
        let proof = view.inclusion_proof(size - 1, size).unwrap();
        let leaf = view.leaf_hash(size - 1).unwrap();
        merkle::verify_inclusion(size - 1, size, &leaf, &proof, &cp.root).unwrap();
        assert_eq!(view.entry(7).unwrap(), log.entry(7).unwrap());
        assert!(
            view.append_one(entry(9_999)).is_err(),
            "a view never appends"
        );
        view.verify_all().unwrap();
    }
    writer.join().unwrap();
    let view = SegmentLog::open_read_only(dir.path(), published.clone()).unwrap();
    assert_eq!(view.size(), 2_000);
    drop(view);
    // Nothing was written by the views: the files grew only by the writer's appends.
    for (f, len) in before {
        assert!(std::fs::metadata(dir.path().join(&f)).unwrap().len() >= len);
    }
    // A view checks the checkpoint against the published key.
    let other = LogSigner::from_seed("test.vault/audit", &[7; 32])
        .unwrap()
        .verifier();
    assert!(SegmentLog::open_read_only(dir.path(), other).is_err());
    // And it does not create a log where there is none.
    let empty = tempfile::tempdir().unwrap();
    assert!(SegmentLog::open_read_only(empty.path(), published).is_err());
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}
