//! Signing citizens in: OpenID Connect authorization code flow with PKCE (S256), `state`
//! and `nonce` checked, the ID token verified with the issuer's keys exactly as bearer
//! tokens are (`oidc.rs`), against the portal's client id. A login is bound to the browser
//! that started it by a `__Host-` cookie; the page to return to is a portal path only.

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use serde::Deserialize;
use vault_core::CitizenId;

use super::session::{LOGIN_COOKIE, LOGIN_WINDOW, PendingLogin, SESSION_COOKIE, random_token};
use super::{Lang, chrome, html, lang_of, safe_next, secure, see_other, session_of, view};
use crate::config::PortalConfig;
use crate::state::{AppState, State};

/// The portal's OpenID client.
pub struct Client {
    /// The settings.
    pub config: PortalConfig,
    http: reqwest::blocking::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `config`, trusting `token_ca` for the token endpoint.
    pub fn new(config: &PortalConfig) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &config.token_ca {
            for c in crate::tls::load_certs(ca)? {
                roots.add(c).map_err(|e| format!("portal.token_ca: {e}"))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("portal token client: {e}"))?;
        Ok(Self {
            config: config.clone(),
            http,
        })
    }
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Percent-encodes a query or form value (RFC 3986 unreserved characters kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An endpoint as an absolute URL: a path is on `origin`.
pub(crate) fn absolute(url: &str, origin: &str) -> String {
    if url.starts_with('/') {
        format!("{origin}{url}")
    } else {
        url.to_owned()
    }
}

/// The origin the browser used (`https://host[:port]`), for a redirect URI given as a path.
pub(crate) fn browser_origin(req: &HttpRequest) -> String {
    format!("https://{}", req.connection_info().host())
}

#[derive(Debug, Deserialize)]
/// `GET /portal/login` parameters.
pub struct StartQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

pub(crate) fn cookie(name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .ok()
}

fn problem_page(state: &AppState, req: &HttpRequest, lang: Lang, key: &str) -> HttpResponse {
    let c = chrome(state, req, lang, None, key);
    html(
        actix_web::http::StatusCode::BAD_REQUEST,
        &view::Message { c },
    )
}

/// `GET /portal/login?next=`: starts a sign-in at the issuer.
pub async fn start(state: State, req: HttpRequest, q: web::Query<StartQuery>) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let _ = &q.lang;
    let Some(client) = state.portal.as_ref().and_then(|p| p.client.as_ref()) else {
        return problem_page(&state, &req, lang, "login_failed");
    };
    let next = q
        .next
        .clone()
        .filter(|n| safe_next(n))
        .unwrap_or_else(|| "/portal".into());
    let (Some(st), Some(nonce), Some(verifier), Some(browser)) = (
        random_token(32),
        random_token(32),
        random_token(32),
        random_token(32),
    ) else {
        return problem_page(&state, &req, lang, "err_unavailable");
    };
    let challenge = b64url(&vault_core::crypto::sha256(verifier.as_bytes()));
    let redirect_uri = absolute(&client.config.redirect_uri, &browser_origin(&req));
    let login = PendingLogin::new(
        verifier,
        nonce.clone(),
        next,
        redirect_uri.clone(),
        browser.clone(),
    );
    let Some(portal) = state.portal.as_ref() else {
        return problem_page(&state, &req, lang, "login_failed");
    };
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    if portal.login_limiter.check(&peer).is_err() {
        state.metrics.denial("rate_limited");
        return problem_page(&state, &req, lang, "err_rate");
    }
    if !portal.sessions.begin_login(st.clone(), login) {
        return problem_page(&state, &req, lang, "err_unavailable");
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

#[derive(Debug, Deserialize)]
/// `GET /portal/callback` parameters.
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

/// Exchanges the code for an ID token at the token endpoint (blocking: run off the worker).
pub(crate) fn exchange(
    client: &Client,
    origin: &str,
    code: &str,
    login: &PendingLogin,
) -> Result<String, String> {
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&client_id={}&code_verifier={}",
        encode(code),
        encode(&login.redirect_uri),
        encode(&client.config.client_id),
        encode(&login.verifier),
    );
    let url = absolute(&client.config.token_endpoint, origin);
    let resp = client
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .map_err(|e| format!("token endpoint: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("token endpoint: HTTP {}", resp.status()));
    }
    let answer: TokenAnswer = resp
        .json()
        .map_err(|_| "token endpoint: no id_token in the answer".to_owned())?;
    Ok(answer.id_token)
}

/// `GET /portal/callback?code=&state=`: ends a sign-in and starts a session.
pub async fn callback(
    state: State,
    req: HttpRequest,
    q: web::Query<CallbackQuery>,
) -> HttpResponse {
    let (lang, _) = lang_of(&req);
    let failed = |why: &str| {
        tracing::warn!(target: "vault::portal", reason = why, "sign-in failed");
        problem_page(&state, &req, lang, "login_failed")
    };
    let (Some(portal), Some(client)) = (
        state.portal.as_ref(),
        state.portal.as_ref().and_then(|p| p.client.as_ref()),
    ) else {
        return failed("portal not configured");
    };
    if q.error.is_some() {
        return failed("the issuer answered an error");
    }
    let (Some(code), Some(st)) = (q.code.as_deref(), q.state.as_deref()) else {
        return failed("no code or state");
    };
    let Some(login) = portal.sessions.take_login(st) else {
        return failed("unknown or expired state");
    };
    let browser = super::cookie_value(&req, LOGIN_COOKIE).unwrap_or_default();
    if !vault_core::crypto::ct_eq(browser.as_bytes(), login.browser.as_bytes()) {
        return failed("the login was started by another browser");
    }
    let origin = state.self_origin.get().cloned().unwrap_or_default();
    let (code, st2) = (code.to_owned(), state.clone());
    let login2 = login.clone();
    let token = web::block(move || {
        let client = st2
            .portal
            .as_ref()
            .and_then(|p| p.client.as_ref())
            .ok_or_else(|| "portal not configured".to_owned())?;
        exchange(client, &origin, &code, &login2)
    })
    .await;
    let token = match token {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return failed(&e),
        Err(_) => return failed("blocking pool"),
    };
    let now = state.now().as_secs();
    let Some(claims) = state.oidc.verify_for(&token, now, &client.config.client_id) else {
        return failed("the ID token does not verify");
    };
    let nonce_ok = claims
        .nonce
        .as_deref()
        .is_some_and(|n| vault_core::crypto::ct_eq(n.as_bytes(), login.nonce.as_bytes()));
    if !nonce_ok {
        return failed("the ID token's nonce is not this login's");
    }
    let Ok(citizen) = CitizenId::parse(&claims.sub) else {
        return failed("the subject is not a citizen id");
    };
    let Some(session) = portal.sessions.start(citizen) else {
        return failed("too many sessions");
    };
    let mut res = see_other(&login.next);
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

#[derive(Debug, Deserialize)]
/// The logout form.
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /portal/logout`: ends the session on the server and clears the cookie.
pub async fn logout(state: State, req: HttpRequest, form: web::Form<LogoutForm>) -> HttpResponse {
    if let (Some((cookie_value, s)), Some(portal)) =
        (session_of(&state, &req), state.portal.as_ref())
    {
        // A logout another site made the browser send changes nothing.
        if !vault_core::crypto::ct_eq(form.csrf.as_bytes(), s.csrf.as_bytes()) {
            return see_other("/portal");
        }
        portal.sessions.end(&cookie_value);
    }
    let mut res = see_other("/portal");
    if let Some(v) = cookie(SESSION_COOKIE, "", 0) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    secure(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(encode("AZaz09-._~"), "AZaz09-._~");
    }
}
