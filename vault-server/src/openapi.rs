//! The OpenAPI 3.1 document, generated from the route table (`routes::TABLE`) so that every
//! registered route is documented and nothing undocumented is registered; schemas for
//! bodies and answers live here, next to each other.

use serde_json::{Map, Value, json};

use crate::routes::{Access, Route, TABLE};

fn s(t: &str) -> Value {
    json!({"type": t})
}

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

fn query_schema(path: &str, name: &str) -> (Value, bool) {
    let int = json!({"type": "integer", "minimum": 0});
    match (path, name) {
        ("/v1/audit/export", "from" | "to") => (json!({"type": "integer", "minimum": 0}), false),
        ("/v1/audit/proof/consistency", "from") | ("/v1/audit/proof/inclusion", "index") => {
            (int, true)
        }
        ("/v1/audit/proof/consistency", "to") | (_, "cursor" | "limit" | "tree_size") => {
            (int, false)
        }
        ("/v1/corrections", "status") => (json!({"type": "string", "enum": ["open"]}), false),
        ("/v1/audit/break-glass", "status") => (
            json!({"type": "string", "enum": ["unreviewed", "reviewed"]}),
            false,
        ),
        ("/v1/audit/complaints", "status") => (
            json!({"type": "string", "enum": ["open", "answered"]}),
            false,
        ),
        ("/v1/audit/requests", "status") => (
            json!({"type": "string", "enum": ["open", "overdue", "closed"]}),
            false,
        ),
        (_, "status") => (
            json!({"type": "string", "enum": ["pending_consent", "active", "refused", "revoked",
                                              "expired", "exhausted"]}),
            false,
        ),
        (_, "event") => (
            json!({"type": "string",
                   "enum": vault_core::audit::Event::ALL.map(|e| e.as_str())}),
            false,
        ),
        (_, "citizen_id") => (json!({"type": "string", "pattern": "^[0-9]{12}$"}), false),
        (_, "from" | "to") => (json!({"type": "string", "format": "date-time"}), false),
        (_, "agency" | "official" | "purpose") => (ident(), false),
        _ => (s("string"), false),
    }
}

fn grant_active() -> Value {
    obj(
        json!({"grant_id": s("string"), "status": {"const": "active"},
               "access_token": s("string"), "token_type": {"const": "Bearer"},
               "expires_at": s("string"), "fields": strings(), "max_uses": s("integer"),
               "verification_code": s("string")}),
        &[
            "grant_id",
            "status",
            "access_token",
            "token_type",
            "expires_at",
            "fields",
            "max_uses",
            "verification_code",
        ],
    )
}

fn grant_view() -> Value {
    obj(
        json!({"grant_id": s("string"), "status": s("string"), "agency": s("string"),
               "agency_name": nullable("string"), "official": s("string"),
               "purpose": s("string"), "purpose_label": nullable("string"),
               "dossier_id": s("string"), "fields": strings(),
               "verification_code": s("string"), "requested_at": s("string"),
               "consent_expires_at": nullable("string"), "break_glass": s("boolean")}),
        &[
            "grant_id",
            "status",
            "agency",
            "purpose",
            "fields",
            "verification_code",
        ],
    )
}

fn consent_view() -> Value {
    obj(
        json!({"id": s("string"), "agency": s("string"), "agency_name": nullable("string"),
               "purpose": s("string"), "purpose_label": nullable("string"),
               "fields": strings(), "created_at": s("string"), "expires_at": s("string")}),
        &[
            "id",
            "agency",
            "purpose",
            "purpose_label",
            "fields",
            "created_at",
            "expires_at",
        ],
    )
}

fn entry_item() -> Value {
    obj(
        json!({"index": s("integer"), "entry": s("object"), "leaf_hash": s("string")}),
        &["index", "entry", "leaf_hash"],
    )
}

fn proof(a: &str, b: &str) -> Value {
    obj(
        json!({a: s("integer"), b: s("integer"), "hashes": strings()}),
        &[a, b, "hashes"],
    )
}

fn items(item: Value) -> Value {
    obj(
        json!({"items": {"type": "array", "items": item}}),
        &["items"],
    )
}

fn complaint() -> Value {
    obj(
        json!({"id": s("string"), "audit_index": s("integer"), "text": s("string"),
               "status": {"enum": ["open", "answered"]}, "filed_at": s("string"),
               "outcome": {"enum": ["upheld", "dismissed", null]},
               "answer": nullable("string"), "answered_at": nullable("string")}),
        &["id", "audit_index", "status", "filed_at"],
    )
}

fn correction() -> Value {
    obj(
        json!({"id": s("string"), "field": s("string"), "field_label": nullable("string"),
               "proposed_value": {}, "note": s("string"),
               "status": {"enum": ["open", "accepted", "rejected"]}, "filed_at": s("string"),
               "reason": nullable("string"), "resolved_at": nullable("string")}),
        &["id", "field", "status", "filed_at"],
    )
}

fn request() -> Value {
    let statuses =
        json!({"enum": ["received", "acknowledged", "extended", "completed", "refused"]});
    obj(
        json!({"id": s("string"),
               "kind": {"enum": vault_core::case::RequestKind::ALL.map(|k| k.as_str())},
               "status": statuses, "received_at": s("string"), "acknowledge_by": s("string"),
               "complete_by": s("string"), "extended": s("boolean"), "overdue": s("boolean"),
               "history": {"type": "array", "items": obj(
                   json!({"status": statuses, "at": s("string"), "note": s("string")}),
                   &["status", "at"])}}),
        &[
            "id",
            "kind",
            "status",
            "received_at",
            "acknowledge_by",
            "complete_by",
        ],
    )
}

/// The success answers of a route: (status, media type, schema).
fn success(r: &Route) -> Vec<(u16, &'static str, Value)> {
    let j = "application/json";
    match (r.method, r.path) {
        ("GET", "/v1/purposes") => vec![(
            200,
            j,
            json!({"type": "array", "items": obj(
            json!({"id": s("string"), "label_vi": s("string"), "label_en": s("string"),
                   "fields": strings(), "consent": {"enum": ["required", "not_required"]},
                   "max_ttl_seconds": s("integer"), "max_uses": s("integer"),
                   "break_glass": s("boolean")}),
            &["id", "label_vi", "label_en", "fields", "consent", "max_ttl_seconds",
              "max_uses", "break_glass"])}),
        )],
        ("POST", "/v1/grants") => vec![
            (201, j, grant_active()),
            (
                202,
                j,
                obj(
                    json!({"grant_id": s("string"), "status": {"const": "pending_consent"},
                                "verification_code": s("string"),
                                "consent_expires_at": s("string")}),
                    &[
                        "grant_id",
                        "status",
                        "verification_code",
                        "consent_expires_at",
                    ],
                ),
            ),
        ],
        ("GET", "/v1/grants/{grant_id}") => vec![(
            200,
            j,
            obj(
                json!({"grant_id": s("string"), "status": {"enum": ["pending_consent", "active",
                   "refused", "revoked", "expired", "exhausted"]}, "purpose": s("string"),
                   "dossier_id": s("string"), "fields": strings(), "max_uses": s("integer"),
                   "uses": s("integer"), "verification_code": s("string"),
                   "expires_at": nullable("string"), "break_glass": s("boolean"),
                   "consent_expires_at": nullable("string"), "access_token": s("string"),
                   "token_type": {"const": "Bearer"}}),
                &["grant_id", "status", "fields", "max_uses", "uses"],
            ),
        )],
        ("DELETE", _) => vec![(204, "", Value::Null)],
        ("GET", "/v1/citizens/{citizen_id}/fields") => vec![(
            200,
            j,
            obj(
                json!({"citizen_id": s("string"), "grant_id": s("string"), "purpose": s("string"),
                   "fields": s("object"), "disputed": strings(),
                   "audit": obj(json!({"index": s("integer"), "leaf_hash": s("string")}),
                                &["index", "leaf_hash"])}),
                &["citizen_id", "grant_id", "purpose", "fields", "audit"],
            ),
        )],
        ("PUT", _) => vec![(200, j, obj(json!({"version": s("integer")}), &["version"]))],
        ("GET", "/v1/me/record") => vec![(
            200,
            j,
            obj(
                json!({"version": s("integer"), "fields": s("object"), "disputed": strings()}),
                &["version", "fields", "disputed"],
            ),
        )],
        ("POST", "/v1/me/complaints") => vec![(201, j, complaint())],
        ("GET", "/v1/me/complaints") => vec![(200, j, items(complaint()))],
        ("POST", "/v1/me/corrections") => vec![(201, j, correction())],
        ("GET", "/v1/me/corrections") => vec![(200, j, items(correction()))],
        ("POST", "/v1/me/requests") => vec![(201, j, request())],
        ("GET", "/v1/me/requests") => vec![(200, j, items(request()))],
        ("GET", "/v1/me/notifications") => vec![(
            200,
            j,
            items(obj(
                json!({"kind": {"enum": ["consent_waiting", "break_glass_access",
                    "break_glass_reviewed", "complaint_answered", "correction_resolved",
                    "request_status"]}, "time": s("string")}),
                &["kind", "time"],
            )),
        )],
        ("GET", "/v1/audit/export") => vec![(200, "application/x-ndjson", s("string"))],
        ("GET", "/v1/audit/anomalies") => vec![(
            200,
            j,
            json!({"type": "array", "items": obj(
                json!({"id": s("string"), "rule": s("string"),
                       "severity": {"enum": ["high", "medium", "low"]},
                       "agency": nullable("string"), "official": nullable("string"),
                       "from": s("string"), "to": s("string"), "count": s("integer"),
                       "entries": {"type": "array", "items": s("integer")}}),
                &["id", "rule", "severity", "from", "to", "count", "entries"])}),
        )],
        ("GET", "/v1/audit/reports/breach") => vec![(
            200,
            j,
            obj(
                json!({"from": s("string"), "to": s("string"), "agency": nullable("string"),
                       "official": nullable("string"), "affected_citizens": s("integer"),
                       "fields": strings(), "agencies": strings(), "officials": strings(),
                       "events": s("object"),
                       "entries": {"type": "array", "items": s("integer")}}),
                &[
                    "from",
                    "to",
                    "affected_citizens",
                    "fields",
                    "agencies",
                    "officials",
                    "events",
                    "entries",
                ],
            ),
        )],
        ("GET", "/v1/audit/reports/inventory") => vec![(
            200,
            j,
            obj(
                json!({"policy_sha256": s("string"),
                       "purposes": {"type": "array", "items": s("object")}}),
                &["policy_sha256", "purposes"],
            ),
        )],
        ("GET", "/v1/audit/reports/reuse") => vec![(
            200,
            j,
            obj(
                json!({"from": s("string"), "to": s("string"),
                       "items": {"type": "array", "items": obj(
                           json!({"agency": s("string"), "purpose": s("string"),
                                  "releases": s("integer"), "field_values": s("integer"),
                                  "citizens": s("integer")}),
                           &["agency", "purpose", "releases", "field_values", "citizens"])}}),
                &["from", "to", "items"],
            ),
        )],
        ("GET", "/v1/audit/break-glass") => vec![(
            200,
            j,
            json!({"type": "array", "items": obj(
                json!({"grant_id": s("string"), "agency": s("string"), "official": s("string"),
                       "purpose": s("string"), "dossier_id": s("string"), "fields": strings(),
                       "issued_at": s("string"), "review_due": s("string"),
                       "releases": {"type": "array", "items": s("integer")},
                       "review": s("object")}),
                &["grant_id", "agency", "purpose", "fields", "issued_at", "review_due", "releases"])}),
        )],
        ("POST", "/v1/audit/break-glass/{grant_id}/review") => vec![(
            200,
            j,
            obj(
                json!({"grant_id": s("string"), "review": s("object")}),
                &["grant_id", "review"],
            ),
        )],
        ("GET", "/v1/audit/complaints") => {
            let mut c = complaint();
            c["properties"]["entry"] = s("object");
            vec![(200, j, json!({"type": "array", "items": c}))]
        }
        ("POST", "/v1/audit/complaints/{id}/answer") => vec![(200, j, complaint())],
        ("GET", "/v1/audit/requests") => {
            vec![(200, j, json!({"type": "array", "items": request()}))]
        }
        ("POST", "/v1/audit/requests/{id}") => vec![(200, j, request())],
        ("GET", "/v1/corrections") => vec![(
            200,
            j,
            items(obj(
                json!({"id": s("string"), "citizen_id": s("string"), "field": s("string"),
                       "proposed_value": {}, "note": s("string"), "status": s("string"),
                       "filed_at": s("string")}),
                &[
                    "id",
                    "citizen_id",
                    "field",
                    "proposed_value",
                    "status",
                    "filed_at",
                ],
            )),
        )],
        ("POST", "/v1/corrections/{id}/resolve") => vec![(
            200,
            j,
            obj(
                json!({"id": s("string"), "field": s("string"),
                       "status": {"enum": ["accepted", "rejected"]},
                       "reason": nullable("string"), "resolved_at": nullable("string")}),
                &["id", "field", "status"],
            ),
        )],
        ("GET", "/v1/me/accesses") => vec![(
            200,
            j,
            obj(
                json!({
            "items": {"type": "array", "items": obj(json!({
                "index": s("integer"), "time": s("string"), "event": s("string"),
                "agency": nullable("string"), "official": nullable("string"),
                "purpose": nullable("string"), "purpose_label": nullable("string"),
                "dossier_id": nullable("string"), "fields": strings(), "outcome": s("string"),
                "break_glass": s("boolean")}), &["index", "time", "event", "outcome"])},
            "next_cursor": nullable("integer")}),
                &["items", "next_cursor"],
            ),
        )],
        ("GET", "/v1/me/accesses/{index}/proof") => vec![(
            200,
            j,
            obj(
                json!({
            "index": s("integer"), "entry": s("object"), "leaf_hash": s("string"),
            "tree_size": s("integer"), "hashes": strings(), "checkpoint": s("string"),
            "entry_b64": s("string")}),
                &[
                    "index",
                    "entry",
                    "leaf_hash",
                    "tree_size",
                    "hashes",
                    "checkpoint",
                ],
            ),
        )],
        ("GET", "/v1/me/grants") => vec![(
            200,
            j,
            obj(
                json!({"items": {"type": "array", "items": grant_view()}}),
                &["items"],
            ),
        )],
        ("POST", "/v1/me/grants/{grant_id}/approve") => {
            let mut v = grant_view();
            v["properties"]["standing_consent"] = consent_view();
            vec![(200, j, v)]
        }
        ("POST", "/v1/me/grants/{grant_id}/refuse") => vec![(200, j, grant_view())],
        ("POST", "/v1/me/verify") => vec![(
            200,
            j,
            obj(
                json!({
            "genuine": s("boolean"), "agency": s("string"), "purpose_label": s("string"),
            "requested_at": s("string"), "status": s("string")}),
                &["genuine"],
            ),
        )],
        ("GET", "/v1/audit/entries") => vec![(
            200,
            j,
            obj(
                json!({
            "items": {"type": "array", "items": entry_item()},
            "next_cursor": nullable("integer")}),
                &["items", "next_cursor"],
            ),
        )],
        ("GET", "/v1/audit/entries/{index}") => vec![(200, j, entry_item())],
        ("GET", "/v1/audit/checkpoint") => vec![(200, "text/plain", s("string"))],
        ("GET", "/v1/audit/proof/inclusion") => vec![(200, j, proof("index", "tree_size"))],
        ("GET", "/v1/audit/proof/consistency") => vec![(200, j, proof("from", "to"))],
        ("GET", "/readyz") => vec![(200, j, s("object")), (503, j, s("object"))],
        ("GET", "/v1/audit/pubkey") => vec![(200, "text/plain", s("string"))],
        ("GET", "/v1/me/consents") => {
            vec![(200, j, json!({"type": "array", "items": consent_view()}))]
        }
        _ => vec![(200, j, s("object"))],
    }
}

/// Identifiers the vault records (purpose, dossier, official, unit, source): 1-64 of
/// `A-Z a-z 0-9 . _ : @ -`, never a run of nine or more digits (so no citizen id or phone
/// number fits).
fn ident() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9._:@-]{1,64}$",
           "description": "1-64 of A-Z a-z 0-9 . _ : @ -, without a run of 9 or more digits"})
}

/// A field name of the catalog (or a derived answer).
const NAME: &str = "^[a-z][a-z0-9_]{0,63}$";

fn names() -> Value {
    json!({"type": "array", "minItems": 1, "items": {"type": "string", "pattern": NAME}})
}

fn request_body(r: &Route) -> Option<Value> {
    if r.method == "GET" || r.method == "DELETE" {
        return None;
    }
    let schema = match r.path {
        "/v1/grants" => json!({"type": "object", "additionalProperties": false,
            "required": ["citizen_id", "purpose", "dossier_id", "fields", "official"],
            "properties": {
                "citizen_id": {"type": "string", "pattern": "^[0-9]{12}$"},
                "purpose": ident(), "dossier_id": ident(), "fields": names(),
                "official": {"type": "object", "additionalProperties": false,
                             "required": ["id"],
                             "properties": {"id": ident(), "unit": ident()}},
                "ttl_seconds": {"type": "integer", "minimum": 1}}}),
        "/v1/citizens/{citizen_id}" => json!({"type": "object", "additionalProperties": false,
            "required": ["fields", "source"],
            "properties": {"fields": {"type": "object", "minProperties": 1,
                                      "propertyNames": {"pattern": NAME}},
                           "source": ident()}}),
        "/v1/me/complaints" => json!({"type": "object", "additionalProperties": false,
            "required": ["audit_index", "text"],
            "properties": {"audit_index": {"type": "integer", "minimum": 0},
                           "text": {"type": "string", "minLength": 1,
                                    "maxLength": vault_core::case::MAX_TEXT_CHARS}}}),
        "/v1/me/corrections" => json!({"type": "object", "additionalProperties": false,
            "required": ["field", "proposed_value"],
            "properties": {"field": {"type": "string", "pattern": NAME}, "proposed_value": {},
                           "note": {"type": "string",
                                    "maxLength": vault_core::case::MAX_TEXT_CHARS}}}),
        "/v1/me/requests" => json!({"type": "object", "additionalProperties": false,
            "required": ["kind"],
            "properties": {"kind": {"enum": vault_core::case::RequestKind::ALL.map(|k| k.as_str())},
                           "note": {"type": "string",
                                    "maxLength": vault_core::case::MAX_TEXT_CHARS}}}),
        "/v1/corrections/{id}/resolve" => json!({"type": "object", "additionalProperties": false,
            "required": ["outcome"],
            "properties": {"outcome": {"enum": ["accepted", "rejected"]},
                           "reason": {"type": "string",
                                      "maxLength": vault_core::case::MAX_TEXT_CHARS}}}),
        "/v1/audit/break-glass/{grant_id}/review" => json!({"type": "object",
            "additionalProperties": false, "required": ["outcome", "note"],
            "properties": {"outcome": {"enum": ["justified", "unjustified"]},
                           "note": {"type": "string", "minLength": 1,
                                    "maxLength": vault_core::case::MAX_TEXT_CHARS}}}),
        "/v1/audit/complaints/{id}/answer" => json!({"type": "object",
            "additionalProperties": false, "required": ["outcome", "text"],
            "properties": {"outcome": {"enum": ["upheld", "dismissed"]},
                           "text": {"type": "string", "minLength": 1,
                                    "maxLength": vault_core::case::MAX_TEXT_CHARS}}}),
        "/v1/audit/requests/{id}" => json!({"type": "object", "additionalProperties": false,
            "required": ["status"],
            "properties": {"status": {"enum": ["acknowledged", "extended", "completed", "refused"]},
                           "note": {"type": "string", "maxLength": vault_core::case::MAX_TEXT_CHARS},
                           "extend_days": {"type": "integer", "minimum": 1,
                                           "maximum": vault_core::case::MAX_EXTENSION_DAYS},
                           "other_processor": s("boolean")}}),
        "/v1/me/verify" => json!({"type": "object", "additionalProperties": false,
            "required": ["verification_code"],
            "properties": {"verification_code": s("string")}}),
        "/v1/me/grants/{grant_id}/approve" => {
            return Some(
                json!({"required": false, "content": {"application/json": {"schema":
                {"type": "object", "additionalProperties": false,
                 "properties": {"remember_days": {"type": "integer", "minimum": 1,
                                                  "maximum": vault_core::consent::MAX_REMEMBER_DAYS,
                    "description": "Also keep a standing consent for this agency, purpose and exactly these fields, this many days"}}}}}}),
            );
        }
        _ => return None,
    };
    Some(json!({"required": true, "content": {"application/json": {"schema": schema}}}))
}

fn problem(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn operation(r: &Route) -> Value {
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = if name == "index" {
                json!({"type": "integer", "minimum": 0})
            } else if name == "citizen_id" {
                json!({"type": "string", "pattern": "^[0-9]{12}$"})
            } else {
                ident()
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    for q in r.query {
        let (schema, required) = query_schema(r.path, q);
        params.push(json!({"name": q, "in": "query", "required": required, "schema": schema}));
    }
    if r.method != "GET" {
        params.push(
            json!({"name": "Idempotency-Key", "in": "header", "required": false,
                           "schema": {"type": "string", "minLength": 1, "maxLength": 128}}),
        );
    }
    let mut responses = Map::new();
    for (status, media, schema) in success(r) {
        let v = if media.is_empty() {
            json!({"description": "done"})
        } else {
            json!({"description": "success", "content": {media: {"schema": schema}}})
        };
        responses.insert(status.to_string(), v);
    }
    if r.access != Access::Public {
        for (code, desc) in [
            ("400", "invalid request"),
            ("401", "missing or invalid credentials"),
            ("403", "refused"),
            ("404", "not found"),
            ("429", "rate limited"),
            ("503", "audit log unavailable: nothing was released"),
        ] {
            responses.insert(code.into(), problem(desc));
        }
        if r.body {
            responses.insert("413".into(), problem("body too large"));
            responses.insert("415".into(), problem("body is not application/json"));
        }
        if r.method != "GET" {
            responses.insert("409".into(), problem("conflict"));
            responses.insert(
                "422".into(),
                problem("idempotency key reused with another body"),
            );
        }
    }
    let security = match r.access {
        Access::Public => json!([]),
        Access::Agency => json!([{"agencyCertificate": []}]),
        Access::AgencyToken => json!([{"agencyCertificate": [], "grantToken": []}]),
        Access::Citizen => json!([{"citizenIdToken": []}]),
        Access::Auditor => json!([{"auditorIdToken": []}, {"auditorCertificate": []}]),
    };
    // The operation's name in the API's vocabulary, camel-cased: `grant.revoke` → `grantRevoke`.
    let mut op_id = String::with_capacity(r.op.len());
    let mut upper = false;
    for c in r.op.chars() {
        if c.is_ascii_alphanumeric() {
            op_id.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        } else {
            upper = true;
        }
    }
    let mut op = json!({"summary": r.summary, "operationId": op_id, "parameters": params,
                        "responses": responses, "security": security});
    if let Some(b) = request_body(r) {
        op["requestBody"] = b;
    }
    op
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in TABLE {
        let item = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        item[r.method.to_ascii_lowercase()] = operation(r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Citizen Data Vault", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Purpose-bound, audited release of Ho Chi Minh City citizens' data."},
        // Relative: the API is where this document is served from, whatever the host.
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "agencyCertificate": {"type": "mutualTLS",
                    "description": "Client certificate chained to the agency CA, SAN URI urn:vault:agency:<id>"},
                "auditorCertificate": {"type": "mutualTLS",
                    "description": "Client certificate with SAN URI urn:vault:auditor:<id>"},
                "grantToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (RFC 9068 at+jwt)"},
                "citizenIdToken": {"type": "http", "scheme": "bearer", "bearerFormat": "OIDC ID token"},
                "auditorIdToken": {"type": "http", "scheme": "bearer",
                    "bearerFormat": "OIDC ID token with the auditor role"},
            },
            "schemas": {"Problem": {"type": "object",
                "required": ["type", "title", "status", "detail", "code"],
                "properties": {"type": s("string"), "title": s("string"), "status": s("integer"),
                               "detail": s("string"),
                               "code": {"type": "string", "enum": crate::problem::all_codes()}}}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_once() {
        let d = document();
        let mut n = 0;
        for (_, item) in d["paths"].as_object().unwrap() {
            n += item.as_object().unwrap().len();
        }
        assert_eq!(n, TABLE.len());
        let mut ids = std::collections::BTreeSet::new();
        for r in TABLE {
            let id = d["paths"][r.path][r.method.to_ascii_lowercase()]["operationId"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric()) && !id.is_empty(),
                "{id}"
            );
            assert!(ids.insert(id.clone()), "operationId {id} twice");
        }
        assert_eq!(d["servers"][0]["url"], "/");
        for r in TABLE {
            let op = &d["paths"][r.path][r.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{} {}", r.method, r.path);
            assert!(
                op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|k| k.starts_with('2'))
            );
        }
    }
}
