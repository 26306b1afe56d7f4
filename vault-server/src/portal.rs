//! The citizen portal (`/portal`, SPEC §8): server-rendered pages over the same core calls
//! as the JSON API, Vietnamese first, working without JavaScript (only the receipt check
//! runs in the browser). Sign-in is OpenID Connect (authorization code + PKCE, `login.rs`);
//! the session is a `__Host-` cookie; every form carries the session's CSRF token and an
//! idempotency key, so a form sent twice (a dropped connection, a double click) acts once.

mod forms;
pub mod i18n;
pub mod login;
mod pages;
pub mod session;
pub mod view;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::state::{AppState, State};
use i18n::Lang;
use session::{SESSION_COOKIE, Session, Sessions};
use view::Chrome;

/// The portal's part of the server state.
#[derive(Debug)]
pub struct PortalState {
    /// The OpenID client settings (`None`: sign-in is not configured).
    pub client: Option<login::Client>,
    /// Sessions and logins in progress.
    pub sessions: Sessions,
    /// Static files by their hashed names.
    assets: Assets,
    /// The audit console's sessions (auditors).
    pub console_sessions: Sessions<vault_core::audit::SafeId>,
    /// Sign-ins started per client address (a flood of them cannot fill the table of
    /// logins in progress for everyone).
    pub login_limiter: crate::state::RateLimiter,
}

impl PortalState {
    /// The stylesheet's URL.
    pub fn css(&self) -> String {
        self.assets.css.clone()
    }

    /// The verifier module's URL.
    pub fn js(&self) -> String {
        self.assets.js.clone()
    }

    /// The portal for `config` (its token endpoint's TLS trust read now).
    pub fn new(config: Option<&crate::config::PortalConfig>) -> Result<Self, String> {
        Ok(Self {
            client: config.map(login::Client::new).transpose()?,
            sessions: Sessions::default(),
            console_sessions: Sessions::default(),
            assets: Assets::new(),
            login_limiter: crate::state::RateLimiter::new(5.0, 100),
        })
    }
}

/// The stylesheet and the verifier module, compiled in, named by their content's hash.
#[derive(Debug)]
struct Assets {
    css: String,
    js: String,
}

const CSS: &[u8] = include_bytes!("../static/portal.css");
const JS: &[u8] = include_bytes!("../static/verify.js");

impl Assets {
    fn new() -> Self {
        let name = |stem: &str, ext: &str, bytes: &[u8]| {
            let h = hex::encode(vault_core::crypto::sha256(bytes));
            format!("/portal/static/{stem}.{}.{ext}", &h[..12])
        };
        Self {
            css: name("portal", "css", CSS),
            js: name("verify", "js", JS),
        }
    }
}

/// Registers the portal's routes (their HTML gzipped for browsers that accept it).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/portal")
            .wrap(actix_web::middleware::from_fn(gzip_html))
            .route("", web::get().to(pages::home))
            .route("/", web::get().to(pages::home))
            .route("/login", web::get().to(login::start))
            .route("/callback", web::get().to(login::callback))
            .route("/logout", web::post().to(login::logout))
            .route("/accesses", web::get().to(pages::accesses))
            .route("/receipt/{index}", web::get().to(pages::receipt))
            .route("/record", web::get().to(pages::record))
            .route("/verify", web::post().to(forms::verify))
            .route("/grants/{grant_id}/approve", web::post().to(forms::approve))
            .route("/grants/{grant_id}/refuse", web::post().to(forms::refuse))
            .route(
                "/consents/{consent_id}/withdraw",
                web::post().to(forms::withdraw),
            )
            .route("/complaints", web::post().to(forms::complaint))
            .route("/corrections", web::post().to(forms::correction))
            .route("/requests", web::post().to(forms::request))
            .route("/static/{name}", web::get().to(asset)),
    );
}

/// Gzips HTML pages for browsers that accept it (a history page of 200 rows is ~70 KB of
/// text, ~10 KB on the wire). Safe from BREACH-style guessing: a page reflects nothing an
/// attacker chooses but digits (`here` keeps only numeric paging parameters).
async fn gzip_html(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use std::io::Write as _;
    let accepts = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let res = next.call(req).await?.map_into_boxed_body();
    let is_html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !accepts || !is_html {
        return Ok(res);
    }
    let (req, res) = res.into_parts();
    let (mut head, body) = res.into_parts();
    let bytes = actix_web::body::to_bytes(body)
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("page body"))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zipped = gz.write_all(&bytes).and_then(|()| gz.finish());
    let body = match zipped {
        Ok(z) => {
            head.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            head.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            z
        }
        Err(_) => bytes.to_vec(),
    };
    let res = head.set_body(actix_web::body::BoxBody::new(body));
    Ok(actix_web::dev::ServiceResponse::new(req, res))
}

/// The security headers of every page: nothing from another origin, no framing, no
/// referrer, nothing cached.
pub(crate) fn secure(mut res: HttpResponse) -> HttpResponse {
    let h = res.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        h.insert(
            header::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    }
    res
}

/// An HTML page with `status`.
pub(crate) fn html(status: actix_web::http::StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => secure(
            HttpResponse::build(status)
                .content_type("text/html; charset=utf-8")
                .body(body),
        ),
        Err(_) => secure(HttpResponse::InternalServerError().finish()),
    }
}

/// A redirect (303 See Other) to a path on this server or an issuer's URL.
pub(crate) fn see_other(location: &str) -> HttpResponse {
    secure(
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .finish(),
    )
}

/// The page's language: `?lang=` (remembered in a cookie), else the cookie, else Vietnamese.
pub(crate) fn lang_of(req: &HttpRequest) -> (Lang, bool) {
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok();
    if let Some(l) = query
        .as_ref()
        .and_then(|q| q.get("lang"))
        .and_then(|l| Lang::parse(l))
    {
        return (l, true);
    }
    let cookie = cookie_value(req, LANG_COOKIE).and_then(|c| Lang::parse(&c));
    (cookie.unwrap_or(Lang::Vi), false)
}

const LANG_COOKIE: &str = "__Host-vault-lang";

/// Remembers the language chosen with `?lang=`.
pub(crate) fn remember_lang(mut res: HttpResponse, lang: Lang, chosen: bool) -> HttpResponse {
    if chosen
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Path=/; Secure; SameSite=Lax; Max-Age=31536000",
            lang.code()
        ))
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// The signed-in citizen's session, if the cookie names a live one.
fn session_of(state: &AppState, req: &HttpRequest) -> Option<(String, Session)> {
    let portal = state.portal.as_ref()?;
    let value = cookie_value(req, SESSION_COOKIE)?;
    portal.sessions.get(&value).map(|s| (value, s))
}

/// The path and query of this request without `lang` (for the language switch and the
/// return after sign-in). Only portal paths: anything else becomes `/portal`.
fn here(req: &HttpRequest) -> String {
    // Only the paging parameters, and only digits: a page reflects nothing else a link can
    // put in its URL.
    let query: Vec<&str> = req
        .query_string()
        .split('&')
        .filter(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                matches!(k, "cursor" | "limit")
                    && !v.is_empty()
                    && v.len() <= 20
                    && v.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .collect();
    let path = req.path();
    let path = if safe_next(path) { path } else { "/portal" };
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Whether `next` is a portal page to return to after sign-in: a path on this server under
/// `/portal`, never another origin (no open redirect).
pub fn safe_next(next: &str) -> bool {
    (next == "/portal" || next.starts_with("/portal/") || next.starts_with("/portal?"))
        && !next.contains("//")
        && !next.contains('\\')
        && !next.starts_with("/portal/callback")
        && !next.starts_with("/portal/login")
        && next
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'<' && b != b'>')
}

fn chrome(
    state: &AppState,
    req: &HttpRequest,
    lang: Lang,
    session: Option<&Session>,
    title_key: &str,
) -> Chrome {
    let t = lang.catalog();
    let here = here(req);
    let sep = if here.contains('?') { '&' } else { '?' };
    let other = match lang {
        Lang::Vi => Lang::En,
        Lang::En => Lang::Vi,
    };
    Chrome {
        lang: lang.code(),
        t,
        title: t.s(title_key).to_owned(),
        css: state
            .portal
            .as_ref()
            .map(|p| p.assets.css.clone())
            .unwrap_or_default(),
        csrf: session.map(|s| s.csrf.clone()).unwrap_or_default(),
        signed_in: session.is_some(),
        other_lang_href: format!("{here}{sep}lang={}", other.code()),
        flash: String::new(),
        error: String::new(),
    }
}

/// `GET /portal/static/{name}`: the stylesheet and the verifier module under their hashed
/// names, cached for a year.
async fn asset(state: State, name: web::Path<String>) -> HttpResponse {
    let Some(p) = state.portal.as_ref() else {
        return HttpResponse::NotFound().finish();
    };
    let path = format!("/portal/static/{}", name.into_inner());
    let (body, ct) = if path == p.assets.css {
        (CSS, "text/css; charset=utf-8")
    } else if path == p.assets.js {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return HttpResponse::NotFound().finish();
    };
    HttpResponse::Ok()
        .content_type(ct)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// Where the static files are in the source tree (for the hash test).
#[cfg(test)]
fn static_dir() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/static"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_portal_paths_are_returned_to_after_sign_in() {
        for ok in [
            "/portal",
            "/portal/accesses?cursor=5",
            "/portal/receipt/12",
            "/portal?x=1",
        ] {
            assert!(safe_next(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/portal",
            "//evil.example/portal",
            "/portal//evil",
            "/portalx",
            "/v1/me/record",
            "/portal/\\evil",
            "/portal/callback?code=x",
            "/portal/login?next=/portal",
            "/portal/\"><script>",
            "",
        ] {
            assert!(!safe_next(bad), "{bad}");
        }
    }

    #[test]
    fn assets_are_named_by_their_hash() {
        let a = Assets::new();
        assert!(a.css.starts_with("/portal/static/portal.") && a.css.ends_with(".css"));
        assert!(a.js.starts_with("/portal/static/verify.") && a.js.ends_with(".js"));
        assert_eq!(std::fs::read(static_dir().join("portal.css")).unwrap(), CSS);
    }
}
