//! The auditors' oversight routes: the break-glass review queue and reviews, the complaints
//! queue and answers, and the data-subject requests queue and updates. Each listing is
//! audited (`audit.queried`) and each action audited by its use case; every action is safe
//! to resend with an `Idempotency-Key`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use vault_core::case::{ComplaintOutcome, RequestStatus, RequestUpdate};
use vault_core::grant::Grant;
use vault_core::vault::{Attempt, BreakGlassItem, Caller, Once, RequestFilter};

use crate::auth::Auditor;
use crate::problem::ApiError;
use crate::routes::citizen::{complaint_view, request_view};
use crate::state::{State, answered, core, idempotency_key, read_json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters.
pub struct StatusQuery {
    #[serde(default)]
    status: Option<String>,
}

fn status_of<'a>(q: &'a StatusQuery, allowed: &[&'a str]) -> Result<&'a str, ApiError> {
    let s = q.status.as_deref().unwrap_or(allowed[0]);
    if allowed.contains(&s) {
        Ok(s)
    } else {
        Err(ApiError::InvalidRequest(format!(
            "`status` must be one of: {}",
            allowed.join(", ")
        )))
    }
}

fn grant_view(g: &Grant) -> Value {
    json!({
        "grant_id": g.id, "agency": g.agency, "official": g.official, "unit": g.unit,
        "purpose": g.purpose, "dossier_id": g.dossier_id, "fields": g.fields,
        "issued_at": g.created.to_string(),
    })
}

fn break_glass_view(item: &BreakGlassItem) -> Value {
    let mut v = grant_view(&item.grant);
    v["review_due"] = json!(item.review_due.to_string());
    v["releases"] = json!(item.releases);
    if let Some(outcome) = &item.grant.review {
        v["review"] = json!({
            "outcome": outcome,
            "reviewed_at": item.grant.reviewed_at.map(|t| t.to_string()),
            "note": item.review.as_ref().map(|r| r.note.clone()),
            "auditor": item.review.as_ref().map(|r| r.auditor.clone()),
        });
    }
    v
}

/// `GET /v1/audit/break-glass?status=unreviewed|reviewed`
pub async fn break_glass(
    Auditor(who): Auditor,
    state: State,
    q: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let reviewed = status_of(&q, &["unreviewed", "reviewed"])? == "reviewed";
    let list = core(&state, move |st| {
        st.vault
            .break_glass_list(&who, reviewed, st.break_glass_review_hours, st.now())
    })
    .await?;
    Ok(HttpResponse::Ok().json(list.iter().map(break_glass_view).collect::<Vec<_>>()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    outcome: String,
    note: String,
}

/// `POST /v1/audit/break-glass/{grant_id}/review` body `{"outcome","note"}`
pub async fn review(
    Auditor(who): Auditor,
    state: State,
    req: HttpRequest,
    grant: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let op = crate::routes::op_of(&req);
    let grant = grant.into_inner();
    let (body, hash) = read_json::<ReviewBody>(&req, payload, state.max_body).await?;
    let justified = match body.outcome.as_str() {
        "justified" => true,
        "unjustified" => false,
        _ => {
            return Err(ApiError::InvalidRequest(
                "`outcome` must be justified or unjustified".into(),
            ));
        }
    };
    let request = json!([grant, hash]).to_string();
    let answer = core(&state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Auditor(&who),
            attempt: Attempt {
                grant: Some(&grant),
                ..Attempt::new(op)
            },
            key: key.as_ref(),
            request: request.as_bytes(),
        };
        st.vault.once(call, now, || {
            let g = st
                .vault
                .review_break_glass_with_note(&who, &grant, justified, &body.note, now)?;
            let mut v = grant_view(&g);
            v["review"] = json!({"outcome": g.review, "reviewed_at": now.to_string()});
            Ok((200, v))
        })
    })
    .await?;
    Ok(answered(answer))
}

/// `GET /v1/audit/complaints?status=open|answered`
pub async fn complaints(
    Auditor(who): Auditor,
    state: State,
    q: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let answered_only = status_of(&q, &["open", "answered"])? == "answered";
    let list = core(&state, move |st| {
        st.vault.complaints_list(&who, answered_only, st.now())
    })
    .await?;
    let items: Vec<Value> = list
        .iter()
        .map(|(c, entry)| {
            let mut v = complaint_view(c);
            v["entry"] = serde_json::from_slice(entry).unwrap_or(Value::Null);
            v
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(items))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    outcome: String,
    text: String,
}

/// `POST /v1/audit/complaints/{id}/answer` body `{"outcome":"upheld|dismissed","text"}`
pub async fn answer(
    Auditor(who): Auditor,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let op = crate::routes::op_of(&req);
    let id = id.into_inner();
    let (body, hash) = read_json::<AnswerBody>(&req, payload, state.max_body).await?;
    let outcome = ComplaintOutcome::parse(&body.outcome)
        .ok_or_else(|| ApiError::InvalidRequest("`outcome` must be upheld or dismissed".into()))?;
    let request = json!([id, hash]).to_string();
    let answer = core(&state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Auditor(&who),
            attempt: Attempt::new(op),
            key: key.as_ref(),
            request: request.as_bytes(),
        };
        st.vault.once(call, now, || {
            let c = st
                .vault
                .answer_complaint(&who, &id, outcome, &body.text, now)?;
            Ok((200, complaint_view(&c)))
        })
    })
    .await?;
    Ok(answered(answer))
}

/// `GET /v1/audit/requests?status=open|overdue|closed`
pub async fn requests(
    Auditor(who): Auditor,
    state: State,
    q: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = match status_of(&q, &["open", "overdue", "closed"])? {
        "overdue" => RequestFilter::Overdue,
        "closed" => RequestFilter::Closed,
        _ => RequestFilter::Open,
    };
    let (list, now) = core(&state, move |st| {
        let now = st.now();
        st.vault.requests_list(&who, filter, now).map(|l| (l, now))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(
            list.iter()
                .map(|r| request_view(r, now))
                .collect::<Vec<_>>(),
        ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    status: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    extend_days: Option<u32>,
    #[serde(default)]
    other_processor: bool,
}

/// `POST /v1/audit/requests/{id}` body `{"status":"acknowledged|extended|completed|refused",
/// "note","extend_days"?,"other_processor"?}`
pub async fn update_request(
    Auditor(who): Auditor,
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let op = crate::routes::op_of(&req);
    let id = id.into_inner();
    let (body, hash) = read_json::<UpdateBody>(&req, payload, state.max_body).await?;
    let status = RequestStatus::parse(&body.status)
        .filter(|s| *s != RequestStatus::Received)
        .ok_or_else(|| {
            ApiError::InvalidRequest(
                "`status` must be acknowledged, extended, completed or refused".into(),
            )
        })?;
    let update = RequestUpdate {
        status,
        note: body.note,
        extend_days: body.extend_days,
        other_processor: body.other_processor,
    };
    let request = json!([id, hash]).to_string();
    let answer = core(&state, move |st| {
        let now = st.now();
        let call = Once {
            caller: Caller::Auditor(&who),
            attempt: Attempt::new(op),
            key: key.as_ref(),
            request: request.as_bytes(),
        };
        st.vault.once(call, now, || {
            let r = st.vault.update_request(&who, &id, &update, now)?;
            Ok((200, request_view(&r, now)))
        })
    })
    .await?;
    Ok(answered(answer))
}
