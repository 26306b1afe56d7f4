//! Tests of `vault`.

use super::*;
use crate::audit::{Event, SafeId, SegmentLogAt};
use crate::keyring::{DEFAULT_LOG_ORIGIN, InMemoryRootKey};
use crate::store::SledStore;
use crate::store::{MetaStore, RecordStore};

const NOW: Timestamp = Timestamp::from_millis(1_795_395_723_456);

fn op() -> Actor {
    Actor::operator(SafeId::parse("vaultctl").unwrap())
}

fn audit_at(dir: &Path) -> SegmentLogAt {
    SegmentLogAt(dir.join("audit"))
}

fn store_at(dir: &Path) -> SledStore {
    SledStore::open(&dir.join("store")).unwrap()
}
use serde_json::json;
use std::path::Path;

fn policy() -> Arc<PolicySet> {
    Arc::new(
        PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")).unwrap(),
    )
}

fn id(n: u64) -> CitizenId {
    CitizenId::parse(&format!("0792{n:08}")).unwrap()
}

fn write(c: CitizenId, fields: Value) -> RecordWrite {
    let map = fields.as_object().unwrap().clone();
    RecordWrite {
        citizen: c,
        fields: map
            .into_iter()
            .map(|(k, v)| (FieldName::parse(&k).unwrap(), v))
            .collect(),
    }
}

fn new_vault(dir: &Path, key: u8) -> Vault<SledStore> {
    Vault::init(
        store_at(dir),
        &InMemoryRootKey::new([key; 32]),
        policy(),
        DEFAULT_LOG_ORIGIN,
        &audit_at(dir),
    )
    .unwrap()
}

/// A vault whose audit log fails on demand.
fn faulty_vault(dir: &Path) -> (Vault<SledStore>, Arc<crate::audit::file::Faults>) {
    let faults = crate::audit::file::Faults::new();
    let v = Vault::init(
        store_at(dir),
        &InMemoryRootKey::new([1; 32]),
        policy(),
        DEFAULT_LOG_ORIGIN,
        &crate::audit::FaultyLogAt(dir.join("audit"), Arc::clone(&faults)),
    )
    .unwrap();
    (v, faults)
}

#[test]
fn write_read_round_trip_and_idempotent_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path(), 1);
    let w = write(
        id(1),
        json!({"full_name": "Nguyễn Văn An", "phone": "0903123456"}),
    );
    assert_eq!(
        v.write_records(&[w], &op(), NOW).unwrap(),
        vec![WriteOutcome::Created(1)]
    );
    let w = write(
        id(1),
        json!({"full_name": "Nguyễn Văn An", "phone": "0903123456"}),
    );
    assert_eq!(
        v.write_records(&[w], &op(), NOW).unwrap(),
        vec![WriteOutcome::Unchanged(1)]
    );
    let w = write(id(1), json!({"phone": "0903999999"}));
    assert_eq!(
        v.write_records(&[w], &op(), NOW).unwrap(),
        vec![WriteOutcome::Updated(2)]
    );
    let r = v.read_record_unaudited(&id(1)).unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(r.fields["full_name"], json!("Nguyễn Văn An"));
    assert_eq!(r.fields["phone"], json!("0903999999"));
    // The untouched field keeps its own version.
    let sealed = v.store.citizen(&v.blind(&id(1))).unwrap().unwrap();
    assert_eq!(
        sealed.fields[&FieldName::parse("full_name").unwrap()].version,
        1
    );
    assert!(matches!(
        v.read_record_unaudited(&id(2)),
        Err(VaultError::CitizenNotFound)
    ));
}

#[test]
fn invalid_values_are_refused_without_quoting_them() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path(), 1);
    let mut m = serde_json::Map::new();
    m.insert("date_of_birth".into(), json!("1990-02-30"));
    let err = v.validate_fields(m).unwrap_err();
    assert_eq!(err.code(), "invalid_field_value");
    assert!(!err.to_string().contains("1990-02-30"));
    let mut m = serde_json::Map::new();
    m.insert("shoe_size".into(), json!(42));
    assert_eq!(v.validate_fields(m).unwrap_err().code(), "unknown_field");
    let mut m = serde_json::Map::new();
    m.insert("sex".into(), json!("unknown"));
    assert!(v.validate_write(id(3), m).is_err());
    assert_eq!(v.store.citizen_count().unwrap(), 0);
}

#[test]
fn old_ciphertext_replayed_into_place_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path(), 1);
    v.write_records(&[write(id(1), json!({"phone": "0903000001"}))], &op(), NOW)
        .unwrap();
    let blind = v.blind(&id(1));
    let old = v.store.citizen(&blind).unwrap().unwrap();
    v.write_records(&[write(id(1), json!({"phone": "0903000002"}))], &op(), NOW)
        .unwrap();
    let mut current = v.store.citizen(&blind).unwrap().unwrap();
    let phone = FieldName::parse("phone").unwrap();
    current.fields.get_mut(&phone).unwrap().envelope = old.fields[&phone].envelope.clone();
    v.store.put_citizens(&[(blind, current)]).unwrap();
    assert!(matches!(
        v.read_record_unaudited(&id(1)),
        Err(VaultError::StaleCiphertext)
    ));
}

#[test]
fn ciphertext_swapped_between_citizens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path(), 1);
    v.write_records(
        &[
            write(id(1), json!({"phone": "0903000001"})),
            write(id(2), json!({"phone": "0903000002"})),
        ],
        &op(),
        NOW,
    )
    .unwrap();
    let (b1, b2) = (v.blind(&id(1)), v.blind(&id(2)));
    let r1 = v.store.citizen(&b1).unwrap().unwrap();
    let mut r2 = v.store.citizen(&b2).unwrap().unwrap();
    // Move citizen 1's whole record (DEK and fields) under citizen 2's index.
    v.store.put_citizens(&[(b2, r1.clone())]).unwrap();
    assert!(v.read_record_unaudited(&id(2)).is_err());
    // Move only a field envelope.
    let phone = FieldName::parse("phone").unwrap();
    r2.fields.insert(phone.clone(), r1.fields[&phone].clone());
    v.store.put_citizens(&[(b2, r2)]).unwrap();
    assert!(v.read_record_unaudited(&id(2)).is_err());
}

#[test]
fn wrong_root_key_is_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let v = new_vault(dir.path(), 1);
        v.write_records(
            &[write(id(1), json!({"full_name": "Lê Thị Hoa"}))],
            &op(),
            NOW,
        )
        .unwrap();
        v.flush().unwrap();
    }
    let store = store_at(dir.path());
    let before = store.keyring().unwrap();
    let err = Vault::open(
        store.clone(),
        &InMemoryRootKey::new([2; 32]),
        policy(),
        &audit_at(dir.path()),
    )
    .unwrap_err();
    assert!(matches!(err, VaultError::WrongRootKey));
    assert!(err.to_string().contains("root key does not match"));
    assert_eq!(store.keyring().unwrap(), before);
    let v = Vault::open(
        store,
        &InMemoryRootKey::new([1; 32]),
        policy(),
        &audit_at(dir.path()),
    )
    .unwrap();
    assert_eq!(
        v.read_record_unaudited(&id(1)).unwrap().fields["full_name"],
        json!("Lê Thị Hoa")
    );
}

#[test]
fn init_refuses_an_existing_vault() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path(), 1);
    let store = v.store.clone();
    drop(v);
    assert!(matches!(
        Vault::init(
            store,
            &InMemoryRootKey::new([1; 32]),
            policy(),
            DEFAULT_LOG_ORIGIN,
            &audit_at(dir.path())
        ),
        Err(VaultError::VaultExists)
    ));
}

#[test]
fn erase_destroys_the_record_and_a_later_write_gets_a_fresh_dek() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path(), 1);
    v.write_records(
        &[write(id(7), json!({"full_name": "Phạm Minh Tuấn"}))],
        &op(),
        NOW,
    )
    .unwrap();
    let blind = v.blind(&id(7));
    let before = v.store.citizen(&blind).unwrap().unwrap();
    v.erase(&id(7), &op(), NOW).unwrap();
    assert!(v.store.citizen(&blind).unwrap().is_none());
    assert!(matches!(
        v.read_record_unaudited(&id(7)),
        Err(VaultError::CitizenNotFound)
    ));
    assert!(matches!(
        v.erase(&id(7), &op(), NOW),
        Err(VaultError::CitizenNotFound)
    ));
    assert!(v.store.citizens_after(None, 10).unwrap().is_empty());
    // The old wrapped DEK no longer opens anything: there is no record to open it for.
    let w = write(id(7), json!({"full_name": "Phạm Minh Tuấn"}));
    assert_eq!(
        v.write_records(&[w], &op(), NOW).unwrap(),
        vec![WriteOutcome::Created(1)]
    );
    let after = v.store.citizen(&blind).unwrap().unwrap();
    assert_ne!(before.wrapped_dek, after.wrapped_dek);
    assert_ne!(before.audit_salt, after.audit_salt);
    let old_dek = v
        .keyring()
        .unwrap_dek(&blind, 1, &before.wrapped_dek)
        .unwrap();
    let new_dek = v
        .keyring()
        .unwrap_dek(&blind, 1, &after.wrapped_dek)
        .unwrap();
    assert_ne!(old_dek.expose(), new_dek.expose());
}

#[test]
fn interrupted_rotation_resumes_and_every_record_reads_back_under_the_new_kek() {
    let dir = tempfile::tempdir().unwrap();
    let root = InMemoryRootKey::new([5; 32]);
    {
        let v = new_vault(dir.path(), 5);
        let writes: Vec<_> = (0..2500)
            .map(|n| {
                write(
                    id(n),
                    json!({"full_name": format!("Công dân {n}"), "annual_income": n}),
                )
            })
            .collect();
        v.write_records(&writes, &op(), NOW).unwrap();
        v.flush().unwrap();
    }
    {
        let v = Vault::open(store_at(dir.path()), &root, policy(), &audit_at(dir.path())).unwrap();
        let mut batches = 0;
        let report = v
            .rotate_keys(&root, 1000, &op(), NOW, &mut |_| {
                batches += 1;
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(
            report,
            RotationReport {
                from: 1,
                to: 2,
                rewrapped: 1000,
                resumed: false,
                completed: false
            }
        );
        // Simulates the kill: the process ends with the rotation half done.
    }
    let v = Vault::open(store_at(dir.path()), &root, policy(), &audit_at(dir.path())).unwrap();
    // New writes during the half-done rotation already use the new KEK.
    v.write_records(&[write(id(9999), json!({"full_name": "Mới"}))], &op(), NOW)
        .unwrap();
    let mut seen = Vec::new();
    let report = v
        .rotate_keys(&root, 1000, &op(), NOW, &mut |p| {
            seen.push(p.visited);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(report.resumed && report.completed);
    assert_eq!((report.from, report.to), (1, 2));
    assert_eq!(report.rewrapped, 1500);
    assert_eq!(seen.last(), Some(&2501));
    let ring = v.store.keyring().unwrap().unwrap();
    assert_eq!(ring.keks.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!((ring.min_decryption_version, ring.rotating_from), (2, None));
    for (_, rec) in v.store.citizens_after(None, 10_000).unwrap() {
        assert_eq!(
            crypto::wrapped_dek_kek_version(&rec.wrapped_dek).unwrap(),
            2
        );
    }
    for n in 0..2500 {
        assert_eq!(
            v.read_record_unaudited(&id(n)).unwrap().fields["annual_income"],
            json!(n)
        );
    }
    // A second rotation goes to version 3.
    let r = v
        .rotate_keys(&root, 1000, &op(), NOW, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!((r.from, r.to, r.rewrapped, r.resumed), (2, 3, 2501, false));
}

fn entries(v: &Vault<SledStore>) -> Vec<serde_json::Value> {
    (0..v.audit().size())
        .map(|i| serde_json::from_slice(&v.audit().entry(i).unwrap()).unwrap())
        .collect()
}

#[test]
fn writes_are_audited_with_field_names_only_and_unchanged_rows_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path(), 1);
    v.write_records(
        &[write(
            id(1),
            json!({"full_name": "Đỗ Thị Mai", "phone": "0903123456"}),
        )],
        &op(),
        NOW,
    )
    .unwrap();
    v.write_records(
        &[write(
            id(1),
            json!({"full_name": "Đỗ Thị Mai", "phone": "0903999999"}),
        )],
        &op(),
        NOW,
    )
    .unwrap();
    v.write_records(
        &[write(id(1), json!({"full_name": "Đỗ Thị Mai"}))],
        &op(),
        NOW,
    )
    .unwrap();
    let e = entries(&v);
    assert_eq!(
        e.len(),
        2,
        "created and updated; the unchanged write adds nothing"
    );
    assert_eq!(e[0]["event"], json!(Event::RecordWritten.as_str()));
    assert_eq!(e[0]["fields"], json!(["full_name", "phone"]));
    assert_eq!(e[1]["fields"], json!(["phone"]));
    assert_eq!(e[0]["actor"], json!({"kind": "operator", "id": "vaultctl"}));
    assert_eq!(e[0]["policy"], json!(v.policy().sha256_hex()));
    let p = v.citizen_pseudonym(&id(1)).unwrap().unwrap();
    assert_eq!(e[0]["subject"], json!(p.to_string()));
    let text =
        String::from_utf8((0..2).flat_map(|i| v.audit().entry(i).unwrap()).collect()).unwrap();
    for secret in ["Đỗ Thị Mai", "0903123456", "0903999999", "079200000001"] {
        assert!(!text.contains(secret));
    }
    v.audit().verify_all().unwrap();
}

#[test]
fn erasure_keeps_entries_and_proofs_but_unlinks_them() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path(), 1);
    v.write_records(
        &[write(id(5), json!({"full_name": "Ngô Văn Năm"}))],
        &op(),
        NOW,
    )
    .unwrap();
    let before = v.citizen_pseudonym(&id(5)).unwrap().unwrap();
    v.erase(&id(5), &op(), NOW).unwrap();
    let e = entries(&v);
    assert_eq!(e[1]["event"], json!("record.erased"));
    assert_eq!(e[1]["subject"], json!(before.to_string()));
    assert_eq!(
        v.citizen_pseudonym(&id(5)).unwrap(),
        None,
        "the salt is gone"
    );
    v.write_records(
        &[write(id(5), json!({"full_name": "Ngô Văn Năm"}))],
        &op(),
        NOW,
    )
    .unwrap();
    let after = v.citizen_pseudonym(&id(5)).unwrap().unwrap();
    assert_ne!(
        before, after,
        "a re-imported citizen cannot be linked to the old entries"
    );
    let size = v.audit().size();
    assert_eq!(size, 3);
    let cp = crate::audit::Checkpoint::verify(
        &v.audit().latest_checkpoint().unwrap(),
        &v.audit().verifier(),
    )
    .unwrap();
    for i in 0..size {
        let proof = v.audit().inclusion_proof(i, size).unwrap();
        crate::audit::merkle::verify_inclusion(
            i,
            size,
            &v.audit().leaf_hash(i).unwrap(),
            &proof,
            &cp.root,
        )
        .unwrap();
    }
    v.audit().verify_all().unwrap();
}

#[test]
fn when_the_audit_log_fails_nothing_is_written_or_erased() {
    let dir = tempfile::tempdir().unwrap();
    let (v, faults) = faulty_vault(dir.path());
    v.write_records(&[write(id(1), json!({"full_name": "An"}))], &op(), NOW)
        .unwrap();
    faults.set_sync(true);
    let err = v
        .write_records(&[write(id(2), json!({"full_name": "Bình"}))], &op(), NOW)
        .unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable));
    assert!(matches!(
        v.read_record_unaudited(&id(2)),
        Err(VaultError::CitizenNotFound)
    ));
    assert!(matches!(
        v.erase(&id(1), &op(), NOW),
        Err(VaultError::AuditUnavailable)
    ));
    assert!(
        v.read_record_unaudited(&id(1)).is_ok(),
        "not erased without its entry"
    );
    faults.set_sync(false);
    v.write_records(&[write(id(2), json!({"full_name": "Bình"}))], &op(), NOW)
        .unwrap();
    assert_eq!(v.audit().size(), 2);
    v.audit().verify_all().unwrap();
}

#[test]
fn pipelined_batches_are_stored_in_order_and_only_once_their_entries_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (v, faults) = faulty_vault(dir.path());
    let batch = |n: u64, name: &str| {
        v.prepare_writes(&[write(id(n), json!({ "full_name": name }))])
            .unwrap()
    };
    // Two batches queued before either is stored (as the import's pipeline does).
    let first = v.audit_writes(batch(1, "An"), &op(), NOW).unwrap();
    let second = v.audit_writes(batch(2, "Bình"), &op(), NOW).unwrap();
    assert!(matches!(
        v.read_record_unaudited(&id(1)),
        Err(VaultError::CitizenNotFound)
    ));
    v.store_writes(first).unwrap();
    v.store_writes(second).unwrap();
    assert_eq!(
        v.read_record_unaudited(&id(2)).unwrap().fields["full_name"],
        "Bình"
    );
    assert_eq!(v.audit().size(), 2);
    // An unchanged batch queues no entry and stores nothing.
    let same = v.audit_writes(batch(1, "An"), &op(), NOW).unwrap();
    assert_eq!(
        v.store_writes(same).unwrap(),
        vec![WriteOutcome::Unchanged(1)]
    );
    assert_eq!(v.audit().size(), 2);
    // The log cannot make the entries durable: the batch is not stored.
    faults.set_sync(true);
    let failed = v.audit_writes(batch(3, "Cúc"), &op(), NOW);
    let err = failed.and_then(|a| v.store_writes(a)).unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable));
    assert!(matches!(
        v.read_record_unaudited(&id(3)),
        Err(VaultError::CitizenNotFound)
    ));
    faults.set_sync(false);
    v.audit().verify_all().unwrap();
}

#[test]
fn a_completed_rotation_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let root = InMemoryRootKey::new([1; 32]);
    let v = new_vault(dir.path(), 1);
    v.write_records(&[write(id(1), json!({"full_name": "An"}))], &op(), NOW)
        .unwrap();
    v.rotate_keys(&root, 10, &op(), NOW, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    let e = entries(&v);
    assert_eq!(e.last().unwrap()["event"], json!("key.rotated"));
    assert_eq!(e.last().unwrap()["code"], json!("kek_v2"));
}

#[test]
fn concurrent_writers_to_one_citizen_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let v = Arc::new(new_vault(dir.path(), 1));
    v.write_records(&[write(id(1), json!({"full_name": "An"}))], &op(), NOW)
        .unwrap();
    let handles: Vec<_> = ["phone", "email"]
        .into_iter()
        .map(|field| {
            let v = Arc::clone(&v);
            std::thread::spawn(move || {
                for i in 0..25 {
                    let value = if field == "phone" {
                        format!("09031234{i:02}")
                    } else {
                        format!("an{i}@example.vn")
                    };
                    let mut m = serde_json::Map::new();
                    m.insert(field.into(), json!(value));
                    let w = v.validate_write(id(1), m).unwrap();
                    v.write_records(&[w], &op(), NOW).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let r = v.read_record_unaudited(&id(1)).unwrap();
    assert_eq!(r.fields["phone"], json!("0903123424"));
    assert_eq!(r.fields["email"], json!("an24@example.vn"));
    assert_eq!(r.version, 51, "one version per change, none lost");
}

#[test]
fn token_keys_rotate_with_old_tokens_verifying_until_retired() {
    use crate::token::{GrantClaims, UnverifiedToken};
    let dir = tempfile::tempdir().unwrap();
    let root = InMemoryRootKey::new([1; 32]);
    let v = new_vault(dir.path(), 1);
    let claims = GrantClaims {
        agency: "a".into(),
        official: "o".into(),
        iat: NOW.as_secs(),
        nbf: NOW.as_secs(),
        exp: NOW.as_secs() + 60,
        jti: "j".into(),
        grant_id: "g".into(),
        cert_thumbprint: "t".into(),
        identifier: "i".into(),
        datatypes: vec![],
        purpose: "p".into(),
        legal_basis: "l".into(),
        dossier_id: "d".into(),
    };
    let old = v.token_keys().sign(&claims).unwrap();
    let verifies = |v: &Vault<SledStore>, t: &str| {
        UnverifiedToken::parse(t)
            .unwrap()
            .verify(&v.token_keys(), "t", NOW)
            .is_ok()
    };
    assert_eq!(v.rotate_token_key(&root, &op(), NOW).unwrap(), 2);
    let new = v.token_keys().sign(&claims).unwrap();
    assert_ne!(old, new);
    assert!(verifies(&v, &old) && verifies(&v, &new));
    assert_eq!(v.retire_old_token_keys(&root, &op(), NOW).unwrap(), 1);
    assert!(!verifies(&v, &old) && verifies(&v, &new));
    let e = entries(&v);
    let codes: Vec<_> = e
        .iter()
        .rev()
        .take(2)
        .map(|x| x["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes, vec!["token_retired_v2", "token_v2"]);
}

#[test]
fn a_rotation_beside_concurrent_writers_leaves_every_record_readable_under_the_new_kek() {
    let dir = tempfile::tempdir().unwrap();
    let root = InMemoryRootKey::new([5; 32]);
    let v = Arc::new(new_vault(dir.path(), 5));
    let writes: Vec<_> = (0..3000)
        .map(|n| write(id(n), json!({"annual_income": n})))
        .collect();
    v.write_records(&writes, &op(), NOW).unwrap();
    // Writers create and update records while the rotation runs, in batches of 50 rows.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let (v, stop) = (Arc::clone(&v), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch: Vec<_> = (0..50)
                        .map(|k| {
                            let n = (round * 97 + k * 31 + t) % 6000;
                            write(id(n), json!({"annual_income": n + 1_000_000 * t}))
                        })
                        .collect();
                    v.write_records(&batch, &op(), NOW).unwrap();
                    round += 1;
                }
                round
            })
        })
        .collect();
    let report = v
        .rotate_keys(&root, 100, &op(), NOW, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(report.completed && rounds > 0);
    v.flush().unwrap();
    // The old KEK is retired: a record still wrapped under it would now be lost.
    for (_, rec) in v.store.citizens_after(None, 100_000).unwrap() {
        assert_eq!(
            crypto::wrapped_dek_kek_version(&rec.wrapped_dek).unwrap(),
            2
        );
    }
    for n in 0..3000 {
        let got = &v.read_record_unaudited(&id(n)).unwrap().fields["annual_income"];
        let n_plus = |t: u64| json!(n + 1_000_000 * t);
        assert!(
            got == &json!(n) || got == &n_plus(0) || got == &n_plus(1),
            "{n}: {got}"
        );
    }
}

#[test]
fn a_policy_reload_is_recorded_in_every_later_entry() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path(), 5);
    let before = v.policy().sha256();
    v.write_records(&[write(id(1), json!({"full_name": "A"}))], &op(), NOW)
        .unwrap();
    // The same files with one purpose's lifetime changed: another set, another hash.
    let copy = dir.path().join("policies");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    copy_tree(&src, &copy);
    let purpose = copy.join("purposes/driver_licence_renewal.toml");
    let text = std::fs::read_to_string(&purpose).unwrap();
    let changed = text.replacen("max_ttl_seconds = ", "max_ttl_seconds = 1", 1);
    assert_ne!(text, changed);
    std::fs::write(&purpose, changed).unwrap();
    let next = Arc::new(PolicySet::load_dir(&copy).unwrap());
    assert_ne!(next.sha256(), before);
    v.set_policy(Arc::clone(&next));
    v.write_records(&[write(id(2), json!({"full_name": "B"}))], &op(), NOW)
        .unwrap();
    let size = v.audit().size();
    let last: Value = serde_json::from_slice(&v.audit().entry(size - 1).unwrap()).unwrap();
    assert_eq!(last["policy"], hex::encode(next.sha256()));
    let earlier: Value = serde_json::from_slice(&v.audit().entry(size - 2).unwrap()).unwrap();
    assert_eq!(earlier["policy"], hex::encode(before));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}
