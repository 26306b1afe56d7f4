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
