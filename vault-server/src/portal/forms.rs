//! The portal's forms (POST): consent decisions, withdrawal, the code check, complaints,
//! corrections and requests. Each checks the session's CSRF token, runs once per form key
//! (`Vault::once`: a form sent again after a dropped connection answers as the first time),
//! then sends the browser to the page it came from with a message; bad input shows the form
//! again with a message naming the field in the reader's language, and changes nothing.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use vault_core::policy::FieldType;
use vault_core::vault::{Attempt, Caller, ConsentDecision, IdempotencyKey, Once};
use vault_core::{CitizenId, VaultError};

use super::i18n::{Catalog, Lang};
use super::pages::{HomeExtra, block, home_page, receipt_page};
use super::session::Session;
use super::view::Labels;
use super::{lang_of, see_other, session_of};
use crate::state::{AppState, State};

type Form = web::Form<HashMap<String, String>>;

fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.get(name).map_or("", String::as_str)
}

/// The session of a form post whose CSRF token is the session's; otherwise where to send
/// the browser (sign in again, or back to the page).
async fn checked(
    state: &State,
    req: &HttpRequest,
    form: &Form,
    back: &str,
    op: &'static str,
) -> Result<Session, Box<HttpResponse>> {
    let Some((_, s)) = session_of(state, req) else {
        return Err(Box::new(see_other(&format!(
            "/portal/login?next={}",
            super::login::encode(back)
        ))));
    };
    if !vault_core::crypto::ct_eq(field(form, "csrf").as_bytes(), s.csrf.as_bytes()) {
        // A stale page (or another site's form): nothing changes, the refusal is recorded,
        // and the citizen is told.
        refused(state, &s.who, op).await;
        let section = back.split_once('#').map_or("", |(_, s)| s);
        return Err(Box::new(see_other(&format!("/portal?stale=1#{section}"))));
    }
    Ok(s)
}

/// Runs `run` once per form key for this citizen (`Vault::once`), scoped by the operation.
async fn once<F>(
    state: &State,
    citizen: CitizenId,
    op: &'static str,
    form_key: &str,
    request: String,
    run: F,
) -> Result<(), VaultError>
where
    F: FnOnce(&AppState, &CitizenId) -> Result<(), VaultError> + Send + 'static,
{
    let key = IdempotencyKey::parse(form_key);
    block(state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Citizen(&citizen),
            attempt: Attempt::new(op),
            key: key.as_ref(),
            request: request.as_bytes(),
        };
        st.vault
            .once(call, now, || run(st, &citizen).map(|()| (200, Value::Null)))
            .map(|_| ())
    })
    .await
}

/// Records the refusal of a form the portal itself found invalid (as the API's refusals of
/// an invalid body are recorded), then shows the message.
async fn refused(state: &State, citizen: &CitizenId, op: &'static str) {
    // Limited per citizen, as the API's audited refusals are: past the limit the refusal is
    // only counted, so no one can grow the log without bound by sending bad forms.
    if state
        .refusal_limiter
        .check(&format!("c:{}", state.vault.blind(citizen)))
        .is_err()
    {
        state.metrics.denial("rate_limited");
        return;
    }
    let c = citizen.clone();
    let _ = block(state, move |st| {
        st.vault.record_refusal(
            Caller::Citizen(&c),
            Attempt::new(op),
            "invalid_request",
            st.now(),
        )
    })
    .await;
}

/// A core error in the reader's words, naming `field` where it is about one.
fn message(t: &Catalog, e: &VaultError, field: &str) -> String {
    let f = [("field", field)];
    match e {
        VaultError::NoSourceOfTruth => t.fmt("err_no_source", &f),
        VaultError::CorrectionOpen => t.fmt("err_correction_open", &f),
        VaultError::AuditNotFound => t.fmt("err_not_own_entry", &f),
        VaultError::GrantNotPending | VaultError::GrantNotFound | VaultError::ConsentNotFound => {
            t.s("err_not_pending").to_owned()
        }
        VaultError::UnknownField(_)
        | VaultError::InvalidFieldValue { .. }
        | VaultError::Denied(_) => t.fmt("err_invalid", &f),
        VaultError::AuditUnavailable
        | VaultError::StoreUnavailable(_)
        | VaultError::CalendarGap(_) => t.s("err_unavailable").to_owned(),
        other => t.fmt("err_generic", &[("code", other.code())]),
    }
}

/// A text field's check: required or not, at most 2,000 characters.
fn text_error(t: &Catalog, value: &str, required: bool, label: &str) -> Option<String> {
    let n = value.trim().chars().count();
    if required && n == 0 {
        Some(t.fmt("err_required", &[("field", label)]))
    } else if n > vault_core::case::MAX_TEXT_CHARS {
        Some(t.fmt("err_too_long", &[("field", label)]))
    } else {
        None
    }
}

/// After a decision, approval or withdrawal: back home with a message, or the home page
/// with the error.
async fn after(
    state: &State,
    req: &HttpRequest,
    lang: Lang,
    s: &Session,
    result: Result<(), VaultError>,
    done: &str,
    section: &str,
) -> HttpResponse {
    match result {
        Ok(()) => see_other(&format!("/portal?done={done}#{section}")),
        Err(e) => {
            let extra = HomeExtra {
                error: message(lang.catalog(), &e, ""),
                ..HomeExtra::default()
            };
            home_page(state, req, lang, s, extra, status_of(&e)).await
        }
    }
}

fn status_of(e: &VaultError) -> StatusCode {
    if e.is_refusal() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `POST /portal/grants/{id}/approve` (`remember_days` optional, 1-365).
pub async fn approve(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let s = match checked(&state, &req, &form, "/portal#pending", "grant.approve").await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let t = lang.catalog();
    let days = field(&form, "remember_days").trim();
    let remember_days = if days.is_empty() {
        None
    } else {
        match days.parse::<u32>() {
            Ok(d) if (1..=vault_core::consent::MAX_REMEMBER_DAYS).contains(&d) => Some(d),
            _ => {
                refused(&state, &s.who, "grant.approve").await;
                let extra = HomeExtra {
                    error: t.fmt("err_invalid", &[("field", t.s("remember_days"))]),
                    ..HomeExtra::default()
                };
                return home_page(&state, &req, lang, &s, extra, StatusCode::BAD_REQUEST).await;
            }
        }
    };
    let grant = id.into_inner();
    let request = json!(["approve", grant, remember_days]).to_string();
    let result = once(
        &state,
        s.who.clone(),
        "grant.approve",
        field(&form, "form_key"),
        request,
        move |st, c| {
            st.vault
                .decide_grant(
                    c,
                    &grant,
                    ConsentDecision::Approve { remember_days },
                    st.now(),
                )
                .map(|_| ())
        },
    )
    .await;
    after(&state, &req, lang, &s, result, "approve", "pending").await
}

/// `POST /portal/grants/{id}/refuse`.
pub async fn refuse(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let s = match checked(&state, &req, &form, "/portal#pending", "grant.refuse").await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let grant = id.into_inner();
    let request = json!(["refuse", grant]).to_string();
    let result = once(
        &state,
        s.who.clone(),
        "grant.refuse",
        field(&form, "form_key"),
        request,
        move |st, c| {
            st.vault
                .decide_grant(c, &grant, ConsentDecision::Refuse, st.now())
                .map(|_| ())
        },
    )
    .await;
    after(&state, &req, lang, &s, result, "refuse", "pending").await
}

/// `POST /portal/consents/{id}/withdraw`.
pub async fn withdraw(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let s = match checked(&state, &req, &form, "/portal#consents", "consent.withdraw").await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let consent = id.into_inner();
    let request = json!(["withdraw", consent]).to_string();
    let result = once(
        &state,
        s.who.clone(),
        "consent.withdraw",
        field(&form, "form_key"),
        request,
        move |st, c| st.vault.withdraw_consent(c, &consent, st.now()).map(|_| ()),
    )
    .await;
    after(&state, &req, lang, &s, result, "withdraw", "consents").await
}

/// `POST /portal/verify`: is a request code genuine? Answered on the home page.
pub async fn verify(state: State, req: HttpRequest, form: Form) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let s = match checked(&state, &req, &form, "/portal#verify", "code.verify").await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let t = lang.catalog();
    let code = field(&form, "verification_code").trim().to_owned();
    let mut extra = HomeExtra {
        verify_code: code.chars().take(16).collect(),
        ..HomeExtra::default()
    };
    if code.is_empty() {
        extra.verify_result = t.fmt("err_required", &[("field", t.s("request_code"))]);
        extra.verify_class = "bad".into();
        return home_page(&state, &req, lang, &s, extra, StatusCode::BAD_REQUEST).await;
    }
    if state
        .verify_limiter
        .check(&state.vault.blind(&s.who).to_string())
        .is_err()
    {
        extra.verify_result = t.s("err_rate").to_owned();
        extra.verify_class = "bad".into();
        return home_page(&state, &req, lang, &s, extra, StatusCode::TOO_MANY_REQUESTS).await;
    }
    let citizen = s.who.clone();
    let answer = block(&state, move |st| {
        st.vault.verify_code(&citizen, &code, st.now())
    })
    .await;
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    match answer {
        Ok(Some(info)) => {
            // The core names the agency and purpose in Vietnamese; find them in the reader's
            // language where the policy has them.
            let agency = state
                .vault
                .policy()
                .agencies()
                .find(|a| a.name_vi == info.agency)
                .map_or(info.agency.clone(), |a| l.agency(&a.id));
            let purpose = state
                .vault
                .policy()
                .purposes()
                .find(|p| p.label_vi == info.purpose_label)
                .map_or(info.purpose_label.clone(), |p| l.purpose(&p.id));
            extra.verify_result = format!(
                "{} — {}: {}; {}: {}; {}: {}",
                t.s("genuine"),
                t.s("agency"),
                agency,
                t.s("purpose"),
                purpose,
                t.s("requested_at"),
                super::view::local_time(info.requested_at)
            );
            extra.verify_class = "good".into();
        }
        Ok(None) => {
            extra.verify_result = t.s("not_genuine").to_owned();
            extra.verify_class = "bad".into();
        }
        Err(e) => {
            extra.verify_result = message(t, &e, t.s("request_code"));
            extra.verify_class = "bad".into();
        }
    }
    home_page(&state, &req, lang, &s, extra, StatusCode::OK).await
}

/// `POST /portal/complaints` (`audit_index`, `text`): from an entry's receipt page.
pub async fn complaint(state: State, req: HttpRequest, form: Form) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let t = lang.catalog();
    let index = field(&form, "audit_index").trim().parse::<u64>().ok();
    let back = index.map_or_else(
        || "/portal#complaints".to_owned(),
        |i| format!("/portal/receipt/{i}"),
    );
    let s = match checked(&state, &req, &form, &back, "complaint.file").await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let text = field(&form, "text").to_owned();
    let Some(index) = index else {
        refused(&state, &s.who, "complaint.file").await;
        let extra = HomeExtra {
            error: t.fmt("err_invalid", &[("field", t.s("complaint_about"))]),
            ..HomeExtra::default()
        };
        return home_page(&state, &req, lang, &s, extra, StatusCode::BAD_REQUEST).await;
    };
    if let Some(err) = text_error(t, &text, true, t.s("complaint_text")) {
        refused(&state, &s.who, "complaint.file").await;
        return receipt_page(
            &state,
            &req,
            lang,
            &s,
            index,
            (err, text),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let request = json!(["complaint", index, text]).to_string();
    let body = text.clone();
    let result = once(
        &state,
        s.who.clone(),
        "complaint.file",
        field(&form, "form_key"),
        request,
        move |st, c| {
            st.vault
                .file_complaint(c, index, &body, st.now())
                .map(|_| ())
        },
    )
    .await;
    match result {
        Ok(()) => see_other("/portal?done=complaint#complaints"),
        Err(e) => {
            let err = message(t, &e, t.s("complaint_about"));
            receipt_page(&state, &req, lang, &s, index, (err, text), status_of(&e)).await
        }
    }
}

/// The proposed value of a correction as the catalog types it (a number, a yes/no, a list
/// separated by commas, else text).
fn typed_value(state: &AppState, field_name: &str, raw: &str) -> Value {
    let raw = raw.trim();
    match state.vault.policy().field(field_name).map(|f| &f.ty) {
        Some(FieldType::Integer) => raw.parse::<i64>().map_or_else(|_| json!(raw), |n| json!(n)),
        Some(FieldType::Boolean) => match raw.to_lowercase().as_str() {
            "true" | "có" | "yes" | "1" => json!(true),
            "false" | "không" | "no" | "0" => json!(false),
            _ => json!(raw),
        },
        Some(FieldType::StringList) => json!(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        ),
        _ => json!(raw),
    }
}

/// `POST /portal/corrections` (`field`, `proposed_value`, `note`).
pub async fn correction(state: State, req: HttpRequest, form: Form) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let t = lang.catalog();
    let s = match checked(
        &state,
        &req,
        &form,
        "/portal#corrections",
        "correction.file",
    )
    .await
    {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (name, raw, note) = (
        field(&form, "field").to_owned(),
        field(&form, "proposed_value").to_owned(),
        field(&form, "note").to_owned(),
    );
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    let label = if state.vault.policy().field(&name).is_some() {
        l.field(&name)
    } else {
        t.s("field").to_owned()
    };
    let again = |error: String| HomeExtra {
        correction_error: error,
        correction_field: name.clone(),
        correction_value: raw.chars().take(2_000).collect(),
        correction_note: note.chars().take(2_000).collect(),
        ..HomeExtra::default()
    };
    let invalid = text_error(t, &raw, true, t.s("proposed_value"))
        .or_else(|| text_error(t, &note, false, t.s("note")));
    if let Some(err) = invalid {
        refused(&state, &s.who, "correction.file").await;
        return home_page(&state, &req, lang, &s, again(err), StatusCode::BAD_REQUEST).await;
    }
    let value = typed_value(&state, &name, &raw);
    let request = json!(["correction", name, value, note]).to_string();
    let (n2, note2) = (name.clone(), note.clone());
    let result = once(
        &state,
        s.who.clone(),
        "correction.file",
        field(&form, "form_key"),
        request,
        move |st, c| {
            st.vault
                .file_correction(c, &n2, value, &note2, st.now())
                .map(|_| ())
        },
    )
    .await;
    match result {
        Ok(()) => see_other("/portal?done=correction#corrections"),
        Err(e) => {
            let err = message(t, &e, &label);
            home_page(&state, &req, lang, &s, again(err), status_of(&e)).await
        }
    }
}

/// `POST /portal/requests` (`kind`, `note`).
pub async fn request(state: State, req: HttpRequest, form: Form) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let t = lang.catalog();
    let s = match checked(&state, &req, &form, "/portal#requests", "request.file").await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let note = field(&form, "note").to_owned();
    let again = |error: String| HomeExtra {
        request_error: error,
        request_note: note.chars().take(2_000).collect(),
        ..HomeExtra::default()
    };
    let Some(kind) = vault_core::case::RequestKind::parse(field(&form, "kind")) else {
        refused(&state, &s.who, "request.file").await;
        let err = t.fmt("err_invalid", &[("field", t.s("request_kind"))]);
        return home_page(&state, &req, lang, &s, again(err), StatusCode::BAD_REQUEST).await;
    };
    if let Some(err) = text_error(t, &note, false, t.s("note")) {
        refused(&state, &s.who, "request.file").await;
        return home_page(&state, &req, lang, &s, again(err), StatusCode::BAD_REQUEST).await;
    }
    let request = json!(["request", kind.as_str(), note]).to_string();
    let body = note.clone();
    let result = once(
        &state,
        s.who.clone(),
        "request.file",
        field(&form, "form_key"),
        request,
        move |st, c| st.vault.file_request(c, kind, &body, st.now()).map(|_| ()),
    )
    .await;
    match result {
        Ok(()) => see_other("/portal?done=request#requests"),
        Err(e) => {
            let err = message(t, &e, t.s("note"));
            home_page(&state, &req, lang, &s, again(err), status_of(&e)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_in_the_readers_language() {
        let vi = Lang::Vi.catalog();
        assert_eq!(
            message(vi, &VaultError::CorrectionOpen, "Họ, chữ đệm và tên"),
            "Họ, chữ đệm và tên: đã có một yêu cầu chỉnh sửa đang xử lý."
        );
        let en = Lang::En.catalog();
        assert!(
            text_error(en, "", true, "Your complaint")
                .unwrap()
                .contains("Your complaint")
        );
        assert!(
            text_error(en, &"x".repeat(2_001), false, "Note")
                .unwrap()
                .contains("too long")
        );
        assert!(text_error(en, "ok", true, "Note").is_none());
    }
}
