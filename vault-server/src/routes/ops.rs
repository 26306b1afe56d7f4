//! Operations routes: liveness, readiness, metrics and the OpenAPI document.

use actix_web::HttpResponse;
use serde_json::json;

use crate::problem::ApiError;
use crate::state::State;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers and its background flush keeps up, the audit log accepts
/// appends and the keys are loaded.
pub async fn readyz(state: State) -> Result<HttpResponse, ApiError> {
    let s = state.clone();
    // One read of the store (the keyring record; never a scan: probes come every few seconds
    // and the citizens tree can hold millions), then the audit log's active probe.
    let r = actix_web::web::block(move || s.vault.readiness())
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let ready = r.ready();
    let body = json!({"ready": ready,
                      "checks": {"store": r.store, "audit_log": r.audit_log, "keys": r.keys}});
    Ok(if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    })
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(state: State) -> HttpResponse {
    let log = state.vault.audit();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(log.stats(), log.size()))
}

/// `GET /v1/audit/pubkey`: the log's verifier key string (public: anyone holding a receipt
/// needs it to check the checkpoint's signature).
pub async fn pubkey(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{}\n", state.vault.audit().verifier()))
}

/// `GET /openapi.json`
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix_web::{App, test, web};
    use vault_core::audit::file::Faults;
    use vault_core::audit::{FaultyLogAt, SafeId};
    use vault_core::keyring::{DEFAULT_LOG_ORIGIN, InMemoryRootKey};
    use vault_core::policy::PolicySet;
    use vault_core::store::SledStore;
    use vault_core::vault::AuditorRead;
    use vault_core::{Timestamp, Vault};

    use crate::metrics::Metrics;
    use crate::oidc::{Jwks, OidcVerifier};
    use crate::state::{AppState, RateLimiter};

    #[actix_web::test]
    async fn readyz_fails_while_the_audit_log_cannot_sync_and_recovers_after() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let policy = Arc::new(
            PolicySet::load_dir(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
            )
            .unwrap(),
        );
        let vault = Vault::init(
            crate::backend::AnyStore::Sled(SledStore::open(&dir.path().join("store")).unwrap()),
            &InMemoryRootKey::new([7; 32]),
            policy,
            DEFAULT_LOG_ORIGIN,
            &FaultyLogAt(dir.path().join("audit"), Arc::clone(&faults)),
        )
        .unwrap();
        let state = web::Data::new(AppState {
            vault,
            oidc: OidcVerifier::new("https://i", "a", "roles", Jwks::default()),
            auditor_role: "auditor".into(),
            metrics: Metrics::default(),
            agency_limiter: RateLimiter::new(10.0, 10),
            verify_limiter: RateLimiter::new(1.0, 1),
            refusal_limiter: RateLimiter::new(1.0, 1),
            max_body: 4096,
            clock: Arc::new(vault_core::SystemClock),
            break_glass_review_hours: 72,
            grant_retention_seconds: 86_400,
            portal: None,
            dev: None,
            self_origin: std::sync::OnceLock::new(),
            client_verifier: std::sync::OnceLock::new(),
        });
        let app = test::init_service(
            App::new()
                .app_data(state.clone())
                .configure(crate::routes::configure),
        )
        .await;
        macro_rules! ready {
            () => {{
                let req = test::TestRequest::get().uri("/readyz").to_request();
                let r = test::call_service(&app, req).await;
                let status = r.status().as_u16();
                let body: serde_json::Value = test::read_body_json(r).await;
                (status, body)
            }};
        }
        assert_eq!(ready!().0, 200);
        faults.set_sync(true);
        let who = SafeId::parse("kt-01").unwrap();
        let now = Timestamp::from_millis(1_795_395_723_000);
        assert!(
            state
                .vault
                .auditor_read(&who, AuditorRead::Checkpoint, now)
                .is_err()
        );
        let (status, body) = ready!();
        assert_eq!(status, 503);
        assert_eq!(body["checks"]["audit_log"], false);
        assert_eq!(body["checks"]["store"], true);
        faults.set_sync(false);
        assert_eq!(ready!().0, 200, "recovers without a restart or an append");
    }
}
