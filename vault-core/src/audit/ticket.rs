//! The answer to one audit append, owed by the writer thread: a caller either blocks for it
//! (`Ticket::wait`) or awaits it as a `Future`, so an async server waits for the group
//! commit's fsync without parking a thread per request. The answer is given exactly once; a
//! writer that drops its side unanswered (it stopped, it panicked) answers
//! `AuditUnavailable`, so no waiter hangs and nothing is acknowledged by default.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use super::merkle::Hash;
use crate::error::VaultError;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Where an appended entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its index in the log.
    pub index: u64,
    /// Its RFC 9162 leaf hash.
    pub leaf_hash: Hash,
}

/// Proof that an append is durable: where each entry landed. Only the writer makes one (the
/// constructor is private to the crate), for the ticket whose `id` it carries.
#[derive(Debug, PartialEq, Eq)]
pub struct Durable {
    ticket: u64,
    appended: Vec<Appended>,
}

impl Durable {
    /// The entries' places in the log, in the order they were given.
    pub fn appended(&self) -> &[Appended] {
        &self.appended
    }

    /// The ticket this answers.
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// The entries' places, consumed.
    pub fn into_appended(self) -> Vec<Appended> {
        self.appended
    }
}

type Outcome = Result<Vec<Appended>, VaultError>;

#[derive(Default)]
struct State {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    ready: Condvar,
}

/// The caller's side: resolves to `Durable` once the entries are durable, or to the error.
#[must_use = "an append is acknowledged only through its ticket"]
pub struct Ticket {
    id: u64,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ticket({})", self.id)
    }
}

/// The writer's side; answering consumes it, dropping it unanswered answers
/// `AuditUnavailable`.
pub(crate) struct Answer {
    slot: Option<Arc<Slot>>,
}

/// A new ticket and the answer that resolves it.
pub(crate) fn pair() -> (Ticket, Answer) {
    let slot = Arc::new(Slot::default());
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    (
        Ticket {
            id,
            slot: Arc::clone(&slot),
        },
        Answer { slot: Some(slot) },
    )
}

impl Ticket {
    /// A ticket answered already (no entries to write, or refused before queueing).
    pub fn ready(outcome: Result<Vec<Appended>, VaultError>) -> Self {
        let (ticket, answer) = pair();
        answer.send(outcome);
        ticket
    }

    /// This ticket's id (what its `Durable` carries).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Blocks until the answer comes.
    pub fn wait(self) -> Result<Durable, VaultError> {
        let Ok(mut st) = self.slot.state.lock() else {
            return Err(VaultError::AuditUnavailable);
        };
        loop {
            if let Some(outcome) = st.outcome.take() {
                return self.durable(outcome);
            }
            st = match self.slot.ready.wait(st) {
                Ok(g) => g,
                Err(_) => return Err(VaultError::AuditUnavailable),
            };
        }
    }

    fn durable(&self, outcome: Outcome) -> Result<Durable, VaultError> {
        outcome.map(|appended| Durable {
            ticket: self.id,
            appended,
        })
    }
}

impl Future for Ticket {
    type Output = Result<Durable, VaultError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut st) = self.slot.state.lock() else {
            return Poll::Ready(Err(VaultError::AuditUnavailable));
        };
        if let Some(outcome) = st.outcome.take() {
            return Poll::Ready(self.durable(outcome));
        }
        match &mut st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Answer {
    /// Gives the answer and wakes the waiter.
    pub(crate) fn send(mut self, outcome: Outcome) {
        if let Some(slot) = self.slot.take() {
            answer(&slot, outcome);
        }
    }
}

fn answer(slot: &Slot, outcome: Outcome) {
    let waker = match slot.state.lock() {
        Ok(mut st) => {
            st.outcome = Some(outcome);
            st.waker.take()
        }
        Err(_) => None,
    };
    slot.ready.notify_all();
    if let Some(w) = waker {
        w.wake();
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            answer(&slot, Err(VaultError::AuditUnavailable));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Hash;

    fn appended(index: u64) -> Appended {
        Appended {
            index,
            leaf_hash: Hash::default(),
        }
    }

    /// Polls `f` once with a waker that counts its wakes.
    fn poll_once<F: Future + Unpin>(f: &mut F, wakes: &Arc<AtomicU64>) -> Poll<F::Output> {
        struct Count(Arc<AtomicU64>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Count(Arc::clone(wakes))));
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_blocking_waiter_gets_the_answer_given_on_another_thread() {
        let (ticket, answer) = pair();
        let id = ticket.id();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            answer.send(Ok(vec![appended(7)]));
        });
        let d = ticket.wait().unwrap();
        assert_eq!(d.ticket(), id);
        assert_eq!(d.appended(), [appended(7)]);
        writer.join().unwrap();
    }

    #[test]
    fn an_awaiting_task_is_woken_once_answered() {
        let wakes = Arc::new(AtomicU64::new(0));
        let (mut ticket, answer) = pair();
        assert!(poll_once(&mut ticket, &wakes).is_pending());
        assert!(poll_once(&mut ticket, &wakes).is_pending(), "polled again");
        assert_eq!(wakes.load(Ordering::SeqCst), 0);
        answer.send(Ok(vec![appended(1), appended(2)]));
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "woken exactly once");
        match poll_once(&mut ticket, &wakes) {
            Poll::Ready(Ok(d)) => assert_eq!(d.into_appended(), [appended(1), appended(2)]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_answer_dropped_unanswered_is_audit_unavailable() {
        let (ticket, answer) = pair();
        drop(answer);
        assert!(matches!(ticket.wait(), Err(VaultError::AuditUnavailable)));
        let wakes = Arc::new(AtomicU64::new(0));
        let (mut ticket, answer) = pair();
        assert!(poll_once(&mut ticket, &wakes).is_pending());
        drop(answer);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert!(matches!(
            poll_once(&mut ticket, &wakes),
            Poll::Ready(Err(VaultError::AuditUnavailable))
        ));
    }

    #[test]
    fn errors_and_ready_tickets_pass_through() {
        assert!(matches!(
            Ticket::ready(Err(VaultError::AuditUnavailable)).wait(),
            Err(VaultError::AuditUnavailable)
        ));
        let t = Ticket::ready(Ok(Vec::new()));
        let id = t.id();
        let d = t.wait().unwrap();
        assert_eq!((d.ticket(), d.appended().len()), (id, 0));
        let (a, b) = (pair().0, pair().0);
        assert_ne!(a.id(), b.id(), "ids are unique");
    }
}
