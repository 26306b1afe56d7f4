//! Revocation and retention: the agency revokes its own grant (an ended grant is left as it
//! is); every revocation changes the grant's state and queues its `grant.revoked` entry under
//! the grant's ordering lock, so no release of it is logged after the revocation; ended grants
//! are deleted after their retention (the audit log keeps their history).

use super::Vault;
use super::sealed::{hex_to_32, safe};
use crate::audit::{Actor, AuditEntry, Pseudonym};
use crate::clock::Timestamp;
use crate::crypto;
use crate::error::VaultError;
use crate::grant::GrantStatus;
use crate::store::{Landing, VaultStore};
use crate::vault::AgencyCaller;

impl<S: VaultStore> Vault<S> {
    /// The agency revokes its own grant; its token stops working at once. An ended grant
    /// (refused, revoked, expired, exhausted) is left as it is, with no new entry.
    pub fn revoke_grant(
        &self,
        caller: &AgencyCaller,
        grant_id: &str,
        now: Timestamp,
    ) -> Result<(), VaultError> {
        let g = self.own_grant(caller, grant_id, "grant.revoke", now)?;
        let subject = Pseudonym::from_bytes(crypto::pseudonym(
            self.keyring().pseudonym_key(),
            &hex_to_32(&g.citizen),
        ));
        let actor = Actor::official(safe(&g.official)?, safe(&caller.agency)?, None);
        self.revoke_live(grant_id, &actor, &subject, "revoked_by_agency", now)?;
        Ok(())
    }

    /// Revokes a grant if it is still live (active or pending) at `now`, then appends its
    /// `grant.revoked` entry (queued under the grant's ordering lock, so no release of it is
    /// logged after the revocation) and waits until the entry is durable. An ended grant is
    /// left as it is: `false`, nothing appended.
    pub(super) fn revoke_live(
        &self,
        grant_id: &str,
        actor: &Actor,
        subject: &Pseudonym,
        code: &'static str,
        now: Timestamp,
    ) -> Result<bool, VaultError> {
        let gid = safe(grant_id)?;
        let ticket = {
            let _order = self.grant_order.lock(grant_id)?;
            let mut changed = false;
            let (_, ticket) = self.store.update_grant_audited(
                grant_id,
                Landing::ChangeFirst,
                &mut |g| {
                    changed = matches!(
                        g.status_at(now),
                        GrantStatus::Active | GrantStatus::PendingConsent
                    );
                    if !changed {
                        return Ok(Vec::new());
                    }
                    g.end(GrantStatus::Revoked, now);
                    Ok(vec![AuditEntry::grant_revoked(
                        &self.entry_context(now),
                        actor,
                        subject,
                        &gid,
                        code,
                    )?])
                },
                &[],
                &*self.audit,
            )?;
            if !changed {
                return Ok(false);
            }
            ticket
        };
        // The revocation took effect above (fail closed); make it durable, then wait for its
        // entry.
        self.store.flush()?;
        ticket.wait()?;
        Ok(true)
    }

    /// One step of the retention sweep: looks at up to `scan` grants after where the previous
    /// step stopped and deletes those that ended more than `retention_secs` before `now` (see
    /// `VaultStore::sweep_grants`). Until then the agency can poll a grant and the citizen can
    /// check its code; afterwards the audit log is the only record of it. Returns how many were
    /// deleted and whether the walk reached the last grant (the next step starts over). Each
    /// time the walk reaches the end, standing consents that ended more than `retention_secs`
    /// before `now`, and idempotent answers made before then, are deleted too (counted with
    /// the grants).
    pub fn sweep_ended_grants(
        &self,
        now: Timestamp,
        retention_secs: i64,
        scan: usize,
    ) -> Result<(usize, bool), VaultError> {
        let mut cursor = self
            .sweep_cursor
            .lock()
            .map_err(|_| VaultError::StoreUnavailable("sweep cursor poisoned".into()))?;
        let cutoff = now.as_secs().saturating_sub(retention_secs.max(0));
        let cutoff = Timestamp::from_millis(cutoff.saturating_mul(1000));
        let (mut purged, next) = self.store.sweep_grants(cursor.as_deref(), scan, cutoff)?;
        let wrapped = next.is_none();
        // The cursor moves first: a failure below must not hold the grant walk in place.
        *cursor = next;
        if wrapped {
            purged += self.store.sweep_consents(cutoff)?;
            purged += self.store.sweep_remembered(cutoff)?;
        }
        Ok((purged, wrapped))
    }
}
