//! The audit console (`/audit-console`, SPEC §8): server-rendered pages for auditors over
//! the same core calls as the auditor API, each audited the same way. Sign-in is the
//! portal's OpenID client with the console's redirect URI; the ID token must carry the
//! auditor role. Entry search is a POST (a citizen id never reaches a URL); proofs and
//! checkpoint consistency are checked in the browser (`verify.js`).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde_json::{Value, json};
use vault_core::audit::{AuditQuery, Event, SafeId};
use vault_core::case::{ComplaintOutcome, RequestStatus, RequestUpdate};
use vault_core::vault::{Attempt, BreakGlassItem, Caller, IdempotencyKey, Once, RequestFilter};
use vault_core::{CitizenId, Timestamp, VaultError};

use crate::portal::i18n::Lang;
use crate::portal::login::{absolute, browser_origin, cookie, encode, exchange};
use crate::portal::session::{LOGIN_WINDOW, PendingLogin, Session, random_token};
use crate::portal::view::{Chrome, Labels, local_time, script_json};
use crate::portal::{cookie_value, html, lang_of, remember_lang, see_other};
use crate::state::{AppState, State};
use crate::tls::PeerCert;
use crate::x509::CertIdentity;

/// A page with a title, a message and a way back.
#[derive(Template)]
#[template(path = "console/message.html")]
struct Message {
    c: Chrome,
}

/// The console's session cookie.
const SESSION_COOKIE: &str = "__Host-vault-console";
/// The console's login-in-progress cookie.
const LOGIN_COOKIE: &str = "__Host-vault-console-login";

type Auditor = Session<SafeId>;
type Loose = web::Query<HashMap<String, String>>;

/// Registers the console's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/audit-console")
            .route("", web::get().to(home))
            .route("/", web::get().to(home))
            .route("/login", web::get().to(login))
            .route("/login/certificate", web::post().to(login_certificate))
            .route("/callback", web::get().to(callback))
            .route("/logout", web::post().to(logout))
            .route("/search", web::post().to(search))
            .route("/entries/{index}", web::get().to(entry))
            .route("/checkpoints", web::get().to(checkpoints))
            .route("/break-glass/{grant_id}/review", web::post().to(review))
            .route("/complaints/{id}/answer", web::post().to(answer))
            .route("/requests/{id}", web::post().to(update_request))
            .route("/reports/breach", web::get().to(breach))
            .route("/reports/reuse", web::get().to(reuse))
            .route("/reports/inventory", web::get().to(inventory)),
    );
}

fn session(state: &AppState, req: &HttpRequest) -> Option<(String, Auditor)> {
    let portal = state.portal.as_ref()?;
    let value = cookie_value(req, SESSION_COOKIE)?;
    let s = portal.console_sessions.get(&value)?;
    // A session opened with a certificate is good only over a connection with it.
    if let Some(bound) = &s.cert {
        let peer = req.conn_data::<PeerCert>()?;
        if !vault_core::crypto::ct_eq(bound.as_bytes(), peer.thumbprint.as_bytes()) {
            return None;
        }
    }
    Some((value, s))
}

/// The auditor the connection's client certificate names, if any.
fn certificate_auditor(req: &HttpRequest) -> Option<(SafeId, String)> {
    let peer = req.conn_data::<PeerCert>()?;
    match &peer.identity {
        Some(CertIdentity::Auditor(id)) => Some((SafeId::parse(id).ok()?, peer.thumbprint.clone())),
        _ => None,
    }
}

/// The path of this request for the language switch (only the console's own pages).
fn here(req: &HttpRequest) -> String {
    let p = req.path();
    if p == "/audit-console" || (p.starts_with("/audit-console/") && !p.contains("//")) {
        p.to_owned()
    } else {
        "/audit-console".into()
    }
}

fn chrome(
    state: &AppState,
    req: &HttpRequest,
    lang: Lang,
    s: Option<&Auditor>,
    title: &str,
) -> Chrome {
    let t = lang.catalog();
    let other = if lang == Lang::Vi { Lang::En } else { Lang::Vi };
    Chrome {
        lang: lang.code(),
        t,
        title: t.s(title).to_owned(),
        css: state.portal_css(),
        csrf: s.map(|s| s.csrf.clone()).unwrap_or_default(),
        signed_in: s.is_some(),
        other_lang_href: format!("{}?lang={}", here(req), other.code()),
        flash: String::new(),
        error: String::new(),
    }
}

async fn block<T, F>(state: &State, f: F) -> Result<T, VaultError>
where
    F: FnOnce(&AppState) -> Result<T, VaultError> + Send + 'static,
    T: Send + 'static,
{
    let s = state.clone().into_inner();
    web::block(move || f(&s))
        .await
        .map_err(|_| VaultError::AuditUnavailable)?
}

fn form_key() -> String {
    random_token(16).unwrap_or_default()
}

fn message(
    state: &AppState,
    req: &HttpRequest,
    lang: Lang,
    s: Option<&Auditor>,
    key: &str,
    status: StatusCode,
) -> HttpResponse {
    html(
        status,
        &Message {
            c: chrome(state, req, lang, s, key),
        },
    )
}

fn failed(
    state: &AppState,
    req: &HttpRequest,
    lang: Lang,
    s: Option<&Auditor>,
    e: &VaultError,
) -> HttpResponse {
    tracing::warn!(target: "vault::console", code = e.code(), "console page not served");
    let (key, status) = match e {
        VaultError::AuditNotFound | VaultError::CaseNotFound | VaultError::GrantNotFound => {
            ("not_found", StatusCode::NOT_FOUND)
        }
        e if e.is_refusal() => ("err_invalid_short", StatusCode::BAD_REQUEST),
        _ => ("err_unavailable", StatusCode::SERVICE_UNAVAILABLE),
    };
    message(state, req, lang, s, key, status)
}

fn to_login(req: &HttpRequest) -> HttpResponse {
    let _ = req;
    see_other("/audit-console/login")
}

// ---- sign-in -----------------------------------------------------------------------------

async fn login(state: State, req: HttpRequest) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let (Some(portal), Some(client)) = (
        state.portal.as_ref(),
        state.portal.as_ref().and_then(|p| p.client.as_ref()),
    ) else {
        return message(
            &state,
            &req,
            lang,
            None,
            "login_failed",
            StatusCode::BAD_REQUEST,
        );
    };
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    if portal.login_limiter.check(&peer).is_err() {
        return message(
            &state,
            &req,
            lang,
            None,
            "err_rate",
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let (Some(st), Some(nonce), Some(verifier), Some(browser)) = (
        random_token(32),
        random_token(32),
        random_token(32),
        random_token(32),
    ) else {
        return message(
            &state,
            &req,
            lang,
            None,
            "err_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    let challenge = crate::portal::login::b64url(&vault_core::crypto::sha256(verifier.as_bytes()));
    let redirect_uri = absolute(&client.config.console_redirect_uri, &browser_origin(&req));
    let pending = PendingLogin::new(
        verifier,
        nonce.clone(),
        "/audit-console".into(),
        redirect_uri.clone(),
        browser.clone(),
    );
    if !portal.console_sessions.begin_login(st.clone(), pending) {
        return message(
            &state,
            &req,
            lang,
            None,
            "err_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    let endpoint = &client.config.authorization_endpoint;
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    let location = format!(
        "{endpoint}{sep}response_type=code&client_id={}&redirect_uri={}&scope=openid&state={}&nonce={}&code_challenge={}&code_challenge_method=S256&ui_locales={}",
        encode(&client.config.client_id),
        encode(&redirect_uri),
        encode(&st),
        encode(&nonce),
        encode(&challenge),
        lang.code(),
    );
    let mut res = see_other(&location);
    if let Some(v) = cookie(
        LOGIN_COOKIE,
        &browser,
        LOGIN_WINDOW.as_secs().try_into().unwrap_or(600),
    ) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

async fn callback(state: State, req: HttpRequest, q: Loose) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let fail = |why: &str, key: &str| {
        tracing::warn!(target: "vault::console", reason = why, "auditor sign-in failed");
        message(&state, &req, lang, None, key, StatusCode::BAD_REQUEST)
    };
    let Some(portal) = state.portal.as_ref() else {
        return fail("portal not configured", "login_failed");
    };
    let Some(client) = portal.client.as_ref() else {
        return fail("portal not configured", "login_failed");
    };
    let (Some(code), Some(st)) = (q.get("code"), q.get("state")) else {
        return fail("no code or state", "login_failed");
    };
    let Some(pending) = portal.console_sessions.take_login(st) else {
        return fail("unknown or expired state", "login_failed");
    };
    let browser = cookie_value(&req, LOGIN_COOKIE).unwrap_or_default();
    if !vault_core::crypto::ct_eq(browser.as_bytes(), pending.browser.as_bytes()) {
        return fail("started by another browser", "login_failed");
    }
    let origin = state.self_origin.get().cloned().unwrap_or_default();
    let (code, st2, p2) = (code.clone(), state.clone(), pending.clone());
    let token = web::block(move || {
        let client = st2
            .portal
            .as_ref()
            .and_then(|p| p.client.as_ref())
            .ok_or_else(|| "portal not configured".to_owned())?;
        exchange(client, &origin, &code, &p2)
    })
    .await;
    let Ok(Ok(token)) = token else {
        return fail("token exchange", "login_failed");
    };
    let Some(claims) =
        state
            .oidc
            .verify_for(&token, state.now().as_secs(), &client.config.client_id)
    else {
        return fail("the ID token does not verify", "login_failed");
    };
    if !claims
        .nonce
        .as_deref()
        .is_some_and(|n| vault_core::crypto::ct_eq(n.as_bytes(), pending.nonce.as_bytes()))
    {
        return fail("nonce", "login_failed");
    }
    if !claims.roles.iter().any(|r| *r == state.auditor_role) {
        return fail("no auditor role", "c_not_auditor");
    }
    let Ok(who) = SafeId::parse(&claims.sub) else {
        return fail("subject is not an auditor id", "c_not_auditor");
    };
    let Some(session) = portal.console_sessions.start(who) else {
        return fail("too many sessions", "err_unavailable");
    };
    let mut res = see_other("/audit-console");
    for v in [
        cookie(SESSION_COOKIE, &session, 12 * 3600),
        cookie(LOGIN_COOKIE, "", 0),
    ]
    .into_iter()
    .flatten()
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// `POST /audit-console/login/certificate`: a session for the auditor the connection's
/// client certificate names, bound to that certificate. Only from the console's own page
/// (`Origin` and `Sec-Fetch-Site`), so another site cannot sign a browser in.
async fn login_certificate(state: State, req: HttpRequest) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let fail = |why: &str, key: &str| {
        tracing::warn!(target: "vault::console", reason = why, "auditor sign-in failed");
        message(&state, &req, lang, None, key, StatusCode::BAD_REQUEST)
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site").is_some_and(|v| v != "same-origin")
        || header("origin").is_some_and(|o| o != browser_origin(&req))
    {
        return fail("sent from another site", "login_failed");
    }
    let Some((who, thumbprint)) = certificate_auditor(&req) else {
        return fail("no auditor certificate", "c_not_auditor");
    };
    let Some(portal) = state.portal.as_ref() else {
        return fail("portal not configured", "login_failed");
    };
    let Some(session) = portal.console_sessions.start_bound(who, Some(thumbprint)) else {
        return fail("too many sessions", "err_unavailable");
    };
    let mut res = see_other("/audit-console");
    if let Some(v) = cookie(SESSION_COOKIE, &session, 12 * 3600) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

async fn logout(
    state: State,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    if let (Some((value, s)), Some(portal)) = (session(&state, &req), state.portal.as_ref()) {
        let csrf = form.get("csrf").map_or("", String::as_str);
        if !vault_core::crypto::ct_eq(csrf.as_bytes(), s.csrf.as_bytes()) {
            return see_other("/audit-console");
        }
        portal.console_sessions.end(&value);
    }
    let mut res = see_other("/audit-console");
    if let Some(v) = cookie(SESSION_COOKIE, "", 0) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

// ---- the home page -------------------------------------------------------------------------

#[derive(Debug, Default)]
struct SearchForm {
    agency: String,
    official: String,
    purpose: String,
    event: String,
    citizen_id: String,
    from: String,
    to: String,
    cursor: String,
}

struct BgRow {
    id: String,
    agency: String,
    purpose: String,
    official: String,
    dossier: String,
    fields: String,
    issued: String,
    due: String,
    overdue: bool,
    releases: Vec<u64>,
    form_key: String,
}

struct ComplaintRow {
    id: String,
    index: u64,
    text: String,
    filed_at: String,
    form_key: String,
}

struct AnomalyRow {
    rule: String,
    severity: String,
    agency: String,
    window: String,
    count: u64,
    entries: Vec<u64>,
}

struct RequestRow {
    id: String,
    kind: String,
    status: String,
    overdue: bool,
    received_at: String,
    acknowledge_by: String,
    complete_by: String,
    form_key: String,
}

#[derive(Template)]
#[template(path = "console/landing.html")]
struct Landing {
    c: Chrome,
    /// The auditor the browser's client certificate names, offered a sign-in with it.
    certificate: Option<String>,
    /// Whether an OpenID provider is configured.
    oidc: bool,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct Home {
    c: Chrome,
    q: SearchForm,
    break_glass: Vec<BgRow>,
    complaints: Vec<ComplaintRow>,
    requests: Vec<RequestRow>,
    anomalies: Vec<AnomalyRow>,
}

async fn home(state: State, req: HttpRequest, q: Loose) -> HttpResponse {
    let (lang, chosen) = lang_of(&req);
    let Some((_, s)) = session(&state, &req) else {
        let page = Landing {
            c: chrome(&state, &req, lang, None, "c_title"),
            certificate: certificate_auditor(&req).map(|(id, _)| id.to_string()),
            oidc: state.portal.as_ref().is_some_and(|p| p.client.is_some()),
        };
        return remember_lang(html(StatusCode::OK, &page), lang, chosen);
    };
    let who = s.who.clone();
    let hours = state.break_glass_review_hours;
    let data = block(&state, move |st| {
        let now = st.now();
        let v = &st.vault;
        Ok((
            v.break_glass_list(&who, false, hours, now)?,
            v.complaints_list(&who, false, now)?,
            v.requests_list(&who, RequestFilter::Open, now)?,
            v.anomalies(&who, now.plus_secs(-7 * 86_400), now, hours, now)?,
            now,
        ))
    })
    .await;
    let (bg, complaints, requests, anomalies, now) = match data {
        Ok(d) => d,
        Err(e) => return failed(&state, &req, lang, Some(&s), &e),
    };
    let t = lang.catalog();
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    let mut c = chrome(&state, &req, lang, Some(&s), "c_title");
    if let Some(done) = q
        .get("done")
        .filter(|d| ["review", "answer", "update"].contains(&d.as_str()))
    {
        c.flash = t.s(&format!("c_done_{done}")).to_owned();
    }
    let page = Home {
        q: SearchForm::default(),
        break_glass: bg.iter().map(|b| bg_row(b, l, now)).collect(),
        complaints: complaints
            .iter()
            .map(|(k, _)| ComplaintRow {
                id: k.id.clone(),
                index: k.audit_index,
                text: k.text.clone(),
                filed_at: local_time(k.filed_at),
                form_key: form_key(),
            })
            .collect(),
        requests: requests
            .iter()
            .map(|r| RequestRow {
                id: r.id.clone(),
                kind: t.s(&format!("kind_{}", r.kind.as_str())).to_owned(),
                status: t.s(&format!("status_{}", r.status().as_str())).to_owned(),
                overdue: r.overdue(now),
                received_at: local_time(r.received_at),
                acknowledge_by: local_time(r.acknowledge_by),
                complete_by: local_time(r.complete_by),
                form_key: form_key(),
            })
            .collect(),
        anomalies: anomalies
            .iter()
            .take(100)
            .map(|a| AnomalyRow {
                rule: t.s(&format!("c_rule_{}", a.rule)).to_owned(),
                severity: t.s(&format!("c_severity_{}", a.severity)).to_owned(),
                agency: a.agency.as_deref().map(|x| l.agency(x)).unwrap_or_default(),
                window: format!("{} — {}", local_time(a.from), local_time(a.to)),
                count: a.count,
                entries: a.entries.iter().take(50).copied().collect(),
            })
            .collect(),
        c,
    };
    remember_lang(html(StatusCode::OK, &page), lang, chosen)
}

fn bg_row(b: &BreakGlassItem, l: Labels<'_>, now: Timestamp) -> BgRow {
    let g = &b.grant;
    BgRow {
        id: g.id.to_string(),
        agency: l.agency(&g.agency),
        purpose: l.purpose(&g.purpose),
        official: g.official.clone(),
        dossier: g.dossier_id.to_string(),
        fields: l.fields(&g.fields),
        issued: local_time(g.created),
        due: local_time(b.review_due),
        overdue: now > b.review_due,
        releases: b.releases.clone(),
        form_key: form_key(),
    }
}

// ---- search and entries --------------------------------------------------------------------

struct ResultRow {
    index: u64,
    time: String,
    event: String,
    actor: String,
    purpose: String,
    fields: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "console/results.html")]
struct Results {
    c: Chrome,
    q: SearchForm,
    rows: Vec<ResultRow>,
    next: String,
    carry: Vec<(String, String)>,
}

/// Records the refusal of an auditor's form or search (as the API's refusals of an
/// identified caller are recorded), within the per-identity limit.
async fn refused(state: &State, who: &SafeId, op: &'static str, code: &'static str) {
    if state.refusal_limiter.check(&format!("u:{who}")).is_err() {
        state.metrics.denial("rate_limited");
        return;
    }
    let who = who.clone();
    let _ = block(state, move |st| {
        st.vault
            .record_refusal(Caller::Auditor(&who), Attempt::new(op), code, st.now())
    })
    .await;
}

fn checked_csrf(form: &HashMap<String, String>, s: &Auditor) -> bool {
    let csrf = form.get("csrf").map_or("", String::as_str);
    vault_core::crypto::ct_eq(csrf.as_bytes(), s.csrf.as_bytes())
}

async fn search(
    state: State,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let Some((_, s)) = session(&state, &req) else {
        return to_login(&req);
    };
    if !checked_csrf(&form, &s) {
        refused(&state, &s.who, "audit.entries", "invalid_request").await;
        return see_other("/audit-console#entries");
    }
    let t = lang.catalog();
    let get = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let q = SearchForm {
        agency: get("agency"),
        official: get("official"),
        purpose: get("purpose"),
        event: get("event"),
        citizen_id: get("citizen_id"),
        from: get("from"),
        to: get("to"),
        cursor: get("cursor"),
    };
    let id = |v: &str, field: &'static str| -> Result<Option<SafeId>, &'static str> {
        if v.is_empty() {
            return Ok(None);
        }
        SafeId::parse(v).map(Some).map_err(|_| field)
    };
    let time = |v: &str, field: &'static str| -> Result<Option<Timestamp>, &'static str> {
        if v.is_empty() {
            return Ok(None);
        }
        crate::routes::auditor::parse_time(field, v)
            .map(Some)
            .map_err(|_| field)
    };
    let parsed = (|| {
        let event = if q.event.is_empty() {
            None
        } else {
            Some(Event::parse(&q.event).ok_or("event")?)
        };
        let citizen = if q.citizen_id.is_empty() {
            None
        } else {
            Some(CitizenId::parse(&q.citizen_id).map_err(|_| "c_citizen_id")?)
        };
        let query = AuditQuery {
            subject: None,
            agency: id(&q.agency, "agency")?,
            official: id(&q.official, "official")?,
            purpose: id(&q.purpose, "purpose")?,
            event,
            from: time(&q.from, "c_from")?,
            to: time(&q.to, "c_to")?,
        };
        let cursor = q.cursor.parse::<u64>().ok();
        Ok::<_, &'static str>((query, citizen, cursor))
    })();
    let (query, citizen, cursor) = match parsed {
        Ok(p) => p,
        Err(field) => {
            refused(&state, &s.who, "audit.entries", "invalid_request").await;
            // The field named, in the reader's language; the citizen id typed is not echoed.
            let mut c = chrome(&state, &req, lang, Some(&s), "c_entries");
            c.error = t.fmt("err_invalid", &[("field", t.s(field))]);
            let page = Results {
                c,
                q: SearchForm {
                    citizen_id: String::new(),
                    ..q
                },
                rows: Vec::new(),
                next: String::new(),
                carry: Vec::new(),
            };
            return html(StatusCode::BAD_REQUEST, &page);
        }
    };
    let who = s.who.clone();
    let got = block(&state, move |st| {
        let page = st
            .vault
            .audit_query(&who, &query, citizen.as_ref(), cursor, 50, st.now())?;
        let rows = page
            .indexes
            .iter()
            .map(|&i| st.vault.audit().entry(i).map(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, page.next))
    })
    .await;
    let (rows, next) = match got {
        Ok(r) => r,
        Err(e) => return failed(&state, &req, lang, Some(&s), &e),
    };
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    let rows = rows
        .iter()
        .map(|(i, bytes)| {
            let v: Value = serde_json::from_slice(bytes).unwrap_or_default();
            let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let actor = v.get("actor").cloned().unwrap_or_default();
            let actor = [
                actor.get("kind").and_then(Value::as_str),
                actor.get("id").and_then(Value::as_str),
                actor.get("agency").and_then(Value::as_str),
            ]
            .iter()
            .flatten()
            .copied()
            .collect::<Vec<_>>()
            .join(" · ");
            let fields: Vec<String> = v
                .get("fields")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            ResultRow {
                index: *i,
                time: vault_core::audit::parse_time(&str_of("time"))
                    .map_or_else(|| str_of("time"), local_time),
                event: str_of("event"),
                actor,
                purpose: str_of("purpose"),
                fields: l.fields(&fields),
                outcome: str_of("outcome"),
            }
        })
        .collect();
    // Paging repeats the search (by POST: the citizen id stays out of URLs).
    let carry: Vec<(String, String)> = [
        ("agency", &q.agency),
        ("official", &q.official),
        ("purpose", &q.purpose),
        ("event", &q.event),
        ("citizen_id", &q.citizen_id),
        ("from", &q.from),
        ("to", &q.to),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| ((*k).to_owned(), (*v).clone()))
    .collect();
    let page = Results {
        c: chrome(&state, &req, lang, Some(&s), "c_entries"),
        q: SearchForm {
            cursor: String::new(),
            ..q
        },
        rows,
        next: next.map(|n| n.to_string()).unwrap_or_default(),
        carry,
    };
    html(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "console/entry.html")]
struct EntryPage {
    c: Chrome,
    js: String,
    index: u64,
    leaf: String,
    tree_size: u64,
    pretty: String,
    proof_json: String,
}

async fn entry(state: State, req: HttpRequest, index: web::Path<String>) -> HttpResponse {
    let (lang, chosen) = lang_of(&req);
    let Some((_, s)) = session(&state, &req) else {
        return to_login(&req);
    };
    let Ok(index) = index.into_inner().parse::<u64>() else {
        return message(
            &state,
            &req,
            lang,
            Some(&s),
            "not_found",
            StatusCode::NOT_FOUND,
        );
    };
    let who = s.who.clone();
    let r = match block(&state, move |st| {
        st.vault.auditor_receipt(&who, index, st.now())
    })
    .await
    {
        Ok(r) => r,
        Err(e) => return failed(&state, &req, lang, Some(&s), &e),
    };
    let entry: Value = serde_json::from_slice(&r.entry).unwrap_or_default();
    let proof = json!({
        "index": r.index, "entry": entry, "leaf_hash": hex::encode(r.leaf_hash),
        "tree_size": r.tree_size,
        "hashes": r.hashes.iter().map(hex::encode).collect::<Vec<_>>(),
        "checkpoint": r.checkpoint,
        "entry_b64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &r.entry),
    });
    let page = EntryPage {
        c: chrome(&state, &req, lang, Some(&s), "c_entry"),
        js: state
            .portal
            .as_ref()
            .map(crate::portal::PortalState::js)
            .unwrap_or_default(),
        index,
        leaf: hex::encode(r.leaf_hash),
        tree_size: r.tree_size,
        pretty: serde_json::to_string_pretty(&entry).unwrap_or_default(),
        proof_json: script_json(&proof),
    };
    remember_lang(html(StatusCode::OK, &page), lang, chosen)
}

#[derive(Template)]
#[template(path = "console/checkpoints.html")]
struct CheckpointsPage {
    c: Chrome,
    js: String,
    latest: String,
    from: String,
    to: u64,
    older: String,
    consistency_json: String,
}

async fn checkpoints(state: State, req: HttpRequest, q: Loose) -> HttpResponse {
    let (lang, chosen) = lang_of(&req);
    let Some((_, s)) = session(&state, &req) else {
        return to_login(&req);
    };
    let from = q.get("from").and_then(|f| f.trim().parse::<u64>().ok());
    let who = s.who.clone();
    let got = block(&state, move |st| {
        st.vault.auditor_checkpoints(&who, from, st.now())
    })
    .await;
    let (latest, size, older) = match got {
        Ok(g) => g,
        Err(e) => return failed(&state, &req, lang, Some(&s), &e),
    };
    let (older_note, consistency_json) = match older {
        Some((note, hashes)) => {
            let pair = json!({"old": note, "new": latest,
                              "hashes": hashes.iter().map(hex::encode).collect::<Vec<_>>()});
            (note, script_json(&pair))
        }
        None => (String::new(), String::new()),
    };
    let page = CheckpointsPage {
        c: chrome(&state, &req, lang, Some(&s), "c_checkpoints"),
        js: state
            .portal
            .as_ref()
            .map(crate::portal::PortalState::js)
            .unwrap_or_default(),
        latest,
        // The size of the checkpoint found (at the size asked, or the nearest below it).
        from: if older_note.is_empty() {
            from.map(|f| f.to_string()).unwrap_or_default()
        } else {
            older_note.lines().nth(1).unwrap_or_default().to_owned()
        },
        to: size,
        older: older_note,
        consistency_json,
    };
    remember_lang(html(StatusCode::OK, &page), lang, chosen)
}

// ---- actions -------------------------------------------------------------------------------

/// Runs an auditor's action once per form key; back to the home page with a message, or the
/// error in words.
async fn act<F>(
    state: State,
    req: HttpRequest,
    form: &HashMap<String, String>,
    op: &'static str,
    done: &str,
    field: &'static str,
    run: F,
) -> HttpResponse
where
    F: FnOnce(&AppState, &SafeId, Timestamp) -> Result<(), VaultError> + Send + 'static,
{
    let (lang, _) = lang_of(&req);
    let Some((_, s)) = session(&state, &req) else {
        return to_login(&req);
    };
    if !checked_csrf(form, &s) {
        refused(&state, &s.who, op, "invalid_request").await;
        return see_other("/audit-console");
    }
    let key = form.get("form_key").and_then(|k| IdempotencyKey::parse(k));
    let request = json!(
        form.iter()
            .filter(|(k, _)| *k != "csrf")
            .collect::<std::collections::BTreeMap<_, _>>()
    )
    .to_string();
    let who = s.who.clone();
    let result = block(&state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Auditor(&who),
            attempt: Attempt::new(op),
            key: key.as_ref(),
            request: request.as_bytes(),
        };
        st.vault
            .once(call, now, || {
                run(st, &who, now).map(|()| (200, Value::Null))
            })
            .map(|_| ())
    })
    .await;
    match result {
        Ok(()) => see_other(&format!("/audit-console?done={done}")),
        Err(e) => {
            let t = lang.catalog();
            let mut c = chrome(&state, &req, lang, Some(&s), "c_title");
            c.error = match &e {
                VaultError::Denied(_) => t.fmt("err_invalid", &[("field", t.s(field))]),
                VaultError::CaseClosed | VaultError::GrantNotPending => {
                    t.s("c_err_done").to_owned()
                }
                e if e.is_refusal() => t.fmt("err_generic", &[("code", e.code())]),
                _ => t.s("err_unavailable").to_owned(),
            };
            let status = if e.is_refusal() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            html(status, &Message { c })
        }
    }
}

/// A form with a value the console never offers: named, refused, recorded.
async fn bad_form(state: &State, req: &HttpRequest, field: &'static str) -> HttpResponse {
    let (lang, _) = lang_of(req);
    let Some((_, s)) = session(state, req) else {
        return to_login(req);
    };
    refused(state, &s.who, "console.form", "invalid_request").await;
    let t = lang.catalog();
    let mut c = chrome(state, req, lang, Some(&s), "c_title");
    c.error = t.fmt("err_invalid", &[("field", t.s(field))]);
    html(StatusCode::BAD_REQUEST, &Message { c })
}

async fn review(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let grant = id.into_inner();
    let justified = match form.get("outcome").map(String::as_str) {
        Some("justified") => true,
        Some("unjustified") => false,
        _ => return bad_form(&state, &req, "outcome").await,
    };
    let note = form.get("note").cloned().unwrap_or_default();
    let f = form.into_inner();
    act(
        state,
        req,
        &f,
        "breakglass.review",
        "review",
        "note",
        move |st, who, now| {
            st.vault
                .review_break_glass_with_note(who, &grant, justified, &note, now)
                .map(|_| ())
        },
    )
    .await
}

async fn answer(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let id = id.into_inner();
    let Some(outcome) = form.get("outcome").and_then(|o| ComplaintOutcome::parse(o)) else {
        return bad_form(&state, &req, "outcome").await;
    };
    let text = form.get("text").cloned().unwrap_or_default();
    let f = form.into_inner();
    act(
        state,
        req,
        &f,
        "complaint.answer",
        "answer",
        "answer",
        move |st, who, now| {
            st.vault
                .answer_complaint(who, &id, outcome, &text, now)
                .map(|_| ())
        },
    )
    .await
}

async fn update_request(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let id = id.into_inner();
    let Some(status) = form
        .get("status")
        .and_then(|s| RequestStatus::parse(s))
        .filter(|s| *s != RequestStatus::Received)
    else {
        return bad_form(&state, &req, "status").await;
    };
    // The extension's length counts only for an extension (1–15 days, 15 if left empty).
    let extend_days = match form.get("extend_days").map(|d| d.trim()) {
        _ if status != RequestStatus::Extended => None,
        None | Some("") => Some(vault_core::case::MAX_EXTENSION_DAYS),
        Some(d) => match d.parse::<u32>() {
            Ok(n) if (1..=vault_core::case::MAX_EXTENSION_DAYS).contains(&n) => Some(n),
            _ => return bad_form(&state, &req, "extend_days").await,
        },
    };
    let update = RequestUpdate {
        status,
        note: form.get("note").cloned().unwrap_or_default(),
        extend_days,
        other_processor: form.get("other_processor").is_some_and(|v| v == "on"),
    };
    let f = form.into_inner();
    act(
        state,
        req,
        &f,
        "request.update",
        "update",
        "note",
        move |st, who, now| st.vault.update_request(who, &id, &update, now).map(|_| ()),
    )
    .await
}

// ---- reports -------------------------------------------------------------------------------

struct BreachView {
    from: String,
    to: String,
    agency: String,
    official: String,
    affected: u64,
    fields: String,
    agencies: String,
    officials: String,
    events: Vec<(String, u64)>,
    entries: Vec<u64>,
}

#[derive(Template)]
#[template(path = "console/breach_page.html")]
struct BreachPage {
    c: Chrome,
    r: BreachView,
}

fn window(
    q: &HashMap<String, String>,
    now: Timestamp,
    hours: i64,
) -> Option<(Timestamp, Timestamp)> {
    let t = |k: &str| {
        q.get(k)
            .filter(|v| !v.trim().is_empty())
            .map(|v| crate::routes::auditor::parse_time(k, v.trim()).ok())
    };
    let to = match t("to") {
        Some(Some(v)) => v,
        Some(None) => return None,
        None => now,
    };
    let from = match t("from") {
        Some(Some(v)) => v,
        Some(None) => return None,
        None => to.plus_secs(-hours * 3_600),
    };
    (from <= to).then_some((from, to))
}

async fn breach(state: State, req: HttpRequest, q: Loose) -> HttpResponse {
    let (lang, chosen) = lang_of(&req);
    let Some((_, s)) = session(&state, &req) else {
        return to_login(&req);
    };
    let t = lang.catalog();
    let Some((from, to)) = window(&q, state.now(), 72) else {
        let mut c = chrome(&state, &req, lang, Some(&s), "c_breach");
        c.error = t.fmt("err_invalid", &[("field", t.s("c_window"))]);
        return html(StatusCode::BAD_REQUEST, &Message { c });
    };
    let pick = |k: &str| -> Result<Option<String>, ()> {
        match q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) if SafeId::parse(v).is_ok() => Ok(Some(v.to_owned())),
            Some(_) => Err(()),
        }
    };
    let (Ok(agency), Ok(official)) = (pick("agency"), pick("official")) else {
        return bad_form(&state, &req, "agency").await;
    };
    let who = s.who.clone();
    let got = block(&state, move |st| {
        st.vault.breach_report(
            &who,
            from,
            to,
            agency.as_deref(),
            official.as_deref(),
            st.now(),
        )
    })
    .await;
    let r = match got {
        Ok(r) => r,
        Err(e) => return failed(&state, &req, lang, Some(&s), &e),
    };
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    let view = BreachView {
        from: local_time(r.from),
        to: local_time(r.to),
        agency: r.agency.as_deref().map(|a| l.agency(a)).unwrap_or_default(),
        official: r.official.clone().unwrap_or_default(),
        affected: r.affected_citizens,
        fields: l.fields(&r.fields.iter().cloned().collect::<Vec<_>>()),
        agencies: r
            .agencies
            .iter()
            .map(|a| l.agency(a))
            .collect::<Vec<_>>()
            .join(", "),
        officials: r.officials.iter().cloned().collect::<Vec<_>>().join(", "),
        events: r.events.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        entries: r.entries.clone(),
    };
    let page = BreachPage {
        c: chrome(&state, &req, lang, Some(&s), "c_breach"),
        r: view,
    };
    remember_lang(html(StatusCode::OK, &page), lang, chosen)
}

#[derive(Template)]
#[template(path = "console/table.html")]
struct TablePage {
    c: Chrome,
    note: String,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

async fn reuse(state: State, req: HttpRequest, q: Loose) -> HttpResponse {
    let (lang, chosen) = lang_of(&req);
    let Some((_, s)) = session(&state, &req) else {
        return to_login(&req);
    };
    let Some((from, to)) = window(&q, state.now(), 30 * 24) else {
        return message(
            &state,
            &req,
            lang,
            Some(&s),
            "err_unavailable",
            StatusCode::BAD_REQUEST,
        );
    };
    let who = s.who.clone();
    let lines = match block(&state, move |st| {
        st.vault.reuse_report(&who, from, to, st.now())
    })
    .await
    {
        Ok(l) => l,
        Err(e) => return failed(&state, &req, lang, Some(&s), &e),
    };
    let t = lang.catalog();
    let l = Labels {
        policy: &state.vault.policy(),
        lang,
    };
    let page = TablePage {
        c: chrome(&state, &req, lang, Some(&s), "c_reuse"),
        note: format!("{} — {}", local_time(from), local_time(to)),
        head: [
            "agency",
            "purpose",
            "c_releases_supplied",
            "c_field_values",
            "c_citizens_served",
        ]
        .iter()
        .map(|k| t.s(k).to_owned())
        .collect(),
        rows: lines
            .iter()
            .map(|((a, p), line)| {
                vec![
                    l.agency(a),
                    l.purpose(p),
                    line.releases.to_string(),
                    line.field_values.to_string(),
                    line.citizens.to_string(),
                ]
            })
            .collect(),
    };
    remember_lang(html(StatusCode::OK, &page), lang, chosen)
}

async fn inventory(state: State, req: HttpRequest) -> HttpResponse {
    let (lang, chosen) = lang_of(&req);
    let Some((_, s)) = session(&state, &req) else {
        return to_login(&req);
    };
    let who = s.who.clone();
    if let Err(e) = block(&state, move |st| st.vault.inventory_read(&who, st.now())).await {
        return failed(&state, &req, lang, Some(&s), &e);
    }
    let t = lang.catalog();
    let policy = state.vault.policy();
    let l = Labels {
        policy: &policy,
        lang,
    };
    let page = TablePage {
        c: chrome(&state, &req, lang, Some(&s), "c_inventory"),
        note: format!("SHA-256 {}", policy.sha256_hex()),
        head: [
            "purpose",
            "c_legal_basis",
            "fields_requested",
            "c_agencies",
            "c_consent_rule",
            "c_ttl",
            "c_uses",
        ]
        .iter()
        .map(|k| t.s(k).to_owned())
        .collect(),
        rows: policy
            .purposes()
            .map(|p| {
                vec![
                    l.purpose(&p.id),
                    p.legal_basis.clone(),
                    l.fields(&p.fields),
                    policy
                        .agencies()
                        .filter(|a| a.purposes.contains(&p.id))
                        .map(|a| l.agency(&a.id))
                        .collect::<Vec<_>>()
                        .join(", "),
                    match p.consent {
                        vault_core::policy::ConsentRule::Required => "required",
                        vault_core::policy::ConsentRule::NotRequired => "not_required",
                    }
                    .to_owned(),
                    p.max_ttl_seconds.to_string(),
                    p.max_uses.to_string(),
                ]
            })
            .collect(),
    };
    remember_lang(html(StatusCode::OK, &page), lang, chosen)
}
