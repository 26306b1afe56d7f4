//! The portal's pages (GET): the landing page, the home page with every section, the whole
//! history, a receipt checked in the browser, and the citizen's own record (audited as
//! `record.self_viewed`, as the API call it stands for). A page that needs a session and has
//! none sends the browser to sign in and back to it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use vault_core::VaultError;
use vault_core::case::RequestKind;
use vault_core::grant::GrantStatus;

use super::i18n::Lang;
use super::login::encode;
use super::session::{Session, random_token};
use super::view::{
    AccessRow, Accesses, ComplaintRow, ConsentRow, CorrectionRow, FieldRow, Home, Labels, Landing,
    NoteRow, PendingRow, ReceiptPage, RecordPage, RequestRow, script_json, value_text,
};
use super::{chrome, here, html, lang_of, remember_lang, see_other, session_of};
use crate::state::{AppState, State};

/// Sends the browser to sign in, then back to this page.
pub(super) fn to_login(req: &HttpRequest) -> HttpResponse {
    see_other(&format!("/portal/login?next={}", encode(&here(req))))
}

/// Runs core calls off the worker.
pub(super) async fn block<T, F>(state: &State, f: F) -> Result<T, VaultError>
where
    F: FnOnce(&AppState) -> Result<T, VaultError> + Send + 'static,
    T: Send + 'static,
{
    let s = state.clone().into_inner();
    web::block(move || f(&s))
        .await
        .map_err(|_| VaultError::AuditUnavailable)?
}

/// A fresh idempotency key for a form.
pub(super) fn form_key() -> String {
    random_token(16).unwrap_or_default()
}

/// What a form handler adds to the home page it shows again.
#[derive(Debug, Default)]
pub(super) struct HomeExtra {
    pub flash: String,
    pub error: String,
    pub verify_result: String,
    pub verify_class: String,
    pub verify_code: String,
    pub correction_error: String,
    pub correction_field: String,
    pub correction_value: String,
    pub correction_note: String,
    pub request_error: String,
    pub request_note: String,
}

/// The home page for a signed-in citizen.
pub(super) async fn home_page(
    state: &State,
    req: &HttpRequest,
    lang: Lang,
    session: &Session,
    extra: HomeExtra,
    status: StatusCode,
) -> HttpResponse {
    let citizen = session.who.clone();
    let data = block(state, move |st| {
        let now = st.now();
        let v = &st.vault;
        Ok((
            v.my_notifications(&citizen, now)?,
            v.my_grants(&citizen, Some(GrantStatus::PendingConsent), now)?,
            v.my_accesses(&citizen, None, 20)?.0,
            v.my_consents(&citizen, now)?,
            v.my_complaints(&citizen)?,
            v.my_corrections(&citizen)?,
            v.my_requests(&citizen)?,
            now,
        ))
    })
    .await;
    let (notes, pending, accesses, consents, complaints, corrections, requests, now) = match data {
        Ok(d) => d,
        Err(e) => return unavailable(state, req, lang, Some(session), &e),
    };
    let t = lang.catalog();
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    let mut c = chrome(state, req, lang, Some(session), "home");
    c.flash = extra.flash;
    c.error = extra.error;
    let correctable: Vec<(String, String)> = state
        .vault
        .policy()
        .fields()
        .filter(|f| f.source.is_some())
        .map(|f| (f.name.clone(), l.field(&f.name)))
        .collect();
    let page = Home {
        notifications: notes
            .iter()
            .take(30)
            .map(|n| NoteRow::of(n, l, t))
            .collect(),
        pending: pending
            .iter()
            .map(|g| PendingRow::of(g, l, (form_key(), form_key())))
            .collect(),
        accesses: accesses.iter().map(|i| AccessRow::of(i, l, t)).collect(),
        consents: consents
            .iter()
            .map(|s| ConsentRow::of(s, l, form_key()))
            .collect(),
        verify_result: extra.verify_result,
        verify_class: extra.verify_class,
        verify_code: extra.verify_code,
        complaints: complaints
            .iter()
            .rev()
            .map(|k| ComplaintRow::of(k, t))
            .collect(),
        corrections: corrections
            .iter()
            .rev()
            .map(|k| CorrectionRow::of(k, l, t))
            .collect(),
        correction_error: extra.correction_error,
        correction_key: form_key(),
        correctable,
        correction_field: extra.correction_field,
        correction_value: extra.correction_value,
        correction_note: extra.correction_note,
        requests: requests
            .iter()
            .rev()
            .map(|r| RequestRow::of(r, now, t))
            .collect(),
        request_error: extra.request_error,
        request_key: form_key(),
        request_kinds: RequestKind::ALL
            .iter()
            .map(|k| {
                (
                    k.as_str().to_owned(),
                    t.s(&format!("kind_{}", k.as_str())).to_owned(),
                )
            })
            .collect(),
        request_note: extra.request_note,
        c,
    };
    html(status, &page)
}

/// A page saying the vault cannot answer now (nothing was changed).
pub(super) fn unavailable(
    state: &AppState,
    req: &HttpRequest,
    lang: Lang,
    session: Option<&Session>,
    e: &VaultError,
) -> HttpResponse {
    tracing::warn!(target: "vault::portal", code = e.code(), "page not served");
    let mut c = chrome(state, req, lang, session, "err_unavailable");
    c.error = lang.catalog().s("err_unavailable").to_owned();
    html(StatusCode::SERVICE_UNAVAILABLE, &super::view::Message { c })
}

/// A page's query as text: a malformed parameter is ignored, never an error page.
type Loose = web::Query<std::collections::HashMap<String, String>>;

/// `GET /portal`: the landing page, or the home page once signed in.
pub async fn home(state: State, req: HttpRequest) -> HttpResponse {
    let q = Loose::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let (lang, chosen) = lang_of(&req);
    let res = match session_of(&state, &req) {
        None => {
            let c = chrome(&state, &req, lang, None, "portal_title");
            html(
                StatusCode::OK,
                &Landing {
                    c,
                    login_href: "/portal/login?next=%2Fportal".into(),
                },
            )
        }
        Some((_, s)) => {
            let stale = q.contains_key("stale");
            let done = q.get("done").map(String::as_str).filter(|d| {
                [
                    "complaint",
                    "correction",
                    "request",
                    "approve",
                    "refuse",
                    "withdraw",
                ]
                .contains(d)
            });
            let extra = HomeExtra {
                flash: done
                    .map(|d| lang.catalog().s(&format!("done_{d}")).to_owned())
                    .unwrap_or_default(),
                error: if stale {
                    lang.catalog().s("err_csrf").to_owned()
                } else {
                    String::new()
                },
                ..HomeExtra::default()
            };
            home_page(&state, &req, lang, &s, extra, StatusCode::OK).await
        }
    };
    remember_lang(res, lang, chosen)
}

/// `GET /portal/accesses?cursor=&limit=`: the whole history, newest first.
pub async fn accesses(state: State, req: HttpRequest) -> HttpResponse {
    let q = Loose::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let number = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let (lang, chosen) = lang_of(&req);
    let Some((_, s)) = session_of(&state, &req) else {
        return to_login(&req);
    };
    let (cursor, limit) = (
        number("cursor"),
        number("limit").map_or(100, |l| usize::try_from(l.clamp(1, 200)).unwrap_or(100)),
    );
    let citizen = s.who.clone();
    let page = block(&state, move |st| {
        st.vault.my_accesses(&citizen, cursor, limit)
    })
    .await;
    let (items, next) = match page {
        Ok(p) => p,
        Err(e) => return unavailable(&state, &req, lang, Some(&s), &e),
    };
    let t = lang.catalog();
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    let page = Accesses {
        c: chrome(&state, &req, lang, Some(&s), "history"),
        accesses: items.iter().map(|i| AccessRow::of(i, l, t)).collect(),
        older_href: next
            .map(|n| format!("/portal/accesses?cursor={n}&limit={limit}"))
            .unwrap_or_default(),
    };
    remember_lang(html(StatusCode::OK, &page), lang, chosen)
}

/// The receipt page of entry `index`, with the complaint form's state.
pub(super) async fn receipt_page(
    state: &State,
    req: &HttpRequest,
    lang: Lang,
    session: &Session,
    index: u64,
    complaint: (String, String),
    status: StatusCode,
) -> HttpResponse {
    let citizen = session.who.clone();
    let got = block(state, move |st| {
        let r = st.vault.my_receipt(&citizen, index, st.now())?;
        // The entry as a history row: the same words as the history page.
        let (items, _) = st.vault.my_accesses(&citizen, Some(index + 1), 1)?;
        Ok((r, items.into_iter().find(|i| i.index == index)))
    })
    .await;
    let (r, item) = match got {
        Ok((r, Some(item))) => (r, item),
        Ok((_, None)) | Err(VaultError::AuditNotFound) => {
            let c = chrome(state, req, lang, Some(session), "not_found");
            return html(StatusCode::NOT_FOUND, &super::view::Message { c });
        }
        Err(e) => return unavailable(state, req, lang, Some(session), &e),
    };
    let t = lang.catalog();
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    let entry: serde_json::Value = serde_json::from_slice(&r.entry).unwrap_or_default();
    let receipt = json!({
        "index": r.index, "entry": entry, "leaf_hash": hex::encode(r.leaf_hash),
        "tree_size": r.tree_size,
        "hashes": r.hashes.iter().map(hex::encode).collect::<Vec<_>>(),
        "checkpoint": r.checkpoint,
        "entry_b64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &r.entry),
    });
    let page = ReceiptPage {
        c: chrome(state, req, lang, Some(session), "receipt"),
        js: state
            .portal
            .as_ref()
            .map(|p| p.assets.js.clone())
            .unwrap_or_default(),
        index,
        row: AccessRow::of(&item, l, t),
        receipt_json: script_json(&receipt),
        complaint_error: complaint.0,
        complaint_key: form_key(),
        complaint_text: complaint.1,
    };
    html(status, &page)
}

/// `GET /portal/receipt/{index}`: one entry of the citizen's history, its receipt checked in
/// the browser, and the form to complain about it.
pub async fn receipt(state: State, req: HttpRequest, index: web::Path<String>) -> HttpResponse {
    let (lang, chosen) = lang_of(&req);
    let Some((_, s)) = session_of(&state, &req) else {
        return to_login(&req);
    };
    let Ok(index) = index.into_inner().parse::<u64>() else {
        let c = chrome(&state, &req, lang, Some(&s), "not_found");
        return html(StatusCode::NOT_FOUND, &super::view::Message { c });
    };
    let res = receipt_page(
        &state,
        &req,
        lang,
        &s,
        index,
        (String::new(), String::new()),
        StatusCode::OK,
    )
    .await;
    remember_lang(res, lang, chosen)
}

/// `GET /portal/record`: the citizen's own fields, disputed ones marked (audited).
pub async fn record(state: State, req: HttpRequest) -> HttpResponse {
    let (lang, chosen) = lang_of(&req);
    let Some((_, s)) = session_of(&state, &req) else {
        return to_login(&req);
    };
    let citizen = s.who.clone();
    let got = block(&state, move |st| st.vault.my_record(&citizen, st.now())).await;
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    let fields = match got {
        Ok(r) => r
            .fields
            .iter()
            .map(|(name, v)| FieldRow {
                label: l.field(name),
                // A ward or commune by its official name, not its code.
                value: v
                    .as_str()
                    .and_then(vault_core::geo::unit)
                    .map_or_else(|| value_text(v), |u| u.name.to_owned()),
                disputed: r.disputed.iter().any(|d| d == name),
            })
            .collect(),
        Err(VaultError::CitizenNotFound) => Vec::new(),
        Err(e) => return unavailable(&state, &req, lang, Some(&s), &e),
    };
    let page = RecordPage {
        c: chrome(&state, &req, lang, Some(&s), "record"),
        fields,
    };
    remember_lang(html(StatusCode::OK, &page), lang, chosen)
}
