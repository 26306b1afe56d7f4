//! Grant issuance: a grant request decided by the policy (with the citizen's standing
//! consent, if one covers it), audited before the grant is stored and its token signed;
//! idempotent replays; the agency's view of its grants (status, the token handed out once).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Vault;
use super::audited::{AfterAudit, Audited};
use super::idempotency::IdempotencyKey;
use super::refusal::{Attempt, Caller};
use super::sealed::{hex_to_32, safe};
use crate::audit::{Access, Actor, AuditEntry, EntryContext, Pseudonym, SafeId, Ticket};
use crate::clock::Timestamp;
use crate::crypto;
use crate::error::VaultError;
use crate::grant::{self, Grant, GrantStatus};
use crate::id::{AgencyId, BlindId, CitizenId, DossierId, FieldName, GrantId, PurposeId};
use crate::policy::derive::RESIDENCE;
use crate::policy::{self, AccessRequest, CitizenFacts, ConsentState, Decision};
use crate::store::{Remembered, RememberedAnswer, VaultStore};
use crate::token::GrantClaims;

/// How long a citizen has to answer a consent request.
pub const CONSENT_WINDOW_SECS: i64 = 3 * 24 * 3600;

/// The calling agency system, from its verified client certificate.
#[derive(Debug, Clone)]
pub struct AgencyCaller {
    /// Agency id (certificate SAN).
    pub agency: String,
    /// base64url SHA-256 of the certificate DER.
    pub cert_thumbprint: String,
}

/// A grant request body (SPEC §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    /// The citizen (12 digits).
    pub citizen_id: String,
    /// Purpose id.
    pub purpose: String,
    /// The agency's dossier.
    pub dossier_id: String,
    /// Fields and derived answers wanted.
    pub fields: Vec<String>,
    /// The official.
    pub official_id: String,
    /// The official's unit.
    pub official_unit: Option<String>,
    /// Token lifetime wanted (capped by the purpose).
    pub ttl_seconds: Option<u32>,
}

/// What a grant request produced.
#[derive(Debug, Clone)]
pub enum GrantOutcome {
    /// Granted: the token (returned with the grant).
    Active {
        /// The grant.
        grant: Grant,
        /// The signed access token.
        token: String,
    },
    /// Waiting for the citizen's consent.
    Pending {
        /// The grant.
        grant: Grant,
    },
    /// An idempotent replay: the earlier grant as it is now, with its token only if the
    /// citizen approved it since and the token was not handed out yet.
    Replayed {
        /// The grant.
        grant: Grant,
        /// The token, handed out once.
        token: Option<String>,
    },
}

impl<S: VaultStore> Vault<S> {
    pub(super) fn token_for(&self, g: &Grant) -> Result<String, VaultError> {
        let policy = self.policy();
        let purpose = policy
            .purpose(&g.purpose)
            .ok_or(VaultError::GrantNotFound)?;
        let iat = g.token_iat.map_or(0, Timestamp::as_secs);
        let claims = GrantClaims {
            agency: g.agency.clone(),
            official: g.official.clone(),
            iat,
            nbf: iat,
            exp: g.token_exp.map_or(0, Timestamp::as_secs),
            jti: format!("{}.t", g.id),
            grant_id: g.id.clone(),
            cert_thumbprint: g.cert_thumbprint.clone(),
            identifier: g.citizen.clone(),
            datatypes: g.fields.clone(),
            purpose: g.purpose.clone(),
            legal_basis: purpose.legal_basis.clone(),
            dossier_id: g.dossier_id.clone(),
        };
        // Remembered as checked: the token's first release skips the Ed25519 verification
        // of the vault's own signature (the issue time stands in for now when the cache
        // drops expired entries).
        self.token_cache.sign(
            &self.token_keys(),
            &claims,
            Timestamp::from_millis(iat.saturating_mul(1000)),
        )
    }

    /// Decides a grant request (SPEC §2 `POST /v1/grants`). Denials are audited and returned
    /// as `Denied`; a pending or active grant is audited before it is stored. The same
    /// idempotency key with the same body returns the same grant (and the same token).
    /// Blocks until the grant's audit entry is durable (`begin_grant` + `finish_grant`).
    pub fn request_grant(
        &self,
        caller: &AgencyCaller,
        req: &GrantRequest,
        idempotency_key: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<GrantOutcome, VaultError> {
        let (ticket, after) = self
            .begin_grant(caller, req, idempotency_key, now)?
            .into_parts();
        self.finish_grant(after, ticket.wait())
    }

    /// The first half of a grant request: decides it and queues its audit entry
    /// (`grant.issued`, `grant.pending`, `grant.denied`, or `access.denied` for a request
    /// that is not well-formed); nothing is stored and no token is signed. The caller waits
    /// on (or awaits) the ticket, then calls `finish_grant`. An idempotent replay of an
    /// earlier grant queues nothing.
    pub fn begin_grant(
        &self,
        caller: &AgencyCaller,
        req: &GrantRequest,
        idempotency_key: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<PendingGrant, VaultError> {
        let valid = (|| {
            Ok::<_, VaultError>((
                CitizenId::parse(&req.citizen_id)?,
                safe(&req.official_id)?,
                req.official_unit.as_deref().map(safe).transpose()?,
                safe(&req.dossier_id)?,
                safe(&caller.agency)?,
            ))
        })();
        let (citizen, official, unit, dossier, agency) = match valid {
            Ok(v) => v,
            Err(e) => {
                let blind = CitizenId::parse(&req.citizen_id)
                    .ok()
                    .map(|c| self.keyring().blind(&c));
                return self.refuse_grant_request(caller, blind.as_ref(), e, now);
            }
        };
        let (blind, blind_hex) = self.blind_hex(&citizen);
        // Every part in one JSON array: no two different requests hash alike.
        let request_hash = crypto::request_mac(
            self.keyring().answer_key(),
            json!([
                caller.agency,
                blind_hex,
                req.purpose,
                req.dossier_id,
                req.fields,
                req.official_id,
                req.official_unit,
                req.ttl_seconds
            ])
            .to_string()
            .as_bytes(),
        );
        if let Some(key) = idempotency_key
            && let Some(r) = self
                .store
                .remembered(&self.grant_answer_name(&caller.agency, key))?
        {
            let RememberedAnswer::Grant(grant_id) = r.answer else {
                return Err(VaultError::StoreCorrupt(
                    "a call's answer under a grant's name".into(),
                ));
            };
            if !crypto::ct_eq(&r.request_hash, &request_hash) {
                return self.refuse_grant_request(
                    caller,
                    Some(&blind),
                    VaultError::IdempotencyConflict,
                    now,
                );
            }
            return Ok(Audited::new(
                Ticket::ready(Ok(Vec::new())),
                GrantNext::Replay(Box::new(Replaying {
                    caller: caller.clone(),
                    grant_id,
                    now,
                })),
            ));
        }
        let record = self
            .store
            .citizen_fields(&blind, &|n| RESIDENCE.contains(&n))?;
        let facts_values = match &record {
            Some(r) => self.open_residence(&blind, r)?,
            None => BTreeMap::new(),
        };
        let standing =
            self.covering_consent(&blind, &caller.agency, &req.purpose, &req.fields, now)?;
        let facts = CitizenFacts {
            ward: facts_values.get("residence_ward").and_then(Value::as_str),
            consent: if standing.is_some() {
                ConsentState::Standing
            } else {
                ConsentState::None
            },
        };
        // One policy set for the decision and its entries (a reload may land meanwhile).
        let policy_set = self.policy();
        let decision = policy::authorize(
            &policy_set,
            &AccessRequest {
                agency: &caller.agency,
                purpose: &req.purpose,
                fields: &req.fields,
            },
            &facts,
        );
        let subject = self.subject_of(&blind, record.as_ref());
        let actor = Actor::official(official.clone(), agency.clone(), unit.clone());
        let field_names: Vec<FieldName> = req
            .fields
            .iter()
            .filter_map(|f| FieldName::parse(f))
            .collect();
        // Only a purpose of the policy set is recorded: an unknown one is the denial's code.
        let purpose_id = policy_set
            .purpose(&req.purpose)
            .and_then(|p| SafeId::parse(&p.id).ok());
        let ctx = EntryContext {
            time: now,
            policy: policy_set.sha256(),
        };
        let purpose = match decision {
            Err(denial) => {
                let access = Access {
                    purpose: purpose_id.as_ref(),
                    dossier: &dossier,
                    fields: &field_names,
                    grant: None,
                    break_glass: false,
                    consent: None,
                };
                let entry =
                    AuditEntry::grant_denied(&ctx, &actor, Some(&subject), &access, denial.code())?;
                return Ok(Audited::new(
                    self.audit.submit(vec![entry]),
                    GrantNext::Refuse(VaultError::Denied(denial)),
                ));
            }
            Ok(_) => policy_set
                .purpose(&req.purpose)
                .ok_or(VaultError::Denied(policy::Denial::UnknownPurpose))?,
        };
        let (break_glass, by_consent) = match decision {
            Ok(Decision::Permit {
                break_glass,
                by_consent,
            }) => (break_glass, by_consent),
            _ => (false, false),
        };
        let consent = standing.filter(|_| by_consent);
        let mut ttl_seconds = req
            .ttl_seconds
            .unwrap_or(purpose.max_ttl_seconds)
            .clamp(1, purpose.max_ttl_seconds);
        if let Some(c) = &consent {
            // A grant under a standing consent ends no later than the consent.
            let left = (c.expires.as_millis() - now.as_millis())
                .div_euclid(1000)
                .max(1);
            ttl_seconds = ttl_seconds.min(u32::try_from(left).unwrap_or(u32::MAX));
        }
        let mut g = Grant {
            id: self.store.new_grant_id()?,
            verification_code: grant::new_verification_code()?,
            citizen: blind_hex,
            agency: AgencyId::new(caller.agency.as_str()),
            official: req.official_id.clone(),
            unit: req.official_unit.clone(),
            purpose: PurposeId::new(req.purpose.as_str()),
            dossier_id: DossierId::new(req.dossier_id.as_str()),
            fields: req.fields.clone(),
            cert_thumbprint: caller.cert_thumbprint.clone(),
            status: GrantStatus::PendingConsent,
            created: now,
            token_iat: None,
            token_exp: None,
            ttl_seconds,
            consent_expires: None,
            max_uses: purpose.max_uses,
            uses: 0,
            break_glass,
            token_pending_delivery: false,
            review: None,
            reviewed_at: None,
            ended: None,
            consent_id: consent.map(|c| c.id),
        };
        let gid = safe(&g.id)?;
        let consent_id = g.consent_id.as_deref().map(safe).transpose()?;
        let access = Access {
            purpose: purpose_id.as_ref(),
            dossier: &dossier,
            fields: &field_names,
            grant: Some(&gid),
            break_glass,
            consent: consent_id.as_ref(),
        };
        let pending = matches!(decision, Ok(Decision::PendingConsent));
        let entry = if pending {
            g.consent_expires = Some(now.plus_secs(CONSENT_WINDOW_SECS));
            AuditEntry::grant_pending(&ctx, &actor, &subject, &access)?
        } else {
            g.activate(now);
            AuditEntry::grant_issued(&ctx, &actor, &subject, &access)?
        };
        Ok(Audited::new(
            self.audit.submit(vec![entry]),
            GrantNext::Store(Box::new(Storing {
                grant: g,
                pending,
                idempotency: idempotency_key.map(|key| (key.clone(), request_hash)),
                caller: caller.clone(),
                request: req.clone(),
                subject,
                now,
            })),
        ))
    }

    /// A grant request refused before the policy decided (a malformed request, a reused
    /// idempotency key): its `access.denied` entry queued, the refusal given once durable.
    fn refuse_grant_request(
        &self,
        caller: &AgencyCaller,
        citizen: Option<&BlindId>,
        err: VaultError,
        now: Timestamp,
    ) -> Result<PendingGrant, VaultError> {
        let attempt = Attempt {
            action: "grant.request",
            grant: None,
            citizen,
        };
        let entry = self.refusal_entry(Caller::Agency(&caller.agency), attempt, err.code(), now)?;
        Ok(Audited::new(
            self.audit.submit(vec![entry]),
            GrantNext::Refuse(err),
        ))
    }

    /// The second half of a grant request: given the answer of the ticket from
    /// `begin_grant`, stores the grant and signs its token only if that answer says the
    /// entry is durable and is that ticket's own; a denial is returned once its entry is
    /// durable. Any audit failure is `AuditUnavailable` and stores nothing. A replay answers
    /// the grant's status now: a token only if the citizen approved since and it was not
    /// handed out yet, `consent_refused` if the citizen refused.
    pub fn finish_grant(
        &self,
        next: AfterGrantAudit,
        durable: Result<crate::audit::Durable, VaultError>,
    ) -> Result<GrantOutcome, VaultError> {
        // A replay's ticket is a ready one of its own: it opens like any other.
        let (_, then) = next.open(durable)?;
        let storing = match then {
            GrantNext::Replay(r) => {
                let replayed =
                    self.deliver(&r.caller, &r.grant_id, r.now)
                        .and_then(|(grant, token)| {
                            if grant.status_at(r.now) == GrantStatus::Refused {
                                Err(VaultError::Denied(policy::Denial::ConsentRefused))
                            } else {
                                Ok(GrantOutcome::Replayed { grant, token })
                            }
                        });
                // A refused (or swept) grant's replay is a refusal like any other: audited.
                let attempt = Attempt {
                    action: "grant.request",
                    grant: Some(&r.grant_id),
                    citizen: None,
                };
                return replayed.or_else(|e| {
                    self.refused(Caller::Agency(&r.caller.agency), attempt, e, r.now)
                });
            }
            GrantNext::Refuse(err) => return Err(err),
            GrantNext::Store(s) => s,
        };
        let Storing {
            grant: mut g,
            pending,
            idempotency,
            caller,
            request,
            subject,
            now,
        } = *storing;
        while !self.store.insert_grant(&g)? {
            g.verification_code = grant::new_verification_code()?;
        }
        let key = idempotency.as_ref().map(|(k, _)| k);
        if let Some(c) = &g.consent_id
            && !self.consent_exists(&BlindId::from_bytes(hex_to_32(&g.citizen)), c)?
        {
            // The standing consent was withdrawn while this grant was decided: the grant
            // does not stand on it; decide the request again.
            self.revoke_live(&g.id, &Actor::citizen(), &subject, "consent_withdrawn", now)?;
            return self.request_grant(&caller, &request, key, now);
        }
        if let Some((key, hash)) = &idempotency
            && !self.store.remember(
                &self.grant_answer_name(&caller.agency, key),
                &Remembered {
                    request_hash: *hash,
                    created: now,
                    answer: RememberedAnswer::Grant(g.id.clone()),
                },
            )?
        {
            // A concurrent request with the same key won the race: withdraw this duplicate
            // (audited) and answer with the winner's grant.
            let actor = Actor::official(safe(&g.official)?, safe(&g.agency)?, None);
            self.revoke_live(&g.id, &actor, &subject, "idempotent_duplicate", now)?;
            return self.request_grant(&caller, &request, Some(key), now);
        }
        Ok(if pending {
            GrantOutcome::Pending { grant: g }
        } else {
            GrantOutcome::Active {
                token: self.token_for(&g)?,
                grant: g,
            }
        })
    }

    /// A citizen's own grant and their pseudonym; another citizen's grant is not found.
    pub(super) fn citizen_grant(
        &self,
        citizen: &CitizenId,
        grant_id: &str,
    ) -> Result<(Grant, Pseudonym), VaultError> {
        let (blind, blind_hex) = self.blind_hex(citizen);
        let g = self
            .store
            .grant(grant_id)?
            .filter(|g| g.citizen == blind_hex)
            .ok_or(VaultError::GrantNotFound)?;
        let record = self.store.citizen(&blind)?;
        Ok((g, self.subject_of(&blind, record.as_ref())))
    }

    /// The calling agency's own grant; another agency's grant is not found, and that refusal
    /// is audited (`action`), naming the grant and its citizen.
    pub(super) fn own_grant(
        &self,
        caller: &AgencyCaller,
        grant_id: &str,
        action: &str,
        now: Timestamp,
    ) -> Result<Grant, VaultError> {
        let found = self.store.grant(grant_id)?;
        match found {
            Some(g) if g.agency == caller.agency => Ok(g),
            other => {
                let citizen = other.map(|g| BlindId::from_bytes(hex_to_32(&g.citizen)));
                let attempt = Attempt {
                    action,
                    grant: Some(grant_id),
                    citizen: citizen.as_ref(),
                };
                self.refused(
                    Caller::Agency(&caller.agency),
                    attempt,
                    VaultError::GrantNotFound,
                    now,
                )
            }
        }
    }

    /// The agency polls its grant: the status as of `now`, and the token once after the
    /// citizen approved.
    pub fn grant_status(
        &self,
        caller: &AgencyCaller,
        grant_id: &str,
        now: Timestamp,
    ) -> Result<(Grant, Option<String>), VaultError> {
        self.own_grant(caller, grant_id, "grant.status", now)?;
        self.deliver(caller, grant_id, now)
    }

    /// The agency's grant as of `now`, with its token if the citizen approved it and the
    /// token was not handed out yet (taken atomically: once).
    fn deliver(
        &self,
        caller: &AgencyCaller,
        grant_id: &str,
        now: Timestamp,
    ) -> Result<(Grant, Option<String>), VaultError> {
        let g = self
            .store
            .grant(grant_id)?
            .filter(|g| g.agency == caller.agency)
            .ok_or(VaultError::GrantNotFound)?;
        if g.status_at(now) == GrantStatus::Active && g.token_pending_delivery {
            // Signed before the flag is taken, so a failure cannot lose the token; handed out
            // only by the caller that takes the flag of a grant still active.
            let token = self.token_for(&g)?;
            let mut delivered = false;
            let updated = self.store.update_grant(grant_id, true, &mut |g| {
                delivered = g.token_pending_delivery && g.status_at(now) == GrantStatus::Active;
                if delivered {
                    g.token_pending_delivery = false;
                }
                Ok(())
            })?;
            return Ok((updated, delivered.then_some(token)));
        }
        Ok((g, None))
    }
}

/// A grant request between its two halves: its audit entry queued, and what `finish_grant`
/// does once it is durable.
pub type PendingGrant = Audited<GrantNext>;

/// What a grant request does once its audit entry is durable; only `finish_grant` reads it.
pub type AfterGrantAudit = AfterAudit<GrantNext>;

/// The second half of a grant request (read only by `finish_grant`).
pub enum GrantNext {
    /// Store the decided grant (and sign its token).
    Store(Box<Storing>),
    /// Refuse with this error (a denial).
    Refuse(VaultError),
    /// An idempotent replay: answer the earlier grant's status now, nothing audited.
    Replay(Box<Replaying>),
}

impl std::fmt::Debug for GrantNext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(s) => s.fmt(f),
            Self::Refuse(e) => f.debug_tuple("Refuse").field(&e.code()).finish(),
            Self::Replay(r) => f.debug_tuple("Replay").field(&r.grant_id).finish(),
        }
    }
}

/// The earlier grant an idempotent replay answers with.
#[derive(Debug)]
pub struct Replaying {
    caller: AgencyCaller,
    grant_id: GrantId,
    now: Timestamp,
}

/// A decided grant, held while its `grant.issued` or `grant.pending` entry is written.
pub struct Storing {
    grant: Grant,
    pending: bool,
    /// The `Idempotency-Key` and the request's hash, when the request had a key.
    idempotency: Option<(IdempotencyKey, [u8; 32])>,
    /// The request (decided again in the rare races `finish_grant` handles).
    caller: AgencyCaller,
    request: GrantRequest,
    subject: Pseudonym,
    now: Timestamp,
}

impl std::fmt::Debug for Storing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storing")
            .field("grant_id", &self.grant.id)
            .finish_non_exhaustive()
    }
}
