//! Tests of `sled_store`.

use super::*;
use crate::grant::GrantStatus;

/// An active one-use grant whose token expires at `exp` (seconds).
fn grant(id: &str, exp: i64) -> Grant {
    super::super::test_grant(id, exp)
}

/// A grant with a slot id from `s` and a real code, for `citizen` (one byte, repeated).
fn slot_grant(s: &SledStore, citizen: u8, exp: i64) -> Grant {
    let mut g = grant("x", exp);
    g.id = s.new_grant_id().unwrap();
    g.verification_code = crate::grant::new_verification_code().unwrap();
    g.citizen = format!("{citizen:02x}").repeat(32);
    g
}

#[test]
fn older_grants_in_sled_and_slot_grants_are_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let mut old = grant("g-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1_000);
    old.verification_code = crate::grant::new_verification_code().unwrap();
    let citizen = old.citizen.clone();
    assert!(s.insert_grant(&old).unwrap());
    let mut new = slot_grant(&s, 0xab, 1_000);
    assert!(grant_slots::parse_id(&new.id).is_some());
    assert_eq!(new.citizen, citizen);
    // A code the other side holds is refused on either side.
    new.verification_code = old.verification_code.clone();
    assert!(!s.insert_grant(&new).unwrap());
    new.verification_code = crate::grant::new_verification_code().unwrap();
    assert!(s.insert_grant(&new).unwrap());
    let mut clash = grant("g-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 1_000);
    clash.verification_code = new.verification_code.clone();
    assert!(!s.insert_grant(&clash).unwrap());
    assert_eq!(s.grant(&clash.id).unwrap(), None);
    let kept = slot_grant(&s, 0xab, 9_000);
    assert!(s.insert_grant(&kept).unwrap());
    for g in [&old, &new, &kept] {
        assert_eq!(s.grant(&g.id).unwrap().as_ref(), Some(g));
        assert_eq!(
            s.grant_id_by_code(&g.verification_code).unwrap().as_deref(),
            Some(g.id.as_str())
        );
    }
    assert_eq!(s.grants_of_citizen(&citizen).unwrap().len(), 3);
    // A spent use and a durable revoke, both through the store, survive a reopen.
    s.update_grant_state(&new.id, &mut |st| {
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
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.released_through().unwrap(), Some(7));
    assert_eq!(s.grant(&new.id).unwrap().unwrap().uses, 1);
    assert_eq!(
        s.grant(&kept.id).unwrap().unwrap().status,
        GrantStatus::Revoked
    );
    // One sweep walks both, in steps of one grant, and deletes the ended ones of each.
    let (mut purged, mut cursor, mut steps) = (0, None, 0);
    loop {
        let (n, next) = s.sweep_grants(cursor.as_deref(), 1, 5_000).unwrap();
        purged += n;
        steps += 1;
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(purged, 2);
    assert!(steps >= 3, "{steps}");
    assert_eq!(s.grant(&old.id).unwrap(), None);
    assert_eq!(s.grant(&new.id).unwrap(), None);
    assert_eq!(s.grant_id_by_code(&new.verification_code).unwrap(), None);
    assert_eq!(
        s.grants_of_citizen(&citizen).unwrap(),
        vec![s.grant(&kept.id).unwrap().unwrap()]
    );
}

#[test]
fn the_store_reports_what_opening_the_slot_file_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.slot_repairs(), SlotRepairs::default());
    let g = slot_grant(&s, 0xab, 9_000);
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

#[test]
fn a_sweep_walks_the_grants_in_steps_and_deletes_only_ended_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    for (id, exp) in [
        ("g-3", 3_000),
        ("g-1", 1_000),
        ("g-2", 2_000),
        ("g-4", 1_500),
    ] {
        assert!(s.insert_grant(&grant(id, exp)).unwrap());
    }
    let mut bg = grant("g-5", 1_000);
    bg.break_glass = true;
    assert!(s.insert_grant(&bg).unwrap());
    assert_eq!(s.sweep_grants(None, 10, 999).unwrap(), (0, None));
    // Steps of two: g-1 g-2 | g-3 g-4 | g-5.
    let (n, next) = s.sweep_grants(None, 2, 2_500).unwrap();
    assert_eq!((n, next.as_deref()), (2, Some("g-2")));
    let (n, next) = s.sweep_grants(next.as_deref(), 2, 2_500).unwrap();
    assert_eq!((n, next.as_deref()), (1, Some("g-4")));
    assert_eq!(
        s.sweep_grants(next.as_deref(), 2, 2_500).unwrap(),
        (0, None)
    );
    for gone in ["g-1", "g-2", "g-4"] {
        assert!(s.grant(gone).unwrap().is_none());
        assert!(
            s.grant_id_by_code(&format!("CODE{gone}"))
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(s.grants_of_citizen(&"ab".repeat(32)).unwrap().len(), 2);
    assert_eq!(s.sweep_grants(None, 10, i64::MAX).unwrap(), (1, None));
    assert_eq!(s.grants.len(), 1, "the break-glass grant stays");
    assert_eq!(s.states.len(), 1, "with its state alone");
    assert_eq!((s.codes.len(), s.citizen_grants.len()), (1, 1));
}

#[test]
fn the_sweep_decides_from_the_state_where_it_can_and_from_the_grant_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    // Active: token until 2,000 s. Pending: no token, consent until 1,000 s, TTL 300 s,
    // so in force at most until 1,301 s. Refused at 500 s: ended at 501 s.
    let active = grant("g-a", 2_000);
    let mut pending = grant("g-p", 0);
    pending.status = GrantStatus::PendingConsent;
    (pending.token_iat, pending.token_exp) = (None, None);
    pending.consent_expires_ms = Some(1_000_000);
    let mut refused = pending.clone();
    refused.id = "g-r".into();
    refused.verification_code = "CODEg-r".into();
    refused.end(
        GrantStatus::Refused,
        crate::clock::Timestamp::from_millis(500_000),
    );
    for g in [&active, &pending, &refused] {
        assert!(s.insert_grant(g).unwrap());
    }
    // The state's bound is the grant's end wherever it has one.
    assert_eq!(GrantState::of(&active).end_bound_secs(), Some(2_000));
    assert_eq!(active.latest_end_secs(), 2_000);
    assert_eq!(GrantState::of(&refused).end_bound_secs(), Some(501));
    assert_eq!(refused.latest_end_secs(), 501);
    assert_eq!(GrantState::of(&pending).end_bound_secs(), None);
    assert_eq!(pending.latest_end_secs(), 1_301);
    let left = |s: &SledStore| {
        ["g-a", "g-p", "g-r"]
            .into_iter()
            .filter(|id| s.grant(id).unwrap().is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(s.sweep_grants(None, 10, 501).unwrap(), (0, None));
    assert_eq!(s.sweep_grants(None, 10, 502).unwrap(), (1, None));
    assert_eq!(left(&s), ["g-a", "g-p"]);
    assert_eq!(s.sweep_grants(None, 10, 1_301).unwrap(), (0, None));
    assert_eq!(s.sweep_grants(None, 10, 1_302).unwrap(), (1, None));
    assert_eq!(left(&s), ["g-a"]);
    assert_eq!(s.sweep_grants(None, 10, 2_000).unwrap(), (0, None));
    assert_eq!(s.sweep_grants(None, 10, 2_001).unwrap(), (1, None));
    assert!(left(&s).is_empty());
}

#[test]
fn a_release_rewrites_only_the_state_and_one_caller_wins_each_use() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let mut g = grant("g-1", 2_000);
    g.max_uses = 40;
    assert!(s.insert_grant(&g).unwrap());
    let json = s.grants.get("g-1").unwrap().unwrap();
    let now = crate::Timestamp::from_millis(1_800_000);
    let wins = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for i in 0..10 {
                    // The release path (state only) and the whole-grant path race alike.
                    let won = if i % 2 == 0 {
                        s.update_grant_state("g-1", &mut |st| st.spend(now)).is_ok()
                    } else {
                        s.update_grant("g-1", false, &mut |g| g.spend(now)).is_ok()
                    };
                    if won {
                        wins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(wins.into_inner(), 40, "80 tries, 40 uses");
    let spent = s.grant("g-1").unwrap().unwrap();
    assert_eq!((spent.uses, spent.status), (40, GrantStatus::Exhausted));
    assert_eq!(spent.ended_ms, Some(1_800_000));
    assert_eq!(
        s.grants.get("g-1").unwrap().unwrap(),
        json,
        "JSON as inserted"
    );
    assert!(s.states.get("g-1").unwrap().unwrap().len() < 64);
}

#[test]
fn a_format_1_state_is_read_through_its_grant_and_rewritten_as_format_2() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let mut g = grant("g-1", 2_000);
    g.max_uses = 5;
    g.unit = Some("phong-tn".into());
    assert!(s.insert_grant(&g).unwrap());
    // As a store written before format 2 holds it: status, flags, uses, iat, exp.
    let mut v1 = vec![1, 1, 0b110];
    v1.extend_from_slice(&0u32.to_be_bytes());
    v1.extend_from_slice(&g.token_iat.unwrap().to_be_bytes());
    v1.extend_from_slice(&g.token_exp.unwrap().to_be_bytes());
    s.states.insert("g-1", v1).unwrap();
    let now = crate::Timestamp::from_millis(1_800_000);
    let st = s
        .update_grant_state("g-1", &mut |st| st.spend(now))
        .unwrap();
    assert_eq!((st.uses, st.max_uses, st.binding), (1, 5, g.binding()));
    assert_eq!(st.unit.as_deref(), Some("phong-tn"));
    assert_eq!(s.states.get("g-1").unwrap().unwrap()[0], 2, "now format 2");
    let st = s
        .update_grant_state("g-1", &mut |st| st.spend(now))
        .unwrap();
    assert_eq!(st.uses, 2);
    assert_eq!(s.grant("g-1").unwrap().unwrap().uses, 2);
    assert!(matches!(
        s.update_grant_state("g-9", &mut |st| st.spend(now)),
        Err(VaultError::GrantNotFound)
    ));
}

#[test]
fn a_grant_whose_state_is_gone_is_not_found_and_the_sweep_finishes_its_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    assert!(s.insert_grant(&grant("g-1", 2_000)).unwrap());
    s.states.remove("g-1").unwrap();
    assert!(s.grant("g-1").unwrap().is_none());
    assert!(s.grants_of_citizen(&"ab".repeat(32)).unwrap().is_empty());
    assert!(matches!(
        s.update_grant("g-1", false, &mut |_| Ok(())),
        Err(VaultError::GrantNotFound)
    ));
    assert_eq!(s.sweep_grants(None, 10, 0).unwrap(), (0, None));
    assert_eq!(
        (s.grants.len(), s.codes.len(), s.citizen_grants.len()),
        (0, 0, 0)
    );
}

#[test]
fn a_store_from_before_the_split_is_migrated_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut used = grant("g-1", 2_000);
    used.uses = 1;
    used.end(
        GrantStatus::Exhausted,
        crate::Timestamp::from_millis(1_900_000),
    );
    {
        let db = sled::open(dir.path()).unwrap();
        let legacy = db.open_tree("grants").unwrap();
        legacy.insert("g-1", encode_grant(&used).unwrap()).unwrap();
        legacy
            .insert("g-2", encode_grant(&grant("g-2", 2_000)).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.grant("g-1").unwrap().unwrap(), used);
    assert!(
        !s.db.tree_names().iter().any(|n| n.as_ref() == b"grants"),
        "the old tree is dropped"
    );
    let now = crate::Timestamp::from_millis(1_800_000);
    assert!(matches!(
        s.update_grant("g-1", false, &mut |g| g.spend(now)),
        Err(VaultError::GrantExhausted)
    ));
    s.update_grant("g-2", true, &mut |g| g.spend(now)).unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        s.grant("g-2").unwrap().unwrap().uses,
        1,
        "reopening keeps state"
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
    assert!(s.insert_grant(&grant("g-1", 1_000)).unwrap());
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

#[test]
fn a_record_stored_inline_by_an_older_store_reads_and_moves_to_the_file_when_written() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (blind(1), blind(2));
    {
        let db = sled::open(dir.path()).unwrap();
        let citizens = db.open_tree("citizens").unwrap();
        citizens
            .insert(a.as_bytes(), codec::encode(&record("A-INLINE")))
            .unwrap();
        citizens
            .insert(b.as_bytes(), codec::encode(&record("B-INLINE")))
            .unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(envelope_of(&s, &a).as_deref(), Some("A-INLINE"));
    s.put_citizens(&[(a, record("A-FILED"))]).unwrap();
    s.flush().unwrap();
    assert_eq!(envelope_of(&s, &a).as_deref(), Some("A-FILED"));
    assert!(Location::decode(&s.citizens.get(a.as_bytes()).unwrap().unwrap()).is_some());
    assert_eq!(s.citizens_after(None, 10).unwrap().len(), 2);
    assert!(s.delete_citizen(&b).unwrap());
    assert!(s.citizen(&b).unwrap().is_none());
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
        Err(VaultError::StoreCorrupt(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bad, "nothing was cut");
    std::fs::write(&path, &good).unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(envelope_of(&s, &blind(2)).as_deref(), Some("B"));
}
