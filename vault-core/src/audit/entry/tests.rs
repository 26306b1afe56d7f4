//! Tests of audit entries: canonical bytes, leaf hashes, receipts, safe ids.

use super::*;
use proptest::prelude::*;

fn ctx() -> EntryContext {
    EntryContext {
        time: Timestamp::from_millis(1_795_395_723_456),
        policy: [0xab; 32],
    }
}

fn id(s: &str) -> SafeId {
    SafeId::parse(s).unwrap()
}

fn every_event(subject: &Pseudonym, fields: &[FieldName]) -> Vec<AuditEntry> {
    let c = ctx();
    let official = Actor::official(
        id("can-bo-01"),
        id("ubnd-phuong-sai-gon"),
        Some(id("tu-phap")),
    );
    let (purpose, dossier, grant) = (
        id("birth_registration"),
        id("HS-2026-000123"),
        id("g-7KQ2M9XA"),
    );
    let access = Access {
        purpose: Some(&purpose),
        dossier: &dossier,
        fields,
        grant: Some(&grant),
        break_glass: false,
        consent: None,
    };
    let agency = id("ubnd-phuong-sai-gon");
    let consent = id("c-abcdefghjkmnpqrsabcdefghjkmnpqrs");
    let case = id("kn-abcdefghjkmnpqrsabcdefghjkmnpqrs");
    let all = vec![
        AuditEntry::grant_issued(&c, &official, subject, &access),
        AuditEntry::grant_pending(&c, &official, subject, &access),
        AuditEntry::grant_denied(
            &c,
            &official,
            Some(subject),
            &access,
            "outside_jurisdiction",
        ),
        AuditEntry::grant_approved(
            &c,
            subject,
            &agency,
            &access,
            c.time.plus_secs(600),
            Some((&consent, c.time.plus_secs(86_400))),
        ),
        AuditEntry::grant_refused(&c, subject, &agency, &access),
        AuditEntry::grant_revoked(&c, &official, subject, &grant, "revoked_by_agency"),
        AuditEntry::record_released(&c, &official, subject, &access),
        AuditEntry::record_denied(
            &c,
            &official,
            Some(subject),
            fields,
            Some(&grant),
            "token_not_for_field",
        ),
        AuditEntry::record_self_viewed(&c, subject, fields),
        AuditEntry::record_written(&c, &Actor::operator(id("vaultctl")), subject, fields),
        AuditEntry::record_erased(&c, &Actor::operator(id("vaultctl")), subject),
        AuditEntry::consent_withdrawn(&c, subject, &agency, &purpose, &consent, fields),
        AuditEntry::correction_requested(&c, subject, &case, &fields[0]),
        AuditEntry::correction_resolved(
            &c,
            &Actor::agency(agency.clone()),
            subject,
            &case,
            &fields[0],
            "accepted",
        ),
        AuditEntry::complaint_filed(&c, subject, &case, 41),
        AuditEntry::complaint_answered(
            &c,
            &Actor::auditor(id("kiem-toan-1")),
            subject,
            &case,
            "upheld",
        ),
        AuditEntry::request_received(&c, subject, &case, "erasure"),
        AuditEntry::request_updated(
            &c,
            &Actor::auditor(id("kiem-toan-1")),
            subject,
            &case,
            "acknowledged",
        ),
        AuditEntry::breakglass_reviewed(
            &c,
            &Actor::auditor(id("kiem-toan-1")),
            &grant,
            Outcome::Permit,
            "justified",
        ),
        AuditEntry::audit_queried(
            &c,
            &Actor::auditor(id("kiem-toan-1")),
            Some(subject),
            "by_citizen",
        ),
        AuditEntry::audit_exported(&c, &Actor::auditor(id("kiem-toan-1")), 0, 100),
        AuditEntry::key_rotated(&c, &Actor::operator(id("vaultctl")), "kek", 2),
        AuditEntry::backup_created(&c, &Actor::operator(id("vaultctl")), 120),
        AuditEntry::access_denied(
            &c,
            &Actor::agency(id("ubnd-phuong-sai-gon")),
            None,
            &id("grant.revoke"),
            Some(&grant),
            "grant_not_found",
        ),
    ];
    let entries: Vec<_> = all.into_iter().map(Result::unwrap).collect();
    let events: Vec<_> = entries.iter().map(AuditEntry::event).collect();
    assert_eq!(events, Event::ALL.to_vec(), "one constructor per event");
    entries
}

#[test]
fn entries_are_canonical_json_with_sorted_keys_and_spec_fields() {
    let fields = vec![FieldName::parse("full_name").unwrap()];
    for e in every_event(&Pseudonym([7; 32]), &fields) {
        let text = std::str::from_utf8(e.bytes()).unwrap();
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            text,
            "re-serialization is identical"
        );
        assert_eq!(v["v"], json!(1));
        assert_eq!(v["time"], json!("2026-11-23T01:02:03.456Z"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(v["nonce"].as_str().unwrap())
                .unwrap()
                .len(),
            16
        );
        assert_eq!(v["policy"], json!(hex::encode([0xab; 32])));
        assert!(v["actor"]["kind"].is_string() && v["outcome"].is_string());
        // SPEC §4's fields, then the extensions this vault documents
        // (docs/storage-and-crypto.md, "Audit entries"): what a consent covers, and what
        // a refused caller tried, and which case (complaint, correction, request) and entry an event concerns.
        const SPEC_KEYS: [&str; 22] = [
            "v",
            "time",
            "nonce",
            "event",
            "policy",
            "actor",
            "subject",
            "purpose",
            "dossier_id",
            "fields",
            "grant_id",
            "outcome",
            "code",
            "break_glass",
            "expires_at",
            "consent_id",
            "consent_expires_at",
            "action",
            "case_id",
            "entry_index",
            "range_from",
            "range_to",
        ];
        for k in v.as_object().unwrap().keys() {
            assert!(
                SPEC_KEYS.contains(&k.as_str()),
                "{k} is neither a SPEC §4 entry field nor a documented extension"
            );
        }
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}

#[test]
fn two_entries_with_equal_content_differ_by_their_nonce() {
    let f = vec![FieldName::parse("phone").unwrap()];
    let a = AuditEntry::record_self_viewed(&ctx(), &Pseudonym([1; 32]), &f).unwrap();
    let b = AuditEntry::record_self_viewed(&ctx(), &Pseudonym([1; 32]), &f).unwrap();
    assert_ne!(a.bytes(), b.bytes());
}

#[test]
fn safe_ids_refuse_citizen_ids_phone_numbers_and_odd_characters() {
    for bad in [
        "079203001234",
        "HS-0903123456",
        "a b",
        "",
        "tên",
        &"x".repeat(65),
        "a\"b",
    ] {
        assert!(SafeId::parse(bad).is_err(), "{bad}");
    }
    for ok in [
        "HS-2026-000123",
        "ubnd-phuong-sai-gon",
        "can.bo_01@unit",
        "12345678",
    ] {
        assert!(SafeId::parse(ok).is_ok(), "{ok}");
    }
}

#[test]
fn entries_over_64_kib_are_refused() {
    let many: Vec<FieldName> = (0..3000)
        .map(|i| FieldName::parse(&format!("field_number_{i:05}_padding")).unwrap())
        .collect();
    let err = AuditEntry::record_self_viewed(&ctx(), &Pseudonym([1; 32]), &many).unwrap_err();
    assert!(matches!(err, VaultError::AuditEntryTooLarge));
}

#[test]
fn time_round_trips() {
    let t = Timestamp::from_millis(1_795_395_723_456);
    assert_eq!(parse_time(&t.to_string()), Some(t));
    assert_eq!(parse_time("2026-02-30T00:00:00.000Z"), None);
}

proptest! {
    #[test]
    fn no_constructor_can_carry_a_citizen_value(
        values in proptest::collection::vec("[\\p{L}0-9]{3,20} [\\p{L}0-9 ,./-]{3,20}", 1..8),
        digits in "[0-9]{12}",
        salt in any::<[u8; 32]>(),
    ) {
        // What a vault write would be given: values and the citizen id.
        let key = crate::secret::PseudonymKey::from_bytes([5; 32]);
        let subject = Pseudonym(crypto::pseudonym(&key, &salt));
        let fields = vec![FieldName::parse("full_name").unwrap(), FieldName::parse("phone").unwrap()];
        for e in every_event(&subject, &fields) {
            let text = String::from_utf8(e.bytes().to_vec()).unwrap();
            prop_assert!(!text.contains(&digits));
            for v in &values {
                prop_assert!(!text.contains(v.as_str()), "{} contains {}", text, v);
            }
        }
    }
}
