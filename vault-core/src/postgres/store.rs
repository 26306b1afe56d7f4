//! `PostgresStore`: the store traits over PostgreSQL tables (`migrations/0001_init.sql`).
//! Rows hold what sled holds, in the same encodings: sealed records by blind id, grants as
//! issued plus their state record (changed by compare-and-swap on the state's bytes, so
//! exactly one caller across all nodes wins each use), consents, idempotency answers, cases
//! and meta. Every write commits on return.

use std::sync::{Arc, Mutex, MutexGuard};

use super::pool::{Pool, unavailable};
use crate::audit::{AuditEntry, AuditLog, BoundRefusal, BoundWrite, Ticket};
use crate::case::CaseKind;
use crate::clock::Timestamp;
use crate::consent::StandingConsent;
use crate::error::VaultError;
use crate::grant::{Grant, GrantState};
use crate::id::{BlindId, GrantId};
use crate::keyring::KeyringRecord;
use crate::store::RecordsLock;
use crate::store::cases::{self, CaseRow};
use crate::store::{
    AuditedStore, CaseStore, ConsentStore, EncodedRecord, GrantStore, IdempotencyStore, Landing,
    MetaStore, RecordStore, Remembered, RememberedAnswer, SealedRecord, StoreError, Write, codec,
    decode_remembered, encode_remembered, grant_state,
};

const KEYRING_KEY: &str = "keyring";
const RELEASED_THROUGH_KEY: &str = "released_through";

/// The vault's state in PostgreSQL; cheap to clone (one pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Arc<Pool>,
    /// The connection that holds the record write lock across nodes (`lock_records`), kept
    /// apart from the pool and made when first needed.
    records: Arc<Mutex<Option<postgres::Client>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// Key of the advisory lock record writes take on every node ("cdv-rec").
const RECORDS_LOCK: i64 = 0x0063_6476_2d72_6563;

/// How long a record write waits for another node's (an import holds the lock throughout).
const RECORDS_LOCK_WAIT: &str = "SET lock_timeout = '60s'";

/// Holds `RECORDS_LOCK` until dropped; a connection whose unlock fails is closed, which
/// releases the lock too.
struct RecordsHeld<'a>(MutexGuard<'a, Option<postgres::Client>>);

impl Drop for RecordsHeld<'_> {
    fn drop(&mut self) {
        let unlocked = self.0.as_mut().is_some_and(|c| {
            c.execute("SELECT pg_advisory_unlock($1)", &[&RECORDS_LOCK])
                .is_ok()
        });
        if !unlocked {
            *self.0 = None;
        }
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} unreadable"))
}

fn blind_of(bytes: &[u8]) -> Result<BlindId, StoreError> {
    let b: [u8; 32] = bytes.try_into().map_err(|_| corrupt("blind id"))?;
    Ok(BlindId::from_bytes(b))
}

fn get<'a, T: postgres::types::FromSql<'a>>(
    row: &'a postgres::Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(|_| corrupt("row"))
}

/// A grant from its stored parts.
fn grant_of(json: &[u8], state: &[u8]) -> Result<Grant, StoreError> {
    let mut g: Grant = serde_json::from_slice(json).map_err(|_| corrupt("grant"))?;
    grant_state::apply(state, &mut g)?;
    Ok(g)
}

fn consent_end(c: &StandingConsent) -> i64 {
    c.withdrawn.unwrap_or(c.expires).min(c.expires).as_millis()
}

/// A change of a grant's stored state: `(grant as issued, if read; state) -> (new state, out)`.
type StateChange<'a, T> = dyn FnMut(Option<&[u8]>, &[u8]) -> Result<(Vec<u8>, T), StoreError> + 'a;

impl PostgresStore {
    /// A store over `pool`, whose database is migrated (`super::migrate`).
    pub fn new(pool: Arc<Pool>) -> Self {
        Self {
            pool,
            records: Arc::new(Mutex::new(None)),
        }
    }

    /// The pool (shared with the audit log).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.pool.get()?;
        c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| get(&r, 0))
            .transpose()
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut c = self.pool.get()?;
        c.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.meta(key)?
            .map(|v| {
                <[u8; 8]>::try_from(v.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt(key))
            })
            .transpose()
    }

    fn import_key(file_hash: &[u8; 32]) -> String {
        format!("import/{}", hex::encode(file_hash))
    }

    /// Runs one row's write; how many rows it changed.
    fn run(&self, w: &RowWrite) -> Result<u64, StoreError> {
        self.pool.get()?.execute(w.sql, &w.params())
    }

    /// A grant's stored state, and the grant as issued when `with_grant`.
    fn read_state(
        &self,
        id: &str,
        with_grant: bool,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), StoreError> {
        let mut c = self.pool.get()?;
        let row = if with_grant {
            c.query_opt("SELECT state, grant_json FROM grants WHERE id = $1", &[&id])?
        } else {
            c.query_opt("SELECT state FROM grants WHERE id = $1", &[&id])?
        };
        let row = row.ok_or(StoreError::NotFound)?;
        let json = if with_grant {
            Some(get(&row, 1)?)
        } else {
            None
        };
        Ok((get(&row, 0)?, json))
    }

    /// Sets a grant's state to `new` if it is still `old`; whether it was.
    fn cas_state(&self, id: &str, old: &[u8], new: &[u8]) -> Result<bool, StoreError> {
        Ok(self.pool.get()?.execute(
            "UPDATE grants SET state = $2 WHERE id = $1 AND state = $3",
            &[&id, &new, &old],
        )? == 1)
    }

    /// Compare-and-swap of a grant's state: `change` maps the stored state bytes to the new
    /// ones (or refuses); retried while another writer changed the state in between.
    fn swap_state<T>(
        &self,
        id: &str,
        with_grant: bool,
        change: &mut StateChange<'_, T>,
    ) -> Result<T, StoreError> {
        loop {
            let (old, json) = self.read_state(id, with_grant)?;
            let (new, out) = change(json.as_deref(), &old)?;
            if new == old {
                return Ok(out);
            }
            if self.cas_state(id, &old, &new)? {
                return Ok(out);
            }
        }
    }

    /// `swap_state` whose swap commits in one transaction with the entries `change` makes
    /// (`AuditLog::submit_with`; `PostgresLog` runs the `SwapState`). No connection is held
    /// while the log's transaction runs (it takes one from the same pool).
    fn swap_audited<T>(
        &self,
        id: &str,
        with_grant: bool,
        change: &mut AuditedChange<'_, T>,
        also: &[Write<'_>],
        log: &dyn AuditLog,
    ) -> Result<(T, Ticket), StoreError> {
        let rows = rows_of_all(also)?;
        loop {
            let (old, json) = self.read_state(id, with_grant)?;
            let (new, entries, out) = change(json.as_deref(), &old)?;
            if entries.is_empty() {
                if new == old {
                    return Ok((out, Ticket::ready(Ok(Vec::new()))));
                }
                // A change that records nothing is a plain swap.
                if self.cas_state(id, &old, &new)? {
                    return Ok((out, Ticket::ready(Ok(Vec::new()))));
                }
                continue;
            }
            let write = PgBound {
                swap: Some(SwapState {
                    id: id.to_owned(),
                    old,
                    new,
                }),
                rows: rows.clone(),
            };
            match log.submit_with(entries, BoundWrite::new(write)) {
                Ok(ticket) => return Ok((out, ticket)),
                Err(BoundRefusal::Stale) => {}
                Err(BoundRefusal::Failed(e)) => return Err(StoreError::Refused(e)),
            }
        }
    }
}

/// A grant's state swapped from `old` to `new` in the transaction that queues the entries
/// recording the change (`PostgresLog` runs it; nothing is written if the state is no longer
/// `old`).
#[derive(Debug)]
pub(crate) struct SwapState {
    pub(crate) id: String,
    pub(crate) old: Vec<u8>,
    pub(crate) new: Vec<u8>,
}

/// A value bound to a `RowWrite`'s statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
    Char(i8),
    Int(i64),
    ByteaArray(Vec<Vec<u8>>),
}

impl Arg {
    pub(crate) fn sql(&self) -> &(dyn postgres::types::ToSql + Sync) {
        match self {
            Self::Text(v) => v,
            Self::Bytes(v) => v,
            Self::Bool(v) => v,
            Self::Char(v) => v,
            Self::Int(v) => v,
            Self::ByteaArray(v) => v,
        }
    }
}

/// One row's write: a statement and its values.
#[derive(Debug, Clone)]
pub(crate) struct RowWrite {
    pub(crate) sql: &'static str,
    pub(crate) args: Vec<Arg>,
}

impl RowWrite {
    pub(crate) fn params(&self) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
        self.args.iter().map(Arg::sql).collect()
    }

    /// The order writes run in within a batch: by table, then by the row's key (the first
    /// two values). Every statement here is `INSERT INTO t …` or `DELETE FROM t …`.
    pub(crate) fn order_key(&self) -> (&'static str, Vec<u8>) {
        let table = self.sql.split_whitespace().nth(2).unwrap_or(self.sql);
        let mut key = Vec::new();
        for a in self.args.iter().take(2) {
            match a {
                Arg::Text(v) => key.extend_from_slice(v.as_bytes()),
                Arg::Bytes(v) => key.extend_from_slice(v),
                Arg::Bool(v) => key.push(u8::from(*v)),
                Arg::Char(v) => key.extend_from_slice(&v.to_be_bytes()),
                Arg::Int(v) => key.extend_from_slice(&v.to_be_bytes()),
                Arg::ByteaArray(v) => v.iter().for_each(|b| key.extend_from_slice(b)),
            }
            key.push(0);
        }
        (table, key)
    }
}

/// What `PostgresLog` commits with a batch's entries: a grant's state swap (nothing is
/// written, and the caller is told `Stale`, if it lost) and rows.
#[derive(Debug)]
pub(crate) struct PgBound {
    pub(crate) swap: Option<SwapState>,
    pub(crate) rows: Vec<RowWrite>,
}

fn consent_row(c: &StandingConsent) -> Result<RowWrite, StoreError> {
    let body = serde_json::to_vec(c).map_err(|_| corrupt("consent"))?;
    Ok(RowWrite {
        sql: "INSERT INTO consents (citizen, id, body, ends_ms) VALUES ($1, $2, $3, $4) \
              ON CONFLICT (citizen, id) DO UPDATE SET body = excluded.body, ends_ms = excluded.ends_ms",
        args: vec![
            Arg::Text(c.citizen.clone()),
            Arg::Text(c.id.clone()),
            Arg::Bytes(body),
            Arg::Int(consent_end(c)),
        ],
    })
}

fn forget_consent_row(citizen: &BlindId, id: &str) -> RowWrite {
    RowWrite {
        sql: "DELETE FROM consents WHERE citizen = $1 AND id = $2",
        args: vec![Arg::Text(citizen.to_string()), Arg::Text(id.to_owned())],
    }
}

fn case_row(row: &CaseRow) -> Result<RowWrite, StoreError> {
    Ok(RowWrite {
        sql: "INSERT INTO cases (kind, id, citizen, open, row) VALUES ($1, $2, $3, $4, $5) \
              ON CONFLICT (kind, id) DO UPDATE SET citizen = excluded.citizen, \
              open = excluded.open, row = excluded.row",
        args: vec![
            Arg::Char(tag(row.kind)),
            Arg::Text(row.id.clone()),
            Arg::Bytes(row.citizen.as_bytes().to_vec()),
            Arg::Bool(row.open),
            Arg::Bytes(cases::encode(row)?),
        ],
    })
}

/// Records in one statement (all or none); a blind id twice keeps the last.
fn records_row(records: &[(BlindId, EncodedRecord)]) -> RowWrite {
    let mut last = std::collections::BTreeMap::new();
    for (id, r) in records {
        last.insert(*id, r);
    }
    RowWrite {
        sql: "INSERT INTO citizens (blind, record) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
              ON CONFLICT (blind) DO UPDATE SET record = excluded.record",
        args: vec![
            Arg::ByteaArray(last.keys().map(|b| b.as_bytes().to_vec()).collect()),
            Arg::ByteaArray(last.values().map(|r| r.bytes().to_vec()).collect()),
        ],
    }
}

fn rows_of(w: &Write<'_>) -> Result<Vec<RowWrite>, StoreError> {
    Ok(match *w {
        Write::Consent(c) => vec![consent_row(c)?],
        Write::ForgetConsent(citizen, id) => vec![forget_consent_row(citizen, id)],
        Write::Case(row) => vec![case_row(row)?],
        Write::Records(records) => vec![records_row(records)],
        Write::Erase(citizen) => vec![
            RowWrite {
                sql: "DELETE FROM cases WHERE citizen = $1",
                args: vec![Arg::Bytes(citizen.as_bytes().to_vec())],
            },
            RowWrite {
                sql: "DELETE FROM citizens WHERE blind = $1",
                args: vec![Arg::Bytes(citizen.as_bytes().to_vec())],
            },
        ],
    })
}

/// Every row the writes make.
fn rows_of_all(writes: &[Write<'_>]) -> Result<Vec<RowWrite>, StoreError> {
    let mut rows = Vec::new();
    for w in writes {
        rows.extend(rows_of(w)?);
    }
    Ok(rows)
}

/// `StateChange` that also makes the entries recording the change.
type AuditedChange<'a, T> =
    dyn FnMut(Option<&[u8]>, &[u8]) -> Result<(Vec<u8>, Vec<AuditEntry>, T), StoreError> + 'a;

impl AuditedStore for PostgresStore {
    fn commits_with_log(&self) -> bool {
        true
    }

    fn update_grant_state_audited(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut GrantState) -> Result<(), VaultError>,
        entries: &mut dyn FnMut(&GrantState) -> Result<Vec<AuditEntry>, VaultError>,
        log: &dyn AuditLog,
    ) -> Result<(GrantState, Ticket), StoreError> {
        self.swap_audited(
            id,
            false,
            &mut |_, state| {
                let mut st = grant_state::decode_state(state)?;
                change(&mut st).map_err(StoreError::Refused)?;
                let made = entries(&st).map_err(StoreError::Refused)?;
                Ok((grant_state::encode_state(&st), made, st))
            },
            &[],
            log,
        )
    }

    /// One transaction. If it fails, a change that must take effect at once
    /// (`Landing::ChangeFirst`: a revocation fails closed) is made without its entries, and
    /// the ticket carries the failure.
    fn update_grant_audited(
        &self,
        id: &str,
        landing: Landing,
        change: &mut dyn FnMut(&mut Grant) -> Result<Vec<AuditEntry>, VaultError>,
        also: &[Write<'_>],
        log: &dyn AuditLog,
    ) -> Result<(Grant, Ticket), StoreError> {
        let together = self.swap_audited(
            id,
            true,
            &mut |json, state| {
                let mut g = grant_of(json.unwrap_or_default(), state)?;
                let mut made = Vec::new();
                let new = grant_state::change_state(&mut g, &mut |g| {
                    made = change(g)?;
                    Ok(())
                })?;
                Ok((new, made, g))
            },
            also,
            log,
        );
        match together {
            Err(StoreError::Refused(e @ VaultError::AuditUnavailable))
                if landing == Landing::ChangeFirst =>
            {
                let g = self.swap_state(id, true, &mut |json, state| {
                    let mut g = grant_of(json.unwrap_or_default(), state)?;
                    let new = grant_state::change_state(&mut g, &mut |g| change(g).map(|_| ()))?;
                    Ok((new, g))
                })?;
                Ok((g, Ticket::ready(Err(e))))
            }
            other => other,
        }
    }

    fn write_audited(
        &self,
        writes: &[Write<'_>],
        entries: Vec<AuditEntry>,
        log: &dyn AuditLog,
    ) -> Result<Ticket, StoreError> {
        let rows = rows_of_all(writes)?;
        if entries.is_empty() {
            for w in &rows {
                self.run(w)?;
            }
            return Ok(Ticket::ready(Ok(Vec::new())));
        }
        let write = PgBound { swap: None, rows };
        log.submit_with(entries, BoundWrite::new(write))
            .map_err(|e| match e {
                BoundRefusal::Stale => {
                    StoreError::Unavailable("a write without a swap went stale".into())
                }
                BoundRefusal::Failed(e) => StoreError::Refused(e),
            })
    }
}

impl RecordStore for PostgresStore {
    fn citizen(&self, id: &BlindId) -> Result<Option<SealedRecord>, StoreError> {
        self.citizen_fields(id, &|_| true)
    }

    fn citizen_fields(
        &self,
        id: &BlindId,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<SealedRecord>, StoreError> {
        let mut c = self.pool.get()?;
        let key: &[u8] = id.as_bytes();
        c.query_opt("SELECT record FROM citizens WHERE blind = $1", &[&key])?
            .map(|r| codec::decode_fields(&get::<Vec<u8>>(&r, 0)?, keep))
            .transpose()
    }

    fn citizen_fields_and_open(
        &self,
        id: &BlindId,
        keep: &dyn Fn(&str) -> bool,
        kind: CaseKind,
    ) -> Result<(Option<SealedRecord>, Vec<String>), StoreError> {
        let mut c = self.pool.get()?;
        let key: &[u8] = id.as_bytes();
        let row = c.query_opt(
            "SELECT (SELECT record FROM citizens WHERE blind = $1), \
                    ARRAY(SELECT row FROM cases WHERE citizen = $1 AND kind = $2 AND open \
                          ORDER BY id)",
            &[&key, &tag(kind)],
        )?;
        let Some(row) = row else {
            return Ok((None, Vec::new()));
        };
        let record = get::<Option<Vec<u8>>>(&row, 0)?
            .map(|r| codec::decode_fields(&r, keep))
            .transpose()?;
        let open = get::<Vec<Vec<u8>>>(&row, 1)?
            .iter()
            .map(|r| cases::decode(r).map(|c| c.topic))
            .collect::<Result<_, _>>()?;
        Ok((record, open))
    }

    fn put_encoded(&self, records: &[(BlindId, EncodedRecord)]) -> Result<(), StoreError> {
        self.run(&records_row(records)).map(|_| ())
    }

    fn delete_citizen(&self, id: &BlindId) -> Result<bool, StoreError> {
        let mut c = self.pool.get()?;
        let key: &[u8] = id.as_bytes();
        Ok(c.execute("DELETE FROM citizens WHERE blind = $1", &[&key])? == 1)
    }

    fn citizens_after(
        &self,
        after: Option<&BlindId>,
        limit: usize,
    ) -> Result<Vec<(BlindId, SealedRecord)>, StoreError> {
        let mut c = self.pool.get()?;
        let from: &[u8] = after.map_or(&[], |b| b.as_bytes().as_slice());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        c.query(
            "SELECT blind, record FROM citizens WHERE blind > $1 ORDER BY blind LIMIT $2",
            &[&from, &limit],
        )?
        .iter()
        .map(|r| {
            Ok((
                blind_of(&get::<Vec<u8>>(r, 0)?)?,
                codec::decode(&get::<Vec<u8>>(r, 1)?)?,
            ))
        })
        .collect()
    }

    /// An advisory lock on a connection of its own, held until dropped: record writes of
    /// every node sharing the database run one at a time (each reads, seals and stores
    /// under it, so none overwrites another's change).
    fn lock_records(&self) -> Result<RecordsLock<'_>, StoreError> {
        let mut held = self
            .records
            .lock()
            .map_err(|_| StoreError::Unavailable("record lock poisoned".into()))?;
        if held.as_ref().is_none_or(postgres::Client::is_closed) {
            let mut c = (self.pool.connector())().map_err(|e| unavailable("connect", &e))?;
            c.batch_execute(RECORDS_LOCK_WAIT)
                .map_err(|e| unavailable("record lock", &e))?;
            *held = Some(c);
        }
        let locked = held
            .as_mut()
            .map(|c| c.execute("SELECT pg_advisory_lock($1)", &[&RECORDS_LOCK]));
        match locked {
            Some(Ok(_)) => Ok(RecordsLock::holding(RecordsHeld(held))),
            Some(Err(e)) => {
                *held = None;
                Err(unavailable("record lock", &e))
            }
            None => Err(StoreError::Unavailable("record lock: no connection".into())),
        }
    }

    fn citizen_count(&self) -> Result<u64, StoreError> {
        let mut c = self.pool.get()?;
        let row = c
            .query_opt("SELECT count(*) FROM citizens", &[])?
            .ok_or_else(|| corrupt("count"))?;
        Ok(u64::try_from(get::<i64>(&row, 0)?).unwrap_or(0))
    }
}

impl GrantStore for PostgresStore {
    fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let mut c = self.pool.get()?;
        c.query_opt("SELECT grant_json, state FROM grants WHERE id = $1", &[&id])?
            .map(|r| grant_of(&get::<Vec<u8>>(&r, 0)?, &get::<Vec<u8>>(&r, 1)?))
            .transpose()
    }

    fn insert_grant(&self, grant: &Grant) -> Result<bool, StoreError> {
        let json = serde_json::to_vec(grant).map_err(|_| corrupt("grant"))?;
        let state = grant_state::encode(grant);
        let mut c = self.pool.get()?;
        let n = c.execute(
            "INSERT INTO grants (id, code, citizen, break_glass, grant_json, state) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &grant.id.as_str(),
                &grant.verification_code,
                &grant.citizen,
                &grant.break_glass,
                &json,
                &state,
            ],
        )?;
        Ok(n == 1)
    }

    fn update_grant(
        &self,
        id: &str,
        _durable: bool,
        change: &mut dyn FnMut(&mut Grant) -> Result<(), VaultError>,
    ) -> Result<Grant, StoreError> {
        self.swap_state(id, true, &mut |json, state| {
            let mut g = grant_of(json.unwrap_or_default(), state)?;
            let new = grant_state::change_state(&mut g, change)?;
            Ok((new, g))
        })
    }

    fn update_grant_state(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut GrantState) -> Result<(), VaultError>,
    ) -> Result<GrantState, StoreError> {
        self.swap_state(id, false, &mut |_, state| {
            let mut st = grant_state::decode_state(state)?;
            change(&mut st).map_err(StoreError::Refused)?;
            Ok((grant_state::encode_state(&st), st))
        })
    }

    fn break_glass_grants(&self) -> Result<Vec<Grant>, StoreError> {
        let mut c = self.pool.get()?;
        c.query(
            "SELECT grant_json, state FROM grants WHERE break_glass ORDER BY id",
            &[],
        )?
        .iter()
        .map(|r| grant_of(&get::<Vec<u8>>(r, 0)?, &get::<Vec<u8>>(r, 1)?))
        .collect()
    }

    fn grant_id_by_code(&self, code: &str) -> Result<Option<GrantId>, StoreError> {
        let mut c = self.pool.get()?;
        c.query_opt("SELECT id FROM grants WHERE code = $1", &[&code])?
            .map(|r| Ok(GrantId::new(get::<String>(&r, 0)?)))
            .transpose()
    }

    fn grants_of_citizen(&self, citizen: &BlindId) -> Result<Vec<Grant>, StoreError> {
        let mut c = self.pool.get()?;
        c.query(
            "SELECT grant_json, state FROM grants WHERE citizen = $1 ORDER BY id",
            &[&citizen.to_string()],
        )?
        .iter()
        .map(|r| grant_of(&get::<Vec<u8>>(r, 0)?, &get::<Vec<u8>>(r, 1)?))
        .collect()
    }

    fn grants_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Grant>, Option<String>), StoreError> {
        let mut c = self.pool.get()?;
        let limit = limit.max(1);
        let n = i64::try_from(limit).unwrap_or(i64::MAX);
        let grants = c
            .query(
                "SELECT grant_json, state FROM grants WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after.unwrap_or(""), &n],
            )?
            .iter()
            .map(|r| grant_of(&get::<Vec<u8>>(r, 0)?, &get::<Vec<u8>>(r, 1)?))
            .collect::<Result<Vec<_>, _>>()?;
        let next = (grants.len() == limit)
            .then(|| grants.last().map(|g| g.id.to_string()))
            .flatten();
        Ok((grants, next))
    }

    fn sweep_grants(
        &self,
        after: Option<&str>,
        scan: usize,
        cutoff: Timestamp,
    ) -> Result<(usize, Option<String>), StoreError> {
        let scan = scan.max(1);
        let n = i64::try_from(scan).unwrap_or(i64::MAX);
        let mut c = self.pool.get()?;
        let rows = c.query(
            "SELECT id, grant_json, state, break_glass FROM grants WHERE id > $1 \
             ORDER BY id LIMIT $2",
            &[&after.unwrap_or(""), &n],
        )?;
        let mut ended: Vec<String> = Vec::new();
        for r in &rows {
            if get::<bool>(r, 3)? {
                continue;
            }
            let g = grant_of(&get::<Vec<u8>>(r, 1)?, &get::<Vec<u8>>(r, 2)?)?;
            if g.latest_end_secs() < cutoff.as_secs() {
                ended.push(get(r, 0)?);
            }
        }
        let mut deleted = 0;
        if !ended.is_empty() {
            let client = c.client()?;
            let mut tx = client.transaction().map_err(|e| unavailable("sweep", &e))?;
            tx.execute("DELETE FROM remembered WHERE grant_id = ANY($1)", &[&ended])
                .map_err(|e| unavailable("sweep", &e))?;
            deleted = tx
                .execute("DELETE FROM grants WHERE id = ANY($1)", &[&ended])
                .map_err(|e| unavailable("sweep", &e))?;
            tx.commit().map_err(|e| unavailable("sweep", &e))?;
        }
        let next = if rows.len() == scan {
            rows.last().map(|r| get::<String>(r, 0)).transpose()?
        } else {
            None
        };
        Ok((usize::try_from(deleted).unwrap_or(usize::MAX), next))
    }
}

impl ConsentStore for PostgresStore {
    fn put_consent(&self, consent: &StandingConsent) -> Result<(), StoreError> {
        self.run(&consent_row(consent)?).map(|_| ())
    }

    fn consents_of_citizen(&self, citizen: &BlindId) -> Result<Vec<StandingConsent>, StoreError> {
        let mut c = self.pool.get()?;
        c.query(
            "SELECT body FROM consents WHERE citizen = $1 ORDER BY id",
            &[&citizen.to_string()],
        )?
        .iter()
        .map(|r| serde_json::from_slice(&get::<Vec<u8>>(r, 0)?).map_err(|_| corrupt("consent")))
        .collect()
    }

    fn delete_consent(&self, citizen: &BlindId, id: &str) -> Result<bool, StoreError> {
        Ok(self.run(&forget_consent_row(citizen, id))? == 1)
    }

    fn sweep_consents(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let mut c = self.pool.get()?;
        let n = c.execute(
            "DELETE FROM consents WHERE ends_ms < $1",
            &[&cutoff.as_millis()],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl IdempotencyStore for PostgresStore {
    fn remembered(&self, name: &[u8; 32]) -> Result<Option<Remembered>, StoreError> {
        let mut c = self.pool.get()?;
        let key: &[u8] = name;
        c.query_opt("SELECT body FROM remembered WHERE name = $1", &[&key])?
            .map(|r| decode_remembered(&get::<Vec<u8>>(&r, 0)?))
            .transpose()
    }

    fn remember(&self, name: &[u8; 32], what: &Remembered) -> Result<bool, StoreError> {
        let grant = match &what.answer {
            RememberedAnswer::Grant(id) => Some(id.to_string()),
            RememberedAnswer::Sealed(_) => None,
        };
        let key: &[u8] = name;
        let mut c = self.pool.get()?;
        let n = c.execute(
            "INSERT INTO remembered (name, body, grant_id, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
            &[
                &key,
                &encode_remembered(what),
                &grant,
                &what.created.as_millis(),
            ],
        )?;
        Ok(n == 1)
    }

    fn sweep_remembered(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let mut c = self.pool.get()?;
        let n = c.execute(
            "DELETE FROM remembered WHERE grant_id IS NULL AND created_ms < $1",
            &[&cutoff.as_millis()],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl PostgresStore {
    fn cases_where(
        &self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<CaseRow>, StoreError> {
        let mut c = self.pool.get()?;
        c.query(sql, params)?
            .iter()
            .map(|r| cases::decode(&get::<Vec<u8>>(r, 0)?))
            .collect()
    }
}

fn tag(kind: CaseKind) -> i8 {
    i8::try_from(cases::kind_tag(kind)).unwrap_or_default()
}

impl CaseStore for PostgresStore {
    fn put_case(&self, row: &CaseRow) -> Result<(), StoreError> {
        self.run(&case_row(row)?).map(|_| ())
    }

    fn case(&self, kind: CaseKind, id: &str) -> Result<Option<CaseRow>, StoreError> {
        Ok(self
            .cases_where(
                "SELECT row FROM cases WHERE kind = $1 AND id = $2",
                &[&tag(kind), &id],
            )?
            .pop())
    }

    fn cases_of_citizen(
        &self,
        citizen: &BlindId,
        kind: CaseKind,
    ) -> Result<Vec<CaseRow>, StoreError> {
        let key: &[u8] = citizen.as_bytes();
        self.cases_where(
            "SELECT row FROM cases WHERE citizen = $1 AND kind = $2 ORDER BY id",
            &[&key, &tag(kind)],
        )
    }

    fn open_cases(&self, kind: CaseKind) -> Result<Vec<CaseRow>, StoreError> {
        self.cases_where(
            "SELECT row FROM cases WHERE kind = $1 AND open ORDER BY id",
            &[&tag(kind)],
        )
    }

    fn cases_of_kind(&self, kind: CaseKind) -> Result<Vec<CaseRow>, StoreError> {
        self.cases_where(
            "SELECT row FROM cases WHERE kind = $1 ORDER BY id",
            &[&tag(kind)],
        )
    }

    fn delete_cases_of_citizen(&self, citizen: &BlindId) -> Result<usize, StoreError> {
        let key: &[u8] = citizen.as_bytes();
        let mut c = self.pool.get()?;
        let n = c.execute("DELETE FROM cases WHERE citizen = $1", &[&key])?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl MetaStore for PostgresStore {
    fn keyring(&self) -> Result<Option<KeyringRecord>, StoreError> {
        self.meta(KEYRING_KEY)?
            .map(|v| serde_json::from_slice(&v).map_err(|_| corrupt("keyring record")))
            .transpose()
    }

    fn put_keyring(&self, record: &KeyringRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|_| corrupt("keyring record"))?;
        self.set_meta(KEYRING_KEY, &bytes)
    }

    fn import_checkpoint(&self, file_hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        self.meta_u64(&Self::import_key(file_hash))
    }

    fn set_import_checkpoint(
        &self,
        file_hash: &[u8; 32],
        line: Option<u64>,
    ) -> Result<(), StoreError> {
        let key = Self::import_key(file_hash);
        match line {
            Some(l) => self.set_meta(&key, &l.to_be_bytes()),
            None => {
                let mut c = self.pool.get()?;
                c.execute("DELETE FROM meta WHERE key = $1", &[&key])?;
                Ok(())
            }
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write committed on return.
        Ok(())
    }

    fn released_through(&self) -> Result<Option<u64>, StoreError> {
        self.meta_u64(RELEASED_THROUGH_KEY)
    }

    fn set_released_through(&self, size: u64) -> Result<(), StoreError> {
        self.set_meta(RELEASED_THROUGH_KEY, &size.to_be_bytes())
    }

    fn uses_durable_at_once(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh store on its own cluster, for the conformance suite.
    fn fresh() -> crate::store::conformance::Fresh<PostgresStore> {
        let (pool, cluster) = super::super::testdb::fresh_pool(8);
        crate::store::conformance::Fresh {
            store: PostgresStore::new(Arc::new(pool)),
            _keep: Box::new(cluster),
        }
    }

    mod conformance {
        crate::store::conformance::store_conformance!(super::fresh);
    }

    #[test]
    fn a_batch_writes_rows_by_table_and_key_and_one_row_in_its_callers_order() {
        let citizen = BlindId::from_bytes([7; 32]);
        let consent = |id: &str| StandingConsent {
            id: id.into(),
            citizen: citizen.to_string(),
            agency: "ubnd-phuong-sai-gon".into(),
            purpose: "construction_permit".into(),
            fields: vec!["full_name".into()],
            created: Timestamp::from_secs(1),
            expires: Timestamp::from_secs(2),
            grant_id: "g".into(),
            withdrawn: None,
        };
        let (b, a) = (consent("c-b"), consent("c-a"));
        let mut rows = [
            consent_row(&b).unwrap(),
            forget_consent_row(&citizen, "c-a"),
            consent_row(&a).unwrap(),
            rows_of(&Write::Erase(&citizen)).unwrap().remove(0),
        ];
        rows.sort_by(|x, y| x.order_key().cmp(&y.order_key()));
        let order: Vec<(&str, &str)> = rows
            .iter()
            .map(|w| {
                (
                    w.order_key().0,
                    w.sql.split_whitespace().next().unwrap_or(""),
                )
            })
            .collect();
        // cases before consents; consent c-a (deleted, then put, as the callers asked)
        // before c-b.
        assert_eq!(
            order,
            [
                ("cases", "DELETE"),
                ("consents", "DELETE"),
                ("consents", "INSERT"),
                ("consents", "INSERT"),
            ]
        );
        assert!(matches!(&rows[3].args[1], Arg::Text(id) if id == "c-b"));
    }

    #[test]
    fn record_writes_of_two_nodes_take_turns() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (pool, _cluster) = super::super::testdb::fresh_pool(4);
        let pool = Arc::new(pool);
        let (a, b) = (
            PostgresStore::new(Arc::clone(&pool)),
            PostgresStore::new(Arc::clone(&pool)),
        );
        let took = AtomicBool::new(false);
        for _ in 0..2 {
            took.store(false, Ordering::SeqCst);
            let held = a.lock_records().unwrap();
            std::thread::scope(|s| {
                let waiter = s.spawn(|| {
                    let _turn = b.lock_records().unwrap();
                    took.store(true, Ordering::SeqCst);
                });
                std::thread::sleep(std::time::Duration::from_millis(300));
                assert!(!took.load(Ordering::SeqCst), "both nodes held the lock");
                drop(held);
                waiter.join().unwrap();
            });
            assert!(took.load(Ordering::SeqCst));
        }
        // A lock whose connection died is taken again on a new one.
        *a.records.lock().unwrap() = None;
        drop(a.lock_records().unwrap());
    }
}
