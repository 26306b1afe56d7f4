//! The route table: one list that both registers every handler and describes it for the
//! OpenAPI document, so the two cannot drift; and the fallback that answers 404 or 405 as
//! problem+json.

pub mod agency;
pub mod auditor;
pub mod citizen;
pub mod export;
pub mod ops;
pub mod oversight;
pub mod reports;

use actix_web::{HttpRequest, web};

use crate::problem::ApiError;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (operations routes).
    Public,
    /// An agency system (mTLS).
    Agency,
    /// An agency system with a grant token.
    AgencyToken,
    /// A citizen (bearer ID token).
    Citizen,
    /// An auditor (bearer with role, or auditor certificate).
    Auditor,
}

/// One route as documented.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path template (`{name}` for parameters).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// One line.
    pub summary: &'static str,
    /// The operation's name (`grant.revoke`, …): recorded as the `action` of an
    /// `access.denied` entry when an identified caller is refused here.
    pub op: &'static str,
    /// Query parameters accepted (any other is refused).
    pub query: &'static [&'static str],
    /// Whether it takes a JSON body.
    pub body: bool,
}

macro_rules! routes {
    ($( $method:ident $path:literal => $handler:path, $access:ident, op: $op:literal,
        body: $body:literal, query: [$($q:literal),*], $summary:literal; )*) => {
        /// Registers every route.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
        }

        /// Every route, for the OpenAPI document and the fallback.
        pub const TABLE: &[Route] = &[
            $( Route {
                method: routes!(@upper $method),
                path: $path,
                access: Access::$access,
                summary: $summary,
                op: $op,
                query: &[$($q),*],
                body: $body,
            }, )*
        ];
    };
    (@upper get) => { "GET" };
    (@upper post) => { "POST" };
    (@upper put) => { "PUT" };
    (@upper delete) => { "DELETE" };
}

// The release first: actix tries the routes in this order, running a regex for every dynamic
// path it passes, and the release is most of the traffic.
routes! {
    get "/v1/citizens/{citizen_id}/fields" => agency::release, AgencyToken, op: "record.release",
        body: false, query: ["fields"], "Release granted fields (audited before release)";
    get "/v1/purposes" => agency::purposes, Agency, op: "purposes.list", body: false, query: [],
        "The purposes the calling agency may use";
    post "/v1/grants" => agency::request_grant, Agency, op: "grant.request", body: true,
        query: [], "Ask for a grant: citizen, purpose, dossier, fields, official";
    get "/v1/grants/{grant_id}" => agency::grant_status, Agency, op: "grant.status",
        body: false, query: [], "A grant's status; an approved grant's token is returned once";
    delete "/v1/grants/{grant_id}" => agency::revoke_grant, Agency, op: "grant.revoke",
        body: false, query: [],
        "Revoke one of the agency's grants; its token stops working at once";
    put "/v1/citizens/{citizen_id}" => agency::write_record, Agency, op: "record.write",
        body: true, query: [], "Write a citizen's fields (source-of-truth agencies)";
    get "/v1/me/record" => citizen::record, Citizen, op: "me.record", body: false, query: [],
        "The citizen's own record (audited)";
    get "/v1/me/accesses" => citizen::accesses, Citizen, op: "me.accesses", body: false,
        query: ["cursor", "limit"], "Who read what, when and why: newest first";
    get "/v1/me/accesses/{index}/proof" => citizen::receipt, Citizen, op: "receipt.read",
        body: false, query: [], "An offline-checkable receipt for one of the citizen's entries";
    get "/v1/me/grants" => citizen::grants, Citizen, op: "me.grants", body: false,
        query: ["status"], "The citizen's grants (e.g. pending consent)";
    post "/v1/me/grants/{grant_id}/approve" => citizen::approve, Citizen, op: "grant.approve",
        body: true, query: [],
        "Consent to that pending grant alone; `remember_days` also keeps a standing consent";
    post "/v1/me/grants/{grant_id}/refuse" => citizen::refuse, Citizen, op: "grant.refuse",
        body: false, query: [], "Refuse that pending grant";
    get "/v1/me/consents" => citizen::consents, Citizen, op: "consent.list", body: false,
        query: [], "The citizen's standing consents in force";
    delete "/v1/me/consents/{consent_id}" => citizen::withdraw, Citizen,
        op: "consent.withdraw", body: false, query: [],
        "Withdraw a standing consent; grants resting on it stop working at once";
    post "/v1/me/verify" => citizen::verify, Citizen, op: "code.verify", body: true, query: [],
        "Check whether a verification code belongs to a genuine request about the citizen";
    post "/v1/me/complaints" => citizen::file_complaint, Citizen, op: "complaint.file",
        body: true, query: [],
        "Complain about one entry of the citizen's own history (sealed text, audited)";
    get "/v1/me/complaints" => citizen::complaints, Citizen, op: "complaint.list", body: false,
        query: [], "The citizen's complaints with their answers";
    post "/v1/me/corrections" => citizen::file_correction, Citizen, op: "correction.file",
        body: true, query: [],
        "Propose a new value for one field; it is disputed for every reader until resolved";
    get "/v1/me/corrections" => citizen::corrections, Citizen, op: "correction.list",
        body: false, query: [], "The citizen's corrections and their outcomes";
    post "/v1/me/requests" => citizen::file_request, Citizen, op: "request.file", body: true,
        query: [], "A data-subject request (Law 91/2025), with its legal deadlines";
    get "/v1/me/requests" => citizen::requests, Citizen, op: "request.list", body: false,
        query: [], "The citizen's data-subject requests with deadlines and status history";
    get "/v1/me/notifications" => citizen::notifications, Citizen, op: "me.notifications",
        body: false, query: [], "What the citizen should know about, newest first";
    get "/v1/corrections" => agency::corrections, Agency, op: "correction.queue", body: false,
        query: ["status"],
        "Open corrections of the fields the agency is the source of truth for (audited)";
    post "/v1/corrections/{id}/resolve" => agency::resolve_correction, Agency,
        op: "correction.resolve", body: true, query: [],
        "Accept (writes the proposed value) or reject a correction, with a reason";
    get "/v1/audit/entries" => auditor::entries, Auditor, op: "audit.entries", body: false,
        query: ["agency", "official", "purpose", "event", "citizen_id", "from", "to", "cursor", "limit"],
        "Query the audit log, oldest first (audited)";
    get "/v1/audit/entries/{index}" => auditor::entry, Auditor, op: "audit.entry", body: false,
        query: [], "One audit entry and its leaf hash (audited)";
    get "/v1/audit/checkpoint" => auditor::checkpoint, Auditor, op: "audit.checkpoint",
        body: false, query: [], "The latest signed checkpoint (C2SP signed note)";
    get "/v1/audit/proof/inclusion" => auditor::inclusion, Auditor, op: "audit.inclusion",
        body: false, query: ["index", "tree_size"], "RFC 9162 inclusion proof";
    get "/v1/audit/proof/consistency" => auditor::consistency, Auditor,
        op: "audit.consistency", body: false, query: ["from", "to"],
        "RFC 9162 consistency proof";
    get "/v1/audit/export" => export::export, Auditor, op: "audit.export", body: false,
        query: ["from", "to"],
        "Entries from..to as NDJSON, exactly the lines of `vaultctl audit export`, streamed (audited)";
    get "/v1/audit/break-glass" => oversight::break_glass, Auditor, op: "breakglass.list",
        body: false, query: ["status"],
        "Break-glass grants, unreviewed or reviewed, with review due times and releases (audited)";
    post "/v1/audit/break-glass/{grant_id}/review" => oversight::review, Auditor,
        op: "breakglass.review", body: true, query: [],
        "Review a break-glass grant: justified or unjustified, with a note; the citizen is told";
    get "/v1/audit/complaints" => oversight::complaints, Auditor, op: "complaint.queue",
        body: false, query: ["status"],
        "Complaints, open or answered, with the entry each concerns (audited)";
    post "/v1/audit/complaints/{id}/answer" => oversight::answer, Auditor,
        op: "complaint.answer", body: true, query: [],
        "Answer a complaint (upheld or dismissed, with text); the citizen sees it";
    get "/v1/audit/requests" => oversight::requests, Auditor, op: "request.queue", body: false,
        query: ["status"], "Data-subject requests: open, overdue or closed (audited)";
    post "/v1/audit/requests/{id}" => oversight::update_request, Auditor,
        op: "request.update", body: true, query: [],
        "Acknowledge, extend once, complete or refuse a request (completing an erasure erases)";
    get "/v1/audit/anomalies" => reports::anomalies, Auditor, op: "audit.anomalies",
        body: false, query: ["from", "to"],
        "Anomalies in a window, computed as the log grows, each with the entries it rests on (audited)";
    get "/v1/audit/reports/breach" => reports::breach, Auditor, op: "report.breach",
        body: false, query: ["from", "to", "agency", "official"],
        "The pre-filled 72-hour breach notification for a window (JSON, or a page for Accept: text/html)";
    get "/v1/audit/reports/inventory" => reports::inventory, Auditor, op: "report.inventory",
        body: false, query: [], "The record of processing built from the policy set";
    get "/v1/audit/reports/reuse" => reports::reuse, Auditor, op: "report.reuse", body: false,
        query: ["from", "to"], "The declare-once ledger: releases and field values supplied per agency and purpose";
    get "/v1/audit/pubkey" => ops::pubkey, Public, op: "audit.pubkey", body: false, query: [],
        "The audit log's verifier key (C2SP note verifier string), for checking receipts";
    get "/healthz" => ops::healthz, Public, op: "healthz", body: false, query: [],
        "The process is up";
    get "/readyz" => ops::readyz, Public, op: "readyz", body: false, query: [],
        "Store open, audit log writable, keys loaded";
    get "/openapi.json" => ops::openapi, Public, op: "openapi", body: false, query: [],
        "This API's OpenAPI 3.1 document";
}

/// A request parameter that names a recorded identifier (`SafeId`): any other shape is a
/// mistake, refused with the parameter's name (never its value).
pub fn safe_id(name: &str, value: &str) -> Result<vault_core::audit::SafeId, ApiError> {
    vault_core::audit::SafeId::parse(value).map_err(|_| {
        ApiError::InvalidRequest(format!(
            "`{name}` must be 1-64 of A-Z a-z 0-9 . _ : @ -, without a run of 9 or more digits"
        ))
    })
}

/// Whether a concrete path matches a template.
pub fn matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && a.ends_with('}') => {
                if b.is_empty() {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The operation name of the route `req` is for (`unrouted` if none).
pub fn op_of(req: &HttpRequest) -> &'static str {
    route_of(req.method().as_str(), req.path()).map_or("unrouted", |r| r.op)
}

/// The route a request is for, if any.
pub fn route_of(method: &str, path: &str) -> Option<&'static Route> {
    TABLE
        .iter()
        .find(|r| r.method == method && matches(r.path, path))
}

/// Answer for anything the table does not route: 405 if the path exists with other
/// methods, else 404.
pub async fn fallback(req: HttpRequest) -> ApiError {
    let allowed: Vec<&str> = TABLE
        .iter()
        .filter(|r| matches(r.path, req.path()))
        .map(|r| r.method)
        .collect();
    if allowed.is_empty() {
        ApiError::NotFound
    } else {
        ApiError::MethodNotAllowed(allowed.join(", "))
    }
}

/// Refuses query parameters a route does not accept (the same rule on every route).
pub fn check_query(route: &Route, query: &str) -> Result<(), ApiError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split('=').next().unwrap_or("");
        if !route.query.contains(&name) {
            return Err(ApiError::InvalidRequest(
                "unknown query parameter (see /openapi.json)".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_concrete_paths_only() {
        assert!(matches("/v1/grants/{grant_id}", "/v1/grants/g-abc"));
        assert!(!matches("/v1/grants/{grant_id}", "/v1/grants/"));
        assert!(!matches("/v1/grants/{grant_id}", "/v1/grants/a/b"));
        assert!(matches(
            "/v1/me/accesses/{index}/proof",
            "/v1/me/accesses/5/proof"
        ));
        assert_eq!(
            route_of("DELETE", "/v1/grants/x").map(|r| r.path),
            Some("/v1/grants/{grant_id}")
        );
        assert!(route_of("PATCH", "/v1/grants/x").is_none());
    }

    #[test]
    fn unknown_query_parameters_are_refused() {
        let r = route_of("GET", "/v1/me/accesses").unwrap();
        assert!(check_query(r, "cursor=1&limit=2").is_ok());
        assert!(check_query(r, "").is_ok());
        assert!(check_query(r, "cursor=1&debug=1").is_err());
    }
}
