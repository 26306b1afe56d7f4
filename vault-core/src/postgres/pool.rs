//! A small, blocking pool of PostgreSQL connections with per-connection prepared statements.
//! The connections are made by a `Connect` the caller supplies (the server adds TLS and the
//! URL there); a connection that the database closed is dropped and replaced on next use.
//! Errors are reported by their SQLSTATE or kind only: the database's messages may quote
//! values, and nothing the store holds may reach a log through an error.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use postgres::{Client, Statement};

use crate::store::StoreError;

/// Makes one new connection (URL, TLS and timeouts are the caller's).
pub type Connect = Arc<dyn Fn() -> Result<Client, postgres::Error> + Send + Sync>;

/// A connection with the statements it has prepared.
struct Pooled {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

/// The pool: at most `max` connections, lent one at a time.
pub struct Pool {
    connect: Connect,
    idle: Mutex<Vec<Pooled>>,
    /// Connections lent out or idle.
    open: Mutex<usize>,
    freed: Condvar,
    max: usize,
    /// How long a caller waits for a free connection before the store is unavailable.
    wait: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// A connection lent by the pool, given back on drop (unless it is broken).
pub struct Conn<'a> {
    pool: &'a Pool,
    inner: Option<Pooled>,
}

impl std::fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

/// A database error as the store reports it: SQLSTATE, or the kind of failure.
pub fn unavailable(what: &str, e: &postgres::Error) -> StoreError {
    StoreError::Unavailable(describe(what, e))
}

/// `what: database error <SQLSTATE>` or `what: database connection lost`.
pub fn describe(what: &str, e: &postgres::Error) -> String {
    match e.code() {
        Some(code) => format!("{what}: database error {}", code.code()),
        None if e.is_closed() => format!("{what}: database connection closed"),
        None => format!("{what}: database unreachable"),
    }
}

impl Pool {
    /// A pool of at most `max` connections (none made yet).
    pub fn new(connect: Connect, max: usize) -> Self {
        Self {
            connect,
            idle: Mutex::new(Vec::new()),
            open: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
            wait: Duration::from_secs(5),
        }
    }

    /// The pool's connection maker (for a connection kept apart, such as a listener).
    pub fn connector(&self) -> Connect {
        Arc::clone(&self.connect)
    }

    /// Lends a connection: an idle one, a new one while under `max`, or the next freed. Not
    /// from an async worker: the blocking client runs its own small runtime, which cannot
    /// start inside another (servers call the store from their blocking pool).
    pub fn get(&self) -> Result<Conn<'_>, StoreError> {
        loop {
            if let Some(p) = self.idle.lock().map_err(|_| poisoned())?.pop() {
                if p.client.is_closed() {
                    self.forget();
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    inner: Some(p),
                });
            }
            let mut open = self.open.lock().map_err(|_| poisoned())?;
            if *open < self.max {
                *open += 1;
                drop(open);
                return match (self.connect)() {
                    Ok(client) => Ok(Conn {
                        pool: self,
                        inner: Some(Pooled {
                            client,
                            prepared: HashMap::new(),
                        }),
                    }),
                    Err(e) => {
                        self.forget();
                        Err(unavailable("connect", &e))
                    }
                };
            }
            let (guard, timeout) = self
                .freed
                .wait_timeout(open, self.wait)
                .map_err(|_| poisoned())?;
            drop(guard);
            if timeout.timed_out() && self.idle.lock().map_err(|_| poisoned())?.is_empty() {
                return Err(StoreError::Unavailable(
                    "no database connection free in time".into(),
                ));
            }
        }
    }

    /// A lent connection was dropped for good.
    fn forget(&self) {
        if let Ok(mut open) = self.open.lock() {
            *open = open.saturating_sub(1);
        }
        self.freed.notify_one();
    }

    /// Drops every idle connection (after the database went away, say).
    pub fn clear(&self) {
        let n = self
            .idle
            .lock()
            .map(|mut v| v.drain(..).count())
            .unwrap_or(0);
        for _ in 0..n {
            self.forget();
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("database pool poisoned".into())
}

impl Conn<'_> {
    fn pooled(&mut self) -> Result<&mut Pooled, StoreError> {
        self.inner
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("connection already returned".into()))
    }

    /// The client, for transactions and anything unprepared.
    pub fn client(&mut self) -> Result<&mut Client, StoreError> {
        Ok(&mut self.pooled()?.client)
    }

    /// The statement for `sql`, prepared once per connection.
    pub fn prepare(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        let p = self.pooled()?;
        if let Some(s) = p.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = p
            .client
            .prepare(sql)
            .map_err(|e| unavailable("prepare", &e))?;
        p.prepared.insert(sql, s.clone());
        Ok(s)
    }

    /// Runs a prepared query.
    pub fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        let s = self.prepare(sql)?;
        self.client()?
            .query(&s, params)
            .map_err(|e| unavailable("query", &e))
    }

    /// Runs a prepared query expected to return at most one row.
    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<postgres::Row>, StoreError> {
        let s = self.prepare(sql)?;
        self.client()?
            .query_opt(&s, params)
            .map_err(|e| unavailable("query", &e))
    }

    /// Runs a prepared statement; the rows it changed.
    pub fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let s = self.prepare(sql)?;
        self.client()?
            .execute(&s, params)
            .map_err(|e| unavailable("write", &e))
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(p) = self.inner.take() else { return };
        // A transaction dropped unfinished has rolled back already (`postgres::Transaction`
        // does so on drop); a connection the server closed is not lent again.
        if p.client.is_closed() {
            self.pool.forget();
            return;
        }
        match self.pool.idle.lock() {
            Ok(mut idle) => {
                idle.push(p);
                drop(idle);
                self.pool.freed.notify_one();
            }
            Err(_) => self.pool.forget(),
        }
    }
}
