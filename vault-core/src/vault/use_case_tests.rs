//! Tests of the use cases (grants, consent, release, revocation, retention) through the
//! `Vault` façade, against a real sled store and audit log in a temporary directory.

use crate::store::{ConsentStore, GrantStore, MetaStore};
use serde_json::{Value, json};

use super::*;
use crate::audit::file::Faults;
use crate::audit::{Actor, SafeId};
use crate::audit::{AuditQuery, Event, SegmentLogAt};
use crate::grant::{self, Grant, GrantStatus};
use crate::keyring::{DEFAULT_LOG_ORIGIN, InMemoryRootKey};
use crate::policy;
use crate::policy::PolicySet;
use crate::store::SledStore;
use crate::token::{UnverifiedToken, cert_thumbprint};
use crate::vault::RecordWrite;
use std::path::Path;
use std::sync::Arc;

pub(super) const NOW: Timestamp = Timestamp::from_millis(1_795_395_723_456);
pub(super) const A: &str = "079090001111"; // lives in Phường Sài Gòn
pub(super) const B: &str = "079190002222"; // lives in Phường An Khánh

pub(super) fn vault(dir: &Path, faults: Option<Arc<Faults>>) -> Vault<SledStore> {
    vault_with(
        dir,
        faults,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
    )
}

/// `vault` over another policy directory.
pub(super) fn vault_with(
    dir: &Path,
    faults: Option<Arc<Faults>>,
    policies: &Path,
) -> Vault<SledStore> {
    let policy = Arc::new(PolicySet::load_dir(policies).unwrap());
    let store = SledStore::open(&dir.join("store")).unwrap();
    let root = InMemoryRootKey::new([1; 32]);
    let v = match faults {
        Some(f) => Vault::init(
            store,
            &root,
            policy,
            DEFAULT_LOG_ORIGIN,
            &crate::audit::FaultyLogAt(dir.join("audit"), f),
        )
        .unwrap(),
        None => Vault::init(
            store,
            &root,
            policy,
            DEFAULT_LOG_ORIGIN,
            &SegmentLogAt(dir.join("audit")),
        )
        .unwrap(),
    };
    let op = Actor::operator(SafeId::parse("vaultctl").unwrap());
    let rows = [
        (
            A,
            json!({"full_name": "Nguyễn Văn An", "date_of_birth": "1990-05-01", "phone": "0903123456",
                    "permanent_address": "12 Lê Lợi, Phường Sài Gòn",
                    "residence_ward": "phuong-sai-gon", "health_notes": "Dị ứng penicillin", "blood_type": "O+",
                    "land_use_certificate_number": "CS123456", "driver_licence_number": "790123456789"}),
        ),
        (
            B,
            json!({"full_name": "Trần Thị Bình", "date_of_birth": "2021-01-01", 
                    "residence_ward": "phuong-an-khanh", "phone": "0988000111"}),
        ),
    ];
    let writes: Vec<RecordWrite> = rows
        .into_iter()
        .map(|(id, f)| {
            v.validate_write(
                CitizenId::parse(id).unwrap(),
                f.as_object().unwrap().clone(),
            )
            .unwrap()
        })
        .collect();
    v.write_records(&writes, &op, NOW).unwrap();
    v
}

pub(super) fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::parse(k).unwrap()
}

pub(super) fn caller(agency: &str) -> AgencyCaller {
    AgencyCaller {
        agency: agency.into(),
        cert_thumbprint: cert_thumbprint(agency.as_bytes()),
    }
}

pub(super) fn req(citizen: &str, purpose: &str, fields: &[&str]) -> GrantRequest {
    GrantRequest {
        citizen_id: citizen.into(),
        purpose: purpose.into(),
        dossier_id: "HS-2026-000123".into(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        official_id: "can-bo-01".into(),
        official_unit: Some("mot-cua".into()),
        ttl_seconds: None,
    }
}

pub(super) fn active(o: GrantOutcome) -> (Grant, String) {
    match o {
        GrantOutcome::Active { grant, token } => (grant, token),
        GrantOutcome::Pending { .. } | GrantOutcome::Replayed { .. } => {
            panic!("expected an active grant")
        }
    }
}

pub(super) fn ask(
    v: &Vault<SledStore>,
    agency: &str,
    citizen: &str,
    purpose: &str,
    fields: &[&str],
) -> GrantOutcome {
    v.request_grant(&caller(agency), &req(citizen, purpose, fields), None, NOW)
        .unwrap()
}

pub(super) fn pending(o: GrantOutcome) -> Grant {
    match o {
        GrantOutcome::Pending { grant } => grant,
        GrantOutcome::Active { .. } | GrantOutcome::Replayed { .. } => {
            panic!("expected a grant waiting for consent")
        }
    }
}

fn strings(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| (*s).to_owned()).collect()
}

pub(super) fn release(
    v: &Vault<SledStore>,
    agency: &str,
    token: &str,
    citizen: &str,
    f: &[&str],
) -> Result<Released, VaultError> {
    v.release_with_token(
        token,
        &cert_thumbprint(agency.as_bytes()),
        citizen,
        &strings(f),
        NOW,
    )
}

pub(super) fn events(v: &Vault<SledStore>) -> Vec<Value> {
    (0..v.audit().size())
        .map(|i| serde_json::from_slice(&v.audit().entry(i).unwrap()).unwrap())
        .collect()
}

#[test]
fn a_grant_releases_exactly_its_fields_with_masks_and_derived_answers() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (g, token) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name", "phone", "land_use_certificate_number"],
    ));
    assert_eq!(g.status, GrantStatus::Active);
    assert!(grant::is_code_shaped(&g.verification_code));
    let r = release(
        &v,
        "ubnd-phuong-sai-gon",
        &token,
        A,
        &["full_name", "phone"],
    )
    .unwrap();
    assert_eq!(r.fields["full_name"], json!("Nguyễn Văn An"));
    assert_eq!(
        r.fields["phone"],
        json!("******3456"),
        "the purpose masks the phone"
    );
    assert_eq!(r.fields.len(), 2);
    let e: Value = serde_json::from_slice(&v.audit().entry(r.audit.index).unwrap()).unwrap();
    assert_eq!(e["event"], json!("record.released"));
    assert_eq!(e["fields"], json!(["full_name", "phone"]));
    assert_eq!(e["actor"]["id"], json!("can-bo-01"));
    // Derived answers instead of the birth date and the ward.
    let (_, t) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "grade1_school_admission",
        &["full_name", "age_at_least", "resides_in"],
    ));
    let r = release(
        &v,
        "ubnd-phuong-sai-gon",
        &t,
        A,
        &["age_at_least", "resides_in"],
    )
    .unwrap();
    assert_eq!(r.fields["age_at_least"], json!(true));
    assert_eq!(r.fields["resides_in"], json!(true));
    assert!(!r.fields.contains_key("date_of_birth"));
}

#[test]
fn object_level_checks_refuse_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (g, token) = active(ask(
        &v,
        "vp-dang-ky-dat-dai",
        A,
        "land_use_certificate",
        &["full_name"],
    ));
    let before = v.audit().size();
    assert!(matches!(
        release(&v, "vp-dang-ky-dat-dai", &token, B, &["full_name"]),
        Err(VaultError::TokenNotForCitizen)
    ));
    assert!(matches!(
        release(&v, "vp-dang-ky-dat-dai", &token, A, &["spouse_name"]),
        Err(VaultError::TokenNotForField)
    ));
    assert!(matches!(
        release(&v, "so-noi-vu", &token, A, &["full_name"]),
        Err(VaultError::Token(crate::token::TokenRejection::Binding))
    ));
    let denied: Vec<Value> = events(&v)[before as usize..].to_vec();
    assert_eq!(denied.len(), 3);
    assert!(denied.iter().all(|e| e["event"] == json!("record.denied")));
    assert_eq!(denied[0]["code"], json!("token_not_for_citizen"));
    assert_eq!(denied[1]["code"], json!("token_not_for_field"));
    assert_eq!(denied[2]["code"], json!("token_binding_mismatch"));
    v.revoke_grant(&caller("vp-dang-ky-dat-dai"), &g.id, NOW)
        .unwrap();
    assert!(matches!(
        release(&v, "vp-dang-ky-dat-dai", &token, A, &["full_name"]),
        Err(VaultError::GrantRevoked)
    ));
    let garbage = "eyJhbGciOiJub25lIn0.e30.";
    assert!(matches!(
        release(&v, "vp-dang-ky-dat-dai", garbage, A, &["full_name"]),
        Err(VaultError::Token(_))
    ));
    assert_eq!(events(&v).last().unwrap()["code"], json!("token_invalid"));
}

#[test]
fn exactly_one_of_a_hundred_racers_wins_the_last_use() {
    let dir = tempfile::tempdir().unwrap();
    let v = Arc::new(vault(dir.path(), None));
    // Spend every use but one, then race for the last.
    let mut r = req(A, "land_use_certificate", &["full_name"]);
    r.ttl_seconds = Some(600);
    let (g, token) = active(
        v.request_grant(&caller("vp-dang-ky-dat-dai"), &r, None, NOW)
            .unwrap(),
    );
    for _ in 0..g.max_uses - 1 {
        release(&v, "vp-dang-ky-dat-dai", &token, A, &["full_name"]).unwrap();
    }
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (v, token) = (Arc::clone(&v), token.clone());
            std::thread::spawn(move || {
                release(&v, "vp-dang-ky-dat-dai", &token, A, &["full_name"]).is_ok()
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(wins, 1);
    assert!(matches!(
        release(&v, "vp-dang-ky-dat-dai", &token, A, &["full_name"]),
        Err(VaultError::GrantExhausted)
    ));
}

fn reopen(dir: &Path) -> Vault<SledStore> {
    let policy = Arc::new(
        PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")).unwrap(),
    );
    Vault::open(
        SledStore::open(&dir.join("store")).unwrap(),
        &InMemoryRootKey::new([1; 32]),
        policy,
        &SegmentLogAt(dir.join("audit")),
    )
    .unwrap()
}

/// Puts a closed vault's grant back as a crash would have left it had the store lost
/// every use spent after the audit log reached `mark` entries.
fn lose_uses_since(dir: &Path, grant_id: &str, uses: u32, mark: u64) {
    let store = SledStore::open(&dir.join("store")).unwrap();
    store
        .update_grant(grant_id, true, &mut |g| {
            g.uses = uses;
            g.status = GrantStatus::Active;
            g.ended = None;
            Ok(())
        })
        .unwrap();
    store.set_released_through(mark).unwrap();
    store.flush().unwrap();
}

#[test]
fn uses_the_store_lost_in_a_crash_are_counted_again_from_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let agency = "vp-dang-ky-dat-dai";
    let (gid, token, mark) = {
        let v = vault(dir.path(), None);
        let mut r = req(A, "land_use_certificate", &["full_name"]);
        r.ttl_seconds = Some(600);
        let (g, token) = active(v.request_grant(&caller(agency), &r, None, NOW).unwrap());
        assert_eq!(g.max_uses, 5);
        release(&v, agency, &token, A, &["full_name"]).unwrap();
        let mark = v.audit().size();
        // Three more releases, and entries of other kinds between them.
        for _ in 0..3 {
            release(&v, agency, &token, A, &["full_name"]).unwrap();
            assert!(release(&v, agency, &token, B, &["full_name"]).is_err());
        }
        (g.id, token, mark)
    };
    // The vault flushed everything as it closed; undo that the way a crash would.
    lose_uses_since(dir.path(), &gid, 1, mark);
    let v = reopen(dir.path());
    let g = v.store.grant(&gid).unwrap().unwrap();
    assert_eq!(
        g.uses, 4,
        "one use in the store, three replayed from the log"
    );
    assert_eq!(g.status, GrantStatus::Active);
    assert_eq!(v.store.released_through().unwrap(), Some(v.audit().size()));
    assert!(v.audit().size() > mark);
    // The replay is durable and not repeated: a clean reopen counts nothing again.
    drop(v);
    let v = reopen(dir.path());
    assert_eq!(v.store.grant(&gid).unwrap().unwrap().uses, 4);
    // One use is left; the grant then ends exhausted.
    release(&v, agency, &token, A, &["full_name"]).unwrap();
    assert!(matches!(
        release(&v, agency, &token, A, &["full_name"]),
        Err(VaultError::GrantExhausted)
    ));
    // Lose the last use too: the replay exhausts the grant again, at the release's time.
    let mark = v.audit().size() - 2;
    drop(v);
    lose_uses_since(dir.path(), &gid, 4, mark);
    let v = reopen(dir.path());
    let g = v.store.grant(&gid).unwrap().unwrap();
    assert_eq!((g.uses, g.status), (5, GrantStatus::Exhausted));
    assert_eq!(g.ended, Some(NOW));
    assert!(matches!(
        release(&v, agency, &token, A, &["full_name"]),
        Err(VaultError::GrantExhausted)
    ));
}

#[test]
fn a_replay_never_counts_past_max_uses_and_skips_swept_grants() {
    let dir = tempfile::tempdir().unwrap();
    let agency = "vp-dang-ky-dat-dai";
    let gid = {
        let v = vault(dir.path(), None);
        let (g, token) = active(ask(&v, agency, A, "land_use_certificate", &["full_name"]));
        for _ in 0..5 {
            release(&v, agency, &token, A, &["full_name"]).unwrap();
        }
        g.id
    };
    // A mark from before the grant: all five releases are replayed over a store that
    // already counts them.
    lose_uses_since(dir.path(), &gid, 5, 0);
    let v = reopen(dir.path());
    let g = v.store.grant(&gid).unwrap().unwrap();
    assert_eq!(g.uses, 5);
    assert_eq!(sweep(&v, Timestamp::from_millis(i64::MAX / 4), 0), 1);
    drop(v);
    let store = SledStore::open(&dir.path().join("store")).unwrap();
    store.set_released_through(0).unwrap();
    store.flush().unwrap();
    drop(store);
    let v = reopen(dir.path());
    assert!(v.store.grant(&gid).unwrap().is_none());
    assert_eq!(v.store.released_through().unwrap(), Some(v.audit().size()));
}

/// A construction-permit token for citizen A, used once.
fn released_once(v: &Vault<SledStore>) -> String {
    let (_, token) = active(ask(
        v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name"],
    ));
    release(v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).unwrap();
    token
}

#[test]
fn flushing_the_vault_moves_the_spent_use_mark_to_the_end_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    released_once(&v);
    v.flush().unwrap();
    assert_eq!(v.store.released_through().unwrap(), Some(v.audit().size()));
}

#[test]
fn a_failing_store_flush_stops_releases() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let token = released_once(&v);
    // Let the background flush of that release finish, then fail the flusher by hand
    // (the store itself has no fault injection).
    while v.flusher.flushes() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    v.flusher.fail_for_test();
    assert!(!v.store_flush_ok(), "readiness reports it");
    let before = v.audit().size();
    assert!(matches!(
        release(&v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]),
        Err(VaultError::StoreUnavailable(_))
    ));
    assert_eq!(v.audit().size(), before, "nothing released, nothing spent");
    v.flusher.flush_now().unwrap();
    assert!(v.store_flush_ok());
    release(&v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).unwrap();
}

pub(super) fn approve(
    v: &Vault<SledStore>,
    c: &CitizenId,
    id: &str,
    days: Option<u32>,
    now: Timestamp,
) -> Result<Decided, VaultError> {
    v.decide_grant(
        c,
        id,
        ConsentDecision::Approve {
            remember_days: days,
        },
        now,
    )
}

fn refuse(
    v: &Vault<SledStore>,
    c: &CitizenId,
    id: &str,
    now: Timestamp,
) -> Result<Grant, VaultError> {
    v.decide_grant(c, id, ConsentDecision::Refuse, now)
        .map(|d| d.grant)
}

#[test]
fn consent_is_specific_to_the_grant_it_approves() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let police = caller("csgt-cong-an-tphcm");
    let a = CitizenId::parse(A).unwrap();
    // Health data needs consent: pending, no token.
    let g = pending(ask(
        &v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &["full_name", "health_notes"],
    ));
    assert_eq!(v.grant_status(&police, &g.id, NOW).unwrap().1, None);
    // Approved: the token is handed over once; no standing consent was asked for.
    let d = approve(&v, &a, &g.id, None, NOW).unwrap();
    assert!(d.standing.is_none());
    assert!(v.my_consents(&a, NOW).unwrap().is_empty());
    let (st, token) = v.grant_status(&police, &g.id, NOW).unwrap();
    assert_eq!(st.status, GrantStatus::Active);
    let token = token.expect("token once");
    assert_eq!(
        v.grant_status(&police, &g.id, NOW).unwrap().1,
        None,
        "only once"
    );
    let r = release(&v, "csgt-cong-an-tphcm", &token, A, &["health_notes"]).unwrap();
    assert_eq!(r.fields["health_notes"], json!("Dị ứng penicillin"));
    // The same request again asks the citizen again.
    let g2 = pending(ask(
        &v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &["health_notes"],
    ));
    // Refused: never a token, and the refusal refuses that grant alone.
    refuse(&v, &a, &g2.id, NOW).unwrap();
    let (st, token) = v.grant_status(&police, &g2.id, NOW).unwrap();
    assert_eq!((st.status, token), (GrantStatus::Refused, None));
    assert!(matches!(
        approve(&v, &a, &g2.id, None, NOW),
        Err(VaultError::GrantNotPending)
    ));
    pending(ask(
        &v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &["health_notes"],
    ));
    // Another citizen cannot approve someone else's grant: refused and audited.
    let b = CitizenId::parse(B).unwrap();
    assert!(matches!(
        approve(&v, &b, &g.id, None, NOW),
        Err(VaultError::GrantNotFound)
    ));
    let ev = events(&v);
    let approved = ev.iter().find(|e| e["event"] == "grant.approved").unwrap();
    assert_eq!(approved["fields"], json!(["full_name", "health_notes"]));
    assert_eq!(approved["dossier_id"], json!("HS-2026-000123"));
    assert!(approved["expires_at"].is_string(), "{approved}");
    assert!(approved.get("consent_id").is_none());
    let denied = ev.iter().rfind(|e| e["event"] == "access.denied").unwrap();
    assert_eq!(denied["code"], "grant_not_found");
    assert_eq!(denied["action"], "grant.approve");
    assert_eq!(denied["grant_id"], json!(g.id));
    for expected in ["grant.pending", "grant.approved", "grant.refused"] {
        assert!(ev.iter().any(|e| e["event"] == expected), "{expected}");
    }
}

#[test]
fn a_standing_consent_covers_its_fields_until_it_expires_or_is_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let police = caller("csgt-cong-an-tphcm");
    let a = CitizenId::parse(A).unwrap();
    let fields = ["full_name", "health_notes"];
    let g = pending(ask(
        &v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &fields,
    ));
    assert!(matches!(
        approve(&v, &a, &g.id, Some(0), NOW),
        Err(VaultError::Denied(policy::Denial::InvalidRequest))
    ));
    let d = approve(&v, &a, &g.id, Some(30), NOW).unwrap();
    let c = d.standing.unwrap();
    assert_eq!(c.fields, vec!["full_name", "health_notes"]);
    assert_eq!(v.my_consents(&a, NOW).unwrap(), vec![c.clone()]);
    let approved = events(&v)
        .into_iter()
        .rfind(|e| e["event"] == "grant.approved")
        .unwrap();
    assert_eq!(approved["consent_id"], json!(c.id));
    assert!(approved["consent_expires_at"].is_string());
    let (_, first) = v.grant_status(&police, &g.id, NOW).unwrap();
    let first = first.unwrap();
    // A later request for a subset of those fields, on another dossier: active at once,
    // resting on the consent (named in its entry).
    let mut other = req(A, "driver_licence_renewal", &["health_notes"]);
    other.dossier_id = "HS-2026-000999".into();
    let (g2, token) = active(v.request_grant(&police, &other, None, NOW).unwrap());
    assert_eq!(g2.consent_id.as_deref(), Some(c.id.as_str()));
    let issued = events(&v)
        .into_iter()
        .rfind(|e| e["event"] == "grant.issued")
        .unwrap();
    assert_eq!(issued["consent_id"], json!(c.id));
    // One field more than it names: the citizen is asked again.
    pending(ask(
        &v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &["full_name", "health_notes", "date_of_birth"],
    ));
    // Another citizen cannot withdraw it (refused, audited).
    let b = CitizenId::parse(B).unwrap();
    assert!(matches!(
        v.withdraw_consent(&b, &c.id, NOW),
        Err(VaultError::ConsentNotFound)
    ));
    // Withdrawn: both grants resting on it stop at once.
    assert_eq!(v.withdraw_consent(&a, &c.id, NOW).unwrap(), 2);
    for t in [&token, &first] {
        assert!(matches!(
            release(&v, "csgt-cong-an-tphcm", t, A, &["health_notes"]),
            Err(VaultError::GrantRevoked)
        ));
    }
    assert!(v.my_consents(&a, NOW).unwrap().is_empty());
    let withdrawn = events(&v)
        .into_iter()
        .rfind(|e| e["event"] == "consent.withdrawn")
        .unwrap();
    assert_eq!(withdrawn["consent_id"], json!(c.id));
    assert_eq!(withdrawn["fields"], json!(["full_name", "health_notes"]));
    pending(ask(
        &v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &["health_notes"],
    ));
    // A consent past its end covers nothing.
    let g3 = pending(ask(
        &v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &fields,
    ));
    approve(&v, &a, &g3.id, Some(1), NOW).unwrap();
    let later = NOW.plus_secs(86_400 + 1);
    assert!(v.my_consents(&a, later).unwrap().is_empty());
    let o = v
        .request_grant(
            &police,
            &req(A, "driver_licence_renewal", &fields),
            None,
            later,
        )
        .unwrap();
    assert!(matches!(o, GrantOutcome::Pending { .. }));
}

/// A pending health-data grant for citizen A (driver-licence renewal), which needs consent.
fn pending_health_grant(v: &Vault<SledStore>) -> Grant {
    pending(ask(
        v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &["health_notes"],
    ))
}

#[test]
fn erasure_ends_the_citizens_grants_and_standing_consents() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let a = CitizenId::parse(A).unwrap();
    let g = pending_health_grant(&v);
    approve(&v, &a, &g.id, Some(30), NOW).unwrap();
    assert_eq!(v.my_consents(&a, NOW).unwrap().len(), 1);
    v.erase(
        &a,
        &Actor::operator(SafeId::parse("vaultctl").unwrap()),
        NOW,
    )
    .unwrap();
    assert!(v.my_consents(&a, NOW).unwrap().is_empty());
    assert_eq!(
        v.store.grant(&g.id).unwrap().unwrap().status,
        GrantStatus::Revoked,
        "the citizen's live grants end with the erasure"
    );
}

#[test]
fn break_glass_is_granted_at_once_flagged_and_visible_to_the_citizen() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (g, token) = active(ask(
        &v,
        "benh-vien-cho-ray",
        A,
        "emergency_care",
        &["blood_type", "health_notes"],
    ));
    assert!(g.break_glass);
    release(&v, "benh-vien-cho-ray", &token, A, &["blood_type"]).unwrap();
    let subject = v
        .citizen_pseudonym(&CitizenId::parse(A).unwrap())
        .unwrap()
        .unwrap();
    let q = AuditQuery {
        subject: Some(subject),
        ..Default::default()
    };
    let page = v.audit().query(&q, None, 50, true).unwrap();
    let mine: Vec<Value> = page
        .indexes
        .iter()
        .map(|i| serde_json::from_slice(&v.audit().entry(*i).unwrap()).unwrap())
        .collect();
    assert!(
        mine.iter()
            .any(|e| e["event"] == json!("grant.issued") && e["break_glass"] == json!(true))
    );
    assert!(
        mine.iter()
            .any(|e| e["event"] == json!("record.released") && e["break_glass"] == json!(true))
    );
    let q = AuditQuery {
        event: Some(Event::GrantIssued),
        ..Default::default()
    };
    let issued = v.audit().query(&q, None, 50, false).unwrap();
    assert!(
        issued.indexes.iter().any(|i| {
            let e: Value = serde_json::from_slice(&v.audit().entry(*i).unwrap()).unwrap();
            e["break_glass"] == json!(true) && e["grant_id"] == json!(g.id)
        }),
        "reviewable by auditors through the log"
    );
    // The review queue.
    let auditor = SafeId::parse("kiem-toan-1").unwrap();
    let queue = v.break_glass_queue(true).unwrap();
    assert_eq!(
        queue.iter().map(|q| q.id.clone()).collect::<Vec<_>>(),
        vec![g.id.clone()]
    );
    v.review_break_glass(&auditor, &g.id, true, NOW).unwrap();
    assert!(v.break_glass_queue(true).unwrap().is_empty());
    assert_eq!(
        v.break_glass_queue(false).unwrap()[0].review.as_deref(),
        Some("justified")
    );
    assert!(matches!(
        v.review_break_glass(&auditor, &g.id, false, NOW),
        Err(VaultError::GrantNotPending)
    ));
    assert_eq!(
        events(&v).pop().unwrap()["event"],
        json!("breakglass.reviewed")
    );
}

#[test]
fn rejected_tokens_are_audited_as_denials_with_their_code() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (_, token) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name"],
    ));
    let mut flipped = token.clone().into_bytes();
    let n = flipped.len() - 3;
    flipped[n] = if flipped[n] == b'A' { b'B' } else { b'A' };
    let cases = [
        (
            String::from_utf8(flipped).unwrap(),
            "ubnd-phuong-sai-gon",
            NOW,
            "token_invalid",
        ),
        (token.clone(), "so-noi-vu", NOW, "token_binding_mismatch"),
        (
            token.clone(),
            "ubnd-phuong-sai-gon",
            NOW.plus_secs(7200),
            "token_expired",
        ),
        (
            "x".repeat(9000),
            "ubnd-phuong-sai-gon",
            NOW,
            "token_invalid",
        ),
    ];
    for (t, agency, at, code) in cases {
        let before = v.audit().size();
        let err = v
            .release_with_token(
                &t,
                &cert_thumbprint(agency.as_bytes()),
                A,
                &strings(&["full_name"]),
                at,
            )
            .unwrap_err();
        assert_eq!(err.code(), code);
        let e = events(&v);
        assert_eq!(e.len() as u64, before + 1);
        assert_eq!(
            (
                e[before as usize]["event"].as_str(),
                e[before as usize]["code"].as_str()
            ),
            (Some("record.denied"), Some(code))
        );
    }
}

#[test]
fn denials_are_audited_and_outside_jurisdiction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let r = v.request_grant(
        &caller("ubnd-phuong-sai-gon"),
        &req(B, "birth_registration", &["full_name"]),
        None,
        NOW,
    );
    assert!(matches!(
        r,
        Err(VaultError::Denied(policy::Denial::OutsideJurisdiction))
    ));
    let last = events(&v).pop().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["code"].as_str()),
        (Some("grant.denied"), Some("outside_jurisdiction"))
    );
    let text: String = events(&v).iter().map(Value::to_string).collect();
    for secret in [A, B, "Nguyễn Văn An", "0903123456", "Dị ứng penicillin"] {
        assert!(!text.contains(secret));
    }
}

fn replayed(o: GrantOutcome) -> (Grant, Option<String>) {
    match o {
        GrantOutcome::Replayed { grant, token } => (grant, token),
        _ => panic!("expected a replay"),
    }
}

#[test]
fn a_replay_answers_the_grant_as_it_is_now_and_never_a_token_twice() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let c = caller("ubnd-phuong-sai-gon");
    let r = req(A, "construction_permit", &["full_name"]);
    let (g1, _) = active(v.request_grant(&c, &r, Some(&key("key-1")), NOW).unwrap());
    // The token went out with the first answer: a replay names the grant, no token.
    let (g2, token) = replayed(v.request_grant(&c, &r, Some(&key("key-1")), NOW).unwrap());
    assert_eq!((g2.id.as_str(), token), (g1.id.as_str(), None));
    // After a revocation the replay says so, and nothing is appended.
    v.revoke_grant(&c, &g1.id, NOW).unwrap();
    let size = v.audit().size();
    let (g3, _) = replayed(v.request_grant(&c, &r, Some(&key("key-1")), NOW).unwrap());
    assert_eq!(g3.status_at(NOW), GrantStatus::Revoked);
    assert_eq!(v.audit().size(), size);
    let other = req(A, "construction_permit", &["permanent_address"]);
    assert!(matches!(
        v.request_grant(&c, &other, Some(&key("key-1")), NOW),
        Err(VaultError::IdempotencyConflict)
    ));
    // A pending grant approved since: the replay hands its token out, once.
    let police = caller("csgt-cong-an-tphcm");
    let health = req(A, "driver_licence_renewal", &["health_notes"]);
    let p = pending(
        v.request_grant(&police, &health, Some(&key("key-2")), NOW)
            .unwrap(),
    );
    let a = CitizenId::parse(A).unwrap();
    approve(&v, &a, &p.id, None, NOW).unwrap();
    let (_, t1) = replayed(
        v.request_grant(&police, &health, Some(&key("key-2")), NOW)
            .unwrap(),
    );
    assert!(t1.is_some());
    let (_, t2) = replayed(
        v.request_grant(&police, &health, Some(&key("key-2")), NOW)
            .unwrap(),
    );
    assert_eq!(t2, None);
    assert_eq!(v.grant_status(&police, &p.id, NOW).unwrap().1, None);
    // A refused one answers the refusal.
    let p = pending(
        v.request_grant(&police, &health, Some(&key("key-3")), NOW)
            .unwrap(),
    );
    refuse(&v, &a, &p.id, NOW).unwrap();
    assert!(matches!(
        v.request_grant(&police, &health, Some(&key("key-3")), NOW),
        Err(VaultError::Denied(policy::Denial::ConsentRefused))
    ));
}

#[test]
fn the_request_hash_tells_a_field_list_from_one_field_with_a_comma() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let c = caller("ubnd-phuong-sai-gon");
    let two = req(
        A,
        "construction_permit",
        &["full_name", "permanent_address"],
    );
    active(v.request_grant(&c, &two, Some(&key("key-1")), NOW).unwrap());
    let one = req(A, "construction_permit", &["full_name,permanent_address"]);
    assert!(matches!(
        v.request_grant(&c, &one, Some(&key("key-1")), NOW),
        Err(VaultError::IdempotencyConflict)
    ));
    let denied = events(&v).into_iter().next_back().unwrap();
    assert_eq!(denied["event"], "access.denied");
    assert_eq!(denied["code"], "idempotency_conflict");
}

#[test]
fn revoking_an_ended_grant_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let c = caller("ubnd-phuong-sai-gon");
    let (g, token) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name"],
    ));
    let max = g.max_uses;
    for _ in 0..max {
        release(&v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).unwrap();
    }
    let size = v.audit().size();
    v.revoke_grant(&c, &g.id, NOW).unwrap();
    assert_eq!(v.audit().size(), size, "no entry for an exhausted grant");
    assert_eq!(
        v.store.grant(&g.id).unwrap().unwrap().status,
        GrantStatus::Exhausted
    );
    let (g, _) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name"],
    ));
    v.revoke_grant(&c, &g.id, NOW).unwrap();
    let size = v.audit().size();
    v.revoke_grant(&c, &g.id, NOW).unwrap();
    assert_eq!(
        v.audit().size(),
        size,
        "no second entry for a revoked grant"
    );
    // Another agency's grant: not found, and the attempt is audited.
    assert!(matches!(
        v.revoke_grant(&caller("vp-dang-ky-dat-dai"), &g.id, NOW),
        Err(VaultError::GrantNotFound)
    ));
    let denied = events(&v).into_iter().next_back().unwrap();
    assert_eq!(denied["event"], "access.denied");
    assert_eq!(denied["action"], "grant.revoke");
    assert_eq!(denied["actor"]["agency"], "vp-dang-ky-dat-dai");
    assert!(denied["subject"].is_string());
}

#[test]
fn when_the_audit_log_fails_nothing_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let v = vault(dir.path(), Some(Arc::clone(&faults)));
    let (_, token) = active(ask(
        &v,
        "vp-dang-ky-dat-dai",
        A,
        "land_use_certificate",
        &["full_name"],
    ));
    faults.set_sync(true);
    let r = release(&v, "vp-dang-ky-dat-dai", &token, A, &["full_name"]);
    assert!(matches!(r, Err(VaultError::AuditUnavailable)), "{r:?}");
    faults.set_sync(false);
    let ok = release(&v, "vp-dang-ky-dat-dai", &token, A, &["full_name"]).unwrap();
    assert_eq!(ok.fields["full_name"], json!("Nguyễn Văn An"));
    v.audit().verify_all().unwrap();
}

#[test]
fn a_split_release_opens_only_with_its_own_tickets_durable_answer() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let agency = "vp-dang-ky-dat-dai";
    let thumb = cert_thumbprint(agency.as_bytes());
    let token = |citizen: &str| {
        active(ask(
            &v,
            agency,
            citizen,
            "land_use_certificate",
            &["full_name"],
        ))
        .1
    };
    let begin = |t: &str, c: &str| {
        v.begin_release(t, &thumb, c, &strings(&["full_name"]), NOW)
            .unwrap()
            .into_parts()
    };
    let (ta, tb) = (token(A), token(A));
    let (ticket_a, after_a) = begin(&ta, A);
    let (ticket_b, after_b) = begin(&tb, A);
    // Another release's durable answer does not open this one, nor does a failure.
    let (da, db) = (ticket_a.wait(), ticket_b.wait());
    assert!(da.is_ok() && db.is_ok(), "both entries are durable");
    let swapped = v.finish_release(after_a, db);
    assert!(
        matches!(swapped, Err(VaultError::AuditUnavailable)),
        "{swapped:?}"
    );
    let failed = v.finish_release(after_b, Err(VaultError::AuditUnavailable));
    assert!(
        matches!(failed, Err(VaultError::AuditUnavailable)),
        "{failed:?}"
    );
    drop(da);
    // Awaited as a future, the answer opens exactly what was granted.
    let (ticket, after) = begin(&token(A), A);
    let durable = block_on(ticket);
    let r = v.finish_release(after, durable).unwrap();
    assert_eq!(r.fields["full_name"], json!("Nguyễn Văn An"));
    assert_eq!(r.audit.index + 1, v.audit().size());
    // A refusal completes after its denial is durable, with the refusal's code.
    let (ticket, after) = begin("not.a.token", A);
    let refused = v.finish_release(after, block_on(ticket));
    assert_eq!(refused.unwrap_err().code(), "token_invalid");
    assert_eq!(events(&v).last().unwrap()["event"], json!("record.denied"));
}

#[test]
fn a_split_grant_is_stored_only_with_its_own_tickets_durable_answer() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let agency = "vp-dang-ky-dat-dai";
    let begin = |citizen: &str| {
        v.begin_grant(
            &caller(agency),
            &req(citizen, "land_use_certificate", &["full_name"]),
            None,
            NOW,
        )
        .unwrap()
        .into_parts()
    };
    let stored = || {
        let blind = v.blind(&CitizenId::parse(A).unwrap());
        v.store.grants_of_citizen(&blind).unwrap().len()
    };
    let (ticket_a, after_a) = begin(A);
    let (ticket_b, after_b) = begin(A);
    let (da, db) = (ticket_a.wait(), ticket_b.wait());
    assert!(da.is_ok() && db.is_ok(), "both entries are durable");
    assert_eq!(
        events(&v).last().unwrap()["event"],
        json!("grant.issued"),
        "the entry is written before anything is stored"
    );
    assert_eq!(stored(), 0, "nothing is stored before finish_grant");
    // Another request's durable answer stores nothing, nor does a failure.
    let swapped = v.finish_grant(after_a, db);
    assert!(
        matches!(swapped, Err(VaultError::AuditUnavailable)),
        "{swapped:?}"
    );
    let failed = v.finish_grant(after_b, Err(VaultError::AuditUnavailable));
    assert!(
        matches!(failed, Err(VaultError::AuditUnavailable)),
        "{failed:?}"
    );
    assert_eq!(stored(), 0);
    drop(da);
    // Awaited as a future, its own answer stores the grant and signs a working token.
    let (ticket, after) = begin(A);
    let (g, token) = active(v.finish_grant(after, block_on(ticket)).unwrap());
    assert_eq!(stored(), 1);
    let r = release(&v, agency, &token, A, &["full_name"]).unwrap();
    assert_eq!(r.fields["full_name"], json!("Nguyễn Văn An"));
    assert_eq!(v.store.grant(&g.id).unwrap().unwrap().uses, 1);
    // A denial is answered once its entry is durable, and only then.
    let denied = || {
        v.begin_grant(
            &caller("ubnd-phuong-sai-gon"),
            &req(B, "birth_registration", &["full_name"]),
            None,
            NOW,
        )
        .unwrap()
        .into_parts()
    };
    let (ticket, after) = denied();
    let r = v.finish_grant(after, block_on(ticket));
    assert!(
        matches!(
            r,
            Err(VaultError::Denied(policy::Denial::OutsideJurisdiction))
        ),
        "{r:?}"
    );
    assert_eq!(events(&v).last().unwrap()["event"], json!("grant.denied"));
    let (ticket, after) = denied();
    drop(ticket);
    let r = v.finish_grant(after, Err(VaultError::AuditUnavailable));
    assert!(matches!(r, Err(VaultError::AuditUnavailable)), "{r:?}");
}

#[test]
fn a_vault_signed_token_that_does_not_describe_its_grant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let agency = "vp-dang-ky-dat-dai";
    let (g, _) = active(ask(&v, agency, A, "land_use_certificate", &["full_name"]));
    // Signed with the vault's own key, for this grant's id, but another dossier (or
    // another field list): the state's binding digest refuses it, and no use is spent.
    let forged = |edit: &dyn Fn(&mut Grant)| {
        let mut h = g.clone();
        edit(&mut h);
        v.token_for(&h).unwrap()
    };
    for token in [
        forged(&|h| h.dossier_id = "HS-OTHER".into()),
        forged(&|h| h.fields.push("phone".into())),
        forged(&|h| h.official = "can-bo-99".into()),
    ] {
        let r = release(&v, agency, &token, A, &["full_name"]);
        assert!(matches!(r, Err(VaultError::TokenNotForCitizen)), "{r:?}");
    }
    assert_eq!(v.store.grant(&g.id).unwrap().unwrap().uses, 0);
    let genuine = v.token_for(&g).unwrap();
    let r = release(&v, agency, &genuine, A, &["full_name"]).unwrap();
    assert_eq!(r.fields["full_name"], json!("Nguyễn Văn An"));
}

/// Drives a future to completion on this thread (parks until woken).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn an_expired_grant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (_, token) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name"],
    ));
    // Used once (and so cached), then again after expiry: the cache checks time too.
    release(&v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).unwrap();
    let later = NOW.plus_secs(3600 + 31);
    let r = v.release_with_token(
        &token,
        &cert_thumbprint(b"ubnd-phuong-sai-gon"),
        A,
        &strings(&["full_name"]),
        later,
    );
    assert!(matches!(
        r,
        Err(VaultError::Token(crate::token::TokenRejection::Expired))
    ));
    let t = UnverifiedToken::parse(&token).unwrap();
    assert!(
        t.verify(
            &v.token_keys(),
            &cert_thumbprint(b"ubnd-phuong-sai-gon"),
            NOW
        )
        .is_ok()
    );
}

#[test]
fn citizens_see_their_history_and_own_record_and_can_check_codes() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let a = CitizenId::parse(A).unwrap();
    let b = CitizenId::parse(B).unwrap();
    let (g, token) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name"],
    ));
    release(&v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).unwrap();
    // Own record, audited.
    let before = v.audit().size();
    let rec = v.my_record(&a, NOW).unwrap();
    assert_eq!(rec.fields["full_name"], json!("Nguyễn Văn An"));
    assert_eq!(
        events(&v)[before as usize]["event"],
        json!("record.self_viewed")
    );
    // History: newest first, with labels, paginated.
    let (page1, next) = v.my_accesses(&a, None, 2).unwrap();
    assert_eq!(page1[0].event, "record.self_viewed");
    assert_eq!(page1[1].event, "record.released");
    assert_eq!(
        page1[1].purpose_label.as_deref(),
        Some("Cấp giấy phép xây dựng nhà ở riêng lẻ")
    );
    assert_eq!(page1[1].official.as_deref(), Some("can-bo-01"));
    assert_eq!(page1[1].agency.as_deref(), Some("ubnd-phuong-sai-gon"));
    let (page2, _) = v.my_accesses(&a, next, 10).unwrap();
    assert_eq!(page2[0].event, "grant.issued");
    assert!(page2.iter().any(|i| i.event == "record.written"));
    assert!(
        v.my_accesses(&b, None, 50)
            .unwrap()
            .0
            .iter()
            .all(|i| i.event == "record.written"),
        "B sees only B"
    );
    // Verification codes answer only their own citizen.
    let info = v
        .verify_code(&a, &g.verification_code.to_lowercase(), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(info.status, GrantStatus::Active);
    assert_eq!(info.agency, "Ủy ban nhân dân phường Sài Gòn");
    assert_eq!(v.verify_code(&b, &g.verification_code, NOW).unwrap(), None);
    assert_eq!(v.verify_code(&a, "ZZZZZZZZ", NOW).unwrap(), None);
    assert_eq!(v.verify_code(&a, "not a code", NOW).unwrap(), None);
    assert_eq!(
        v.my_grants(&a, Some(GrantStatus::Active), NOW)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn receipts_prove_own_entries_only_and_auditor_reads_are_audited() {
    use crate::audit::merkle;
    use crate::vault::{AuditorAnswer, AuditorRead};
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let a = CitizenId::parse(A).unwrap();
    let b = CitizenId::parse(B).unwrap();
    let (_, token) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name"],
    ));
    let rel = release(&v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).unwrap();
    let r = v.my_receipt(&a, rel.audit.index, NOW).unwrap();
    assert_eq!(r.leaf_hash, merkle::leaf_hash(&r.entry));
    let cp = crate::audit::Checkpoint::verify(&r.checkpoint, &v.audit().verifier()).unwrap();
    assert_eq!(cp.size, r.tree_size);
    assert!(
        merkle::verify_inclusion(r.index, r.tree_size, &r.leaf_hash, &r.hashes, &cp.root).is_ok()
    );
    // B asking for A's entry, or anyone for a missing one: the same refusal, audited.
    let before = v.audit().size();
    assert!(matches!(
        v.my_receipt(&b, rel.audit.index, NOW),
        Err(VaultError::AuditNotFound)
    ));
    assert!(matches!(
        v.my_receipt(&a, 1_000_000, NOW),
        Err(VaultError::AuditNotFound)
    ));
    let ev = events(&v);
    assert_eq!(ev[before as usize]["event"], json!("record.denied"));
    assert_eq!(ev[before as usize]["code"], json!("audit_not_found"));
    assert_eq!(v.audit().size(), before + 2);
    // Auditor reads: each is an `audit.queried` entry first.
    let auditor = SafeId::parse("kiem-toan-01").unwrap();
    let before = v.audit().size();
    let AuditorAnswer::Entry(bytes, leaf) = v
        .auditor_read(&auditor, AuditorRead::Entry(rel.audit.index), NOW)
        .unwrap()
    else {
        unreachable!("entry read answers an entry")
    };
    assert_eq!(merkle::leaf_hash(&bytes), leaf);
    assert!(matches!(
        v.auditor_read(&auditor, AuditorRead::Checkpoint, NOW)
            .unwrap(),
        AuditorAnswer::Checkpoint(_)
    ));
    assert!(matches!(
        v.auditor_read(&auditor, AuditorRead::Consistency { from: 1, to: 3 }, NOW)
            .unwrap(),
        AuditorAnswer::Proof(_)
    ));
    assert_eq!(v.audit().size(), before + 3);
    assert_eq!(events(&v)[before as usize]["event"], json!("audit.queried"));
}

#[test]
fn auditor_queries_are_themselves_audited() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (_, token) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name"],
    ));
    release(&v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).unwrap();
    let auditor = SafeId::parse("kiem-toan-1").unwrap();
    let a = CitizenId::parse(A).unwrap();
    let q = AuditQuery {
        event: Some(Event::RecordReleased),
        ..Default::default()
    };
    let page = v
        .audit_query(&auditor, &q, Some(&a), None, 100, NOW)
        .unwrap();
    assert_eq!(page.indexes.len(), 1);
    let last = events(&v).pop().unwrap();
    assert_eq!(last["event"], json!("audit.queried"));
    assert_eq!(
        last["actor"],
        json!({"kind": "auditor", "id": "kiem-toan-1"})
    );
    assert_eq!(last["code"], json!("by_citizen"));
    assert_eq!(
        last["subject"],
        json!(v.citizen_pseudonym(&a).unwrap().unwrap().to_string())
    );
}

#[test]
fn an_unknown_citizen_gets_the_same_grant_shape_and_not_found_at_release() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let nobody = "079000009999";
    let (g, token) = active(ask(
        &v,
        "vp-dang-ky-dat-dai",
        nobody,
        "land_use_certificate",
        &["full_name"],
    ));
    assert_eq!(g.status, GrantStatus::Active);
    assert!(matches!(
        release(&v, "vp-dang-ky-dat-dai", &token, nobody, &["full_name"]),
        Err(VaultError::CitizenNotFound)
    ));
    let last = events(&v).pop().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["code"].as_str()),
        (Some("record.denied"), Some("citizen_not_found"))
    );
}

#[test]
fn identifiers_that_could_carry_personal_data_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let mut r = req(A, "construction_permit", &["full_name"]);
    r.dossier_id = format!("HS-{A}");
    assert!(matches!(
        v.request_grant(&caller("ubnd-phuong-sai-gon"), &r, None, NOW),
        Err(VaultError::InvalidIdentifier)
    ));
    let mut r = req(A, "construction_permit", &["full_name"]);
    r.official_id = "Nguyễn Văn Cán Bộ".into();
    assert!(matches!(
        v.request_grant(&caller("ubnd-phuong-sai-gon"), &r, None, NOW),
        Err(VaultError::InvalidIdentifier)
    ));
    let r = req("07909000111", "construction_permit", &["full_name"]);
    assert!(matches!(
        v.request_grant(&caller("ubnd-phuong-sai-gon"), &r, None, NOW),
        Err(VaultError::InvalidCitizenId)
    ));
}

#[test]
fn a_consent_request_expires_after_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let police = caller("csgt-cong-an-tphcm");
    let g = pending_health_grant(&v);
    let late = NOW.plus_secs(CONSENT_WINDOW_SECS + 1);
    assert_eq!(
        v.grant_status(&police, &g.id, late)
            .unwrap()
            .0
            .status_at(late),
        GrantStatus::Expired
    );
    let a = CitizenId::parse(A).unwrap();
    assert!(matches!(
        approve(&v, &a, &g.id, None, late),
        Err(VaultError::GrantNotPending)
    ));
    assert!(
        v.my_grants(&a, Some(GrantStatus::PendingConsent), late)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        v.my_grants(&a, Some(GrantStatus::PendingConsent), NOW)
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        v.request_grant(
            &police,
            &req(A, "no_such_purpose", &["full_name"]),
            None,
            NOW
        ),
        Err(VaultError::Denied(policy::Denial::UnknownPurpose))
    ));
}

#[test]
fn concurrent_requests_with_one_idempotency_key_get_one_grant() {
    let dir = tempfile::tempdir().unwrap();
    let v = Arc::new(vault(dir.path(), None));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let v = Arc::clone(&v);
            std::thread::spawn(move || {
                let r = req(A, "construction_permit", &["full_name"]);
                v.request_grant(
                    &caller("ubnd-phuong-sai-gon"),
                    &r,
                    Some(&key("same-key")),
                    NOW,
                )
                .unwrap()
            })
        })
        .collect();
    let results: Vec<GrantOutcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ids: Vec<&str> = results
        .iter()
        .map(|o| match o {
            GrantOutcome::Active { grant, .. } | GrantOutcome::Replayed { grant, .. } => {
                grant.id.as_str()
            }
            GrantOutcome::Pending { grant } => grant.id.as_str(),
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let tokens = results
        .iter()
        .filter(|o| {
            matches!(o, GrantOutcome::Active { .. })
                || matches!(o, GrantOutcome::Replayed { token: Some(_), .. })
        })
        .count();
    assert_eq!(tokens, 1, "the token is handed out once");
    let live: Vec<Grant> = v
        .my_grants(
            &CitizenId::parse(A).unwrap(),
            Some(GrantStatus::Active),
            NOW,
        )
        .unwrap();
    assert_eq!(live.len(), 1, "duplicates from the race are revoked");
}

#[test]
fn free_text_in_a_field_list_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let r = req(A, "construction_permit", &["Nguyễn Văn An 0903123456"]);
    let err = v
        .request_grant(&caller("ubnd-phuong-sai-gon"), &r, None, NOW)
        .unwrap_err();
    assert_eq!(err.code(), "unknown_field");
    assert!(
        !err.to_string().contains("Nguyễn") && !err.to_string().contains("0903123456"),
        "{err}"
    );
    let text: String = events(&v).iter().map(Value::to_string).collect();
    assert!(!text.contains("0903123456"));
}

/// A whole sweep pass in small steps; the number deleted.
fn sweep(v: &Vault<SledStore>, now: Timestamp, retention: i64) -> usize {
    let mut total = 0;
    loop {
        let (n, wrapped) = v.sweep_ended_grants(now, retention, 2).unwrap();
        total += n;
        if wrapped {
            return total;
        }
    }
}

#[test]
fn ended_grants_are_purged_after_retention_and_break_glass_grants_kept() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let c = caller("ubnd-phuong-sai-gon");
    let a = CitizenId::parse(A).unwrap();
    let r = req(A, "construction_permit", &["full_name"]);
    let (g, token) = active(v.request_grant(&c, &r, Some(&key("key-1")), NOW).unwrap());
    let pending = pending(ask(
        &v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &["health_notes"],
    ));
    let (bg, _) = active(ask(
        &v,
        "benh-vien-cho-ray",
        A,
        "emergency_care",
        &["blood_type"],
    ));
    let end = g.latest_end_secs();
    assert_eq!(end, g.token_exp.unwrap().as_secs());
    // A pending grant may be approved until its deadline, then live its TTL.
    assert!(pending.latest_end_secs() >= NOW.as_secs() + CONSENT_WINDOW_SECS);
    let retention = 3600;
    // Within retention (counted from the end), nothing goes.
    let at = Timestamp::from_millis((end + retention) * 1000);
    assert_eq!(sweep(&v, at, retention), 0);
    assert!(v.grant_status(&c, &g.id, at).is_ok());
    assert!(
        v.verify_code(&a, &g.verification_code, at)
            .unwrap()
            .is_some()
    );
    // Past it: the ended grant, its code and idempotency key go; the pending one (its
    // deadline is days away) and the break-glass one stay.
    let later = Timestamp::from_millis((end + retention + 1) * 1000);
    assert_eq!(sweep(&v, later, retention), 1);
    assert!(matches!(
        v.grant_status(&c, &g.id, later),
        Err(VaultError::GrantNotFound)
    ));
    assert!(
        v.verify_code(&a, &g.verification_code, later)
            .unwrap()
            .is_none()
    );
    assert!(v.store.grant(&pending.id).unwrap().is_some());
    assert!(v.store.grant(&bg.id).unwrap().is_some());
    assert!(
        v.my_grants(&a, None, later)
            .unwrap()
            .iter()
            .all(|x| x.id != g.id)
    );
    // The token of a purged grant releases nothing (and the refusal is audited).
    assert!(release(&v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).is_err());
    // The idempotency key is free again: a retry makes a new grant, not a dangling one.
    let (again, _) = active(v.request_grant(&c, &r, Some(&key("key-1")), later).unwrap());
    assert_ne!(again.id, g.id);
    // A refusal ends the pending grant now: retention counts from the refusal.
    let refused = refuse(&v, &a, &pending.id, later).unwrap();
    assert_eq!(refused.latest_end_secs(), later.as_secs() + 1);
    let after_refusal = Timestamp::from_millis((later.as_secs() + 1 + retention + 1) * 1000);
    assert_eq!(sweep(&v, after_refusal, retention), 1);
    assert!(v.store.grant(&pending.id).unwrap().is_none());
    // Once everything has ended, all but the break-glass grant go.
    let much_later = Timestamp::from_millis((again.latest_end_secs() + retention + 1) * 1000);
    assert_eq!(sweep(&v, much_later, retention), 1);
    assert_eq!(sweep(&v, much_later, retention), 0);
    assert!(v.store.grant(&bg.id).unwrap().is_some());
    assert_eq!(v.break_glass_queue(true).unwrap().len(), 1);
}

#[test]
fn ended_standing_consents_are_swept_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let a = CitizenId::parse(A).unwrap();
    let g = pending_health_grant(&v);
    approve(&v, &a, &g.id, Some(1), NOW).unwrap();
    let blind = v.blind(&a);
    let retention = 3_600;
    // Before its end plus the retention, it stays (though expired, it covers nothing).
    let expired = NOW.plus_secs(86_400 + 10);
    assert!(v.my_consents(&a, expired).unwrap().is_empty());
    sweep(&v, expired, retention);
    assert_eq!(v.store.consents_of_citizen(&blind).unwrap().len(), 1);
    // Past it, the sweep deletes it.
    let later = NOW.plus_secs(86_400 + retention + 10);
    sweep(&v, later, retention);
    assert!(v.store.consents_of_citizen(&blind).unwrap().is_empty());
}

#[test]
fn an_idempotent_call_runs_once_replays_its_sealed_answer_and_refuses_another_request() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let runs = std::cell::Cell::new(0);
    let k = key("retry-7");
    let call = |request: &'static [u8], agency: &'static str| Once {
        caller: Caller::Agency(agency),
        attempt: Attempt::new("grant.revoke"),
        key: Some(&k),
        request,
    };
    let run = || {
        runs.set(runs.get() + 1);
        Ok((204u16, json!({"n": runs.get()})))
    };
    let first = v
        .once(call(b"DELETE g-1", "ubnd-phuong-sai-gon"), NOW, run)
        .unwrap();
    assert_eq!(first, Answered::Fresh((204, json!({"n": 1}))));
    let again = v
        .once(call(b"DELETE g-1", "ubnd-phuong-sai-gon"), NOW, run)
        .unwrap();
    assert_eq!(again, Answered::Replayed((204, json!({"n": 1}))));
    assert_eq!(runs.get(), 1, "a replay runs nothing");
    // Another agency's key of the same name is its own.
    let theirs = v
        .once(call(b"DELETE g-1", "ubnd-phuong-ben-thanh"), NOW, run)
        .unwrap();
    assert_eq!(theirs, Answered::Fresh((204, json!({"n": 2}))));
    // Another request under the key: refused, audited, nothing run.
    let conflict = v.once::<(u16, Value), _>(call(b"DELETE g-2", "ubnd-phuong-sai-gon"), NOW, run);
    assert!(matches!(conflict, Err(VaultError::IdempotencyConflict)));
    assert_eq!(runs.get(), 2);
    let denied = events(&v).into_iter().next_back().unwrap();
    assert_eq!(denied["event"], "access.denied");
    assert_eq!(denied["code"], "idempotency_conflict");
    assert_eq!(denied["action"], "grant.revoke");
    // A failure is not remembered: a retry runs again.
    let k2 = key("retry-8");
    let failing = Once {
        key: Some(&k2),
        ..call(b"PUT x", "ubnd-phuong-sai-gon")
    };
    let failed = v.once::<u16, _>(failing, NOW, || Err(VaultError::CitizenNotFound));
    assert!(matches!(failed, Err(VaultError::CitizenNotFound)));
    assert_eq!(
        v.once(failing, NOW, || Ok(7u16)).unwrap(),
        Answered::Fresh(7)
    );
    // Without a key the call simply runs.
    let keyless = Once {
        key: None,
        ..call(b"DELETE g-1", "ubnd-phuong-sai-gon")
    };
    assert_eq!(
        v.once(keyless, NOW, run).unwrap(),
        Answered::Fresh((204, json!({"n": 3})))
    );
}

#[test]
fn remembered_answers_are_sealed_named_by_hmac_and_swept_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let k = key("citizen-079123456789-retry");
    let call = Once {
        caller: Caller::Agency("ubnd-phuong-sai-gon"),
        attempt: Attempt::new("record.write"),
        key: Some(&k),
        request: b"PUT",
    };
    let answer = json!({"marker": "PLAINTEXT-ANSWER-MARKER"});
    v.once(call, NOW, || Ok(answer.clone())).unwrap();
    v.flush().unwrap();
    drop(v);
    // Neither the key (which here holds a citizen id) nor the answer is on disk in clear.
    let mut bytes = Vec::new();
    for e in walk(dir.path()) {
        bytes.extend(std::fs::read(e).unwrap());
    }
    for needle in [
        &b"079123456789"[..],
        b"PLAINTEXT-ANSWER-MARKER",
        b"citizen-079",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{}",
            String::from_utf8_lossy(needle)
        );
    }
    let v = reopen(dir.path());
    let replay = v
        .once::<Value, _>(call, NOW, || unreachable!("replayed"))
        .unwrap();
    assert_eq!(replay, Answered::Replayed(answer.clone()));
    // Kept through the retention, deleted after it.
    let retention = 3_600;
    let sweep = |at: Timestamp| while !v.sweep_ended_grants(at, retention, 100).unwrap().1 {};
    sweep(NOW.plus_secs(retention));
    assert!(
        v.once::<Value, _>(call, NOW, || Ok(json!(0)))
            .unwrap()
            .replayed()
    );
    sweep(NOW.plus_secs(retention + 1));
    assert_eq!(
        v.once(call, NOW, || Ok(json!(1))).unwrap(),
        Answered::Fresh(json!(1))
    );
}

/// Every file under `dir`.
pub(super) fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn concurrent_calls_with_one_key_run_once_and_the_others_replay_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let k = key("race-1");
    let runs = std::sync::atomic::AtomicU32::new(0);
    let answers: Vec<Answered<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let call = Once {
                        caller: Caller::Agency("ubnd-phuong-sai-gon"),
                        attempt: Attempt::new("grant.revoke"),
                        key: Some(&k),
                        request: b"DELETE g-1",
                    };
                    v.once(call, NOW, || {
                        let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok(n + 100)
                    })
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.into_inner(), 1, "the change ran once");
    assert_eq!(answers.iter().filter(|a| !a.replayed()).count(), 1);
    assert!(answers.into_iter().all(|a| a.into_inner() == 100));
}
