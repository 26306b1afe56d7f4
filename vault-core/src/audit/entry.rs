//! Audit entries (SPEC §4): one constructor per event, typed inputs only (identifiers,
//! field names, pseudonyms, codes), so an entry has no place for a citizen value or id.
//! Bytes are canonical JSON (RFC 8785 for this subset: sorted ASCII keys, no whitespace,
//! integers only), at most 64 KiB.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::clock::Timestamp;
use crate::crypto;
use crate::error::VaultError;
use crate::id::{FieldName, SafeId};

/// Largest canonical entry.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// The events of SPEC §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// A grant was issued.
    GrantIssued,
    /// A grant waits for the citizen's consent.
    GrantPending,
    /// A grant request was refused.
    GrantDenied,
    /// The citizen approved a pending grant.
    GrantApproved,
    /// The citizen refused a pending grant.
    GrantRefused,
    /// A grant was revoked.
    GrantRevoked,
    /// Fields were released.
    RecordReleased,
    /// A release was refused.
    RecordDenied,
    /// The citizen read their own record.
    RecordSelfViewed,
    /// A record was written (import, source-of-truth agency).
    RecordWritten,
    /// A citizen was erased.
    RecordErased,
    /// The citizen withdrew consent.
    ConsentWithdrawn,
    /// The citizen asked for a correction.
    CorrectionRequested,
    /// The field's source-of-truth agency accepted or rejected a correction.
    CorrectionResolved,
    /// The citizen filed a complaint.
    ComplaintFiled,
    /// An auditor answered a complaint.
    ComplaintAnswered,
    /// The citizen made a data-subject request.
    RequestReceived,
    /// A data-subject request changed status.
    RequestUpdated,
    /// An auditor reviewed a break-glass grant.
    BreakglassReviewed,
    /// An auditor queried the log.
    AuditQueried,
    /// An auditor exported a range of the log.
    AuditExported,
    /// A key was rotated.
    KeyRotated,
    /// A backup was taken (`range_to`: the tree size it holds).
    BackupCreated,
    /// An identified caller was refused outside the grant and release decisions (another
    /// agency's grant, another citizen's request, a role on the wrong route, an invalid
    /// request): the actor, what they tried (`action`) and the refusal's `code`.
    AccessDenied,
}

impl Event {
    /// Every event.
    pub const ALL: [Event; 24] = [
        Self::GrantIssued,
        Self::GrantPending,
        Self::GrantDenied,
        Self::GrantApproved,
        Self::GrantRefused,
        Self::GrantRevoked,
        Self::RecordReleased,
        Self::RecordDenied,
        Self::RecordSelfViewed,
        Self::RecordWritten,
        Self::RecordErased,
        Self::ConsentWithdrawn,
        Self::CorrectionRequested,
        Self::CorrectionResolved,
        Self::ComplaintFiled,
        Self::ComplaintAnswered,
        Self::RequestReceived,
        Self::RequestUpdated,
        Self::BreakglassReviewed,
        Self::AuditQueried,
        Self::AuditExported,
        Self::KeyRotated,
        Self::BackupCreated,
        Self::AccessDenied,
    ];

    /// The SPEC name, e.g. `record.released`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GrantIssued => "grant.issued",
            Self::GrantPending => "grant.pending",
            Self::GrantDenied => "grant.denied",
            Self::GrantApproved => "grant.approved",
            Self::GrantRefused => "grant.refused",
            Self::GrantRevoked => "grant.revoked",
            Self::RecordReleased => "record.released",
            Self::RecordDenied => "record.denied",
            Self::RecordSelfViewed => "record.self_viewed",
            Self::RecordWritten => "record.written",
            Self::RecordErased => "record.erased",
            Self::ConsentWithdrawn => "consent.withdrawn",
            Self::CorrectionRequested => "correction.requested",
            Self::CorrectionResolved => "correction.resolved",
            Self::ComplaintFiled => "complaint.filed",
            Self::ComplaintAnswered => "complaint.answered",
            Self::RequestReceived => "request.received",
            Self::RequestUpdated => "request.updated",
            Self::BreakglassReviewed => "breakglass.reviewed",
            Self::AuditQueried => "audit.queried",
            Self::AuditExported => "audit.exported",
            Self::KeyRotated => "key.rotated",
            Self::BackupCreated => "backup.created",
            Self::AccessDenied => "access.denied",
        }
    }

    /// The event named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// A citizen's audit pseudonym: HMAC(audit key, per-citizen salt). Erasure destroys the salt.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pseudonym(pub(crate) [u8; 32]);

impl Pseudonym {
    /// From stored bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    /// Parses 64 hex digits.
    pub fn parse_hex(s: &str) -> Option<Self> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Self(b))
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonym({self})")
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// An agency system (and its official).
    Agency,
    /// The citizen themself.
    Citizen,
    /// An auditor.
    Auditor,
    /// An operator with `vaultctl`.
    Operator,
    /// The vault itself (expiry, rotation jobs).
    System,
}

impl ActorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Agency => "agency",
            Self::Citizen => "citizen",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
            Self::System => "system",
        }
    }
}

/// The actor of an entry. A citizen actor is always `self`: the subject pseudonym says who.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    kind: ActorKind,
    id: SafeId,
    agency: Option<SafeId>,
    unit: Option<SafeId>,
}

impl Actor {
    /// An agency's official: `id` is the official, `agency` the agency, `unit` their unit.
    pub fn official(id: SafeId, agency: SafeId, unit: Option<SafeId>) -> Self {
        Self {
            kind: ActorKind::Agency,
            id,
            agency: Some(agency),
            unit,
        }
    }
    /// An agency system acting without a named official.
    pub fn agency(agency: SafeId) -> Self {
        Self {
            kind: ActorKind::Agency,
            id: agency.clone(),
            agency: Some(agency),
            unit: None,
        }
    }
    /// The citizen (the subject).
    pub fn citizen() -> Self {
        Self {
            kind: ActorKind::Citizen,
            id: SafeId::fixed("self"),
            agency: None,
            unit: None,
        }
    }
    /// An auditor.
    pub fn auditor(id: SafeId) -> Self {
        Self {
            kind: ActorKind::Auditor,
            id,
            agency: None,
            unit: None,
        }
    }
    /// An operator.
    pub fn operator(id: SafeId) -> Self {
        Self {
            kind: ActorKind::Operator,
            id,
            agency: None,
            unit: None,
        }
    }
    /// The vault itself.
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: SafeId::fixed("vault"),
            agency: None,
            unit: None,
        }
    }

    fn to_json(&self, concerning: Option<&SafeId>) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!(self.kind.as_str()));
        m.insert("id".into(), json!(self.id.as_str()));
        if let Some(a) = self.agency.as_ref().or(concerning) {
            m.insert("agency".into(), json!(a.as_str()));
        }
        if let Some(u) = &self.unit {
            m.insert("unit".into(), json!(u.as_str()));
        }
        Value::Object(m)
    }
}

/// Permit, deny or error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed.
    Permit,
    /// Refused (with a code).
    Deny,
    /// Failed.
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Permit => "permit",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

/// What every entry shares: when, and under which policy set.
#[derive(Debug, Clone, Copy)]
pub struct EntryContext {
    /// When.
    pub time: Timestamp,
    /// SHA-256 of the policy set in force.
    pub policy: [u8; 32],
}

/// What a grant-shaped entry concerns.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    /// The purpose id: only a purpose of the policy set is recorded (and so indexed).
    pub purpose: Option<&'a SafeId>,
    /// The agency's dossier.
    pub dossier: &'a SafeId,
    /// Fields (names only).
    pub fields: &'a [FieldName],
    /// The grant, once it exists.
    pub grant: Option<&'a SafeId>,
    /// Emergency access.
    pub break_glass: bool,
    /// The standing consent a grant was issued under, if any.
    pub consent: Option<&'a SafeId>,
}

/// A canonical audit entry. Only the constructors below build one.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditEntry {
    event: Event,
    bytes: Vec<u8>,
}

impl fmt::Debug for AuditEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AuditEntry({}, {} bytes)",
            self.event.as_str(),
            self.bytes.len()
        )
    }
}

struct Draft {
    m: BTreeMap<&'static str, Value>,
    event: Event,
}

impl Draft {
    fn new(
        ctx: &EntryContext,
        event: Event,
        actor: Value,
        outcome: Outcome,
    ) -> Result<Self, VaultError> {
        let nonce = crypto::random_nonce16()?;
        let mut m = BTreeMap::new();
        m.insert("v", json!(1));
        m.insert("time", json!(ctx.time.to_string()));
        m.insert(
            "nonce",
            json!(base64::engine::general_purpose::STANDARD.encode(nonce)),
        );
        m.insert("event", json!(event.as_str()));
        m.insert("policy", json!(hex::encode(ctx.policy)));
        m.insert("actor", actor);
        m.insert("outcome", json!(outcome.as_str()));
        Ok(Self { m, event })
    }
    fn subject(mut self, p: Option<&Pseudonym>) -> Self {
        if let Some(p) = p {
            self.m.insert("subject", json!(p.to_string()));
        }
        self
    }
    fn access(mut self, a: &Access<'_>) -> Self {
        if let Some(p) = a.purpose {
            self.m.insert("purpose", json!(p.as_str()));
        }
        self.m.insert("dossier_id", json!(a.dossier.as_str()));
        self.fields(a.fields);
        if let Some(g) = a.grant {
            self.m.insert("grant_id", json!(g.as_str()));
        }
        self.m.insert("break_glass", json!(a.break_glass));
        if let Some(c) = a.consent {
            self.m.insert("consent_id", json!(c.as_str()));
        }
        self
    }
    fn fields(&mut self, fields: &[FieldName]) {
        self.m.insert(
            "fields",
            Value::Array(fields.iter().map(|f| json!(f.as_str())).collect()),
        );
    }
    fn set(mut self, k: &'static str, v: Value) -> Self {
        self.m.insert(k, v);
        self
    }
    fn finish(self) -> Result<AuditEntry, VaultError> {
        // A map sorted by its (ASCII) keys serializes exactly as the JSON object would.
        let bytes = serde_json::to_vec(&self.m).map_err(|_| VaultError::InvalidIdentifier)?;
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(VaultError::AuditEntryTooLarge);
        }
        Ok(AuditEntry {
            event: self.event,
            bytes,
        })
    }
}

fn code_value(code: &'static str) -> Value {
    json!(code)
}

impl AuditEntry {
    /// The event.
    pub fn event(&self) -> Event {
        self.event
    }

    /// The canonical bytes (the Merkle leaf's data).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `grant.issued`.
    pub fn grant_issued(
        ctx: &EntryContext,
        actor: &Actor,
        subject: &Pseudonym,
        access: &Access<'_>,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::GrantIssued,
            actor.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .access(access)
        .finish()
    }

    /// `grant.pending`.
    pub fn grant_pending(
        ctx: &EntryContext,
        actor: &Actor,
        subject: &Pseudonym,
        access: &Access<'_>,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::GrantPending,
            actor.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .access(access)
        .finish()
    }

    /// `grant.denied`, with the denial code.
    pub fn grant_denied(
        ctx: &EntryContext,
        actor: &Actor,
        subject: Option<&Pseudonym>,
        access: &Access<'_>,
        code: &'static str,
    ) -> Result<Self, VaultError> {
        Draft::new(ctx, Event::GrantDenied, actor.to_json(None), Outcome::Deny)?
            .subject(subject)
            .access(access)
            .set("code", code_value(code))
            .finish()
    }

    /// `grant.approved` (by the citizen), naming what the consent covers: the grant's
    /// fields, dossier and purpose (`access`), until when (`expires_at`), and, when the
    /// citizen also kept a standing consent, its id and end (`consent_id`,
    /// `consent_expires_at`).
    pub fn grant_approved(
        ctx: &EntryContext,
        subject: &Pseudonym,
        agency: &SafeId,
        access: &Access<'_>,
        expires_at: Timestamp,
        standing: Option<(&SafeId, Timestamp)>,
    ) -> Result<Self, VaultError> {
        let mut d = Draft::new(
            ctx,
            Event::GrantApproved,
            Actor::citizen().to_json(Some(agency)),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .access(access)
        .set("expires_at", json!(expires_at.to_string()));
        if let Some((id, until)) = standing {
            d = d
                .set("consent_id", json!(id.as_str()))
                .set("consent_expires_at", json!(until.to_string()));
        }
        d.finish()
    }

    /// `grant.refused` (by the citizen).
    pub fn grant_refused(
        ctx: &EntryContext,
        subject: &Pseudonym,
        agency: &SafeId,
        access: &Access<'_>,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::GrantRefused,
            Actor::citizen().to_json(Some(agency)),
            Outcome::Deny,
        )?
        .subject(Some(subject))
        .access(access)
        .set("code", code_value("consent_refused"))
        .finish()
    }

    /// `grant.revoked`, with the reason code (`revoked_by_agency`, `consent_withdrawn`, …).
    pub fn grant_revoked(
        ctx: &EntryContext,
        actor: &Actor,
        subject: &Pseudonym,
        grant: &SafeId,
        code: &'static str,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::GrantRevoked,
            actor.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .set("grant_id", json!(grant.as_str()))
        .set("code", code_value(code))
        .finish()
    }

    /// `record.released`: written and durable before any field is decrypted.
    pub fn record_released(
        ctx: &EntryContext,
        actor: &Actor,
        subject: &Pseudonym,
        access: &Access<'_>,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::RecordReleased,
            actor.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .access(access)
        .finish()
    }

    /// `record.denied`, with the refusal code.
    pub fn record_denied(
        ctx: &EntryContext,
        actor: &Actor,
        subject: Option<&Pseudonym>,
        fields: &[FieldName],
        grant: Option<&SafeId>,
        code: &'static str,
    ) -> Result<Self, VaultError> {
        let mut d = Draft::new(ctx, Event::RecordDenied, actor.to_json(None), Outcome::Deny)?
            .subject(subject)
            .set("code", code_value(code));
        d.fields(fields);
        if let Some(g) = grant {
            d = d.set("grant_id", json!(g.as_str()));
        }
        d.finish()
    }

    /// `record.self_viewed`.
    pub fn record_self_viewed(
        ctx: &EntryContext,
        subject: &Pseudonym,
        fields: &[FieldName],
    ) -> Result<Self, VaultError> {
        let mut d = Draft::new(
            ctx,
            Event::RecordSelfViewed,
            Actor::citizen().to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject));
        d.fields(fields);
        d.finish()
    }

    /// `record.written`: the names of the fields that changed, never their values.
    pub fn record_written(
        ctx: &EntryContext,
        actor: &Actor,
        subject: &Pseudonym,
        fields: &[FieldName],
    ) -> Result<Self, VaultError> {
        let mut d = Draft::new(
            ctx,
            Event::RecordWritten,
            actor.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject));
        d.fields(fields);
        d.finish()
    }

    /// `record.erased`.
    pub fn record_erased(
        ctx: &EntryContext,
        actor: &Actor,
        subject: &Pseudonym,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::RecordErased,
            actor.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .finish()
    }

    /// `consent.withdrawn`: the standing consent (id, agency, purpose, fields) the citizen
    /// withdrew.
    pub fn consent_withdrawn(
        ctx: &EntryContext,
        subject: &Pseudonym,
        agency: &SafeId,
        purpose: &SafeId,
        consent: &SafeId,
        fields: &[FieldName],
    ) -> Result<Self, VaultError> {
        let mut d = Draft::new(
            ctx,
            Event::ConsentWithdrawn,
            Actor::citizen().to_json(Some(agency)),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .set("purpose", json!(purpose.as_str()))
        .set("consent_id", json!(consent.as_str()));
        d.fields(fields);
        d.finish()
    }

    /// `correction.requested`: the correction's id and its field (the proposed value and the
    /// note are not recorded here).
    pub fn correction_requested(
        ctx: &EntryContext,
        subject: &Pseudonym,
        case: &SafeId,
        field: &FieldName,
    ) -> Result<Self, VaultError> {
        let mut d = Draft::new(
            ctx,
            Event::CorrectionRequested,
            Actor::citizen().to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .set("case_id", json!(case.as_str()));
        d.fields(std::slice::from_ref(field));
        d.finish()
    }

    /// `correction.resolved` by the field's source-of-truth agency: `code` is `accepted` or
    /// `rejected` (the reason is not recorded here).
    pub fn correction_resolved(
        ctx: &EntryContext,
        agency: &Actor,
        subject: &Pseudonym,
        case: &SafeId,
        field: &FieldName,
        code: &'static str,
    ) -> Result<Self, VaultError> {
        let mut d = Draft::new(
            ctx,
            Event::CorrectionResolved,
            agency.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .set("case_id", json!(case.as_str()))
        .set("code", code_value(code));
        d.fields(std::slice::from_ref(field));
        d.finish()
    }

    /// `record.released` of a correction to the field's source-of-truth agency (code
    /// `correction_review`): the agency saw the citizen's id and proposed value to decide it.
    pub fn correction_shown(
        ctx: &EntryContext,
        agency: &Actor,
        subject: &Pseudonym,
        case: &SafeId,
        field: &FieldName,
    ) -> Result<Self, VaultError> {
        let mut d = Draft::new(
            ctx,
            Event::RecordReleased,
            agency.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .set("case_id", json!(case.as_str()))
        .set("code", code_value("correction_review"));
        d.fields(std::slice::from_ref(field));
        d.finish()
    }

    /// `complaint.filed`: the complaint's id and the index of the entry it is about (the text
    /// is not recorded here).
    pub fn complaint_filed(
        ctx: &EntryContext,
        subject: &Pseudonym,
        case: &SafeId,
        about_index: u64,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::ComplaintFiled,
            Actor::citizen().to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .set("case_id", json!(case.as_str()))
        .set("entry_index", json!(about_index))
        .finish()
    }

    /// `complaint.answered` by an auditor: `code` is `upheld` or `dismissed` (the answer's
    /// text is not recorded here).
    pub fn complaint_answered(
        ctx: &EntryContext,
        auditor: &Actor,
        subject: &Pseudonym,
        case: &SafeId,
        code: &'static str,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::ComplaintAnswered,
            auditor.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .set("case_id", json!(case.as_str()))
        .set("code", code_value(code))
        .finish()
    }

    /// `request.received`: a data-subject request's id and kind (`code`, e.g. `erasure`).
    pub fn request_received(
        ctx: &EntryContext,
        subject: &Pseudonym,
        case: &SafeId,
        kind: &'static str,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::RequestReceived,
            Actor::citizen().to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .set("case_id", json!(case.as_str()))
        .set("code", code_value(kind))
        .finish()
    }

    /// `request.updated`: the request's new status (`code`, e.g. `acknowledged`).
    pub fn request_updated(
        ctx: &EntryContext,
        actor: &Actor,
        subject: &Pseudonym,
        case: &SafeId,
        status: &'static str,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::RequestUpdated,
            actor.to_json(None),
            Outcome::Permit,
        )?
        .subject(Some(subject))
        .set("case_id", json!(case.as_str()))
        .set("code", code_value(status))
        .finish()
    }

    /// `breakglass.reviewed` by an auditor, with the verdict code.
    pub fn breakglass_reviewed(
        ctx: &EntryContext,
        auditor: &Actor,
        grant: &SafeId,
        outcome: Outcome,
        code: &'static str,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::BreakglassReviewed,
            auditor.to_json(None),
            outcome,
        )?
        .set("grant_id", json!(grant.as_str()))
        .set("code", code_value(code))
        .finish()
    }

    /// `audit.queried`: which kind of query (`code`), about whom if a citizen was named.
    pub fn audit_queried(
        ctx: &EntryContext,
        auditor: &Actor,
        subject: Option<&Pseudonym>,
        code: &'static str,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::AuditQueried,
            auditor.to_json(None),
            Outcome::Permit,
        )?
        .subject(subject)
        .set("code", code_value(code))
        .finish()
    }

    /// `audit.exported`: an auditor exported entries `from..to` (`range_from`, `range_to`).
    pub fn audit_exported(
        ctx: &EntryContext,
        auditor: &Actor,
        from: u64,
        to: u64,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::AuditExported,
            auditor.to_json(None),
            Outcome::Permit,
        )?
        .set("range_from", json!(from))
        .set("range_to", json!(to))
        .finish()
    }

    /// `backup.created`: a backup holding the log up to `tree_size` was written.
    pub fn backup_created(
        ctx: &EntryContext,
        actor: &Actor,
        tree_size: u64,
    ) -> Result<Self, VaultError> {
        Draft::new(
            ctx,
            Event::BackupCreated,
            actor.to_json(None),
            Outcome::Permit,
        )?
        .set("range_to", json!(tree_size))
        .finish()
    }

    /// `access.denied`: an identified caller refused (`code`) when trying `action` (a name
    /// from the API's operation vocabulary, e.g. `grant.revoke`), with the grant it named
    /// and the citizen concerned, where known.
    pub fn access_denied(
        ctx: &EntryContext,
        actor: &Actor,
        subject: Option<&Pseudonym>,
        action: &SafeId,
        grant: Option<&SafeId>,
        code: &'static str,
    ) -> Result<Self, VaultError> {
        let mut d = Draft::new(ctx, Event::AccessDenied, actor.to_json(None), Outcome::Deny)?
            .subject(subject)
            .set("action", json!(action.as_str()))
            .set("code", code_value(code));
        if let Some(g) = grant {
            d = d.set("grant_id", json!(g.as_str()));
        }
        d.finish()
    }

    /// `key.rotated`: `code` names the key (`kek`, `token`, `audit`) and its new version,
    /// e.g. `kek_v2`.
    pub fn key_rotated(
        ctx: &EntryContext,
        actor: &Actor,
        key: &'static str,
        new_version: u32,
    ) -> Result<Self, VaultError> {
        Draft::new(ctx, Event::KeyRotated, actor.to_json(None), Outcome::Permit)?
            .set("code", json!(format!("{key}_v{new_version}")))
            .finish()
    }
}

/// The fields of a stored entry that the indexes and queries need.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EntryView {
    /// Event name.
    pub event: String,
    /// RFC 3339 time.
    pub time: String,
    /// The actor object.
    pub actor: ActorView,
    /// Subject pseudonym (hex).
    pub subject: Option<String>,
    /// Purpose id.
    pub purpose: Option<String>,
}

/// The actor of a stored entry.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ActorView {
    /// Actor kind.
    pub kind: String,
    /// Actor id.
    pub id: String,
    /// Agency, if any.
    pub agency: Option<String>,
}

/// Parses an RFC 3339 `YYYY-MM-DDTHH:MM:SS.mmmZ` time into a timestamp.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 24 || b[10] != b'T' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let (y, mo, d) = crate::policy::parse_date(s.get(..10)?)?;
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (h, mi, se, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let days = crate::clock::days_from_civil(i64::from(y), mo, d);
    Some(Timestamp::from_millis(
        ((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms,
    ))
}

#[cfg(test)]
mod tests;
