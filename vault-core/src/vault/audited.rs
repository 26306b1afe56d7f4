//! "Audited, then act": an operation's entries queued on the audit log (a `Ticket`) and what
//! it does once they are durable, which only the durable answer of that same ticket lets out.
//! A grant request, a release and a batch of record writes are each one: the first half
//! decides and queues, nothing acts; the caller waits on (or awaits) the ticket; the second
//! half acts only with that ticket's own durable answer, and a failure or another ticket's
//! answer is `AuditUnavailable`.

use crate::audit::{Durable, Ticket};
use crate::error::VaultError;

/// An operation whose entries are queued: the ticket, and what follows once they are
/// durable.
#[derive(Debug)]
#[must_use = "an audited operation completes only through its second half"]
pub struct Audited<T> {
    ticket: Ticket,
    then: T,
}

impl<T> Audited<T> {
    /// `then`, to follow once `ticket`'s entries are durable.
    pub(crate) fn new(ticket: Ticket, then: T) -> Self {
        Self { ticket, then }
    }

    /// The ticket to wait on (or await), and what follows it.
    pub fn into_parts(self) -> (Ticket, AfterAudit<T>) {
        let ticket = self.ticket.id();
        (
            self.ticket,
            AfterAudit {
                ticket,
                then: self.then,
            },
        )
    }
}

/// What follows an audited operation's entries; only its own ticket's durable answer opens it.
#[derive(Debug)]
pub struct AfterAudit<T> {
    ticket: u64,
    then: T,
}

impl<T> AfterAudit<T> {
    /// The durable answer and what follows, if `durable` is this ticket's own success;
    /// otherwise `AuditUnavailable` (a failure, or another ticket's answer).
    pub(crate) fn open(
        self,
        durable: Result<Durable, VaultError>,
    ) -> Result<(Durable, T), VaultError> {
        match durable {
            Ok(d) if d.ticket() == self.ticket => Ok((d, self.then)),
            _ => Err(VaultError::AuditUnavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_tickets_success_opens_it() {
        let mine = Audited::new(Ticket::ready(Ok(Vec::new())), 7);
        let other = Ticket::ready(Ok(Vec::new()));
        let (ticket, after) = mine.into_parts();
        assert!(matches!(
            after.open(other.wait()),
            Err(VaultError::AuditUnavailable)
        ));
        let (t2, after2) = Audited::new(Ticket::ready(Ok(Vec::new())), 8).into_parts();
        assert!(matches!(
            after2.open(Err(VaultError::AuditUnavailable)),
            Err(VaultError::AuditUnavailable)
        ));
        drop(t2);
        let (ticket3, after3) = Audited::new(ticket, 9).into_parts();
        assert_eq!(after3.open(ticket3.wait()).map(|(_, t)| t).ok(), Some(9));
    }
}
