//! The auditors' reports: the pre-filled breach notification (JSON, or a printable page for
//! `Accept: text/html`), the record of processing built from the policy set, and the
//! "declare once" ledger. Each is audited before it is computed.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::{Value, json};
use vault_core::Timestamp;
use vault_core::policy::{ConsentRule, Sensitivity};
use vault_core::vault::BreachReport;

use crate::auth::Auditor;
use crate::problem::ApiError;
use crate::routes::auditor::parse_time;
use crate::routes::safe_id;
use crate::state::{State, core};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters.
pub struct WindowQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    agency: Option<String>,
    #[serde(default)]
    official: Option<String>,
}

/// The window asked for: `to` defaults to now, `from` to `default_hours` before `to`.
fn window(
    q: &WindowQuery,
    now: Timestamp,
    default_hours: i64,
) -> Result<(Timestamp, Timestamp), ApiError> {
    let to =
        q.to.as_deref()
            .map(|s| parse_time("to", s))
            .transpose()?
            .unwrap_or(now);
    let from = q
        .from
        .as_deref()
        .map(|s| parse_time("from", s))
        .transpose()?
        .unwrap_or_else(|| to.plus_secs(-default_hours * 3_600));
    if from > to {
        return Err(ApiError::InvalidRequest(
            "`from` must not be after `to`".into(),
        ));
    }
    Ok((from, to))
}

fn breach_json(r: &BreachReport) -> Value {
    json!({
        "from": r.from.to_string(), "to": r.to.to_string(),
        "agency": r.agency, "official": r.official,
        "affected_citizens": r.affected_citizens,
        "fields": r.fields, "agencies": r.agencies, "officials": r.officials,
        "events": r.events, "entries": r.entries,
    })
}

#[derive(Template)]
#[template(path = "console/breach.html")]
struct BreachPage {
    css: String,
    from: String,
    to: String,
    agency: String,
    official: String,
    affected: u64,
    fields: String,
    agencies: String,
    officials: String,
    events: Vec<(String, u64)>,
    entries: String,
}

/// `GET /v1/audit/reports/breach?from=&to=&agency=&official=`
pub async fn breach(
    Auditor(who): Auditor,
    state: State,
    req: HttpRequest,
    q: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = window(&q, state.now(), 72)?;
    let agency = q
        .agency
        .as_deref()
        .map(|a| safe_id("agency", a))
        .transpose()?;
    let official = q
        .official
        .as_deref()
        .map(|o| safe_id("official", o))
        .transpose()?;
    let r = core(&state, move |st| {
        st.vault.breach_report(
            &who,
            from,
            to,
            agency.as_ref().map(|a| a.as_str()),
            official.as_ref().map(|o| o.as_str()),
            st.now(),
        )
    })
    .await?;
    let wants_html = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if !wants_html {
        return Ok(HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(breach_json(&r)));
    }
    let policy = state.vault.policy();
    let join = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>().join(", ");
    let page = BreachPage {
        css: state.portal_css(),
        from: crate::portal::view::local_time(r.from),
        to: crate::portal::view::local_time(r.to),
        agency: r.agency.clone().unwrap_or_default(),
        official: r.official.clone().unwrap_or_default(),
        affected: r.affected_citizens,
        fields: join(&mut r.fields.iter().map(|f| {
            policy
                .field(f)
                .map_or_else(|| f.clone(), |d| d.label_vi.clone())
        })),
        agencies: join(&mut r.agencies.iter().map(|a| {
            policy
                .agency(a)
                .map_or_else(|| a.clone(), |d| d.name_vi.clone())
        })),
        officials: join(&mut r.officials.iter().cloned()),
        events: r.events.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        entries: join(&mut r.entries.iter().map(u64::to_string)),
    };
    let body = page.render().map_err(|_| ApiError::Unavailable)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(body))
}

/// `GET /v1/audit/reports/inventory`: the record of processing built from `policies/`.
pub async fn inventory(Auditor(who): Auditor, state: State) -> Result<HttpResponse, ApiError> {
    core(&state, move |st| st.vault.inventory_read(&who, st.now())).await?;
    let policy = state.vault.policy();
    let purposes: Vec<Value> = policy
        .purposes()
        .map(|p| {
            let fields: Vec<Value> = p
                .fields
                .iter()
                .map(|f| {
                    let d = policy.field(f);
                    json!({
                        "name": f,
                        "label_vi": d.map(|d| d.label_vi.clone()),
                        "sensitivity": match d.map(|d| d.sensitivity) {
                            Some(Sensitivity::Sensitive) => "sensitive",
                            _ => "basic",
                        },
                        "source": d.and_then(|d| d.source.clone()),
                    })
                })
                .collect();
            let agencies: Vec<&str> = policy
                .agencies()
                .filter(|a| a.purposes.contains(&p.id))
                .map(|a| a.id.as_str())
                .collect();
            json!({
                "purpose": p.id, "label_vi": p.label_vi, "label_en": p.label_en,
                "legal_basis": p.legal_basis,
                "legal_basis_covers_sensitive": p.legal_basis_covers_sensitive,
                "fields": fields, "agencies": agencies,
                "consent": match p.consent {
                    ConsentRule::Required => "required",
                    ConsentRule::NotRequired => "not_required",
                },
                "break_glass": p.break_glass,
                "max_ttl_seconds": p.max_ttl_seconds, "max_uses": p.max_uses,
                "retention_seconds": state.grant_retention_seconds,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "policy_sha256": policy.sha256_hex(),
        "purposes": purposes,
    })))
}

/// `GET /v1/audit/reports/reuse?from=&to=`
pub async fn reuse(
    Auditor(who): Auditor,
    state: State,
    q: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    if q.agency.is_some() || q.official.is_some() {
        return Err(ApiError::InvalidRequest(
            "the ledger takes `from` and `to` only".into(),
        ));
    }
    let (from, to) = window(&q, state.now(), 30 * 24)?;
    let lines = core(&state, move |st| {
        st.vault.reuse_report(&who, from, to, st.now())
    })
    .await?;
    let items: Vec<Value> = lines
        .iter()
        .map(|((agency, purpose), l)| {
            json!({"agency": agency, "purpose": purpose, "releases": l.releases,
                   "field_values": l.field_values, "citizens": l.citizens})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "from": from.to_string(), "to": to.to_string(), "items": items,
    })))
}

/// `GET /v1/audit/anomalies?from=&to=` (default: the last 7 days)
pub async fn anomalies(
    Auditor(who): Auditor,
    state: State,
    q: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    if q.agency.is_some() || q.official.is_some() {
        return Err(ApiError::InvalidRequest(
            "anomalies take `from` and `to` only".into(),
        ));
    }
    let (from, to) = window(&q, state.now(), 7 * 24)?;
    let hours = state.break_glass_review_hours;
    let list = core(&state, move |st| {
        st.vault.anomalies(&who, from, to, hours, st.now())
    })
    .await?;
    Ok(HttpResponse::Ok().json(list.iter().map(anomaly_json).collect::<Vec<_>>()))
}

/// An anomaly as the API answers it.
pub fn anomaly_json(a: &vault_core::vault::Anomaly) -> Value {
    json!({
        "id": a.id, "rule": a.rule, "severity": a.severity, "agency": a.agency,
        "official": a.official, "from": a.from.to_string(), "to": a.to.to_string(),
        "count": a.count, "entries": a.entries,
    })
}
