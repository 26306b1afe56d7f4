//! The portal's page models (askama templates under `templates/portal/`) and how core
//! answers become rows of text in the reader's language. Values are escaped by the
//! templates; nothing here builds HTML.

use askama::Template;
use serde_json::Value;
use vault_core::Timestamp;
use vault_core::case::{Complaint, Correction, DataRequest};
use vault_core::consent::StandingConsent;
use vault_core::grant::Grant;
use vault_core::policy::PolicySet;
use vault_core::vault::{HistoryItem, Notification, NotificationKind};

use super::i18n::{Catalog, Lang};

/// What every page shares: language, title, stylesheet, the session's CSRF token, the
/// language switch and one message.
#[derive(Debug)]
pub struct Chrome {
    /// `vi` or `en`.
    pub lang: &'static str,
    /// The catalog.
    pub t: &'static Catalog,
    /// The page title.
    pub title: String,
    /// The stylesheet's URL.
    pub css: String,
    /// The session's CSRF token (empty when signed out).
    pub csrf: String,
    /// Whether a citizen is signed in.
    pub signed_in: bool,
    /// This page in the other language.
    pub other_lang_href: String,
    /// A success message.
    pub flash: String,
    /// An error message for the page as a whole.
    pub error: String,
}

/// Local (Vietnam, UTC+7) date and time, `dd/mm/yyyy HH:MM`.
pub fn local_time(t: Timestamp) -> String {
    let ms = t.as_millis() + 7 * 3_600_000;
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000) / 60_000;
    let (y, m, d) = vault_core::clock::civil_from_days(days);
    format!("{d:02}/{m:02}/{y} {:02}:{:02}", in_day / 60, in_day % 60)
}

/// Local date, `dd/mm/yyyy`.
pub fn local_date(t: Timestamp) -> String {
    local_time(t)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Labels of the policy set in one language.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// The policy set.
    pub policy: &'a PolicySet,
    /// The language.
    pub lang: Lang,
}

impl Labels<'_> {
    /// A field's label (its name if unknown).
    pub fn field(&self, name: &str) -> String {
        self.policy.field(name).map_or_else(
            || name.to_owned(),
            |f| match self.lang {
                Lang::Vi => f.label_vi.clone(),
                Lang::En => f.label_en.clone(),
            },
        )
    }

    /// Field labels joined.
    pub fn fields(&self, names: &[String]) -> String {
        names
            .iter()
            .map(|n| self.field(n))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A purpose's label.
    pub fn purpose(&self, id: &str) -> String {
        self.policy.purpose(id).map_or_else(
            || id.to_owned(),
            |p| match self.lang {
                Lang::Vi => p.label_vi.clone(),
                Lang::En => p.label_en.clone(),
            },
        )
    }

    /// An agency's name.
    pub fn agency(&self, id: &str) -> String {
        self.policy.agency(id).map_or_else(
            || id.to_owned(),
            |a| match self.lang {
                Lang::Vi => a.name_vi.clone(),
                Lang::En => a.name_en.clone(),
            },
        )
    }
}

/// One line of the access history.
#[derive(Debug)]
pub struct AccessRow {
    /// Audit index.
    pub index: u64,
    /// Local time.
    pub time: String,
    /// RFC 3339.
    pub time_iso: String,
    /// What happened.
    pub event: String,
    /// The agency.
    pub agency: String,
    /// The official.
    pub official: String,
    /// The purpose's label.
    pub purpose: String,
    /// The dossier.
    pub dossier: String,
    /// Field labels.
    pub fields: String,
    /// Permit, deny, error in words.
    pub outcome: String,
    /// Emergency access.
    pub break_glass: bool,
}

impl AccessRow {
    /// A history item in words.
    pub fn of(i: &HistoryItem, l: Labels<'_>, t: &Catalog) -> Self {
        let time =
            vault_core::audit::parse_time(&i.time).map_or_else(|| i.time.clone(), local_time);
        let event_key = format!("ev_{}", i.event.replace('.', "_"));
        Self {
            index: i.index,
            time,
            time_iso: i.time.clone(),
            event: t.s(&event_key).to_owned(),
            agency: i.agency.as_deref().map(|a| l.agency(a)).unwrap_or_default(),
            official: i.official.clone().unwrap_or_default(),
            purpose: i
                .purpose
                .as_deref()
                .map(|p| l.purpose(p))
                .unwrap_or_default(),
            dossier: i.dossier_id.clone().unwrap_or_default(),
            fields: l.fields(&i.fields),
            outcome: t.s(&format!("outcome_{}", i.outcome)).to_owned(),
            break_glass: i.break_glass,
        }
    }
}

/// A notification in words.
#[derive(Debug)]
pub struct NoteRow {
    /// Local time.
    pub time: String,
    /// RFC 3339.
    pub time_iso: String,
    /// The sentence.
    pub text: String,
}

impl NoteRow {
    /// A notification in words.
    pub fn of(n: &Notification, l: Labels<'_>, t: &Catalog) -> Self {
        let o = |s: &str| t.s(&format!("outcome_{s}")).to_owned();
        let text = match &n.kind {
            NotificationKind::ConsentWaiting {
                agency, purpose, ..
            } => t.fmt(
                "n_consent_waiting",
                &[
                    ("agency", &l.agency(agency)),
                    ("purpose", &l.purpose(purpose)),
                ],
            ),
            NotificationKind::BreakGlassAccess {
                agency, purpose, ..
            } => t.fmt(
                "n_break_glass",
                &[
                    ("agency", &l.agency(agency)),
                    ("purpose", &l.purpose(purpose)),
                ],
            ),
            NotificationKind::BreakGlassReviewed { outcome, .. } => {
                t.fmt("n_break_glass_reviewed", &[("outcome", &o(outcome))])
            }
            NotificationKind::ComplaintAnswered { outcome, .. } => {
                t.fmt("n_complaint_answered", &[("outcome", &o(outcome))])
            }
            NotificationKind::CorrectionResolved { field, outcome, .. } => t.fmt(
                "n_correction_resolved",
                &[("field", &l.field(field)), ("outcome", &o(outcome))],
            ),
            NotificationKind::RequestStatus { status, .. } => t.fmt(
                "n_request_status",
                &[("kind", ""), ("status", t.s(&format!("status_{status}")))],
            ),
        };
        Self {
            time: local_time(n.at),
            time_iso: n.at.to_string(),
            text: text.replace(" \"\"", ""),
        }
    }
}

/// A consent request waiting for the citizen.
#[derive(Debug)]
pub struct PendingRow {
    /// Grant id.
    pub id: String,
    /// Agency name.
    pub agency: String,
    /// Purpose label.
    pub purpose: String,
    /// Field labels.
    pub fields: String,
    /// Dossier.
    pub dossier: String,
    /// Verification code.
    pub code: String,
    /// When asked.
    pub requested_at: String,
    /// Until when the citizen may answer.
    pub answer_by: String,
    /// Idempotency key of the approve form.
    pub approve_key: String,
    /// Idempotency key of the refuse form.
    pub refuse_key: String,
}

impl PendingRow {
    /// A pending grant in words, with fresh form keys.
    pub fn of(g: &Grant, l: Labels<'_>, keys: (String, String)) -> Self {
        Self {
            id: g.id.to_string(),
            agency: l.agency(&g.agency),
            purpose: l.purpose(&g.purpose),
            fields: l.fields(&g.fields),
            dossier: g.dossier_id.to_string(),
            code: g.verification_code.clone(),
            requested_at: local_time(g.created),
            answer_by: g.consent_expires.map(local_time).unwrap_or_default(),
            approve_key: keys.0,
            refuse_key: keys.1,
        }
    }
}

/// A standing consent.
#[derive(Debug)]
pub struct ConsentRow {
    /// Consent id.
    pub id: String,
    /// Agency name.
    pub agency: String,
    /// Purpose label.
    pub purpose: String,
    /// Field labels.
    pub fields: String,
    /// Given on.
    pub created: String,
    /// Ends on.
    pub expires: String,
    /// Idempotency key of the withdraw form.
    pub form_key: String,
}

impl ConsentRow {
    /// A standing consent in words.
    pub fn of(c: &StandingConsent, l: Labels<'_>, form_key: String) -> Self {
        Self {
            id: c.id.clone(),
            agency: l.agency(&c.agency),
            purpose: l.purpose(&c.purpose),
            fields: l.fields(&c.fields),
            created: local_date(c.created),
            expires: local_date(c.expires),
            form_key,
        }
    }
}

/// A complaint.
#[derive(Debug)]
pub struct ComplaintRow {
    /// The entry it is about.
    pub index: u64,
    /// The citizen's text.
    pub text: String,
    /// Filed on.
    pub filed_at: String,
    /// Status in words.
    pub status: String,
    /// The answer and its outcome, if any.
    pub answer: String,
}

impl ComplaintRow {
    /// A complaint in words.
    pub fn of(c: &Complaint, t: &Catalog) -> Self {
        Self {
            index: c.audit_index,
            text: c.text.clone(),
            filed_at: local_time(c.filed_at),
            status: t.s(&format!("status_{}", c.status())).to_owned(),
            answer: c
                .answer
                .as_ref()
                .map(|a| {
                    format!(
                        "{} — {}",
                        t.s(&format!("outcome_{}", a.outcome.as_str())),
                        a.text
                    )
                })
                .unwrap_or_default(),
        }
    }
}

/// A correction.
#[derive(Debug)]
pub struct CorrectionRow {
    /// Field label.
    pub field: String,
    /// The proposed value as text.
    pub proposed: String,
    /// The citizen's note.
    pub note: String,
    /// Filed on.
    pub filed_at: String,
    /// Status in words.
    pub status: String,
    /// The agency's reason.
    pub reason: String,
}

impl CorrectionRow {
    /// A correction in words.
    pub fn of(c: &Correction, l: Labels<'_>, t: &Catalog) -> Self {
        Self {
            field: l.field(&c.field),
            proposed: value_text(&c.proposed_value),
            note: c.note.clone(),
            filed_at: local_time(c.filed_at),
            status: t.s(&format!("status_{}", c.status())).to_owned(),
            reason: c
                .resolution
                .as_ref()
                .map(|r| r.reason.clone())
                .unwrap_or_default(),
        }
    }
}

/// A data-subject request.
#[derive(Debug)]
pub struct RequestRow {
    /// Kind in words.
    pub kind: String,
    /// Status in words.
    pub status: String,
    /// Past a deadline.
    pub overdue: bool,
    /// Received on.
    pub received_at: String,
    /// Acknowledge by.
    pub acknowledge_by: String,
    /// Complete by.
    pub complete_by: String,
    /// Extended once.
    pub extended: bool,
}

impl RequestRow {
    /// A request in words.
    pub fn of(r: &DataRequest, now: Timestamp, t: &Catalog) -> Self {
        Self {
            kind: t.s(&format!("kind_{}", r.kind.as_str())).to_owned(),
            status: t.s(&format!("status_{}", r.status().as_str())).to_owned(),
            overdue: r.overdue(now),
            received_at: local_time(r.received_at),
            acknowledge_by: local_time(r.acknowledge_by),
            complete_by: local_time(r.complete_by),
            extended: r.extended(),
        }
    }
}

/// A value as the citizen reads it.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One field of the citizen's record.
#[derive(Debug)]
pub struct FieldRow {
    /// Label.
    pub label: String,
    /// Value as text.
    pub value: String,
    /// Under an open correction.
    pub disputed: bool,
}

/// The page shown before sign-in.
#[derive(Template, Debug)]
#[template(path = "portal/landing.html")]
pub struct Landing {
    /// Shared parts.
    pub c: Chrome,
    /// Where the sign-in button goes.
    pub login_href: String,
}

/// The home page: every section.
#[derive(Template, Debug)]
#[template(path = "portal/home.html")]
pub struct Home {
    /// Shared parts.
    pub c: Chrome,
    /// Notifications.
    pub notifications: Vec<NoteRow>,
    /// Consent requests.
    pub pending: Vec<PendingRow>,
    /// Latest history.
    pub accesses: Vec<AccessRow>,
    /// Standing consents.
    pub consents: Vec<ConsentRow>,
    /// The answer of a code check.
    pub verify_result: String,
    /// `good` or `bad`.
    pub verify_class: String,
    /// The code checked.
    pub verify_code: String,
    /// Complaints.
    pub complaints: Vec<ComplaintRow>,
    /// Corrections.
    pub corrections: Vec<CorrectionRow>,
    /// The correction form's error.
    pub correction_error: String,
    /// The correction form's idempotency key.
    pub correction_key: String,
    /// Fields that can be corrected: (name, label).
    pub correctable: Vec<(String, String)>,
    /// The correction form's values.
    pub correction_field: String,
    /// The proposed value typed.
    pub correction_value: String,
    /// The note typed.
    pub correction_note: String,
    /// Requests.
    pub requests: Vec<RequestRow>,
    /// The request form's error.
    pub request_error: String,
    /// The request form's idempotency key.
    pub request_key: String,
    /// Kinds of request: (name, label).
    pub request_kinds: Vec<(String, String)>,
    /// The note typed.
    pub request_note: String,
}

/// The whole access history, a page at a time.
#[derive(Template, Debug)]
#[template(path = "portal/accesses.html")]
pub struct Accesses {
    /// Shared parts.
    pub c: Chrome,
    /// Rows.
    pub accesses: Vec<AccessRow>,
    /// The next (older) page, if any.
    pub older_href: String,
}

/// One entry's receipt, checked in the browser.
#[derive(Template, Debug)]
#[template(path = "portal/receipt.html")]
pub struct ReceiptPage {
    /// Shared parts.
    pub c: Chrome,
    /// The verifier module's URL.
    pub js: String,
    /// The entry's index.
    pub index: u64,
    /// The entry in words.
    pub row: AccessRow,
    /// The receipt, JSON with `<`, `>` and `&` escaped (safe inside a script element).
    pub receipt_json: String,
    /// The complaint form's error.
    pub complaint_error: String,
    /// The complaint form's idempotency key.
    pub complaint_key: String,
    /// The text typed.
    pub complaint_text: String,
}

/// The citizen's own record.
#[derive(Template, Debug)]
#[template(path = "portal/record.html")]
pub struct RecordPage {
    /// Shared parts.
    pub c: Chrome,
    /// Fields.
    pub fields: Vec<FieldRow>,
}

/// A page with a title and a way back.
#[derive(Template, Debug)]
#[template(path = "portal/message.html")]
pub struct Message {
    /// Shared parts.
    pub c: Chrome,
}

/// JSON safe to place inside a `<script type="application/json">` element.
pub fn script_json(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_shown_in_vietnam() {
        // 2026-11-23T17:30:00Z is 00:30 on the 24th in Hanoi.
        let t = vault_core::audit::parse_time("2026-11-23T17:30:00.000Z").unwrap();
        assert_eq!(local_time(t), "24/11/2026 00:30");
        assert_eq!(local_date(t), "24/11/2026");
    }

    #[test]
    fn script_json_cannot_close_its_element() {
        let s = script_json(&json!({"x": "</script><script>alert(1)</script>"}));
        assert!(!s.contains('<') && !s.contains('>'));
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["x"], "</script><script>alert(1)</script>");
    }
}
