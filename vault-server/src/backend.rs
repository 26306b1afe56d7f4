//! Which store and audit log a vault runs on: sled and the segment log in the data directory
//! (the embedded default), or PostgreSQL shared by several nodes (SPEC §10). `AnyStore`
//! passes the store traits to the one chosen; `open` connects (TLS with rustls and the ring
//! provider, the password from a file, never from the URL), migrates the schema and gives
//! the audit opener to match. A data directory whose vault lives in PostgreSQL says so in
//! `store.toml`, which `vaultctl` reads.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vault_core::VaultError;
use vault_core::audit::{AuditEntry, AuditLog, AuditOpener, SegmentLogAt, Ticket};
use vault_core::case::CaseKind;
use vault_core::clock::Timestamp;
use vault_core::consent::StandingConsent;
use vault_core::grant::{Grant, GrantState};
use vault_core::id::{BlindId, GrantId};
use vault_core::keyring::KeyringRecord;
use vault_core::postgres::{Connect, LogOptions, Pool, PostgresLogIn, PostgresStore};
use vault_core::store::{
    AuditedStore, CaseRow, CaseStore, ConsentStore, EncodedRecord, GrantStore, IdempotencyStore,
    Landing, MetaStore, RecordStore, RecordsLock, Remembered, SealedRecord, SledStore, StoreError,
    Write,
};

/// The store engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// sled and the segment log under the data directory.
    #[default]
    Sled,
    /// PostgreSQL 15+.
    Postgres,
}

/// The file in a data directory naming its PostgreSQL store.
pub const STORE_FILE: &str = "store.toml";

/// Where a vault's state lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// The engine.
    #[serde(default)]
    pub backend: Backend,
    /// PostgreSQL URL (no password).
    #[serde(default)]
    pub url: Option<String>,
    /// File with the database password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA bundle for the database's TLS certificate.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Connections at most.
    #[serde(default = "default_pool")]
    pub pool: usize,
    /// sled's page cache, bytes.
    #[serde(skip)]
    pub cache_bytes: u64,
}

fn default_pool() -> usize {
    32
}

impl StoreSettings {
    /// The settings of `[store]`.
    pub fn from_config(c: &crate::config::StoreConfig) -> Self {
        Self {
            backend: c.backend,
            url: c.url.clone(),
            password_file: c.password_file.clone(),
            ca: c.ca.clone(),
            pool: usize::try_from(c.pool).unwrap_or(32),
            cache_bytes: c.cache_mib << 20,
        }
    }

    /// The embedded store with sled's page cache at `cache_bytes`.
    pub fn sled(cache_bytes: u64) -> Self {
        Self {
            backend: Backend::Sled,
            pool: default_pool(),
            cache_bytes,
            ..Self::default()
        }
    }

    /// What `DATA/store.toml` names, or the embedded store when there is none.
    pub fn of_data_dir(data: &Path, cache_bytes: u64) -> Result<Self, String> {
        let path = data.join(STORE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut s: Self = toml::from_str(&text).map_err(|e| {
                    let at = e
                        .span()
                        .map(|r| {
                            let line = text[..r.start.min(text.len())].lines().count().max(1);
                            format!(":{line}")
                        })
                        .unwrap_or_default();
                    format!("{}{at}: {}", path.display(), e.message())
                })?;
                s.cache_bytes = cache_bytes;
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::sled(cache_bytes)),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes `DATA/store.toml` for a PostgreSQL vault (so `vaultctl` finds its store);
    /// nothing for sled.
    pub fn record(&self, data: &Path) -> Result<(), String> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let text = toml::to_string(self).map_err(|e| format!("{STORE_FILE}: {e}"))?;
        let path = data.join(STORE_FILE);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
            return Ok(());
        }
        std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The store of either engine.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// Embedded.
    Sled(SledStore),
    /// Shared.
    Postgres(PostgresStore),
}

/// An opened store and the audit log that goes with it.
pub struct Opened {
    /// The store.
    pub store: AnyStore,
    /// Opens the audit log once the keyring gives the signing key.
    pub audit: Box<dyn AuditOpener>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// This process's name in the sequencer lease: host, pid and a random suffix.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".into());
    let mut r = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r);
    format!("{host}/{}/{}", std::process::id(), hex::encode(r))
}

/// Opens the store `settings` name for the vault in `data`. With `sequence` off (an operator
/// command), a PostgreSQL log never takes the sequencer lease.
pub fn open(data: &Path, settings: &StoreSettings, sequence: bool) -> Result<Opened, String> {
    match settings.backend {
        Backend::Sled => Ok(Opened {
            store: AnyStore::Sled(
                SledStore::open_cached(&data.join("store"), settings.cache_bytes)
                    .map_err(|e| e.to_string())?,
            ),
            audit: Box::new(SegmentLogAt(data.join("audit"))),
        }),
        Backend::Postgres => {
            let pool = Arc::new(connect(settings)?);
            vault_core::postgres::migrate(&pool).map_err(|e| e.to_string())?;
            let mut opts = LogOptions::new(node_name());
            opts.sequence = sequence;
            Ok(Opened {
                store: AnyStore::Postgres(PostgresStore::new(Arc::clone(&pool))),
                audit: Box::new(PostgresLogIn { pool, opts }),
            })
        }
    }
}

/// A pool to the database `settings` name: the URL parsed strictly (a password in it is
/// refused), the password from its file, TLS unless `sslmode=disable`.
pub fn connect(settings: &StoreSettings) -> Result<Pool, String> {
    let url = settings
        .url
        .as_deref()
        .ok_or("store.url: required when store.backend is \"postgres\"")?;
    let mut config = postgres::Config::from_str(url)
        .map_err(|_| "store.url: not a PostgreSQL URL (postgres://user@host:port/db)".to_owned())?;
    if config.get_password().is_some() {
        return Err(
            "store.url: holds a password; put it in a file named by store.password_file".into(),
        );
    }
    if let Some(file) = &settings.password_file {
        let pw = zeroize::Zeroizing::new(
            std::fs::read_to_string(file)
                .map_err(|e| format!("store.password_file: {}: {e}", file.display()))?,
        );
        config.password(pw.trim_end_matches(['\r', '\n']).as_bytes());
    }
    config.connect_timeout(std::time::Duration::from_secs(5));
    config.keepalives_idle(std::time::Duration::from_secs(30));
    let connect: Connect = match config.get_ssl_mode() {
        postgres::config::SslMode::Disable => Arc::new(move || config.connect(postgres::NoTls)),
        _ => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_tls(settings)?);
            Arc::new(move || config.connect(tls.clone()))
        }
    };
    Ok(Pool::new(connect, settings.pool.max(1)))
}

/// rustls for the database: the CA bundle of `store.ca`, ring provider.
fn client_tls(settings: &StoreSettings) -> Result<rustls::ClientConfig, String> {
    let ca = settings
        .ca
        .as_ref()
        .ok_or("store.ca: required for TLS to the database (or sslmode=disable on loopback)")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::load_certs(ca).map_err(|e| format!("store.ca: {e}"))? {
        roots
            .add(cert)
            .map_err(|e| format!("store.ca: {}: {e}", ca.display()))?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("store TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sled($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

// Every method delegates: a default here would hide the backend's own.
#[warn(clippy::missing_trait_methods)]
impl AuditedStore for AnyStore {
    fn commits_with_log(&self) -> bool {
        each!(self, s => s.commits_with_log())
    }
    fn update_grant_state_audited(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut GrantState) -> Result<(), VaultError>,
        entries: &mut dyn FnMut(&GrantState) -> Result<Vec<AuditEntry>, VaultError>,
        log: &dyn AuditLog,
    ) -> Result<(GrantState, Ticket), StoreError> {
        each!(self, s => s.update_grant_state_audited(id, change, entries, log))
    }
    fn update_grant_audited(
        &self,
        id: &str,
        landing: Landing,
        change: &mut dyn FnMut(&mut Grant) -> Result<Vec<AuditEntry>, VaultError>,
        also: &[Write<'_>],
        log: &dyn AuditLog,
    ) -> Result<(Grant, Ticket), StoreError> {
        each!(self, s => s.update_grant_audited(id, landing, change, also, log))
    }
    fn write_audited(
        &self,
        writes: &[Write<'_>],
        entries: Vec<AuditEntry>,
        log: &dyn AuditLog,
    ) -> Result<Ticket, StoreError> {
        each!(self, s => s.write_audited(writes, entries, log))
    }
    fn write_all(&self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        each!(self, s => s.write_all(writes))
    }
}

// Every method delegates: a default here would hide the backend's own.
#[warn(clippy::missing_trait_methods)]
impl RecordStore for AnyStore {
    fn citizen(&self, id: &BlindId) -> Result<Option<SealedRecord>, StoreError> {
        each!(self, s => s.citizen(id))
    }
    fn citizen_fields(
        &self,
        id: &BlindId,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<SealedRecord>, StoreError> {
        each!(self, s => s.citizen_fields(id, keep))
    }
    fn put_citizens(&self, records: &[(BlindId, SealedRecord)]) -> Result<(), StoreError> {
        each!(self, s => s.put_citizens(records))
    }
    fn put_encoded(&self, records: &[(BlindId, EncodedRecord)]) -> Result<(), StoreError> {
        each!(self, s => s.put_encoded(records))
    }
    fn delete_citizen(&self, id: &BlindId) -> Result<bool, StoreError> {
        each!(self, s => s.delete_citizen(id))
    }
    fn citizens_after(
        &self,
        after: Option<&BlindId>,
        limit: usize,
    ) -> Result<Vec<(BlindId, SealedRecord)>, StoreError> {
        each!(self, s => s.citizens_after(after, limit))
    }
    fn citizen_fields_and_open(
        &self,
        id: &BlindId,
        keep: &dyn Fn(&str) -> bool,
        kind: CaseKind,
    ) -> Result<(Option<SealedRecord>, Vec<String>), StoreError> {
        each!(self, s => s.citizen_fields_and_open(id, keep, kind))
    }
    fn citizen_count(&self) -> Result<u64, StoreError> {
        each!(self, s => s.citizen_count())
    }
    fn lock_records(&self) -> Result<RecordsLock<'_>, StoreError> {
        each!(self, s => s.lock_records())
    }
}

// Every method delegates: a default here would hide the backend's own.
#[warn(clippy::missing_trait_methods)]
impl GrantStore for AnyStore {
    fn new_grant_id(&self) -> Result<GrantId, StoreError> {
        each!(self, s => s.new_grant_id())
    }
    fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        each!(self, s => s.grant(id))
    }
    fn insert_grant(&self, grant: &Grant) -> Result<bool, StoreError> {
        each!(self, s => s.insert_grant(grant))
    }
    fn update_grant(
        &self,
        id: &str,
        durable: bool,
        change: &mut dyn FnMut(&mut Grant) -> Result<(), VaultError>,
    ) -> Result<Grant, StoreError> {
        each!(self, s => s.update_grant(id, durable, change))
    }
    fn update_grant_state(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut GrantState) -> Result<(), VaultError>,
    ) -> Result<GrantState, StoreError> {
        each!(self, s => s.update_grant_state(id, change))
    }
    fn break_glass_grants(&self) -> Result<Vec<Grant>, StoreError> {
        each!(self, s => s.break_glass_grants())
    }
    fn grant_id_by_code(&self, code: &str) -> Result<Option<GrantId>, StoreError> {
        each!(self, s => s.grant_id_by_code(code))
    }
    fn grants_of_citizen(&self, citizen: &BlindId) -> Result<Vec<Grant>, StoreError> {
        each!(self, s => s.grants_of_citizen(citizen))
    }
    fn grants_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Grant>, Option<String>), StoreError> {
        each!(self, s => s.grants_after(after, limit))
    }
    fn sweep_grants(
        &self,
        after: Option<&str>,
        scan: usize,
        cutoff: Timestamp,
    ) -> Result<(usize, Option<String>), StoreError> {
        each!(self, s => s.sweep_grants(after, scan, cutoff))
    }
}

// Every method delegates: a default here would hide the backend's own.
#[warn(clippy::missing_trait_methods)]
impl ConsentStore for AnyStore {
    fn put_consent(&self, consent: &StandingConsent) -> Result<(), StoreError> {
        each!(self, s => s.put_consent(consent))
    }
    fn consents_of_citizen(&self, citizen: &BlindId) -> Result<Vec<StandingConsent>, StoreError> {
        each!(self, s => s.consents_of_citizen(citizen))
    }
    fn delete_consent(&self, citizen: &BlindId, id: &str) -> Result<bool, StoreError> {
        each!(self, s => s.delete_consent(citizen, id))
    }
    fn sweep_consents(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        each!(self, s => s.sweep_consents(cutoff))
    }
}

// Every method delegates: a default here would hide the backend's own.
#[warn(clippy::missing_trait_methods)]
impl IdempotencyStore for AnyStore {
    fn remembered(&self, name: &[u8; 32]) -> Result<Option<Remembered>, StoreError> {
        each!(self, s => s.remembered(name))
    }
    fn remember(&self, name: &[u8; 32], what: &Remembered) -> Result<bool, StoreError> {
        each!(self, s => s.remember(name, what))
    }
    fn sweep_remembered(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        each!(self, s => s.sweep_remembered(cutoff))
    }
}

// Every method delegates: a default here would hide the backend's own.
#[warn(clippy::missing_trait_methods)]
impl CaseStore for AnyStore {
    fn put_case(&self, row: &CaseRow) -> Result<(), StoreError> {
        each!(self, s => s.put_case(row))
    }
    fn case(&self, kind: CaseKind, id: &str) -> Result<Option<CaseRow>, StoreError> {
        each!(self, s => s.case(kind, id))
    }
    fn cases_of_citizen(
        &self,
        citizen: &BlindId,
        kind: CaseKind,
    ) -> Result<Vec<CaseRow>, StoreError> {
        each!(self, s => s.cases_of_citizen(citizen, kind))
    }
    fn open_cases(&self, kind: CaseKind) -> Result<Vec<CaseRow>, StoreError> {
        each!(self, s => s.open_cases(kind))
    }
    fn cases_of_kind(&self, kind: CaseKind) -> Result<Vec<CaseRow>, StoreError> {
        each!(self, s => s.cases_of_kind(kind))
    }
    fn delete_cases_of_citizen(&self, citizen: &BlindId) -> Result<usize, StoreError> {
        each!(self, s => s.delete_cases_of_citizen(citizen))
    }
}

// Every method delegates: a default here would hide the backend's own.
#[warn(clippy::missing_trait_methods)]
impl MetaStore for AnyStore {
    fn keyring(&self) -> Result<Option<KeyringRecord>, StoreError> {
        each!(self, s => s.keyring())
    }
    fn put_keyring(&self, record: &KeyringRecord) -> Result<(), StoreError> {
        each!(self, s => s.put_keyring(record))
    }
    fn import_checkpoint(&self, file_hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        each!(self, s => s.import_checkpoint(file_hash))
    }
    fn set_import_checkpoint(
        &self,
        file_hash: &[u8; 32],
        line: Option<u64>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.set_import_checkpoint(file_hash, line))
    }
    fn flush(&self) -> Result<(), StoreError> {
        each!(self, s => s.flush())
    }
    fn released_through(&self) -> Result<Option<u64>, StoreError> {
        each!(self, s => s.released_through())
    }
    fn set_released_through(&self, size: u64) -> Result<(), StoreError> {
        each!(self, s => s.set_released_through(size))
    }
    fn uses_durable_at_once(&self) -> bool {
        each!(self, s => s.uses_durable_at_once())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> StoreSettings {
        StoreSettings {
            backend: Backend::Postgres,
            url: Some(url.into()),
            ..StoreSettings::sled(1 << 20)
        }
    }

    #[test]
    fn a_password_in_the_url_tls_without_a_ca_and_a_bad_url_are_refused() {
        let err = connect(&pg("postgres://vault:secret@db/vault")).unwrap_err();
        assert!(err.contains("password_file"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = connect(&pg("postgres://vault@db/vault?sslmode=require")).unwrap_err();
        assert!(err.contains("store.ca"), "{err}");
        let err = connect(&pg("mysql://nope")).unwrap_err();
        assert!(err.contains("store.url"), "{err}");
        assert!(connect(&pg("postgres://vault@127.0.0.1:1/vault?sslmode=disable")).is_ok());
        let err = connect(&StoreSettings {
            password_file: Some("/nonexistent/db.password".into()),
            ..pg("postgres://vault@db/vault?sslmode=disable")
        })
        .unwrap_err();
        assert!(err.contains("store.password_file"), "{err}");
    }

    #[test]
    fn store_toml_round_trips_and_names_its_line_when_bad() {
        let dir = tempfile::tempdir().unwrap();
        let s = pg("postgres://vault@db1:5432,db2:5432/vault?target_session_attrs=read-write");
        s.record(dir.path()).unwrap();
        let back = StoreSettings::of_data_dir(dir.path(), 1 << 20).unwrap();
        assert_eq!(back, s);
        std::fs::write(
            dir.path().join(STORE_FILE),
            "backend = \"postgres\"\nurl = 5\n",
        )
        .unwrap();
        let err = StoreSettings::of_data_dir(dir.path(), 1 << 20).unwrap_err();
        assert!(err.contains("store.toml:2"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            StoreSettings::of_data_dir(empty.path(), 7).unwrap().backend,
            Backend::Sled
        );
    }
}
