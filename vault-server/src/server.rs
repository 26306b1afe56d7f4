//! Assembles the server: opens the vault, builds the shared state and TLS, registers the
//! route table behind one middleware (request id, query rule, structured log line, metrics,
//! security headers), and serves on an already-bound listener so tests can use port 0.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, ResponseError as _, web};
use ring::rand::SecureRandom as _;
use vault_core::Clock;

use crate::config::Config;
use crate::oidc::{Jwks, OidcVerifier};
use crate::problem::ApiError;
use crate::routes;
use crate::state::{AppState, RateLimiter, State};

/// A vault ready to serve.
#[derive(Debug)]
pub struct Prepared {
    /// Shared state (also used after shutdown to flush).
    pub state: State,
    tls: rustls::ServerConfig,
    workers: usize,
    blocking_threads: usize,
    shutdown: u64,
}

fn fetch_jwks(url: &str, ca: Option<&Path>) -> Result<Jwks, String> {
    let mut b = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates({
                    let mut roots = rustls::RootCertStore::empty();
                    if let Some(ca) = ca {
                        for c in
                            crate::tls::load_certs(ca).map_err(|e| format!("oidc.jwks_ca: {e}"))?
                        {
                            roots.add(c).map_err(|e| e.to_string())?;
                        }
                    }
                    roots
                })
                .with_no_client_auth(),
        )
        .timeout(Duration::from_secs(10));
    b = b.https_only(true);
    let client = b.build().map_err(|e| format!("JWKS client: {e}"))?;
    let resp = client
        .get(url)
        .send()
        .map_err(|e| format!("JWKS {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("JWKS {url}: HTTP {}", resp.status()));
    }
    let bytes = resp.bytes().map_err(|e| format!("JWKS {url}: {e}"))?;
    Jwks::parse(&bytes).map_err(|e| format!("JWKS {url}: {e}"))
}

fn load_jwks(config: &Config) -> Result<Jwks, String> {
    match (&config.oidc.jwks_file, &config.oidc.jwks_url) {
        (Some(f), _) => {
            let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            Jwks::parse(&bytes).map_err(|e| format!("{}: {e}", f.display()))
        }
        (None, Some(u)) => fetch_jwks(u, config.oidc.jwks_ca.as_deref()),
        (None, None) => Err("oidc: no JWKS source".into()),
    }
}

/// Keeps the JWKS fresh: re-reads the file or re-fetches the URL every `refresh_seconds`.
/// A failed refresh keeps the previous keys and logs a warning.
fn spawn_jwks_refresh(state: State, config: Config) {
    let every = Duration::from_secs(config.oidc.refresh_seconds);
    let _ = std::thread::Builder::new()
        .name("jwks-refresh".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                match load_jwks(&config) {
                    Ok(j) => state.oidc.set_jwks(j),
                    Err(e) => tracing::warn!(target: "vault::oidc", error = %e, "JWKS refresh failed; keeping the previous keys"),
                }
            }
        });
}

/// Deletes grants past their retention (`limits.grant_retention_seconds`) in the background:
/// every `min(60 s, retention / 4)` of the server's clock (looked at every second, so a test
/// that moves the clock sees a tick within a second) it walks on through the grants, at most
/// 50,000 a tick in steps of 5,000 (a pass over a million grants spreads over 20 ticks).
fn spawn_grant_sweeper(state: State, retention: u64) {
    const STEP: usize = 5_000;
    const STEPS_PER_TICK: usize = 10;
    let every_ms = i64::try_from((retention / 4).clamp(1, 60) * 1000).unwrap_or(60_000);
    let retention = i64::try_from(retention).unwrap_or(i64::MAX);
    let _ = std::thread::Builder::new()
        .name("grant-sweeper".into())
        .spawn(move || {
            let mut last = state.now().as_millis();
            loop {
                std::thread::sleep(Duration::from_secs(1));
                // The anomaly detector follows the log as it grows.
                if let Err(e) = state.vault.feed_anomalies() {
                    tracing::warn!(target: "vault::anomalies", code = e.code(), "anomaly detection fell behind; retrying");
                }
                let now = state.now().as_millis();
                // A clock stepped back restarts the wait instead of stalling the sweep.
                last = last.min(now);
                if now.saturating_sub(last) < every_ms {
                    continue;
                }
                last = now;
                let mut purged = 0;
                for _ in 0..STEPS_PER_TICK {
                    match state.vault.sweep_ended_grants(state.now(), retention, STEP) {
                        Ok((n, wrapped)) => {
                            purged += n;
                            if wrapped {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(target: "vault::grants", code = e.code(), "grant sweep failed; retrying later");
                            break;
                        }
                    }
                }
                state.metrics.sweep_tick();
                if purged > 0 {
                    tracing::debug!(target: "vault::grants", purged, "ended grants past retention deleted");
                }
            }
        });
}

/// The three request limiters.
struct Limiters {
    agency: RateLimiter,
    verify: RateLimiter,
    refusal: RateLimiter,
}

/// The limiters: token buckets in this process with the embedded store; with PostgreSQL,
/// counts per window shared by every node through the database (`shared_limits`), so N
/// nodes behind a balancer still give an agency its rate, not N times it.
fn limiters(
    vault: &vault_core::Vault<crate::backend::AnyStore>,
    l: &crate::config::Limits,
    clock: &Arc<dyn Clock>,
) -> Result<Limiters, String> {
    use crate::shared_limits::SharedCounts;
    let crate::backend::AnyStore::Postgres(pg) = vault.store() else {
        return Ok(Limiters {
            agency: RateLimiter::new(f64::from(l.agency_requests_per_second), l.agency_burst),
            verify: RateLimiter::new(f64::from(l.verify_per_minute) / 60.0, l.verify_per_minute),
            refusal: RateLimiter::new(
                f64::from(l.audited_refusals_per_second),
                l.audited_refusals_burst,
            ),
        });
    };
    // Per second, the burst on top of the rate (a window admits what the bucket would
    // over one second from full); per minute for verification checks.
    let per_second = |rate: u32, burst: u32| u64::from(rate.max(burst));
    let agency = Arc::new(SharedCounts::new(
        "agency",
        per_second(l.agency_requests_per_second, l.agency_burst),
        1,
        Arc::clone(clock),
    ));
    let verify = Arc::new(SharedCounts::new(
        "verify",
        u64::from(l.verify_per_minute),
        60,
        Arc::clone(clock),
    ));
    let refusal = Arc::new(SharedCounts::new(
        "refusal",
        per_second(l.audited_refusals_per_second, l.audited_refusals_burst),
        1,
        Arc::clone(clock),
    ));
    crate::shared_limits::start(
        Arc::clone(pg.pool()),
        vec![
            Arc::clone(&agency),
            Arc::clone(&verify),
            Arc::clone(&refusal),
        ],
    )
    .map_err(|e| format!("shared limits thread: {e}"))?;
    Ok(Limiters {
        agency: RateLimiter::shared(agency),
        verify: RateLimiter::shared(verify),
        refusal: RateLimiter::shared(refusal),
    })
}

/// Opens the vault and everything the server needs.
pub fn prepare(
    config: &Config,
    clock: Arc<dyn Clock>,
    dev: Option<crate::dev::DevIssuer>,
) -> Result<Prepared, String> {
    let settings = crate::backend::StoreSettings::from_config(&config.store);
    let named = config.data.join(crate::backend::STORE_FILE);
    if settings.backend == crate::backend::Backend::Sled && named.exists() {
        return Err(format!(
            "{}: this vault lives in PostgreSQL; serve it with [store] backend = \"postgres\" \
             and the url that file names",
            named.display()
        ));
    }
    let vault = crate::ctl::open_vault(
        &config.data,
        config.root_key.as_deref(),
        config.policies.as_deref(),
        &settings,
    )?;
    settings.record(&config.data)?;
    let repairs = match vault.store() {
        crate::backend::AnyStore::Sled(s) => s.slot_repairs(),
        crate::backend::AnyStore::Postgres(_) => vault_core::store::SlotRepairs::default(),
    };
    if repairs != vault_core::store::SlotRepairs::default() {
        tracing::warn!(
            target: "vault::store",
            freed_torn = repairs.freed_torn,
            ended_unreadable = repairs.ended_unreadable,
            "grant slots repaired at open: half-written inserts freed, grants with an unreadable state ended as revoked"
        );
    }
    let jwks = load_jwks(config)?;
    let l = &config.limits;
    let limiters = limiters(&vault, l, &clock)?;
    let state = web::Data::new(AppState {
        vault,
        oidc: OidcVerifier::new(
            &config.oidc.issuer,
            &config.oidc.audience,
            &config.oidc.role_claim,
            jwks,
        ),
        auditor_role: config.oidc.auditor_role.clone(),
        metrics: crate::metrics::Metrics::default(),
        agency_limiter: limiters.agency,
        verify_limiter: limiters.verify,
        refusal_limiter: limiters.refusal,
        max_body: l.max_body_bytes,
        clock,
        break_glass_review_hours: config.audit.break_glass_review_hours,
        grant_retention_seconds: l.grant_retention_seconds,
        portal: Some(crate::portal::PortalState::new(config.portal.as_ref())?),
        dev: dev.map(crate::dev::oidc::DevOidc::new),
        self_origin: std::sync::OnceLock::new(),
        client_verifier: std::sync::OnceLock::new(),
    });
    spawn_jwks_refresh(state.clone(), config.clone());
    spawn_grant_sweeper(state.clone(), l.grant_retention_seconds);
    let (tls, verifier) = crate::tls::server_config(
        &config.tls.cert,
        &config.tls.key,
        &config.tls.client_ca,
        &config.tls.client_crls,
    )?;
    let _ = state.client_verifier.set(verifier);
    let workers = if config.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        config.workers
    };
    Ok(Prepared {
        state,
        tls,
        workers,
        blocking_threads: config.blocking_threads,
        shutdown: l.shutdown_timeout_seconds,
    })
}

/// The client's `X-Request-Id` if it is a short id of safe characters (1-64 of `A-Z a-z
/// 0-9 - _`, no run of nine or more digits: never a citizen id or phone number in the log);
/// otherwise one of ours.
fn request_id(req: &ServiceRequest) -> String {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v));
    if let Some(v) = given {
        return v.to_owned();
    }
    // Letters only (hex could hold a run of nine digits: one id in nine would).
    const LETTERS: &[u8; 16] = b"abcdefghjkmnpqrs";
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter()
        .flat_map(|x| [x >> 4, x & 15])
        .map(|n| char::from(LETTERS[usize::from(n)]))
        .collect()
}

fn acceptable_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !vault_core::id::has_long_digit_run(v)
}

/// Who a request came from, as far as its credentials establish it, in the order the
/// route's own extractor looks: on an agency route the client certificate first, elsewhere a
/// valid ID token first (a citizen, or an auditor by role), then a certificate naming a known
/// agency or an auditor. `None`: no identity (no or unknown certificate, invalid bearer).
enum Identity {
    Agency(String),
    Citizen(vault_core::CitizenId),
    Auditor(vault_core::audit::SafeId),
}

fn identify(
    req: &actix_web::HttpRequest,
    st: &AppState,
    access: Option<routes::Access>,
) -> Option<Identity> {
    use crate::x509::CertIdentity;
    let by_cert = || match &req.conn_data::<crate::tls::PeerCert>()?.identity {
        Some(CertIdentity::Agency(a)) if st.vault.policy().agency(a).is_some() => {
            Some(Identity::Agency(a.clone()))
        }
        Some(CertIdentity::Auditor(a)) => vault_core::audit::SafeId::parse(a)
            .ok()
            .map(Identity::Auditor),
        _ => None,
    };
    let by_token = || {
        let claims = st
            .oidc
            .verify(crate::auth::bearer(req)?, st.now().as_secs())?;
        if claims.roles.contains(&st.auditor_role) {
            return vault_core::audit::SafeId::parse(&claims.sub)
                .ok()
                .map(Identity::Auditor);
        }
        vault_core::CitizenId::parse(&claims.sub)
            .ok()
            .map(Identity::Citizen)
    };
    match access {
        Some(routes::Access::Agency | routes::Access::AgencyToken) => by_cert().or_else(by_token),
        _ => by_token().or_else(by_cert),
    }
}

/// A refusal the core did not decide (and so did not audit): the caller's credentials, the
/// route, the body or a query parameter were refused at the edge. `None` for answers that
/// are not such refusals: successes, the core's own answers, a rate limit, server failures.
fn edge_refusal(res: &ServiceResponse<BoxBody>) -> Option<&'static str> {
    let status = res.status();
    if !status.is_client_error() || status == actix_web::http::StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    match res.response().error()?.as_error::<ApiError>()? {
        ApiError::Vault(_) => None,
        e => Some(e.code()),
    }
}

/// Audits an edge refusal of an identified caller (`access.denied`, before the answer
/// leaves); a refusal before any identity is only counted (`/metrics`) and logged. If the
/// entry cannot be written the answer becomes 503 `audit_unavailable`.
async fn audit_refusal(
    res: ServiceResponse<BoxBody>,
    st: &State,
    route: Option<&'static routes::Route>,
) -> ServiceResponse<BoxBody> {
    let Some(code) = edge_refusal(&res) else {
        return res;
    };
    st.metrics.denial(code);
    let Some(who) = identify(res.request(), st, route.map(|r| r.access)) else {
        return res;
    };
    // Audited refusals are limited per identity, so that no one identity can grow the log
    // without bound by being refused: past the limit the answer is 429, counted, not
    // appended.
    let key = match &who {
        Identity::Agency(a) => format!("a:{a}"),
        Identity::Citizen(c) => format!("c:{}", st.vault.blind(c)),
        Identity::Auditor(a) => format!("u:{a}"),
    };
    if let Err(wait) = st.refusal_limiter.check(&key) {
        st.metrics.denial("rate_limited");
        let (req, _) = res.into_parts();
        return ServiceResponse::new(req, ApiError::RateLimited(wait).error_response());
    }
    let op = route.map_or("unrouted", |r| r.op);
    let grant = res
        .request()
        .match_info()
        .get("grant_id")
        .map(str::to_owned);
    let s = st.clone();
    let recorded = web::block(move || {
        let caller = match &who {
            Identity::Agency(a) => vault_core::vault::Caller::Agency(a),
            Identity::Citizen(c) => vault_core::vault::Caller::Citizen(c),
            Identity::Auditor(a) => vault_core::vault::Caller::Auditor(a),
        };
        let attempt = vault_core::vault::Attempt {
            action: op,
            grant: grant.as_deref(),
            citizen: None,
        };
        s.vault.record_refusal(caller, attempt, code, s.now())
    })
    .await;
    match recorded {
        Ok(Ok(())) => res,
        _ => {
            let (req, _) = res.into_parts();
            ServiceResponse::new(
                req,
                ApiError::Vault(vault_core::VaultError::AuditUnavailable).error_response(),
            )
        }
    }
}

/// The start-up line: what this server serves (version, policy set, keys, log, the server
/// certificate's expiry), so an operator reading the log knows what was started.
pub fn log_start(prepared: &Prepared, config: &Config) {
    let v = &prepared.state.vault;
    let expiry = crate::tls::load_certs(&config.tls.cert)
        .ok()
        .and_then(|certs| {
            certs
                .first()
                .and_then(|c| crate::x509::not_after(c.as_ref()))
        })
        .unwrap_or_default();
    tracing::info!(
        target: "vault::server",
        version = env!("CARGO_PKG_VERSION"),
        policy = %hex::encode(v.policy().sha256()),
        kek_version = v.kek_version(),
        token_kid = %v.token_keys().current_kid(),
        tree_size = v.audit().size(),
        citizens = v.citizen_count().unwrap_or(0),
        server_certificate_not_after = %expiry,
        "vault-server started"
    );
}

/// Who is calling, as far as the connection and headers say before any handler runs (no
/// token is verified here): `agency` (with its id) or `auditor` by client certificate,
/// `bearer` with an Authorization header, `page` with a page session cookie, else
/// `anonymous`. For the log line only; never a citizen id.
fn caller_of(req: &ServiceRequest) -> (&'static str, String) {
    match req
        .conn_data::<crate::tls::PeerCert>()
        .and_then(|p| p.identity.clone())
    {
        Some(crate::x509::CertIdentity::Agency(a)) => ("agency", a),
        Some(crate::x509::CertIdentity::Auditor(_)) => ("auditor", String::new()),
        None if req
            .headers()
            .contains_key(actix_web::http::header::AUTHORIZATION) =>
        {
            ("bearer", String::new())
        }
        None if req
            .headers()
            .get(actix_web::http::header::COOKIE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| {
                c.contains("__Host-vault-session=") || c.contains("__Host-vault-console=")
            }) =>
        {
            ("page", String::new())
        }
        None => ("anonymous", String::new()),
    }
}

/// The one middleware: request id, the query-parameter rule, the audit of refusals at the
/// edge, a log line without paths, queries, tokens or values, metrics by route template,
/// and security headers.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = Instant::now();
    let id = request_id(&req);
    let method = req.method().as_str().to_owned();
    let route = routes::route_of(&method, req.path());
    let name = route.map_or("unmatched", |r| r.path);
    let state = req.app_data::<State>().cloned();
    let (caller, agency) = caller_of(&req);
    let refused = route.and_then(|r| routes::check_query(r, req.query_string()).err());
    let res = match refused {
        Some(e) => req.error_response(e),
        None => next.call(req).await?.map_into_boxed_body(),
    };
    let mut res = match &state {
        Some(st) => audit_refusal(res, st, route).await,
        None => res,
    };
    let status = res.status().as_u16();
    let code = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .map(ApiError::code)
        .or(match status {
            404 => Some("not_found"),
            405 => Some("method_not_allowed"),
            _ => None,
        });
    let secs = start.elapsed().as_secs_f64();
    if let Some(st) = &state {
        st.metrics.request(&method, name, status, secs);
    }
    tracing::info!(
        target: "vault::http",
        request_id = %id,
        method = %method,
        route = name,
        status,
        code = code.unwrap_or(""),
        caller,
        agency = agency.as_str(),
        micros = (secs * 1e6) as u64,
        "request"
    );
    let h = res.headers_mut();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
        h.insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            v,
        );
    }
    for (k, v) in [
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("strict-transport-security", "max-age=31536000"),
    ] {
        // A static file keeps its own (long) cache lifetime.
        if k == "cache-control" && h.contains_key(actix_web::http::header::CACHE_CONTROL) {
            continue;
        }
        h.insert(
            actix_web::http::header::HeaderName::from_static(k),
            actix_web::http::header::HeaderValue::from_static(v),
        );
    }
    Ok(res)
}

async fn fallback(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(routes::fallback(req).await)
}

/// Serves on `listener` until stopped (SIGINT/SIGTERM or `Server::handle().stop(true)`).
/// In-flight requests finish (up to the shutdown timeout); every acknowledged release's
/// audit entry was durable before its answer.
pub fn run(listener: TcpListener, prepared: &Prepared) -> std::io::Result<Server> {
    let state = prepared.state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PathConfig::default().error_handler(|_, _| {
                ApiError::InvalidRequest("malformed path parameter".into()).into()
            }))
            .app_data(web::QueryConfig::default().error_handler(|_, _| {
                ApiError::InvalidRequest("malformed query parameter value".into()).into()
            }))
            .wrap(from_fn(observe))
            .configure(crate::portal::configure)
            .configure(crate::console::configure)
            .configure(crate::dev::oidc::configure)
            .configure(routes::configure)
            .default_service(web::to(fallback))
    })
    .on_connect(crate::tls::on_connect)
    .workers(prepared.workers)
    .worker_max_blocking_threads(prepared.blocking_threads)
    .shutdown_timeout(prepared.shutdown)
    .listen_rustls_0_23(listener, prepared.tls.clone())?
    .run();
    Ok(server)
}

/// Serves `/metrics` (Prometheus text, plain HTTP) on its own listener, one worker, nothing
/// else: the public API port does not serve it. Stopped by the caller (no signal handling).
pub fn run_metrics(listener: TcpListener, prepared: &Prepared) -> std::io::Result<Server> {
    let state = prepared.state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(routes::ops::metrics))
            .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(server)
}

/// After the server stopped: makes the store durable, then drains the audit writer (every
/// queued entry answered, checkpoints synced) and closes it.
pub fn finish(prepared: &Prepared) {
    if let Err(e) = prepared.state.vault.flush() {
        tracing::error!(target: "vault::server", code = e.code(), "final store flush failed");
    }
    prepared.state.vault.audit().shutdown();
}

/// Installs the JSON (or text) log subscriber on stderr, through the queued sink
/// (`logsink`): call `crate::logsink::flush_stderr()` before the process exits.
pub fn init_logging(format: &str, level: &str) {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let level = match level {
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => LevelFilter::INFO,
    };
    // rustls warns on every handshake that names an IP address in SNI: keep its errors only.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("rustls", LevelFilter::ERROR)
        // actix logs every malformed request line or header at ERROR after answering it 400:
        // client noise that any client could write into the log at will.
        .with_target("actix_http::h1::dispatcher", LevelFilter::OFF);
    crate::logsink::set_json(format != "text");
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match crate::logsink::QueuedWriter::stderr() {
        Ok(sink) if format == "text" => registry
            .with(tracing_subscriber::fmt::layer().with_writer(sink))
            .try_init(),
        Ok(sink) => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(sink))
            .try_init(),
        // No thread for the sink: write each line directly.
        Err(_) if format == "text" => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        Err(_) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_the_server_makes_never_hold_a_digit_run() {
        let req = actix_web::test::TestRequest::default().to_srv_request();
        for _ in 0..2_000 {
            let id = request_id(&req);
            assert_eq!(id.len(), 16);
            assert!(acceptable_request_id(&id), "{id}");
        }
    }
}
