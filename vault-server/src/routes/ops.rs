//! Operations routes: liveness, readiness, metrics and the OpenAPI document.

use actix_web::HttpResponse;
use serde_json::json;
use vault_core::store::VaultStore as _;

use crate::problem::ApiError;
use crate::state::State;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers, the audit log accepts appends and the keys are loaded.
pub async fn readyz(state: State) -> Result<HttpResponse, ApiError> {
    let s = state.clone();
    let (store, keys) = actix_web::web::block(move || {
        let store = s.vault.store().citizen_count().is_ok();
        let keys = s.vault.store().keyring().is_ok_and(|k| k.is_some());
        (store, keys)
    })
    .await
    .map_err(|_| ApiError::Unavailable)?;
    let audit = state.vault.audit().is_healthy();
    let ready = store && audit && keys;
    let body =
        json!({"ready": ready, "checks": {"store": store, "audit_log": audit, "keys": keys}});
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

/// `GET /openapi.json`
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
