//! The release (SPEC §2 `GET /v1/citizens/{id}/fields`): the token verified for this
//! citizen and every field, one use of the live grant spent (exactly one caller wins the
//! last), the `record.released` entry queued; only with that entry's own durable answer are
//! the fields opened and answered as the purpose says (`policy::derive`). A refusal is
//! audited as `record.denied` and answered once that entry is durable.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Vault;
use super::audited::{AfterAudit, Audited};
use super::sealed::safe;
use crate::audit::{Access, Actor, Appended, AuditEntry, Pseudonym, SafeId, Ticket};
use crate::case::CaseKind;
use crate::clock::Timestamp;
use crate::crypto;
use crate::error::VaultError;
use crate::grant;
use crate::id::{BlindId, CitizenId, FieldName, GrantId};
use crate::policy::release::{Release, ReleaseDenial};
use crate::policy::{self, derive};
use crate::store::{SealedRecord, VaultStore};
use crate::token::{GrantClaims, VerifiedToken};

/// Fields released under a grant, and the audit entry that recorded it.
#[derive(Debug)]
pub struct Released {
    /// The grant used.
    pub grant_id: GrantId,
    /// Its purpose.
    pub purpose: String,
    /// Values (masked or derived where the purpose says so).
    pub fields: BTreeMap<String, Value>,
    /// Released fields with an open correction of the citizen's (disputed), in name order.
    pub disputed: Vec<String>,
    /// The durable `record.released` entry.
    pub audit: Appended,
}

impl<S: VaultStore> Vault<S> {
    /// A refused release: its `record.denied` entry is queued; the refusal (`err`) is given
    /// once that entry is durable (`AuditUnavailable` if it cannot be written).
    fn deny_release(
        &self,
        claims: &GrantClaims,
        subject: Option<&Pseudonym>,
        fields: &[String],
        err: VaultError,
        now: Timestamp,
    ) -> PendingRelease {
        let actor = match (safe(&claims.official), safe(&claims.agency)) {
            (Ok(o), Ok(a)) => Actor::official(o, a, None),
            _ => Actor::system(),
        };
        let gid = safe(&claims.grant_id).ok();
        self.deny_pending(&actor, subject, fields, gid.as_ref(), err, now)
    }

    fn deny_pending(
        &self,
        actor: &Actor,
        subject: Option<&Pseudonym>,
        fields: &[String],
        grant: Option<&SafeId>,
        err: VaultError,
        now: Timestamp,
    ) -> PendingRelease {
        let names: Vec<FieldName> = fields.iter().filter_map(|f| FieldName::parse(f)).collect();
        let entry = AuditEntry::record_denied(
            &self.entry_context(now),
            actor,
            subject,
            &names,
            grant,
            err.code(),
        );
        Audited::new(
            match entry {
                Ok(e) => self.audit.submit(vec![e]),
                Err(_) => Ticket::ready(Err(VaultError::AuditUnavailable)),
            },
            Next::Refuse(err),
        )
    }

    /// Verifies a presented token for a release and releases: a token that fails any check
    /// is refused with its code and audited as `record.denied`. Blocks until the audit entry
    /// is durable; `begin_release` + `finish_release` is the same without blocking.
    pub fn release_with_token(
        &self,
        raw_token: &str,
        presented_thumbprint: &str,
        citizen_id: &str,
        fields: &[String],
        now: Timestamp,
    ) -> Result<Released, VaultError> {
        let (ticket, next) = self
            .begin_release(raw_token, presented_thumbprint, citizen_id, fields, now)?
            .into_parts();
        self.finish_release(next, ticket.wait())
    }

    /// The first half of a release (SPEC §2 `GET /v1/citizens/{id}/fields`), which decrypts
    /// nothing: verifies the token (for this citizen and every field), spends one use of the
    /// live grant atomically (exactly one caller wins the last use) and queues the
    /// `record.released` entry, or the `record.denied` entry of a refusal. The caller awaits
    /// the ticket, then gives its answer to `finish_release`.
    pub fn begin_release(
        &self,
        raw_token: &str,
        presented_thumbprint: &str,
        citizen_id: &str,
        fields: &[String],
        now: Timestamp,
    ) -> Result<PendingRelease, VaultError> {
        let verified =
            self.token_cache
                .verify(raw_token, &self.token_keys(), presented_thumbprint, now);
        match verified {
            Ok(t) => self.begin_with(&t, citizen_id, fields, now),
            Err(rejection) => {
                let subject = CitizenId::parse(citizen_id)
                    .ok()
                    .and_then(|c| self.citizen_pseudonym(&c).ok().flatten());
                Ok(self.deny_pending(
                    &Actor::system(),
                    subject.as_ref(),
                    fields,
                    None,
                    VaultError::Token(rejection),
                    now,
                ))
            }
        }
    }

    fn begin_with(
        &self,
        token: &VerifiedToken,
        citizen_id: &str,
        fields: &[String],
        now: Timestamp,
    ) -> Result<PendingRelease, VaultError> {
        let claims = token.claims();
        let requested: Vec<String> = if fields.is_empty() {
            claims.datatypes.clone()
        } else {
            fields.to_vec()
        };
        let citizen = match CitizenId::parse(citizen_id) {
            Ok(c) => c,
            Err(e) => return Ok(self.deny_release(claims, None, &requested, e, now)),
        };
        let (blind, blind_hex) = self.blind_hex(&citizen);
        if !crypto::ct_eq(blind_hex.as_bytes(), claims.identifier.as_bytes()) {
            return Ok(self.deny_release(
                claims,
                None,
                &requested,
                VaultError::TokenNotForCitizen,
                now,
            ));
        }
        // Only the fields this release opens are copied out of the record.
        let sources = derive::sources(&requested);
        // With the topics of the citizen's open corrections: fields under one are marked for
        // the reader (read before the use is spent, so that nothing can fail between the
        // spend and its entry).
        let (record, mut open) = self.store.citizen_fields_and_open(
            &blind,
            &|n| sources.contains(&n),
            CaseKind::Correction,
        )?;
        open.sort();
        open.dedup();
        let subject = self.subject_of(&blind, record.as_ref());
        // The policy's decision: every requested field granted and still allowed by the
        // purpose. Its `Release` is what lets `finish_release` open them.
        let release = match policy::release::authorize_release(
            &self.policy(),
            &claims.purpose,
            &claims.datatypes,
            requested,
        ) {
            Ok(r) => r,
            Err((denial, requested)) => {
                let err = match denial {
                    ReleaseDenial::NotGranted => VaultError::TokenNotForField,
                    ReleaseDenial::PurposeWithdrawn => VaultError::GrantNotFound,
                    ReleaseDenial::NotInPurpose(f) => {
                        VaultError::Denied(policy::Denial::FieldNotInPurpose(f))
                    }
                };
                return Ok(self.deny_release(claims, Some(&subject), &requested, err, now));
            }
        };
        let requested = release.fields();
        // A derived answer is disputed when a field it is computed from is.
        let disputed: Vec<String> = requested
            .iter()
            .filter(|r| {
                derive::sources(std::slice::from_ref(*r))
                    .iter()
                    .any(|s| open.iter().any(|f| f == s))
            })
            .cloned()
            .collect();
        // A store whose background flush fails stops releases (it would stop covering them).
        self.flusher.check()?;
        // Only the grant's small state record is read and swapped: the token, signed by the
        // vault when it issued the grant, carries the grant's other facts, and the state's
        // binding digest proves they are this grant's (citizen, agency, official, purpose,
        // dossier, certificate, fields).
        let bound = grant::binding(&grant::Bound {
            id: &claims.grant_id,
            citizen: &claims.identifier,
            agency: &claims.agency,
            official: &claims.official,
            purpose: &claims.purpose,
            dossier_id: &claims.dossier_id,
            cert_thumbprint: &claims.cert_thumbprint,
            fields: &claims.datatypes,
        });
        // Held until this release's entry (or its denial's) is queued: a revocation of the
        // grant orders wholly before or after it in the log (`refusal::GrantOrder`).
        let _order = self.grant_order.lock(&claims.grant_id)?;
        let Some(record) = record else {
            return Ok(self.deny_release(
                claims,
                Some(&subject),
                requested,
                VaultError::CitizenNotFound,
                now,
            ));
        };
        let names: Vec<FieldName> = requested
            .iter()
            .filter_map(|f| FieldName::parse(f))
            .collect();
        // The use is spent together with this entry (one transaction where the store shares
        // the log's database; elsewhere the spent use is durable through the entry, `uses.rs`,
        // and the store is flushed in the background). Nothing is decrypted before the entry
        // is durable (`finish_release`).
        let spent = self.store.update_grant_state_audited(
            &claims.grant_id,
            &mut |st| {
                if !crypto::ct_eq(&st.binding, &bound) {
                    return Err(VaultError::TokenNotForCitizen);
                }
                st.spend(now)
            },
            &mut |st| {
                let (purpose_id, dossier, gid) = (
                    safe(&claims.purpose)?,
                    safe(&claims.dossier_id)?,
                    safe(&claims.grant_id)?,
                );
                let actor = Actor::official(
                    safe(&claims.official)?,
                    safe(&claims.agency)?,
                    st.unit.as_deref().map(safe).transpose()?,
                );
                let access = Access {
                    purpose: Some(&purpose_id),
                    dossier: &dossier,
                    fields: &names,
                    grant: Some(&gid),
                    break_glass: st.break_glass,
                    consent: None,
                };
                Ok(vec![AuditEntry::record_released(
                    &self.entry_context(now),
                    &actor,
                    &subject,
                    &access,
                )?])
            },
            &*self.audit,
        );
        let ticket = match spent {
            Ok((_, ticket)) => {
                self.flusher.mark();
                ticket
            }
            Err(e) => {
                return Ok(self.deny_release(claims, Some(&subject), requested, e.into(), now));
            }
        };
        Ok(Audited::new(
            ticket,
            Next::Open(Box::new(Opening {
                disputed,
                blind,
                record,
                release,
                grant_id: claims.grant_id.clone(),
                now,
            })),
        ))
    }

    /// The second half of a release: given the answer of the ticket from `begin_release`,
    /// opens the granted fields (masked or derived as the purpose says) only if that answer
    /// says the entry is durable and is that ticket's own; a refusal is returned once its
    /// denial is durable. Any audit failure is `AuditUnavailable` and releases nothing.
    pub fn finish_release(
        &self,
        next: AfterRelease,
        durable: Result<crate::audit::Durable, VaultError>,
    ) -> Result<Released, VaultError> {
        let (durable, then) = next.open(durable)?;
        let opening = match then {
            Next::Refuse(err) => return Err(err),
            Next::Open(o) => o,
        };
        let appended = durable
            .into_appended()
            .pop()
            .ok_or(VaultError::AuditUnavailable)?;
        let Opening {
            disputed,
            blind,
            record,
            release,
            grant_id,
            now,
        } = *opening;
        let policy = self.policy();
        let purpose = policy
            .purpose(release.purpose())
            .ok_or(VaultError::GrantNotFound)?;
        let opened = self.open_fields(&release, &blind, &record)?;
        Ok(Released {
            grant_id,
            purpose: release.purpose().to_owned(),
            fields: derive::answers(purpose, release.fields(), &opened, now),
            disputed,
            audit: appended,
        })
    }
}

/// A release between its two halves: the audit entry queued, and what `finish_release` does
/// once it is durable.
pub type PendingRelease = Audited<Next>;

/// What a release does once its audit entry is durable; only `finish_release` reads it.
pub type AfterRelease = AfterAudit<Next>;

/// The second half of a release (read only by `finish_release`).
#[derive(Debug)]
pub enum Next {
    /// Open the granted fields.
    Open(Box<Opening>),
    /// Refuse with this error.
    Refuse(VaultError),
}

/// The sealed record and the request, held while the `record.released` entry is written.
pub struct Opening {
    /// The released fields under an open correction.
    disputed: Vec<String>,
    blind: BlindId,
    record: SealedRecord,
    /// The policy's decision: what may be opened, for which purpose.
    release: Release,
    grant_id: GrantId,
    now: Timestamp,
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening")
            .field("grant_id", &self.grant_id)
            .finish_non_exhaustive()
    }
}
