//! Tests of `sled_store`.

use super::*;
use crate::grant::GrantStatus;

/// A fresh store in a temporary directory, for the conformance suite.
fn fresh() -> crate::store::conformance::Fresh<SledStore> {
    let dir = tempfile::tempdir().unwrap();
    crate::store::conformance::Fresh {
        store: SledStore::open(dir.path()).unwrap(),
        _keep: Box::new(dir),
    }
}

mod conformance {
    crate::store::conformance::store_conformance!(super::fresh);
}

#[test]
fn grants_spent_uses_and_marks_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let used = crate::store::conformance::grant(&s, 0xab, 9_000);
    let kept = crate::store::conformance::grant(&s, 0xab, 9_000);
    assert!(s.insert_grant(&used).unwrap());
    assert!(s.insert_grant(&kept).unwrap());
    s.update_grant_state(&used.id, &mut |st| {
        st.spend(crate::Timestamp::from_millis(500_000))
    })
    .unwrap();
    s.set_released_through(7).unwrap();
    s.update_grant(&kept.id, true, &mut |g| {
        g.end(
            GrantStatus::Revoked,
            crate::Timestamp::from_millis(8_000_000),
        );
        Ok(())
    })
    .unwrap();
    s.flush().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.released_through().unwrap(), Some(7));
    assert_eq!(s.grant(&used.id).unwrap().unwrap().uses, 1);
    assert_eq!(
        s.grant(&kept.id).unwrap().unwrap().status,
        GrantStatus::Revoked
    );
    assert_eq!(
        s.grants_of_citizen(&BlindId::from_bytes([0xab; 32]))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_store_of_another_format_or_of_none_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.meta_u64(FORMAT_KEY, "").unwrap(), Some(STORE_FORMAT));
    s.meta
        .insert(FORMAT_KEY, 9u64.to_be_bytes().as_slice())
        .unwrap();
    s.flush().unwrap();
    drop(s);
    let e = SledStore::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("has format 9; this build reads format 1 only"),
        "{e}"
    );
    // A store written before versions were kept: content, no version.
    let old = tempfile::tempdir().unwrap();
    {
        let db = sled::open(old.path()).unwrap();
        db.open_tree("citizens")
            .unwrap()
            .insert([1u8; 32], b"x".as_slice())
            .unwrap();
        db.flush().unwrap();
    }
    let e = SledStore::open(old.path()).unwrap_err().to_string();
    assert!(e.contains("has no format version"), "{e}");
    // An empty directory becomes a store of this format, and opens again.
    let new = tempfile::tempdir().unwrap();
    drop(SledStore::open(new.path()).unwrap());
    SledStore::open(new.path()).unwrap();
}

#[test]
fn the_store_reports_what_opening_the_slot_file_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.slot_repairs(), SlotRepairs::default());
    let g = crate::store::conformance::grant(&s, 0xab, 9_000);
    assert!(s.insert_grant(&g).unwrap());
    drop(s);
    let path = dir.path().join(grant_slots::FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        s.slot_repairs(),
        SlotRepairs {
            freed_torn: 0,
            ended_unreadable: 1
        }
    );
    assert_eq!(
        s.grant(&g.id).unwrap().unwrap().status,
        GrantStatus::Revoked
    );
}

/// A record whose one envelope is `marker` (so the raw file can be searched for it).
fn record(marker: &str) -> SealedRecord {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(
        crate::id::FieldName::parse("full_name").unwrap(),
        super::super::SealedField {
            version: 1,
            envelope: marker.as_bytes().to_vec(),
        },
    );
    SealedRecord {
        dek_version: 1,
        wrapped_dek: vec![7; 60],
        audit_salt: [9; 32],
        record_version: 1,
        fields,
    }
}

fn envelope_of(s: &SledStore, id: &BlindId) -> Option<String> {
    s.citizen(id)
        .unwrap()
        .map(|r| String::from_utf8(r.fields.values().next().unwrap().envelope.clone()).unwrap())
}

/// Which of `markers` are anywhere in the record file.
fn on_disk(dir: &Path, markers: &[&str]) -> Vec<String> {
    let bytes: Vec<u8> = SLOT_FILES
        .iter()
        .filter_map(|f| std::fs::read(dir.join(f)).ok())
        .flatten()
        .collect();
    markers
        .iter()
        .filter(|m| bytes.windows(m.len()).any(|w| w == m.as_bytes()))
        .map(|m| (*m).to_owned())
        .collect()
}

fn blind(n: u8) -> BlindId {
    BlindId::from_bytes([n; 32])
}

#[test]
fn a_rewrite_shreds_the_old_frame_at_flush_and_erasure_shreds_every_copy() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let (a, b) = (blind(1), blind(2));
    s.put_citizens(&[(a, record("A-ONE")), (b, record("B-ONE"))])
        .unwrap();
    s.flush().unwrap();
    // Twice in one batch: the first copy is on the chain too.
    s.put_citizens(&[(a, record("A-TWO")), (a, record("A-THREE"))])
        .unwrap();
    assert_eq!(envelope_of(&s, &a).as_deref(), Some("A-THREE"));
    assert_eq!(on_disk(dir.path(), &["A-ONE", "A-TWO"]).len(), 2);
    s.flush().unwrap();
    assert_eq!(
        on_disk(dir.path(), &["A-ONE", "A-TWO", "A-THREE", "B-ONE"]),
        vec!["A-THREE", "B-ONE"]
    );
    // Rotation-style scans see each citizen once, at its current frame.
    let all = s.citizens_after(None, 10).unwrap();
    assert_eq!(all.len(), 2);
    s.put_citizens(&[(a, record("A-FOUR"))]).unwrap();
    assert!(s.delete_citizen(&a).unwrap());
    assert!(s.citizen(&a).unwrap().is_none());
    assert!(on_disk(dir.path(), &["A-THREE", "A-FOUR"]).is_empty());
    let bytes = std::fs::read(dir.path().join(SLOT_FILES[0])).unwrap();
    assert!(
        !bytes.windows(32).any(|w| w == a.as_bytes()),
        "nor its blind id"
    );
    assert!(!s.delete_citizen(&a).unwrap());
    assert_eq!(envelope_of(&s, &b).as_deref(), Some("B-ONE"));
}

#[test]
fn a_flush_syncs_the_record_file_only_when_it_shredded_something() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let syncs = || s.records.syncs.load(std::sync::atomic::Ordering::Relaxed);
    s.put_citizens(&[(blind(1), record("A-ONE"))]).unwrap();
    s.flush().unwrap();
    let before = syncs();
    // A grant's flush (the grant path's one flush) leaves the record file alone.
    assert!(
        s.insert_grant(&crate::store::conformance::grant(&s, 0xab, 1_000))
            .unwrap()
    );
    s.flush().unwrap();
    assert_eq!(syncs(), before);
    // A rewrite's flush shreds the old frame and syncs the shred.
    s.put_citizens(&[(blind(1), record("A-TWO"))]).unwrap();
    let appended = syncs();
    s.flush().unwrap();
    assert_eq!(syncs(), appended + 1);
    assert!(on_disk(dir.path(), &["A-ONE"]).is_empty());
}

#[test]
fn opening_after_a_crash_shreds_what_no_durable_index_points_at() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (blind(1), blind(2), blind(3));
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.put_citizens(&[(a, record("A-OLD")), (c, record("C-KEPT"))])
            .unwrap();
        s.flush().unwrap();
        s.flush().unwrap();
        // A crash after sled wrote the index but before the flush shredded: two newer
        // frames of A past the clean mark, the old one below it, none shredded.
        s.put_citizens(&[(a, record("A-MID"))]).unwrap();
        s.put_citizens(&[(a, record("A-NEW"))]).unwrap();
        // And a batch whose index write was lost: a frame no entry points at.
        let mut tail = s.records.lock().unwrap();
        s.records
            .append(&mut tail, &[(&b, b"B-ORPHAN".as_slice())], &mut |_| {
                Ok(NO_FRAME)
            })
            .unwrap();
        drop(tail);
        s.db.flush().unwrap();
        assert_eq!(
            on_disk(dir.path(), &["A-OLD", "A-MID", "A-NEW", "B-ORPHAN"]).len(),
            4
        );
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        on_disk(
            dir.path(),
            &["A-OLD", "A-MID", "A-NEW", "B-ORPHAN", "C-KEPT"]
        ),
        vec!["A-NEW", "C-KEPT"]
    );
    assert_eq!(envelope_of(&s, &a).as_deref(), Some("A-NEW"));
    assert_eq!(envelope_of(&s, &c).as_deref(), Some("C-KEPT"));
    assert!(s.citizen(&b).unwrap().is_none());
    let mark = s.meta_u64(CLEAN_THROUGH_KEY, "").unwrap();
    assert_eq!(
        mark,
        Some(s.records.len().unwrap()),
        "the mark moved to the end"
    );
}

/// Bytes of every record file in `dir` (by slot; `None` where a slot has no file).
fn slot_files(dir: &Path) -> [Option<u64>; 2] {
    SLOT_FILES.map(|f| std::fs::metadata(dir.join(f)).ok().map(|m| m.len()))
}

#[test]
fn a_file_mostly_of_shredded_frames_is_compacted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [blind(1), blind(2), blind(3), blind(4)];
    {
        let s = SledStore::open_with(dir.path(), u64::MAX, DEFAULT_CACHE_BYTES).unwrap();
        for version in 0..4 {
            let batch: Vec<_> = ids
                .iter()
                .map(|id| (*id, record(&format!("R{}-V{version}", id.as_bytes()[0]))))
                .collect();
            s.put_citizens(&batch).unwrap();
            s.flush().unwrap();
        }
        assert!(s.delete_citizen(&ids[3]).unwrap());
    }
    let before = slot_files(dir.path());
    // Not compacted while the dead bytes are under the threshold.
    let s = SledStore::open_with(dir.path(), before[0].unwrap(), DEFAULT_CACHE_BYTES).unwrap();
    // 13 of the 16 equal frames written are zeroed (three old versions of each of the
    // four citizens and the erased citizen's current one): the count survived the reopen.
    assert_eq!(s.records.shredded() * 16, before[0].unwrap() * 13);
    drop(s);
    assert_eq!(slot_files(dir.path()), before);
    let s = SledStore::open_with(dir.path(), 1, DEFAULT_CACHE_BYTES).unwrap();
    let [old, new] = slot_files(dir.path());
    assert_eq!(old, None, "the old file is removed");
    let live = s.live_bytes().unwrap();
    assert_eq!(new, Some(live), "only the three live frames are left");
    assert_eq!(s.records.shredded(), 0);
    assert!(live * 5 < before[0].unwrap());
    for (n, id) in ids[..3].iter().enumerate() {
        let want = format!("R{}-V3", n + 1);
        assert_eq!(envelope_of(&s, id), Some(want));
    }
    assert!(s.citizen(&ids[3]).unwrap().is_none());
    assert_eq!(s.citizens_after(None, 10).unwrap().len(), 3);
    // The new slot works like the old: a rewrite shreds at flush, erasure shreds all.
    s.put_citizens(&[(ids[0], record("R1-V4"))]).unwrap();
    s.flush().unwrap();
    assert!(s.delete_citizen(&ids[1]).unwrap());
    assert_eq!(
        on_disk(dir.path(), &["R1-V3", "R1-V4", "R2-V3", "R3-V3"]),
        vec!["R1-V4", "R3-V3"]
    );
    drop(s);
    let s = SledStore::open_with(dir.path(), 1, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(envelope_of(&s, &ids[0]).as_deref(), Some("R1-V4"));
    // Half of slot 1 was zeroed frames again: compacted back into slot 0.
    let live = s.live_bytes().unwrap();
    assert_eq!(slot_files(dir.path()), [Some(live), None]);
    assert_eq!(envelope_of(&s, &ids[2]).as_deref(), Some("R3-V3"));
}

#[test]
fn a_compaction_cut_short_by_a_crash_finishes_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [blind(1), blind(2), blind(3), blind(4)];
    {
        let s = SledStore::open_with(dir.path(), u64::MAX, DEFAULT_CACHE_BYTES).unwrap();
        for version in ["OLD", "NEW"] {
            let batch: Vec<_> = ids
                .iter()
                .map(|id| (*id, record(&format!("R{}-{version}", id.as_bytes()[0]))))
                .collect();
            s.put_citizens(&batch).unwrap();
            s.flush().unwrap();
        }
        // A compaction into slot 1 that moved two records, then crashed in the middle of
        // a batch whose frame reached the file but not the index.
        s.meta
            .insert(COMPACTING_KEY, 1u64.to_be_bytes().as_slice())
            .unwrap();
        let target = RecordFile::open(dir.path(), 1).unwrap();
        s.move_records(&target, 1, 2).unwrap();
        let mut tail = target.lock().unwrap();
        target
            .append(
                &mut tail,
                &[(&ids[3], b"R4-ORPHAN".as_slice())],
                &mut |_| Ok(NO_FRAME),
            )
            .unwrap();
        drop(tail);
        s.db.flush().unwrap();
        let moved = s
            .citizens
            .iter()
            .filter(|kv| Location::decode(&kv.as_ref().unwrap().1).unwrap().slot == 1)
            .count();
        assert_eq!(moved, 2);
    }
    // Far under any threshold: the open finishes the copy because it had started.
    let s = SledStore::open_with(dir.path(), u64::MAX, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(slot_files(dir.path())[0], None);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(envelope_of(&s, id), Some(format!("R{}-NEW", n + 1)));
    }
    assert!(on_disk(dir.path(), &["R4-ORPHAN", "R1-OLD", "R4-OLD"]).is_empty());
    assert_eq!(s.meta_u64(COMPACTING_KEY, "").unwrap(), None);
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.records.slot(), 1, "the switch is durable");
    assert_eq!(envelope_of(&s, &ids[2]).as_deref(), Some("R3-NEW"));
}

#[test]
fn a_damaged_frame_the_index_uses_stops_the_open_instead_of_being_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SLOT_FILES[0]);
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.put_citizens(&[(blind(1), record("A")), (blind(2), record("B"))])
            .unwrap();
        s.db.flush().unwrap();
    }
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[9] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bad, "nothing was cut");
    std::fs::write(&path, &good).unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(envelope_of(&s, &blind(2)).as_deref(), Some("B"));
}
