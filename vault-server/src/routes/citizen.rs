//! Citizen routes (bearer ID token): own record, access history with receipts, consent
//! decisions, the genuineness check of verification codes, complaints, corrections,
//! data-subject requests and notifications.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use vault_core::Timestamp;
use vault_core::case::{Complaint, Correction, DataRequest, RequestKind};
use vault_core::consent::StandingConsent;
use vault_core::grant::{Grant, GrantStatus};
use vault_core::vault::{Attempt, Caller, ConsentDecision, Notification, NotificationKind, Once};

use crate::auth::Citizen;
use crate::problem::ApiError;
use crate::state::{
    State, answered, core, idempotency_key, parse_json, read_json, read_optional_json,
};

/// `GET /v1/me/record`
pub async fn record(Citizen(id): Citizen, state: State) -> Result<HttpResponse, ApiError> {
    let r = core(&state, move |st| st.vault.my_record(&id, st.now())).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"version": r.version, "fields": r.fields, "disputed": r.disputed})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters.
pub struct Paging {
    #[serde(default)]
    cursor: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/me/accesses`
pub async fn accesses(
    Citizen(id): Citizen,
    state: State,
    q: web::Query<Paging>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let cursor = q.cursor;
    let (items, next) = core(&state, move |st| st.vault.my_accesses(&id, cursor, limit)).await?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|i| {
            json!({
                "index": i.index, "time": i.time, "event": i.event, "agency": i.agency,
                "official": i.official, "purpose": i.purpose, "purpose_label": i.purpose_label,
                "dossier_id": i.dossier_id, "fields": i.fields, "outcome": i.outcome,
                "break_glass": i.break_glass,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_cursor": next})))
}

/// `GET /v1/me/accesses/{index}/proof`
pub async fn receipt(
    Citizen(id): Citizen,
    state: State,
    index: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    let index = index.into_inner();
    let r = core(&state, move |st| st.vault.my_receipt(&id, index, st.now())).await?;
    let entry: Value = serde_json::from_slice(&r.entry).map_err(|_| ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(json!({
        "index": r.index, "entry": entry, "leaf_hash": hex::encode(r.leaf_hash),
        "tree_size": r.tree_size,
        "hashes": r.hashes.iter().map(hex::encode).collect::<Vec<_>>(),
        "checkpoint": r.checkpoint,
        "entry_b64": base64::engine::general_purpose::STANDARD.encode(&r.entry),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters.
pub struct StatusQuery {
    #[serde(default)]
    status: Option<String>,
}

fn parse_status(s: &str) -> Result<GrantStatus, ApiError> {
    Ok(match s {
        "pending_consent" => GrantStatus::PendingConsent,
        "active" => GrantStatus::Active,
        "refused" => GrantStatus::Refused,
        "revoked" => GrantStatus::Revoked,
        "expired" => GrantStatus::Expired,
        "exhausted" => GrantStatus::Exhausted,
        _ => {
            return Err(ApiError::InvalidRequest(
                "status must be pending_consent, active, refused, revoked, expired or exhausted"
                    .into(),
            ));
        }
    })
}

fn grant_view(state: &State, g: &Grant, status: GrantStatus) -> Value {
    let policy = state.vault.policy();
    json!({
        "grant_id": g.id, "status": status.as_str(),
        "agency": g.agency,
        "agency_name": policy.agency(&g.agency).map(|a| a.name_vi.clone()),
        "official": g.official,
        "purpose": g.purpose,
        "purpose_label": policy.purpose(&g.purpose).map(|p| p.label_vi.clone()),
        "dossier_id": g.dossier_id, "fields": g.fields,
        "verification_code": g.verification_code,
        "requested_at": g.created.to_string(),
        "consent_expires_at": g.consent_expires.map(|t| t.to_string()),
        "break_glass": g.break_glass,
    })
}

/// `GET /v1/me/grants`
pub async fn grants(
    Citizen(id): Citizen,
    state: State,
    q: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = q.status.as_deref().map(parse_status).transpose()?;
    let (list, now) = core(&state, move |st| {
        let now = st.now();
        st.vault.my_grants(&id, status, now).map(|l| (l, now))
    })
    .await?;
    let items: Vec<Value> = list
        .iter()
        .map(|g| grant_view(&state, g, g.status_at(now)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"items": items})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// Also keep a standing consent for this agency, purpose and exactly these fields, this
    /// many days (1-365).
    #[serde(default)]
    remember_days: Option<u32>,
}

async fn decide(
    id: vault_core::CitizenId,
    state: State,
    req: HttpRequest,
    grant: String,
    decision: ConsentDecision,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let op = crate::routes::op_of(&req);
    let verb = match decision {
        ConsentDecision::Approve {
            remember_days: Some(d),
        } => format!("approve {d}"),
        ConsentDecision::Approve { .. } => "approve".into(),
        ConsentDecision::Refuse => "refuse".into(),
    };
    let request = json!([verb, grant]).to_string();
    let view_state = state.clone();
    let answer = core(&state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Citizen(&id),
            attempt: Attempt {
                grant: Some(&grant),
                ..Attempt::new(op)
            },
            key: key.as_ref(),
            request: request.as_bytes(),
        };
        st.vault.once(call, now, || {
            let d = st.vault.decide_grant(&id, &grant, decision, now)?;
            let mut view = grant_view(&view_state, &d.grant, d.grant.status_at(now));
            if let Some(c) = &d.standing {
                view["standing_consent"] = consent_view(&view_state, c);
            }
            Ok((200, view))
        })
    })
    .await?;
    Ok(answered(answer))
}

/// `POST /v1/me/grants/{grant_id}/approve`, with an optional body
/// `{"remember_days": n}`.
pub async fn approve(
    Citizen(id): Citizen,
    state: State,
    req: HttpRequest,
    grant: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: ApproveBody = read_optional_json(&req, payload, state.max_body).await?;
    let decision = ConsentDecision::Approve {
        remember_days: body.remember_days,
    };
    decide(id, state, req, grant.into_inner(), decision).await
}

/// `POST /v1/me/grants/{grant_id}/refuse`
pub async fn refuse(
    Citizen(id): Citizen,
    state: State,
    req: HttpRequest,
    grant: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    decide(id, state, req, grant.into_inner(), ConsentDecision::Refuse).await
}

fn consent_view(state: &State, c: &StandingConsent) -> Value {
    let policy = state.vault.policy();
    json!({
        "id": c.id, "agency": c.agency,
        "agency_name": policy.agency(&c.agency).map(|a| a.name_vi.clone()),
        "purpose": c.purpose,
        "purpose_label": policy.purpose(&c.purpose).map(|p| p.label_vi.clone()),
        "fields": c.fields,
        "created_at": c.created.to_string(),
        "expires_at": c.expires.to_string(),
    })
}

/// `GET /v1/me/consents`
pub async fn consents(Citizen(id): Citizen, state: State) -> Result<HttpResponse, ApiError> {
    let list = core(&state, move |st| st.vault.my_consents(&id, st.now())).await?;
    let items: Vec<Value> = list.iter().map(|c| consent_view(&state, c)).collect();
    Ok(HttpResponse::Ok().json(items))
}

/// `DELETE /v1/me/consents/{consent_id}`
pub async fn withdraw(
    Citizen(id): Citizen,
    state: State,
    req: HttpRequest,
    consent: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let op = crate::routes::op_of(&req);
    let consent = consent.into_inner();
    let request = json!(["withdraw", consent]).to_string();
    let answer = core(&state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Citizen(&id),
            attempt: Attempt::new(op),
            key: key.as_ref(),
            request: request.as_bytes(),
        };
        st.vault.once(call, now, || {
            st.vault.withdraw_consent(&id, &consent, now)?;
            Ok((204, Value::Null))
        })
    })
    .await?;
    Ok(answered(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    verification_code: String,
}

/// A `POST /v1/me/verify` body's code (for the fuzz target and its corpus replay).
pub fn verification_code(bytes: &[u8]) -> Result<String, ApiError> {
    parse_json::<VerifyBody>(bytes).map(|b| b.verification_code)
}

/// `POST /v1/me/verify`
pub async fn verify(
    Citizen(id): Citizen,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Checking a code changes nothing, so a retry needs no stored answer; a malformed key
    // is still refused, as on every POST.
    idempotency_key(&req)?;
    state
        .verify_limiter
        .check(&state.vault.blind(&id).to_string())
        .map_err(ApiError::RateLimited)?;
    let (body, _) = read_json::<VerifyBody>(&req, payload, state.max_body).await?;
    let info = core(&state, move |st| {
        st.vault.verify_code(&id, &body.verification_code, st.now())
    })
    .await?;
    Ok(HttpResponse::Ok().json(match info {
        Some(i) => json!({
            "genuine": true, "agency": i.agency, "purpose_label": i.purpose_label,
            "requested_at": i.requested_at.to_string(), "status": i.status.as_str(),
        }),
        None => json!({"genuine": false}),
    }))
}

/// A complaint as its citizen sees it.
pub fn complaint_view(c: &Complaint) -> Value {
    let a = c.answer.as_ref();
    json!({
        "id": c.id, "audit_index": c.audit_index, "text": c.text, "status": c.status(),
        "filed_at": c.filed_at.to_string(),
        "outcome": a.map(|a| a.outcome.as_str()),
        "answer": a.map(|a| a.text.clone()),
        "answered_at": a.map(|a| a.answered_at.to_string()),
    })
}

/// A correction as its citizen sees it.
pub fn correction_view(state: &State, c: &Correction) -> Value {
    let r = c.resolution.as_ref();
    json!({
        "id": c.id, "field": c.field,
        "field_label": state.vault.policy().field(&c.field).map(|f| f.label_vi.clone()),
        "proposed_value": c.proposed_value, "note": c.note, "status": c.status(),
        "filed_at": c.filed_at.to_string(),
        "reason": r.map(|r| r.reason.clone()),
        "resolved_at": r.map(|r| r.resolved_at.to_string()),
    })
}

/// A data-subject request as its citizen sees it, with its deadlines.
pub fn request_view(r: &DataRequest, now: Timestamp) -> Value {
    json!({
        "id": r.id, "kind": r.kind.as_str(), "status": r.status().as_str(),
        "received_at": r.received_at.to_string(),
        "acknowledge_by": r.acknowledge_by.to_string(),
        "complete_by": r.complete_by.to_string(),
        "extended": r.extended(), "overdue": r.overdue(now),
        "history": r.history.iter().map(|h| json!({
            "status": h.status.as_str(), "at": h.at.to_string(), "note": h.note,
        })).collect::<Vec<_>>(),
    })
}

/// A notification: its kind, time and what it is about, with labels.
pub fn notification_view(state: &State, n: &Notification) -> Value {
    let policy = state.vault.policy();
    let agency = |a: &str| policy.agency(a).map(|x| x.name_vi.clone());
    let purpose = |p: &str| policy.purpose(p).map(|x| x.label_vi.clone());
    let mut v = match &n.kind {
        NotificationKind::ConsentWaiting {
            grant_id,
            agency: a,
            purpose: p,
        } => json!({
            "kind": "consent_waiting", "grant_id": grant_id, "agency": a,
            "agency_name": agency(a), "purpose": p, "purpose_label": purpose(p),
        }),
        NotificationKind::BreakGlassAccess {
            grant_id,
            agency: a,
            purpose: p,
        } => json!({
            "kind": "break_glass_access", "grant_id": grant_id, "agency": a,
            "agency_name": agency(a), "purpose": p, "purpose_label": purpose(p),
        }),
        NotificationKind::BreakGlassReviewed { grant_id, outcome } => json!({
            "kind": "break_glass_reviewed", "grant_id": grant_id, "outcome": outcome,
        }),
        NotificationKind::ComplaintAnswered { id, outcome } => json!({
            "kind": "complaint_answered", "complaint_id": id, "outcome": outcome,
        }),
        NotificationKind::CorrectionResolved { id, field, outcome } => json!({
            "kind": "correction_resolved", "correction_id": id, "field": field,
            "field_label": policy.field(field).map(|f| f.label_vi.clone()), "outcome": outcome,
        }),
        NotificationKind::RequestStatus { id, status } => json!({
            "kind": "request_status", "request_id": id, "status": status,
        }),
    };
    v["time"] = json!(n.at.to_string());
    v
}

/// Runs a citizen's filing once per idempotency key (a retry after a dropped connection
/// gets the first answer; nothing is filed twice).
async fn file_once<F>(
    id: vault_core::CitizenId,
    state: State,
    req: HttpRequest,
    hash: String,
    run: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(
            &crate::state::AppState,
            &vault_core::CitizenId,
            Timestamp,
        ) -> Result<Value, vault_core::VaultError>
        + Send
        + 'static,
{
    let key = idempotency_key(&req)?;
    let op = crate::routes::op_of(&req);
    let answer = core(&state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Citizen(&id),
            attempt: Attempt::new(op),
            key: key.as_ref(),
            request: hash.as_bytes(),
        };
        st.vault.once(call, now, || Ok((201, run(st, &id, now)?)))
    })
    .await?;
    Ok(answered(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComplaintBody {
    audit_index: u64,
    text: String,
}

/// `POST /v1/me/complaints` body `{"audit_index","text"}`
pub async fn file_complaint(
    Citizen(id): Citizen,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (body, hash) = read_json::<ComplaintBody>(&req, payload, state.max_body).await?;
    file_once(id, state, req, hash, move |st, id, now| {
        let c = st
            .vault
            .file_complaint(id, body.audit_index, &body.text, now)?;
        Ok(json!({
            "id": c.id, "audit_index": c.audit_index, "status": c.status(),
            "filed_at": c.filed_at.to_string(),
        }))
    })
    .await
}

/// `GET /v1/me/complaints`
pub async fn complaints(Citizen(id): Citizen, state: State) -> Result<HttpResponse, ApiError> {
    let list = core(&state, move |st| st.vault.my_complaints(&id)).await?;
    let items: Vec<Value> = list.iter().rev().map(complaint_view).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"items": items})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrectionBody {
    field: String,
    proposed_value: Value,
    #[serde(default)]
    note: String,
}

/// `POST /v1/me/corrections` body `{"field","proposed_value","note"}`
pub async fn file_correction(
    Citizen(id): Citizen,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (body, hash) = read_json::<CorrectionBody>(&req, payload, state.max_body).await?;
    file_once(id, state, req, hash, move |st, id, now| {
        let c = st
            .vault
            .file_correction(id, &body.field, body.proposed_value, &body.note, now)?;
        Ok(json!({
            "id": c.id, "field": c.field, "status": c.status(),
            "filed_at": c.filed_at.to_string(),
        }))
    })
    .await
}

/// `GET /v1/me/corrections`
pub async fn corrections(Citizen(id): Citizen, state: State) -> Result<HttpResponse, ApiError> {
    let list = core(&state, move |st| st.vault.my_corrections(&id)).await?;
    let items: Vec<Value> = list
        .iter()
        .rev()
        .map(|c| correction_view(&state, c))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"items": items})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    kind: String,
    #[serde(default)]
    note: String,
}

/// `POST /v1/me/requests` body `{"kind","note"?}`
pub async fn file_request(
    Citizen(id): Citizen,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (body, hash) = read_json::<RequestBody>(&req, payload, state.max_body).await?;
    let kind = RequestKind::parse(&body.kind).ok_or_else(|| {
        ApiError::InvalidRequest(
            "`kind` must be access, correction, erasure, restriction, objection or withdrawal"
                .into(),
        )
    })?;
    file_once(id, state, req, hash, move |st, id, now| {
        let r = st.vault.file_request(id, kind, &body.note, now)?;
        // The answer (kept for replays, outside the citizen's key) holds no note.
        let mut view = request_view(&r, now);
        if let Some(h) = view["history"].as_array_mut() {
            for step in h {
                step["note"] = json!("");
            }
        }
        Ok(view)
    })
    .await
}

/// `GET /v1/me/requests`
pub async fn requests(Citizen(id): Citizen, state: State) -> Result<HttpResponse, ApiError> {
    let (list, now) = core(&state, move |st| {
        st.vault.my_requests(&id).map(|l| (l, st.now()))
    })
    .await?;
    let items: Vec<Value> = list.iter().rev().map(|r| request_view(r, now)).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"items": items})))
}

/// `GET /v1/me/notifications`
pub async fn notifications(Citizen(id): Citizen, state: State) -> Result<HttpResponse, ApiError> {
    let list = core(&state, move |st| st.vault.my_notifications(&id, st.now())).await?;
    let items: Vec<Value> = list.iter().map(|n| notification_view(&state, n)).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"items": items})))
}
