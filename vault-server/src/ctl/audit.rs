//! `vaultctl audit …`: verify (online against the data directory, or offline from an export,
//! a checkpoint and the verifier key), export, checkpoint, pubkey, proof. Each reads the log
//! files through a read-only view (no lock, nothing written), so it works beside a running
//! `vault-server` and sees the log as its last signed checkpoint left it.

use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use clap::Subcommand;
use vault_core::audit::export::{export_line, verify_export};
use vault_core::audit::{AuditLog, Checkpoint, LogVerifier, SegmentLog};

use super::{Context, CtlError, CtlResult, out};

/// Audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the log: online (`--data`), or offline with `--log`, `--checkpoint`, `--key`.
    Verify {
        /// An export (JSONL from `vaultctl audit export`), for offline verification.
        #[arg(long, requires_all = ["checkpoint", "key"])]
        log: Option<PathBuf>,
        /// A signed checkpoint file (offline).
        #[arg(long, requires = "log")]
        checkpoint: Option<PathBuf>,
        /// The verifier key string (offline), as printed by `vaultctl audit pubkey`.
        #[arg(long, requires = "log")]
        key: Option<String>,
    },
    /// Print entries as JSONL: `{"index", "entry", "leaf_hash"}`, entries N..M-1.
    Export {
        /// First index (default 0).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// End index, exclusive (default: the log's size).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Print the latest signed checkpoint.
    Checkpoint,
    /// Print the log's verifier key string.
    Pubkey,
    /// Print the inclusion proof of an entry (in the tree of `--size`, default the latest).
    Proof {
        /// The entry index.
        #[arg(long)]
        index: u64,
        /// The tree size (default: the log's size).
        #[arg(long)]
        size: Option<u64>,
    },
}

pub(super) fn run(ctx: &Context, cmd: AuditCommand) -> CtlResult {
    match cmd {
        AuditCommand::Verify {
            log: Some(log),
            checkpoint: Some(cp),
            key: Some(key),
        } => offline(&log, &cp, &key),
        AuditCommand::Verify { .. } => online(ctx),
        AuditCommand::Export { from, to } => export(ctx, from, to),
        AuditCommand::Checkpoint => out(&ctx.audit_view()?.log().latest_checkpoint()?),
        AuditCommand::Pubkey => out(&format!("{}\n", ctx.audit_view()?.log().verifier())),
        AuditCommand::Proof { index, size } => proof(ctx, index, size),
    }
}

fn online(ctx: &Context) -> CtlResult {
    let report = ctx.audit_view()?.log().verify_all()?;
    out(&format!(
        "audit log verified: {} entries re-hashed, {} signed checkpoints checked, root {}\n",
        report.entries,
        report.checkpoints,
        hex::encode(report.root)
    ))
}

fn offline(log: &std::path::Path, cp: &std::path::Path, key: &str) -> CtlResult {
    let verifier = LogVerifier::parse(key).map_err(|e| CtlError(format!("--key: {e}")))?;
    let note =
        std::fs::read_to_string(cp).map_err(|e| CtlError(format!("{}: {e}", cp.display())))?;
    let file = std::fs::File::open(log).map_err(|e| CtlError(format!("{}: {e}", log.display())))?;
    let started = std::time::Instant::now();
    let report = verify_export(BufReader::with_capacity(1 << 20, file), &note, &verifier)
        .map_err(|e| CtlError(format!("{}: {e}", log.display())))?;
    let secs = started.elapsed().as_secs_f64();
    out(&format!(
        "audit export verified: {} entries, checkpoint of size {} signed by {} ({:.0} entries/s)\n",
        report.entries,
        report.checkpoint_size,
        verifier.name(),
        report.entries as f64 / secs.max(1e-9)
    ))
}

fn export(ctx: &Context, from: u64, to: Option<u64>) -> CtlResult {
    let handle = ctx.audit_view()?;
    let log = handle.log();
    let size = log.size();
    let to = to.unwrap_or(size);
    if from > to || to > size {
        return Err(CtlError(format!(
            "--from/--to must satisfy 0 <= from <= to <= {size}"
        )));
    }
    let mut w = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut at = from;
    while at < to {
        let end = (at + 4_096).min(to);
        for (k, (entry, leaf)) in log.entries(at, end)?.iter().enumerate() {
            w.write_all(&export_line(at + k as u64, entry, leaf))
                .map_err(|e| CtlError(format!("cannot write: {e}")))?;
        }
        at = end;
    }
    w.flush()
        .map_err(|e| CtlError(format!("cannot write: {e}")))
}

/// The audit log as a command reads it: beside a running server, a read-only view of its
/// files (no lock, nothing written); with none, the vault opened as usual, whose recovery
/// signs a checkpoint for durable entries a crash left past the last one (an acknowledged
/// release is never missing from what is read).
pub(super) enum AuditHandle {
    View(SegmentLog),
    Opened(Box<vault_core::Vault<crate::backend::AnyStore>>),
}

impl AuditHandle {
    fn log(&self) -> &dyn AuditLog {
        match self {
            Self::View(v) => v,
            Self::Opened(v) => v.audit(),
        }
    }
}

impl Context {
    /// The audit log to read (`AuditHandle`).
    fn audit_view(&self) -> Result<AuditHandle, CtlError> {
        // A PostgreSQL log is read beside running nodes through the database: no files, no
        // lock (this process takes the sequencer lease only if no node holds it).
        let settings = self.store_settings(vault_core::store::DEFAULT_CACHE_BYTES)?;
        if settings.backend == crate::backend::Backend::Postgres {
            return Ok(AuditHandle::Opened(Box::new(self.open()?)));
        }
        let dir = self.audit_dir();
        if !dir.join("entries.log").exists() {
            return Err(CtlError(format!(
                "{}: no vault here (no audit log in {}); give the vault's directory with --data or VAULT_DATA",
                self.data.display(),
                dir.display()
            )));
        }
        let served =
            std::os::unix::net::UnixStream::connect(self.data.join(crate::admin::SOCKET)).is_ok();
        if !served {
            return Ok(AuditHandle::Opened(Box::new(self.open()?)));
        }
        let verifier = SegmentLog::published_verifier(&dir)?;
        Ok(AuditHandle::View(SegmentLog::open_read_only(
            &dir, verifier,
        )?))
    }
}

fn proof(ctx: &Context, index: u64, size: Option<u64>) -> CtlResult {
    let handle = ctx.audit_view()?;
    let log = handle.log();
    let size = size.unwrap_or(log.size());
    let hashes = log.inclusion_proof(index, size)?;
    let checkpoint = log.checkpoint_at(size)?;
    let root = checkpoint
        .as_deref()
        .and_then(|n| Checkpoint::verify(n, &log.verifier()).ok())
        .map(|c| hex::encode(c.root));
    let doc = serde_json::json!({
        "index": index,
        "tree_size": size,
        "leaf_hash": hex::encode(log.leaf_hash(index)?),
        "hashes": hashes.iter().map(hex::encode).collect::<Vec<_>>(),
        "root": root,
        "checkpoint": checkpoint,
    });
    out(&format!("{doc:#}\n"))
}
