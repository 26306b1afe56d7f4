//! The citizen's rights over HTTPS against the real server: complaints about an access,
//! corrections with the disputed mark seen by an agency's release and resolved by the
//! field's source agency, data-subject requests with their legal deadlines (time moved with
//! the test clock), notifications, safe resubmission and refusals that change nothing.

use serde_json::{Value, json};
use vault_tests::server::{Limits, TestServer};

use crate::server::json_of;

const SOURCE: &str = "cong-an-tphcm-cu-tru";

#[test]
fn complaints_corrections_requests_and_notifications_over_http() {
    let (mut s, people) = TestServer::start(3, &Limits::default());
    let (a, a_fields) = (&people[0].0, &people[0].1);
    let me = s.client(None);
    let ctok = s.citizen_token(a);
    let csgt = s.client(Some(&s.agency_identity("csgt-cong-an-tphcm")));
    let source = s.client(Some(&s.agency_identity(SOURCE)));
    let body = json!({"citizen_id": a, "purpose": "driver_licence_renewal",
                      "dossier_id": "HS-2026-0042", "fields": ["full_name", "sex"],
                      "official": {"id": "can-bo-07"}});
    let (st, g) = json_of(csgt.post(s.url("/v1/grants")).json(&body).send().unwrap());
    assert_eq!(st, 201, "{g}");
    let token = g["access_token"].as_str().unwrap().to_owned();
    let get = |c: &reqwest::blocking::Client, path: &str, tok: Option<&str>| {
        let mut r = c.get(s.url(path));
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        json_of(r.send().unwrap())
    };
    let (st, rel) = get(
        &csgt,
        &format!("/v1/citizens/{a}/fields?fields=full_name"),
        Some(&token),
    );
    assert_eq!(st, 200, "{rel}");
    assert!(rel.get("disputed").is_none(), "nothing disputed yet: {rel}");
    let index = rel["audit"]["index"].as_u64().unwrap();

    // A complaint about that release, sent twice with one key (a dropped connection): one.
    let post = |path: &str, key: &str, body: Value| {
        json_of(
            me.post(s.url(path))
                .bearer_auth(&ctok)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .unwrap(),
        )
    };
    let text = "Tôi không gia hạn giấy phép lái xe.";
    let (st, c1) = post(
        "/v1/me/complaints",
        "k-1",
        json!({"audit_index": index, "text": text}),
    );
    assert_eq!((st, &c1["status"]), (201, &json!("open")), "{c1}");
    let (st, c2) = post(
        "/v1/me/complaints",
        "k-1",
        json!({"audit_index": index, "text": text}),
    );
    assert_eq!(
        (st, &c2),
        (201, &c1),
        "the retry answers the first complaint"
    );
    let (_, list) = get(&me, "/v1/me/complaints", Some(&ctok));
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["text"], text);
    // Bad input names the problem and changes nothing.
    for bad in [
        json!({"audit_index": index, "text": ""}),
        json!({"audit_index": index}),
        json!({"audit_index": index, "text": "x", "extra": 1}),
    ] {
        let (st, p) = post(
            "/v1/me/complaints",
            &format!("bad-{bad}").len().to_string(),
            bad,
        );
        assert_eq!(st, 400, "{p}");
    }
    let (st, p) = post(
        "/v1/me/complaints",
        "k-other",
        json!({"audit_index": 999_999, "text": "x"}),
    );
    assert_eq!((st, p["code"].as_str()), (404, Some("audit_not_found")));
    assert_eq!(
        get(&me, "/v1/me/complaints", Some(&ctok)).1["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A correction: the agency's next release says the field is disputed.
    let (st, corr) = post(
        "/v1/me/corrections",
        "c-1",
        json!({"field": "full_name", "proposed_value": "Nguyễn Thị Ánh", "note": "Sai tên"}),
    );
    assert_eq!(st, 201, "{corr}");
    let (st, p) = post(
        "/v1/me/corrections",
        "c-2",
        json!({"field": "phone", "proposed_value": "0900000000"}),
    );
    assert_eq!((st, p["code"].as_str()), (422, Some("no_source_of_truth")));
    let (st, p) = post(
        "/v1/me/corrections",
        "c-3",
        json!({"field": "full_name", "proposed_value": "X"}),
    );
    assert_eq!((st, p["code"].as_str()), (409, Some("correction_open")));
    let (st, rel) = get(
        &csgt,
        &format!("/v1/citizens/{a}/fields?fields=full_name,sex"),
        Some(&token),
    );
    assert_eq!(st, 200, "{rel}");
    assert_eq!(rel["disputed"], json!(["full_name"]));
    let (_, rec) = get(&me, "/v1/me/record", Some(&ctok));
    assert_eq!(rec["disputed"], json!(["full_name"]));
    // The source agency lists and resolves it; another agency sees nothing to resolve.
    let (st, queue) = get(&source, "/v1/corrections?status=open", None);
    assert_eq!(st, 200, "{queue}");
    assert_eq!(queue["items"][0]["citizen_id"], json!(a));
    assert_eq!(queue["items"][0]["proposed_value"], "Nguyễn Thị Ánh");
    assert_eq!(get(&csgt, "/v1/corrections", None).1["items"], json!([]));
    let cid = corr["id"].as_str().unwrap();
    let resolve = |c: &reqwest::blocking::Client, outcome: &str| {
        json_of(
            c.post(s.url(&format!("/v1/corrections/{cid}/resolve")))
                .json(&json!({"outcome": outcome, "reason": "Khớp CSDL quốc gia về dân cư"}))
                .send()
                .unwrap(),
        )
    };
    assert_eq!(resolve(&csgt, "accepted").1["code"], "case_not_found");
    assert_eq!(resolve(&source, "maybe").0, 400);
    let (st, done) = resolve(&source, "accepted");
    assert_eq!((st, &done["status"]), (200, &json!("accepted")), "{done}");
    assert_eq!(resolve(&source, "rejected").1["code"], "case_closed");
    let (_, rec) = get(&me, "/v1/me/record", Some(&ctok));
    assert_eq!(rec["fields"]["full_name"], "Nguyễn Thị Ánh");
    assert_eq!(rec["disputed"], json!([]));
    assert_ne!(a_fields["full_name"], json!("Nguyễn Thị Ánh"));

    // A data-subject request gets its deadlines; moving the clock past them makes it overdue.
    let (st, r) = post(
        "/v1/me/requests",
        "r-1",
        json!({"kind": "erasure", "note": "Xóa số điện thoại cũ"}),
    );
    assert_eq!((st, &r["status"]), (201, &json!("received")), "{r}");
    assert!(r["acknowledge_by"].as_str().unwrap() < r["complete_by"].as_str().unwrap());
    assert_eq!(r["overdue"], false);
    let (st, p) = post("/v1/me/requests", "r-2", json!({"kind": "forget-me"}));
    assert_eq!(st, 400, "{p}");
    s.advance_clock(40 * 86_400);
    let ctok = s.citizen_token(a);
    let (_, reqs) = get(&me, "/v1/me/requests", Some(&ctok));
    assert_eq!(reqs["items"].as_array().unwrap().len(), 1);
    assert_eq!(reqs["items"][0]["overdue"], true, "{reqs}");

    // Notifications: the correction's outcome.
    let (_, n) = get(&me, "/v1/me/notifications", Some(&ctok));
    assert!(
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "correction_resolved"
                && i["outcome"] == "accepted"
                && i["field"] == "full_name"),
        "{n}"
    );
    // Another citizen sees none of it.
    let other = s.citizen_token(&people[1].0);
    for path in [
        "/v1/me/complaints",
        "/v1/me/corrections",
        "/v1/me/requests",
        "/v1/me/notifications",
    ] {
        assert_eq!(get(&me, path, Some(&other)).1["items"], json!([]), "{path}");
    }
    // The events are in the log, and no text or value is.
    assert!(s.stop().unwrap().success(), "{}", s.log_text());
    let log = s.vault.ctl(&["audit", "export"]);
    assert!(log.status.success());
    let lines = String::from_utf8(log.stdout).unwrap();
    for event in [
        "complaint.filed",
        "correction.requested",
        "correction.resolved",
        "request.received",
    ] {
        assert!(lines.contains(&format!("\"event\":\"{event}\"")), "{event}");
    }
    for secret in [
        "gia hạn giấy phép",
        "Nguyễn Thị Ánh",
        "Xóa số điện thoại",
        a.as_str(),
    ] {
        assert!(!lines.contains(secret), "{secret} in the audit log");
    }
}
