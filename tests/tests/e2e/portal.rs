//! The citizen portal over HTTPS against `vault-server dev` (no browser: the browser tests
//! in `tests/browser/` drive Chromium): sign-in through the dev issuer with PKCE, the
//! `__Host-` session cookie and the page's security headers, no open redirect, CSRF, a form
//! sent twice acting once, errors naming the field in the reader's language, escaping of a
//! hostile name, logout ending the session on the server, and the return to the page after
//! an expired session.

use serde_json::json;
use vault_tests::portal::{Browser, DevServer as Dev, my};

#[test]
fn the_portal_signs_in_with_pkce_keeps_forms_safe_and_escapes_every_value() {
    let dev = Dev::start();
    let a = dev.citizen(0);
    let mut b = Browser::new(&dev);

    // Signed out: the landing page, Vietnamese first, with the security headers.
    let r = dev.client(None).get(dev.url("/portal")).send().unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let page = r.text().unwrap();
    assert!(page.contains("<html lang=\"vi\">") && page.contains("Đăng nhập"));

    // An expired session (none) on a page returns there after sign-in.
    let (st, login, _) = b.get("/portal/record");
    assert_eq!(
        (st, login.as_str()),
        (303, "/portal/login?next=%2Fportal%2Frecord")
    );
    assert_eq!(b.sign_in(&a, "/portal/record"), "/portal/record");
    let (st, _, page) = b.get("/portal/record");
    assert_eq!(st, 200);
    assert!(page.contains("id=\"record\""));

    // No open redirect: another origin as `next` ends on /portal.
    let mut other = Browser::new(&dev);
    assert_eq!(other.sign_in(&a, "https://evil.example/portal"), "/portal");
    let mut other = Browser::new(&dev);
    assert_eq!(other.sign_in(&a, "//evil.example/"), "/portal");

    // A form without the session's CSRF token changes nothing.
    let (st, _, _) = b.post(
        "/portal/requests",
        &[("csrf", "forged"), ("kind", "access"), ("form_key", "k1")],
    );
    assert_eq!(st, 303);
    assert_eq!(my(&dev, &a, "requests")["items"], json!([]));

    // A form sent twice (a dropped connection, a double click) files one request.
    let csrf = b.csrf();
    let (_, _, home) = b.get("/portal");
    let key = home
        .split("name=\"form_key\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    assert!(!key.is_empty());
    for _ in 0..2 {
        let (st, to, _) = b.post(
            "/portal/requests",
            &[
                ("csrf", &csrf),
                ("form_key", &key),
                ("kind", "erasure"),
                ("note", "Xóa số cũ"),
            ],
        );
        assert_eq!((st, to.as_str()), (303, "/portal?done=request#requests"));
    }
    let requests = my(&dev, &a, "requests");
    assert_eq!(requests["items"].as_array().unwrap().len(), 1, "{requests}");
    let (_, _, home) = b.get("/portal?done=request");
    assert!(home.contains("Đã gửi yêu cầu.") && home.contains("Hạn hoàn thành"));

    // Bad input names the field, in the reader's language, and changes nothing.
    let (st, _, page) = b.post(
        "/portal/corrections",
        &[
            ("csrf", &csrf),
            ("form_key", "c1"),
            ("field", "full_name"),
            ("proposed_value", " "),
        ],
    );
    assert_eq!(st, 400);
    assert!(page.contains("Vui lòng nhập: Giá trị đề nghị."), "{page}");
    b.lang = Some("en");
    let (st, _, page) = b.post(
        "/portal/corrections",
        &[
            ("csrf", &csrf),
            ("form_key", "c2"),
            ("field", "phone"),
            ("proposed_value", "0900000000"),
        ],
    );
    assert_eq!(st, 400);
    assert!(page.contains("<html lang=\"en\">"));
    assert!(
        page.contains("Phone number: no agency is responsible for correcting this field."),
        "{page}"
    );
    b.lang = None;
    assert_eq!(my(&dev, &a, "corrections")["items"], json!([]));

    // A hostile name is shown as text, never as markup.
    let source = dev.client(Some("cong-an-tphcm-cu-tru"));
    let evil = "079999000001";
    let r = source
        .put(dev.url(&format!("/v1/citizens/{evil}")))
        .json(&json!({"fields": {"full_name": "<script>alert(1)</script>",
                                  "residence_ward": "phuong-sai-gon", "date_of_birth": "1990-01-01"},
                      "source": "e2e"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut e = Browser::new(&dev);
    e.sign_in(evil, "/portal/record");
    let (_, _, page) = e.get("/portal/record");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") || page.contains("&#60;script"),
        "{page}"
    );
    assert!(
        !page.contains("<script>alert(1)"),
        "the name reached the page as markup"
    );

    // Logout ends the session on the server: the old cookie opens nothing.
    let old = b.cookies.get("__Host-vault-session").cloned().unwrap();
    let (st, to, _) = b.post("/portal/logout", &[("csrf", &csrf)]);
    assert_eq!((st, to.as_str()), (303, "/portal"));
    let mut stale = Browser::new(&dev);
    stale.cookies.insert("__Host-vault-session".into(), old);
    let (st, to, _) = stale.get("/portal/record");
    assert_eq!(
        (st, to.as_str()),
        (303, "/portal/login?next=%2Fportal%2Frecord")
    );

    // Nothing of the citizen's appears in a URL the portal made: receipts go by index.
    let (_, _, page) = e.get("/portal");
    assert!(!page.contains(&format!("/{evil}")));
}

#[test]
fn the_audit_console_lets_an_auditor_search_prove_review_answer_and_report() {
    let dev = Dev::start();
    let a = dev.citizen(0);
    let hospital = dev.client(Some("benh-vien-cho-ray"));
    let g: serde_json::Value = hospital
        .post(dev.url("/v1/grants"))
        .json(
            &json!({"citizen_id": a, "purpose": "emergency_care", "dossier_id": "CC-9",
                      "fields": ["blood_type"], "official": {"id": "bac-si-02"}}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    let gid = g["grant_id"].as_str().unwrap().to_owned();
    let rel: serde_json::Value = hospital
        .get(dev.url(&format!("/v1/citizens/{a}/fields?fields=blood_type")))
        .bearer_auth(g["access_token"].as_str().unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let index = rel["audit"]["index"].as_u64().unwrap();
    let me = dev.client(None);
    let r = me
        .post(dev.url("/v1/me/complaints"))
        .bearer_auth(dev.token(&a))
        .json(&json!({"audit_index": index, "text": "Tôi không nhập viện."}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let mut b = Browser::new(&dev);
    // Signed out: the landing page; signing in needs an auditor id.
    let (_, _, page) = b.get("/audit-console");
    assert!(page.contains("<html lang=\"vi\">") && page.contains("Đăng nhập"));
    assert_eq!(
        b.sign_in_console("kt-01", "auditor_id"),
        (303, "/audit-console".into())
    );
    let (st, _, home) = b.get("/audit-console");
    assert_eq!(st, 200);
    for id in [
        "entries",
        "break-glass",
        "complaints",
        "requests",
        "reports",
        "checkpoints",
    ] {
        assert!(home.contains(&format!("id=\"{id}\"")), "#{id}");
    }
    assert!(home.contains(&gid) && home.contains("Tôi không nhập viện."));
    let csrf = hidden_inputs_value(&home, "csrf");

    // Search by citizen id, by POST: the id never reaches a URL.
    let (st, _, results) = b.post(
        "/audit-console/search",
        &[("csrf", &csrf), ("citizen_id", &a)],
    );
    assert_eq!(st, 200);
    assert!(
        results.contains(&format!("/audit-console/entries/{index}")),
        "{results}"
    );
    let (st, _, bad) = b.post(
        "/audit-console/search",
        &[("csrf", &csrf), ("citizen_id", "12")],
    );
    assert_eq!(st, 400);
    assert!(
        bad.contains("Số định danh cá nhân: giá trị không hợp lệ."),
        "{bad}"
    );
    // An entry page carries its proof for the browser to check.
    let (st, _, entry) = b.get(&format!("/audit-console/entries/{index}"));
    assert_eq!(st, 200);
    assert!(entry.contains("id=\"proof-status\"") && entry.contains("id=\"proof-data\""));
    let (st, _, cps) = b.get(&format!("/audit-console/checkpoints?from={index}"));
    assert_eq!(st, 200);
    assert!(cps.contains("id=\"consistency-data\""), "{cps}");

    // Review the break-glass grant and answer the complaint from the console.
    let key = home
        .split(&format!("/audit-console/break-glass/{gid}/review"))
        .nth(1)
        .and_then(|s| s.split("name=\"form_key\" value=\"").nth(1))
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let (st, to, _) = b.post(
        &format!("/audit-console/break-glass/{gid}/review"),
        &[
            ("csrf", &csrf),
            ("form_key", &key),
            ("outcome", "justified"),
            ("note", "Cấp cứu thật."),
        ],
    );
    assert_eq!((st, to.as_str()), (303, "/audit-console?done=review"));
    let complaint_id = home
        .split("/audit-console/complaints/")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_owned();
    let (st, to, _) = b.post(
        &format!("/audit-console/complaints/{complaint_id}/answer"),
        &[
            ("csrf", &csrf),
            ("form_key", "ans-1"),
            ("outcome", "dismissed"),
            ("text", "Bệnh viện có hồ sơ."),
        ],
    );
    assert_eq!((st, to.as_str()), (303, "/audit-console?done=answer"));
    let mine = my(&dev, &a, "complaints");
    assert_eq!(mine["items"][0]["answer"], "Bệnh viện có hồ sơ.");
    let notes = my(&dev, &a, "notifications");
    assert!(
        notes["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "break_glass_reviewed")
    );

    // A data-subject request: acknowledged with another processor (20 days), then extended
    // by a length the auditor types; a length out of range names the field.
    let r: serde_json::Value = me
        .post(dev.url("/v1/me/requests"))
        .bearer_auth(dev.token(&a))
        .header("Idempotency-Key", "rq-1")
        .json(&json!({"kind": "access"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let rid = r["id"].as_str().unwrap().to_owned();
    let first_due = r["complete_by"].as_str().unwrap().to_owned();
    let (_, _, home) = b.get("/audit-console");
    let rq_key = |home: &str| {
        home.split(&format!("/audit-console/requests/{rid}"))
            .nth(1)
            .and_then(|s| s.split("name=\"form_key\" value=\"").nth(1))
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_owned()
    };
    let key = rq_key(&home);
    let (st, to, _) = b.post(
        &format!("/audit-console/requests/{rid}"),
        &[
            ("csrf", &csrf),
            ("form_key", &key),
            ("status", "acknowledged"),
            ("other_processor", "on"),
        ],
    );
    assert_eq!((st, to.as_str()), (303, "/audit-console?done=update"));
    let (_, _, home) = b.get("/audit-console");
    let key = rq_key(&home);
    let (st, _, bad) = b.post(
        &format!("/audit-console/requests/{rid}"),
        &[
            ("csrf", &csrf),
            ("form_key", &key),
            ("status", "extended"),
            ("extend_days", "16"),
        ],
    );
    assert_eq!(st, 400);
    assert!(bad.contains("Số ngày gia hạn"), "{bad}");
    let (st, _, _) = b.post(
        &format!("/audit-console/requests/{rid}"),
        &[
            ("csrf", &csrf),
            ("form_key", &key),
            ("status", "extended"),
            ("extend_days", "5"),
        ],
    );
    assert_eq!(st, 303);
    let mine = my(&dev, &a, "requests");
    let now = &mine["items"][0];
    assert_eq!(now["status"], "extended", "{mine}");
    assert!(now["complete_by"].as_str().unwrap() > first_due.as_str());
    // 15 days became 20 (another processor), then 5 more: at least 8 days later than first
    // due even if the first end was moved past a weekend.
    let t = |s: &serde_json::Value| {
        vault_core::audit::parse_time(s.as_str().unwrap())
            .unwrap()
            .as_millis()
    };
    assert!(
        t(&now["complete_by"]) - t(&json!(first_due)) >= 8 * 86_400_000,
        "{mine}"
    );

    // The breach report for the hospital.
    let (st, _, report) = b.get("/audit-console/reports/breach?agency=benh-vien-cho-ray");
    assert_eq!(st, 200);
    assert!(report.contains("id=\"affected-citizens\">1<"), "{report}");
    let (st, _, _) = b.get("/audit-console/reports/inventory");
    assert_eq!(st, 200);

    // A citizen cannot use the console.
    let mut c = Browser::new(&dev);
    let (st, _) = c.sign_in_console(&a, "auditor_id");
    assert_eq!(st, 400, "a citizen id is not an auditor's");
}

fn hidden_inputs_value(page: &str, name: &str) -> String {
    vault_tests::portal::value_of(page, name)
}

#[test]
fn an_auditor_certificate_signs_in_to_the_console_bound_to_that_certificate() {
    let dev = Dev::start();
    let mut b = Browser::with_certificate(&dev, Some("auditor"));
    let (st, _, page) = b.get("/audit-console");
    assert_eq!(st, 200);
    assert!(
        page.contains("id=\"certificate-login\"") && page.contains("dev-auditor"),
        "{page}"
    );
    // Another site cannot sign the browser in.
    let (st, _, _) = b.post_with(
        "/audit-console/login/certificate",
        &[],
        &[("origin", "https://evil.example")],
    );
    assert_eq!(st, 400);
    let (st, _, _) = b.post_with(
        "/audit-console/login/certificate",
        &[],
        &[("sec-fetch-site", "cross-site")],
    );
    assert_eq!(st, 400);
    assert!(!b.cookies.contains_key("__Host-vault-console"));
    let (st, to, _) = b.post_with(
        "/audit-console/login/certificate",
        &[],
        &[("origin", &dev.origin), ("sec-fetch-site", "same-origin")],
    );
    assert_eq!((st, to.as_str()), (303, "/audit-console"));
    let (st, _, home) = b.get("/audit-console");
    assert_eq!(st, 200);
    assert!(home.contains("id=\"break-glass\""), "{home}");

    // The cookie is worthless over a connection without the certificate.
    let mut thief = Browser::new(&dev);
    thief.cookies = b.cookies.clone();
    let (_, _, page) = thief.get("/audit-console");
    assert!(!page.contains("id=\"break-glass\""));
    assert!(!page.contains("id=\"certificate-login\""));
    // Nor does an agency's certificate sign in.
    let mut agency = Browser::with_certificate(&dev, Some("benh-vien-cho-ray"));
    let (st, _, _) = agency.post("/audit-console/login/certificate", &[]);
    assert_eq!(st, 400);
    assert!(!agency.cookies.contains_key("__Host-vault-console"));
}
