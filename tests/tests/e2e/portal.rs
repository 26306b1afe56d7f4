//! The citizen portal over HTTPS against `vault-server dev` (no browser: the browser tests
//! in `tests/browser/` drive Chromium): sign-in through the dev issuer with PKCE, the
//! `__Host-` session cookie and the page's security headers, no open redirect, CSRF, a form
//! sent twice acting once, errors naming the field in the reader's language, escaping of a
//! hostile name, logout ending the session on the server, and the return to the page after
//! an expired session.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use vault_tests::server::install_provider;
use vault_tests::{binary, text};

/// A dev-mode server in a temporary directory, stopped on drop.
struct Dev {
    _dir: tempfile::TempDir,
    data: PathBuf,
    child: Child,
    origin: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("vault-data");
        let mut child = Command::new(binary("vault-server"))
            .args([
                "dev",
                "--data",
                data.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env("VAULT_SERVER_METRICS_LISTEN", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(240);
        let origin = loop {
            assert!(Instant::now() < deadline, "vault-server dev did not start");
            let line = lines.next().map(Result::unwrap);
            assert!(line.is_some(), "vault-server dev exited before listening");
            let line = line.unwrap_or_default();
            if let Some(addr) = line.strip_prefix("vault-server: listening on ") {
                break addr.trim().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            _dir: dir,
            data,
            child,
            origin,
        }
    }

    fn client(&self, agency: Option<&str>) -> Client {
        install_provider();
        let dev = self.data.join("dev");
        let ca = std::fs::read(dev.join("ca.pem")).unwrap();
        let mut b = Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60));
        if let Some(a) = agency {
            let mut pem = std::fs::read(dev.join("agencies").join(format!("{a}.pem"))).unwrap();
            pem.extend(std::fs::read(dev.join("agencies").join(format!("{a}.key"))).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.origin)
        }
    }

    fn citizen(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.data.join("dev/citizens.jsonl")).unwrap();
        let v: Value = serde_json::from_str(text.lines().nth(n).unwrap()).unwrap();
        v["citizen_id"].as_str().unwrap().to_owned()
    }

    fn token(&self, citizen: &str) -> String {
        let out = Command::new(binary("vaultctl"))
            .args([
                "dev",
                "token",
                "--data",
                self.data.to_str().unwrap(),
                "--citizen",
                citizen,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }
}

/// A browser: cookies by name, no redirects followed.
struct Browser<'a> {
    dev: &'a Dev,
    http: Client,
    cookies: HashMap<String, String>,
    lang: Option<&'static str>,
}

impl<'a> Browser<'a> {
    fn new(dev: &'a Dev) -> Self {
        Self {
            dev,
            http: dev.client(None),
            cookies: HashMap::new(),
            lang: None,
        }
    }

    fn jar(&self) -> String {
        let mut c: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if let Some(l) = self.lang {
            c.push(format!("__Host-vault-lang={l}"));
        }
        c.join("; ")
    }

    fn keep(&mut self, r: &Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            assert!(
                v.contains("; Secure") && v.contains("Path=/") && !v.contains("Domain"),
                "{v}"
            );
            let (name, value) = v.split(';').next().unwrap().split_once('=').unwrap();
            if v.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn get(&mut self, path: &str) -> (u16, String, String) {
        let r = self
            .http
            .get(self.dev.url(path))
            .header("cookie", self.jar())
            .send()
            .unwrap();
        self.answer(r)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let r = self
            .http
            .post(self.dev.url(path))
            .header("cookie", self.jar())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
            .send()
            .unwrap();
        self.answer(r)
    }

    /// (status, Location, body).
    fn answer(&mut self, r: Response) -> (u16, String, String) {
        self.keep(&r);
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, location, r.text().unwrap())
    }

    /// Signs in through the dev issuer as `citizen`, asking to come back to `next`; where
    /// the portal sends the browser at the end.
    fn sign_in(&mut self, citizen: &str, next: &str) -> String {
        let (st, to_issuer, _) = self.get(&format!("/portal/login?next={}", encode(next)));
        assert_eq!(st, 303);
        assert!(
            to_issuer.starts_with("/dev-issuer/authorize?"),
            "{to_issuer}"
        );
        assert!(to_issuer.contains("code_challenge_method=S256"));
        let (st, _, page) = self.get(&to_issuer);
        assert_eq!(st, 200, "{page}");
        assert!(page.contains("Số định danh cá nhân") && page.contains("name=\"citizen_id\""));
        let mut form = hidden_inputs(&page);
        form.push(("citizen_id".into(), citizen.into()));
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (st, callback, _) = self.post("/dev-issuer/authorize", &pairs);
        assert_eq!(st, 303);
        assert!(callback.contains("/portal/callback?code="), "{callback}");
        let (st, back, body) = self.get(&callback);
        assert_eq!(st, 303, "{body}");
        assert!(self.cookies.contains_key("__Host-vault-session"));
        // The code and state are used once.
        let (st, _, _) = self.get(&callback);
        assert_eq!(st, 400, "a callback replayed");
        back
    }

    fn csrf(&mut self) -> String {
        let (_, _, page) = self.get("/portal");
        value_of(&page, "csrf")
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn hidden_inputs(page: &str) -> Vec<(String, String)> {
    page.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.split_once("value=\"")?.1.split_once('"')?.0;
            Some((name.to_owned(), unescape(value)))
        })
        .collect()
}

fn value_of(page: &str, name: &str) -> String {
    hidden_inputs(page)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn my(dev: &Dev, citizen: &str, what: &str) -> Value {
    let r = dev
        .client(None)
        .get(dev.url(&format!("/v1/me/{what}")))
        .bearer_auth(dev.token(citizen))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().unwrap()
}

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
