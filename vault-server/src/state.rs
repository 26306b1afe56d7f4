//! Shared server state (the vault, the token verifier, metrics, limiters) and the helpers
//! every handler uses: running a core call off the async workers, reading a JSON body after
//! authentication, and replaying idempotent requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::backend::AnyStore;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::de::DeserializeOwned;
use serde_json::Value;
use vault_core::vault::{Answered, IdempotencyKey};
use vault_core::{Clock, Timestamp, Vault, VaultError};

use crate::metrics::Metrics;
use crate::oidc::OidcVerifier;
use crate::problem::ApiError;

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The vault.
    pub vault: Vault<AnyStore>,
    /// Bearer token verification.
    pub oidc: OidcVerifier,
    /// The role that makes a bearer an auditor.
    pub auditor_role: String,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Per-agency request limiter.
    pub agency_limiter: RateLimiter,
    /// Per-citizen verification-code limiter.
    pub verify_limiter: RateLimiter,
    /// Per-identity limiter of audited refusals (so refusals cannot flood the log).
    pub refusal_limiter: RateLimiter,
    /// Largest body, bytes.
    pub max_body: usize,
    /// Where the server's time comes from (`crate::clock`).
    pub clock: Arc<dyn Clock>,
    /// How long ended grants are kept (`[limits] grant_retention_seconds`).
    pub grant_retention_seconds: u64,
    /// Hours within which a break-glass grant must be reviewed (`[audit]`).
    pub break_glass_review_hours: u32,
    /// The citizen portal (`/portal`).
    pub portal: Option<crate::portal::PortalState>,
    /// The dev issuer's OpenID endpoints (dev mode only).
    pub dev: Option<crate::dev::oidc::DevOidc>,
    /// The client-certificate verifier, whose CRLs a reload reads again (set once TLS is
    /// configured).
    pub client_verifier: std::sync::OnceLock<Arc<crate::tls::ReloadableClientVerifier>>,
    /// `https://<bound address>`, set once the listener is bound (the portal's token
    /// endpoint may be a path on this server).
    pub self_origin: std::sync::OnceLock<String>,
}

impl AppState {
    /// The current time, from the server's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The pages' stylesheet URL.
    pub fn portal_css(&self) -> String {
        self.portal
            .as_ref()
            .map(crate::portal::PortalState::css)
            .unwrap_or_default()
    }
}

/// The state as handlers receive it.
pub type State = web::Data<AppState>;

/// A token bucket per key; with several nodes on PostgreSQL, counts per window shared
/// through the database instead (`shared_limits`).
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    shared: Option<Arc<crate::shared_limits::SharedCounts>>,
}

impl RateLimiter {
    /// `per_second` sustained, up to `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// A limit counted across nodes: `shared` decides (this limiter's bucket is unused).
    pub fn shared(shared: Arc<crate::shared_limits::SharedCounts>) -> Self {
        Self {
            shared: Some(shared),
            ..Self::new(1.0, 1)
        }
    }

    /// Takes one token for `key`, or says how many seconds until one is available.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if let Some(shared) = &self.shared {
            return shared.check(key);
        }
        let now = Instant::now();
        let Ok(mut b) = self.buckets.lock() else {
            return Ok(());
        };
        if b.len() > 100_000 {
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs() < 3600);
        }
        let (tokens, last) = b.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.per_second).ceil();
            Err((wait as u64).max(1))
        }
    }
}

/// A core error as the API answers it (counted as a denial by its code).
pub fn vault_error(state: &State, e: VaultError) -> ApiError {
    let e = ApiError::Vault(e);
    state.metrics.denial(e.code());
    e
}

/// Runs a core call on the blocking pool (the core is synchronous and waits for fsync).
pub async fn core<T, F>(state: &State, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&AppState) -> Result<T, VaultError> + Send + 'static,
    T: Send + 'static,
{
    let s = state.clone().into_inner();
    web::block(move || f(&s))
        .await
        .map_err(|_| ApiError::Unavailable)?
        .map_err(|e| vault_error(state, e))
}

/// Runs the first half of a grant or a release: on this worker with the embedded store
/// (memory and page cache, no wait), on the blocking pool with PostgreSQL (its reads are
/// database round trips, which must not stall an async worker; its blocking client cannot
/// run inside one either).
pub async fn first_half<T, F>(state: &State, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&AppState) -> Result<T, VaultError> + Send + 'static,
    T: Send + 'static,
{
    match state.vault.store() {
        crate::backend::AnyStore::Sled(_) => f(state).map_err(|e| vault_error(state, e)),
        crate::backend::AnyStore::Postgres(_) => core(state, f).await,
    }
}

fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let place = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Syntax | Category::Eof => format!("the body is not valid JSON ({place})"),
        Category::Data => {
            format!(
                "the body does not have the expected fields and types ({place}); see /openapi.json"
            )
        }
        Category::Io => "the body could not be read".into(),
    }
}

/// Whether the request says its body is `application/json`.
fn is_json(req: &HttpRequest) -> bool {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
}

/// The body, up to `limit` bytes (a declared or actual larger one is refused).
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge);
    }
    payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?
        .map_err(|_| ApiError::InvalidRequest("the body could not be read".into()))
}

/// Reads and parses a JSON body. Call only after the caller is authenticated.
/// Returns the value and the SHA-256 of the body (for idempotency).
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(T, String), ApiError> {
    if !is_json(req) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = read_body(req, payload, limit).await?;
    Ok((
        parse_json(&bytes)?,
        hex::encode(vault_core::crypto::sha256(&bytes)),
    ))
}

/// An optional JSON body: none (empty) reads as `T::default()`; one that is there must be
/// `application/json` and parse as `T`.
pub async fn read_optional_json<T: DeserializeOwned + Default>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = read_body(req, payload, limit).await?;
    if bytes.is_empty() {
        return Ok(T::default());
    }
    if !is_json(req) {
        return Err(ApiError::UnsupportedMediaType);
    }
    parse_json(&bytes)
}

/// A request body as `T`; the problem's detail never quotes the input.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidRequest(describe(&e)))
}

/// The `Idempotency-Key` header, if any (1-128 visible ASCII characters).
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    IdempotencyKey::parse(v.to_str().unwrap_or(""))
        .map(Some)
        .ok_or_else(|| {
            ApiError::InvalidRequest(
                "Idempotency-Key must be 1-128 visible ASCII characters".into(),
            )
        })
}

/// The response of an idempotent call (`Vault::once`): its status and JSON (none for 204),
/// with `Idempotent-Replayed: true` when it is the first request's answer again.
pub fn answered(a: Answered<(u16, Value)>) -> HttpResponse {
    let replayed = a.replayed();
    let (status, body) = a.into_inner();
    let mut r = respond(status, &body);
    if replayed {
        r.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
            actix_web::http::header::HeaderValue::from_static("true"),
        );
    }
    r
}

/// A JSON (or empty, for 204) response.
pub fn respond(status: u16, body: &Value) -> HttpResponse {
    let code =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    if body.is_null() {
        HttpResponse::build(code).finish()
    } else {
        HttpResponse::build(code).json(body)
    }
}
