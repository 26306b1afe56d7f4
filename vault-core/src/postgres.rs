//! The PostgreSQL backend (SPEC §10): `PostgresStore` behind the store traits and
//! `PostgresLog`, the audit log whose entries nodes queue and one sequencer at a time (the
//! holder of a fenced lease) integrates into the Merkle tree. Schema migrations are numbered
//! SQL files applied under an advisory lock. The database sees ciphertext, blind ids and
//! pseudonyms only.

mod log;
mod pool;
mod store;
#[cfg(test)]
pub(crate) mod testdb;

pub use log::{LogOptions, PostgresLog, PostgresLogIn, copy_in};
pub use pool::{Connect, Pool, describe};
pub use store::PostgresStore;

use crate::store::StoreError;
use pool::unavailable;

/// The schema, in order: `(version, SQL)`. A database is at the highest version applied.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("postgres/migrations/0001_init.sql")),
    (2, include_str!("postgres/migrations/0002_queue_order.sql")),
];

/// Key of the advisory lock migrations run under (any fixed number: "cdv-migr").
const MIGRATION_LOCK: i64 = 0x6364_762d_6d69_6772;

/// Brings the database's schema to this build's version, one numbered migration per
/// transaction, under an advisory lock (nodes starting together apply each once). A database
/// at a later version than this build knows is refused.
pub fn migrate(pool: &Pool) -> Result<i32, StoreError> {
    let mut conn = pool.get()?;
    let client = conn.client()?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| unavailable("migration lock", &e))?;
    let result = apply(client);
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| unavailable("migration unlock", &e));
    let version = result?;
    unlocked?;
    Ok(version)
}

fn apply(client: &mut postgres::Client) -> Result<i32, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version int PRIMARY KEY,
                applied timestamptz NOT NULL DEFAULT now())",
        )
        .map_err(|e| unavailable("schema_migrations", &e))?;
    let at: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| unavailable("schema version", &e))?;
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if at > known {
        return Err(StoreError::Unavailable(format!(
            "the database's schema is at version {at}; this build knows versions up to {known}"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > at) {
        let mut tx = client
            .transaction()
            .map_err(|e| unavailable("migration", &e))?;
        tx.batch_execute(sql)
            .map_err(|e| unavailable(&format!("migration {version}"), &e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .map_err(|e| unavailable("migration", &e))?;
        tx.commit()
            .map_err(|e| unavailable(&format!("migration {version}"), &e))?;
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_under_the_lock_and_a_newer_schema_is_refused() {
        let cluster = testdb::Cluster::start();
        let pool = std::sync::Arc::new(Pool::new(cluster.database(), 4));
        let runs: Vec<_> = (0..3)
            .map(|_| {
                let p = std::sync::Arc::clone(&pool);
                std::thread::spawn(move || migrate(&p))
            })
            .collect();
        let known = MIGRATIONS.len() as i32;
        for r in runs {
            assert_eq!(r.join().unwrap().unwrap(), known);
        }
        let mut c = pool.get().unwrap();
        let applied: i64 = c
            .client()
            .unwrap()
            .query_one("SELECT count(*) FROM schema_migrations", &[])
            .unwrap()
            .get(0);
        assert_eq!(applied, i64::from(known));
        c.client()
            .unwrap()
            .execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
            .unwrap();
        drop(c);
        let err = migrate(&pool).unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
    }
}
