//! Citizens' cases: complaints about one access, corrections of one field, and data-subject
//! requests (Law 91/2025/QH15, Decree 356/2025/NĐ-CP) with their legal deadlines. The rules
//! of each case's life (what may be filed, which status may follow which, when a request is
//! due) live here, pure; the vault seals each case under its citizen's key and audits every
//! change (`vault/cases.rs`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Timestamp;
use crate::error::{Denial, VaultError};
use crate::policy::calendar::Calendar;

/// Longest complaint, note or answer text, in characters.
pub const MAX_TEXT_CHARS: usize = 2_000;

/// Working days within which a request is acknowledged.
pub const ACKNOWLEDGE_WORKING_DAYS: u32 = 2;
/// Days within which a request is completed.
pub const COMPLETE_DAYS: u32 = 15;
/// Days within which a request is completed when another processor is involved.
pub const COMPLETE_DAYS_WITH_PROCESSOR: u32 = 20;
/// The one extension a request may get, at most, in days.
pub const MAX_EXTENSION_DAYS: u32 = 15;

/// The kinds of case, as the store files them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaseKind {
    /// A complaint about one entry of the citizen's history.
    Complaint,
    /// A correction of one field of the citizen's record.
    Correction,
    /// A data-subject request.
    Request,
    /// An auditor's review of a break-glass grant (its note).
    Review,
}

impl CaseKind {
    /// Every kind.
    pub const ALL: [CaseKind; 4] = [
        Self::Complaint,
        Self::Correction,
        Self::Request,
        Self::Review,
    ];

    /// The prefix of this kind's ids.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Self::Complaint => "kn-",
            Self::Correction => "dc-",
            Self::Request => "yc-",
            Self::Review => "rv-",
        }
    }

    /// The kind whose ids start like `id`.
    pub fn of_id(id: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| id.starts_with(k.id_prefix()))
    }
}

/// An auditor's review of a break-glass grant, with its note. Sealed at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassReview {
    /// The grant reviewed.
    pub grant_id: String,
    /// Whether the emergency access was justified.
    pub justified: bool,
    /// The auditor's note.
    pub note: String,
    /// When.
    pub reviewed_at: Timestamp,
    /// Who.
    pub auditor: String,
}

/// A fresh case id: the kind's prefix and 32 letters (128 random bits).
pub fn new_case_id(kind: CaseKind) -> Result<String, VaultError> {
    crate::grant::random_letters_id(kind.id_prefix())
}

/// Whether `id` has the shape of a case id of `kind` (what may be recorded of an id a caller
/// named).
pub fn is_case_id_shaped(kind: CaseKind, id: &str) -> bool {
    id.strip_prefix(kind.id_prefix())
        .is_some_and(|r| r.len() == 32 && r.bytes().all(|b| b"abcdefghjkmnpqrs".contains(&b)))
}

/// Checks a citizen's or an official's text: at least `min` and at most `MAX_TEXT_CHARS`
/// characters, no control characters but line breaks and tabs. Returns it trimmed.
pub fn checked_text(text: &str, min: usize) -> Result<String, VaultError> {
    let text = text.trim();
    let n = text.chars().count();
    let clean = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    if n < min || n > MAX_TEXT_CHARS || !clean {
        return Err(VaultError::Denied(Denial::InvalidRequest));
    }
    Ok(text.to_owned())
}

/// A complaint about one access. Sealed at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Complaint {
    /// Id (`kn-` and 32 letters).
    pub id: String,
    /// The entry of the citizen's history it is about.
    pub audit_index: u64,
    /// The citizen's text.
    pub text: String,
    /// When it was filed.
    pub filed_at: Timestamp,
    /// The auditor's answer, once given.
    pub answer: Option<ComplaintAnswer>,
}

/// An auditor's answer to a complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplaintAnswer {
    /// Upheld or dismissed.
    pub outcome: ComplaintOutcome,
    /// The answer's text.
    pub text: String,
    /// When it was given.
    pub answered_at: Timestamp,
    /// The auditor who gave it.
    pub auditor: String,
}

/// What an auditor found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComplaintOutcome {
    /// The complaint is founded.
    Upheld,
    /// The complaint is not founded.
    Dismissed,
}

impl ComplaintOutcome {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upheld => "upheld",
            Self::Dismissed => "dismissed",
        }
    }

    /// The outcome named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Upheld, Self::Dismissed]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

impl Complaint {
    /// `open` or `answered`.
    pub fn status(&self) -> &'static str {
        if self.answer.is_some() {
            "answered"
        } else {
            "open"
        }
    }
}

/// A correction of one field, proposed by the citizen. Sealed at rest. While it is open the
/// field is disputed for every reader.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// Id (`dc-` and 32 letters).
    pub id: String,
    /// The citizen's id: the source-of-truth agency needs it to check its own register.
    pub citizen_id: String,
    /// The field.
    pub field: String,
    /// The value the citizen proposes (checked against the catalog).
    pub proposed_value: Value,
    /// The citizen's note.
    pub note: String,
    /// When it was filed.
    pub filed_at: Timestamp,
    /// The agency's decision, once made.
    pub resolution: Option<Resolution>,
}

impl std::fmt::Debug for Correction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Correction")
            .field("id", &self.id)
            .field("field", &self.field)
            .field("resolution", &self.resolution)
            .finish_non_exhaustive()
    }
}

impl Correction {
    /// `open`, `accepted` or `rejected`.
    pub fn status(&self) -> &'static str {
        match &self.resolution {
            None => "open",
            Some(r) => r.outcome.as_str(),
        }
    }
}

/// A source-of-truth agency's decision on a correction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// Accepted (the value was written) or rejected.
    pub outcome: CorrectionOutcome,
    /// The agency's reason, shown to the citizen.
    pub reason: String,
    /// When it was decided.
    pub resolved_at: Timestamp,
    /// The agency that decided.
    pub agency: String,
}

/// What the source-of-truth agency decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionOutcome {
    /// The proposed value was written.
    Accepted,
    /// The record stays as it was.
    Rejected,
}

impl CorrectionOutcome {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }

    /// The outcome named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Accepted, Self::Rejected]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// The rights a data-subject request exercises (Law 91/2025).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// To be given one's data.
    Access,
    /// To have it corrected.
    Correction,
    /// To have it erased.
    Erasure,
    /// To have its processing restricted.
    Restriction,
    /// To object to its processing.
    Objection,
    /// To withdraw consent.
    Withdrawal,
}

impl RequestKind {
    /// Every kind.
    pub const ALL: [RequestKind; 6] = [
        Self::Access,
        Self::Correction,
        Self::Erasure,
        Self::Restriction,
        Self::Objection,
        Self::Withdrawal,
    ];

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Correction => "correction",
            Self::Erasure => "erasure",
            Self::Restriction => "restriction",
            Self::Objection => "objection",
            Self::Withdrawal => "withdrawal",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a data-subject request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Filed, not yet acknowledged.
    Received,
    /// The controller confirmed it received the request.
    Acknowledged,
    /// The completion deadline was extended (once).
    Extended,
    /// Done.
    Completed,
    /// Refused, with a reason.
    Refused,
}

impl RequestStatus {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Acknowledged => "acknowledged",
            Self::Extended => "extended",
            Self::Completed => "completed",
            Self::Refused => "refused",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Received,
            Self::Acknowledged,
            Self::Extended,
            Self::Completed,
            Self::Refused,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether the request is closed.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Completed | Self::Refused)
    }
}

/// One step of a request's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestChange {
    /// The status it moved to.
    pub status: RequestStatus,
    /// When.
    pub at: Timestamp,
    /// The note given with it (the citizen's on filing, the officer's after).
    pub note: String,
}

/// A data-subject request and its deadlines. Sealed at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRequest {
    /// Id (`yc-` and 32 letters).
    pub id: String,
    /// The right exercised.
    pub kind: RequestKind,
    /// When it was received.
    pub received_at: Timestamp,
    /// Acknowledge by: the end of the 2nd working day after receipt.
    pub acknowledge_by: Timestamp,
    /// Complete by: 15 days after receipt (20 with another processor), plus the extension.
    pub complete_by: Timestamp,
    /// Whether another processor is involved (20 days instead of 15).
    pub other_processor: bool,
    /// Every status it went through, the first `received`.
    pub history: Vec<RequestChange>,
}

/// An officer's change to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUpdate {
    /// The new status: acknowledged, extended, completed or refused.
    pub status: RequestStatus,
    /// The officer's note (the reason, for an extension or a refusal).
    pub note: String,
    /// Extension length in days (1–15), for `extended`.
    pub extend_days: Option<u32>,
    /// Another processor is involved: the completion deadline becomes 20 days.
    pub other_processor: bool,
}

impl DataRequest {
    /// A request received at `now`, with its deadlines from `calendar`.
    pub fn new(
        id: String,
        kind: RequestKind,
        note: String,
        now: Timestamp,
        calendar: &Calendar,
    ) -> Result<Self, VaultError> {
        Ok(Self {
            id,
            kind,
            received_at: now,
            acknowledge_by: calendar
                .working_days_after(now, ACKNOWLEDGE_WORKING_DAYS)
                .map_err(gap)?,
            complete_by: calendar.period_end(now, COMPLETE_DAYS).map_err(gap)?,
            other_processor: false,
            history: vec![RequestChange {
                status: RequestStatus::Received,
                at: now,
                note,
            }],
        })
    }

    /// Its status now.
    pub fn status(&self) -> RequestStatus {
        self.history
            .last()
            .map_or(RequestStatus::Received, |c| c.status)
    }

    /// Whether it was acknowledged (by any later step).
    pub fn acknowledged(&self) -> bool {
        self.history.len() > 1
    }

    /// Whether it was extended.
    pub fn extended(&self) -> bool {
        self.history
            .iter()
            .any(|c| c.status == RequestStatus::Extended)
    }

    /// Whether it is past a deadline at `now`: not acknowledged by `acknowledge_by`, or not
    /// closed by `complete_by`.
    pub fn overdue(&self, now: Timestamp) -> bool {
        let closed = self.status().is_closed();
        (!self.acknowledged() && now > self.acknowledge_by) || (!closed && now > self.complete_by)
    }

    /// Applies an officer's change at `now`. A closed request changes no more
    /// (`case_closed`); a second extension, an extension longer than 15 days or a step
    /// back to `received` is refused (`invalid_request`).
    pub fn apply(
        &mut self,
        update: &RequestUpdate,
        now: Timestamp,
        calendar: &Calendar,
    ) -> Result<(), VaultError> {
        if self.status().is_closed() {
            return Err(VaultError::CaseClosed);
        }
        let invalid = || VaultError::Denied(Denial::InvalidRequest);
        // Every check first: a refused change leaves the request as it was.
        match update.status {
            RequestStatus::Received => return Err(invalid()),
            RequestStatus::Extended => {
                let days = update.extend_days.unwrap_or(MAX_EXTENSION_DAYS);
                if self.extended() || !(1..=MAX_EXTENSION_DAYS).contains(&days) {
                    return Err(invalid());
                }
            }
            RequestStatus::Acknowledged if self.acknowledged() => return Err(invalid()),
            RequestStatus::Acknowledged | RequestStatus::Completed | RequestStatus::Refused => {}
        }
        if update.status != RequestStatus::Extended && update.extend_days.is_some() {
            return Err(invalid());
        }
        let mut complete_by = self.complete_by;
        if update.other_processor && !self.other_processor {
            let longer = calendar
                .period_end(self.received_at, COMPLETE_DAYS_WITH_PROCESSOR)
                .map_err(gap)?;
            complete_by = complete_by.max(longer);
        }
        if update.status == RequestStatus::Extended {
            let days = update.extend_days.unwrap_or(MAX_EXTENSION_DAYS);
            complete_by = calendar.period_end(complete_by, days).map_err(gap)?;
        }
        self.other_processor |= update.other_processor;
        self.complete_by = complete_by;
        self.history.push(RequestChange {
            status: update.status,
            at: now,
            note: update.note.clone(),
        });
        Ok(())
    }
}

fn gap(e: crate::policy::calendar::CalendarGap) -> VaultError {
    VaultError::CalendarGap(e.year)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::days_from_civil;

    const CAL: &str = r#"
utc_offset_minutes = 420
weekend = ["saturday", "sunday"]
[holidays]
2026 = ["2026-04-30", "2026-05-01", "2026-09-01", "2026-09-02"]
"#;

    fn local(y: i64, m: u32, d: u32, h: i64) -> Timestamp {
        Timestamp::from_millis((days_from_civil(y, m, d) * 24 + h - 7) * 3_600_000)
    }

    fn end_of(y: i64, m: u32, d: u32) -> Timestamp {
        Timestamp::from_millis(local(y, m, d, 24).as_millis() - 1)
    }

    fn update(status: RequestStatus) -> RequestUpdate {
        RequestUpdate {
            status,
            note: "ok".into(),
            extend_days: None,
            other_processor: false,
        }
    }

    #[test]
    fn a_request_gets_its_legal_deadlines_and_one_extension() {
        let cal = Calendar::parse("calendar.toml", CAL).unwrap();
        // Tuesday 28 April 2026, 10:00 in Hanoi: the 2 working days skip 30 April and 1 May
        // (holidays) and the weekend: Monday 4 May. 15 days later is Wednesday 13 May.
        let mut r = DataRequest::new(
            "yc-x".into(),
            RequestKind::Erasure,
            String::new(),
            local(2026, 4, 28, 10),
            &cal,
        )
        .unwrap();
        assert_eq!(r.acknowledge_by, end_of(2026, 5, 4));
        assert_eq!(r.complete_by, end_of(2026, 5, 13));
        assert!(!r.overdue(end_of(2026, 5, 4)));
        assert!(r.overdue(local(2026, 5, 5, 9)), "not acknowledged in time");
        r.apply(
            &update(RequestStatus::Acknowledged),
            local(2026, 4, 29, 9),
            &cal,
        )
        .unwrap();
        assert!(!r.overdue(local(2026, 5, 13, 9)));
        let mut ext = update(RequestStatus::Extended);
        ext.extend_days = Some(15);
        r.apply(&ext, local(2026, 5, 12, 9), &cal).unwrap();
        assert_eq!(r.complete_by, end_of(2026, 5, 28));
        assert_eq!(
            r.apply(&ext, local(2026, 5, 13, 9), &cal)
                .unwrap_err()
                .code(),
            "invalid_request",
            "one extension only"
        );
        r.apply(
            &update(RequestStatus::Completed),
            local(2026, 5, 20, 9),
            &cal,
        )
        .unwrap();
        assert_eq!(r.status(), RequestStatus::Completed);
        assert!(!r.overdue(local(2026, 12, 1, 9)));
        assert_eq!(
            r.apply(&update(RequestStatus::Refused), local(2026, 5, 21, 9), &cal)
                .unwrap_err()
                .code(),
            "case_closed"
        );
    }

    #[test]
    fn another_processor_gives_twenty_days_and_long_extensions_are_refused() {
        let cal = Calendar::parse("calendar.toml", CAL).unwrap();
        let mut r = DataRequest::new(
            "yc-x".into(),
            RequestKind::Access,
            String::new(),
            local(2026, 6, 1, 9),
            &cal,
        )
        .unwrap();
        let mut ack = update(RequestStatus::Acknowledged);
        ack.other_processor = true;
        r.apply(&ack, local(2026, 6, 2, 9), &cal).unwrap();
        // 20 days after Monday 1 June is Sunday 21 June: the period ends Monday 22.
        assert_eq!(r.complete_by, end_of(2026, 6, 22));
        let mut ext = update(RequestStatus::Extended);
        ext.extend_days = Some(16);
        assert!(r.apply(&ext, local(2026, 6, 3, 9), &cal).is_err());
        assert_eq!(r.history.len(), 2, "a refused change changes nothing");
    }

    #[test]
    fn texts_are_bounded_and_printable() {
        assert_eq!(checked_text("  xin chào  ", 1).unwrap(), "xin chào");
        assert!(checked_text("   ", 1).is_err());
        assert!(checked_text(&"a".repeat(2_001), 1).is_err());
        assert!(
            checked_text(&"ạ".repeat(2_000), 1).is_ok(),
            "characters, not bytes"
        );
        assert!(checked_text("a\u{0}b", 0).is_err());
        assert!(checked_text("dòng 1\ndòng 2", 0).is_ok());
    }

    #[test]
    fn case_ids_name_their_kind() {
        for k in CaseKind::ALL.into_iter().filter(|k| *k != CaseKind::Review) {
            let id = new_case_id(k).unwrap();
            assert!(is_case_id_shaped(k, &id));
            assert_eq!(CaseKind::of_id(&id), Some(k));
        }
        assert!(!is_case_id_shaped(CaseKind::Complaint, "kn-012345678901"));
    }
}
