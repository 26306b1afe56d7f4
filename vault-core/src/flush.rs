//! Group flush: many callers that each need "my store writes are durable" share one flush.
//! A caller takes a ticket after its write; the flusher thread flushes once for every ticket
//! issued before it started; the caller waits for its ticket (possibly while doing other
//! durable work, such as its audit append, in parallel).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::error::VaultError;

#[derive(Debug, Default)]
struct State {
    requested: u64,
    done: u64,
    failed_at: Option<u64>,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// The flusher: one thread calling `flush` for batches of tickets.
#[derive(Debug)]
pub struct GroupFlusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A promise that the writes made before it was taken become durable.
#[derive(Debug)]
pub struct FlushTicket {
    shared: Arc<Shared>,
    generation: u64,
}

impl GroupFlusher {
    /// Starts the flusher thread around `flush`.
    pub fn start(
        flush: impl Fn() -> Result<(), VaultError> + Send + 'static,
    ) -> Result<Self, VaultError> {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || {
                loop {
                    let target = {
                        let Ok(mut st) = s.state.lock() else { return };
                        while st.requested == st.done && !st.stop {
                            st = match s.cv.wait(st) {
                                Ok(g) => g,
                                Err(_) => return,
                            };
                        }
                        if st.stop && st.requested == st.done {
                            return;
                        }
                        st.requested
                    };
                    let ok = flush().is_ok();
                    if let Ok(mut st) = s.state.lock() {
                        st.done = target;
                        if !ok {
                            st.failed_at = Some(target);
                        }
                    }
                    s.cv.notify_all();
                }
            })
            .map_err(|e| VaultError::StoreUnavailable(format!("flusher thread: {e}")))?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A ticket for every write made so far.
    pub fn ticket(&self) -> Result<FlushTicket, VaultError> {
        let mut st = self
            .shared
            .state
            .lock()
            .map_err(|_| VaultError::StoreUnavailable("flusher".into()))?;
        st.requested += 1;
        let generation = st.requested;
        drop(st);
        self.shared.cv.notify_all();
        Ok(FlushTicket {
            shared: Arc::clone(&self.shared),
            generation,
        })
    }
}

impl FlushTicket {
    /// Waits until the writes before this ticket are durable.
    pub fn wait(self) -> Result<(), VaultError> {
        let mut st = self
            .shared
            .state
            .lock()
            .map_err(|_| VaultError::StoreUnavailable("flusher".into()))?;
        while st.done < self.generation {
            st = self
                .shared
                .cv
                .wait(st)
                .map_err(|_| VaultError::StoreUnavailable("flusher".into()))?;
        }
        // A failed flush at or after this ticket's generation fails the ticket.
        if st.failed_at.is_some_and(|f| f >= self.generation) {
            return Err(VaultError::StoreUnavailable("store flush failed".into()));
        }
        Ok(())
    }
}

impl Drop for GroupFlusher {
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
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn many_tickets_share_few_flushes_and_all_complete() {
        let flushes = Arc::new(AtomicU64::new(0));
        let f = Arc::clone(&flushes);
        let flusher = Arc::new(
            GroupFlusher::start(move || {
                std::thread::sleep(std::time::Duration::from_millis(2));
                f.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap(),
        );
        let handles: Vec<_> = (0..32)
            .map(|_| {
                let fl = Arc::clone(&flusher);
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        fl.ticket().unwrap().wait().unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..320).contains(&n), "{n} flushes for 320 tickets");
    }

    #[test]
    fn a_failed_flush_fails_its_tickets() {
        let flusher =
            GroupFlusher::start(|| Err(VaultError::StoreUnavailable("disk".into()))).unwrap();
        assert!(flusher.ticket().unwrap().wait().is_err());
    }
}
