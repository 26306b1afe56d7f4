//! Auditor routes (bearer with the auditor role, or an auditor certificate): entry queries,
//! single entries, the signed checkpoint and proofs. Every one is audited first.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use vault_core::audit::{AuditQuery, Event};
use vault_core::vault::{AuditorAnswer, AuditorRead};
use vault_core::{CitizenId, Timestamp, VaultError};

use crate::auth::Auditor;
use crate::problem::ApiError;
use crate::routes::safe_id;
use crate::state::{State, core};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters.
pub struct EntriesQuery {
    agency: Option<String>,
    official: Option<String>,
    purpose: Option<String>,
    event: Option<String>,
    citizen_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<u64>,
    limit: Option<usize>,
}

/// A `from`/`to` parameter: a date or an RFC 3339 UTC time.
pub fn parse_time(name: &str, s: &str) -> Result<Timestamp, ApiError> {
    let full = match s.len() {
        10 => format!("{s}T00:00:00.000Z"),
        20 if s.ends_with('Z') => format!("{}.000Z", s.get(..19).unwrap_or("")),
        _ => s.to_owned(),
    };
    vault_core::audit::parse_time(&full).ok_or_else(|| {
        ApiError::InvalidRequest(format!(
            "`{name}` must be a date (YYYY-MM-DD) or an RFC 3339 UTC time"
        ))
    })
}

fn items(state: &State, indexes: &[u64]) -> Result<Vec<Value>, VaultError> {
    let log = state.vault.audit();
    indexes
        .iter()
        .map(|&i| {
            let entry: Value = serde_json::from_slice(&log.entry(i)?)
                .map_err(|_| VaultError::StoreCorrupt("audit entry is not JSON".into()))?;
            Ok(json!({"index": i, "entry": entry, "leaf_hash": hex::encode(log.leaf_hash(i)?)}))
        })
        .collect()
}

/// `GET /v1/audit/entries`
pub async fn entries(
    Auditor(who): Auditor,
    state: State,
    q: web::Query<EntriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let event = q
        .event
        .as_deref()
        .map(|e| Event::parse(e).ok_or_else(|| ApiError::InvalidRequest("unknown `event`".into())))
        .transpose()?;
    let citizen = q
        .citizen_id
        .as_deref()
        .map(CitizenId::parse)
        .transpose()
        .map_err(ApiError::Input)?;
    let query = AuditQuery {
        subject: None,
        official: q
            .official
            .as_deref()
            .map(|v| safe_id("official", v))
            .transpose()?,
        agency: q
            .agency
            .as_deref()
            .map(|v| safe_id("agency", v))
            .transpose()?,
        purpose: q
            .purpose
            .as_deref()
            .map(|v| safe_id("purpose", v))
            .transpose()?,
        event,
        from: q
            .from
            .as_deref()
            .map(|s| parse_time("from", s))
            .transpose()?,
        to: q.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let cursor = q.cursor;
    let st2 = state.clone();
    let (list, next) = core(&state, move |st| {
        let page = st
            .vault
            .audit_query(&who, &query, citizen.as_ref(), cursor, limit, st.now())?;
        Ok((items(&st2, &page.indexes)?, page.next))
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"items": list, "next_cursor": next})))
}

async fn read(
    who: vault_core::audit::SafeId,
    state: &State,
    what: AuditorRead,
) -> Result<AuditorAnswer, ApiError> {
    core(state, move |st| st.vault.auditor_read(&who, what, st.now())).await
}

/// `GET /v1/audit/entries/{index}`
pub async fn entry(
    Auditor(who): Auditor,
    state: State,
    index: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    let index = index.into_inner();
    let AuditorAnswer::Entry(bytes, leaf) = read(who, &state, AuditorRead::Entry(index)).await?
    else {
        return Err(ApiError::Unavailable);
    };
    let entry: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::Unavailable)?;
    Ok(HttpResponse::Ok()
        .json(json!({"index": index, "entry": entry, "leaf_hash": hex::encode(leaf)})))
}

/// `GET /v1/audit/checkpoint`
pub async fn checkpoint(Auditor(who): Auditor, state: State) -> Result<HttpResponse, ApiError> {
    let AuditorAnswer::Checkpoint(text) = read(who, &state, AuditorRead::Checkpoint).await? else {
        return Err(ApiError::Unavailable);
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(text))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters.
pub struct InclusionQuery {
    index: u64,
    tree_size: Option<u64>,
}

/// `GET /v1/audit/proof/inclusion`
pub async fn inclusion(
    Auditor(who): Auditor,
    state: State,
    q: web::Query<InclusionQuery>,
) -> Result<HttpResponse, ApiError> {
    let index = q.index;
    let size = q.tree_size.unwrap_or_else(|| state.vault.audit().size());
    let AuditorAnswer::Proof(hashes) =
        read(who, &state, AuditorRead::Inclusion { index, size }).await?
    else {
        return Err(ApiError::Unavailable);
    };
    Ok(HttpResponse::Ok().json(json!({
        "index": index, "tree_size": size,
        "hashes": hashes.iter().map(hex::encode).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters.
pub struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

/// `GET /v1/audit/proof/consistency`
pub async fn consistency(
    Auditor(who): Auditor,
    state: State,
    q: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    let from = q.from;
    let to = q.to.unwrap_or_else(|| state.vault.audit().size());
    let AuditorAnswer::Proof(hashes) =
        read(who, &state, AuditorRead::Consistency { from, to }).await?
    else {
        return Err(ApiError::Unavailable);
    };
    Ok(HttpResponse::Ok().json(json!({
        "from": from, "to": to,
        "hashes": hashes.iter().map(hex::encode).collect::<Vec<_>>(),
    })))
}
