//! A dev-mode vault for tests and benchmarks of the pages: `DevServer` starts
//! `vault-server dev` in a temporary directory; `Browser` signs in through the dev issuer
//! (authorization code + PKCE) and keeps its cookies, as a browser would, without one.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::server::install_provider;
use crate::{binary, text};
use reqwest::blocking::{Client, Response};
use serde_json::Value;

/// A dev-mode server in a temporary directory, stopped on drop.
#[derive(Debug)]
pub struct DevServer {
    _dir: tempfile::TempDir,
    /// The data directory.
    pub data: PathBuf,
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub origin: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DevServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().must();
        let data = dir.path().join("vault-data");
        let mut child = Command::new(binary("vault-server"))
            .args([
                "dev",
                "--data",
                data.to_str().must(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env("VAULT_SERVER_METRICS_LISTEN", "off")
            // Request lines as JSON (benchmarks read their `micros`).
            .env("VAULT_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .must();
        let mut lines = BufReader::new(child.stderr.take().must()).lines();
        let deadline = Instant::now() + Duration::from_secs(240);
        let origin = loop {
            assert!(Instant::now() < deadline, "vault-server dev did not start");
            let line = lines.next().map(|l| l.must());
            assert!(line.is_some(), "vault-server dev exited before listening");
            let line = line.unwrap_or_default();
            if let Some(addr) = crate::server::after(&line, "vault-server: listening on ") {
                break addr.to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe; the request lines
        // (JSON, with the server-side time in `micros`) are kept for benchmarks.
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("\"micros\"")
                    && let Ok(mut k) = kept.lock()
                {
                    k.push(line);
                }
            }
        });
        Self {
            _dir: dir,
            data,
            child,
            origin,
            log,
        }
    }

    /// The server's request log lines so far (JSON), and clears them.
    pub fn take_request_log(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    pub fn client(&self, agency: Option<&str>) -> Client {
        install_provider();
        let dev = self.data.join("dev");
        let ca = std::fs::read(dev.join("ca.pem")).must();
        let mut b = Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).must())
            .redirect(reqwest::redirect::Policy::none())
            // A connection per request: a kept-alive one the server closed while a loaded
            // machine was slow would fail the next POST (which is not retried).
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60));
        if let Some(a) = agency {
            // `auditor` is the dev auditor's certificate; any other name an agency's.
            let base = if a == "auditor" {
                dev.join("auditor")
            } else {
                dev.join("agencies").join(a)
            };
            let mut pem = std::fs::read(base.with_extension("pem")).must();
            pem.extend(std::fs::read(base.with_extension("key")).must());
            b = b.identity(reqwest::Identity::from_pem(&pem).must());
        }
        b.build().must()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.origin)
        }
    }

    pub fn citizen(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.data.join("dev/citizens.jsonl")).must();
        let v: Value = serde_json::from_str(text.lines().nth(n).must()).must();
        v["citizen_id"].as_str().must().to_owned()
    }

    pub fn token(&self, citizen: &str) -> String {
        let out = Command::new(binary("vaultctl"))
            .args([
                "dev",
                "token",
                "--data",
                self.data.to_str().must(),
                "--citizen",
                citizen,
            ])
            .output()
            .must();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }
}

/// A browser: cookies by name, no redirects followed.
#[derive(Debug)]
pub struct Browser<'a> {
    dev: &'a DevServer,
    http: Client,
    /// Cookies by name.
    pub cookies: HashMap<String, String>,
    /// The language cookie to send, if any.
    pub lang: Option<&'static str>,
}

impl<'a> Browser<'a> {
    pub fn new(dev: &'a DevServer) -> Self {
        Self::with_certificate(dev, None)
    }

    /// A browser presenting a client certificate (`dev.client`'s names).
    pub fn with_certificate(dev: &'a DevServer, who: Option<&str>) -> Self {
        Self {
            dev,
            http: dev.client(who),
            cookies: HashMap::new(),
            lang: None,
        }
    }

    pub fn jar(&self) -> String {
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
            let v = v.to_str().must();
            assert!(
                v.contains("; Secure") && v.contains("Path=/") && !v.contains("Domain"),
                "{v}"
            );
            let (name, value) = v.split(';').next().must().split_once('=').must();
            if v.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn get(&mut self, path: &str) -> (u16, String, String) {
        let r = self
            .http
            .get(self.dev.url(path))
            .header("cookie", self.jar())
            .send()
            .must();
        self.answer(r)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        self.post_with(path, form, &[])
    }

    /// A form POST with extra request headers.
    pub fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let r = self
            .http
            .post(self.dev.url(path))
            .header("cookie", self.jar())
            .header("content-type", "application/x-www-form-urlencoded");
        let r = headers
            .iter()
            .fold(r, |r, (k, v)| r.header(*k, *v))
            .body(body.join("&"))
            .send()
            .must();
        self.answer(r)
    }

    /// (status, Location, body).
    fn answer(&mut self, r: Response) -> (u16, String, String) {
        self.keep(&r);
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().must().to_owned())
            .unwrap_or_default();
        (status, location, r.text().must())
    }

    /// Signs in through the dev issuer as `citizen`, asking to come back to `next`; where
    /// the portal sends the browser at the end.
    pub fn sign_in(&mut self, citizen: &str, next: &str) -> String {
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

    /// Signs in to the audit console through the dev issuer as auditor `id`; the final
    /// (status, Location) of the callback.
    pub fn sign_in_console(&mut self, id: &str, field: &str) -> (u16, String) {
        let (st, to_issuer, _) = self.get("/audit-console/login");
        assert_eq!(st, 303);
        let (st, _, page) = self.get(&to_issuer);
        assert_eq!(st, 200, "{page}");
        assert!(
            page.contains("name=\"auditor_id\""),
            "the console asks for an auditor id"
        );
        let mut form = hidden_inputs(&page);
        form.push((field.into(), id.into()));
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (st, callback, body) = self.post("/dev-issuer/authorize", &pairs);
        if st != 303 {
            return (st, body);
        }
        let (st, back, _) = self.get(&callback);
        (st, back)
    }

    pub fn csrf(&mut self) -> String {
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

pub fn hidden_inputs(page: &str) -> Vec<(String, String)> {
    page.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.split_once("value=\"")?.1.split_once('"')?.0;
            Some((name.to_owned(), unescape(value)))
        })
        .collect()
}

pub fn value_of(page: &str, name: &str) -> String {
    hidden_inputs(page)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

pub fn my(dev: &DevServer, citizen: &str, what: &str) -> Value {
    let r = dev
        .client(None)
        .get(dev.url(&format!("/v1/me/{what}")))
        .bearer_auth(dev.token(citizen))
        .send()
        .must();
    assert_eq!(r.status().as_u16(), 200);
    r.json().must()
}

/// `unwrap` for test support: a failure is a failed test, with its cause.
trait Must<T> {
    fn must(self) -> T;
}

impl<T, E: std::fmt::Display> Must<T> for Result<T, E> {
    fn must(self) -> T {
        self.unwrap_or_else(|e| panic!("{e}"))
    }
}

impl<T> Must<T> for Option<T> {
    fn must(self) -> T {
        self.unwrap_or_else(|| panic!("a value the test needs is missing"))
    }
}
