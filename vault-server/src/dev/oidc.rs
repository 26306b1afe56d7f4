//! The dev issuer as a small OpenID provider for the pages (SPEC §7): discovery, a login
//! page (a citizen id or an auditor id, no password: development only), the authorization
//! code flow with PKCE (S256 only) and a token endpoint answering an ID token with the
//! login's `nonce`. Codes live one minute in memory and are used once. Outside dev mode
//! these routes answer 404.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine as _;
use serde_json::json;

use super::{DEV_AUDIENCE, DevIssuer};
use crate::state::{AppState, State};

/// How long a code may wait for its exchange.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// ID tokens from a login last this long.
const TOKEN_TTL: i64 = 3600;

/// The dev provider: its signing key and the codes waiting for exchange.
#[derive(Debug)]
pub struct DevOidc {
    issuer: DevIssuer,
    codes: Mutex<HashMap<String, Code>>,
}

#[derive(Debug)]
struct Code {
    sub: String,
    auditor: bool,
    nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
    created: Instant,
}

impl DevOidc {
    /// The provider over the dev issuer's key.
    pub fn new(issuer: DevIssuer) -> Self {
        Self {
            issuer,
            codes: Mutex::new(HashMap::new()),
        }
    }
}

/// Registers the provider's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/dev-issuer/.well-known/openid-configuration",
        web::get().to(discovery),
    )
    .route("/dev-issuer/jwks", web::get().to(jwks))
    .route("/dev-issuer/authorize", web::get().to(authorize_page))
    .route("/dev-issuer/authorize", web::post().to(authorize))
    .route("/dev-issuer/token", web::post().to(token));
}

fn dev(state: &AppState) -> Option<&DevOidc> {
    state.dev.as_ref()
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().finish()
}

fn origin(req: &HttpRequest) -> String {
    format!("https://{}", req.connection_info().host())
}

async fn discovery(state: State, req: HttpRequest) -> HttpResponse {
    if dev(&state).is_none() {
        return not_found();
    }
    let o = origin(&req);
    HttpResponse::Ok().json(json!({
        "issuer": super::DEV_ISSUER,
        "authorization_endpoint": format!("{o}/dev-issuer/authorize"),
        "token_endpoint": format!("{o}/dev-issuer/token"),
        "jwks_uri": format!("{o}/dev-issuer/jwks"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["openid"],
        "claims_supported": ["sub", "roles", "nonce"],
    }))
}

async fn jwks(state: State) -> HttpResponse {
    match dev(&state) {
        Some(d) => HttpResponse::Ok().json(d.issuer.jwks_json()),
        None => not_found(),
    }
}

/// The authorization request's parameters, checked.
#[derive(Debug, Clone)]
struct AuthRequest {
    redirect_uri: String,
    state: String,
    nonce: Option<String>,
    challenge: String,
    /// The auditor console asked (its callback), not the portal.
    auditor: bool,
}

/// Only the pages of a vault on this machine may receive codes.
fn allowed_redirect(uri: &str) -> Option<bool> {
    let rest = uri.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/')?;
    let name = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            ""
        }
    });
    if !matches!(name, "localhost" | "127.0.0.1") {
        return None;
    }
    match path {
        "portal/callback" => Some(false),
        "audit-console/callback" => Some(true),
        _ => None,
    }
}

fn check(q: &HashMap<String, String>) -> Result<AuthRequest, &'static str> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("response_type") != "code" {
        return Err("response_type must be code");
    }
    if get("client_id") != DEV_AUDIENCE {
        return Err("unknown client_id");
    }
    let auditor = allowed_redirect(get("redirect_uri")).ok_or("redirect_uri not allowed")?;
    if get("code_challenge_method") != "S256" {
        return Err("PKCE with S256 is required");
    }
    let challenge = get("code_challenge");
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("code_challenge must be 43 base64url characters");
    }
    let st = get("state");
    if st.is_empty() || st.len() > 512 {
        return Err("state is required");
    }
    let nonce = q
        .get("nonce")
        .filter(|n| !n.is_empty() && n.len() <= 512)
        .cloned();
    Ok(AuthRequest {
        redirect_uri: get("redirect_uri").to_owned(),
        state: st.to_owned(),
        nonce,
        challenge: challenge.to_owned(),
        auditor,
    })
}

/// The parameters carried through the login form.
const CARRIED: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
];

#[derive(Template)]
#[template(path = "dev/login.html")]
struct LoginPage {
    css: String,
    error: String,
    params: Vec<(String, String)>,
    auditor: bool,
    value: String,
}

fn login_page(
    state: &AppState,
    q: &HashMap<String, String>,
    auditor: bool,
    error: &str,
    value: &str,
    status: actix_web::http::StatusCode,
) -> HttpResponse {
    let mut params: Vec<(String, String)> = CARRIED
        .iter()
        .filter_map(|k| q.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    params.push(("code_challenge_method".into(), "S256".into()));
    let page = LoginPage {
        css: state.portal_css(),
        error: error.to_owned(),
        params,
        auditor,
        value: value.to_owned(),
    };
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((
                "content-security-policy",
                "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ))
            .body(body),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

fn bad_request(why: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain; charset=utf-8")
        .body(format!("invalid authorization request: {why}"))
}

async fn authorize_page(state: State, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    if dev(&state).is_none() {
        return not_found();
    }
    match check(&q) {
        Ok(a) => login_page(
            &state,
            &q,
            a.auditor,
            "",
            "",
            actix_web::http::StatusCode::OK,
        ),
        Err(why) => bad_request(why),
    }
}

async fn authorize(state: State, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let Some(d) = dev(&state) else {
        return not_found();
    };
    let a = match check(&form) {
        Ok(a) => a,
        Err(why) => return bad_request(why),
    };
    let bad = actix_web::http::StatusCode::BAD_REQUEST;
    let sub = if a.auditor {
        let id = form.get("auditor_id").map(|s| s.trim()).unwrap_or("");
        if vault_core::audit::SafeId::parse(id).is_err() {
            return login_page(
                &state,
                &form,
                true,
                "Mã kiểm toán viên không hợp lệ (1–64 ký tự chữ, số, . _ : @ -).",
                // Not echoed: what was typed may be a citizen id.
                "",
                bad,
            );
        }
        id.to_owned()
    } else {
        let id = form.get("citizen_id").map(|s| s.trim()).unwrap_or("");
        if vault_core::CitizenId::parse(id).is_err() {
            return login_page(
                &state,
                &form,
                false,
                "Số định danh cá nhân phải gồm đúng 12 chữ số.",
                "",
                bad,
            );
        }
        id.to_owned()
    };
    let Some(code) = crate::portal::session::random_token(32) else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    if let Ok(mut codes) = d.codes.lock() {
        codes.retain(|_, c| c.created.elapsed() < CODE_LIFETIME);
        codes.insert(
            code.clone(),
            Code {
                sub,
                auditor: a.auditor,
                nonce: a.nonce.clone(),
                challenge: a.challenge.clone(),
                redirect_uri: a.redirect_uri.clone(),
                created: Instant::now(),
            },
        );
    }
    let enc = crate::portal::login::encode;
    HttpResponse::SeeOther()
        .insert_header((
            header::LOCATION,
            format!(
                "{}?code={}&state={}",
                a.redirect_uri,
                enc(&code),
                enc(&a.state)
            ),
        ))
        .finish()
}

fn token_error(error: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": error}))
}

async fn token(state: State, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let Some(d) = dev(&state) else {
        return not_found();
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "authorization_code" {
        return token_error("unsupported_grant_type");
    }
    let code = d.codes.lock().ok().and_then(|mut c| c.remove(get("code")));
    let Some(code) = code.filter(|c| c.created.elapsed() < CODE_LIFETIME) else {
        return token_error("invalid_grant");
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(vault_core::crypto::sha256(get("code_verifier").as_bytes()));
    let verifier_ok = vault_core::crypto::ct_eq(challenge.as_bytes(), code.challenge.as_bytes());
    if !verifier_ok || get("redirect_uri") != code.redirect_uri || get("client_id") != DEV_AUDIENCE
    {
        return token_error("invalid_grant");
    }
    let roles: &[&str] = if code.auditor { &["auditor"] } else { &[] };
    let now = state.now().as_secs();
    match d
        .issuer
        .sign_login(&code.sub, roles, now, TOKEN_TTL, code.nonce.as_deref())
    {
        Ok(t) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(
                json!({"id_token": t, "access_token": t, "token_type": "Bearer",
                         "expires_in": TOKEN_TTL}),
            ),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_go_only_to_pages_on_this_machine() {
        assert_eq!(
            allowed_redirect("https://localhost:8443/portal/callback"),
            Some(false)
        );
        assert_eq!(
            allowed_redirect("https://127.0.0.1/audit-console/callback"),
            Some(true)
        );
        for bad in [
            "http://localhost:8443/portal/callback",
            "https://evil.example/portal/callback",
            "https://localhost.evil.example/portal/callback",
            "https://localhost:8443/portal/other",
            "https://localhost:x@evil/portal/callback",
        ] {
            assert_eq!(allowed_redirect(bad), None, "{bad}");
        }
    }
}
