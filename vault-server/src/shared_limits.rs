//! Rate limits counted across nodes when the vault is in PostgreSQL: per key, fixed windows
//! whose counts live in the `counters` table. Each node counts its own requests in memory
//! (the check on the request path touches no database) and every 200 ms adds them to the
//! database and reads the cluster's total back, so several nodes enforce one limit, to
//! within what the others admitted since their last report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vault_core::Clock;
use vault_core::postgres::Pool;

/// How often counts go to the database.
pub const SYNC: Duration = Duration::from_millis(200);

/// Counts of one limiter (agency requests, verification checks, audited refusals).
pub struct SharedCounts {
    name: &'static str,
    window_secs: i64,
    limit: u64,
    clock: Arc<dyn Clock>,
    keys: Mutex<HashMap<String, Count>>,
}

impl std::fmt::Debug for SharedCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCounts")
            .field("name", &self.name)
            .field("window_secs", &self.window_secs)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// One key's window: what this node admitted and has not reported, and the cluster's total
/// as last read (this node's reported admissions included).
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    /// Start of the window, seconds since the epoch.
    window: i64,
    unsent: u64,
    cluster: u64,
}

impl SharedCounts {
    /// `limit` requests per `window_secs` per key, across every node.
    pub fn new(name: &'static str, limit: u64, window_secs: i64, clock: Arc<dyn Clock>) -> Self {
        Self {
            name,
            window_secs: window_secs.max(1),
            limit: limit.max(1),
            clock,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn window_now(&self) -> (i64, i64) {
        let now = self.clock.now().as_secs();
        let start = now - now.rem_euclid(self.window_secs);
        (start, start + self.window_secs - now)
    }

    /// Counts one request for `key`, or says how many seconds until its window ends.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let (window, left) = self.window_now();
        let Ok(mut keys) = self.keys.lock() else {
            return Ok(());
        };
        let c = keys.entry(key.to_owned()).or_default();
        if c.window != window {
            *c = Count {
                window,
                ..Count::default()
            };
        }
        if c.cluster + c.unsent >= self.limit {
            return Err(u64::try_from(left).unwrap_or(1).max(1));
        }
        c.unsent += 1;
        Ok(())
    }

    /// Every key of the current window with its unreported count (taken: it is reported
    /// now; a key with none is reported too, to read the others' admissions back), and the
    /// keys of ended windows forgotten.
    fn take_unsent(&self) -> Vec<(String, i64, u64)> {
        let (window, _) = self.window_now();
        let Ok(mut keys) = self.keys.lock() else {
            return Vec::new();
        };
        keys.retain(|_, c| c.window >= window);
        keys.iter_mut()
            .map(|(k, c)| {
                let n = std::mem::take(&mut c.unsent);
                (k.clone(), c.window, n)
            })
            .collect()
    }

    /// The database's answer for a key: the cluster's total in that window (or counts that
    /// could not be reported, given back).
    fn settle(&self, key: &str, window: i64, cluster: Option<u64>, sent: u64) {
        let Ok(mut keys) = self.keys.lock() else {
            return;
        };
        if let Some(c) = keys.get_mut(key).filter(|c| c.window == window) {
            match cluster {
                Some(total) => c.cluster = total,
                None => c.unsent += sent,
            }
        }
    }

    /// The row key: the limiter's name and the caller's key.
    fn row_key(&self, key: &str) -> Vec<u8> {
        format!("{}:{key}", self.name).into_bytes()
    }
}

/// Reports every limiter's counts every `SYNC`, on a thread of its own, for the life of the
/// process; rows of windows more than an hour old are deleted once a minute.
pub fn start(pool: Arc<Pool>, limiters: Vec<Arc<SharedCounts>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("shared-limits".into())
        .spawn(move || {
            let mut tick: u64 = 0;
            loop {
                std::thread::sleep(SYNC);
                tick += 1;
                for l in &limiters {
                    report(&pool, l);
                }
                if tick.is_multiple_of(300)
                    && let Some(l) = limiters.first()
                {
                    let old = l.clock.now().as_secs() - 3600;
                    if let Ok(mut c) = pool.get() {
                        let _ = c.execute("DELETE FROM counters WHERE window_s < $1", &[&old]);
                    }
                }
            }
        })
        .map(|_| ())
}

/// Adds one limiter's unreported counts and reads the totals back, in one statement.
fn report(pool: &Pool, l: &SharedCounts) {
    let unsent = l.take_unsent();
    if unsent.is_empty() {
        return;
    }
    let keys: Vec<Vec<u8>> = unsent.iter().map(|(k, _, _)| l.row_key(k)).collect();
    let windows: Vec<i64> = unsent.iter().map(|(_, w, _)| *w).collect();
    let counts: Vec<i64> = unsent
        .iter()
        .map(|(_, _, n)| i64::try_from(*n).unwrap_or(i64::MAX))
        .collect();
    // A row of a later window (another node moved on) keeps its count; an earlier one
    // starts again.
    let rows = pool.get().and_then(|mut c| {
        c.query(
            "INSERT INTO counters (key, window_s, count) \
               SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[]) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN counters.window_s = excluded.window_s \
                              THEN counters.count + excluded.count \
                            WHEN counters.window_s > excluded.window_s THEN counters.count \
                            ELSE excluded.count END, \
               window_s = greatest(counters.window_s, excluded.window_s) \
             RETURNING key, window_s, count",
            &[&keys, &windows, &counts],
        )
    });
    match rows {
        Ok(rows) => {
            let totals: HashMap<Vec<u8>, (i64, i64)> = rows
                .iter()
                .filter_map(|r| {
                    Some((r.try_get(0).ok()?, (r.try_get(1).ok()?, r.try_get(2).ok()?)))
                })
                .collect();
            for ((k, w, n), row) in unsent.iter().zip(&keys) {
                let total = totals
                    .get(row)
                    .filter(|(tw, _)| tw == w)
                    .map(|(_, c)| u64::try_from(*c).unwrap_or(0));
                l.settle(k, *w, Some(total.unwrap_or(*n)), *n);
            }
        }
        // The database is away: the counts wait for the next report.
        Err(_) => {
            for (k, w, n) in &unsent {
                l.settle(k, *w, None, *n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_core::FixedClock;

    #[test]
    fn a_window_admits_its_limit_with_what_the_cluster_reported_and_then_starts_again() {
        let clock = Arc::new(FixedClock::new(vault_core::Timestamp::from_secs(1_000_050)));
        let l = SharedCounts::new("verify", 5, 60, clock.clone());
        for _ in 0..3 {
            assert!(l.check("c:1").is_ok());
        }
        // Reported: the cluster (other nodes) has 4 in this window, these 3 included.
        let taken = l.take_unsent();
        assert_eq!(taken, vec![("c:1".to_owned(), 1_000_020, 3)]);
        l.settle("c:1", taken[0].1, Some(4), 3);
        assert!(l.check("c:1").is_ok());
        assert!(l.check("c:2").is_ok(), "another key has its own count");
        // 4 in the cluster and 1 unreported here: the limit of 5 is reached.
        assert_eq!(l.check("c:1"), Err(30));
        // A key with nothing new is reported too (to read the others' admissions back); a
        // report that failed gives its counts back.
        let mut taken = l.take_unsent();
        taken.sort();
        assert_eq!(taken.iter().map(|t| t.2).collect::<Vec<_>>(), [1, 1]);
        for (k, w, n) in &taken {
            l.settle(k, *w, None, *n);
        }
        assert_eq!(l.check("c:1").map_err(|_| ()), Err(()));
        // The next window starts from nothing.
        clock.advance_millis(60_000);
        assert!(l.check("c:1").is_ok());
    }
}
