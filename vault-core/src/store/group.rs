//! Group commit for store flushes: callers that ask for durability while a flush runs share
//! the next one, so concurrent grants, consents and revokes cost one sled flush and one
//! `fdatasync` per group instead of one each. A caller returns only after a flush that
//! started after its call finished, so it covers every write the caller made before asking.

use super::StoreError;
use std::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    /// Flushes started (the generation of the newest).
    started: u64,
    /// The newest generation finished.
    finished: u64,
    running: bool,
    /// How the newest finished flush failed (`None`: it succeeded).
    failure: Option<String>,
}

/// One flush at a time; the rest wait for the next.
#[derive(Debug, Default)]
pub(super) struct FlushGroup {
    state: Mutex<State>,
    done: Condvar,
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("store flush group poisoned".into())
}

impl FlushGroup {
    /// Returns once a run of `flush` that started after this call has finished, with its
    /// outcome; runs it on this thread when none is running (the leader), else waits.
    pub(super) fn run(&self, flush: impl Fn() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut st = self.state.lock().map_err(|_| poisoned())?;
        // The first flush to start from now on covers this caller's writes.
        let target = st.started + 1;
        loop {
            if st.finished >= target {
                // The newest finished flush started at or after `target`: it covers us.
                return match &st.failure {
                    None => Ok(()),
                    Some(e) => Err(StoreError::Unavailable(e.clone())),
                };
            }
            if st.running {
                st = self.done.wait(st).map_err(|_| poisoned())?;
                continue;
            }
            st.running = true;
            st.started += 1;
            let generation = st.started;
            drop(st);
            // Should `flush` unwind, the guard still ends this generation (as failed), so
            // the waiters are answered instead of waiting for good.
            let mut ending = Ending {
                group: self,
                generation,
                failure: Some("store flush did not finish".into()),
            };
            let outcome = flush();
            ending.failure = outcome.as_ref().err().map(|e| match e {
                StoreError::Unavailable(m) => m.clone(),
                other => other.to_string(),
            });
            drop(ending);
            st = self.state.lock().map_err(|_| poisoned())?;
            if generation >= target {
                return outcome;
            }
        }
    }
}

/// Ends a leader's generation when dropped: records its outcome and wakes the waiters.
struct Ending<'a> {
    group: &'a FlushGroup,
    generation: u64,
    failure: Option<String>,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        // A poisoned lock (a panic elsewhere while holding it) is taken as it is: the
        // generation must end either way.
        let mut st = self
            .group
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.running = false;
        st.finished = self.generation;
        st.failure = self.failure.take();
        self.group.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn every_caller_is_covered_by_a_flush_that_started_after_it_and_callers_share_flushes() {
        let group = Arc::new(FlushGroup::default());
        // `written`: writes so far; `durable`: the most writes a finished flush covered.
        let (written, durable, flushes) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (g, w, d, n) = (
                    Arc::clone(&group),
                    Arc::clone(&written),
                    Arc::clone(&durable),
                    Arc::clone(&flushes),
                );
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let mine = w.fetch_add(1, Ordering::SeqCst) + 1;
                        g.run(|| {
                            let covers = w.load(Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(2));
                            n.fetch_add(1, Ordering::SeqCst);
                            d.fetch_max(covers, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                        assert!(d.load(Ordering::SeqCst) >= mine, "returned before durable");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!(n < 320 / 2, "{n} flushes for 320 callers");
    }

    #[test]
    fn a_flush_that_unwinds_fails_its_waiters_instead_of_hanging_them() {
        let group = Arc::new(FlushGroup::default());
        let (entered, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let leader = {
            let (g, e, r) = (
                Arc::clone(&group),
                Arc::clone(&entered),
                Arc::clone(&release),
            );
            std::thread::spawn(move || {
                let _ = g.run(|| {
                    e.store(true, Ordering::SeqCst);
                    while !r.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    std::panic::panic_any("sled gave up")
                });
            })
        };
        while !entered.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Waits for the next flush, which it runs itself once the leader's generation ends.
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let g = Arc::clone(&group);
            std::thread::spawn(move || tx.send(g.run(|| Ok(()))));
        }
        std::thread::sleep(Duration::from_millis(20));
        release.store(true, Ordering::SeqCst);
        assert!(leader.join().is_err(), "the leader's flush unwound");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the follower was answered, not left waiting")
            .unwrap();
        let st = group.state.lock().unwrap();
        assert!(!st.running);
        assert_eq!(
            st.finished, 2,
            "the unwound generation ended, then the follower's ran"
        );
    }

    #[test]
    fn a_failed_flush_fails_the_callers_it_covers_and_the_next_one_succeeds() {
        let group = FlushGroup::default();
        let broken = AtomicBool::new(true);
        let flush = || {
            if broken.load(Ordering::SeqCst) {
                Err(StoreError::Unavailable("disk full".into()))
            } else {
                Ok(())
            }
        };
        let e = group.run(flush).unwrap_err();
        assert!(matches!(&e, StoreError::Unavailable(m) if m == "disk full"));
        broken.store(false, Ordering::SeqCst);
        group.run(flush).unwrap();
    }
}
