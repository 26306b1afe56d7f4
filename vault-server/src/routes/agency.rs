//! Agency routes (mTLS): purposes, grants, releases and source-of-truth writes.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use vault_core::audit::SafeId;
use vault_core::grant::{Grant, GrantStatus};
use vault_core::policy::ConsentRule;
use vault_core::vault::{GrantOutcome, GrantRequest};
use vault_core::{CitizenId, Timestamp};

use crate::auth::{Agency, bearer};
use crate::problem::ApiError;
use crate::state::{
    State, answered, core, first_half, idempotency_key, parse_json, read_json, vault_error,
};
use vault_core::vault::{Attempt, Caller, Once};

/// `GET /v1/purposes`
pub async fn purposes(Agency(caller): Agency, state: State) -> Result<HttpResponse, ApiError> {
    let policy = state.vault.policy();
    let agency = policy
        .agency(&caller.agency)
        .ok_or(ApiError::UnknownAgency)?;
    let list: Vec<Value> = agency
        .purposes
        .iter()
        .filter_map(|p| policy.purpose(p))
        .map(|p| {
            let mut fields = p.fields.clone();
            if p.derived.age_at_least.is_some() {
                fields.push(vault_core::policy::DERIVED_AGE_AT_LEAST.into());
            }
            if !p.derived.resides_in.is_empty() {
                fields.push(vault_core::policy::DERIVED_RESIDES_IN.into());
            }
            json!({
                "id": p.id, "label_vi": p.label_vi, "label_en": p.label_en, "fields": fields,
                "consent": match p.consent { ConsentRule::Required => "required",
                                             ConsentRule::NotRequired => "not_required" },
                "max_ttl_seconds": p.max_ttl_seconds, "max_uses": p.max_uses,
                "break_glass": p.break_glass,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Official {
    id: String,
    #[serde(default)]
    unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    citizen_id: String,
    purpose: String,
    dossier_id: String,
    fields: Vec<String>,
    official: Official,
    #[serde(default)]
    ttl_seconds: Option<u32>,
}

impl GrantBody {
    fn into_request(self) -> GrantRequest {
        GrantRequest {
            citizen_id: self.citizen_id,
            purpose: self.purpose,
            dossier_id: self.dossier_id,
            fields: self.fields,
            official_id: self.official.id,
            official_unit: self.official.unit,
            ttl_seconds: self.ttl_seconds,
        }
    }
}

/// A `POST /v1/grants` body as the core's request (the handler's parsing, for the fuzz
/// target and its corpus replay).
pub fn grant_request(bytes: &[u8]) -> Result<GrantRequest, ApiError> {
    parse_json::<GrantBody>(bytes).map(GrantBody::into_request)
}

/// An optional instant as RFC 3339, or `null`.
fn time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| json!(t.to_string()))
}

fn active_body(g: &Grant, token: &str) -> Value {
    json!({
        "grant_id": g.id, "status": "active", "access_token": token, "token_type": "Bearer",
        "expires_at": time(g.token_exp), "fields": g.fields, "max_uses": g.max_uses,
        "verification_code": g.verification_code,
    })
}

/// `POST /v1/grants`
pub async fn request_grant(
    Agency(caller): Agency,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let (body, _) = read_json::<GrantBody>(&req, payload, state.max_body).await?;
    let request = body.into_request();
    // The decision runs on this worker, like the release's first half (store reads, the
    // policy, the audit entry queued), and the wait for the entry's fsync is an await; only
    // the second half, which stores the grant and waits for the store's flush before the
    // token is handed out, takes a blocking-pool thread. Before, each grant parked one of
    // those threads through the audit group commit as well.
    let (ticket, after) = first_half(&state, move |st| {
        st.vault
            .begin_grant(&caller, &request, key.as_ref(), st.now())
            .map(vault_core::vault::Audited::into_parts)
    })
    .await?;
    // Its own task, so a client that hangs up meanwhile cannot leave an audited grant
    // unstored.
    let st = state.clone();
    let outcome = actix_web::rt::spawn(async move {
        let durable = ticket.await;
        core(&st, move |s| s.vault.finish_grant(after, durable)).await
    })
    .await
    .map_err(|_| ApiError::Unavailable)?;
    match outcome {
        Ok(GrantOutcome::Active { grant, token }) => {
            state.metrics.grant("active");
            Ok(HttpResponse::Created().json(active_body(&grant, &token)))
        }
        Ok(GrantOutcome::Pending { grant }) => {
            state.metrics.grant("pending_consent");
            Ok(HttpResponse::Accepted().json(pending_body(&grant)))
        }
        Ok(GrantOutcome::Replayed { grant, token }) => {
            // The earlier grant as it is now: still waiting (202, as first answered), or its
            // status, with the token only if approved since and not handed out yet.
            let now = state.now();
            let pending = grant.status_at(now) == GrantStatus::PendingConsent;
            let mut r = if pending {
                HttpResponse::Accepted()
            } else {
                HttpResponse::Ok()
            };
            r.insert_header(("Idempotent-Replayed", "true"));
            Ok(if pending {
                r.json(pending_body(&grant))
            } else {
                r.json(status_body(&grant, token.as_deref(), now))
            })
        }
        Err(e) => {
            state.metrics.grant("denied");
            Err(e)
        }
    }
}

/// `GET /v1/grants/{grant_id}`
pub async fn grant_status(
    Agency(caller): Agency,
    state: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let (g, token, now) = core(&state, move |st| {
        let now = st.now();
        st.vault
            .grant_status(&caller, &id, now)
            .map(|(g, t)| (g, t, now))
    })
    .await?;
    Ok(HttpResponse::Ok().json(status_body(&g, token.as_deref(), now)))
}

fn pending_body(g: &Grant) -> Value {
    json!({
        "grant_id": g.id, "status": "pending_consent",
        "verification_code": g.verification_code,
        "consent_expires_at": time(g.consent_expires),
    })
}

/// A grant's status as the agency sees it (`GET /v1/grants/{id}`), with the token when it is
/// handed out now.
fn status_body(g: &Grant, token: Option<&str>, now: Timestamp) -> Value {
    let status = g.status_at(now);
    let mut body = json!({
        "grant_id": g.id, "status": status.as_str(), "purpose": g.purpose,
        "dossier_id": g.dossier_id, "fields": g.fields, "max_uses": g.max_uses,
        "uses": g.uses, "verification_code": g.verification_code,
        "expires_at": time(g.token_exp), "break_glass": g.break_glass,
    });
    if status == GrantStatus::PendingConsent {
        body["consent_expires_at"] = time(g.consent_expires);
    }
    if let Some(t) = token {
        body["access_token"] = json!(t);
        body["token_type"] = json!("Bearer");
    }
    body
}

/// `DELETE /v1/grants/{grant_id}`
pub async fn revoke_grant(
    Agency(caller): Agency,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let op = crate::routes::op_of(&req);
    let id = id.into_inner();
    let request = format!("DELETE {id}");
    let answer = core(&state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Agency(&caller.agency),
            attempt: Attempt {
                grant: Some(&id),
                ..Attempt::new(op)
            },
            key: key.as_ref(),
            request: request.as_bytes(),
        };
        st.vault.once(call, now, || {
            st.vault.revoke_grant(&caller, &id, now)?;
            Ok((204, Value::Null))
        })
    })
    .await?;
    Ok(answered(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters.
pub struct FieldsQuery {
    #[serde(default)]
    fields: Option<String>,
}

/// `GET /v1/citizens/{citizen_id}/fields`
pub async fn release(
    Agency(caller): Agency,
    state: State,
    req: HttpRequest,
    citizen: web::Path<String>,
    query: web::Query<FieldsQuery>,
) -> Result<HttpResponse, ApiError> {
    // A missing token goes through the core like a bad one: refused and audited.
    let token = bearer(&req).unwrap_or_default();
    let fields: Vec<String> = query
        .fields
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    // On this worker, not the blocking pool: the first half reads the store (memory and page
    // cache) and queues the audit entry; the wait for the group commit's fsync is an await,
    // not a parked thread; the second half decrypts only once the entry is durable. A thread
    // hop and two wake-ups per release were the largest cost left (BENCHMARKS.md).
    let token = token.to_owned();
    let thumbprint = caller.cert_thumbprint.clone();
    let who = citizen.clone();
    let (ticket, after) = first_half(&state, move |st| {
        st.vault
            .begin_release(&token, &thumbprint, &who, &fields, st.now())
            .map(vault_core::vault::Audited::into_parts)
    })
    .await?;
    let durable = ticket.await;
    let r = state
        .vault
        .finish_release(after, durable)
        .map_err(|e| vault_error(&state, e))?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(ReleaseBody {
            audit: AuditRef {
                index: r.audit.index,
                leaf_hash: hex::encode(r.audit.leaf_hash),
            },
            citizen_id: &citizen,
            disputed: &r.disputed,
            fields: &r.fields,
            grant_id: &r.grant_id,
            purpose: &r.purpose,
        }))
}

/// A release answer, serialized straight from the released values (members in the order
/// a JSON object map would sort them, as before).
#[derive(Serialize)]
struct ReleaseBody<'a> {
    audit: AuditRef,
    citizen_id: &'a str,
    /// Released fields under an open correction (only when there are some).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    disputed: &'a [String],
    fields: &'a std::collections::BTreeMap<String, Value>,
    grant_id: &'a str,
    purpose: &'a str,
}

#[derive(Serialize)]
struct AuditRef {
    index: u64,
    leaf_hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    fields: Map<String, Value>,
    source: String,
}

impl WriteBody {
    fn checked(self) -> Result<(Map<String, Value>, SafeId), ApiError> {
        if self.fields.is_empty() {
            return Err(ApiError::InvalidRequest(
                "`fields` must name at least one field".into(),
            ));
        }
        let source = crate::routes::safe_id("source", &self.source)?;
        Ok((self.fields, source))
    }
}

/// A `PUT /v1/citizens/{citizen_id}` body as (fields, source) after the handler's checks
/// (for the fuzz target and its corpus replay).
pub fn write_request(bytes: &[u8]) -> Result<(Map<String, Value>, SafeId), ApiError> {
    parse_json::<WriteBody>(bytes)?.checked()
}

/// `PUT /v1/citizens/{citizen_id}` (source-of-truth agencies)
pub async fn write_record(
    Agency(caller): Agency,
    state: State,
    req: HttpRequest,
    citizen: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let op = crate::routes::op_of(&req);
    let citizen = citizen.into_inner();
    let (body, hash) = read_json::<WriteBody>(&req, payload, state.max_body).await?;
    let (fields, source) = body.checked()?;
    let answer = core(&state, move |st| {
        let now = st.now();
        // The citizen (blind) scopes the key too: one key cannot replay onto another record.
        let blind = CitizenId::parse(&citizen).ok().map(|c| st.vault.blind(&c));
        let call = Once {
            caller: Caller::Agency(&caller.agency),
            attempt: Attempt {
                citizen: blind.as_ref(),
                ..Attempt::new(op)
            },
            // A write naming no valid citizen is refused whatever its key: nothing to
            // remember, and no other call's key to conflict with.
            key: key.as_ref().filter(|_| blind.is_some()),
            request: hash.as_bytes(),
        };
        st.vault.once(call, now, || {
            let version =
                st.vault
                    .write_as_agency(&caller.agency, &citizen, fields, &source, now)?;
            Ok((200, json!({"version": version})))
        })
    })
    .await?;
    Ok(answered(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters of `GET /v1/corrections`.
pub struct CorrectionsQuery {
    #[serde(default)]
    status: Option<String>,
}

/// `GET /v1/corrections?status=open` (source-of-truth agencies): the open corrections of
/// the fields the agency is the source of, each shown audited.
pub async fn corrections(
    Agency(caller): Agency,
    state: State,
    q: web::Query<CorrectionsQuery>,
) -> Result<HttpResponse, ApiError> {
    if q.status.as_deref().is_some_and(|s| s != "open") {
        return Err(ApiError::InvalidRequest(
            "status must be open (resolved corrections are the citizen's)".into(),
        ));
    }
    let list = core(&state, move |st| {
        st.vault.corrections_for(&caller.agency, st.now())
    })
    .await?;
    let items: Vec<Value> = list
        .iter()
        .map(|q| {
            let c = &q.correction;
            json!({
                "id": c.id, "citizen_id": c.citizen_id, "field": c.field,
                "proposed_value": c.proposed_value, "note": c.note,
                "status": q.status, "filed_at": c.filed_at.to_string(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"items": items})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    outcome: String,
    #[serde(default)]
    reason: String,
}

/// `POST /v1/corrections/{id}/resolve` body `{"outcome":"accepted|rejected","reason"}`.
pub async fn resolve_correction(
    Agency(caller): Agency,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let op = crate::routes::op_of(&req);
    let id = id.into_inner();
    let (body, hash) = read_json::<ResolveBody>(&req, payload, state.max_body).await?;
    let outcome = vault_core::case::CorrectionOutcome::parse(&body.outcome)
        .ok_or_else(|| ApiError::InvalidRequest("`outcome` must be accepted or rejected".into()))?;
    let request = json!([id, hash]).to_string();
    let answer = core(&state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Agency(&caller.agency),
            attempt: Attempt::new(op),
            key: key.as_ref(),
            request: request.as_bytes(),
        };
        st.vault.once(call, now, || {
            let c = st
                .vault
                .resolve_correction(&caller.agency, &id, outcome, &body.reason, now)?;
            let r = c.resolution.as_ref();
            Ok((
                200,
                json!({
                    "id": c.id, "field": c.field, "status": c.status(),
                    "reason": r.map(|r| r.reason.clone()),
                    "resolved_at": r.map(|r| r.resolved_at.to_string()),
                }),
            ))
        })
    })
    .await?;
    Ok(answered(answer))
}
