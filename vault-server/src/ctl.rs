//! `vaultctl` commands (SPEC §5): argument parsing, the data-directory layout, and error
//! reporting. Each command lives in its own module and calls `vault-core` for the real work.

mod audit;
pub mod backup;
mod demo;
pub mod import;
pub use import::check_jsonl_row;
pub mod keys;
mod migrate;
mod policy_check;
mod remote;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::backend::{AnyStore, Backend, StoreSettings};
use clap::{Parser, Subcommand};
use vault_core::audit::{Actor, SafeId};
use vault_core::keyring::{FileRootKey, InMemoryRootKey, RootKeySource};
use vault_core::policy::PolicySet;
use vault_core::{CitizenId, Clock as _, Vault, VaultError};
use zeroize::Zeroizing;

/// Citizen Data Vault operator tool.
#[derive(Debug, Parser)]
#[command(name = "vaultctl", version, about)]
pub struct Cli {
    /// Data directory of the vault.
    #[arg(
        long,
        global = true,
        env = "VAULT_DATA",
        default_value = "./vault-data"
    )]
    data: PathBuf,
    /// Root key: a file (default: DATA/keys/root.key), or a PKCS#11 URI
    /// (`pkcs11:token=…;object=…?module-path=…`) whose key never leaves the token.
    #[arg(long, global = true)]
    root_key: Option<PathBuf>,
    /// A file holding the PKCS#11 token's user PIN (else VAULT_PKCS11_PIN).
    #[arg(long, global = true)]
    pin_file: Option<PathBuf>,
    /// The token's user PIN (from the environment only: a command line is visible to others).
    #[arg(
        long = "pkcs11-pin",
        global = true,
        env = "VAULT_PKCS11_PIN",
        hide = true,
        hide_env_values = true
    )]
    pkcs11_pin: Option<String>,
    /// The PKCS#11 module, when the URI names none.
    #[arg(long, global = true, env = "VAULT_PKCS11_MODULE")]
    pkcs11_module: Option<PathBuf>,
    /// Policy directory (fields, purposes, agencies). Default: the copy `init` keeps in
    /// DATA/policies, else ./policies.
    #[arg(long, global = true, env = "VAULT_POLICIES")]
    policies: Option<PathBuf>,
    /// A PostgreSQL vault's URL (no password in it), for `init` and `migrate`; other commands
    /// read the store from DATA/store.toml.
    #[arg(long, global = true, env = "VAULT_STORE_URL")]
    store_url: Option<String>,
    /// A file holding the database password.
    #[arg(long, global = true, env = "VAULT_STORE_PASSWORD_FILE")]
    store_password_file: Option<PathBuf>,
    /// CA certificates (PEM) for TLS to the database.
    #[arg(long, global = true, env = "VAULT_STORE_CA")]
    store_ca: Option<PathBuf>,
    /// Who is operating, as recorded in audit entries (actor kind `operator`).
    #[arg(long, global = true, default_value = "vaultctl")]
    operator: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the store, the keyring and the audit log; refuses to overwrite a vault.
    Init {
        /// The audit log's origin (first line of every checkpoint, name of the log key).
        #[arg(long, default_value = vault_core::keyring::DEFAULT_LOG_ORIGIN)]
        log_origin: String,
    },
    /// Import citizens from a JSONL or CSV file (resumable, idempotent).
    Import {
        /// The file: `.jsonl` (one `{"citizen_id", "fields"}` object a line) or `.csv`.
        file: PathBuf,
        /// Check the whole file first and import nothing if any row is bad.
        #[arg(long)]
        strict: bool,
    },
    /// Print deterministic synthetic citizens of Ho Chi Minh City as JSONL.
    DemoData {
        /// How many citizens.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Seed: the same seed gives the same citizens.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Crypto-shred one citizen: their data key, fields and index row are destroyed.
    Erase {
        /// The citizen's 12-digit id.
        #[arg(long)]
        citizen: String,
    },
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit log: verify, export, checkpoints, keys, proofs.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Whether a server runs here, the log's size, records, key versions and policy hash.
    Status,
    /// Write an online, consistent backup (sealed rows, policies, the audit log, a manifest).
    Backup {
        /// The backup file (created with mode 0600; replaced if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into an empty directory (`--data`), checking it and the whole log.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
    },
    /// Make the running server load its policy set again (as SIGHUP does).
    Reload,
    /// Move this embedded vault into an empty PostgreSQL database (the server stopped):
    /// rows, grants, consents and the audit log, whose root stays the same.
    Migrate {
        /// The database's URL (no password: `--store-password-file`).
        #[arg(long)]
        to: String,
    },
    /// Dev mode helpers (only for a data directory made by `vault-server dev`).
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Print a bearer token signed by the dev issuer (valid one hour).
    Token {
        /// A citizen's 12-digit id: a citizen token.
        #[arg(long, conflicts_with = "auditor", required_unless_present = "auditor")]
        citizen: Option<String>,
        /// An auditor id: a token with the auditor role.
        #[arg(long)]
        auditor: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// New KEK version; re-wrap every DEK; retire the old KEK. Resumable.
    Rotate,
    /// New grant-token signing key; tokens signed by the old one keep verifying.
    RotateToken,
    /// Retire every grant-token signing key but the newest: their tokens stop verifying.
    RetireOldTokenKeys,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy directory and run its `cases/`.
    Check {
        /// The policy directory.
        dir: PathBuf,
    },
}

/// A command failure: the message is printed after `vaultctl: error: `.
#[derive(Debug)]
pub struct CtlError(String);

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<VaultError> for CtlError {
    fn from(e: VaultError) -> Self {
        Self(e.to_string())
    }
}

impl From<vault_core::store::StoreError> for CtlError {
    fn from(e: vault_core::store::StoreError) -> Self {
        Self::from(VaultError::from(e))
    }
}

impl From<String> for CtlError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Result of a command.
pub type CtlResult = Result<(), CtlError>;

/// Entry point of the `vaultctl` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CtlError(msg)) => {
            let _ = writeln!(std::io::stderr(), "vaultctl: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> CtlResult {
    let pin = match (&cli.pin_file, cli.pkcs11_pin) {
        (Some(f), _) => Some(Zeroizing::new(
            std::fs::read_to_string(f)
                .map_err(|e| CtlError(format!("--pin-file {}: {e}", f.display())))?
                .trim_end()
                .to_owned(),
        )),
        (None, p) => p.map(Zeroizing::new),
    };
    set_pkcs11(cli.pkcs11_module, pin);
    let (store_password_file, store_ca) = (cli.store_password_file, cli.store_ca);
    // `migrate` reads the embedded vault and writes the database its `--to` names.
    let store = match &cli.command {
        Command::Migrate { .. } => None,
        _ => cli.store_url.map(|url| StoreSettings {
            backend: Backend::Postgres,
            url: Some(url),
            password_file: store_password_file.clone(),
            ca: store_ca.clone(),
            ..StoreSettings::sled(vault_core::store::DEFAULT_CACHE_BYTES)
        }),
    };
    let ctx = Context {
        data: cli.data,
        root_key: cli.root_key,
        policies: cli.policies,
        operator: cli.operator,
        store,
    };
    if let Some(done) = remote::carry_out(&ctx, &cli.command)? {
        return done;
    }
    match cli.command {
        Command::Init { log_origin } => init(&ctx, &log_origin),
        Command::Import { file, strict } => import::run(&ctx, &file, strict),
        Command::Status => out(&status_text(&ctx.open()?, None)?),
        Command::Backup { out: path } => backup::backup(&ctx, &path),
        Command::Restore { from } => backup::restore(&ctx, &from),
        Command::Migrate { to } => {
            let settings = StoreSettings {
                backend: Backend::Postgres,
                url: Some(to),
                password_file: store_password_file,
                ca: store_ca,
                ..StoreSettings::sled(vault_core::store::DEFAULT_CACHE_BYTES)
            };
            migrate::migrate(&ctx, &settings)
        }
        Command::Reload => Err(CtlError(format!(
            "{}: no vault-server runs here, so there is nothing to reload (a server reads the \
             policy set when it starts)",
            ctx.data.display()
        ))),
        Command::DemoData { count, seed } => demo::run(count, seed),
        Command::Keys {
            command: KeysCommand::Rotate,
        } => keys::rotate(&ctx),
        Command::Keys {
            command: KeysCommand::RotateToken,
        } => keys::rotate_token(&ctx),
        Command::Keys {
            command: KeysCommand::RetireOldTokenKeys,
        } => keys::retire_old_token_keys(&ctx),
        Command::Erase { citizen } => erase(&ctx, &citizen),
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => policy_check::run(&dir),
        Command::Audit { command } => audit::run(&ctx, command),
        Command::Dev {
            command: DevCommand::Token { citizen, auditor },
        } => dev_token(&ctx, citizen.as_deref(), auditor.as_deref()),
    }
}

fn dev_token(ctx: &Context, citizen: Option<&str>, auditor: Option<&str>) -> CtlResult {
    let dir = crate::dev::DevIssuer::dir(&ctx.data);
    if !dir.join("signing.pk8").exists() {
        return Err(CtlError(format!(
            "{}: no dev issuer here (dev tokens exist only for a data directory made by \
             `vault-server dev`)",
            ctx.data.display()
        )));
    }
    let issuer = crate::dev::DevIssuer::load_or_create(&ctx.data)?;
    let (sub, roles): (&str, &[&str]) = match (citizen, auditor) {
        (Some(c), None) => (CitizenId::parse(c).map(|_| c)?, &[]),
        (None, Some(a)) => (
            SafeId::parse(a)
                .map(|_| a)
                .map_err(|_| CtlError("--auditor must be 1-64 of A-Z a-z 0-9 . _ : @ -".into()))?,
            &["auditor"],
        ),
        _ => {
            return Err(CtlError(
                "give exactly one of --citizen and --auditor".into(),
            ));
        }
    };
    let token = issuer.sign(sub, roles, ctx.now().as_secs(), 3600)?;
    out(&format!("{token}\n"))
}

fn context(data: &Path) -> Context {
    Context {
        data: data.to_owned(),
        root_key: None,
        policies: None,
        operator: "vault-server-dev".into(),
        store: None,
    }
}

/// Opens an existing vault for the server, the store's page cache limited to `cache_bytes`.
pub fn open_vault(
    data: &Path,
    root_key: Option<&Path>,
    policies: Option<&Path>,
    store: &StoreSettings,
) -> Result<Vault<AnyStore>, String> {
    let ctx = Context {
        data: data.to_owned(),
        root_key: root_key.map(Path::to_owned),
        policies: policies.map(Path::to_owned),
        operator: "vault-server".into(),
        store: Some(store.clone()),
    };
    ctx.open_cached(store.cache_bytes).map_err(|CtlError(e)| e)
}

/// Dev mode: creates a vault with a generated root key (as `vaultctl init`) on `store`.
pub fn init_vault(data: &Path, store: &StoreSettings) -> CtlResult {
    let mut ctx = context(data);
    ctx.store = Some(store.clone());
    init(&ctx, vault_core::keyring::DEFAULT_LOG_ORIGIN)
}

/// The policy set a data directory uses.
pub fn policy_of(data: &Path) -> Result<Arc<PolicySet>, CtlError> {
    context(data).policy()
}

/// Dev mode: writes demo citizens to a file.
pub fn write_demo(path: &Path, count: u64, seed: u64) -> CtlResult {
    let f =
        std::fs::File::create(path).map_err(|e| CtlError(format!("{}: {e}", path.display())))?;
    demo::write(f, count, seed)
}

/// Dev mode: imports a file (as `vaultctl import`).
pub fn import_file(data: &Path, file: &Path) -> CtlResult {
    import::run(&context(data), file, false)
}

/// Paths and sources shared by the commands.
#[derive(Clone)]
struct Context {
    data: PathBuf,
    root_key: Option<PathBuf>,
    policies: Option<PathBuf>,
    operator: String,
    /// Where the vault's state lives; `None`: as `DATA/store.toml` says (else sled).
    store: Option<StoreSettings>,
}

impl Context {
    fn store_dir(&self) -> PathBuf {
        self.data.join("store")
    }

    /// The policy directory in force: `--policies`/`VAULT_POLICIES`, else the copy kept in
    /// the data directory, else `./policies`, else the checkout the binary was built in.
    fn policy_dir(&self) -> PathBuf {
        if let Some(p) = &self.policies {
            return p.clone();
        }
        let kept = self.data.join("policies");
        if kept.join("fields.toml").exists() {
            return kept;
        }
        let here = PathBuf::from("policies");
        if here.join("fields.toml").exists() {
            return here;
        }
        // A binary built in a checkout (target/<profile>/vaultctl) finds the repository's set.
        std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.parent()?
                    .parent()?
                    .parent()
                    .map(|root| root.join("policies"))
            })
            .filter(|p| p.join("fields.toml").exists())
            .unwrap_or(here)
    }

    fn audit_dir(&self) -> PathBuf {
        self.data.join("audit")
    }

    /// The operator as an audit actor.
    fn actor(&self) -> Result<Actor, CtlError> {
        SafeId::parse(&self.operator)
            .map(Actor::operator)
            .map_err(|_| CtlError("--operator must be 1-64 of A-Z a-z 0-9 . _ : @ -".into()))
    }

    /// The current time (the CLI is the edge that reads the wall clock).
    fn now(&self) -> vault_core::Timestamp {
        vault_core::SystemClock.now()
    }

    fn default_root_key(&self) -> PathBuf {
        self.data.join("keys").join("root.key")
    }

    fn root_key_source(&self) -> Box<dyn RootKeySource> {
        self.root_key_source_creating(false)
    }

    /// The root key source; `create`: a PKCS#11 key object missing from the token is made
    /// (`init` only).
    fn root_key_source_creating(&self, create: bool) -> Box<dyn RootKeySource> {
        if let Some(uri) = self
            .root_key
            .as_deref()
            .and_then(Path::to_str)
            .filter(|s| crate::pkcs11::Pkcs11Uri::is_uri(s))
        {
            let settings = PKCS11.get().cloned().unwrap_or_default();
            let Some(pin) = settings.pin else {
                return Box::new(Unavailable(
                    "a PKCS#11 root key needs the token's PIN: VAULT_PKCS11_PIN or --pin-file"
                        .into(),
                ));
            };
            return match crate::pkcs11::Pkcs11RootSource::new(uri, settings.module, pin, create) {
                Ok(src) => Box::new(src),
                Err(e) => Box::new(Unavailable(format!("--root-key: {e}"))),
            };
        }
        if let Some(src) = test_root_key() {
            return Box::new(src);
        }
        Box::new(FileRootKey::new(
            self.root_key
                .clone()
                .unwrap_or_else(|| self.default_root_key()),
        ))
    }

    fn policy(&self) -> Result<Arc<PolicySet>, CtlError> {
        PolicySet::load_dir(&self.policy_dir())
            .map(Arc::new)
            .map_err(|e| CtlError(format!("policy: {e}")))
    }

    /// Opens an existing vault (store, root key, policy).
    fn open(&self) -> Result<Vault<AnyStore>, CtlError> {
        self.open_cached(vault_core::store::DEFAULT_CACHE_BYTES)
    }

    /// The store settings: given, else `DATA/store.toml`, else sled.
    fn store_settings(&self, cache_bytes: u64) -> Result<StoreSettings, CtlError> {
        match &self.store {
            Some(s) => Ok(s.clone()),
            None => StoreSettings::of_data_dir(&self.data, cache_bytes).map_err(CtlError),
        }
    }

    /// As `open`, with sled's page cache limited to `cache_bytes`.
    fn open_cached(&self, cache_bytes: u64) -> Result<Vault<AnyStore>, CtlError> {
        let settings = self.store_settings(cache_bytes)?;
        if settings.backend == Backend::Sled && !self.store_dir().exists() {
            return Err(CtlError(format!(
                "{}: {}",
                self.data.display(),
                VaultError::VaultNotInitialized
            )));
        }
        let policy = self.policy()?;
        let opened = crate::backend::open(&self.data, &settings, true).map_err(CtlError)?;
        Ok(Vault::open(
            opened.store,
            self.root_key_source().as_ref(),
            policy,
            opened.audit.as_ref(),
        )?)
    }
}

/// How a PKCS#11 root is reached: the module (when the URI names none) and the user PIN.
#[derive(Clone, Default)]
struct Pkcs11Settings {
    module: Option<PathBuf>,
    pin: Option<Zeroizing<String>>,
}

static PKCS11: std::sync::OnceLock<Pkcs11Settings> = std::sync::OnceLock::new();

/// Sets the PKCS#11 module and PIN for this process (`vaultctl` from its options, the
/// server from `VAULT_PKCS11_MODULE` and `VAULT_PKCS11_PIN`); the first call wins.
pub fn set_pkcs11(module: Option<PathBuf>, pin: Option<Zeroizing<String>>) {
    let _ = PKCS11.set(Pkcs11Settings { module, pin });
}

/// A root key source that cannot work, and says why when asked.
struct Unavailable(String);

impl RootKeySource for Unavailable {
    fn load(&self) -> Result<Box<dyn vault_core::keyring::Root>, VaultError> {
        Err(VaultError::RootKeyUnavailable(self.0.clone()))
    }
}

/// For tests only: debug builds accept the root key as hex in `VAULT_TEST_ROOT_KEY`.
/// Release builds never read it.
fn test_root_key() -> Option<InMemoryRootKey> {
    if !cfg!(debug_assertions) {
        return None;
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "test-only root key source, compiled out of release builds"
    )]
    let hex = std::env::var("VAULT_TEST_ROOT_KEY").ok()?;
    InMemoryRootKey::from_hex(&hex).ok()
}

fn out(text: &str) -> CtlResult {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| CtlError(format!("cannot write to stdout: {e}")))
}

fn create_private_dir(path: &Path) -> CtlResult {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
        .map_err(|e| CtlError(format!("cannot create {}: {e}", path.display())))
}

fn init(ctx: &Context, log_origin: &str) -> CtlResult {
    let settings = ctx.store_settings(vault_core::store::DEFAULT_CACHE_BYTES)?;
    let postgres = settings.backend == Backend::Postgres;
    let store_dir = ctx.store_dir();
    let key_path = ctx
        .root_key
        .clone()
        .unwrap_or_else(|| ctx.default_root_key());
    if store_dir.exists() || (postgres && ctx.data.join(crate::backend::STORE_FILE).exists()) {
        return Err(CtlError(format!(
            "{}: {} (refusing to overwrite)",
            ctx.data.display(),
            VaultError::VaultExists
        )));
    }
    let policy = ctx.policy()?;
    let generated = ctx.root_key.is_none();
    if generated {
        if key_path.exists() {
            return Err(CtlError(format!(
                "{} already exists (refusing to overwrite a root key)",
                key_path.display()
            )));
        }
        create_private_dir(&ctx.data.join("keys"))?;
        FileRootKey::generate(&key_path)?;
    } else {
        // Check the given key before anything is created (a token's key object is made).
        ctx.root_key_source_creating(true).load()?;
    }
    if !postgres && ctx.audit_dir().exists() {
        return Err(CtlError(format!(
            "{} already exists (refusing to overwrite an audit log)",
            ctx.audit_dir().display()
        )));
    }
    if !postgres {
        create_private_dir(&store_dir)?;
        create_private_dir(&ctx.audit_dir())?;
    }
    copy_policies(&ctx.policy_dir(), &ctx.data.join("policies"))?;
    let opened = crate::backend::open(&ctx.data, &settings, true).map_err(CtlError)?;
    let vault = Vault::init(
        opened.store,
        ctx.root_key_source().as_ref(),
        policy,
        log_origin,
        opened.audit.as_ref(),
    )?;
    vault.flush()?;
    settings.record(&ctx.data).map_err(CtlError)?;
    let (store_at, audit_at) = if postgres {
        let url = settings.url.clone().unwrap_or_default();
        (url.clone(), url)
    } else {
        (
            store_dir.display().to_string(),
            ctx.audit_dir().display().to_string(),
        )
    };
    let mut msg = format!(
        "initialized vault in {}\n  store:     {}\n  audit log: {}\n  log key:   {}\n  root key:  {}\n",
        ctx.data.display(),
        store_at,
        audit_at,
        vault.audit().verifier(),
        key_path.display()
    );
    if ctx
        .root_key
        .as_deref()
        .and_then(Path::to_str)
        .is_some_and(crate::pkcs11::Pkcs11Uri::is_uri)
    {
        msg.push_str("  the root key is a key object of the token: it never leaves it\n");
    }
    if generated {
        msg.push_str(
            "  the root key was written with mode 0600 next to the data for development; \
             production keeps it in an HSM or KMS and passes --root-key\n",
        );
    }
    out(&msg)
}

/// Keeps a copy of the policy set (without its test cases) in the data directory, so later
/// commands use the set the vault was created with wherever they are run from. Each file and
/// directory is synced: a crash soon after `init` must not leave a copy the vault cannot load.
fn copy_policies(from: &Path, to: &Path) -> CtlResult {
    let copy = |src: &Path, dst: &Path| -> CtlResult {
        std::fs::copy(src, dst)
            .and_then(|_| std::fs::File::open(dst)?.sync_all())
            .map_err(|e| {
                CtlError(format!(
                    "cannot copy {} to {}: {e}",
                    src.display(),
                    dst.display()
                ))
            })
    };
    let sync_dir = |dir: &Path| -> CtlResult {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CtlError(format!("cannot sync {}: {e}", dir.display())))
    };
    if from == to {
        return Ok(());
    }
    create_private_dir(&to.join("purposes"))?;
    copy(&from.join("fields.toml"), &to.join("fields.toml"))?;
    copy(&from.join("agencies.toml"), &to.join("agencies.toml"))?;
    for optional in ["calendar.toml", "anomalies.toml"] {
        if from.join(optional).exists() {
            copy(&from.join(optional), &to.join(optional))?;
        }
    }
    let entries = std::fs::read_dir(from.join("purposes"))
        .map_err(|e| CtlError(format!("{}: {e}", from.join("purposes").display())))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            copy(&p, &to.join("purposes").join(e.file_name()))?;
        }
    }
    sync_dir(&to.join("purposes"))?;
    sync_dir(to)?;
    to.parent().map_or(Ok(()), sync_dir)
}

/// What a completed erasure says.
pub const ERASED: &str =
    "erased: the citizen's data key, sealed fields and index row are destroyed\n";

fn erase(ctx: &Context, citizen: &str) -> CtlResult {
    let id = CitizenId::parse(citizen)?;
    let vault = ctx.open()?;
    vault.erase(&id, &ctx.actor()?, ctx.now())?;
    out(ERASED)
}

/// `vaultctl status`: who serves (`server`: the pid of the running server), the log, the
/// records, the keys and the policy set.
pub fn status_text(vault: &Vault<AnyStore>, server: Option<u32>) -> Result<String, CtlError> {
    let log = vault.audit();
    let keys = vault.token_keys();
    let cp = vault_core::audit::Checkpoint::verify(&log.latest_checkpoint()?, &log.verifier())
        .map_err(|e| CtlError(format!("the latest checkpoint does not verify: {e}")))?;
    Ok(format!(
        "server:          {}\n\
         audit log:       {} entries, root {}\n\
         records:         {} citizens\n\
         keys:            KEK v{} (oldest readable v{}), token key {}\n\
         policy set:      {}\n",
        server.map_or_else(
            || "none runs here (this command opened the vault itself)".to_owned(),
            |pid| format!("vault-server (pid {pid}) runs here")
        ),
        cp.size,
        hex::encode(cp.root),
        vault.citizen_count()?,
        vault.kek_version(),
        vault.min_decryption_version(),
        keys.current_kid(),
        hex::encode(vault.policy().sha256()),
    ))
}

/// The root key source a command uses: `VAULT_TEST_ROOT_KEY` in debug builds, else the
/// file given or `DATA/keys/root.key`.
pub fn root_key_source(data: &Path, root_key: Option<&Path>) -> Box<dyn RootKeySource> {
    let ctx = Context {
        data: data.to_owned(),
        root_key: root_key.map(Path::to_owned),
        policies: None,
        operator: String::new(),
        store: None,
    };
    ctx.root_key_source()
}

/// The policy directory a vault uses (as `Context::policy_dir`).
pub fn policy_dir_of(data: &Path, policies: Option<&Path>) -> PathBuf {
    Context {
        data: data.to_owned(),
        root_key: None,
        policies: policies.map(Path::to_owned),
        operator: String::new(),
        store: None,
    }
    .policy_dir()
}

/// A progress bar on stderr with rate and ETA; on a non-terminal, plain lines instead.
fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style =
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({rate}, ETA {eta})")
            .map(|s| {
                s.progress_chars("=> ").with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", state.per_sec());
                    },
                )
            })
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}
