//! The admin socket (`DATA/admin.sock`, mode 0600): a running server carries out the
//! `vaultctl` commands that change the vault (`import`, `erase`, `keys …`, `reload`,
//! `backup`) and
//! reports its `status`, with its own open store and audit log, so none of them needs the
//! server stopped. The protocol is JSON lines: one request line from `vaultctl` (for
//! `import`, the file it opened rides along as a passed descriptor, so the server reads
//! what the operator may read), then the server's lines (`say`, `warn`, `progress`) and a
//! last `ok` or `error`. Only the server's own user (or root) may connect: the file's mode
//! and the peer's credentials are both checked.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use vault_core::CitizenId;
use vault_core::audit::{Actor, SafeId};

use crate::ctl::{self, CtlError, CtlResult, import::Report};
use crate::state::AppState;

/// The socket's file name under the data directory.
pub const SOCKET: &str = "admin.sock";

/// A request from `vaultctl`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// What the server serves: tree size, records, keys, policy.
    Status,
    /// Crypto-shred one citizen.
    Erase { citizen: String, operator: String },
    /// Import the passed file (`name` as the operator gave it).
    Import {
        name: PathBuf,
        strict: bool,
        operator: String,
    },
    /// A new KEK, every DEK re-wrapped.
    KeysRotate { operator: String },
    /// A new token signing key.
    KeysRotateToken { operator: String },
    /// Retire every token signing key but the newest.
    KeysRetireOldTokenKeys { operator: String },
    /// Load the policy set again.
    Reload,
    /// Write a backup into the passed file.
    Backup { operator: String },
}

/// A line from the server.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// Text for stdout.
    Say(String),
    /// Text for stderr.
    Warn(String),
    /// Progress: through `line` of `total`, `committed` rows.
    Progress {
        line: u64,
        total: u64,
        committed: u64,
    },
    /// Done, with a last line for stdout.
    Ok(String),
    /// Failed: why.
    Error(String),
}

/// Where the server finds what `vaultctl` would be given.
#[derive(Debug, Clone)]
pub struct AdminContext {
    /// The data directory.
    pub data: PathBuf,
    /// The root key (`--root-key`), if not the default.
    pub root_key: Option<PathBuf>,
    /// The policy directory, if not the data directory's copy.
    pub policies: Option<PathBuf>,
}

/// The listening socket; the file is removed when this is dropped.
#[derive(Debug)]
pub struct AdminSocket {
    path: PathBuf,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One command at a time changes the vault through the socket.
static BUSY: Mutex<()> = Mutex::new(());

impl AdminSocket {
    /// Binds `DATA/admin.sock` and serves it on a thread of its own. A socket file left by a
    /// server that died is replaced; one that answers means another server runs here: an
    /// error, unless the vault is `shared` (PostgreSQL: several nodes may use one data
    /// directory, and a command carried out by any of them changes the one database), when
    /// this node serves without a socket (`None`).
    pub fn start(
        state: Arc<AppState>,
        ctx: AdminContext,
        shared: bool,
    ) -> Result<Option<Self>, String> {
        let path = ctx.data.join(SOCKET);
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                if shared {
                    return Ok(None);
                }
                return Err(format!(
                    "{}: another vault-server answers on this admin socket",
                    path.display()
                ));
            }
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        set_mode_0600(&path)?;
        let me = rustix::process::getuid();
        std::thread::Builder::new()
            .name("admin-socket".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let allowed = rustix::net::sockopt::socket_peercred(&conn)
                        .is_ok_and(|c| c.uid == me || c.uid.is_root());
                    if !allowed {
                        tracing::warn!(target: "vault::admin", "admin socket: a peer of another user was refused");
                        continue;
                    }
                    let (state, ctx) = (Arc::clone(&state), ctx.clone());
                    let _ = std::thread::Builder::new()
                        .name("admin-command".into())
                        .spawn(move || serve(&state, &ctx, conn));
                }
            })
            .map_err(|e| format!("admin socket thread: {e}"))?;
        Ok(Some(Self { path }))
    }
}

fn set_mode_0600(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Sends one line; false if the client went away.
fn send(conn: &UnixStream, reply: &Reply) -> bool {
    let mut line = serde_json::to_vec(reply).unwrap_or_default();
    line.push(b'\n');
    (&*conn).write_all(&line).is_ok()
}

/// Reads the request line and the descriptor passed with it, if any.
fn receive(conn: &UnixStream) -> Result<(Request, Option<std::fs::File>), String> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut buf = vec![0u8; 64 * 1024];
    let got = rustix::net::recvmsg(
        conn,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| format!("cannot read the request: {e}"))?;
    let mut file = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                file.get_or_insert(std::fs::File::from(fd));
            }
        }
    }
    buf.truncate(got.bytes);
    if !buf.ends_with(b"\n") {
        let mut rest = Vec::new();
        BufReader::new(conn)
            .read_until(b'\n', &mut rest)
            .map_err(|e| format!("cannot read the request: {e}"))?;
        buf.extend(rest);
    }
    let request =
        serde_json::from_slice(&buf).map_err(|e| format!("the request is not understood: {e}"))?;
    Ok((request, file))
}

/// Progress and lines of an import, over the socket.
struct Remote<'a> {
    conn: &'a UnixStream,
    last: Mutex<std::time::Instant>,
}

impl Report for Remote<'_> {
    fn say(&self, text: &str) -> CtlResult {
        send(self.conn, &Reply::Say(text.to_owned()))
            .then_some(())
            .ok_or_else(|| CtlError::from("vaultctl went away".to_owned()))
    }
    fn warn(&self, text: &str) {
        send(self.conn, &Reply::Warn(text.to_owned()));
    }
    fn progress(&self, line: u64, total: u64, committed: u64) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() >= std::time::Duration::from_millis(200) || line == total {
            *last = std::time::Instant::now();
            send(
                self.conn,
                &Reply::Progress {
                    line,
                    total,
                    committed,
                },
            );
        }
    }
}

fn operator(id: &str) -> Result<Actor, CtlError> {
    SafeId::parse(id)
        .map(Actor::operator)
        .map_err(|_| CtlError::from("--operator must be 1-64 of A-Z a-z 0-9 . _ : @ -".to_owned()))
}

fn serve(state: &AppState, ctx: &AdminContext, conn: UnixStream) {
    let (request, file) = match receive(&conn) {
        Ok(r) => r,
        Err(e) => {
            send(&conn, &Reply::Error(e));
            return;
        }
    };
    let done = match request {
        Request::Status => status(state),
        other => match BUSY.lock() {
            Ok(_busy) => change(state, ctx, &conn, other, file),
            Err(_) => Err(CtlError::from("the admin socket is unusable".to_owned())),
        },
    };
    let reply = match done {
        Ok(text) => Reply::Ok(text),
        Err(e) => {
            tracing::warn!(target: "vault::admin", "admin command failed");
            Reply::Error(e.to_string())
        }
    };
    send(&conn, &reply);
}

fn status(state: &AppState) -> Result<String, CtlError> {
    ctl::status_text(&state.vault, Some(std::process::id()))
}

fn change(
    state: &AppState,
    ctx: &AdminContext,
    conn: &UnixStream,
    request: Request,
    file: Option<std::fs::File>,
) -> Result<String, CtlError> {
    let vault = &state.vault;
    let now = || state.now();
    match request {
        Request::Status => status(state),
        Request::Erase {
            citizen,
            operator: op,
        } => {
            let id = CitizenId::parse(&citizen)?;
            vault.erase(&id, &operator(&op)?, now())?;
            Ok(ctl::ERASED.to_owned())
        }
        Request::Import {
            name,
            strict,
            operator: op,
        } => {
            let file = file.ok_or_else(|| {
                CtlError::from("no file was passed with the import request".to_owned())
            })?;
            let report = Remote {
                conn,
                last: Mutex::new(std::time::Instant::now()),
            };
            // Beside the API's writers: the pipeline prepares and commits separately.
            let _writes = vault.lock_writes()?;
            ctl::import::import(
                vault,
                &operator(&op)?,
                &now,
                &ctl::import::Source::passed(&name, file),
                strict,
                &report,
            )?;
            Ok(String::new())
        }
        Request::KeysRotate { operator: op } => {
            let root = ctl::root_key_source(&ctx.data, ctx.root_key.as_deref());
            let total = vault.citizen_count()?;
            let mut last = std::time::Instant::now();
            let report =
                vault.rotate_keys(root.as_ref(), 1000, &operator(&op)?, now(), &mut |p| {
                    if last.elapsed() >= std::time::Duration::from_millis(200) {
                        last = std::time::Instant::now();
                        send(
                            conn,
                            &Reply::Progress {
                                line: p.visited,
                                total,
                                committed: p.visited,
                            },
                        );
                    }
                    std::ops::ControlFlow::Continue(())
                })?;
            Ok(ctl::keys::rotated_text(
                &report,
                vault.min_decryption_version(),
            ))
        }
        Request::KeysRotateToken { operator: op } => {
            let root = ctl::root_key_source(&ctx.data, ctx.root_key.as_deref());
            let v = vault.rotate_token_key(root.as_ref(), &operator(&op)?, now())?;
            Ok(ctl::keys::token_rotated_text(
                v,
                vault.token_keys().current_kid(),
            ))
        }
        Request::KeysRetireOldTokenKeys { operator: op } => {
            let root = ctl::root_key_source(&ctx.data, ctx.root_key.as_deref());
            let n = vault.retire_old_token_keys(root.as_ref(), &operator(&op)?, now())?;
            Ok(ctl::keys::retired_text(n))
        }
        Request::Reload => reload(state, ctx).map_err(CtlError::from),
        Request::Backup { operator: op } => {
            let file = file.ok_or_else(|| {
                CtlError::from("no file was passed with the backup request".to_owned())
            })?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, &file);
            let said = ctl::backup::write_backup(
                vault,
                &ctx.data,
                &ctl::policy_dir_of(&ctx.data, ctx.policies.as_deref()),
                &operator(&op)?,
                now(),
                &mut out,
            )?;
            drop(out);
            file.sync_all()
                .map_err(|e| CtlError::from(format!("the backup file: {e}")))?;
            Ok(said)
        }
    }
}

/// Loads the policy set and the CRLs again; on success every later entry records the new
/// set's hash and every later handshake checks the new CRLs. A set or CRL that fails to load
/// is refused and what is in force stays.
pub fn reload(state: &AppState, ctx: &AdminContext) -> Result<String, String> {
    let dir = ctl::policy_dir_of(&ctx.data, ctx.policies.as_deref());
    let before = hex::encode(state.vault.policy().sha256());
    let next = vault_core::policy::PolicySet::load_dir(&dir).map_err(|e| {
        format!("policy reload refused, the policy set in force ({before}) stays: {e}")
    })?;
    let after = hex::encode(next.sha256());
    // The CRLs too; a CRL that fails to load refuses the whole reload.
    let revoked =
        match state.client_verifier.get() {
            Some(v) => Some(v.reload().map_err(|e| {
                format!("reload refused, the policy set and CRLs in force stay: {e}")
            })?),
            None => None,
        };
    state.vault.set_policy(Arc::new(next));
    tracing::info!(target: "vault::admin", policy = %after, "policy set reloaded");
    let crls = revoked.map_or_else(String::new, |n| format!("; {n} CRL(s) read again"));
    Ok(if after == before {
        format!(
            "policy set reloaded from {}: unchanged ({after}){crls}\n",
            dir.display()
        )
    } else {
        format!(
            "policy set reloaded from {}: {before} -> {after}; later entries record the new hash{crls}\n",
            dir.display()
        )
    })
}
