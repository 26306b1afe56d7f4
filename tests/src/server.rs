//! A real `vault-server` for tests: its own PKI made with rcgen (CA, server, agency, auditor
//! and hostile certificates), its own OIDC issuer (an Ed25519 JWKS file), a vault with demo
//! citizens, the server started on port 0, and mTLS clients built with rustls (ring).

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};

use crate::{TestVault, binary, policies_dir, text};

/// OIDC issuer and audience of test tokens.
pub const ISSUER: &str = "https://id.test.vn";
/// Audience of test tokens.
pub const AUDIENCE: &str = "vault-test";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Installs the ring provider once for reqwest's rustls.
pub fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A certificate authority that writes PEM files.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// CA certificate PEM.
    pub pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

impl Ca {
    /// A new CA named `cn`.
    pub fn new(cn: &str) -> Self {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let params = || {
            let mut p =
                CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p
        };
        let pem = params()
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("{e}"))
            .pem();
        Self {
            issuer: Issuer::new(params(), key),
            pem,
        }
    }

    /// A CRL (PEM) revoking these serial numbers.
    pub fn crl(&self, serials: &[u64]) -> String {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2025, 6, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .and_then(|c| c.pem())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Issues a client certificate with a given serial number.
    pub fn issue_serial(&self, sans: Vec<SanType>, serial: u64) -> (String, String) {
        self.issue_with(sans, false, false, Some(serial))
    }

    /// Issues a certificate; returns (cert PEM, key PEM). `expired` makes one that ended
    /// yesterday.
    pub fn issue(&self, sans: Vec<SanType>, server: bool, expired: bool) -> (String, String) {
        self.issue_with(sans, server, expired, None)
    }

    fn issue_with(
        &self,
        sans: Vec<SanType>,
        server: bool,
        expired: bool,
        serial: Option<u64>,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        p.distinguished_name.push(DnType::CommonName, "test");
        p.subject_alt_names = sans;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if let Some(n) = serial {
            p.serial_number = Some(rcgen::SerialNumber::from(n));
        }
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("{e}"));
        (cert.pem(), key.serialize_pem())
    }
}

/// A SAN URI.
pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap_or_else(|e| panic!("{e}")))
}

/// A new Ed25519 key (PKCS#8) for an OIDC issuer.
pub fn oidc_key() -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8(&rng)
        .unwrap_or_else(|e| panic!("{e}"))
        .as_ref()
        .to_vec()
}

/// The JWKS of Ed25519 keys (PKCS#8, kid).
pub fn jwks_of(keys: &[(&[u8], &str)]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(pk8, kid)| {
            let k = Ed25519KeyPair::from_pkcs8(pk8).unwrap_or_else(|e| panic!("{e}"));
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
                   "x": b64(k.public_key().as_ref())})
        })
        .collect();
    json!({ "keys": keys })
}

/// Signs ID-token claims with an Ed25519 key (PKCS#8) under `kid`.
pub fn sign_with(pk8: &[u8], kid: &str, claims: &Value) -> String {
    let k = Ed25519KeyPair::from_pkcs8(pk8).unwrap_or_else(|e| panic!("{e}"));
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    format!("{input}.{}", b64(k.sign(input.as_bytes()).as_ref()))
}

/// A client identity: certificate and key PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Certificate PEM.
    pub cert: String,
    /// Key PEM.
    pub key: String,
}

/// Server limits a test may tighten.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sustained requests per second per agency.
    pub agency_rps: u32,
    /// Burst.
    pub agency_burst: u32,
    /// Largest body.
    pub max_body: usize,
    /// Policy directory the server uses (default: the repository's).
    pub policies: Option<PathBuf>,
    /// Fetch the JWKS from this https URL, trusting this CA file, every `jwks_refresh`
    /// seconds (default: the JWKS file the harness writes).
    pub jwks_url: Option<(String, PathBuf)>,
    /// Seconds between JWKS refreshes.
    pub jwks_refresh: u64,
    /// The issuer's Ed25519 key (PKCS#8) and kid (default: generated, `test-key-1`).
    pub oidc_key: Option<(Vec<u8>, String)>,
    /// Client-certificate serial numbers the CA revokes (a CRL the server loads).
    pub revoked: Vec<u64>,
    /// Where the vault's directory is made (default: the system's temporary directory).
    pub parent: Option<PathBuf>,
    /// `limits.grant_retention_seconds` (default: the server's, 30 days).
    pub grant_retention: Option<u64>,
    /// A PostgreSQL URL: the vault lives in that database (`[store] backend = "postgres"`).
    pub store_url: Option<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            agency_rps: 100_000,
            agency_burst: 100_000,
            max_body: 65536,
            policies: None,
            jwks_url: None,
            jwks_refresh: 300,
            oidc_key: None,
            revoked: Vec::new(),
            parent: None,
            grant_retention: None,
            store_url: None,
        }
    }
}

/// Writes and syncs a file (the harness's own files must survive a file system the tests
/// break on purpose).
fn write_synced(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, bytes)?;
            f.sync_all()
        })
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A running server.
pub struct TestServer {
    /// The vault's directory (shared by the nodes of one PostgreSQL vault).
    pub vault: Arc<TestVault>,
    /// The CA of the server and client certificates.
    pub ca: Arc<Ca>,
    child: Option<Child>,
    /// Kills `child` if a signal stops the tool running this server (`stop::install`).
    killed_on_stop: Option<crate::stop::OnStop>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves `/metrics` (plain HTTP, its own listener).
    pub metrics_addr: Option<SocketAddr>,
    log: Arc<Mutex<Vec<u8>>>,
    oidc: Ed25519KeyPair,
    oidc_pk8: Vec<u8>,
    kid: String,
    config: PathBuf,
    /// Run the server as this uid and gid (with `setpriv`; the caller is root).
    pub run_as: Option<u32>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestServer({})", self.addr)
    }
}

/// Demo citizens as (id, fields).
pub type Citizens = Vec<(String, Value)>;

impl TestServer {
    /// A vault with `citizens` demo citizens, served with `limits`.
    pub fn start(citizens: u64, limits: &Limits) -> (Self, Citizens) {
        install_provider();
        let parent = limits.parent.clone().unwrap_or_else(std::env::temp_dir);
        let vault = Arc::new(match &limits.store_url {
            None => TestVault::initialized_in(&parent),
            Some(url) => TestVault::initialized_on(&parent, url),
        });
        let file = vault.root().join("citizens.jsonl");
        let out = vault.ctl(&["demo-data", "--count", &citizens.to_string(), "--seed", "7"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::write(&file, &out.stdout).unwrap_or_else(|e| panic!("{e}"));
        let people: Citizens = text(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                (
                    v["citizen_id"].as_str().unwrap_or_default().to_owned(),
                    v["fields"].clone(),
                )
            })
            .collect();
        let out = vault.ctl(&["import", file.to_str().unwrap_or_default()]);
        assert!(out.status.success(), "{}", text(&out.stderr));

        let pki = vault.root().join("pki");
        std::fs::create_dir_all(&pki).unwrap_or_else(|e| panic!("{e}"));
        let ca = Ca::new("test agency CA");
        let w = |name: &str, s: &str| write_synced(&pki.join(name), s.as_bytes());
        w("ca.pem", &ca.pem);
        let (cert, key) = ca.issue(
            vec![
                SanType::DnsName("localhost".try_into().unwrap_or_else(|e| panic!("{e}"))),
                SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
            ],
            true,
            false,
        );
        w("server.pem", &cert);
        w("server.key", &key);
        let (pk8, kid) = limits
            .oidc_key
            .clone()
            .unwrap_or_else(|| (oidc_key(), "test-key-1".to_owned()));
        let oidc = Ed25519KeyPair::from_pkcs8(&pk8).unwrap_or_else(|e| panic!("{e}"));
        w(
            "jwks.json",
            &json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
                              "x": b64(oidc.public_key().as_ref())}]})
            .to_string(),
        );
        let crls = if limits.revoked.is_empty() {
            String::new()
        } else {
            w("ca.crl.pem", &ca.crl(&limits.revoked));
            format!("client_crls = [\"{}\"]\n", pki.join("ca.crl.pem").display())
        };
        let config = vault.root().join("server.toml");
        let p = |n: &str| pki.join(n).display().to_string();
        write_synced(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata = \"{}\"\npolicies = \"{}\"\nworkers = 2\n\
                 [tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n{crls}\
                 [oidc]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n{}\nrefresh_seconds = {}\n\
                 [limits]\nagency_requests_per_second = {}\nagency_burst = {}\nmax_body_bytes = {}\n\
                 shutdown_timeout_seconds = 20\n{}\
                 [server]\nmetrics_listen = \"127.0.0.1:0\"\n{}",
                vault.data().display(),
                limits.policies.clone().unwrap_or_else(policies_dir).display(),
                p("server.pem"),
                p("server.key"),
                p("ca.pem"),
                match &limits.jwks_url {
                    None => format!("jwks_file = \"{}\"", p("jwks.json")),
                    Some((url, ca)) => {
                        format!("jwks_url = \"{url}\"\njwks_ca = \"{}\"", ca.display())
                    }
                },
                limits.jwks_refresh,
                limits.agency_rps,
                limits.agency_burst,
                limits.max_body,
                limits
                    .grant_retention
                    .map(|r| format!("grant_retention_seconds = {r}\n"))
                    .unwrap_or_default(),
                limits
                    .store_url
                    .as_ref()
                    .map(|u| format!("[store]\nbackend = \"postgres\"\nurl = \"{u}\"\npool = 16\n"))
                    .unwrap_or_default(),
            )
            .as_bytes(),
        );
        let mut s = Self {
            vault,
            ca: Arc::new(ca),
            child: None,
            killed_on_stop: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            log: Arc::new(Mutex::new(Vec::new())),
            oidc,
            oidc_pk8: pk8,
            kid,
            config,
            run_as: None,
        };
        s.launch();
        (s, people)
    }

    /// Another node of the same vault (PostgreSQL): the same data directory, keys,
    /// certificates and configuration, its own process and ports.
    pub fn another_node(&self) -> Self {
        let mut s = Self {
            vault: Arc::clone(&self.vault),
            ca: Arc::clone(&self.ca),
            child: None,
            killed_on_stop: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            log: Arc::new(Mutex::new(Vec::new())),
            oidc: Ed25519KeyPair::from_pkcs8(&self.oidc_pk8).unwrap_or_else(|e| panic!("{e}")),
            oidc_pk8: self.oidc_pk8.clone(),
            kid: self.kid.clone(),
            config: self.config.clone(),
            run_as: self.run_as,
        };
        s.launch();
        s
    }

    /// Starts (or restarts) the server process and waits until it listens.
    pub fn launch(&mut self) {
        if let Err(log) = self.try_launch() {
            panic!("vault-server did not start: {log}");
        }
    }

    /// Starts (or restarts) the server process; `Err` with its log (and the process reaped)
    /// if it exits or does not listen within 60 s.
    pub fn try_launch(&mut self) -> Result<(), String> {
        let mut cmd = match self.run_as {
            None => Command::new(binary("vault-server")),
            Some(id) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={id}"))
                    .arg(format!("--regid={id}"))
                    .arg("--clear-groups")
                    .arg(binary("vault-server"));
                c
            }
        };
        let mut child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env_remove("VAULT_TEST_ROOT_KEY")
            .env("VAULT_TEST_CLOCK_FILE", self.clock_file())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start vault-server: {e}"));
        self.killed_on_stop = Some(crate::stop::kill_on_stop(child.id()));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let mut reader = BufReader::new(stderr);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut addr = None;
        let mut metrics = None;
        let mut line = String::new();
        while addr.is_none() && Instant::now() < deadline {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Ok(mut l) = self.log.lock() {
                l.extend_from_slice(line.as_bytes());
            }
            // A plain line, or the message of a JSON log event.
            addr = after(&line, "vault-server: listening on https://").and_then(|a| a.parse().ok());
            metrics = metrics.or_else(|| {
                after(&line, "vault-server: metrics on http://")?
                    .strip_suffix("/metrics")?
                    .parse()
                    .ok()
            });
        }
        let Some(addr) = addr else {
            self.killed_on_stop = None;
            let _ = child.kill();
            let status = child.wait();
            return Err(format!("{status:?}: {}", self.log_text()));
        };
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut l) = log.lock() {
                            l.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
        });
        self.addr = addr;
        self.metrics_addr = metrics;
        self.child = Some(child);
        Ok(())
    }

    /// The configuration file the server is started with (a test may edit it between runs).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The file whose milliseconds shift a debug server's clock (`vault_server::clock`).
    /// The server's time in seconds: the wall clock moved by `advance_clock` (tokens are
    /// minted at the server's time, so a moved clock does not expire them).
    pub fn server_now(&self) -> i64 {
        let shift_ms: i64 = std::fs::read_to_string(self.clock_file())
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        Self::now() + shift_ms / 1000
    }

    fn clock_file(&self) -> PathBuf {
        self.vault.root().join("clock-shift-ms")
    }

    /// Moves the server's clock `secs` seconds forward (debug builds of the server only: a
    /// release build ignores the file). Takes effect at the server's next reading of time.
    pub fn advance_clock(&self, secs: i64) {
        let file = self.clock_file();
        let shift: i64 = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let tmp = file.with_extension("tmp");
        write_synced(&tmp, (shift + secs * 1000).to_string().as_bytes());
        std::fs::rename(&tmp, &file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    /// The value of an unlabelled metric (`0` if the server does not report it yet).
    pub fn metric(&self, name: &str) -> f64 {
        let text = reqwest::blocking::get(self.metrics_url())
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("metrics: {e}"));
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// `http://127.0.0.1:PORT/metrics`, the metrics listener's (plain HTTP).
    pub fn metrics_url(&self) -> String {
        match self.metrics_addr {
            Some(a) => format!("http://{a}/metrics"),
            None => panic!("the server serves no metrics"),
        }
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// An agency identity issued by the server's CA.
    pub fn agency_identity(&self, agency: &str) -> Identity {
        let (cert, key) = self.ca.issue(
            vec![uri(&format!("urn:vault:agency:{agency}"))],
            false,
            false,
        );
        Identity { cert, key }
    }

    /// The rustls client configuration presenting `identity` (or none), trusting the CA.
    pub fn tls_config(&self, identity: Option<&Identity>) -> rustls::ClientConfig {
        use rustls::pki_types::pem::PemObject as _;
        install_provider();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(self.ca.pem.as_bytes()) {
            roots
                .add(c.unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let b = rustls::ClientConfig::builder().with_root_certificates(roots);
        match identity {
            None => b.with_no_client_auth(),
            Some(id) => {
                let chain = rustls::pki_types::CertificateDer::pem_slice_iter(id.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap_or_else(|e| panic!("{e}"));
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(id.key.as_bytes())
                    .unwrap_or_else(|e| panic!("{e}"));
                b.with_client_auth_cert(chain, key)
                    .unwrap_or_else(|e| panic!("{e}"))
            }
        }
    }

    /// A blocking client presenting `identity` (or no certificate), trusting the server's CA.
    pub fn client(&self, identity: Option<&Identity>) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .use_preconfigured_tls(self.tls_config(identity))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An async client for one keep-alive HTTP/1.1 connection (the load generator's).
    pub fn async_client(&self, identity: Option<&Identity>) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.tls_config(identity))
            .http1_only()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The directory holding the test PKI (`ca.pem`, `server.pem`, `server.key`).
    pub fn pki_dir(&self) -> PathBuf {
        self.vault.root().join("pki")
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Signs an ID token with arbitrary claims (for hostile cases).
    pub fn sign_claims(&self, claims: &Value) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.oidc.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn now() -> i64 {
        std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
    }

    /// A citizen's ID token.
    pub fn citizen_token(&self, id: &str) -> String {
        let now = self.server_now();
        self.sign_claims(
            &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": id, "iat": now,
                                 "exp": now + 600}),
        )
    }

    /// An auditor's ID token.
    pub fn auditor_token(&self, id: &str) -> String {
        let now = self.server_now();
        self.sign_claims(
            &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": id, "iat": now,
                                 "exp": now + 600, "roles": ["auditor"]}),
        )
    }

    /// Everything the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    }

    /// Everything the server wrote to stderr so far, as bytes.
    pub fn log_bytes(&self) -> Vec<u8> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM (graceful shutdown) and waits for the exit.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        self.killed_on_stop = None;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Whether the server process is still alive (not exited or killed from outside).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.killed_on_stop = None;
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        self.vault.root()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.killed_on_stop = None;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The word after `marker` in a log line (plain, or a JSON event's message): up to the next
/// quote or white space.
pub fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.split(marker).nth(1)?;
    rest.split(|c: char| c == '"' || c.is_whitespace()).next()
}
