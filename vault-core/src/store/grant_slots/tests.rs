//! Tests of the grant slot file: ids, reads, torn writes, the sweep, a model, races.

use super::*;
use proptest::prelude::*;
use std::sync::Arc;

fn open(dir: &Path) -> GrantSlots {
    GrantSlots::open(dir).unwrap().0
}

/// A one-use active grant in a fresh slot, with a fresh code.
fn new_grant(s: &GrantSlots, citizen_byte: u8, exp: i64) -> Grant {
    let mut g = crate::store::test_grant("x", exp);
    g.id = s.reserve().unwrap();
    g.verification_code = crate::grant::new_verification_code().unwrap();
    g.citizen = format!("{citizen_byte:02x}").repeat(32);
    g
}

#[test]
fn ids_carry_their_slot_in_order() {
    for slot in [0, 1, 15, 16, 4_095, MAX_SLOTS - 1] {
        let id = make_id(slot, &[b'q'; RANDOM]);
        assert_eq!(id.len(), 34);
        assert!(crate::audit::SafeId::parse(&id).is_ok());
        assert_eq!(parse_id(&id), Some((slot, [b'q'; RANDOM])));
        assert_eq!(resume_from(&cursor_after(slot)), Some(slot + 1));
    }
    assert!(make_id(9, &[b'a'; RANDOM]) < make_id(10, &[b'a'; RANDOM]));
    assert_eq!(resume_from(PREFIX), Some(0));
    let random = crate::grant::new_grant_id().unwrap();
    assert_eq!(
        parse_id(&random),
        None,
        "a random grant id is not a slot id"
    );
    assert_eq!(parse_id("g-tzzzzzzzzaaaaaaaaaaaaaaaaaaaaaaa"), None);
}

#[test]
fn grants_read_back_by_id_code_and_citizen_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let a = new_grant(&s, 0xab, 2_000);
    let mut b = new_grant(&s, 0xcd, 2_000);
    b.break_glass = true;
    assert!(s.insert(&a).unwrap());
    assert!(s.insert(&b).unwrap());
    assert_eq!(s.get(&a.id).unwrap().as_ref(), Some(&a));
    assert_eq!(
        s.id_by_code(&b.verification_code).unwrap().as_deref(),
        Some(b.id.as_str())
    );
    assert_eq!(s.of_citizen(&a.citizen).unwrap(), vec![a.clone()]);
    assert_eq!(s.break_glass().unwrap(), vec![b.clone()]);
    // A code already held is refused and nothing is stored.
    let mut c = new_grant(&s, 0xab, 2_000);
    c.verification_code = a.verification_code.clone();
    assert!(!s.insert(&c).unwrap());
    assert_eq!(s.get(&c.id).unwrap(), None);
    assert_eq!(
        s.id_by_code(&c.verification_code).unwrap().as_deref(),
        Some(a.id.as_str())
    );
    s.update(&a.id, &mut |g| {
        g.end(GrantStatus::Revoked, crate::Timestamp::from_millis(5));
        Ok(())
    })
    .unwrap();
    s.sync().unwrap();
    drop(s);
    let (s, report) = GrantSlots::open(dir.path()).unwrap();
    assert_eq!(report.live, 2);
    assert_eq!(s.get(&a.id).unwrap().unwrap().status, GrantStatus::Revoked);
    assert_eq!(s.of_citizen(&a.citizen).unwrap().len(), 1);
    assert_eq!(s.break_glass().unwrap().len(), 1);
    // The never-inserted reservation (past the file's end) is handed out again.
    assert_eq!(parse_id(&s.reserve().unwrap()).unwrap().0, 2);
    // A stale id (right slot, other random letters) finds nothing.
    let (slot, _) = parse_id(&a.id).unwrap();
    let stale = make_id(slot, &[b'b'; RANDOM]);
    assert_eq!(s.get(&stale).unwrap(), None);
    assert!(matches!(
        s.update_state(&stale, &mut |_| Ok(())),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn a_torn_insert_is_freed_and_a_torn_state_ends_the_grant_as_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let a = new_grant(&s, 1, 2_000);
    let b = new_grant(&s, 2, 2_000);
    assert!(s.insert(&a).unwrap());
    assert!(s.insert(&b).unwrap());
    s.update_state(&b.id, &mut |st| {
        st.spend(crate::Timestamp::from_millis(1_000_000))
    })
    .unwrap();
    s.sync().unwrap();
    drop(s);
    let path = dir.path().join(FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    // Slot 0: a facts sector lost (as if the insert's sectors landed only in part).
    bytes[SECTOR + FACTS_HEAD + 10] ^= 0xff;
    // Slot 1: its state sector torn.
    bytes[SLOT + 40] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (s, report) = GrantSlots::open(dir.path()).unwrap();
    assert_eq!(
        report,
        OpenReport {
            live: 1,
            freed_torn: 1,
            ended_unreadable: 1
        }
    );
    assert_eq!(s.get(&a.id).unwrap(), None);
    let ended = s.get(&b.id).unwrap().unwrap();
    assert_eq!(ended.status, GrantStatus::Revoked);
    assert!(matches!(
        s.update_state(&b.id, &mut |st| st
            .spend(crate::Timestamp::from_millis(1_000_000))),
        Err(StoreError::Refused(VaultError::GrantRevoked))
    ));
    // The freed slot is zeros on disk and taken again first.
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes[..SLOT].iter().all(|b| *b == 0));
    assert_eq!(parse_id(&s.reserve().unwrap()).unwrap().0, 0);
}

#[test]
fn the_sweep_deletes_only_ended_grants_and_frees_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut ids = Vec::new();
    for (i, exp) in [1_000, 5_000, 1_000, 1_000].into_iter().enumerate() {
        let mut g = new_grant(&s, 7, exp);
        g.break_glass = i == 3;
        assert!(s.insert(&g).unwrap());
        ids.push(g.id);
    }
    // Two steps of two slots each, then the end.
    let (first, next) = s.sweep(0, 2, 2_000).unwrap();
    assert_eq!((first, next), (vec![ids[0].clone()], Some(2)));
    let (second, next) = s.sweep(2, 2, 2_000).unwrap();
    assert_eq!((second, next), (vec![ids[2].clone()], None));
    assert_eq!(s.get(&ids[0]).unwrap(), None);
    assert!(s.get(&ids[1]).unwrap().is_some());
    assert!(s.get(&ids[3]).unwrap().is_some(), "break-glass grants stay");
    assert_eq!(s.of_citizen(&"07".repeat(32)).unwrap().len(), 2);
    let reused = parse_id(&s.reserve().unwrap()).unwrap().0;
    assert!(reused == 0 || reused == 2);
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Insert {
        citizen: u8,
        exp: i64,
        break_glass: bool,
    },
    Spend(usize),
    Revoke(usize),
    Sweep {
        from: u32,
        scan: usize,
        cutoff: i64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, prop_oneof![Just(1_000i64), Just(5_000)], any::<bool>())
            .prop_map(|(citizen, exp, break_glass)| Op::Insert { citizen, exp, break_glass }),
        2 => (0usize..64).prop_map(Op::Spend),
        1 => (0usize..64).prop_map(Op::Revoke),
        1 => (0u32..8, 1usize..8, prop_oneof![Just(2_000i64), Just(9_000)])
            .prop_map(|(from, scan, cutoff)| Op::Sweep { from, scan, cutoff }),
        1 => Just(Op::Reopen),
    ]
}

/// Every lookup agrees with the model: by id, by code, by citizen, the break-glass set.
fn agrees(s: &GrantSlots, model: &[(Grant, bool)]) -> Result<(), TestCaseError> {
    for (g, live) in model {
        let want = live.then(|| g.clone());
        prop_assert_eq!(s.get(&g.id).unwrap(), want);
        let by_code = s.id_by_code(&g.verification_code).unwrap();
        prop_assert_eq!(by_code, live.then(|| g.id.clone()));
    }
    for c in 0u8..4 {
        let hex = format!("{c:02x}").repeat(32);
        let mut got: Vec<GrantId> = s
            .of_citizen(&hex)
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect();
        let mut want: Vec<GrantId> = model
            .iter()
            .filter(|(g, live)| *live && g.citizen == hex)
            .map(|(g, _)| g.id.clone())
            .collect();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
    }
    let mut got: Vec<GrantId> = s.break_glass().unwrap().into_iter().map(|g| g.id).collect();
    let mut want: Vec<GrantId> = model
        .iter()
        .filter(|(g, live)| *live && g.break_glass)
        .map(|(g, _)| g.id.clone())
        .collect();
    got.sort();
    want.sort();
    prop_assert_eq!(got, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Inserts, spends, revokes, sweeps (which free slots for reuse) and reopens, against
    /// a model: every lookup agrees after every step, stale ids of reused slots included.
    #[test]
    fn the_slots_agree_with_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let now = crate::Timestamp::from_millis(500_000);
        let mut model: Vec<(Grant, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Insert { citizen, exp, break_glass } => {
                    let mut g = new_grant(&s, citizen, exp);
                    g.max_uses = 2;
                    g.break_glass = break_glass;
                    prop_assert!(s.insert(&g).unwrap());
                    model.push((g, true));
                }
                Op::Spend(i) | Op::Revoke(i) if model.is_empty() => { let _ = i; }
                Op::Spend(i) => {
                    let n = model.len();
                    let (g, live) = &mut model[i % n];
                    let mut expected = g.clone();
                    let want = if *live { expected.spend(now).map(|()| expected) } else { Err(VaultError::GrantNotFound) };
                    let got = s.update(&g.id, &mut |x| x.spend(now));
                    prop_assert_eq!(got.as_ref().ok(), want.as_ref().ok());
                    if let Ok(x) = got { *g = x; }
                }
                Op::Revoke(i) => {
                    let n = model.len();
                    let (g, live) = &mut model[i % n];
                    let got = s.update_state(&g.id, &mut |st| { st.status = GrantStatus::Revoked; st.ended = Some(now); Ok(()) });
                    prop_assert_eq!(got.is_ok(), *live);
                    if *live { g.end(GrantStatus::Revoked, now); }
                }
                Op::Sweep { from, scan, cutoff } => {
                    let (deleted, _) = s.sweep(from, scan, cutoff).unwrap();
                    let stop = from + u32::try_from(scan).unwrap();
                    for (g, live) in &mut model {
                        let slot = parse_id(&g.id).unwrap().0;
                        let ends = *live && (from..stop).contains(&slot) && !g.break_glass && g.latest_end_secs() < cutoff;
                        prop_assert_eq!(deleted.contains(&g.id), ends);
                        if ends { *live = false; }
                    }
                }
                Op::Reopen => {
                    s.sync().unwrap();
                    drop(s);
                    s = open(dir.path());
                }
            }
            agrees(&s, &model)?;
        }
    }

    /// Many threads spending uses of a few grants: exactly `max_uses` spends win per
    /// grant, whatever the interleaving, and the counts survive a reopen.
    #[test]
    fn concurrent_spends_win_exactly_max_uses(max_uses in 1u32..6, grants in 1usize..4, threads in 2usize..6) {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(open(dir.path()));
        let mut ids = Vec::new();
        for i in 0..grants {
            let mut g = new_grant(&s, u8::try_from(i).unwrap(), 2_000_000);
            g.max_uses = max_uses;
            assert!(s.insert(&g).unwrap());
            ids.push(g.id);
        }
        let ids = Arc::new(ids);
        let wins: Vec<Vec<u32>> = (0..threads)
            .map(|_| {
                let (s, ids) = (Arc::clone(&s), Arc::clone(&ids));
                std::thread::spawn(move || {
                    ids.iter()
                        .map(|id| {
                            (0..max_uses + 2)
                                .filter(|_| s.update_state(id, &mut |st| st.spend(crate::Timestamp::from_millis(1_000_000))).is_ok())
                                .count() as u32
                        })
                        .collect::<Vec<u32>>()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let total: u32 = wins.iter().map(|w| w[i]).sum();
            prop_assert_eq!(total, max_uses);
            let g = s.get(id).unwrap().unwrap();
            prop_assert_eq!(g.uses, max_uses);
            prop_assert_eq!(g.status, GrantStatus::Exhausted);
        }
        s.sync().unwrap();
        drop(s);
        let s = open(dir.path());
        for id in ids.iter() {
            prop_assert_eq!(s.get(id).unwrap().unwrap().uses, max_uses);
        }
    }
}

/// How long opening a file of many grants takes.
mod open_timing {
    use super::*;

    /// Grants the test writes (the million-grant figure in BENCHMARKS.md came from this test
    /// with `GRANTS = 1_000_000`, run with `--release -- --nocapture`: vault-core reads no
    /// environment, so the size is a constant).
    const GRANTS: u32 = 20_000;

    /// Opening a file of many grants rebuilds every table entry; prints how long inserting
    /// and opening took.
    #[test]
    fn opening_many_grants_rebuilds_every_table_entry() {
        let n = GRANTS;
        let dir = tempfile::tempdir().unwrap();
        let s = GrantSlots::open(dir.path()).unwrap().0;
        let t = std::time::Instant::now();
        let mut probes = Vec::new();
        for i in 0..n {
            let mut g = crate::store::test_grant("x", 2_000);
            g.id = s.reserve().unwrap();
            g.verification_code = crate::grant::new_verification_code().unwrap();
            g.citizen = format!("{:064x}", u64::from(i) * 2_654_435_761);
            g.fields = (0..8).map(|f| format!("field_name_{f}")).collect();
            g.break_glass = i % 1_000 == 0;
            assert!(s.insert(&g).unwrap());
            if i % 997 == 0 {
                probes.push(g);
            }
        }
        s.sync().unwrap();
        eprintln!("insert {n}: {:?}", t.elapsed());
        drop(s);
        let t = std::time::Instant::now();
        let (s, report) = GrantSlots::open(dir.path()).unwrap();
        eprintln!("open {n}: {:?} {report:?}", t.elapsed());
        assert_eq!(report.live, u64::from(n));
        let t = s.tables_read().unwrap();
        assert_eq!((t.codes.len(), t.citizens.len()), (n as usize, n as usize));
        assert_eq!(t.break_glass.len(), n.div_ceil(1_000) as usize);
        assert!(t.free.is_empty());
        drop(t);
        for g in &probes {
            assert_eq!(s.get(&g.id).unwrap().as_ref(), Some(g));
            assert_eq!(
                s.id_by_code(&g.verification_code).unwrap().as_ref(),
                Some(&g.id)
            );
            assert_eq!(s.of_citizen(&g.citizen).unwrap(), vec![g.clone()]);
        }
    }
}

#[test]
fn a_full_file_refuses_a_new_grant_until_a_slot_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let g = new_grant(&s, 0xab, 1_000);
    assert!(s.insert(&g).unwrap());
    s.tables_write().unwrap().next = MAX_SLOTS;
    assert!(matches!(s.reserve(), Err(StoreError::Unavailable(m)) if m.contains("full")));
    // The sweep frees the ended grant's slot, and the next grant takes it.
    assert_eq!(s.sweep(0, 1, 2_000).unwrap().0.len(), 1);
    assert_eq!(parse_id(&s.reserve().unwrap()).unwrap().0, 0);
}
