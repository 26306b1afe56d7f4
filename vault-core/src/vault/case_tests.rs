//! Tests of the citizen's cases through the `Vault` façade: complaints and their answers,
//! corrections with the disputed mark and their resolution by the source agency,
//! data-subject requests with deadlines, notifications, erasure.

use serde_json::{Value, json};

use super::oversight::RequestFilter;
use super::use_case_tests::{A, B, NOW, active, ask, events, release, vault, walk};
use super::*;
use crate::audit::SafeId;
use crate::case::{ComplaintOutcome, CorrectionOutcome, RequestKind, RequestStatus, RequestUpdate};

const SOURCE: &str = "cong-an-tphcm-cu-tru";

fn cid(s: &str) -> CitizenId {
    CitizenId::parse(s).unwrap()
}

fn auditor() -> SafeId {
    SafeId::parse("kiem-toan-1").unwrap()
}

fn last(v: &Vault<crate::store::SledStore>) -> Value {
    events(v).pop().unwrap()
}

/// A release of `full_name` to a ward, for the citizen to complain about; its index.
fn released_full_name(v: &Vault<crate::store::SledStore>) -> (u64, String) {
    let (_, token) = active(ask(
        v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name", "phone"],
    ));
    let r = release(v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).unwrap();
    (r.audit.index, token)
}

#[test]
fn a_complaint_is_about_an_own_entry_sealed_and_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (index, _) = released_full_name(&v);
    let secret = "Tôi không làm hồ sơ nào ở phường: MẬT-KHIẾU-NẠI-7731";
    let c = v.file_complaint(&cid(A), index, secret, NOW).unwrap();
    assert_eq!((c.audit_index, c.status()), (index, "open"));
    let e = last(&v);
    assert_eq!(e["event"], "complaint.filed");
    assert_eq!(
        (e["case_id"].as_str(), e["entry_index"].as_u64()),
        (Some(c.id.as_str()), Some(index))
    );
    assert!(
        !serde_json::to_string(&e).unwrap().contains("MẬT"),
        "no text in the entry"
    );
    // Another citizen cannot complain about it: it answers like a missing entry, audited.
    let size = v.audit().size();
    assert_eq!(
        v.file_complaint(&cid(B), index, "x", NOW)
            .unwrap_err()
            .code(),
        "audit_not_found"
    );
    assert_eq!(v.audit().size(), size + 1);
    assert_eq!(last(&v)["code"], "audit_not_found");
    assert_eq!(v.my_complaints(&cid(B)).unwrap(), vec![]);
    // Bad text changes nothing but the refusal's entry.
    for bad in ["", "   ", &"a".repeat(2_001)] {
        assert_eq!(
            v.file_complaint(&cid(A), index, bad, NOW)
                .unwrap_err()
                .code(),
            "invalid_request"
        );
    }
    assert_eq!(v.my_complaints(&cid(A)).unwrap(), vec![c.clone()]);
    assert_eq!(v.open_complaints().unwrap(), vec![c.clone()]);
    // The auditor's answer reaches the citizen, once.
    let later = NOW.plus_secs(3_600);
    let answered = v
        .answer_complaint(
            &auditor(),
            &c.id,
            ComplaintOutcome::Upheld,
            "Đã xử lý cán bộ.",
            later,
        )
        .unwrap();
    assert_eq!(answered.status(), "answered");
    assert_eq!(last(&v)["event"], "complaint.answered");
    assert_eq!(last(&v)["code"], "upheld");
    assert_eq!(
        v.answer_complaint(&auditor(), &c.id, ComplaintOutcome::Dismissed, "x", later)
            .unwrap_err()
            .code(),
        "case_closed"
    );
    assert_eq!(v.my_complaints(&cid(A)).unwrap(), vec![answered]);
    assert_eq!(v.open_complaints().unwrap(), vec![]);
    let n = v.my_notifications(&cid(A), later).unwrap();
    assert!(
        matches!(&n[0].kind, NotificationKind::ComplaintAnswered { id, outcome } if *id == c.id && outcome == "upheld")
    );
    // Sealed at rest: the text is nowhere in the data directory.
    v.flush().unwrap();
    for f in walk(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        let marker = "KHIẾU-NẠI-7731".as_bytes();
        assert!(!bytes.windows(marker.len()).any(|w| w == marker), "{f:?}");
        assert!(!bytes.windows(A.len()).any(|w| w == A.as_bytes()), "{f:?}");
    }
}

#[test]
fn an_open_correction_marks_the_field_disputed_until_its_source_agency_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    // Fields without a source of truth, unknown fields and bad values are refused.
    assert_eq!(
        v.file_correction(&cid(A), "phone", json!("0903999999"), "", NOW)
            .unwrap_err()
            .code(),
        "no_source_of_truth"
    );
    assert_eq!(
        v.file_correction(&cid(A), "shoe_size", json!(42), "", NOW)
            .unwrap_err()
            .code(),
        "unknown_field"
    );
    assert_eq!(
        v.file_correction(&cid(A), "date_of_birth", json!("1990-02-30"), "", NOW)
            .unwrap_err()
            .code(),
        "invalid_field_value"
    );
    let c = v
        .file_correction(&cid(A), "full_name", json!("Nguyễn Văn Ân"), "Sai dấu", NOW)
        .unwrap();
    assert_eq!(c.status(), "open");
    let e = last(&v);
    assert_eq!(
        (e["event"].as_str(), e["fields"].clone()),
        (Some("correction.requested"), json!(["full_name"]))
    );
    assert!(!serde_json::to_string(&e).unwrap().contains("Ân"));
    assert_eq!(
        v.file_correction(&cid(A), "full_name", json!("X"), "", NOW)
            .unwrap_err()
            .code(),
        "correction_open"
    );
    // Every reader sees the mark: an agency's release and the citizen's own record.
    let (_, token) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name", "phone"],
    ));
    let r = release(
        &v,
        "ubnd-phuong-sai-gon",
        &token,
        A,
        &["full_name", "phone"],
    )
    .unwrap();
    assert_eq!(r.disputed, vec!["full_name".to_owned()]);
    assert_eq!(
        r.fields["full_name"],
        json!("Nguyễn Văn An"),
        "the value stays until resolved"
    );
    assert_eq!(
        v.my_record(&cid(A), NOW).unwrap().disputed,
        vec!["full_name".to_owned()]
    );
    // Only the field's source sees it, and seeing it is audited as a release to it.
    assert!(
        v.corrections_for("ubnd-phuong-sai-gon", NOW)
            .unwrap()
            .is_empty()
    );
    let queue = v.corrections_for(SOURCE, NOW).unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].correction.citizen_id, A);
    assert_eq!(queue[0].correction.proposed_value, json!("Nguyễn Văn Ân"));
    let shown = last(&v);
    assert_eq!(
        (shown["event"].as_str(), shown["code"].as_str()),
        (Some("record.released"), Some("correction_review"))
    );
    // Another agency cannot resolve it (answered like a missing one, audited).
    assert_eq!(
        v.resolve_correction(
            "ubnd-phuong-sai-gon",
            &c.id,
            CorrectionOutcome::Accepted,
            "",
            NOW
        )
        .unwrap_err()
        .code(),
        "case_not_found"
    );
    assert_eq!(last(&v)["event"], "access.denied");
    // Accepting writes the value as the agency and ends the dispute.
    let later = NOW.plus_secs(60);
    let done = v
        .resolve_correction(
            SOURCE,
            &c.id,
            CorrectionOutcome::Accepted,
            "Đúng theo CSDL dân cư",
            later,
        )
        .unwrap();
    assert_eq!(done.status(), "accepted");
    let tail: Vec<Value> = events(&v).into_iter().rev().take(2).collect();
    assert_eq!(tail[0]["event"], "correction.resolved");
    assert_eq!(
        (tail[1]["event"].as_str(), tail[1]["actor"]["id"].as_str()),
        (Some("record.written"), Some(SOURCE))
    );
    let mine = v.my_record(&cid(A), later).unwrap();
    assert_eq!(mine.fields["full_name"], json!("Nguyễn Văn Ân"));
    assert!(mine.disputed.is_empty());
    assert_eq!(
        v.resolve_correction(SOURCE, &c.id, CorrectionOutcome::Rejected, "lý do", later)
            .unwrap_err()
            .code(),
        "case_closed"
    );
    // A rejection keeps the value and shows the reason, which it must give.
    let c2 = v
        .file_correction(&cid(A), "date_of_birth", json!("1990-05-02"), "", later)
        .unwrap();
    assert_eq!(
        v.resolve_correction(SOURCE, &c2.id, CorrectionOutcome::Rejected, " ", later)
            .unwrap_err()
            .code(),
        "invalid_request"
    );
    // A derived answer computed from a disputed field is marked too.
    let (_, token) = active(ask(
        &v,
        "csgt-cong-an-tphcm",
        A,
        "driver_licence_renewal",
        &["full_name", "age_at_least"],
    ));
    let r = release(
        &v,
        "csgt-cong-an-tphcm",
        &token,
        A,
        &["full_name", "age_at_least"],
    )
    .unwrap();
    assert_eq!(r.disputed, vec!["age_at_least".to_owned()]);
    let rejected = v
        .resolve_correction(
            SOURCE,
            &c2.id,
            CorrectionOutcome::Rejected,
            "Giấy khai sinh ghi 01/05",
            later,
        )
        .unwrap();
    assert_eq!(
        rejected.resolution.as_ref().unwrap().reason,
        "Giấy khai sinh ghi 01/05"
    );
    assert_eq!(
        v.my_record(&cid(A), later).unwrap().fields["date_of_birth"],
        json!("1990-05-01")
    );
    let statuses: Vec<&str> = v
        .my_corrections(&cid(A))
        .unwrap()
        .iter()
        .map(|c| c.status())
        .collect();
    assert_eq!(statuses, ["accepted", "rejected"]);
    let n = v.my_notifications(&cid(A), later).unwrap();
    assert_eq!(
        n.iter()
            .filter(|n| matches!(n.kind, NotificationKind::CorrectionResolved { .. }))
            .count(),
        2
    );
}

#[test]
fn a_request_has_legal_deadlines_a_history_and_notifies_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    // NOW is 2026-11-23 (a Monday) 19:02 in Hanoi.
    let r = v
        .file_request(&cid(A), RequestKind::Access, "Cho tôi bản sao", NOW)
        .unwrap();
    assert_eq!(r.status(), RequestStatus::Received);
    assert_eq!(
        r.acknowledge_by.to_string(),
        "2026-11-25T16:59:59.999Z",
        "2 working days"
    );
    assert_eq!(
        r.complete_by.to_string(),
        "2026-12-08T16:59:59.999Z",
        "15 days"
    );
    assert_eq!(
        (last(&v)["event"].as_str(), last(&v)["code"].as_str()),
        (Some("request.received"), Some("access"))
    );
    assert_eq!(v.open_requests().unwrap(), vec![r.clone()]);
    let step = |status, days, at: Timestamp| {
        v.update_request(
            &auditor(),
            &r.id,
            &RequestUpdate {
                status,
                note: "ghi chú".into(),
                extend_days: days,
                other_processor: false,
            },
            at,
        )
    };
    let t1 = NOW.plus_secs(86_400);
    step(RequestStatus::Acknowledged, None, t1).unwrap();
    let extended = step(RequestStatus::Extended, Some(15), t1.plus_secs(60)).unwrap();
    assert_eq!(extended.complete_by.to_string(), "2026-12-23T16:59:59.999Z");
    assert_eq!(
        step(RequestStatus::Extended, Some(5), t1.plus_secs(120))
            .unwrap_err()
            .code(),
        "invalid_request"
    );
    assert_eq!(last(&v)["event"], "access.denied");
    let done = step(RequestStatus::Completed, None, t1.plus_secs(180)).unwrap();
    assert_eq!(done.history.len(), 4);
    assert_eq!(v.open_requests().unwrap(), vec![]);
    let statuses: Vec<String> = v
        .my_notifications(&cid(A), t1.plus_secs(200))
        .unwrap()
        .into_iter()
        .filter_map(|n| match n.kind {
            NotificationKind::RequestStatus { status, .. } => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        ["completed", "extended", "acknowledged"],
        "newest first"
    );
    assert_eq!(v.my_requests(&cid(A)).unwrap(), vec![done]);
    // A citizen the vault does not hold has nothing to request about.
    assert_eq!(
        v.file_request(&cid("079000000000"), RequestKind::Access, "", NOW)
            .unwrap_err()
            .code(),
        "citizen_not_found"
    );
}

#[test]
fn notifications_tell_of_waiting_consents_and_emergency_access_and_its_review() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (bg, _) = active(ask(
        &v,
        "benh-vien-cho-ray",
        A,
        "emergency_care",
        &["blood_type"],
    ));
    let pending = ask(
        &v,
        "bhxh-tphcm",
        A,
        "social_insurance_lookup",
        &["full_name"],
    );
    assert!(matches!(pending, GrantOutcome::Pending { .. }));
    let n = v.my_notifications(&cid(A), NOW).unwrap();
    assert!(n.iter().any(|n| matches!(&n.kind, NotificationKind::BreakGlassAccess { grant_id, .. } if **grant_id == *bg.id)));
    assert!(
        n.iter()
            .any(|n| matches!(n.kind, NotificationKind::ConsentWaiting { .. }))
    );
    let later = NOW.plus_secs(7_200);
    v.review_break_glass(&auditor(), &bg.id, true, later)
        .unwrap();
    let n = v.my_notifications(&cid(A), later).unwrap();
    assert!(
        matches!(&n[0].kind, NotificationKind::BreakGlassReviewed { outcome, .. } if outcome == "justified")
    );
    assert_eq!(n[0].at, later);
    assert!(v.my_notifications(&cid(B), later).unwrap().is_empty());
}

#[test]
fn erasure_takes_the_citizens_cases() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (index, _) = released_full_name(&v);
    v.file_complaint(&cid(A), index, "x", NOW).unwrap();
    v.file_correction(&cid(A), "full_name", json!("Y"), "", NOW)
        .unwrap();
    v.file_request(&cid(A), RequestKind::Erasure, "", NOW)
        .unwrap();
    let op = crate::audit::Actor::operator(SafeId::parse("vaultctl").unwrap());
    v.erase(&cid(A), &op, NOW).unwrap();
    assert!(v.my_complaints(&cid(A)).unwrap().is_empty());
    assert!(v.open_requests().unwrap().is_empty());
    assert!(v.corrections_for(SOURCE, NOW).unwrap().is_empty());
}

#[test]
fn auditors_see_break_glass_with_due_times_and_releases_and_review_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (g, token) = active(ask(
        &v,
        "benh-vien-cho-ray",
        A,
        "emergency_care",
        &["blood_type"],
    ));
    let r = release(&v, "benh-vien-cho-ray", &token, A, &["blood_type"]).unwrap();
    let size = v.audit().size();
    let queue = v.break_glass_list(&auditor(), false, 72, NOW).unwrap();
    assert_eq!(v.audit().size(), size + 1, "the listing is audited");
    assert_eq!(last(&v)["event"], "audit.queried");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].releases, vec![r.audit.index]);
    assert_eq!(queue[0].review_due, g.created.plus_secs(72 * 3_600));
    assert_eq!(
        v.review_break_glass_with_note(&auditor(), &g.id, true, " ", NOW)
            .unwrap_err()
            .code(),
        "invalid_request",
        "a review gives its note"
    );
    v.review_break_glass_with_note(&auditor(), &g.id, false, "Không có hồ sơ cấp cứu.", NOW)
        .unwrap();
    assert_eq!(
        v.review_break_glass_with_note(&auditor(), &g.id, true, "x", NOW)
            .unwrap_err()
            .code(),
        "grant_not_pending"
    );
    assert!(
        v.break_glass_list(&auditor(), false, 72, NOW)
            .unwrap()
            .is_empty()
    );
    let done = v.break_glass_list(&auditor(), true, 72, NOW).unwrap();
    let review = done[0].review.as_ref().unwrap();
    assert_eq!(
        (review.justified, review.note.as_str()),
        (false, "Không có hồ sơ cấp cứu.")
    );
    let n = v.my_notifications(&cid(A), NOW).unwrap();
    assert!(n.iter().any(|n| matches!(&n.kind, NotificationKind::BreakGlassReviewed { outcome, .. } if outcome == "unjustified")));
    // The note is sealed: not on disk in the clear.
    v.flush().unwrap();
    for f in walk(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        let marker = "hồ sơ cấp cứu".as_bytes();
        assert!(!bytes.windows(marker.len()).any(|w| w == marker), "{f:?}");
    }
}

#[test]
fn auditors_list_complaints_and_requests_and_a_completed_erasure_request_erases() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (index, _) = released_full_name(&v);
    let c = v
        .file_complaint(&cid(A), index, "Không phải tôi", NOW)
        .unwrap();
    let open = v.complaints_list(&auditor(), false, NOW).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].0, c);
    assert_eq!(
        open[0].1,
        v.audit().entry(index).unwrap(),
        "with the entry it concerns"
    );
    v.answer_complaint(
        &auditor(),
        &c.id,
        ComplaintOutcome::Dismissed,
        "Hợp lệ.",
        NOW,
    )
    .unwrap();
    assert!(
        v.complaints_list(&auditor(), false, NOW)
            .unwrap()
            .is_empty()
    );
    assert_eq!(v.complaints_list(&auditor(), true, NOW).unwrap().len(), 1);

    let access = v
        .file_request(&cid(B), RequestKind::Access, "", NOW)
        .unwrap();
    let erase = v
        .file_request(&cid(A), RequestKind::Erasure, "", NOW.plus_secs(1))
        .unwrap();
    let later = NOW.plus_secs(10 * 86_400);
    let ids = |f| -> Vec<String> {
        v.requests_list(&auditor(), f, later)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(
        ids(RequestFilter::Open),
        vec![access.id.clone(), erase.id.clone()]
    );
    assert_eq!(
        ids(RequestFilter::Overdue).len(),
        2,
        "not acknowledged in 2 working days"
    );
    assert!(ids(RequestFilter::Closed).is_empty());
    let complete = RequestUpdate {
        status: RequestStatus::Completed,
        note: "Đã xóa".into(),
        extend_days: None,
        other_processor: false,
    };
    v.update_request(&auditor(), &erase.id, &complete, later)
        .unwrap();
    assert_eq!(
        v.my_record(&cid(A), later).unwrap_err().code(),
        "citizen_not_found"
    );
    let tail: Vec<String> = events(&v)
        .iter()
        .rev()
        .take(3)
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        tail.contains(&"record.erased".to_owned()) && tail.contains(&"request.updated".to_owned()),
        "{tail:?}"
    );
    v.update_request(&auditor(), &access.id, &complete, later)
        .unwrap();
    assert_eq!(ids(RequestFilter::Closed), vec![access.id]);
}

#[test]
fn breach_and_reuse_reports_count_what_agencies_did_in_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let police = "csgt-cong-an-tphcm";
    for c in [A, B] {
        let (_, token) = active(ask(
            &v,
            police,
            c,
            "driver_licence_renewal",
            &["full_name", "date_of_birth"],
        ));
        release(&v, police, &token, c, &["full_name", "date_of_birth"]).unwrap();
    }
    let (_, token) = active(ask(
        &v,
        "ubnd-phuong-sai-gon",
        A,
        "construction_permit",
        &["full_name"],
    ));
    release(&v, "ubnd-phuong-sai-gon", &token, A, &["full_name"]).unwrap();
    let (from, to) = (NOW.plus_secs(-60), NOW.plus_secs(60));
    let r = v
        .breach_report(&auditor(), from, to, Some(police), None, NOW)
        .unwrap();
    assert_eq!(last(&v)["code"], "breach_report", "audited");
    assert_eq!(r.affected_citizens, 2);
    assert_eq!(r.agencies.iter().collect::<Vec<_>>(), vec![police]);
    assert_eq!(r.events.get("record.released"), Some(&2));
    assert_eq!(r.events.get("grant.issued"), Some(&2));
    assert!(r.fields.contains("date_of_birth"));
    assert_eq!(r.entries.len(), 4);
    let all = v
        .breach_report(&auditor(), from, to, None, None, NOW)
        .unwrap();
    assert_eq!((all.affected_citizens, all.agencies.len()), (2, 2));
    let none = v
        .breach_report(
            &auditor(),
            NOW.plus_secs(3_600),
            NOW.plus_secs(7_200),
            None,
            None,
            NOW,
        )
        .unwrap();
    assert!(none.entries.is_empty() && none.affected_citizens == 0);
    let by_official = v
        .breach_report(&auditor(), from, to, None, Some("nobody"), NOW)
        .unwrap();
    assert!(by_official.entries.is_empty());

    let ledger = v.reuse_report(&auditor(), from, to, NOW).unwrap();
    let line = &ledger[&(police.to_owned(), "driver_licence_renewal".to_owned())];
    assert_eq!((line.releases, line.field_values, line.citizens), (2, 4, 2));
    let ward = &ledger[&(
        "ubnd-phuong-sai-gon".to_owned(),
        "construction_permit".to_owned(),
    )];
    assert_eq!((ward.releases, ward.field_values, ward.citizens), (1, 1, 1));
}

/// The repository's policies with small anomaly thresholds, in `dir`.
fn policies_with_low_thresholds(dir: &std::path::Path) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let to = dir.join("policies");
    std::fs::create_dir_all(to.join("purposes")).unwrap();
    for f in ["fields.toml", "agencies.toml", "calendar.toml"] {
        std::fs::copy(src.join(f), to.join(f)).unwrap();
    }
    for e in std::fs::read_dir(src.join("purposes")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join("purposes").join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        to.join("anomalies.toml"),
        "[official_many_citizens]\ncitizens = 2\nwindow_minutes = 10\n\
         [off_hours]\nstart_hour = 7\nend_hour = 19\nweekends = true\n\
         [denials]\ncount = 3\nwindow_minutes = 10\n\
         [break_glass]\ncount = 2\nwindow_minutes = 60\n\
         [citizen_many_agencies]\nagencies = 2\nwindow_minutes = 60\n\
         [verify_failures]\ncount = 3\nwindow_minutes = 10\n",
    )
    .unwrap();
    to
}

fn rules(v: &Vault<crate::store::SledStore>, now: Timestamp) -> Vec<&'static str> {
    let mut r: Vec<&'static str> = v
        .anomalies(
            &auditor(),
            NOW.plus_secs(-86_400 * 30),
            now.plus_secs(86_400),
            72,
            now,
        )
        .unwrap()
        .into_iter()
        .map(|a| a.rule)
        .collect();
    r.sort_unstable();
    r.dedup();
    r
}

#[test]
fn each_anomaly_rule_is_raised_by_its_scenario_and_not_by_normal_work() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies_with_low_thresholds(dir.path());
    let v = super::use_case_tests::vault_with(dir.path(), None, &policies);
    let police = "csgt-cong-an-tphcm";
    // Normal work: one official, one citizen, in working hours (NOW is a Monday, 08:02 in
    // Hanoi), one agency per citizen: nothing.
    let (_, token) = active(ask(&v, police, A, "driver_licence_renewal", &["full_name"]));
    release(&v, police, &token, A, &["full_name"]).unwrap();
    assert_eq!(
        rules(&v, NOW),
        Vec::<&str>::new(),
        "no false positive on normal work"
    );

    // One official reads a second citizen within the window.
    let (_, token) = active(ask(&v, police, B, "driver_licence_renewal", &["full_name"]));
    release(&v, police, &token, B, &["full_name"]).unwrap();
    assert_eq!(rules(&v, NOW), vec!["official_many_citizens"]);
    let found = v
        .anomalies(&auditor(), NOW.plus_secs(-60), NOW.plus_secs(60), 72, NOW)
        .unwrap();
    assert_eq!(found[0].count, 2);
    assert_eq!(found[0].agency.as_deref(), Some(police));
    assert!(
        found[0].entries.len() >= 2,
        "it links to the entries it rests on"
    );

    // A release at 23:00 in Hanoi.
    let night = NOW.plus_secs(15 * 3_600);
    let (_, token) = active(
        v.request_grant(
            &super::use_case_tests::caller(police),
            &super::use_case_tests::req(A, "driver_licence_renewal", &["full_name"]),
            None,
            night,
        )
        .unwrap(),
    );
    v.release_with_token(
        &token,
        &crate::token::cert_thumbprint(police.as_bytes()),
        A,
        &["full_name".to_owned()],
        night,
    )
    .unwrap();
    assert!(rules(&v, night).contains(&"off_hours"));

    // Three refusals for one agency (a ward asking outside its jurisdiction).
    for _ in 0..3 {
        let _ = v.request_grant(
            &super::use_case_tests::caller("ubnd-phuong-sai-gon"),
            &super::use_case_tests::req(B, "construction_permit", &["full_name"]),
            None,
            night,
        );
    }
    assert!(rules(&v, night).contains(&"denials"));

    // Two break-glass grants by the hospital within the hour; a citizen asked for by a
    // second agency.
    for c in [A, B] {
        active(
            v.request_grant(
                &super::use_case_tests::caller("benh-vien-cho-ray"),
                &super::use_case_tests::req(c, "emergency_care", &["blood_type"]),
                None,
                night,
            )
            .unwrap(),
        );
    }
    let r = rules(&v, night);
    assert!(
        r.contains(&"break_glass_rate") && r.contains(&"citizen_many_agencies"),
        "{r:?}"
    );

    // Three failed code checks by one citizen.
    for _ in 0..3 {
        assert!(v.verify_code(&cid(A), "ZZZZZZZZ", night).unwrap().is_none());
    }
    assert!(rules(&v, night).contains(&"verify_failures"));

    // A break-glass grant left unreviewed past its 72 hours.
    let later = night.plus_secs(73 * 3_600);
    assert!(rules(&v, later).contains(&"break_glass_review_overdue"));
    // Every listing was audited.
    assert_eq!(last(&v)["code"], "anomalies");
}

#[test]
fn an_agency_that_works_around_the_clock_has_no_off_hours() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies_with_low_thresholds(dir.path());
    let agencies = policies.join("agencies.toml");
    let text = std::fs::read_to_string(&agencies).unwrap().replace(
        "id = \"csgt-cong-an-tphcm\"\n",
        "id = \"csgt-cong-an-tphcm\"\naround_the_clock = true\n",
    );
    std::fs::write(&agencies, text).unwrap();
    let v = super::use_case_tests::vault_with(dir.path(), None, &policies);
    let police = "csgt-cong-an-tphcm";
    assert!(v.policy().agency(police).unwrap().around_the_clock);
    let night = NOW.plus_secs(15 * 3_600);
    let (_, token) = active(
        v.request_grant(
            &super::use_case_tests::caller(police),
            &super::use_case_tests::req(A, "driver_licence_renewal", &["full_name"]),
            None,
            night,
        )
        .unwrap(),
    );
    v.release_with_token(
        &token,
        &crate::token::cert_thumbprint(police.as_bytes()),
        A,
        &["full_name".to_owned()],
        night,
    )
    .unwrap();
    assert_eq!(rules(&v, night), Vec::<&str>::new());
}

#[test]
fn case_changes_run_inside_an_idempotent_call_without_deadlock() {
    // `once` holds a striped lock while it runs the change; a case change took a lock of the
    // same stripes, so one in 64 key-and-case pairs deadlocked.
    let dir = tempfile::tempdir().unwrap();
    let v = Arc::new(vault(dir.path(), None));
    let ids: Vec<String> = (0..100)
        .map(|i| {
            v.file_request(&cid(A), RequestKind::Access, "", NOW.plus_secs(i))
                .unwrap()
                .id
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let v2 = Arc::clone(&v);
    std::thread::spawn(move || {
        let auditor = auditor();
        for (k, id) in ids.iter().enumerate() {
            let key = IdempotencyKey::parse(&format!("key-{k}")).unwrap();
            let call = Once {
                caller: Caller::Auditor(&auditor),
                attempt: Attempt::new("request.update"),
                key: Some(&key),
                request: id.as_bytes(),
            };
            let update = RequestUpdate {
                status: RequestStatus::Acknowledged,
                note: String::new(),
                extend_days: None,
                other_processor: false,
            };
            v2.once(call, NOW, || {
                v2.update_request(&auditor, id, &update, NOW)
                    .map(|_| (200, Value::Null))
            })
            .unwrap();
        }
        tx.send(()).unwrap();
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok(),
        "an idempotent case change deadlocked"
    );
}

#[test]
fn a_dumped_store_loads_into_an_empty_one_row_for_row() {
    use crate::store::dump::{self, Row};
    use crate::store::{CaseStore, ConsentStore, GrantStore, MetaStore, RecordStore, SledStore};
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), None);
    let (index, _) = released_full_name(&v);
    v.file_complaint(&cid(A), index, "Không phải tôi.", NOW)
        .unwrap();
    v.file_request(&cid(A), RequestKind::Access, "", NOW)
        .unwrap();
    let g = super::use_case_tests::pending(ask(
        &v,
        "bhxh-tphcm",
        A,
        "social_insurance_lookup",
        &["full_name", "annual_income"],
    ));
    super::use_case_tests::approve(&v, &cid(A), g.id.as_str(), Some(30), NOW).unwrap();
    v.flush().unwrap();

    let mut lines = Vec::new();
    let counts = dump::dump(&v.store, &mut |row| {
        lines.push(serde_json::to_string(&row.to_json()?).unwrap());
        Ok(())
    })
    .unwrap();
    assert!(
        counts.citizens >= 2 && counts.grants >= 2 && counts.consents == 1 && counts.cases == 2,
        "{counts:?}"
    );
    let text = lines.join("\n");
    for secret in [A, B, "Không phải tôi."] {
        assert!(!text.contains(secret), "no plaintext in a dump");
    }

    let other = tempfile::tempdir().unwrap();
    let copy = SledStore::open(&other.path().join("store")).unwrap();
    for l in &lines {
        let row = Row::from_json(&serde_json::from_str(l).unwrap())
            .unwrap()
            .unwrap();
        dump::load(&copy, row).unwrap();
    }
    copy.flush().unwrap();
    let store = &v.store;
    assert_eq!(copy.keyring().unwrap(), store.keyring().unwrap());
    assert_eq!(
        copy.citizens_after(None, 10_000).unwrap(),
        store.citizens_after(None, 10_000).unwrap()
    );
    let grants = |s: &SledStore| {
        let mut g = s.grants_after(None, 10_000).unwrap().0;
        g.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        serde_json::to_string(&g).unwrap()
    };
    assert_eq!(grants(&copy), grants(store));
    let blind = v.blind(&cid(A));
    assert_eq!(
        copy.consents_of_citizen(&blind).unwrap(),
        store.consents_of_citizen(&blind).unwrap()
    );
    for kind in crate::case::CaseKind::ALL {
        assert_eq!(
            copy.cases_of_kind(kind).unwrap(),
            store.cases_of_kind(kind).unwrap()
        );
    }
    assert_eq!(
        copy.released_through().unwrap(),
        store.released_through().unwrap()
    );
    // A grant is found by its code in the copy too.
    assert!(
        copy.grant_id_by_code(&g.verification_code)
            .unwrap()
            .is_some()
    );
}
