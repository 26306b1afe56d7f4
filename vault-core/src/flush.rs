//! Background store flush: releases spend their uses in the store's memory and become durable
//! through their `record.released` audit entries; this thread flushes the store every
//! interval in which something was spent, and once per idle interval otherwise (the flush
//! writes, just before, how far the audit log's durable entries are covered: `Vault` replays
//! the entries after that mark on open, so the idle flush keeps that tail short when other
//! entries keep coming). A failed flush is reported to every later caller of `check` until a
//! flush succeeds.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::VaultError;

#[derive(Debug, Default)]
struct State {
    /// Something was written since the last flush started.
    dirty: bool,
    /// The last flush failed (and is retried after the next interval).
    failed: bool,
    stop: bool,
    /// Flushes run (for tests and statistics).
    flushes: u64,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

type FlushFn = dyn Fn() -> Result<(), VaultError> + Send + Sync;

/// The flusher: one thread calling `flush` at most once per interval while writes come in.
pub struct BackgroundFlusher {
    shared: Arc<Shared>,
    /// The flush, for `flush_now` (tests only; the thread holds its own handle).
    #[cfg(test)]
    flush: Arc<FlushFn>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for BackgroundFlusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundFlusher")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl BackgroundFlusher {
    /// Starts the flusher thread around `flush`, flushing at most once per `interval` while
    /// writes are marked and once per `idle` when none are.
    pub fn start(
        interval: Duration,
        idle: Duration,
        flush: impl Fn() -> Result<(), VaultError> + Send + Sync + 'static,
    ) -> Result<Self, VaultError> {
        let shared = Arc::new(Shared::default());
        let flush: Arc<FlushFn> = Arc::new(flush);
        let (s, f) = (Arc::clone(&shared), Arc::clone(&flush));
        let thread = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || run(&s, f.as_ref(), interval, idle))
            .map_err(|e| VaultError::StoreUnavailable(format!("flusher thread: {e}")))?;
        Ok(Self {
            shared,
            #[cfg(test)]
            flush,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Notes a write that the next flush must cover.
    pub fn mark(&self) {
        if let Ok(mut st) = self.shared.state.lock()
            && !st.dirty
        {
            st.dirty = true;
            self.shared.cv.notify_all();
        }
    }

    /// Fails while the last flush failed (or the flusher is gone).
    pub fn check(&self) -> Result<(), VaultError> {
        let st = self
            .shared
            .state
            .lock()
            .map_err(|_| VaultError::StoreUnavailable("flusher".into()))?;
        if st.failed || st.stop {
            return Err(VaultError::StoreUnavailable("store flush failed".into()));
        }
        Ok(())
    }

    /// Flushes now, on the caller's thread (the vault's tests); a success clears a failure.
    #[cfg(test)]
    pub(crate) fn flush_now(&self) -> Result<(), VaultError> {
        if let Ok(mut st) = self.shared.state.lock() {
            st.dirty = false;
        }
        let r = (self.flush)();
        if let Ok(mut st) = self.shared.state.lock() {
            st.failed = r.is_err();
            st.dirty |= r.is_err();
            st.flushes += 1;
        }
        r
    }

    /// Marks the last flush as failed (the vault's tests: sled has no fault injection).
    #[cfg(test)]
    pub(crate) fn fail_for_test(&self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.failed = true;
        }
    }

    /// Flushes run so far (tests).
    #[cfg(test)]
    pub(crate) fn flushes(&self) -> u64 {
        self.shared.state.lock().map_or(0, |s| s.flushes)
    }
}

fn run(s: &Shared, flush: &FlushFn, interval: Duration, idle: Duration) {
    loop {
        {
            let Ok(mut st) = s.state.lock() else { return };
            if !st.dirty && !st.stop {
                st = match s
                    .cv
                    .wait_timeout_while(st, idle, |st| !st.dirty && !st.stop)
                {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
            }
            if st.stop && !st.dirty {
                return;
            }
            // Gather the interval's writes into one flush (a stop cuts the wait short).
            if st.dirty && !st.stop {
                st = match s.cv.wait_timeout_while(st, interval, |st| !st.stop) {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
            }
            st.dirty = false;
        }
        let ok = flush().is_ok();
        let Ok(mut st) = s.state.lock() else { return };
        st.failed = !ok;
        st.dirty |= !ok;
        st.flushes += 1;
        if st.stop {
            return;
        }
    }
}

impl Drop for BackgroundFlusher {
    /// Stops the thread after a last flush of anything still unflushed.
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.stop = true;
        }
        self.shared.cv.notify_all();
        if let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    fn counting(delay_ms: u64) -> (Arc<AtomicU64>, impl Fn() -> Result<(), VaultError>) {
        let n = Arc::new(AtomicU64::new(0));
        let m = Arc::clone(&n);
        (n, move || {
            std::thread::sleep(Duration::from_millis(delay_ms));
            m.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    #[test]
    fn many_marks_share_few_flushes_and_nothing_is_flushed_when_idle() {
        let (n, f) = counting(1);
        let flusher = Arc::new(
            BackgroundFlusher::start(Duration::from_millis(20), Duration::from_secs(3600), f)
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(n.load(Ordering::SeqCst), 0, "idle: no flush");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let fl = Arc::clone(&flusher);
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        fl.mark();
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // Every mark is covered by a flush that started after it: wait for the last one.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while flusher.shared.state.lock().unwrap().dirty && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(10));
        let flushes = n.load(Ordering::SeqCst);
        assert!(
            (1..50).contains(&flushes),
            "{flushes} flushes for 400 marks"
        );
        assert_eq!(flusher.flushes(), flushes);
        flusher.check().unwrap();
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn an_idle_flusher_still_flushes_once_per_idle_interval() {
        let (n, f) = counting(0);
        let flusher = BackgroundFlusher::start(HOUR, Duration::from_millis(10), f).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while n.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            n.load(Ordering::SeqCst) >= 3,
            "no mark, yet flushed on the idle timer"
        );
        drop(flusher);
    }

    #[test]
    fn dropping_flushes_what_is_left_without_waiting_out_the_interval() {
        let (n, f) = counting(0);
        let flusher =
            BackgroundFlusher::start(Duration::from_secs(3600), Duration::from_secs(3600), f)
                .unwrap();
        flusher.mark();
        let t = std::time::Instant::now();
        drop(flusher);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(t.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn a_failed_flush_fails_checks_until_one_succeeds() {
        let broken = Arc::new(AtomicBool::new(true));
        let b = Arc::clone(&broken);
        let flusher = BackgroundFlusher::start(Duration::from_millis(1), HOUR, move || {
            if b.load(Ordering::SeqCst) {
                Err(VaultError::StoreUnavailable("disk".into()))
            } else {
                Ok(())
            }
        })
        .unwrap();
        flusher.check().unwrap();
        flusher.mark();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while flusher.check().is_ok() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(flusher.check().is_err(), "a failed flush must be reported");
        broken.store(false, Ordering::SeqCst);
        // The failed flush left the store dirty: the thread retries on its own.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while flusher.check().is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        flusher.check().unwrap();
        assert!(flusher.flush_now().is_ok());
    }
}
