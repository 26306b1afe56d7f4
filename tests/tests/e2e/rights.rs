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

#[test]
fn auditors_review_break_glass_answer_complaints_and_move_requests_and_citizens_see_it() {
    let (mut s, people) = TestServer::start(3, &Limits::default());
    let a = &people[0].0;
    let me = s.client(None);
    let hospital = s.client(Some(&s.agency_identity("benh-vien-cho-ray")));
    let au = s.auditor_token("kt-01");
    let body = json!({"citizen_id": a, "purpose": "emergency_care", "dossier_id": "CC-1",
                      "fields": ["blood_type"], "official": {"id": "bac-si-01"}});
    let (st, g) = json_of(
        hospital
            .post(s.url("/v1/grants"))
            .json(&body)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 201, "{g}");
    let gid = g["grant_id"].as_str().unwrap().to_owned();
    let (st, rel) = json_of(
        hospital
            .get(s.url(&format!("/v1/citizens/{a}/fields?fields=blood_type")))
            .bearer_auth(g["access_token"].as_str().unwrap())
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{rel}");
    let get = |path: &str, tok: &str| json_of(me.get(s.url(path)).bearer_auth(tok).send().unwrap());
    let post = |path: &str, tok: &str, body: Value| {
        json_of(
            me.post(s.url(path))
                .bearer_auth(tok)
                .json(&body)
                .send()
                .unwrap(),
        )
    };

    // Break-glass: the queue shows the grant, its due time and its release; the review
    // reaches the citizen.
    let (st, queue) = get("/v1/audit/break-glass?status=unreviewed", &au);
    assert_eq!(st, 200, "{queue}");
    assert_eq!(queue[0]["grant_id"], json!(gid));
    assert_eq!(queue[0]["releases"], json!([rel["audit"]["index"]]));
    assert!(queue[0]["review_due"].as_str().unwrap() > queue[0]["issued_at"].as_str().unwrap());
    let path = format!("/v1/audit/break-glass/{gid}/review");
    assert_eq!(
        post(&path, &au, json!({"outcome": "maybe", "note": "x"})).0,
        400
    );
    let (st, r) = post(
        &path,
        &au,
        json!({"outcome": "unjustified", "note": "Không có ca cấp cứu."}),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        post(&path, &au, json!({"outcome": "justified", "note": "x"})).1["code"],
        "grant_not_pending"
    );
    let (_, done) = get("/v1/audit/break-glass?status=reviewed", &au);
    assert_eq!(done[0]["review"]["note"], "Không có ca cấp cứu.");
    let ctok = s.citizen_token(a);
    let (_, n) = get("/v1/me/notifications", &ctok);
    assert!(
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "break_glass_reviewed" && i["outcome"] == "unjustified"),
        "{n}"
    );

    // A complaint: queued with its entry, answered once, seen by the citizen.
    let index = rel["audit"]["index"].as_u64().unwrap();
    let (st, c) = post(
        "/v1/me/complaints",
        &ctok,
        json!({"audit_index": index, "text": "Tôi không cấp cứu."}),
    );
    assert_eq!(st, 201, "{c}");
    let (_, open) = get("/v1/audit/complaints?status=open", &au);
    assert_eq!(open[0]["id"], c["id"]);
    assert_eq!(open[0]["entry"]["event"], "record.released");
    let cpath = format!("/v1/audit/complaints/{}/answer", c["id"].as_str().unwrap());
    let (st, ans) = post(
        &cpath,
        &au,
        json!({"outcome": "upheld", "text": "Đã xử lý bệnh viện."}),
    );
    assert_eq!((st, &ans["status"]), (200, &json!("answered")), "{ans}");
    assert_eq!(
        post(&cpath, &au, json!({"outcome": "dismissed", "text": "x"})).1["code"],
        "case_closed"
    );
    let (_, mine) = get("/v1/me/complaints", &ctok);
    assert_eq!(mine["items"][0]["answer"], "Đã xử lý bệnh viện.");
    assert_eq!(mine["items"][0]["outcome"], "upheld");
    assert_eq!(
        get("/v1/audit/complaints?status=answered", &au)
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(get("/v1/audit/complaints?status=closed", &au).0, 400);

    // An erasure request: acknowledged, then completed, which erases the citizen.
    let (st, r) = post("/v1/me/requests", &ctok, json!({"kind": "erasure"}));
    assert_eq!(st, 201, "{r}");
    let rpath = format!("/v1/audit/requests/{}", r["id"].as_str().unwrap());
    let (_, open) = get("/v1/audit/requests?status=open", &au);
    assert_eq!(open[0]["id"], r["id"]);
    let (st, ack) = post(
        &rpath,
        &au,
        json!({"status": "acknowledged", "note": "Đã nhận"}),
    );
    assert_eq!((st, &ack["status"]), (200, &json!("acknowledged")), "{ack}");
    let (_, n) = get("/v1/me/notifications", &ctok);
    assert!(
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "request_status" && i["status"] == "acknowledged"),
        "{n}"
    );
    let (st, fin) = post(
        &rpath,
        &au,
        json!({"status": "completed", "note": "Đã xóa"}),
    );
    assert_eq!((st, &fin["status"]), (200, &json!("completed")), "{fin}");
    assert_eq!(get("/v1/me/record", &ctok).1["code"], "citizen_not_found");
    assert_eq!(get("/v1/audit/requests?status=open", &au).1, json!([]));

    // A citizen's token is not an auditor's.
    assert_eq!(get("/v1/audit/complaints", &ctok).0, 403);

    // Reports: the breach notification (JSON and a printable page), the record of
    // processing, the declare-once ledger.
    let (st, b) = get("/v1/audit/reports/breach?agency=benh-vien-cho-ray", &au);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["affected_citizens"], 1);
    assert_eq!(b["agencies"], json!(["benh-vien-cho-ray"]));
    assert_eq!(b["events"]["record.released"], 1);
    assert!(
        b["fields"]
            .as_array()
            .unwrap()
            .contains(&json!("blood_type"))
    );
    let page = me
        .get(s.url("/v1/audit/reports/breach?agency=benh-vien-cho-ray"))
        .bearer_auth(&au)
        .header("accept", "text/html")
        .send()
        .unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = page.text().unwrap();
    assert!(
        page.contains("<html lang=\"vi\">") && page.contains("Bệnh viện Chợ Rẫy"),
        "{page}"
    );
    assert!(!page.contains(a.as_str()), "no citizen id on the page");
    let (_, inv) = get("/v1/audit/reports/inventory", &au);
    let emergency = inv["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "emergency_care")
        .unwrap()
        .clone();
    assert_eq!(emergency["break_glass"], true);
    assert!(
        emergency["agencies"]
            .as_array()
            .unwrap()
            .contains(&json!("benh-vien-cho-ray"))
    );
    let (_, reuse) = get("/v1/audit/reports/reuse", &au);
    let line = reuse["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["agency"] == "benh-vien-cho-ray")
        .unwrap()
        .clone();
    assert_eq!(
        (line["releases"].as_u64(), line["field_values"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        get(
            "/v1/audit/reports/breach?from=2026-12-31&to=2026-01-01",
            &au
        )
        .0,
        400
    );
    // Anomalies: normal work raises none under the repository's thresholds.
    let (st, found) = get("/v1/audit/anomalies", &au);
    assert_eq!(st, 200, "{found}");
    assert_eq!(found, json!([]), "no false positive on this workload");

    // The export over HTTPS: exactly `vaultctl audit export`'s lines, audited.
    let export = |q: &str| {
        let r = me
            .get(s.url(&format!("/v1/audit/export{q}")))
            .bearer_auth(&au)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, ct, r.text().unwrap())
    };
    let (st, ct, all) = export("");
    assert_eq!((st, ct.as_deref()), (200, Some("application/x-ndjson")));
    let n = all.lines().count();
    assert!(n > 10);
    let (_, _, part) = export("?from=3&to=7");
    assert_eq!(
        part.lines().collect::<Vec<_>>(),
        all.lines().skip(3).take(4).collect::<Vec<_>>()
    );
    assert_eq!(export("?from=7&to=3").0, 400);
    assert_eq!(export("?to=999999999").0, 400);
    assert!(s.stop().unwrap().success(), "{}", s.log_text());
    let cli = s.vault.ctl(&["audit", "export", "--to", &n.to_string()]);
    assert!(cli.status.success());
    assert_eq!(
        String::from_utf8(cli.stdout).unwrap(),
        all,
        "byte-identical to vaultctl's"
    );
    let log = String::from_utf8(s.vault.ctl(&["audit", "export"]).stdout).unwrap();
    assert!(
        log.contains(&format!("\"range_from\":0,\"range_to\":{n}")),
        "the export is audited"
    );
    for event in [
        "breakglass.reviewed",
        "complaint.answered",
        "request.updated",
        "record.erased",
    ] {
        assert!(log.contains(&format!("\"event\":\"{event}\"")), "{event}");
    }
    for text in ["ca cấp cứu", "Đã xử lý bệnh viện", "Đã nhận"] {
        assert!(!log.contains(text), "{text} in the audit log");
    }
}
