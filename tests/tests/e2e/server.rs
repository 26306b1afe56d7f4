//! The HTTPS API against the real `vault-server` binary: the full walk with proofs, the
//! credential matrix over every documented route, cross-citizen and cross-certificate
//! refusals, idempotency, limits, malformed input, graceful shutdown under load, the
//! OpenAPI route check and a plaintext scan of the server's log.

use reqwest::Method;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use vault_core::audit::{Checkpoint, LogVerifier, merkle};
use vault_tests::server::{Identity, Limits, TestServer, uri};
use vault_tests::text;

const AGENCY: &str = "csgt-cong-an-tphcm";
const PURPOSE: &str = "driver_licence_renewal";

fn grant_body(citizen: &str, fields: &[&str]) -> Value {
    json!({"citizen_id": citizen, "purpose": PURPOSE, "dossier_id": "HS-2026-0001",
           "fields": fields, "official": {"id": "can-bo-01", "unit": "doi-3"}})
}

pub(crate) fn json_of(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = r.text().unwrap();
    if status >= 400 {
        assert_eq!(ct, "application/problem+json", "{status}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        for k in ["type", "title", "status", "detail", "code"] {
            assert!(v.get(k).is_some(), "problem without {k}: {body}");
        }
        assert_eq!(v["status"], json!(status));
        return (status, v);
    }
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The checkpoint inside a signed note (its body, before the blank line).
fn checkpoint(note: &str) -> Checkpoint {
    Checkpoint::parse(&format!("{}\n", note.split("\n\n").next().unwrap())).unwrap()
}

fn hash(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// The `hashes` of a proof answer.
fn hashes(answer: &Value) -> Vec<[u8; 32]> {
    answer["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash(h.as_str().unwrap()))
        .collect()
}

/// Asks for a grant and returns (grant id, token).
fn grant(c: &Client, s: &TestServer, citizen: &str, fields: &[&str]) -> (String, String) {
    let (st, g) = json_of(
        c.post(s.url("/v1/grants"))
            .json(&grant_body(citizen, fields))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 201, "{g}");
    (
        g["grant_id"].as_str().unwrap().to_owned(),
        g["access_token"].as_str().unwrap().to_owned(),
    )
}

fn release(c: &Client, s: &TestServer, token: &str, citizen: &str, fields: &str) -> (u16, Value) {
    json_of(
        c.get(s.url(&format!("/v1/citizens/{citizen}/fields?fields={fields}")))
            .bearer_auth(token)
            .send()
            .unwrap(),
    )
}

fn stop_and_verify(s: &mut TestServer) {
    let status = s.stop().unwrap();
    assert!(
        status.success(),
        "server exit: {status:?}\n{}",
        s.log_text()
    );
    let out = s.vault.ctl(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn the_store_cache_setting_is_checked_at_start_and_a_small_cache_serves() {
    let (mut s, people) = TestServer::start(5, &Limits::default());
    let agency = s.client(Some(&s.agency_identity(AGENCY)));
    let citizen = &people[0].0;
    let (_, token) = grant(&agency, &s, citizen, &["full_name"]);
    stop_and_verify(&mut s);
    let original = std::fs::read_to_string(s.config_path()).unwrap();
    let with = |mib: u64| format!("{original}\n[store]\ncache_mib = {mib}\n");
    std::fs::write(s.config_path(), with(3)).unwrap();
    let refused = s
        .try_launch()
        .expect_err("started with a 3 MiB store cache");
    assert!(
        refused.contains("store.cache_mib") && !refused.contains("panicked"),
        "{refused}"
    );
    // The smallest cache allowed serves the same answers (the grant survived the restart).
    std::fs::write(s.config_path(), with(4)).unwrap();
    s.launch();
    let (st, rel) = release(&agency, &s, &token, citizen, "full_name");
    assert_eq!(st, 200, "{rel}");
    assert_eq!(rel["fields"]["full_name"], people[0].1["full_name"]);
    stop_and_verify(&mut s);
}

#[test]
fn full_walk_grant_read_history_receipt_auditor_proofs_and_offline_verify() {
    let (mut s, people) = TestServer::start(20, &Limits::default());
    let agency = s.client(Some(&s.agency_identity(AGENCY)));
    let citizen = &people[0].0;
    let (gid, token) = grant(&agency, &s, citizen, &["full_name", "date_of_birth"]);
    let (st, rel) = release(&agency, &s, &token, citizen, "full_name,date_of_birth");
    assert_eq!(st, 200, "{rel}");
    assert_eq!(rel["fields"]["full_name"], people[0].1["full_name"]);
    assert_eq!(rel["grant_id"], json!(gid));
    let index = rel["audit"]["index"].as_u64().unwrap();

    let auditor = s.client(None);
    let atok = s.auditor_token("kiem-toan-01");
    let cp1 = auditor
        .get(s.url("/v1/audit/checkpoint"))
        .bearer_auth(&atok)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let size1 = checkpoint(&cp1).size;

    // The citizen sees the access and gets a receipt that verifies.
    let me = s.client(None);
    let ctok = s.citizen_token(citizen);
    let (st, hist) = json_of(
        me.get(s.url("/v1/me/accesses"))
            .bearer_auth(&ctok)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    let item = hist["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["index"] == json!(index))
        .unwrap();
    assert_eq!(item["event"], "record.released");
    assert_eq!(item["agency"], AGENCY);
    assert_eq!(item["official"], "can-bo-01");
    assert_eq!(item["purpose_label"], "Cấp đổi giấy phép lái xe");
    let (st, receipt) = json_of(
        me.get(s.url(&format!("/v1/me/accesses/{index}/proof")))
            .bearer_auth(&ctok)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{receipt}");
    assert_eq!(receipt["leaf_hash"], rel["audit"]["leaf_hash"]);
    let entry_bytes = serde_json::to_vec(&receipt["entry"]).unwrap();
    let leaf = merkle::leaf_hash(&entry_bytes);
    assert_eq!(hex::encode(leaf), receipt["leaf_hash"].as_str().unwrap());
    let checkpoint_text = receipt["checkpoint"].as_str().unwrap().to_owned();
    let cp = checkpoint(&checkpoint_text);
    let proof: Vec<[u8; 32]> = hashes(&receipt);
    merkle::verify_inclusion(index, cp.size, &leaf, &proof, &cp.root).unwrap();

    // The auditor: a later checkpoint, consistency from the first, inclusion, queries.
    let cp2_text = auditor
        .get(s.url("/v1/audit/checkpoint"))
        .bearer_auth(&atok)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let cp2 = checkpoint(&cp2_text);
    assert!(cp2.size > size1);
    let (st, cons) = json_of(
        auditor
            .get(s.url(&format!(
                "/v1/audit/proof/consistency?from={size1}&to={}",
                cp2.size
            )))
            .bearer_auth(&atok)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{cons}");
    let cons_hashes: Vec<[u8; 32]> = hashes(&cons);
    let cp1_parsed = checkpoint(&cp1);
    merkle::verify_consistency(size1, cp2.size, &cp1_parsed.root, &cp2.root, &cons_hashes).unwrap();
    let (st, inc) = json_of(
        auditor
            .get(s.url(&format!(
                "/v1/audit/proof/inclusion?index={index}&tree_size={}",
                cp2.size
            )))
            .bearer_auth(&atok)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    let inc_hashes: Vec<[u8; 32]> = hashes(&inc);
    merkle::verify_inclusion(index, cp2.size, &leaf, &inc_hashes, &cp2.root).unwrap();
    let (st, found) = json_of(
        auditor
            .get(s.url(&format!(
                "/v1/audit/entries?citizen_id={citizen}&event=record.released"
            )))
            .bearer_auth(&atok)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    assert!(
        found["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["index"] == json!(index))
    );
    let (st, one) = json_of(
        auditor
            .get(s.url(&format!("/v1/audit/entries/{index}")))
            .bearer_auth(&atok)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    assert_eq!(one["leaf_hash"], rel["audit"]["leaf_hash"]);
    // An auditor certificate works as well as a bearer token.
    let (cert, key) =
        s.ca.issue(vec![uri("urn:vault:auditor:kt-02")], false, false);
    let by_cert = s.client(Some(&Identity { cert, key }));
    let r = by_cert.get(s.url("/v1/audit/checkpoint")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Operations.
    let ops = s.client(None);
    assert_eq!(
        ops.get(s.url("/healthz")).send().unwrap().status().as_u16(),
        200
    );
    let (st, ready) = json_of(ops.get(s.url("/readyz")).send().unwrap());
    assert_eq!((st, &ready["ready"]), (200, &json!(true)));
    // Metrics are on their own loopback listener, never on the public port.
    assert_eq!(
        ops.get(s.url("/metrics")).send().unwrap().status().as_u16(),
        404
    );
    let metrics = Client::new()
        .get(s.metrics_url())
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("vault_http_requests_total{method=\"GET\",route=\"/v1/citizens/{citizen_id}/fields\",status=\"200\"} 1"), "{metrics}");
    assert!(metrics.contains("vault_grants_total{outcome=\"active\"} 1"));
    assert!(metrics.contains("vault_audit_sync_seconds_bucket"));

    // The verifier key is public over the API, without credentials.
    let r = ops.get(s.url("/v1/audit/pubkey")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let served_key = r.text().unwrap();

    // Offline: the receipt's checkpoint is signed by the log key `vaultctl` prints.
    stop_and_verify(&mut s);
    let out = s.vault.ctl(&["audit", "pubkey"]);
    assert_eq!(served_key.trim(), text(&out.stdout).trim());
    let verifier = LogVerifier::parse(text(&out.stdout).trim()).unwrap();
    Checkpoint::verify(&checkpoint_text, &verifier).unwrap();
    Checkpoint::verify(&cp2_text, &verifier).unwrap();

    // Nothing the citizen owns reached the server's log.
    scan_log(&s, &people[..1]);
}

fn scan_log(s: &TestServer, people: &[(String, Value)]) {
    let mut needles: Vec<String> = Vec::new();
    for (id, fields) in people {
        needles.push(id.clone());
        for v in fields.as_object().unwrap().values() {
            if let Some(t) = v.as_str().filter(|t| t.len() >= 8) {
                needles.push(t.to_owned());
            }
        }
    }
    let log = s.log_bytes();
    assert!(!log.is_empty());
    let scanner = vault_tests::scan::Scanner::new(needles.iter().map(String::as_bytes));
    let hits = scanner.scan_bytes(std::path::Path::new("server.log"), &log);
    assert!(
        hits.is_empty(),
        "{} plaintext hits in the server log",
        hits.len()
    );
}

/// A concrete request for a documented route, with harmless parameters.
fn concrete(path: &str, citizen: &str) -> String {
    path.replace("{citizen_id}", citizen)
        .replace("{grant_id}", "g-none")
        .replace("{consent_id}", "c-none")
        .replace("{index}", "0")
        .replace("{id}", "dc-none")
}

fn routes(s: &TestServer) -> Vec<(String, String, bool)> {
    let doc: Value = s
        .client(None)
        .get(s.url("/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = op["security"].as_array().unwrap().is_empty();
            out.push((method.to_uppercase(), path.clone(), public));
        }
    }
    out
}

#[test]
fn every_route_refuses_missing_and_wrong_credentials_with_problem_json() {
    let (s, people) = TestServer::start(3, &Limits::default());
    let citizen = &people[0].0;
    let none = s.client(None);
    let agency = s.client(Some(&s.agency_identity(AGENCY)));
    let unknown = s.client(Some(&s.agency_identity("khong-ton-tai")));
    let (c, k) = s.ca.issue(vec![uri("https://example.vn/")], false, false);
    let no_san = s.client(Some(&Identity { cert: c, key: k }));
    let ctok = s.citizen_token(citizen);
    let send = |c: &Client, m: &str, p: &str, bearer: Option<&str>| {
        let mut r = c.request(Method::from_bytes(m.as_bytes()).unwrap(), s.url(p));
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        if m == "POST" || m == "PUT" {
            r = r.header("content-type", "application/json").body("{}");
        }
        json_of(r.send().unwrap())
    };
    let mut checked = 0;
    for (m, path, public) in routes(&s) {
        let p = concrete(&path, citizen);
        if public {
            let (st, _) = send(&none, &m, &p, None);
            assert_eq!(st, 200, "{m} {path}");
            continue;
        }
        let is_agency = path.starts_with("/v1/purposes")
            || path.starts_with("/v1/grants")
            || path.starts_with("/v1/citizens")
            || path.starts_with("/v1/corrections");
        let is_citizen = path.starts_with("/v1/me/");
        // No credentials at all.
        let (st, e) = send(&none, &m, &p, None);
        assert_eq!(
            (st, e["code"].as_str().unwrap()),
            (401, "authentication_required"),
            "{m} {path}"
        );
        if is_agency {
            // A citizen's token is not an agency certificate.
            let (st, e) = send(&none, &m, &p, Some(&ctok));
            assert!(st == 401 || st == 403, "{m} {path}: {st} {e}");
            // A certificate naming no agency in the policy, or no agency at all.
            for c in [&unknown, &no_san] {
                let (st, e) = send(c, &m, &p, None);
                assert_eq!(
                    (st, e["code"].as_str().unwrap()),
                    (403, "unknown_agency"),
                    "{m} {path}"
                );
            }
        } else if is_citizen {
            // An agency certificate is not a citizen; an auditor token names no citizen.
            let (st, e) = send(&agency, &m, &p, None);
            assert_eq!(
                (st, e["code"].as_str().unwrap()),
                (401, "authentication_required"),
                "{m} {path}"
            );
            let (st, e) = send(&none, &m, &p, Some(&s.auditor_token("kt-01")));
            assert_eq!(
                (st, e["code"].as_str().unwrap()),
                (403, "forbidden"),
                "{m} {path}"
            );
        } else {
            // Auditor routes: an agency certificate, or a citizen token, is refused.
            let (st, e) = send(&agency, &m, &p, None);
            assert_eq!(
                (st, e["code"].as_str().unwrap()),
                (403, "forbidden"),
                "{m} {path}"
            );
            let (st, e) = send(&none, &m, &p, Some(&ctok));
            assert_eq!(
                (st, e["code"].as_str().unwrap()),
                (403, "forbidden"),
                "{m} {path}"
            );
        }
        // A forged bearer token.
        let (st, e) = send(&none, &m, &p, Some("eyJhbGciOiJub25lIn0.e30."));
        assert!(st == 401 || st == 403, "{m} {path}: {st} {e}");
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} protected routes");
    // Hostile ID tokens: wrong audience, expired, unsigned.
    let now = 1_900_000_000i64;
    for claims in [
        json!({"iss": vault_tests::server::ISSUER, "aud": "other", "sub": citizen, "exp": now}),
        json!({"iss": vault_tests::server::ISSUER, "aud": vault_tests::server::AUDIENCE, "sub": citizen, "exp": 1_000}),
        json!({"iss": "https://evil", "aud": vault_tests::server::AUDIENCE, "sub": citizen, "exp": now}),
    ] {
        let (st, e) = send(&none, "GET", "/v1/me/record", Some(&s.sign_claims(&claims)));
        assert_eq!((st, e["code"].as_str().unwrap()), (401, "bearer_invalid"));
    }
    // Expired certificates and certificates from another CA never complete the handshake.
    let other = vault_tests::server::Ca::new("another CA");
    let (c, k) = other.issue(
        vec![uri(&format!("urn:vault:agency:{AGENCY}"))],
        false,
        false,
    );
    let foreign = s.client(Some(&Identity { cert: c, key: k }));
    assert!(foreign.get(s.url("/v1/purposes")).send().is_err());
    let (c, k) = s.ca.issue(
        vec![uri(&format!("urn:vault:agency:{AGENCY}"))],
        false,
        true,
    );
    let expired = s.client(Some(&Identity { cert: c, key: k }));
    assert!(expired.get(s.url("/v1/purposes")).send().is_err());
}

#[test]
fn other_citizens_other_certificates_and_other_agencies_are_refused_and_audited() {
    let (s, people) = TestServer::start(5, &Limits::default());
    let (a, b) = (&people[0].0, &people[1].0);
    let ident = s.agency_identity(AGENCY);
    let agency = s.client(Some(&ident));
    let (gid, token) = grant(&agency, &s, a, &["full_name"]);
    let atok = s.auditor_token("kt-01");
    let auditor = s.client(None);
    let denied = || {
        let (_, v) = json_of(
            auditor
                .get(s.url("/v1/audit/entries?event=record.denied&limit=1000"))
                .bearer_auth(&atok)
                .send()
                .unwrap(),
        );
        v["items"].as_array().unwrap().len()
    };
    let before = denied();
    // A's token on B.
    let (st, e) = release(&agency, &s, &token, b, "full_name");
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (403, "token_not_for_citizen")
    );
    // A field outside the grant.
    let (st, e) = release(&agency, &s, &token, a, "full_name,sex");
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (403, "token_not_for_field")
    );
    // The same agency's token over another certificate of the same agency.
    let other_cert = s.client(Some(&s.agency_identity(AGENCY)));
    let (st, e) = release(&other_cert, &s, &token, a, "full_name");
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (403, "token_binding_mismatch")
    );
    // Another agency's certificate: the token is not bound to it, the grant is not its own.
    let bhxh = s.client(Some(&s.agency_identity("bhxh-tphcm")));
    let (st, e) = release(&bhxh, &s, &token, a, "full_name");
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (403, "token_binding_mismatch")
    );
    let (st, e) = json_of(
        bhxh.get(s.url(&format!("/v1/grants/{gid}")))
            .send()
            .unwrap(),
    );
    assert_eq!((st, e["code"].as_str().unwrap()), (404, "grant_not_found"));
    let (st, _) = json_of(
        bhxh.delete(s.url(&format!("/v1/grants/{gid}")))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 404);
    // Garbage tokens, and none at all.
    let (st, e) = release(&agency, &s, "not.a.token", a, "full_name");
    assert_eq!((st, e["code"].as_str().unwrap()), (401, "token_invalid"));
    let (st, e) = json_of(
        agency
            .get(s.url(&format!("/v1/citizens/{a}/fields?fields=full_name")))
            .send()
            .unwrap(),
    );
    assert_eq!((st, e["code"].as_str().unwrap()), (401, "token_invalid"));
    // B asking for a receipt of A's release.
    let (_, rel) = release(&agency, &s, &token, a, "full_name");
    let index = rel["audit"]["index"].as_u64().unwrap();
    let me_b = s.client(None);
    let (st, e) = json_of(
        me_b.get(s.url(&format!("/v1/me/accesses/{index}/proof")))
            .bearer_auth(s.citizen_token(b))
            .send()
            .unwrap(),
    );
    assert_eq!((st, e["code"].as_str().unwrap()), (404, "audit_not_found"));
    // B cannot approve or see A's grants, nor confirm A's code.
    let (st, _) = json_of(
        me_b.post(s.url(&format!("/v1/me/grants/{gid}/approve")))
            .bearer_auth(s.citizen_token(b))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 404);
    let (_, g) = json_of(
        agency
            .get(s.url(&format!("/v1/grants/{gid}")))
            .send()
            .unwrap(),
    );
    let (st, v) = json_of(
        me_b.post(s.url("/v1/me/verify"))
            .bearer_auth(s.citizen_token(b))
            .json(&json!({"verification_code": g["verification_code"]}))
            .send()
            .unwrap(),
    );
    assert_eq!((st, &v), (200, &json!({"genuine": false})));
    let (_, v) = json_of(
        me_b.post(s.url("/v1/me/verify"))
            .bearer_auth(s.citizen_token(a))
            .json(&json!({"verification_code": g["verification_code"]}))
            .send()
            .unwrap(),
    );
    assert_eq!(v["genuine"], json!(true));
    // Every refusal of a release or a receipt above is in the log.
    assert!(denied() >= before + 7, "{} -> {}", before, denied());
    // Revocation stops the token at once.
    let r = agency
        .delete(s.url(&format!("/v1/grants/{gid}")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (st, e) = release(&agency, &s, &token, a, "full_name");
    assert_eq!((st, e["code"].as_str().unwrap()), (403, "grant_revoked"));
    scan_log(&s, &people[..2]);
}

#[test]
fn consent_flow_over_http_returns_the_token_once() {
    let (s, people) = TestServer::start(5, &Limits::default());
    let a = &people[0].0;
    let bhxh = s.client(Some(&s.agency_identity("bhxh-tphcm")));
    let body = json!({"citizen_id": a, "purpose": "social_insurance_lookup", "dossier_id": "BH-1",
                      "fields": ["full_name", "annual_income"], "official": {"id": "cb-02"}});
    let (st, p) = json_of(bhxh.post(s.url("/v1/grants")).json(&body).send().unwrap());
    assert_eq!(st, 202, "{p}");
    assert_eq!(p["status"], "pending_consent");
    let gid = p["grant_id"].as_str().unwrap();
    let me = s.client(None);
    let ctok = s.citizen_token(a);
    let (_, pending) = json_of(
        me.get(s.url("/v1/me/grants?status=pending_consent"))
            .bearer_auth(&ctok)
            .send()
            .unwrap(),
    );
    assert_eq!(pending["items"][0]["grant_id"], json!(gid));
    assert_eq!(
        pending["items"][0]["verification_code"],
        p["verification_code"]
    );
    let (st, ok) = json_of(
        me.post(s.url(&format!("/v1/me/grants/{gid}/approve")))
            .bearer_auth(&ctok)
            .header("Idempotency-Key", "approve-1")
            .send()
            .unwrap(),
    );
    assert_eq!((st, &ok["status"]), (200, &json!("active")));
    // A retry of the same approval answers the same, changing nothing.
    let r = me
        .post(s.url(&format!("/v1/me/grants/{gid}/approve")))
        .bearer_auth(&ctok)
        .header("Idempotency-Key", "approve-1")
        .send()
        .unwrap();
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(r).1, ok);
    let (_, first) = json_of(
        bhxh.get(s.url(&format!("/v1/grants/{gid}")))
            .send()
            .unwrap(),
    );
    let token = first["access_token"].as_str().unwrap().to_owned();
    let (_, second) = json_of(
        bhxh.get(s.url(&format!("/v1/grants/{gid}")))
            .send()
            .unwrap(),
    );
    assert!(
        second.get("access_token").is_none(),
        "token handed out twice"
    );
    let (st, rel) = release(&bhxh, &s, &token, a, "annual_income");
    assert_eq!(st, 200, "{rel}");
    let (st, rec) = json_of(
        me.get(s.url("/v1/me/record"))
            .bearer_auth(&ctok)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    assert_eq!(rec["fields"]["full_name"], people[0].1["full_name"]);
    // Verification codes cannot be guessed by brute force: 10 checks a minute per citizen
    // (one was used above by nobody: this citizen has made none yet).
    let statuses: Vec<u16> = (0..12)
        .map(|_| {
            me.post(s.url("/v1/me/verify"))
                .bearer_auth(&ctok)
                .json(&json!({"verification_code": "ZZZZZZZZ"}))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
    scan_log(&s, &people[..1]);
}

#[test]
fn idempotency_limits_and_malformed_input_never_reach_500() {
    let limits = Limits {
        agency_rps: 1,
        agency_burst: 40,
        max_body: 2048,
        ..Limits::default()
    };
    let (s, people) = TestServer::start(3, &limits);
    let a = &people[0].0;
    let agency = s.client(Some(&s.agency_identity(AGENCY)));
    let post = |body: &str, ct: &str, key: Option<&str>| {
        let mut r = agency
            .post(s.url("/v1/grants"))
            .header("content-type", ct)
            .body(body.to_owned());
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        json_of(r.send().unwrap())
    };
    let body = grant_body(a, &["full_name"]).to_string();
    let (st1, g1) = post(&body, "application/json", Some("k-1"));
    let (st2, g2) = post(&body, "application/json", Some("k-1"));
    // The replay names the same grant as it is now, without the token already handed out.
    assert_eq!((st1, st2), (201, 200));
    assert_eq!(
        g1["grant_id"], g2["grant_id"],
        "same key and body: the same grant"
    );
    assert!(g2.get("access_token").is_none());
    let other = grant_body(a, &["full_name", "sex"]).to_string();
    let (st, e) = post(&other, "application/json", Some("k-1"));
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (422, "idempotency_conflict")
    );
    // Revocation replays too.
    let gid = g1["grant_id"].as_str().unwrap();
    for _ in 0..2 {
        let r = agency
            .delete(s.url(&format!("/v1/grants/{gid}")))
            .header("Idempotency-Key", "del-1")
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    // Malformed JSON, wrong shapes, wrong content type, oversize, unknown query parameters.
    for (body, ct, status, code) in [
        (
            "{\"citizen_id\":",
            "application/json",
            400,
            "invalid_request",
        ),
        ("[1,2,3]", "application/json", 400, "invalid_request"),
        (
            "{\"citizen_id\": 79, \"x\": 1}",
            "application/json",
            400,
            "invalid_request",
        ),
        (body.as_str(), "text/plain", 415, "unsupported_media_type"),
        (
            &"x".repeat(4096),
            "application/json",
            413,
            "payload_too_large",
        ),
    ] {
        let (st, e) = post(body, ct, None);
        assert_eq!(
            (st, e["code"].as_str().unwrap()),
            (status, code),
            "{body:.40}"
        );
        assert!(
            !e["detail"].as_str().unwrap().contains("79"),
            "detail echoes input"
        );
    }
    let bad = grant_body("12345", &["full_name"]).to_string();
    let (st, e) = post(&bad, "application/json", None);
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (400, "invalid_citizen_id")
    );
    let (st, e) = json_of(agency.get(s.url("/v1/purposes?debug=1")).send().unwrap());
    assert_eq!((st, e["code"].as_str().unwrap()), (400, "invalid_request"));
    let (st, e) = json_of(agency.get(s.url("/v1/nowhere")).send().unwrap());
    assert_eq!((st, e["code"].as_str().unwrap()), (404, "not_found"));
    let r = agency.patch(s.url("/v1/grants/x")).send().unwrap();
    assert_eq!(
        r.headers()["allow"],
        "GET, DELETE",
        "RFC 9110: 405 lists the methods"
    );
    let (st, e) = json_of(r);
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (405, "method_not_allowed")
    );
    let me = s.client(None);
    let (st, e) = json_of(
        me.get(s.url("/v1/me/accesses/notanumber/proof"))
            .bearer_auth(s.citizen_token(a))
            .send()
            .unwrap(),
    );
    assert_eq!((st, e["code"].as_str().unwrap()), (400, "invalid_request"));
    // Rate limit: the burst runs out, 429 with Retry-After.
    let mut limited = None;
    for _ in 0..60 {
        let r = agency.get(s.url("/v1/purposes")).send().unwrap();
        if r.status().as_u16() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("no 429 after the burst");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(json_of(r).1["code"], "rate_limited");
    // Nothing above was a server error.
    assert!(!s.log_text().contains("\"status\":500"), "a 500 was logged");
}

#[test]
fn graceful_shutdown_keeps_every_acknowledged_release_in_the_log() {
    let (mut s, people) = TestServer::start(80, &Limits::default());
    let ident = s.agency_identity(AGENCY);
    let agency = s.client(Some(&ident));
    // 70 grants x 3 uses = 210 releases available.
    let grants: Vec<(String, String)> = people
        .iter()
        .take(70)
        .map(|(id, _)| (id.clone(), grant(&agency, &s, id, &["full_name"]).1))
        .collect();
    let url = s.url("");
    let mut handles = Vec::new();
    for i in 0..200 {
        let (citizen, token) = grants[i % grants.len()].clone();
        let client = s.client(Some(&ident));
        let url = url.clone();
        handles.push(std::thread::spawn(move || {
            let r = client
                .get(format!(
                    "{url}/v1/citizens/{citizen}/fields?fields=full_name"
                ))
                .bearer_auth(token)
                .send()
                .ok()?;
            if r.status().as_u16() != 200 {
                return None;
            }
            let v: Value = r.json().ok()?;
            Some((
                v["audit"]["index"].as_u64()?,
                v["audit"]["leaf_hash"].as_str()?.to_owned(),
            ))
        }));
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    let status = s.stop().unwrap();
    let acked: Vec<(u64, String)> = handles
        .into_iter()
        .filter_map(|h| h.join().ok().flatten())
        .collect();
    assert!(status.success(), "{status:?}");
    assert!(
        !acked.is_empty(),
        "no release was acknowledged before the shutdown"
    );
    let out = s.vault.ctl(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let export = text(&s.vault.ctl(&["audit", "export"]).stdout);
    let leaves: std::collections::HashMap<u64, String> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["index"].as_u64().unwrap(),
                v["leaf_hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (index, leaf) in &acked {
        assert_eq!(
            leaves.get(index),
            Some(leaf),
            "acknowledged release {index} missing"
        );
    }
    eprintln!(
        "graceful shutdown: {} of 200 releases acknowledged, all in the log",
        acked.len()
    );
}

#[test]
fn openapi_documents_every_spec_route_and_only_routed_ones() {
    let (s, people) = TestServer::start(2, &Limits::default());
    let documented = routes(&s);
    let spec = [
        ("GET", "/v1/purposes"),
        ("POST", "/v1/grants"),
        ("GET", "/v1/grants/{grant_id}"),
        ("DELETE", "/v1/grants/{grant_id}"),
        ("GET", "/v1/citizens/{citizen_id}/fields"),
        ("PUT", "/v1/citizens/{citizen_id}"),
        ("GET", "/v1/me/record"),
        ("GET", "/v1/me/accesses"),
        ("GET", "/v1/me/accesses/{index}/proof"),
        ("GET", "/v1/me/grants"),
        ("POST", "/v1/me/grants/{grant_id}/approve"),
        ("POST", "/v1/me/grants/{grant_id}/refuse"),
        ("GET", "/v1/me/consents"),
        ("DELETE", "/v1/me/consents/{consent_id}"),
        ("POST", "/v1/me/verify"),
        ("POST", "/v1/me/complaints"),
        ("GET", "/v1/me/complaints"),
        ("POST", "/v1/me/corrections"),
        ("GET", "/v1/me/corrections"),
        ("POST", "/v1/me/requests"),
        ("GET", "/v1/me/requests"),
        ("GET", "/v1/me/notifications"),
        ("GET", "/v1/corrections"),
        ("GET", "/v1/audit/export"),
        ("GET", "/v1/audit/anomalies"),
        ("GET", "/v1/audit/reports/breach"),
        ("GET", "/v1/audit/reports/inventory"),
        ("GET", "/v1/audit/reports/reuse"),
        ("GET", "/v1/audit/break-glass"),
        ("POST", "/v1/audit/break-glass/{grant_id}/review"),
        ("GET", "/v1/audit/complaints"),
        ("POST", "/v1/audit/complaints/{id}/answer"),
        ("GET", "/v1/audit/requests"),
        ("POST", "/v1/audit/requests/{id}"),
        ("POST", "/v1/corrections/{id}/resolve"),
        ("GET", "/v1/audit/entries"),
        ("GET", "/v1/audit/entries/{index}"),
        ("GET", "/v1/audit/checkpoint"),
        ("GET", "/v1/audit/proof/inclusion"),
        ("GET", "/v1/audit/proof/consistency"),
        ("GET", "/v1/audit/pubkey"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
    ];
    for (m, p) in spec {
        assert!(
            documented.iter().any(|(dm, dp, _)| dm == m && dp == p),
            "{m} {p} is not in /openapi.json"
        );
    }
    // Every documented route is routed: it never answers the router's own 404/405.
    let c = s.client(None);
    for (m, p, _) in &documented {
        let r = c
            .request(
                Method::from_bytes(m.as_bytes()).unwrap(),
                s.url(&concrete(p, &people[0].0)),
            )
            .send()
            .unwrap();
        let (_, v) = json_of(r);
        let code = v.get("code").and_then(Value::as_str).unwrap_or("");
        assert!(
            code != "not_found" && code != "method_not_allowed",
            "{m} {p} is documented but not routed"
        );
    }
}

/// The issuer's keys from an HTTPS URL (`openssl s_server -WWW` serving a directory),
/// fetched at start and refreshed: a key added to the set is accepted after the refresh.
#[test]
fn jwks_from_an_https_url_is_fetched_at_start_and_refreshed() {
    use vault_tests::server::{Ca, jwks_of, oidc_key, sign_with};
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let ca = Ca::new("issuer CA");
    let (cert, key) = ca.issue(
        vec![rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ]))],
        true,
        false,
    );
    for (name, body) in [("cert.pem", &cert), ("key.pem", &key), ("ca.pem", &ca.pem)] {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let (k1, k2) = (oidc_key(), oidc_key());
    let write_jwks = |keys: &[(&[u8], &str)]| {
        std::fs::write(www.join("jwks.json"), jwks_of(keys).to_string()).unwrap();
    };
    write_jwks(&[(&k1, "k1")]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut issuer = std::process::Command::new("openssl")
        .args(["s_server", "-WWW", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(dir.path().join("cert.pem"))
        .arg("-key")
        .arg(dir.path().join("key.pem"))
        .current_dir(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl is needed for this test (.ci/run installs it)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "openssl s_server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (s, people) = TestServer::start(
        2,
        &Limits {
            jwks_url: Some((
                format!("https://127.0.0.1:{port}/jwks.json"),
                dir.path().join("ca.pem"),
            )),
            jwks_refresh: 1,
            oidc_key: Some((k1.clone(), "k1".into())),
            ..Limits::default()
        },
    );
    let now = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"iss": vault_tests::server::ISSUER, "aud": vault_tests::server::AUDIENCE,
                        "sub": people[0].0, "iat": now, "exp": now + 600});
    let me = s.client(None);
    let status = |token: &str| {
        me.get(s.url("/v1/me/grants"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(&sign_with(&k1, "k1", &claims)), 200);
    let t2 = sign_with(&k2, "k2", &claims);
    assert_eq!(status(&t2), 401, "a key not yet published");
    write_jwks(&[(&k1, "k1"), (&k2, "k2")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while status(&t2) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new key was never fetched"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = issuer.kill();
    let _ = issuer.wait();
}

/// A certificate the agency CA revoked (listed in `tls.client_crls`) fails the handshake;
/// the same agency's other certificate works.
#[test]
fn a_revoked_agency_certificate_is_refused_at_the_handshake() {
    let (s, _) = TestServer::start(
        2,
        &Limits {
            revoked: vec![4242],
            ..Limits::default()
        },
    );
    let san = || vec![uri(&format!("urn:vault:agency:{AGENCY}"))];
    let (cert, key) = s.ca.issue_serial(san(), 4242);
    let revoked = s.client(Some(&Identity { cert, key }));
    assert!(revoked.get(s.url("/v1/purposes")).send().is_err());
    let (cert, key) = s.ca.issue_serial(san(), 4343);
    let fine = s.client(Some(&Identity { cert, key }));
    let r = fine.get(s.url("/v1/purposes")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn ended_grants_are_swept_by_the_running_server_after_their_retention() {
    let (s, people) = TestServer::start(
        1,
        &Limits {
            grant_retention: Some(60),
            ..Limits::default()
        },
    );
    let citizen = people[0].0.as_str();
    let c = s.client(Some(&s.agency_identity(AGENCY)));
    let mut body = grant_body(citizen, &["full_name"]);
    body["ttl_seconds"] = json!(1);
    let (st, g) = json_of(c.post(s.url("/v1/grants")).json(&body).send().unwrap());
    assert_eq!(st, 201, "{g}");
    let gid = g["grant_id"].as_str().unwrap();
    let status = || json_of(c.get(s.url(&format!("/v1/grants/{gid}"))).send().unwrap());
    // The server's clock moves; nothing here waits for time to pass.
    s.advance_clock(3);
    let (st, v) = status();
    assert_eq!((st, v["status"].as_str()), (200, Some("expired")));
    // Two sweep ticks (one every 15 s of the server's clock) after each move of the clock:
    // the second began after the move.
    let two_ticks_after = |secs: i64| {
        let before = s.metric("vault_retention_sweeps_total");
        s.advance_clock(secs);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while s.metric("vault_retention_sweeps_total") < before + 1.0 {
            assert!(std::time::Instant::now() < deadline, "no sweep tick");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        s.advance_clock(16);
        while s.metric("vault_retention_sweeps_total") < before + 2.0 {
            assert!(std::time::Instant::now() < deadline, "no second sweep tick");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    // Ended about 2 s after it was made; 3 + 20 + 16 = 39 s later it is within its 60 s
    // retention and kept.
    two_ticks_after(20);
    let (st, v) = status();
    assert_eq!((st, v["status"].as_str()), (200, Some("expired")), "{v}");
    // 39 + 10 + 16 = 65 s: past its retention, swept.
    two_ticks_after(10);
    let (st, v) = status();
    assert_eq!(
        (st, v["code"].as_str()),
        (404, Some("grant_not_found")),
        "{v}"
    );
}

#[test]
fn a_reload_reads_the_crls_again_and_a_newly_revoked_certificate_is_refused() {
    let (s, _) = TestServer::start(
        2,
        &Limits {
            revoked: vec![4242],
            ..Limits::default()
        },
    );
    let san = || vec![uri(&format!("urn:vault:agency:{AGENCY}"))];
    let (cert, key) = s.ca.issue_serial(san(), 5151);
    let id = Identity { cert, key };
    let r = s
        .client(Some(&id))
        .get(s.url("/v1/purposes"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The CA revokes 5151; the server reads its CRLs again on a reload.
    let crl = s.vault.root().join("pki/ca.crl.pem");
    std::fs::write(&crl, s.ca.crl(&[4242, 5151])).unwrap();
    let out = s.vault.ctl(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 CRL(s) read again"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        s.client(Some(&id))
            .get(s.url("/v1/purposes"))
            .send()
            .is_err(),
        "refused at the handshake after the reload"
    );
    // A CRL that does not load is refused and the ones in force stay.
    std::fs::write(&crl, "not a CRL").unwrap();
    let out = s.vault.ctl(&["reload"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ca.crl.pem"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        s.client(Some(&id))
            .get(s.url("/v1/purposes"))
            .send()
            .is_err()
    );
    let fine = s.client(Some(&s.agency_identity(AGENCY)));
    assert_eq!(
        fine.get(s.url("/v1/purposes"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}
