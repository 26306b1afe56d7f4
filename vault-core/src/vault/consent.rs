//! The citizen's consent, which is specific (SPEC §2 "Citizen"): approving a pending grant
//! consents to that grant alone (its agency, purpose, dossier, fields and lifetime), a
//! refusal refuses that grant alone, and only an approval that asks for it
//! (`remember_days`) also keeps a standing consent for that agency, purpose and exactly those
//! fields, until it expires or the citizen withdraws it. Withdrawal revokes every grant that
//! rests on it at once.

use super::Vault;
use super::refusal::{Attempt, Caller};
use crate::audit::{Access, Actor, AuditEntry, Pseudonym, SafeId};
use crate::clock::Timestamp;
use crate::consent::{self, StandingConsent};
use crate::error::VaultError;
use crate::grant::{Grant, GrantStatus};
use crate::id::BlindId;
use crate::id::{CitizenId, FieldName};
use crate::store::{Landing, VaultStore, Write};

/// A citizen's decision on a pending grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentDecision {
    /// Consent to this grant; with `Some(days)`, also keep a standing consent that long.
    Approve {
        /// Days to keep a standing consent for this agency, purpose and these fields.
        remember_days: Option<u32>,
    },
    /// Refuse this grant.
    Refuse,
}

/// What a decision did.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The grant as it is now.
    pub grant: Grant,
    /// The standing consent kept with an approval, if the citizen asked for one.
    pub standing: Option<StandingConsent>,
}

fn safe(s: &str) -> Result<SafeId, VaultError> {
    SafeId::parse(s)
}

fn field_names(fields: &[String]) -> Vec<FieldName> {
    fields.iter().filter_map(|f| FieldName::parse(f)).collect()
}

impl<S: VaultStore> Vault<S> {
    /// The citizen decides a pending grant of theirs. Audited (`grant.approved`, naming the
    /// fields, dossier and expiry the consent covers, or `grant.refused`) before it takes
    /// effect; an approval's token is handed to the agency once, at its next status poll.
    /// A grant that is not theirs (`grant_not_found`) or no longer pending
    /// (`grant_not_pending`) is refused and the refusal audited.
    pub fn decide_grant(
        &self,
        citizen: &CitizenId,
        grant_id: &str,
        decision: ConsentDecision,
        now: Timestamp,
    ) -> Result<Decided, VaultError> {
        let action = match decision {
            ConsentDecision::Approve { .. } => "grant.approve",
            ConsentDecision::Refuse => "grant.refuse",
        };
        let attempt = Attempt {
            action,
            grant: Some(grant_id),
            citizen: None,
        };
        self.decide(citizen, grant_id, decision, now)
            .or_else(|e| self.refused(Caller::Citizen(citizen), attempt, e, now))
    }

    fn decide(
        &self,
        citizen: &CitizenId,
        grant_id: &str,
        decision: ConsentDecision,
        now: Timestamp,
    ) -> Result<Decided, VaultError> {
        let remember = match decision {
            ConsentDecision::Approve {
                remember_days: Some(d),
            } => Some(consent::remember_days(d)?),
            _ => None,
        };
        // One decision at a time per grant, and none while the agency revokes it: the check
        // that it is pending, its entry and its change stand together.
        let _order = self.grant_order.lock(grant_id)?;
        let (g, subject) = self.citizen_grant(citizen, grant_id)?;
        if g.status_at(now) != GrantStatus::PendingConsent {
            return Err(VaultError::GrantNotPending);
        }
        let (purpose, dossier, gid, agency) = (
            safe(&g.purpose)?,
            safe(&g.dossier_id)?,
            safe(&g.id)?,
            safe(&g.agency)?,
        );
        let fields = field_names(&g.fields);
        let access = Access {
            purpose: Some(&purpose),
            dossier: &dossier,
            fields: &fields,
            grant: Some(&gid),
            break_glass: g.break_glass,
            consent: None,
        };
        let ctx = self.entry_context(now);
        let approve = matches!(decision, ConsentDecision::Approve { .. });
        let standing = match remember {
            Some(days) => Some(StandingConsent {
                id: consent::new_consent_id()?,
                citizen: g.citizen.clone(),
                agency: g.agency.clone(),
                purpose: g.purpose.clone(),
                fields: g.fields.clone(),
                created: now,
                expires: now.plus_secs(i64::from(days) * 86_400),
                grant_id: g.id.clone(),
                withdrawn: None,
            }),
            None => None,
        };
        let entry = if approve {
            let expires = now.plus_secs(i64::from(g.ttl_seconds));
            let kept = standing
                .as_ref()
                .map(|c| Ok::<_, VaultError>((safe(&c.id)?, c.expires)))
                .transpose()?;
            AuditEntry::grant_approved(
                &ctx,
                &subject,
                &agency,
                &access,
                expires,
                kept.as_ref().map(|(id, t)| (id, *t)),
            )?
        } else {
            AuditEntry::grant_refused(&ctx, &subject, &agency, &access)?
        };
        // The decision and its entry land together (one transaction where the store shares
        // the log's database); elsewhere the entry is durable first.
        let (grant, ticket) = self.store.update_grant_audited(
            grant_id,
            Landing::EntriesFirst,
            &mut |g| {
                if g.status_at(now) != GrantStatus::PendingConsent {
                    return Err(VaultError::GrantNotPending);
                }
                if approve {
                    g.activate(now);
                    g.token_pending_delivery = true;
                } else {
                    g.end(GrantStatus::Refused, now);
                }
                Ok(vec![entry.clone()])
            },
            // Kept only with the approval.
            &standing
                .iter()
                .filter(|_| approve)
                .map(Write::Consent)
                .collect::<Vec<_>>(),
            &*self.audit,
        )?;
        ticket.wait()?;
        Ok(Decided { grant, standing })
    }

    /// The citizen's standing consents that are in force at `now`.
    pub fn my_consents(
        &self,
        citizen: &CitizenId,
        now: Timestamp,
    ) -> Result<Vec<StandingConsent>, VaultError> {
        let blind = self.keyring().blind(citizen);
        let mut list: Vec<StandingConsent> = self
            .store
            .consents_of_citizen(&blind)?
            .into_iter()
            .filter(|c| c.is_live(now))
            .collect();
        list.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(list)
    }

    /// The standing consent that covers a request, if one does (`consent::covers`).
    pub(super) fn covering_consent(
        &self,
        citizen: &BlindId,
        agency: &str,
        purpose: &str,
        fields: &[String],
        now: Timestamp,
    ) -> Result<Option<StandingConsent>, VaultError> {
        Ok(self
            .store
            .consents_of_citizen(citizen)?
            .into_iter()
            .filter(|c| c.covers(agency, purpose, fields, now))
            .min_by_key(|c| c.expires))
    }

    /// Whether a standing consent still exists (a grant issued under one checks after it is
    /// stored, so a concurrent withdrawal cannot miss it).
    pub(super) fn consent_exists(&self, citizen: &BlindId, id: &str) -> Result<bool, VaultError> {
        Ok(self
            .store
            .consents_of_citizen(citizen)?
            .iter()
            .any(|c| c.id == id && c.withdrawn.is_none()))
    }

    /// The citizen withdraws a standing consent: it is marked withdrawn at once (it covers no
    /// request from then on), every live grant resting on it (issued under it, or the grant
    /// whose approval kept it) is revoked, `consent.withdrawn` is appended, and then it is
    /// deleted. A withdrawal cut short (a store or audit failure) leaves the mark, so the
    /// citizen's retry finishes it. Returns how many grants were revoked. Another citizen's
    /// consent, or an unknown id, is `consent_not_found` (refusal audited).
    pub fn withdraw_consent(
        &self,
        citizen: &CitizenId,
        consent_id: &str,
        now: Timestamp,
    ) -> Result<usize, VaultError> {
        self.withdraw(citizen, consent_id, now).or_else(|e| {
            self.refused(
                Caller::Citizen(citizen),
                Attempt::new("consent.withdraw"),
                e,
                now,
            )
        })
    }

    fn withdraw(
        &self,
        citizen: &CitizenId,
        consent_id: &str,
        now: Timestamp,
    ) -> Result<usize, VaultError> {
        let blind = self.keyring().blind(citizen);
        let mut c = self
            .store
            .consents_of_citizen(&blind)?
            .into_iter()
            .find(|c| c.id == consent_id)
            .ok_or(VaultError::ConsentNotFound)?;
        let subject = self.stored_subject(&blind)?;
        if c.withdrawn.is_none() {
            // Withdrawn first: a grant decided under it from now on finds it gone
            // (`consent_exists`), and the sweep below finds every grant issued before.
            c.withdrawn = Some(now);
            self.store.put_consent(&c)?;
        }
        let revoked = self.end_grants_of_consent(&blind, &c, &subject, now)?;
        let entry = AuditEntry::consent_withdrawn(
            &self.entry_context(now),
            &subject,
            &safe(&c.agency)?,
            &safe(&c.purpose)?,
            &safe(&c.id)?,
            &field_names(&c.fields),
        )?;
        self.store
            .write_audited(
                &[Write::ForgetConsent(&blind, &c.id)],
                vec![entry],
                &*self.audit,
            )?
            .wait()?;
        Ok(revoked)
    }

    /// Revokes every live grant resting on `c`: all are tried; the first failure is
    /// returned after the others.
    fn end_grants_of_consent(
        &self,
        citizen: &BlindId,
        c: &StandingConsent,
        subject: &Pseudonym,
        now: Timestamp,
    ) -> Result<usize, VaultError> {
        let mut revoked = 0;
        let mut first_error = None;
        for g in self.store.grants_of_citizen(citizen)? {
            let rests = g.consent_id.as_deref() == Some(c.id.as_str()) || g.id == c.grant_id;
            if !rests {
                continue;
            }
            match self.revoke_live(&g.id, &Actor::citizen(), subject, "consent_withdrawn", now) {
                Ok(true) => revoked += 1,
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(revoked),
        }
    }
}
