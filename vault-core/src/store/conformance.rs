//! The behaviour every `VaultStore` backend must have, as tests any backend runs:
//! `store_conformance!(|| open a fresh store)` in the backend's test module expands to one
//! `#[test]` per behaviour. What is specific to one engine (crash repair, files on disk,
//! reopening) stays in that backend's own tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{
    CaseRow, Remembered, RememberedAnswer, SealedField, SealedRecord, StoreError, VaultStore,
};
use crate::case::CaseKind;
use crate::clock::Timestamp;
use crate::consent::StandingConsent;
use crate::error::VaultError;
use crate::grant::{Grant, GrantState, GrantStatus};
use crate::id::{BlindId, FieldName};
use crate::keyring::KeyringRecord;

/// A fresh store and whatever must live as long as it (a temporary directory, a database).
pub(crate) struct Fresh<S> {
    /// The store under test.
    pub store: S,
    /// Dropped after the test.
    pub _keep: Box<dyn std::any::Any>,
}

/// Expands to one test per behaviour for the backend `open` makes (a closure returning a
/// `Fresh` store).
macro_rules! store_conformance {
    ($open:expr) => {
        $crate::store::conformance::store_conformance!(@tests $open;
            records_round_trip_page_count_and_delete,
            meta_keeps_the_keyring_checkpoints_and_mark,
            grants_are_found_by_id_code_and_citizen,
            a_taken_code_stores_nothing,
            grant_changes_are_atomic_and_may_be_refused,
            one_caller_wins_each_use,
            the_sweep_walks_in_steps_and_keeps_break_glass,
            the_sweep_reads_each_grants_end,
            consents_are_kept_listed_deleted_and_swept,
            idempotency_keys_are_claimed_once_and_go_with_their_grant_or_their_time,
            cases_are_filed_by_citizen_and_kind_queued_while_open_and_erased,
        );
    };
    (@tests $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::store::conformance::$name(&$open);
            }
        )*
    };
}
pub(crate) use store_conformance;

type Open<S> = dyn Fn() -> Fresh<S>;

fn blind(n: u8) -> BlindId {
    BlindId::from_bytes([n; 32])
}

/// The citizen a grant concerns.
fn citizen_of(g: &Grant) -> BlindId {
    let mut b = [0u8; 32];
    hex::decode_to_slice(&g.citizen, &mut b).unwrap();
    BlindId::from_bytes(b)
}

/// A record with one field per name, each envelope the name and `marker`.
fn record(marker: &str, names: &[&str]) -> SealedRecord {
    let fields: BTreeMap<FieldName, SealedField> = names
        .iter()
        .map(|n| {
            (
                FieldName::parse(n).unwrap(),
                SealedField {
                    version: 1,
                    envelope: format!("{n}:{marker}").into_bytes(),
                },
            )
        })
        .collect();
    SealedRecord {
        dek_version: 1,
        wrapped_dek: vec![7; 60],
        audit_salt: [9; 32],
        record_version: 1,
        fields,
    }
}

/// An active one-use grant with an id and a fresh code from `s`, for `citizen` (one byte,
/// repeated), whose token expires at `exp` (seconds).
pub(crate) fn grant<S: VaultStore>(s: &S, citizen: u8, exp: i64) -> Grant {
    let mut g = super::test_grant("x", exp);
    g.id = s.new_grant_id().unwrap();
    g.verification_code = crate::grant::new_verification_code().unwrap();
    g.citizen = format!("{citizen:02x}").repeat(32);
    g
}

fn stored<S: VaultStore>(s: &S, g: &Grant) {
    assert!(s.insert_grant(g).unwrap());
}

/// Runs the sweep to the end in steps of `scan`; how many it deleted and how many steps.
fn sweep_all<S: VaultStore>(s: &S, scan: usize, cutoff: i64) -> (usize, usize) {
    let (mut deleted, mut cursor, mut steps) = (0, None, 0);
    loop {
        let (n, next) = s
            .sweep_grants(
                cursor.as_deref(),
                scan,
                Timestamp::from_millis(cutoff.saturating_mul(1000)),
            )
            .unwrap();
        deleted += n;
        steps += 1;
        cursor = next;
        if cursor.is_none() {
            return (deleted, steps);
        }
    }
}

pub(crate) fn records_round_trip_page_count_and_delete<S: VaultStore>(open: &Open<S>) {
    let f = open();
    let s = &f.store;
    assert_eq!(s.citizen(&blind(1)).unwrap(), None);
    assert_eq!(s.citizen_count().unwrap(), 0);
    let names = ["full_name", "phone", "address"];
    let batch: Vec<_> = (1..=5)
        .map(|n| (blind(n), record(&n.to_string(), &names)))
        .collect();
    s.put_citizens(&batch).unwrap();
    s.flush().unwrap();
    assert_eq!(s.citizen_count().unwrap(), 5);
    assert_eq!(s.citizen(&blind(3)).unwrap().as_ref(), Some(&batch[2].1));
    // Only the fields asked for come out.
    let some = s
        .citizen_fields(&blind(3), &|n| n == "phone")
        .unwrap()
        .unwrap();
    assert_eq!(
        some.fields
            .keys()
            .map(FieldName::as_str)
            .collect::<Vec<_>>(),
        ["phone"]
    );
    assert_eq!(some.wrapped_dek, batch[2].1.wrapped_dek);
    // A rewrite replaces the record.
    s.put_citizens(&[(blind(3), record("again", &names))])
        .unwrap();
    assert_eq!(s.citizen(&blind(3)).unwrap(), Some(record("again", &names)));
    assert_eq!(s.citizen_count().unwrap(), 5);
    // Pages in blind-id order.
    let first = s.citizens_after(None, 2).unwrap();
    assert_eq!(
        first.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [blind(1), blind(2)]
    );
    let rest = s.citizens_after(Some(&blind(2)), 10).unwrap();
    assert_eq!(
        rest.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [blind(3), blind(4), blind(5)]
    );
    assert!(s.citizens_after(Some(&blind(5)), 10).unwrap().is_empty());
    // Deletion says whether there was a record.
    assert!(s.delete_citizen(&blind(4)).unwrap());
    assert!(!s.delete_citizen(&blind(4)).unwrap());
    assert_eq!(s.citizen(&blind(4)).unwrap(), None);
    assert_eq!(s.citizen_count().unwrap(), 4);
}

pub(crate) fn meta_keeps_the_keyring_checkpoints_and_mark<S: VaultStore>(open: &Open<S>) {
    let f = open();
    let s = &f.store;
    assert_eq!(s.keyring().unwrap(), None);
    let mut ring = KeyringRecord {
        current: 1,
        min_decryption_version: 1,
        keks: BTreeMap::from([(1, "aa".repeat(30))]),
        rotating_from: None,
        log_origin: "vault.example/log".into(),
        audit_key: "bb".repeat(40),
        token_keys: BTreeMap::from([(1, "cc".repeat(40))]),
        derivation_seed: None,
    };
    s.put_keyring(&ring).unwrap();
    assert_eq!(s.keyring().unwrap().as_ref(), Some(&ring));
    ring.current = 2;
    s.put_keyring(&ring).unwrap();
    assert_eq!(s.keyring().unwrap().map(|r| r.current), Some(2));
    let (a, b) = ([1u8; 32], [2u8; 32]);
    assert_eq!(s.import_checkpoint(&a).unwrap(), None);
    s.set_import_checkpoint(&a, Some(41)).unwrap();
    s.set_import_checkpoint(&b, Some(7)).unwrap();
    assert_eq!(s.import_checkpoint(&a).unwrap(), Some(41));
    s.set_import_checkpoint(&a, None).unwrap();
    assert_eq!(s.import_checkpoint(&a).unwrap(), None);
    assert_eq!(s.import_checkpoint(&b).unwrap(), Some(7));
    assert_eq!(s.released_through().unwrap(), None);
    s.set_released_through(12).unwrap();
    s.flush().unwrap();
    assert_eq!(s.released_through().unwrap(), Some(12));
}

pub(crate) fn grants_are_found_by_id_code_and_citizen<S: VaultStore>(open: &Open<S>) {
    let f = open();
    let s = &f.store;
    let a = grant(s, 0xab, 2_000);
    let b = grant(s, 0xab, 2_000);
    let mut glass = grant(s, 0xcd, 2_000);
    glass.break_glass = true;
    assert_ne!(a.id, b.id, "ids are fresh");
    assert_eq!(s.grant(&a.id).unwrap(), None, "an id alone stores nothing");
    for g in [&a, &b, &glass] {
        stored(s, g);
    }
    for g in [&a, &b, &glass] {
        assert_eq!(s.grant(&g.id).unwrap().as_ref(), Some(g));
        assert_eq!(
            s.grant_id_by_code(&g.verification_code).unwrap().as_deref(),
            Some(g.id.as_str())
        );
    }
    let mut mine: Vec<_> = s.grants_of_citizen(&citizen_of(&a)).unwrap();
    mine.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![a.clone(), b.clone()];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(mine, want);
    assert_eq!(s.grants_of_citizen(&blind(0xef)).unwrap(), vec![]);
    assert_eq!(s.break_glass_grants().unwrap(), vec![glass]);
    assert_eq!(s.grant_id_by_code("NOSUCHCODE").unwrap(), None);
    assert_eq!(s.grant("g-tnosuchgrant").unwrap(), None);
}

pub(crate) fn a_taken_code_stores_nothing<S: VaultStore>(open: &Open<S>) {
    let f = open();
    let s = &f.store;
    let a = grant(s, 0xab, 2_000);
    stored(s, &a);
    let mut clash = grant(s, 0xcd, 2_000);
    clash.verification_code = a.verification_code.clone();
    assert!(!s.insert_grant(&clash).unwrap());
    assert_eq!(s.grant(&clash.id).unwrap(), None);
    assert_eq!(
        s.grant_id_by_code(&a.verification_code).unwrap().as_deref(),
        Some(a.id.as_str())
    );
    assert!(s.grants_of_citizen(&citizen_of(&clash)).unwrap().is_empty());
}

pub(crate) fn grant_changes_are_atomic_and_may_be_refused<S: VaultStore>(open: &Open<S>) {
    let f = open();
    let s = &f.store;
    let mut g = grant(s, 0xab, 2_000);
    g.max_uses = 3;
    stored(s, &g);
    let now = Timestamp::from_millis(1_800_000);
    let after = s.update_grant(&g.id, true, &mut |g| g.spend(now)).unwrap();
    assert_eq!(after.uses, 1);
    let st = s
        .update_grant_state(&g.id, &mut |st| st.spend(now))
        .unwrap();
    assert_eq!((st.uses, st.max_uses, st.binding), (2, 3, g.binding()));
    assert_eq!(st, GrantState::of(&s.grant(&g.id).unwrap().unwrap()));
    // A refused change changes nothing.
    let refused = s.update_grant(&g.id, true, &mut |g| {
        g.uses = 0;
        Err(VaultError::GrantRevoked)
    });
    assert!(matches!(
        refused,
        Err(StoreError::Refused(VaultError::GrantRevoked))
    ));
    assert_eq!(s.grant(&g.id).unwrap().unwrap().uses, 2);
    s.update_grant(&g.id, true, &mut |g| {
        g.end(GrantStatus::Revoked, now);
        Ok(())
    })
    .unwrap();
    assert!(matches!(
        s.update_grant_state(&g.id, &mut |st| st.spend(now)),
        Err(StoreError::Refused(VaultError::GrantRevoked))
    ));
    let revoked = s.grant(&g.id).unwrap().unwrap();
    assert_eq!((revoked.status, revoked.uses), (GrantStatus::Revoked, 2));
    // The fixed facts are as inserted.
    assert_eq!(
        (&revoked.agency, &revoked.fields, &revoked.citizen),
        (&g.agency, &g.fields, &g.citizen)
    );
    let unknown = s.new_grant_id().unwrap();
    assert!(matches!(
        s.update_grant(&unknown, false, &mut |_| Ok(())),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.update_grant_state(&unknown, &mut |st| st.spend(now)),
        Err(StoreError::NotFound)
    ));
}

pub(crate) fn one_caller_wins_each_use<S: VaultStore>(open: &Open<S>) {
    let f = open();
    let s = &f.store;
    let mut g = grant(s, 0xab, 2_000);
    g.max_uses = 40;
    stored(s, &g);
    let now = Timestamp::from_millis(1_800_000);
    let wins = AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for i in 0..10 {
                    // The release path (state only) and the whole-grant path race alike.
                    let won = if i % 2 == 0 {
                        s.update_grant_state(&g.id, &mut |st| st.spend(now)).is_ok()
                    } else {
                        s.update_grant(&g.id, false, &mut |g| g.spend(now)).is_ok()
                    };
                    if won {
                        wins.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(wins.into_inner(), 40, "80 tries, 40 uses");
    let spent = s.grant(&g.id).unwrap().unwrap();
    assert_eq!((spent.uses, spent.status), (40, GrantStatus::Exhausted));
    assert_eq!(spent.ended, Some(now));
}

pub(crate) fn the_sweep_walks_in_steps_and_keeps_break_glass<S: VaultStore>(open: &Open<S>) {
    let f = open();
    let s = &f.store;
    let ends = [3_000, 1_000, 2_000, 1_500];
    let grants: Vec<Grant> = ends.iter().map(|&e| grant(s, 0xab, e)).collect();
    for g in &grants {
        stored(s, g);
    }
    let mut glass = grant(s, 0xab, 1_000);
    glass.break_glass = true;
    stored(s, &glass);
    assert_eq!(sweep_all(s, 10, 999), (0, 1));
    // In steps of two (three steps for five grants): the three that ended before 2,500 s.
    let (deleted, steps) = sweep_all(s, 2, 2_500);
    assert_eq!(deleted, 3);
    assert!(steps >= 3, "{steps} steps");
    for (g, end) in grants.iter().zip(ends) {
        let kept = s.grant(&g.id).unwrap().is_some();
        assert_eq!(kept, end >= 2_500, "grant ending at {end}");
        let code = s.grant_id_by_code(&g.verification_code).unwrap();
        assert_eq!(code.is_some(), kept, "its code goes with it");
    }
    assert_eq!(s.grants_of_citizen(&citizen_of(&glass)).unwrap().len(), 2);
    assert_eq!(sweep_all(s, 10, i64::MAX).0, 1);
    assert_eq!(
        s.grants_of_citizen(&citizen_of(&glass)).unwrap(),
        vec![glass.clone()]
    );
    assert_eq!(s.break_glass_grants().unwrap(), vec![glass]);
}

pub(crate) fn the_sweep_reads_each_grants_end<S: VaultStore>(open: &Open<S>) {
    let f = open();
    let s = &f.store;
    // Active: token until 2,000 s. Pending: no token, consent until 1,000 s, TTL 300 s,
    // so in force at most until 1,301 s. Refused at 500 s: ended at 501 s.
    let active = grant(s, 0xab, 2_000);
    let mut pending = grant(s, 0xab, 0);
    pending.status = GrantStatus::PendingConsent;
    (pending.token_iat, pending.token_exp) = (None, None);
    pending.consent_expires = Some(Timestamp::from_secs(1_000));
    let mut refused = grant(s, 0xab, 0);
    (refused.status, refused.token_iat, refused.token_exp) =
        (GrantStatus::PendingConsent, None, None);
    refused.consent_expires = Some(Timestamp::from_secs(1_000));
    refused.end(GrantStatus::Refused, Timestamp::from_millis(500_000));
    for g in [&active, &pending, &refused] {
        stored(s, g);
    }
    assert_eq!(active.latest_end_secs(), 2_000);
    assert_eq!(refused.latest_end_secs(), 501);
    assert_eq!(pending.latest_end_secs(), 1_301);
    let left = || {
        [&active, &pending, &refused]
            .into_iter()
            .filter(|g| s.grant(&g.id).unwrap().is_some())
            .count()
    };
    for (cutoff, after) in [
        (501, 3),
        (502, 2),
        (1_301, 2),
        (1_302, 1),
        (2_000, 1),
        (2_001, 0),
    ] {
        sweep_all(s, 10, cutoff);
        assert_eq!(left(), after, "after a sweep at {cutoff}");
    }
}

fn consent(citizen: &BlindId, id: &str, expires_ms: i64) -> StandingConsent {
    StandingConsent {
        id: id.into(),
        citizen: citizen.to_string(),
        agency: "ubnd-phuong-sai-gon".into(),
        purpose: "construction_permit".into(),
        fields: vec!["full_name".into()],
        created: Timestamp::from_millis(1_000),
        expires: Timestamp::from_millis(expires_ms),
        grant_id: "g-x".into(),
        withdrawn: None,
    }
}

pub(crate) fn consents_are_kept_listed_deleted_and_swept<S: VaultStore>(open: &Open<S>) {
    let f = open();
    let s = &f.store;
    let (me, other) = (blind(0xab), blind(0xcd));
    let mut a = consent(&me, "c-a", 10_000);
    let b = consent(&me, "c-b", 20_000);
    s.put_consent(&a).unwrap();
    s.put_consent(&b).unwrap();
    s.put_consent(&consent(&other, "c-a", 10_000)).unwrap();
    let mut mine = s.consents_of_citizen(&me).unwrap();
    mine.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(mine, vec![a.clone(), b.clone()]);
    // A put replaces (the withdrawal's mark).
    a.withdrawn = Some(Timestamp::from_millis(5_000));
    s.put_consent(&a).unwrap();
    assert!(s.consents_of_citizen(&me).unwrap().contains(&a));
    // Deletion is per citizen.
    assert!(s.delete_consent(&other, "c-a").unwrap());
    assert!(!s.delete_consent(&other, "c-a").unwrap());
    assert_eq!(s.consents_of_citizen(&me).unwrap().len(), 2);
    // The sweep takes what ended before the cutoff: withdrawn at 5,000, expired at 20,000.
    assert_eq!(s.sweep_consents(Timestamp::from_millis(5_000)).unwrap(), 0);
    assert_eq!(s.sweep_consents(Timestamp::from_millis(5_001)).unwrap(), 1);
    assert_eq!(s.consents_of_citizen(&me).unwrap(), vec![b]);
    assert_eq!(s.sweep_consents(Timestamp::from_millis(20_001)).unwrap(), 1);
    assert!(s.consents_of_citizen(&me).unwrap().is_empty());
}

pub(crate) fn idempotency_keys_are_claimed_once_and_go_with_their_grant_or_their_time<
    S: VaultStore,
>(
    open: &Open<S>,
) {
    let f = open();
    let s = &f.store;
    let g = grant(s, 0xab, 1_000);
    stored(s, &g);
    let (for_grant, old, new) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let remembered = |hash: u8, ms: i64, answer: RememberedAnswer| Remembered {
        request_hash: [hash; 32],
        created: Timestamp::from_millis(ms),
        answer,
    };
    let first = remembered(1, 500, RememberedAnswer::Grant(g.id.clone()));
    assert_eq!(s.remembered(&for_grant).unwrap(), None);
    assert!(s.remember(&for_grant, &first).unwrap());
    // Taken: the first stays.
    let other = remembered(2, 600, RememberedAnswer::Sealed(vec![9; 40]));
    assert!(!s.remember(&for_grant, &other).unwrap());
    assert_eq!(s.remembered(&for_grant).unwrap().as_ref(), Some(&first));
    let sealed_old = remembered(3, 1_000, RememberedAnswer::Sealed(vec![7; 60]));
    let sealed_new = remembered(4, 9_000, RememberedAnswer::Sealed(vec![8; 60]));
    assert!(s.remember(&old, &sealed_old).unwrap());
    assert!(s.remember(&new, &sealed_new).unwrap());
    assert_eq!(s.remembered(&old).unwrap().as_ref(), Some(&sealed_old));
    // Sealed answers go by their time; a grant's key stays with its grant.
    assert_eq!(
        s.sweep_remembered(Timestamp::from_millis(1_000)).unwrap(),
        0
    );
    assert_eq!(
        s.sweep_remembered(Timestamp::from_millis(1_001)).unwrap(),
        1
    );
    assert_eq!(s.remembered(&old).unwrap(), None);
    assert_eq!(s.remembered(&new).unwrap().as_ref(), Some(&sealed_new));
    assert_eq!(s.remembered(&for_grant).unwrap().as_ref(), Some(&first));
    // The grant sweep deletes a grant's key with the grant.
    assert_eq!(sweep_all(s, 10, 5_000).0, 1);
    assert_eq!(s.remembered(&for_grant).unwrap(), None);
    assert_eq!(s.remembered(&new).unwrap().as_ref(), Some(&sealed_new));
}

pub(crate) fn cases_are_filed_by_citizen_and_kind_queued_while_open_and_erased<S: VaultStore>(
    open: &Open<S>,
) {
    let f = open();
    let s = &f.store;
    let row = |kind: CaseKind, id: &str, citizen: u8, open: bool| CaseRow {
        kind,
        id: id.into(),
        citizen: blind(citizen),
        open,
        created: Timestamp::from_millis(1_000),
        topic: if kind == CaseKind::Correction {
            "full_name".into()
        } else {
            String::new()
        },
        body: vec![citizen; 50],
    };
    let a = row(CaseKind::Complaint, "kn-a", 1, true);
    let b = row(CaseKind::Correction, "dc-b", 1, true);
    let c = row(CaseKind::Correction, "dc-c", 2, true);
    let d = row(CaseKind::Request, "yc-d", 1, false);
    for r in [&a, &b, &c, &d] {
        s.put_case(r).unwrap();
    }
    assert_eq!(
        s.case(CaseKind::Complaint, "kn-a").unwrap().as_ref(),
        Some(&a)
    );
    assert_eq!(
        s.case(CaseKind::Correction, "kn-a").unwrap(),
        None,
        "kind is part of the key"
    );
    assert_eq!(
        s.cases_of_citizen(&blind(1), CaseKind::Correction).unwrap(),
        vec![b.clone()]
    );
    assert_eq!(
        s.cases_of_citizen(&blind(1), CaseKind::Request).unwrap(),
        vec![d.clone()]
    );
    assert_eq!(
        s.cases_of_citizen(&blind(3), CaseKind::Complaint).unwrap(),
        vec![]
    );
    assert_eq!(
        s.open_cases(CaseKind::Correction).unwrap(),
        vec![b.clone(), c.clone()]
    );
    assert_eq!(
        s.open_cases(CaseKind::Request).unwrap(),
        vec![],
        "a closed case is not queued"
    );
    // A release reads the record and the open corrections' topics together.
    let rec = record("m", &["full_name", "address"]);
    s.put_citizens(&[(blind(1), rec.clone())]).unwrap();
    let (got, open) = s
        .citizen_fields_and_open(&blind(1), &|n| n == "full_name", CaseKind::Correction)
        .unwrap();
    let mut only_name = rec.clone();
    only_name.fields.retain(|n, _| n.as_str() == "full_name");
    assert_eq!((got, open), (Some(only_name), vec!["full_name".to_owned()]));
    assert_eq!(
        s.citizen_fields_and_open(&blind(1), &|_| true, CaseKind::Request)
            .unwrap()
            .1,
        Vec::<String>::new(),
        "a closed case is not open"
    );
    assert_eq!(
        s.citizen_fields_and_open(&blind(2), &|_| true, CaseKind::Correction)
            .unwrap(),
        (None, vec!["full_name".to_owned()]),
        "cases without a record"
    );
    assert_eq!(
        s.citizen_fields_and_open(&blind(3), &|_| true, CaseKind::Correction)
            .unwrap(),
        (None, vec![])
    );
    // Closing replaces the row and leaves the queue.
    let closed = CaseRow {
        open: false,
        body: vec![7; 60],
        ..b.clone()
    };
    s.put_case(&closed).unwrap();
    assert_eq!(s.open_cases(CaseKind::Correction).unwrap(), vec![c.clone()]);
    assert_eq!(
        s.cases_of_citizen(&blind(1), CaseKind::Correction).unwrap(),
        vec![closed]
    );
    // Erasure takes every case of the citizen, and only theirs.
    assert_eq!(s.delete_cases_of_citizen(&blind(1)).unwrap(), 3);
    for kind in CaseKind::ALL {
        assert_eq!(s.cases_of_citizen(&blind(1), kind).unwrap(), vec![]);
    }
    assert_eq!(s.case(CaseKind::Complaint, "kn-a").unwrap(), None);
    assert_eq!(s.open_cases(CaseKind::Correction).unwrap(), vec![c]);
    assert_eq!(s.delete_cases_of_citizen(&blind(1)).unwrap(), 0);
}
