//! The citizen's cases as use cases (SPEC §2 "Citizen", corrections in "Agency"): complaints
//! about an access, corrections with their disputed mark, data-subject requests with their
//! legal deadlines, and the notifications a citizen sees. Each change is audited (its entry
//! durable) before it is stored; entries name the case and never its text or a value. Bodies
//! are sealed under the citizen's DEK, so an erasure shreds them with the record.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use zeroize::Zeroizing;

use super::Vault;
use super::refusal::{Attempt, Caller};
use crate::audit::{Actor, AuditEntry, Pseudonym, SafeId};
use crate::case::{
    self, CaseKind, Complaint, ComplaintAnswer, ComplaintOutcome, Correction, CorrectionOutcome,
    DataRequest, RequestKind, RequestStatus, RequestUpdate, Resolution,
};
use crate::clock::Timestamp;
use crate::crypto::FieldSealer;
use crate::error::{Denial, VaultError};
use crate::grant::GrantStatus;
use crate::id::{BlindId, CitizenId, FieldName};
use crate::store::{CaseRow, SealedRecord, VaultStore, Write};

/// Something the citizen should know about, newest first in `my_notifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: NotificationKind,
}

/// What a notification is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationKind {
    /// A grant waits for the citizen's consent.
    ConsentWaiting {
        /// The pending grant.
        grant_id: String,
        /// The requesting agency.
        agency: String,
        /// The purpose id.
        purpose: String,
    },
    /// An emergency (break-glass) access to the citizen's data was granted.
    BreakGlassAccess {
        /// The break-glass grant.
        grant_id: String,
        /// The agency.
        agency: String,
        /// The purpose id.
        purpose: String,
    },
    /// An auditor reviewed an emergency access.
    BreakGlassReviewed {
        /// The break-glass grant.
        grant_id: String,
        /// `justified` or `unjustified`.
        outcome: String,
    },
    /// An auditor answered a complaint.
    ComplaintAnswered {
        /// The complaint.
        id: String,
        /// `upheld` or `dismissed`.
        outcome: String,
    },
    /// The source-of-truth agency decided a correction.
    CorrectionResolved {
        /// The correction.
        id: String,
        /// The field.
        field: String,
        /// `accepted` or `rejected`.
        outcome: String,
    },
    /// A data-subject request changed status.
    RequestStatus {
        /// The request.
        id: String,
        /// Its new status.
        status: String,
    },
}

/// A correction as its source-of-truth agency sees it in its queue.
#[derive(Debug, Clone)]
pub struct QueuedCorrection {
    /// The correction.
    pub correction: Correction,
    /// Open, accepted or rejected.
    pub status: &'static str,
}

fn kind_name(kind: CaseKind) -> &'static str {
    match kind {
        CaseKind::Complaint => "complaint",
        CaseKind::Correction => "correction",
        CaseKind::Request => "request",
        CaseKind::Review => "review",
    }
}

impl<S: VaultStore> Vault<S> {
    pub(super) fn case_sealer(
        &self,
        blind: &BlindId,
        record: &SealedRecord,
    ) -> Result<FieldSealer, VaultError> {
        let dek = self
            .keyring()
            .unwrap_dek(blind, record.dek_version, &record.wrapped_dek)?;
        Ok(FieldSealer::new(&dek, *blind, record.dek_version))
    }

    pub(super) fn seal_body<T: Serialize>(
        &self,
        sealer: &FieldSealer,
        kind: CaseKind,
        id: &str,
        body: &T,
    ) -> Result<Vec<u8>, VaultError> {
        let bytes = Zeroizing::new(
            serde_json::to_vec(body)
                .map_err(|_| VaultError::StoreCorrupt("case body not encodable".into()))?,
        );
        sealer.seal_case(kind_name(kind), id, &bytes)
    }

    pub(super) fn open_body<T: DeserializeOwned>(
        &self,
        sealer: &FieldSealer,
        row: &CaseRow,
    ) -> Result<T, VaultError> {
        let pt = sealer.open_case(kind_name(row.kind), &row.id, &row.body)?;
        serde_json::from_slice(pt.expose())
            .map_err(|_| VaultError::StoreCorrupt("case body unreadable".into()))
    }

    /// The stored record of a citizen who files something: they must be held by the vault.
    fn filer(&self, citizen: &CitizenId) -> Result<(BlindId, SealedRecord, Pseudonym), VaultError> {
        let blind = self.keyring().blind(citizen);
        let record = self
            .store
            .citizen(&blind)?
            .ok_or(VaultError::CitizenNotFound)?;
        let subject = self.pseudonym(&record);
        Ok((blind, record, subject))
    }

    /// Every case of one kind of a citizen, opened, oldest first.
    pub(super) fn my_cases<T: DeserializeOwned>(
        &self,
        citizen: &CitizenId,
        kind: CaseKind,
    ) -> Result<Vec<(CaseRow, T)>, VaultError> {
        let blind = self.keyring().blind(citizen);
        let Some(record) = self.store.citizen(&blind)? else {
            return Ok(Vec::new());
        };
        let sealer = self.case_sealer(&blind, &record)?;
        let mut out = self
            .store
            .cases_of_citizen(&blind, kind)?
            .into_iter()
            .map(|row| {
                let body = self.open_body(&sealer, &row)?;
                Ok((row, body))
            })
            .collect::<Result<Vec<_>, VaultError>>()?;
        out.sort_by_key(|(row, _)| row.created);
        Ok(out)
    }

    /// A case by id with its citizen's record, sealer and pseudonym.
    pub(super) fn case_of(
        &self,
        kind: CaseKind,
        id: &str,
    ) -> Result<(CaseRow, SealedRecord, FieldSealer, Pseudonym), VaultError> {
        let row = self.store.case(kind, id)?.ok_or(VaultError::CaseNotFound)?;
        let record = self
            .store
            .citizen(&row.citizen)?
            .ok_or(VaultError::CaseNotFound)?;
        let sealer = self.case_sealer(&row.citizen, &record)?;
        let subject = self.pseudonym(&record);
        Ok((row, record, sealer, subject))
    }

    /// Seals and stores a case with the entries that record it (one transaction where the
    /// store shares the log's database; elsewhere the entries are durable first), and waits
    /// until the entries are durable.
    pub(super) fn put_body<T: Serialize>(
        &self,
        sealer: &FieldSealer,
        row: CaseRow,
        body: &T,
        entries: Vec<AuditEntry>,
    ) -> Result<(), VaultError> {
        let body = self.seal_body(sealer, row.kind, &row.id, body)?;
        let row = CaseRow { body, ..row };
        self.store
            .write_audited(&[Write::Case(&row)], entries, &*self.audit)?
            .wait()?;
        Ok(())
    }

    // ---- complaints ------------------------------------------------------------------------

    /// The citizen complains about one entry of their own history (`audit_index`), with a
    /// text of 1–2,000 characters. `complaint.filed` (the complaint's id and the entry's
    /// index, never the text) is durable before the sealed complaint is stored. An entry
    /// that is not theirs answers like a missing one (`audit_not_found`); every refusal is
    /// audited.
    pub fn file_complaint(
        &self,
        citizen: &CitizenId,
        audit_index: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<Complaint, VaultError> {
        (|| {
            let text = case::checked_text(text, 1)?;
            let (blind, record, subject) = self.filer(citizen)?;
            if !self.is_own_entry(&subject, audit_index)? {
                return Err(VaultError::AuditNotFound);
            }
            let id = case::new_case_id(CaseKind::Complaint)?;
            let entry = AuditEntry::complaint_filed(
                &self.entry_context(now),
                &subject,
                &SafeId::parse(&id)?,
                audit_index,
            )?;
            let complaint = Complaint {
                id: id.clone(),
                audit_index,
                text,
                filed_at: now,
                answer: None,
            };
            let sealer = self.case_sealer(&blind, &record)?;
            self.put_body(
                &sealer,
                self.new_row(CaseKind::Complaint, id, blind, now, ""),
                &complaint,
                vec![entry],
            )?;
            Ok(complaint)
        })()
        .or_else(|e| {
            self.refused(
                Caller::Citizen(citizen),
                Attempt::new("complaint.file"),
                e,
                now,
            )
        })
    }

    pub(super) fn new_row(
        &self,
        kind: CaseKind,
        id: String,
        citizen: BlindId,
        now: Timestamp,
        topic: &str,
    ) -> CaseRow {
        CaseRow {
            kind,
            id,
            citizen,
            open: true,
            created: now,
            topic: topic.to_owned(),
            body: Vec::new(),
        }
    }

    /// Whether the entry at `index` is about the citizen with this pseudonym.
    pub(super) fn is_own_entry(&self, subject: &Pseudonym, index: u64) -> Result<bool, VaultError> {
        let entry = match self.audit.entry(index) {
            Ok(e) => e,
            Err(VaultError::AuditNotFound) => return Ok(false),
            Err(e) => return Err(e),
        };
        let own = serde_json::from_slice::<Value>(&entry)
            .ok()
            .and_then(|v| v.get("subject").and_then(Value::as_str).map(str::to_owned))
            .is_some_and(|s| crate::crypto::ct_eq(s.as_bytes(), subject.to_string().as_bytes()));
        Ok(own)
    }

    /// The citizen's complaints, oldest first.
    pub fn my_complaints(&self, citizen: &CitizenId) -> Result<Vec<Complaint>, VaultError> {
        Ok(self
            .my_cases(citizen, CaseKind::Complaint)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    /// The open complaints (an auditor's queue), oldest first.
    pub fn open_complaints(&self) -> Result<Vec<Complaint>, VaultError> {
        let mut out = Vec::new();
        for row in self.store.open_cases(CaseKind::Complaint)? {
            let Some(record) = self.store.citizen(&row.citizen)? else {
                continue;
            };
            let sealer = self.case_sealer(&row.citizen, &record)?;
            out.push(self.open_body::<Complaint>(&sealer, &row)?);
        }
        out.sort_by_key(|c| c.filed_at);
        Ok(out)
    }

    /// An auditor answers an open complaint: `complaint.answered` (its id and the outcome,
    /// never the text) is durable before the answer is stored; the citizen sees it at once.
    pub fn answer_complaint(
        &self,
        auditor: &SafeId,
        id: &str,
        outcome: ComplaintOutcome,
        text: &str,
        now: Timestamp,
    ) -> Result<Complaint, VaultError> {
        (|| {
            let text = case::checked_text(text, 1)?;
            let _order = self.case_order.lock(id)?;
            let (row, _, sealer, subject) = self.case_of(CaseKind::Complaint, id)?;
            let mut complaint: Complaint = self.open_body(&sealer, &row)?;
            if complaint.answer.is_some() {
                return Err(VaultError::CaseClosed);
            }
            let entry = AuditEntry::complaint_answered(
                &self.entry_context(now),
                &Actor::auditor(auditor.clone()),
                &subject,
                &SafeId::parse(id)?,
                outcome.as_str(),
            )?;
            complaint.answer = Some(ComplaintAnswer {
                outcome,
                text,
                answered_at: now,
                auditor: auditor.as_str().to_owned(),
            });
            self.put_body(
                &sealer,
                CaseRow { open: false, ..row },
                &complaint,
                vec![entry],
            )?;
            Ok(complaint)
        })()
        .or_else(|e| {
            let attempt = Attempt::new("complaint.answer");
            self.refused(Caller::Auditor(auditor), attempt, e, now)
        })
    }

    // ---- corrections -----------------------------------------------------------------------

    /// The citizen proposes a new value for one field of their record, with a note. The field
    /// must have a source-of-truth agency (`no_source_of_truth`) and no open correction of
    /// theirs (`correction_open`); the value must fit the catalog. `correction.requested`
    /// (the id and the field name) is durable before the sealed correction is stored; from
    /// then on the field is disputed for every reader until the agency resolves it.
    pub fn file_correction(
        &self,
        citizen: &CitizenId,
        field: &str,
        proposed_value: Value,
        note: &str,
        now: Timestamp,
    ) -> Result<Correction, VaultError> {
        (|| {
            let note = case::checked_text(note, 0)?;
            let mut one = serde_json::Map::new();
            one.insert(field.to_owned(), proposed_value);
            let (name, value) = self
                .policy()
                .validate_fields(one)?
                .pop()
                .ok_or(VaultError::Denied(Denial::InvalidRequest))?;
            if self
                .policy()
                .field(name.as_str())
                .and_then(|f| f.source.as_ref())
                .is_none()
            {
                return Err(VaultError::NoSourceOfTruth);
            }
            let (blind, record, subject) = self.filer(citizen)?;
            let _order = self.case_order.lock(&blind.to_string())?;
            if self.disputed_of(&blind)?.iter().any(|f| f == name.as_str()) {
                return Err(VaultError::CorrectionOpen);
            }
            let id = case::new_case_id(CaseKind::Correction)?;
            let entry = AuditEntry::correction_requested(
                &self.entry_context(now),
                &subject,
                &SafeId::parse(&id)?,
                &name,
            )?;
            let correction = Correction {
                id: id.clone(),
                citizen_id: citizen.expose().to_owned(),
                field: name.as_str().to_owned(),
                proposed_value: value,
                note,
                filed_at: now,
                resolution: None,
            };
            let sealer = self.case_sealer(&blind, &record)?;
            let row = self.new_row(CaseKind::Correction, id, blind, now, name.as_str());
            self.put_body(&sealer, row, &correction, vec![entry])?;
            Ok(correction)
        })()
        .or_else(|e| {
            self.refused(
                Caller::Citizen(citizen),
                Attempt::new("correction.file"),
                e,
                now,
            )
        })
    }

    /// The citizen's corrections, oldest first.
    pub fn my_corrections(&self, citizen: &CitizenId) -> Result<Vec<Correction>, VaultError> {
        Ok(self
            .my_cases(citizen, CaseKind::Correction)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    /// The fields of a citizen with an open correction (disputed), in name order.
    pub(super) fn disputed_of(&self, blind: &BlindId) -> Result<Vec<String>, VaultError> {
        let mut fields: Vec<String> = self
            .store
            .cases_of_citizen(blind, CaseKind::Correction)?
            .into_iter()
            .filter(|r| r.open)
            .map(|r| r.topic)
            .collect();
        fields.sort();
        fields.dedup();
        Ok(fields)
    }

    /// The open corrections of the fields `agency` is the source of truth for, oldest first.
    /// The agency sees each citizen's id and proposed value: each correction shown is audited
    /// first, as a `record.released` to that agency (code `correction_review`), in the
    /// citizen's history.
    pub fn corrections_for(
        &self,
        agency: &str,
        now: Timestamp,
    ) -> Result<Vec<QueuedCorrection>, VaultError> {
        let agency_id = SafeId::parse(agency)?;
        let mine = |field: &str| {
            self.policy()
                .field(field)
                .and_then(|f| f.source.as_deref())
                .is_some_and(|s| s == agency)
        };
        let ctx = self.entry_context(now);
        let actor = Actor::agency(agency_id);
        let mut shown = Vec::new();
        let mut entries = Vec::new();
        for row in self.store.open_cases(CaseKind::Correction)? {
            if !mine(&row.topic) {
                continue;
            }
            let Some(record) = self.store.citizen(&row.citizen)? else {
                continue;
            };
            let sealer = self.case_sealer(&row.citizen, &record)?;
            let correction: Correction = self.open_body(&sealer, &row)?;
            let field = FieldName::parse(&correction.field)
                .ok_or_else(|| VaultError::StoreCorrupt("bad correction field".into()))?;
            entries.push(AuditEntry::correction_shown(
                &ctx,
                &actor,
                &self.pseudonym(&record),
                &SafeId::parse(&correction.id)?,
                &field,
            )?);
            shown.push(QueuedCorrection {
                status: correction.status(),
                correction,
            });
        }
        if !entries.is_empty() {
            self.audit.append(entries)?;
        }
        shown.sort_by_key(|c| c.correction.filed_at);
        Ok(shown)
    }

    /// The source-of-truth agency decides a correction. `accepted` writes the proposed value
    /// as that agency (`record.written`) and ends the dispute; `rejected` ends it with the
    /// reason, which the citizen sees. `correction.resolved` is durable before the decision
    /// is stored. Another agency's correction answers like a missing one (`case_not_found`).
    pub fn resolve_correction(
        &self,
        agency: &str,
        id: &str,
        outcome: CorrectionOutcome,
        reason: &str,
        now: Timestamp,
    ) -> Result<Correction, VaultError> {
        (|| {
            // A rejection tells the citizen why.
            let min = usize::from(outcome == CorrectionOutcome::Rejected);
            let reason = case::checked_text(reason, min)?;
            let agency_id = SafeId::parse(agency)?;
            let _order = self.case_order.lock(id)?;
            let (row, _, sealer, subject) = self.case_of(CaseKind::Correction, id)?;
            let policy = self.policy();
            let source = policy.field(&row.topic).and_then(|f| f.source.as_deref());
            if source != Some(agency) {
                return Err(VaultError::CaseNotFound);
            }
            let mut correction: Correction = self.open_body(&sealer, &row)?;
            if correction.resolution.is_some() {
                return Err(VaultError::CaseClosed);
            }
            let field = FieldName::parse(&correction.field)
                .ok_or_else(|| VaultError::StoreCorrupt("bad correction field".into()))?;
            let actor = Actor::agency(agency_id);
            if outcome == CorrectionOutcome::Accepted {
                let citizen = CitizenId::parse(&correction.citizen_id)?;
                let mut one = serde_json::Map::new();
                one.insert(correction.field.clone(), correction.proposed_value.clone());
                let write = self.validate_write(citizen, one)?;
                self.write_records(&[write], &actor, now)?;
                self.flush()?;
            }
            let entry = AuditEntry::correction_resolved(
                &self.entry_context(now),
                &actor,
                &subject,
                &SafeId::parse(id)?,
                &field,
                outcome.as_str(),
            )?;
            correction.resolution = Some(Resolution {
                outcome,
                reason,
                resolved_at: now,
                agency: agency.to_owned(),
            });
            self.put_body(
                &sealer,
                CaseRow { open: false, ..row },
                &correction,
                vec![entry],
            )?;
            Ok(correction)
        })()
        .or_else(|e| {
            let attempt = Attempt {
                action: "correction.resolve",
                grant: None,
                citizen: None,
            };
            self.refused(Caller::Agency(agency), attempt, e, now)
        })
    }

    // ---- data-subject requests ---------------------------------------------------------------

    /// The citizen makes a data-subject request. Its deadlines come from the working-day
    /// calendar (acknowledge within 2 working days, complete within 15 days);
    /// `request.received` (the id and the kind) is durable before it is stored.
    pub fn file_request(
        &self,
        citizen: &CitizenId,
        kind: RequestKind,
        note: &str,
        now: Timestamp,
    ) -> Result<DataRequest, VaultError> {
        (|| {
            let note = case::checked_text(note, 0)?;
            let policy = self.policy();
            let calendar = policy.calendar().ok_or(VaultError::CalendarGap(0))?;
            let (blind, record, subject) = self.filer(citizen)?;
            let id = case::new_case_id(CaseKind::Request)?;
            let request = DataRequest::new(id.clone(), kind, note, now, calendar)?;
            let entry = AuditEntry::request_received(
                &self.entry_context(now),
                &subject,
                &SafeId::parse(&id)?,
                kind.as_str(),
            )?;
            let sealer = self.case_sealer(&blind, &record)?;
            self.put_body(
                &sealer,
                self.new_row(CaseKind::Request, id, blind, now, ""),
                &request,
                vec![entry],
            )?;
            Ok(request)
        })()
        .or_else(|e| {
            self.refused(
                Caller::Citizen(citizen),
                Attempt::new("request.file"),
                e,
                now,
            )
        })
    }

    /// The citizen's requests, oldest first.
    pub fn my_requests(&self, citizen: &CitizenId) -> Result<Vec<DataRequest>, VaultError> {
        Ok(self
            .my_cases(citizen, CaseKind::Request)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Every request still open (an officer's queue), oldest first.
    pub fn open_requests(&self) -> Result<Vec<DataRequest>, VaultError> {
        let mut out = Vec::new();
        for row in self.store.open_cases(CaseKind::Request)? {
            let Some(record) = self.store.citizen(&row.citizen)? else {
                continue;
            };
            let sealer = self.case_sealer(&row.citizen, &record)?;
            out.push(self.open_body::<DataRequest>(&sealer, &row)?);
        }
        out.sort_by_key(|r| r.received_at);
        Ok(out)
    }

    /// An officer moves a request on (acknowledged, extended once, completed, refused);
    /// `request.updated` (the id and the new status) is durable before it is stored.
    /// Completing an erasure request erases the citizen (`record.erased`).
    pub fn update_request(
        &self,
        auditor: &SafeId,
        id: &str,
        update: &RequestUpdate,
        now: Timestamp,
    ) -> Result<DataRequest, VaultError> {
        (|| {
            let update = RequestUpdate {
                note: case::checked_text(&update.note, 0)?,
                ..update.clone()
            };
            let policy = self.policy();
            let calendar = policy.calendar().ok_or(VaultError::CalendarGap(0))?;
            let _order = self.case_order.lock(id)?;
            let (row, _, sealer, subject) = self.case_of(CaseKind::Request, id)?;
            let mut request: DataRequest = self.open_body(&sealer, &row)?;
            request.apply(&update, now, calendar)?;
            let entry = AuditEntry::request_updated(
                &self.entry_context(now),
                &Actor::auditor(auditor.clone()),
                &subject,
                &SafeId::parse(id)?,
                update.status.as_str(),
            )?;
            // A completed erasure request erases the citizen, as `vaultctl erase` does (its
            // cases, this request included, go with the record). Nothing is stored before:
            // an erasure that fails leaves the request open, to be completed again.
            if request.kind == RequestKind::Erasure && update.status == RequestStatus::Completed {
                self.audit.append(vec![entry])?;
                self.erase_blind(&row.citizen, &Actor::auditor(auditor.clone()), now)?;
                return Ok(request);
            }
            let open = !request.status().is_closed();
            self.put_body(&sealer, CaseRow { open, ..row }, &request, vec![entry])?;
            Ok(request)
        })()
        .or_else(|e| {
            self.refused(
                Caller::Auditor(auditor),
                Attempt::new("request.update"),
                e,
                now,
            )
        })
    }

    // ---- notifications ---------------------------------------------------------------------

    /// What the citizen should know about, newest first: consent requests waiting now,
    /// emergency accesses and their reviews, answered complaints, resolved corrections and
    /// every change of a request's status. Derived from the grants and cases themselves, so
    /// a notification exists exactly when its event does.
    pub fn my_notifications(
        &self,
        citizen: &CitizenId,
        now: Timestamp,
    ) -> Result<Vec<Notification>, VaultError> {
        let blind = self.keyring().blind(citizen);
        let mut out = Vec::new();
        for g in self.store.grants_of_citizen(&blind)? {
            if g.status_at(now) == GrantStatus::PendingConsent {
                out.push(Notification {
                    at: g.created,
                    kind: NotificationKind::ConsentWaiting {
                        grant_id: g.id.to_string(),
                        agency: g.agency.to_string(),
                        purpose: g.purpose.to_string(),
                    },
                });
            }
            if g.break_glass {
                out.push(Notification {
                    at: g.created,
                    kind: NotificationKind::BreakGlassAccess {
                        grant_id: g.id.to_string(),
                        agency: g.agency.to_string(),
                        purpose: g.purpose.to_string(),
                    },
                });
                if let Some(review) = &g.review {
                    out.push(Notification {
                        at: g.reviewed_at.unwrap_or(g.created),
                        kind: NotificationKind::BreakGlassReviewed {
                            grant_id: g.id.to_string(),
                            outcome: review.clone(),
                        },
                    });
                }
            }
        }
        for (_, c) in self.my_cases::<Complaint>(citizen, CaseKind::Complaint)? {
            if let Some(a) = c.answer {
                out.push(Notification {
                    at: a.answered_at,
                    kind: NotificationKind::ComplaintAnswered {
                        id: c.id,
                        outcome: a.outcome.as_str().to_owned(),
                    },
                });
            }
        }
        for (_, c) in self.my_cases::<Correction>(citizen, CaseKind::Correction)? {
            if let Some(r) = &c.resolution {
                out.push(Notification {
                    at: r.resolved_at,
                    kind: NotificationKind::CorrectionResolved {
                        id: c.id.clone(),
                        field: c.field.clone(),
                        outcome: r.outcome.as_str().to_owned(),
                    },
                });
            }
        }
        for (_, r) in self.my_cases::<DataRequest>(citizen, CaseKind::Request)? {
            for change in r.history.iter().skip(1) {
                out.push(Notification {
                    at: change.at,
                    kind: NotificationKind::RequestStatus {
                        id: r.id.clone(),
                        status: change.status.as_str().to_owned(),
                    },
                });
            }
        }
        out.sort_by_key(|n| std::cmp::Reverse(n.at));
        Ok(out)
    }
}

/// Whether a request's status is one an officer may set.
pub fn settable_status(s: &str) -> Option<RequestStatus> {
    RequestStatus::parse(s).filter(|s| *s != RequestStatus::Received)
}
