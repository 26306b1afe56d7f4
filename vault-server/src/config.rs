//! Server configuration: a TOML file (unknown keys are errors, with line and column), then
//! `VAULT_<SECTION>_<KEY>` environment overrides, then validation with messages that name
//! the key. `deploy/vault-server.example.toml` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The data directory (store, keys, audit log).
    #[serde(default = "default_data")]
    pub data: PathBuf,
    /// Root key file (default DATA/keys/root.key).
    #[serde(default)]
    pub root_key: Option<PathBuf>,
    /// Policy directory (default: the copy in DATA/policies).
    #[serde(default)]
    pub policies: Option<PathBuf>,
    /// HTTP worker threads (0: one per core).
    #[serde(default)]
    pub workers: usize,
    /// Threads per worker running core calls (which wait for the audit log's group commit).
    #[serde(default = "default_blocking")]
    pub blocking_threads: usize,
    /// TLS files.
    pub tls: TlsConfig,
    /// The OIDC issuer for citizens and auditors.
    pub oidc: OidcConfig,
    /// The store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Listeners besides the API's.
    #[serde(default)]
    pub server: ServerConfig,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The auditors' oversight.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The citizen portal's OpenID Connect client (`/portal`); without it the portal cannot
    /// sign anyone in.
    #[serde(default)]
    pub portal: Option<PortalConfig>,
}

/// The auditors' oversight settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Hours within which a break-glass grant must be reviewed. Default 72.
    #[serde(default = "default_review_hours")]
    pub break_glass_review_hours: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            break_glass_review_hours: default_review_hours(),
        }
    }
}

fn default_review_hours() -> u32 {
    72
}

/// The portal's OpenID Connect client: authorization code flow with PKCE against the
/// configured issuer (`oidc.issuer`, whose keys verify the ID token).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// The client id registered at the issuer (the ID token's `aud`).
    pub client_id: String,
    /// The issuer's authorization endpoint (`https://…`, or a path on this server).
    pub authorization_endpoint: String,
    /// The issuer's token endpoint (`https://…`, or a path on this server).
    pub token_endpoint: String,
    /// The redirect URI registered for the portal (`https://…/portal/callback`, or the path
    /// `/portal/callback` on the host the browser used).
    #[serde(default = "default_redirect")]
    pub redirect_uri: String,
    /// The redirect URI registered for the audit console (default `/audit-console/callback`
    /// on the host the browser used).
    #[serde(default = "default_console_redirect")]
    pub console_redirect_uri: String,
    /// CA bundle (PEM) to trust for the token endpoint.
    #[serde(default)]
    pub token_ca: Option<PathBuf>,
}

fn default_redirect() -> String {
    "/portal/callback".into()
}

fn default_console_redirect() -> String {
    "/audit-console/callback".into()
}

/// TLS files (PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// CA that signs agency (and auditor) client certificates.
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM) of that CA: a revoked client certificate fails the
    /// handshake. Read at start.
    #[serde(default)]
    pub client_crls: Vec<PathBuf>,
}

/// The OIDC issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// JWKS file (re-read when it changes).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (https), fetched at start and refreshed.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// CA bundle (PEM) to trust for `jwks_url`.
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// Seconds between JWKS refreshes.
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    /// Claim holding roles (string or array).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Role that makes a token an auditor's.
    #[serde(default = "default_auditor_role")]
    pub auditor_role: String,
}

/// The store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sled` (embedded, the default) or `postgres` (SPEC §10).
    #[serde(default)]
    pub backend: crate::backend::Backend,
    /// The PostgreSQL URL (`postgres://user@host:port,host2:port/db?target_session_attrs=read-write`);
    /// no password in it: `password_file`.
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the database password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) the database's TLS certificate must chain to (`sslmode=require`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Database connections this node opens at most.
    #[serde(default = "default_pool")]
    pub pool: u64,
    /// sled's page cache, MiB (its own accounting: the heap it holds is about twice that).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
}

fn default_pool() -> u64 {
    32
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: crate::backend::Backend::default(),
            url: None,
            password_file: None,
            ca: None,
            pool: default_pool(),
            cache_mib: default_cache_mib(),
        }
    }
}

/// Listeners besides the API's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where `/metrics` (Prometheus text, plain HTTP) is served: its own listener, a loopback
    /// address by default, never the public API port. `off` serves no metrics.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            metrics_listen: default_metrics_listen(),
        }
    }
}

impl ServerConfig {
    /// The metrics address, or `None` for `off`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listen.parse().ok()
    }
}

/// Request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, bytes.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Sustained requests per second per agency.
    #[serde(default = "default_agency_rps")]
    pub agency_requests_per_second: u32,
    /// Burst per agency.
    #[serde(default = "default_agency_burst")]
    pub agency_burst: u32,
    /// Verification-code checks per citizen per minute.
    #[serde(default = "default_verify")]
    pub verify_per_minute: u32,
    /// Refusals of one identified caller appended to the audit log per second, sustained;
    /// past it (and the burst) a refused request answers 429 and is only counted.
    #[serde(default = "default_refusals_rps")]
    pub audited_refusals_per_second: u32,
    /// Burst of audited refusals per identified caller.
    #[serde(default = "default_refusals_burst")]
    pub audited_refusals_burst: u32,
    /// Seconds in-flight requests get to finish at shutdown.
    #[serde(default = "default_shutdown")]
    pub shutdown_timeout_seconds: u64,
    /// Seconds an ended grant (expired, exhausted, revoked, refused) is kept after the latest
    /// moment it could end, so agencies can poll it and citizens check its code; then it is
    /// deleted (the audit log keeps its history). Break-glass grants are kept.
    #[serde(default = "default_grant_retention")]
    pub grant_retention_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_body(),
            agency_requests_per_second: default_agency_rps(),
            agency_burst: default_agency_burst(),
            verify_per_minute: default_verify(),
            audited_refusals_per_second: default_refusals_rps(),
            audited_refusals_burst: default_refusals_burst(),
            shutdown_timeout_seconds: default_shutdown(),
            grant_retention_seconds: default_grant_retention(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `json` or `text`.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// `error`, `warn`, `info`, `debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8443".into()
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_data() -> PathBuf {
    PathBuf::from("./vault-data")
}
/// Blocking-pool threads per worker: the release and the grant decision run on the worker
/// itself now, so the pool serves the grant's store write and the slower routes; 8 served as
/// many grants as 32 with ~100 MiB less memory under load (BENCHMARKS.md).
pub(crate) fn default_blocking() -> usize {
    8
}
/// sled's page cache, MiB.
pub(crate) fn default_cache_mib() -> u64 {
    vault_core::store::DEFAULT_CACHE_BYTES >> 20
}
fn default_refresh() -> u64 {
    300
}
fn default_role_claim() -> String {
    crate::oidc::ROLE_CLAIM.into()
}
fn default_auditor_role() -> String {
    "auditor".into()
}
fn default_body() -> usize {
    64 * 1024
}
fn default_agency_rps() -> u32 {
    5_000
}
fn default_agency_burst() -> u32 {
    10_000
}
fn default_verify() -> u32 {
    10
}
fn default_refusals_rps() -> u32 {
    10
}
fn default_refusals_burst() -> u32 {
    100
}
fn default_shutdown() -> u64 {
    30
}
/// 30 days.
fn default_grant_retention() -> u64 {
    30 * 24 * 3600
}
fn default_log_format() -> String {
    "json".into()
}
fn default_log_level() -> String {
    "info".into()
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    /// Comma-separated list of strings.
    List,
}

/// Every key the environment may override, as (`section.key`, kind).
const KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Str),
    ("data", Kind::Str),
    ("root_key", Kind::Str),
    ("policies", Kind::Str),
    ("workers", Kind::Int),
    ("blocking_threads", Kind::Int),
    ("tls.cert", Kind::Str),
    ("tls.key", Kind::Str),
    ("tls.client_ca", Kind::Str),
    ("tls.client_crls", Kind::List),
    ("oidc.issuer", Kind::Str),
    ("oidc.audience", Kind::Str),
    ("oidc.jwks_file", Kind::Str),
    ("oidc.jwks_url", Kind::Str),
    ("oidc.jwks_ca", Kind::Str),
    ("oidc.refresh_seconds", Kind::Int),
    ("oidc.role_claim", Kind::Str),
    ("oidc.auditor_role", Kind::Str),
    ("store.backend", Kind::Str),
    ("store.url", Kind::Str),
    ("store.password_file", Kind::Str),
    ("store.ca", Kind::Str),
    ("store.pool", Kind::Int),
    ("store.cache_mib", Kind::Int),
    ("server.metrics_listen", Kind::Str),
    ("limits.max_body_bytes", Kind::Int),
    ("limits.agency_requests_per_second", Kind::Int),
    ("limits.agency_burst", Kind::Int),
    ("limits.verify_per_minute", Kind::Int),
    ("limits.audited_refusals_per_second", Kind::Int),
    ("limits.audited_refusals_burst", Kind::Int),
    ("limits.shutdown_timeout_seconds", Kind::Int),
    ("limits.grant_retention_seconds", Kind::Int),
    ("log.format", Kind::Str),
    ("log.level", Kind::Str),
    ("audit.break_glass_review_hours", Kind::Int),
    ("portal.client_id", Kind::Str),
    ("portal.authorization_endpoint", Kind::Str),
    ("portal.token_endpoint", Kind::Str),
    ("portal.redirect_uri", Kind::Str),
    ("portal.console_redirect_uri", Kind::Str),
    ("portal.token_ca", Kind::Str),
];

/// Environment variables that belong to other tools, not to this file.
const OTHER_VARS: &[&str] = &[
    "VAULT_POLICIES",
    "VAULT_PKCS11_PIN",
    "VAULT_PKCS11_MODULE",
    "VAULT_TEST_ROOT_KEY",
    "VAULT_CONFIG",
    crate::clock::TEST_CLOCK_VAR,
];

/// Whether `var` overrides a configuration key.
pub fn is_config_var(var: &str) -> bool {
    KEYS.iter().any(|(k, _)| env_name(k) == var)
}

/// The environment variable that overrides `key`.
pub fn env_name(key: &str) -> String {
    format!("VAULT_{}", key.replace('.', "_").to_ascii_uppercase())
}

impl Config {
    /// Reads `path`, applies overrides from `env`, validates.
    pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string(), env)
    }

    /// Parses TOML text named `name`, applies overrides, validates.
    pub fn parse(text: &str, name: &str, env: &BTreeMap<String, String>) -> Result<Self, String> {
        // The file alone first, so a mistake in it is named by line and column (the table
        // with the environment's overrides applied no longer knows where a key came from).
        if let Err(e) = toml::from_str::<Self>(text) {
            return Err(located(name, text, &e));
        }
        let table: toml::Table = text.parse().map_err(|e| located(name, text, &e))?;
        Self::from_table(table, name, env)
    }

    /// The `[store]` settings the environment gives (`VAULT_STORE_*`), defaults otherwise:
    /// dev mode needs them before it creates its vault.
    pub fn store_from_env(env: &BTreeMap<String, String>) -> Result<StoreConfig, String> {
        let mut store = toml::Table::new();
        for (key, kind) in KEYS {
            let (Some(name), Some(raw)) = (key.strip_prefix("store."), env.get(&env_name(key)))
            else {
                continue;
            };
            let value = match kind {
                Kind::Int => toml::Value::Integer(raw.trim().parse().map_err(|_| {
                    format!("{}: expected a whole number for {key}", env_name(key))
                })?),
                _ => toml::Value::String(raw.clone()),
            };
            store.insert(name.to_owned(), value);
        }
        let c: StoreConfig = toml::Value::Table(store)
            .try_into()
            .map_err(|e: toml::de::Error| format!("VAULT_STORE_*: {}", e.message()))?;
        if c.backend == crate::backend::Backend::Postgres && c.url.is_none() {
            return Err("VAULT_STORE_URL: required when VAULT_STORE_BACKEND is postgres".into());
        }
        Ok(c)
    }

    /// A configuration given as a TOML table (dev mode builds one), with overrides from `env`
    /// applied, validated.
    pub fn from_table(
        mut table: toml::Table,
        name: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        for var in env.keys().filter(|k| k.starts_with("VAULT_")) {
            if !OTHER_VARS.contains(&var.as_str()) && !KEYS.iter().any(|(k, _)| env_name(k) == *var)
            {
                return Err(format!(
                    "{var}: not a configuration key (known: {})",
                    KEYS.iter()
                        .map(|(k, _)| env_name(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for (key, kind) in KEYS {
            let Some(raw) = env.get(&env_name(key)) else {
                continue;
            };
            let value = match kind {
                Kind::Str => toml::Value::String(raw.clone()),
                Kind::Int => toml::Value::Integer(raw.trim().parse().map_err(|_| {
                    format!("{}: expected a whole number for {key}", env_name(key))
                })?),
                Kind::List => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ),
            };
            let mut t = &mut table;
            let mut parts: Vec<&str> = key.split('.').collect();
            let last = parts.pop().unwrap_or(key);
            for p in parts {
                let entry = t
                    .entry(p.to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(inner) = entry else {
                    return Err(format!("{name}: `{p}` must be a table"));
                };
                t = inner;
            }
            t.insert(last.to_owned(), value);
        }
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| format!("{name}: {}", e.message()))?;
        config.validate().map_err(|e| format!("{name}: {e}"))?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        self.listen
            .parse::<SocketAddr>()
            .map_err(|_| format!("listen: `{}` is not an address:port", self.listen))?;
        if self.server.metrics_listen != "off" && self.server.metrics_addr().is_none() {
            return Err(format!(
                "server.metrics_listen: `{}` is not an address:port (or `off`)",
                self.server.metrics_listen
            ));
        }
        for (key, path) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.client_ca", &self.tls.client_ca),
        ] {
            if !path.is_file() {
                return Err(format!("{key}: {} is not a readable file", path.display()));
            }
        }
        for path in &self.tls.client_crls {
            if !path.is_file() {
                return Err(format!(
                    "tls.client_crls: {} is not a readable file",
                    path.display()
                ));
            }
        }
        if !(1..=8_760).contains(&self.audit.break_glass_review_hours) {
            return Err("audit.break_glass_review_hours: must be between 1 and 8760".into());
        }
        if let Some(p) = &self.portal {
            for (key, v) in [
                ("portal.authorization_endpoint", &p.authorization_endpoint),
                ("portal.token_endpoint", &p.token_endpoint),
                ("portal.redirect_uri", &p.redirect_uri),
                ("portal.console_redirect_uri", &p.console_redirect_uri),
            ] {
                if !(v.starts_with("https://") || (v.starts_with('/') && !v.starts_with("//"))) {
                    return Err(format!(
                        "{key}: `{v}` must be an https:// URL or a path on this server"
                    ));
                }
            }
            if p.client_id.is_empty() {
                return Err("portal.client_id: must not be empty".into());
            }
            if let Some(ca) = p.token_ca.as_ref().filter(|c| !c.is_file()) {
                return Err(format!(
                    "portal.token_ca: {} is not a readable file",
                    ca.display()
                ));
            }
        }
        match (&self.oidc.jwks_file, &self.oidc.jwks_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("oidc: set exactly one of jwks_file and jwks_url".into());
            }
            (None, Some(u)) if !u.starts_with("https://") => {
                return Err("oidc.jwks_url: must be an https:// URL".into());
            }
            (None, Some(_)) if self.oidc.jwks_ca.is_none() => {
                return Err("oidc.jwks_ca: required with jwks_url (the CA to trust for it)".into());
            }
            _ => {}
        }
        if self.oidc.issuer.is_empty() || self.oidc.audience.is_empty() {
            return Err("oidc: issuer and audience must not be empty".into());
        }
        if self.oidc.refresh_seconds == 0 {
            return Err("oidc.refresh_seconds: must be at least 1".into());
        }
        if self.blocking_threads == 0 || self.blocking_threads > 1024 {
            return Err("blocking_threads: must be between 1 and 1024".into());
        }
        if !(1..=1024).contains(&self.store.pool) {
            return Err("store.pool: must be between 1 and 1024".into());
        }
        if self.store.backend == crate::backend::Backend::Postgres && self.store.url.is_none() {
            return Err("store.url: required when store.backend is \"postgres\"".into());
        }
        if !(4..=65_536).contains(&self.store.cache_mib) {
            return Err("store.cache_mib: must be between 4 and 65536".into());
        }
        let l = &self.limits;
        if l.max_body_bytes < 1024 || l.max_body_bytes > 16 * 1024 * 1024 {
            return Err("limits.max_body_bytes: must be between 1024 and 16777216".into());
        }
        if l.agency_requests_per_second == 0
            || l.agency_burst == 0
            || l.verify_per_minute == 0
            || l.audited_refusals_per_second == 0
            || l.audited_refusals_burst == 0
        {
            return Err("limits: rates and bursts must be at least 1".into());
        }
        if !(60..=10 * 366 * 24 * 3600).contains(&l.grant_retention_seconds) {
            return Err(
                "limits.grant_retention_seconds: must be between 60 and 316224000 (10 years)"
                    .into(),
            );
        }
        if !matches!(self.log.format.as_str(), "json" | "text") {
            return Err("log.format: `json` or `text`".into());
        }
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err("log.level: error, warn, info, debug or trace".into());
        }
        Ok(())
    }
}

/// `name:line:column: message` for a TOML error in `text`.
fn located(name: &str, text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{name}:{line}:{column}: {}", e.message().trim_end())
        }
        None => format!("{name}: {}", e.message().trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &Path) -> String {
        for f in ["c.pem", "k.pem", "ca.pem", "jwks.json"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        format!(
            "[tls]\ncert = \"{d}/c.pem\"\nkey = \"{d}/k.pem\"\nclient_ca = \"{d}/ca.pem\"\n\
             [oidc]\nissuer = \"https://id\"\naudience = \"vault\"\njwks_file = \"{d}/jwks.json\"\n",
            d = dir.display()
        )
    }

    #[test]
    fn defaults_env_overrides_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let text = base(dir.path());
        let c = Config::parse(&text, "t.toml", &BTreeMap::new()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8443");
        assert_eq!(c.limits.max_body_bytes, 65536);
        assert_eq!(c.store.cache_mib, 16);
        let env = BTreeMap::from([
            ("VAULT_LISTEN".to_owned(), "127.0.0.1:9000".to_owned()),
            ("VAULT_LIMITS_AGENCY_BURST".to_owned(), "7".to_owned()),
            ("VAULT_STORE_CACHE_MIB".to_owned(), "64".to_owned()),
            ("VAULT_POLICIES".to_owned(), "/p".to_owned()),
        ]);
        let c = Config::parse(&text, "t.toml", &env).unwrap();
        assert_eq!(
            (c.listen.as_str(), c.limits.agency_burst, c.store.cache_mib),
            ("127.0.0.1:9000", 7, 64)
        );
        let err =
            Config::parse(&format!("{text}lisen = 1\n"), "t.toml", &BTreeMap::new()).unwrap_err();
        assert!(err.contains("t.toml") && err.contains("lisen"), "{err}");
        // An unknown key is named with its line and column.
        let err =
            Config::parse(&format!("worker = 2\n{text}"), "t.toml", &BTreeMap::new()).unwrap_err();
        assert!(
            err.starts_with("t.toml:1:1: ") && err.contains("unknown field `worker`"),
            "{err}"
        );
        let lines = text.lines().count() + 1;
        let err =
            Config::parse(&format!("{text}workerz = 2\n"), "t.toml", &BTreeMap::new()).unwrap_err();
        assert!(err.contains(&format!("t.toml:{lines}:")), "{err}");
        let err = Config::parse(
            &text,
            "t.toml",
            &BTreeMap::from([("VAULT_LISTN".to_owned(), "x".to_owned())]),
        )
        .unwrap_err();
        assert!(err.contains("VAULT_LISTN"), "{err}");
        let err = Config::parse(
            &text,
            "t.toml",
            &BTreeMap::from([("VAULT_WORKERS".to_owned(), "two".to_owned())]),
        )
        .unwrap_err();
        assert!(err.contains("VAULT_WORKERS"), "{err}");
    }

    #[test]
    fn the_example_file_documents_every_key_and_parses() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/vault-server.example.toml"),
        )
        .unwrap();
        for (key, _) in KEYS {
            let name = key.rsplit('.').next().unwrap();
            assert!(
                example.contains(&format!("{name} =")),
                "{key} is not documented in the example"
            );
        }
        let table: toml::Table = example.parse().unwrap();
        assert!(table.contains_key("tls") && table.contains_key("oidc"));
    }

    #[test]
    fn validation_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let text = base(dir.path());
        for (extra, key) in [
            ("listen = \"nowhere\"\n", "listen"),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[limits]\nmax_body_bytes = 10\n", "limits.max_body_bytes"),
            ("[store]\ncache_mib = 3\n", "store.cache_mib"),
            ("[store]\ncache_mib = 65537\n", "store.cache_mib"),
            ("[store]\ncache = 64\n", "cache"),
            (
                "[server]\nmetrics_listen = \"public\"\n",
                "server.metrics_listen",
            ),
            (
                "[limits]\ngrant_retention_seconds = 59\n",
                "limits.grant_retention_seconds",
            ),
        ] {
            let err =
                Config::parse(&format!("{extra}{text}"), "t.toml", &BTreeMap::new()).unwrap_err();
            assert!(err.contains(key), "{err}");
        }
        let err = Config::parse(
            &text.replace("jwks_file", "jwks_url"),
            "t.toml",
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.contains("jwks_url"), "{err}");
    }

    #[test]
    fn metrics_listen_defaults_to_loopback_and_can_be_off() {
        let dir = tempfile::tempdir().unwrap();
        let text = base(dir.path());
        let c = Config::parse(&text, "t.toml", &BTreeMap::new()).unwrap();
        assert_eq!(c.server.metrics_addr(), "127.0.0.1:9464".parse().ok());
        let off = format!("[server]\nmetrics_listen = \"off\"\n{text}");
        let c = Config::parse(&off, "t.toml", &BTreeMap::new()).unwrap();
        assert_eq!(c.server.metrics_addr(), None);
    }
}
