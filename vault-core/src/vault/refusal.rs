//! Refusals of identified callers: every request refused after its caller's identity was
//! established (a known agency certificate, a citizen's or an auditor's valid token) is
//! appended as `access.denied` with the actor, what was tried and the refusal's code, and
//! the refusal is answered only once that entry is durable. Refusals before any identity
//! exists are the server's to count; nobody grows the log without an identity. Also the
//! per-grant ordering lock that keeps a grant's entries in the order of its state changes.

use std::sync::{Mutex, MutexGuard};

use super::Vault;
use crate::audit::{Actor, AuditEntry, Pseudonym, SafeId};
use crate::clock::Timestamp;
use crate::crypto;
use crate::error::VaultError;
use crate::id::{BlindId, CitizenId};
use crate::store::VaultStore;

/// Who was refused, as established by the server's authentication.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// An agency system (its certificate names a known agency).
    Agency(&'a str),
    /// A citizen (a valid ID token whose subject is their id).
    Citizen(&'a CitizenId),
    /// An auditor (a token with the auditor role, or an auditor certificate).
    Auditor(&'a SafeId),
}

/// What the refused caller tried: an operation name of the API (`grant.revoke`,
/// `consent.withdraw`, …; the server's route table names one per route).
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The operation.
    pub action: &'a str,
    /// The grant it named, when it named one.
    pub grant: Option<&'a str>,
    /// The citizen it concerned, when known (recorded as their pseudonym).
    pub citizen: Option<&'a BlindId>,
}

impl<'a> Attempt<'a> {
    /// An attempt at `action` naming nothing else.
    pub fn new(action: &'a str) -> Self {
        Self {
            action,
            grant: None,
            citizen: None,
        }
    }
}

impl<S: VaultStore> Vault<S> {
    /// Appends the `access.denied` entry of a refusal (`code`) of `caller` and waits until it
    /// is durable. Fails with `AuditUnavailable` if it cannot be written (the refusal stands
    /// either way).
    pub fn record_refusal(
        &self,
        caller: Caller<'_>,
        attempt: Attempt<'_>,
        code: &'static str,
        now: Timestamp,
    ) -> Result<(), VaultError> {
        let entry = self.refusal_entry(caller, attempt, code, now)?;
        self.audit.append(vec![entry]).map(|_| ())
    }

    /// The `access.denied` entry of a refusal, for a caller that queues it itself.
    pub(super) fn refusal_entry(
        &self,
        caller: Caller<'_>,
        attempt: Attempt<'_>,
        code: &'static str,
        now: Timestamp,
    ) -> Result<AuditEntry, VaultError> {
        let (actor, own) = match caller {
            Caller::Agency(a) => (Actor::agency(safe_or_unnamed(a)), None),
            Caller::Citizen(c) => (Actor::citizen(), Some(self.keyring().blind(c))),
            Caller::Auditor(id) => (Actor::auditor(id.clone()), None),
        };
        let subject = attempt
            .citizen
            .copied()
            .or(own)
            .map(|b| self.stored_subject(&b))
            .transpose()?;
        let action = safe_or_unnamed(attempt.action);
        // Only an id of the grant shape: a path segment could otherwise carry anything the
        // identifier rule lets through (a citizen id with dashes) into the log for good.
        let grant = attempt
            .grant
            .filter(|g| crate::grant::is_grant_id_shaped(g))
            .and_then(|g| SafeId::parse(g).ok());
        AuditEntry::access_denied(
            &self.entry_context(now),
            &actor,
            subject.as_ref(),
            &action,
            grant.as_ref(),
            code,
        )
    }

    /// `err` after its refusal was recorded (`record_refusal`) when it is a refusal; any
    /// other error as it is. An audit failure answers `AuditUnavailable` instead.
    pub(super) fn refused<T>(
        &self,
        caller: Caller<'_>,
        attempt: Attempt<'_>,
        err: VaultError,
        now: Timestamp,
    ) -> Result<T, VaultError> {
        if err.is_refusal() {
            self.record_refusal(caller, attempt, err.code(), now)?;
        }
        Err(err)
    }

    /// The pseudonym of a citizen by blind id: the stored one, or the stand-in of a citizen
    /// the vault does not hold.
    pub(super) fn stored_subject(&self, blind: &BlindId) -> Result<Pseudonym, VaultError> {
        let record = self.store.citizen(blind)?;
        Ok(self.subject_of(blind, record.as_ref()))
    }
}

fn safe_or_unnamed(s: &str) -> SafeId {
    SafeId::parse(s).unwrap_or_else(|_| SafeId::unnamed())
}

/// Serializes, per grant, a state change with the queuing of the entry that records it, so
/// the log shows a grant's entries in the order its state changed: a release whose use was
/// spent before a revocation is queued before the `grant.revoked` entry, and no
/// `record.released` of a grant follows its revocation. Striped: uncontended, one lock and
/// unlock per release.
#[derive(Debug)]
pub(crate) struct GrantOrder {
    stripes: Vec<Mutex<()>>,
}

impl Default for GrantOrder {
    fn default() -> Self {
        Self {
            stripes: (0..64).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl GrantOrder {
    /// Holds the grant's stripe until the guard drops.
    pub(crate) fn lock(&self, grant_id: &str) -> Result<MutexGuard<'_, ()>, VaultError> {
        let h = crypto::sha256(grant_id.as_bytes());
        let i = usize::from(h[0]) % self.stripes.len().max(1);
        self.stripes
            .get(i)
            .ok_or_else(|| VaultError::StoreUnavailable("grant order".into()))?
            .lock()
            .map_err(|_| VaultError::StoreUnavailable("grant order lock poisoned".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_grant_always_takes_the_same_stripe_and_releases_it() {
        let order = GrantOrder::default();
        let held = order.lock("g-a").unwrap();
        drop(held);
        assert!(order.lock("g-a").is_ok());
        assert_eq!(safe_or_unnamed("a b").as_str(), "unnamed");
    }
}
