//! The auditors' oversight (SPEC §2 "Auditor"): the break-glass review queue with its due
//! times and the releases made under each grant, the review with its note (the citizen is
//! told), the complaints queue with the entry each concerns, and the data-subject requests
//! by open, overdue or closed. Every listing is audited as `audit.queried` before it runs;
//! every action is audited by the use case that does it.

use serde_json::Value;

use super::Vault;
use crate::audit::{Actor, AuditEntry, AuditQuery, Event, SafeId};
use crate::case::{BreakGlassReview, CaseKind, Complaint, DataRequest};
use crate::clock::Timestamp;
use crate::error::VaultError;
use crate::grant::Grant;
use crate::id::BlindId;
use crate::store::{CaseRow, VaultStore};

/// A break-glass grant as the review queue shows it.
#[derive(Debug, Clone)]
pub struct BreakGlassItem {
    /// The grant.
    pub grant: Grant,
    /// When its review is due.
    pub review_due: Timestamp,
    /// The `record.released` entries made under it.
    pub releases: Vec<u64>,
    /// The review, once made (its note when the citizen is still held).
    pub review: Option<BreakGlassReview>,
}

/// Which data-subject requests an officer lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFilter {
    /// Not yet completed or refused.
    Open,
    /// Open and past a deadline.
    Overdue,
    /// Completed or refused.
    Closed,
}

fn review_id(grant_id: &str) -> String {
    format!("{}{grant_id}", CaseKind::Review.id_prefix())
}

fn blind_of(g: &Grant) -> Option<BlindId> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(&g.citizen, &mut b).ok()?;
    Some(BlindId::from_bytes(b))
}

impl<S: VaultStore> Vault<S> {
    /// Appends the `audit.queried` entry of an auditor's listing (`what`) and waits for it.
    fn audit_listing(
        &self,
        auditor: &SafeId,
        what: &'static str,
        now: Timestamp,
    ) -> Result<(), VaultError> {
        let entry = AuditEntry::audit_queried(
            &self.entry_context(now),
            &Actor::auditor(auditor.clone()),
            None,
            what,
        )?;
        self.audit.append(vec![entry]).map(|_| ())
    }

    /// The break-glass grants, unreviewed (`reviewed = false`) or reviewed, oldest first,
    /// each with its due time (`review_hours` after it was issued) and its releases.
    pub fn break_glass_list(
        &self,
        auditor: &SafeId,
        reviewed: bool,
        review_hours: u32,
        now: Timestamp,
    ) -> Result<Vec<BreakGlassItem>, VaultError> {
        self.audit_listing(auditor, "break_glass", now)?;
        let mut out = Vec::new();
        for g in self.break_glass_queue(!reviewed)? {
            if g.review.is_some() != reviewed {
                continue;
            }
            let blind = blind_of(&g);
            let record = match &blind {
                Some(b) => self.store.citizen(b)?,
                None => None,
            };
            let releases = match (&blind, &record) {
                (Some(b), Some(r)) => self.releases_of(&g.id, b, r)?,
                _ => Vec::new(),
            };
            let review = match (&blind, &record, reviewed) {
                (Some(b), Some(r), true) => {
                    match self.store.case(CaseKind::Review, &review_id(&g.id))? {
                        Some(row) => Some(self.open_body(&self.case_sealer(b, r)?, &row)?),
                        None => None,
                    }
                }
                _ => None,
            };
            out.push(BreakGlassItem {
                review_due: g.created.plus_secs(i64::from(review_hours) * 3_600),
                releases,
                review,
                grant: g,
            });
        }
        Ok(out)
    }

    /// The `record.released` entries of one grant (found through its citizen's entries).
    fn releases_of(
        &self,
        grant_id: &str,
        blind: &BlindId,
        record: &crate::store::SealedRecord,
    ) -> Result<Vec<u64>, VaultError> {
        let q = AuditQuery {
            subject: Some(self.subject_of(blind, Some(record))),
            event: Some(Event::RecordReleased),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.audit.query(&q, cursor, 500, false)?;
            for &i in &page.indexes {
                let e: Value = serde_json::from_slice(&self.audit.entry(i)?)
                    .map_err(|_| VaultError::StoreCorrupt("audit entry is not JSON".into()))?;
                if e.get("grant_id").and_then(Value::as_str) == Some(grant_id) {
                    out.push(i);
                }
            }
            match page.next {
                Some(n) if !page.indexes.is_empty() => cursor = Some(n),
                _ => break,
            }
        }
        Ok(out)
    }

    /// An auditor reviews a break-glass grant: justified or not, with a note (1-2,000
    /// characters). `breakglass.reviewed` is durable first; the note is sealed under the
    /// citizen's key; the citizen is told the outcome (notifications). A grant reviewed
    /// already is refused (`grant_not_pending`).
    pub fn review_break_glass_with_note(
        &self,
        auditor: &SafeId,
        grant_id: &str,
        justified: bool,
        note: &str,
        now: Timestamp,
    ) -> Result<Grant, VaultError> {
        (|| {
            let note = crate::case::checked_text(note, 1)?;
            let _order = self.grant_order.lock(grant_id)?;
            let g = self.review_break_glass(auditor, grant_id, justified, now)?;
            if let Some(b) = blind_of(&g)
                && let Some(r) = self.store.citizen(&b)?
            {
                let review = BreakGlassReview {
                    grant_id: g.id.to_string(),
                    justified,
                    note,
                    reviewed_at: now,
                    auditor: auditor.as_str().to_owned(),
                };
                let row = CaseRow {
                    open: false,
                    ..self.new_row(CaseKind::Review, review_id(&g.id), b, now, "")
                };
                // Its entry (`breakglass.reviewed`) is durable already.
                self.put_body(&self.case_sealer(&b, &r)?, row, &review, Vec::new())?;
            }
            Ok(g)
        })()
        .or_else(|e| {
            let attempt = super::Attempt {
                action: "breakglass.review",
                grant: Some(grant_id),
                citizen: None,
            };
            self.refused(super::Caller::Auditor(auditor), attempt, e, now)
        })
    }

    /// Every case of `kind` with its citizen's sealer, opened (cases of erased citizens
    /// are gone with them).
    fn all_cases<T: serde::de::DeserializeOwned>(
        &self,
        kind: CaseKind,
        open_only: bool,
    ) -> Result<Vec<(CaseRow, T)>, VaultError> {
        let rows = if open_only {
            self.store.open_cases(kind)?
        } else {
            self.store.cases_of_kind(kind)?
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(record) = self.store.citizen(&row.citizen)? else {
                continue;
            };
            let body = self.open_body(&self.case_sealer(&row.citizen, &record)?, &row)?;
            out.push((row, body));
        }
        out.sort_by_key(|(row, _)| row.created);
        Ok(out)
    }

    /// The complaints, open or answered, oldest first, each with the entry it concerns.
    pub fn complaints_list(
        &self,
        auditor: &SafeId,
        answered: bool,
        now: Timestamp,
    ) -> Result<Vec<(Complaint, Vec<u8>)>, VaultError> {
        self.audit_listing(auditor, "complaints", now)?;
        let mut out = Vec::new();
        for (_, c) in self.all_cases::<Complaint>(CaseKind::Complaint, !answered)? {
            if c.answer.is_some() == answered {
                let entry = self.audit.entry(c.audit_index)?;
                out.push((c, entry));
            }
        }
        Ok(out)
    }

    /// The data-subject requests an officer asked for, oldest first.
    pub fn requests_list(
        &self,
        auditor: &SafeId,
        filter: RequestFilter,
        now: Timestamp,
    ) -> Result<Vec<DataRequest>, VaultError> {
        self.audit_listing(auditor, "requests", now)?;
        let open_only = filter != RequestFilter::Closed;
        Ok(self
            .all_cases::<DataRequest>(CaseKind::Request, open_only)?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| match filter {
                RequestFilter::Open => !r.status().is_closed(),
                RequestFilter::Overdue => r.overdue(now),
                RequestFilter::Closed => r.status().is_closed(),
            })
            .collect())
    }
}

impl<S: VaultStore> Vault<S> {
    /// Starts an auditor's export of entries `from..to` (`to` defaults to the log's size):
    /// checks the range and appends `audit.exported` before any entry is read. Returns the
    /// range to stream (with `AuditLog::entries`).
    pub fn begin_export(
        &self,
        auditor: &SafeId,
        from: u64,
        to: Option<u64>,
        now: Timestamp,
    ) -> Result<(u64, u64), VaultError> {
        let size = self.audit.size();
        let to = to.unwrap_or(size);
        if from > to || to > size {
            return self.refused(
                super::Caller::Auditor(auditor),
                super::Attempt::new("audit.export"),
                VaultError::Denied(crate::error::Denial::InvalidRequest),
                now,
            );
        }
        let entry = AuditEntry::audit_exported(
            &self.entry_context(now),
            &Actor::auditor(auditor.clone()),
            from,
            to,
        )?;
        self.audit.append(vec![entry])?;
        Ok((from, to))
    }
}
