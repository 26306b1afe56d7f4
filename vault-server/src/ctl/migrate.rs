//! `vaultctl migrate --to postgres://…`: moves an embedded (sled) vault into an empty
//! PostgreSQL database: every store row as the store holds it (sealed records, grants with
//! their state, consents, cases, the keyring), then the audit log entry for entry with its
//! signed checkpoints, in one transaction. The copy is then opened as a vault: its whole log
//! verifies, its root at the old size is the old root, and a consistency proof from the old
//! checkpoint to the new log's verifies. `DATA/store.toml` then names the database; the
//! sled files stay until the operator removes them.

use std::sync::Arc;

use vault_core::audit::{AuditLog, Checkpoint, LogVerifier, SegmentLog, merkle};
use vault_core::postgres::{PostgresStore, copy_in};
use vault_core::store::dump::{self, Row};
use vault_core::store::{EncodedRecord, RecordStore as _, StoreError};

use super::{Context, CtlError, CtlResult, out};
use crate::backend::{Backend, StoreSettings};

/// Citizens stored per statement.
const BATCH: usize = 1_000;

pub(super) fn migrate(ctx: &Context, settings: &StoreSettings) -> CtlResult {
    let source = ctx.store_settings(vault_core::store::DEFAULT_CACHE_BYTES)?;
    if source.backend != Backend::Sled {
        return Err(CtlError(format!(
            "{}: this vault is already in PostgreSQL",
            ctx.data.display()
        )));
    }
    if std::os::unix::net::UnixStream::connect(ctx.data.join(crate::admin::SOCKET)).is_ok() {
        return Err(CtlError(format!(
            "{}: a vault-server runs on this vault; stop it first (the copy must see every \
             change)",
            ctx.data.display()
        )));
    }
    // Open the source once (its recovery signs what a crash left unsigned), note the log.
    let (size, root, verifier) = {
        let vault = ctx.open()?;
        let log = vault.audit();
        let report = log.verify_all()?;
        (report.entries, report.root, log.verifier())
    };
    let pool = Arc::new(crate::backend::connect(settings).map_err(CtlError)?);
    vault_core::postgres::migrate(&pool)?;
    let target = PostgresStore::new(Arc::clone(&pool));
    if vault_core::store::MetaStore::keyring(&target)?.is_some() {
        return Err(CtlError(
            "the database already holds a vault; migrate into an empty database".into(),
        ));
    }
    let copied = copy_all(ctx, &target, &pool, size, &verifier);
    let counts = match copied {
        Ok(c) => c,
        Err(e) => {
            empty_again(&pool);
            return Err(e);
        }
    };
    settings.record(&ctx.data).map_err(CtlError)?;
    // The copy as a vault: the whole log again, the same root, and consistent with the old.
    let check = || -> Result<(u64, [u8; 32]), CtlError> {
        let mut on_pg = ctx.clone();
        on_pg.store = Some(settings.clone());
        let vault = on_pg.open()?;
        let log = vault.audit();
        let report = log.verify_all()?;
        let old = log
            .checkpoint_at(size)?
            .ok_or_else(|| CtlError(format!("no checkpoint at {size} after the copy")))?;
        let old = Checkpoint::verify(&old, &log.verifier())
            .map_err(|e| CtlError(format!("checkpoint at {size}: {e}")))?;
        let proof = log.consistency_proof(size, report.entries)?;
        merkle::verify_consistency(size, report.entries, &old.root, &report.root, &proof).map_err(
            |e| {
                CtlError(format!(
                    "consistency proof {size} → {}: {e}",
                    report.entries
                ))
            },
        )?;
        Ok((report.entries, old.root))
    };
    let (now, copied_root) = match check() {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(ctx.data.join(crate::backend::STORE_FILE));
            empty_again(&pool);
            return Err(e);
        }
    };
    if copied_root != root {
        let _ = std::fs::remove_file(ctx.data.join(crate::backend::STORE_FILE));
        empty_again(&pool);
        return Err(CtlError(format!(
            "the copied log's root at {size} is {}, the source's {}",
            hex::encode(copied_root),
            hex::encode(root)
        )));
    }
    out(&format!(
        "migrated {} into PostgreSQL\n  rows:      {} citizens, {} grants, {} consents, {} cases\n  \
         audit log: {size} entries, root {} before and after (the log now has {now})\n  \
         {} now names the database; serve with [store] backend = \"postgres\" and this url.\n  \
         The sled files (store/, audit/) are left as they were: remove them once satisfied.\n",
        ctx.data.display(),
        counts.citizens,
        counts.grants,
        counts.consents,
        counts.cases,
        hex::encode(root),
        ctx.data.join(crate::backend::STORE_FILE).display(),
    ))
}

/// The rows and the log into the database.
fn copy_all(
    ctx: &Context,
    target: &PostgresStore,
    pool: &vault_core::postgres::Pool,
    size: u64,
    verifier: &LogVerifier,
) -> Result<dump::Counts, CtlError> {
    let source = ctx.open()?;
    let mut citizens: Vec<(vault_core::BlindId, EncodedRecord)> = Vec::with_capacity(BATCH);
    let counts = {
        let mut put = |row: &Row| -> Result<(), StoreError> {
            match row {
                Row::Citizen(blind, record) => {
                    citizens.push((*blind, EncodedRecord::new(record)));
                    if citizens.len() >= BATCH {
                        target.put_encoded(&citizens)?;
                        citizens.clear();
                    }
                    Ok(())
                }
                // The spent-use mark is the embedded store's own (PostgreSQL commits uses).
                Row::ReleasedThrough(_) => Ok(()),
                other => dump::load(target, other.clone()),
            }
        };
        source.dump_store(&mut put)?
    };
    target.put_encoded(&citizens)?;
    drop(source);
    // The log, from a read-only view of the files the source's recovery left.
    let log = SegmentLog::open_read_only(&ctx.audit_dir(), verifier.clone())?;
    let mut checkpoints = Vec::new();
    for at in log.checkpoint_sizes()? {
        if let Some(note) = log.checkpoint_at(at)? {
            checkpoints.push((at, note));
        }
    }
    copy_in(
        pool,
        verifier,
        size,
        &mut |from, to| AuditLog::entries(&log, from, to),
        &checkpoints,
    )?;
    Ok(counts)
}

/// Empties the vault's tables after a failed copy (the database was empty before it).
fn empty_again(pool: &vault_core::postgres::Pool) {
    if let Ok(mut c) = pool.get()
        && let Ok(client) = c.client()
    {
        let _ = client.batch_execute(
            "TRUNCATE citizens, grants, consents, remembered, cases, meta, audit_queue, \
             audit_entries, audit_checkpoints, counters",
        );
    }
}
