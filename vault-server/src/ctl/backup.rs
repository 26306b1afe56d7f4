//! `vaultctl backup` and `restore`. A backup is one file of JSON lines: a header, every row
//! of the store as the store holds it (sealed; `vault_core::store::dump`), the policy set's
//! files, the audit log's files up to a tree size taken after the rows were read (entries
//! are durable before the changes they record, so every change the rows show has its entry
//! in the copy), and a last line, the manifest: the tree size, its root and signed
//! checkpoint, the row counts and the SHA-256 of every line before it. The root key is
//! never in it. `restore` writes into an empty directory, checks the manifest, opens the
//! copy with the root key and verifies the whole log before it says it is done; if any
//! check fails it removes what it wrote.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::backend::AnyStore;
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vault_core::Vault;
use vault_core::audit::{Actor, Checkpoint};
use vault_core::store::dump::{Counts, Row};
use vault_core::store::{MetaStore as _, SledStore};

use super::{Context, CtlError, CtlResult, out};

/// The backup format's version (the header's `cdv_backup`).
const FORMAT: u64 = 1;
/// Bytes of a log file per line.
const CHUNK: usize = 1 << 20;
/// The log's files, in the order a backup holds them.
const AUDIT_FILES: [&str; 3] = ["entries.log", "leaves.idx", "checkpoints.log"];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lines written and hashed.
struct Lines<'a> {
    out: &'a mut dyn Write,
    hash: Sha256,
}

impl Lines<'_> {
    fn put(&mut self, v: &Value) -> CtlResult {
        let mut line = serde_json::to_vec(v).map_err(|e| CtlError(format!("backup: {e}")))?;
        line.push(b'\n');
        self.hash.update(&line);
        self.out
            .write_all(&line)
            .map_err(|e| CtlError(format!("backup: cannot write: {e}")))
    }
}

/// The policy files under `dir`, relative, in a stable order.
fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, CtlError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries =
            std::fs::read_dir(&here).map_err(|e| CtlError(format!("{}: {e}", here.display())))?;
        for e in entries {
            let e = e.map_err(|e| CtlError(format!("{}: {e}", here.display())))?;
            let name = rel.join(e.file_name());
            if e.path().is_dir() {
                stack.push(name);
            } else {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a backup of `vault` (its log in `data/audit`, its policy set in `policies`) to
/// `out`, as `actor`; what it holds, in words.
pub fn write_backup(
    vault: &Vault<AnyStore>,
    data: &Path,
    policies: &Path,
    actor: &Actor,
    now: vault_core::Timestamp,
    out: &mut dyn Write,
) -> Result<String, CtlError> {
    if matches!(vault.store(), AnyStore::Postgres(_)) {
        return Err(CtlError(
            "this vault's rows and audit log are in PostgreSQL: back it up with the database's \
             own tools (pg_basebackup with WAL archiving, or a synchronous standby); see \
             docs/operations.md"
                .into(),
        ));
    }
    let mut lines = Lines {
        out,
        hash: Sha256::new(),
    };
    lines.put(&json!({"cdv_backup": FORMAT, "vault_version": env!("CARGO_PKG_VERSION")}))?;
    let mut failed = None;
    let counts = vault.dump_store(&mut |row| {
        let v = row.to_json()?;
        lines.put(&v).map_err(|e| {
            failed = Some(e.0.clone());
            vault_core::store::StoreError::Unavailable(e.0)
        })
    });
    if let Some(e) = failed {
        return Err(CtlError(e));
    }
    let counts = counts?;
    for rel in policy_files(policies)? {
        let path = policies.join(&rel);
        let bytes =
            std::fs::read(&path).map_err(|e| CtlError(format!("{}: {e}", path.display())))?;
        lines.put(&json!({"policy_file": rel.to_string_lossy(), "data": b64(&bytes)}))?;
    }
    // The log as it is now, after the rows: every change they show has its entry in it.
    let log = vault.audit();
    let size = log.size();
    let lengths = log
        .file_lengths(size)?
        .ok_or_else(|| CtlError("backup: this audit log is not kept in files".into()))?;
    let note = log
        .checkpoint_at(size)?
        .ok_or_else(|| CtlError(format!("backup: no signed checkpoint for size {size}")))?;
    let root = Checkpoint::verify(&note, &log.verifier())
        .map_err(|e| CtlError(format!("backup: the checkpoint does not verify: {e}")))?
        .root;
    let audit = data.join("audit");
    for (name, len) in AUDIT_FILES.iter().zip(lengths) {
        let path = audit.join(name);
        let f =
            std::fs::File::open(&path).map_err(|e| CtlError(format!("{}: {e}", path.display())))?;
        let mut at = 0u64;
        let mut buf = vec![0u8; CHUNK];
        while at < len {
            let n = usize::try_from((len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = buf.get_mut(..n).unwrap_or_default();
            std::os::unix::fs::FileExt::read_exact_at(&f, chunk, at)
                .map_err(|e| CtlError(format!("{}: {e}", path.display())))?;
            lines.put(&json!({"audit_file": name, "data": b64(chunk)}))?;
            at += n as u64;
        }
    }
    let digest = hex::encode(lines.hash.clone().finalize());
    let manifest = json!({"manifest": {
        "format": FORMAT,
        "tree_size": size,
        "root": hex::encode(root),
        "checkpoint": note,
        "counts": counts.to_json(),
        "sha256": digest,
    }});
    let mut last = serde_json::to_vec(&manifest).map_err(|e| CtlError(format!("backup: {e}")))?;
    last.push(b'\n');
    lines
        .out
        .write_all(&last)
        .and_then(|()| lines.out.flush())
        .map_err(|e| CtlError(format!("backup: cannot write: {e}")))?;
    vault.backup_created(actor, size, now)?;
    Ok(format!(
        "backup written: {} citizens, {} grants, {} consents, {} cases; audit log of {size} entries, root {}\n",
        counts.citizens,
        counts.grants,
        counts.consents,
        counts.cases,
        hex::encode(root)
    ))
}

/// Creates `path` for a backup (mode 0600; an existing file is replaced).
pub fn create_backup_file(path: &Path) -> Result<std::fs::File, CtlError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CtlError(format!("{}: cannot create: {e}", path.display())))
}

/// `vaultctl backup --out FILE` with no server running.
pub(super) fn backup(ctx: &Context, path: &Path) -> CtlResult {
    let vault = ctx.open()?;
    let mut file = create_backup_file(path)?;
    let said = write_backup(
        &vault,
        &ctx.data,
        &ctx.policy_dir(),
        &ctx.actor()?,
        ctx.now(),
        &mut std::io::BufWriter::with_capacity(CHUNK, &mut file),
    )?;
    file.sync_all()
        .map_err(|e| CtlError(format!("{}: {e}", path.display())))?;
    out(&said)
}

/// `vaultctl restore --from FILE --data NEWDIR`.
pub(super) fn restore(ctx: &Context, from: &Path) -> CtlResult {
    let target = ctx.data.clone();
    if std::fs::read_dir(&target).is_ok_and(|mut d| d.next().is_some()) {
        return Err(CtlError(format!(
            "{}: not empty; restore writes only into an empty or new directory",
            target.display()
        )));
    }
    let root = ctx
        .root_key
        .clone()
        .unwrap_or_else(|| ctx.default_root_key());
    if !root.exists() {
        return Err(CtlError(format!(
            "the root key is never in a backup: give the vault's root key with --root-key \
             (no {})",
            root.display()
        )));
    }
    let result = restore_into(ctx, from);
    if result.is_err() {
        // Nothing half-written: the directory was empty or new.
        let _ = std::fs::remove_dir_all(&target);
    }
    out(&result?)
}

fn restore_into(ctx: &Context, from: &Path) -> Result<String, CtlError> {
    let shown = from.display();
    let file = std::fs::File::open(from).map_err(|e| CtlError(format!("{shown}: {e}")))?;
    super::create_private_dir(&ctx.data)?;
    let audit = ctx.data.join("audit");
    let policies = ctx.data.join("policies");
    super::create_private_dir(&audit)?;
    let store = SledStore::open(&ctx.data.join("store"))?;
    let mut hash = Sha256::new();
    let mut counts = Counts::default();
    let mut manifest = None;
    let mut audit_files: Vec<std::fs::File> = Vec::new();
    let mut reader = BufReader::with_capacity(CHUNK, file);
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(|e| CtlError(format!("{shown}: {e}")))?
            == 0
        {
            break;
        }
        n += 1;
        let bad = |why: &str| CtlError(format!("{shown}:{n}: {why}"));
        if manifest.is_some() {
            return Err(bad("lines after the manifest"));
        }
        let v: Value = serde_json::from_slice(&line).map_err(|_| bad("not a JSON line"))?;
        if let Some(m) = v.get("manifest") {
            manifest = Some(m.clone());
            continue;
        }
        hash.update(&line);
        if n == 1 {
            if v.get("cdv_backup").and_then(Value::as_u64) != Some(FORMAT) {
                return Err(bad("not a vault backup (format 1)"));
            }
            continue;
        }
        if let Some(name) = v.get("audit_file").and_then(Value::as_str) {
            let at = AUDIT_FILES
                .iter()
                .position(|f| *f == name)
                .ok_or_else(|| bad("unknown audit file"))?;
            while audit_files.len() <= at {
                let path = audit.join(AUDIT_FILES[audit_files.len()]);
                audit_files.push(
                    std::fs::File::create(&path)
                        .map_err(|e| CtlError(format!("{}: {e}", path.display())))?,
                );
            }
            if at + 1 != audit_files.len() {
                return Err(bad("audit files out of order"));
            }
            let bytes = v
                .get("data")
                .and_then(Value::as_str)
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .ok_or_else(|| bad("audit data is not base64"))?;
            audit_files
                .get_mut(at)
                .ok_or_else(|| bad("audit file"))?
                .write_all(&bytes)
                .map_err(|e| CtlError(format!("{}: {e}", audit.display())))?;
        } else if let Some(rel) = v.get("policy_file").and_then(Value::as_str) {
            let rel = Path::new(rel);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(bad("a policy file name leaves the policy directory"));
            }
            let bytes = v
                .get("data")
                .and_then(Value::as_str)
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .ok_or_else(|| bad("policy data is not base64"))?;
            let path = policies.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| CtlError(format!("{}: {e}", parent.display())))?;
            }
            std::fs::write(&path, bytes)
                .map_err(|e| CtlError(format!("{}: {e}", path.display())))?;
        } else {
            let row = Row::from_json(&v)
                .map_err(|e| bad(&e.to_string()))?
                .ok_or_else(|| bad("not a row of a backup"))?;
            match &row {
                Row::Citizen(..) => counts.citizens += 1,
                Row::Grant(_) => counts.grants += 1,
                Row::Consent(_) => counts.consents += 1,
                Row::Case(_) => counts.cases += 1,
                Row::Keyring(_) | Row::ReleasedThrough(_) => {}
            }
            vault_core::store::dump::load(&store, row).map_err(|e| bad(&e.to_string()))?;
        }
    }
    let m = manifest.ok_or_else(|| {
        CtlError(format!(
            "{shown}: no manifest at the end: the backup is cut short"
        ))
    })?;
    if m.get("sha256").and_then(Value::as_str) != Some(hex::encode(hash.finalize()).as_str()) {
        return Err(CtlError(format!(
            "{shown}: the manifest's SHA-256 does not match the lines before it"
        )));
    }
    if Counts::from_json(m.get("counts").unwrap_or(&Value::Null)) != Some(counts) {
        return Err(CtlError(format!(
            "{shown}: the rows do not match the manifest's counts"
        )));
    }
    for f in &audit_files {
        f.sync_all()
            .map_err(|e| CtlError(format!("{}: {e}", audit.display())))?;
    }
    drop(audit_files);
    store.flush()?;
    drop(store);
    // Open the copy as a vault with the root key: the log's recovery checks it against its
    // checkpoints; then every entry is re-hashed and every checkpoint checked.
    let size = m
        .get("tree_size")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let root = m
        .get("root")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let restored_ctx = Context {
        data: ctx.data.clone(),
        root_key: ctx.root_key.clone(),
        policies: Some(policies.clone()),
        operator: ctx.operator.clone(),
        store: None,
    };
    let vault = restored_ctx.open()?;
    let report = vault.audit().verify_all()?;
    if report.entries != size || hex::encode(report.root) != root {
        return Err(CtlError(format!(
            "{shown}: the restored log has {} entries with root {}, the manifest says {size} and {root}",
            report.entries,
            hex::encode(report.root)
        )));
    }
    let citizens = vault.citizen_count()?;
    drop(vault);
    Ok(format!(
        "restored into {}: {citizens} citizens, {} grants, {} consents, {} cases; audit log of {size} \
         entries verified ({} checkpoints), root {root}\n",
        ctx.data.display(),
        counts.grants,
        counts.consents,
        counts.cases,
        report.checkpoints
    ))
}
