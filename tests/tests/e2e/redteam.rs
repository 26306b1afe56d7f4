//! The red-team findings, each through the HTTP API of the real server: consent that is
//! specific to what the citizen approved, every refusal of an identified caller audited
//! (and none of an unidentified one), revocation ordered after the grant's releases, a
//! token handed out once, unambiguous request hashing, ended grants left alone, request ids
//! that cannot carry a citizen id, postings only for known purposes, metrics off the public
//! port and the verifier key public.

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};
use vault_tests::server::{Limits, TestServer, uri};

use crate::server::json_of;

const BHXH: &str = "bhxh-tphcm";
const LAND: &str = "vp-dang-ky-dat-dai";

fn body(citizen: &str, purpose: &str, dossier: &str, official: &str, fields: &[&str]) -> Value {
    json!({"citizen_id": citizen, "purpose": purpose, "dossier_id": dossier,
           "fields": fields, "official": {"id": official, "unit": "mot-cua"}})
}

fn send(r: RequestBuilder) -> (u16, Value) {
    json_of(r.send().unwrap())
}

/// The audit entries with `event`, oldest first (as an auditor sees them).
fn entries(s: &TestServer, event: &str) -> Vec<Value> {
    let auditor = s.client(None);
    let token = s.auditor_token("kt-redteam");
    let mut out = Vec::new();
    let mut cursor: Option<u64> = None;
    loop {
        let mut url = format!("/v1/audit/entries?event={event}&limit=1000");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (st, page) = send(auditor.get(s.url(&url)).bearer_auth(&token));
        assert_eq!(st, 200, "{page}");
        out.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["entry"].clone()),
        );
        match page["next_cursor"].as_u64() {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// The newest `access.denied` entry.
fn last_denied(s: &TestServer) -> Value {
    entries(s, "access.denied").pop().unwrap()
}

#[test]
fn consent_covers_the_approved_grant_alone_unless_the_citizen_keeps_a_standing_consent() {
    let (s, people) = TestServer::start(3, &Limits::default());
    let bhxh = s.client(Some(&s.agency_identity(BHXH)));
    let citizen = &people[0].0;
    let me = s.client(None);
    let ct = s.citizen_token(citizen);
    let purpose = "social_insurance_lookup";
    // Dossier A asks for the name; the citizen approves that grant.
    let (st, a) = send(bhxh.post(s.url("/v1/grants")).json(&body(
        citizen,
        purpose,
        "HS-A",
        "can-bo-01",
        &["full_name"],
    )));
    assert_eq!(st, 202, "{a}");
    let ga = a["grant_id"].as_str().unwrap();
    let (st, approved) = send(
        me.post(s.url(&format!("/v1/me/grants/{ga}/approve")))
            .bearer_auth(&ct),
    );
    assert_eq!(st, 200, "{approved}");
    assert!(approved.get("standing_consent").is_none());
    // Another dossier, another official, more fields: the citizen is asked again.
    let wide = [
        "annual_income",
        "employer",
        "occupation",
        "social_insurance_number",
        "date_of_birth",
    ];
    let (st, b) = send(bhxh.post(s.url("/v1/grants")).json(&body(
        citizen,
        purpose,
        "HS-B",
        "can-bo-02",
        &wide,
    )));
    assert_eq!((st, &b["status"]), (202, &json!("pending_consent")), "{b}");
    // Even the very same request again asks again: the approval was for that grant.
    let (st, _) = send(bhxh.post(s.url("/v1/grants")).json(&body(
        citizen,
        purpose,
        "HS-A",
        "can-bo-01",
        &["full_name"],
    )));
    assert_eq!(st, 202);
    // A refusal refuses that grant alone.
    let gb = b["grant_id"].as_str().unwrap();
    let (st, _) = send(
        me.post(s.url(&format!("/v1/me/grants/{gb}/refuse")))
            .bearer_auth(&ct),
    );
    assert_eq!(st, 200);
    let (st, c) = send(bhxh.post(s.url("/v1/grants")).json(&body(
        citizen,
        purpose,
        "HS-C",
        "can-bo-01",
        &["full_name"],
    )));
    assert_eq!(st, 202, "{c}");
    // The approval entry names the fields, dossier and expiry it covers.
    let approvals = entries(&s, "grant.approved");
    let entry = approvals
        .iter()
        .find(|e| e["grant_id"] == json!(ga))
        .unwrap();
    assert_eq!(entry["fields"], json!(["full_name"]));
    assert_eq!(entry["dossier_id"], "HS-A");
    assert!(entry["expires_at"].is_string(), "{entry}");

    // A standing consent only when asked for, for exactly those fields.
    let gc = c["grant_id"].as_str().unwrap();
    let (st, bad) = send(
        me.post(s.url(&format!("/v1/me/grants/{gc}/approve")))
            .bearer_auth(&ct)
            .json(&json!({"remember_days": 400})),
    );
    assert_eq!((st, &bad["code"]), (400, &json!("invalid_request")));
    let (st, kept) = send(
        me.post(s.url(&format!("/v1/me/grants/{gc}/approve")))
            .bearer_auth(&ct)
            .json(&json!({"remember_days": 30})),
    );
    assert_eq!(st, 200, "{kept}");
    let consent_id = kept["standing_consent"]["id"].as_str().unwrap().to_owned();
    let (st, list) = send(me.get(s.url("/v1/me/consents")).bearer_auth(&ct));
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["fields"], json!(["full_name"]));
    assert_eq!(list[0]["agency"], BHXH);
    for k in ["id", "purpose", "purpose_label", "created_at", "expires_at"] {
        assert!(list[0].get(k).is_some(), "{k} missing: {list}");
    }
    // Covered: active at once, on any dossier. Not covered (another field): asked again.
    let (st, d) = send(bhxh.post(s.url("/v1/grants")).json(&body(
        citizen,
        purpose,
        "HS-D",
        "can-bo-03",
        &["full_name"],
    )));
    assert_eq!(st, 201, "{d}");
    let token = d["access_token"].as_str().unwrap();
    let (st, _) = send(bhxh.post(s.url("/v1/grants")).json(&body(
        citizen,
        purpose,
        "HS-D",
        "can-bo-03",
        &["full_name", "annual_income"],
    )));
    assert_eq!(st, 202);
    let read = |t: &str| {
        send(
            bhxh.get(s.url(&format!("/v1/citizens/{citizen}/fields?fields=full_name")))
                .bearer_auth(t),
        )
    };
    assert_eq!(read(token).0, 200);
    // Another citizen cannot withdraw it; the owner can, and grants resting on it stop.
    let other = s.citizen_token(&people[1].0);
    let (st, e) = send(
        me.delete(s.url(&format!("/v1/me/consents/{consent_id}")))
            .bearer_auth(&other),
    );
    assert_eq!((st, &e["code"]), (404, &json!("consent_not_found")));
    let r = me
        .delete(s.url(&format!("/v1/me/consents/{consent_id}")))
        .bearer_auth(&ct)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (st, e) = read(token);
    assert_eq!((st, &e["code"]), (403, &json!("grant_revoked")));
    let (_, list) = send(me.get(s.url("/v1/me/consents")).bearer_auth(&ct));
    assert_eq!(list, json!([]));
    let withdrawn = entries(&s, "consent.withdrawn");
    assert_eq!(withdrawn.len(), 1);
    assert_eq!(withdrawn[0]["consent_id"], json!(consent_id));
    let (st, _) = send(bhxh.post(s.url("/v1/grants")).json(&body(
        citizen,
        purpose,
        "HS-E",
        "can-bo-03",
        &["full_name"],
    )));
    assert_eq!(st, 202, "after withdrawal the citizen is asked again");
}

#[test]
fn every_refusal_of_an_identified_caller_is_audited_and_none_of_an_unidentified_one() {
    let (s, people) = TestServer::start(3, &Limits::default());
    let land = s.client(Some(&s.agency_identity(LAND)));
    let bhxh = s.client(Some(&s.agency_identity(BHXH)));
    let (a, b) = (&people[0].0, &people[1].0);
    let me = s.client(None);
    let (st, g) = send(land.post(s.url("/v1/grants")).json(&body(
        a,
        "land_use_certificate",
        "HS-1",
        "cb-1",
        &["full_name"],
    )));
    assert_eq!(st, 201, "{g}");
    let gid = g["grant_id"].as_str().unwrap().to_owned();
    let (st, p) = send(bhxh.post(s.url("/v1/grants")).json(&body(
        a,
        "social_insurance_lookup",
        "HS-2",
        "cb-2",
        &["full_name"],
    )));
    assert_eq!(st, 202, "{p}");
    let pid = p["grant_id"].as_str().unwrap().to_owned();

    // Each refusal: (what, request, status, code, actor kind, action).
    let auditor = s.auditor_token("kt-01");
    let cases: Vec<(&str, RequestBuilder, u16, &str, &str, &str)> = vec![
        (
            "another agency reads a grant",
            bhxh.get(s.url(&format!("/v1/grants/{gid}"))),
            404,
            "grant_not_found",
            "agency",
            "grant.status",
        ),
        (
            "another agency revokes a grant",
            bhxh.delete(s.url(&format!("/v1/grants/{gid}"))),
            404,
            "grant_not_found",
            "agency",
            "grant.revoke",
        ),
        (
            "a citizen approves another citizen's grant",
            me.post(s.url(&format!("/v1/me/grants/{pid}/approve")))
                .bearer_auth(s.citizen_token(b)),
            404,
            "grant_not_found",
            "citizen",
            "grant.approve",
        ),
        (
            "a citizen refuses another citizen's grant",
            me.post(s.url(&format!("/v1/me/grants/{pid}/refuse")))
                .bearer_auth(s.citizen_token(b)),
            404,
            "grant_not_found",
            "citizen",
            "grant.refuse",
        ),
        (
            "an agency that may not write writes",
            land.put(s.url(&format!("/v1/citizens/{a}")))
                .json(&json!({"fields": {"full_name": "X"}, "source": "he-thong"})),
            403,
            "writes_not_allowed",
            "agency",
            "record.write",
        ),
        (
            "an agency on a citizen route",
            land.get(s.url("/v1/me/record")),
            401,
            "authentication_required",
            "agency",
            "me.record",
        ),
        (
            "an auditor on a citizen route",
            me.get(s.url("/v1/me/record")).bearer_auth(&auditor),
            403,
            "forbidden",
            "auditor",
            "me.record",
        ),
        (
            "a citizen on an auditor route",
            me.get(s.url("/v1/audit/checkpoint"))
                .bearer_auth(s.citizen_token(a)),
            403,
            "forbidden",
            "citizen",
            "audit.checkpoint",
        ),
        (
            "a grant body that is not JSON of the right shape",
            land.post(s.url("/v1/grants"))
                .header("content-type", "application/json")
                .body("{\"citizen_id\": 1}"),
            400,
            "invalid_request",
            "agency",
            "grant.request",
        ),
        (
            "a grant body with a malformed citizen id",
            land.post(s.url("/v1/grants")).json(&body(
                "12345",
                "land_use_certificate",
                "HS-1",
                "cb-1",
                &["full_name"],
            )),
            400,
            "invalid_citizen_id",
            "agency",
            "grant.request",
        ),
    ];
    for (what, req, status, code, kind, action) in cases {
        let before = entries(&s, "access.denied").len();
        let (st, e) = send(req);
        assert_eq!((st, e["code"].as_str().unwrap()), (status, code), "{what}");
        let after = entries(&s, "access.denied");
        assert_eq!(after.len(), before + 1, "{what}: one access.denied entry");
        let entry = after.last().unwrap();
        assert_eq!(entry["code"], code, "{what}");
        assert_eq!(entry["outcome"], "deny", "{what}");
        assert_eq!(entry["actor"]["kind"], kind, "{what}");
        assert_eq!(entry["action"], action, "{what}");
    }
    // The agency actor names the agency; another agency's grant is named in the entry.
    let (st, _) = send(bhxh.delete(s.url(&format!("/v1/grants/{gid}"))));
    assert_eq!(st, 404);
    let entry = last_denied(&s);
    assert_eq!(entry["actor"]["agency"], BHXH);
    assert_eq!(entry["grant_id"], json!(gid));
    // Approving a refused grant: 409, audited.
    let ct = s.citizen_token(a);
    let (st, _) = send(
        me.post(s.url(&format!("/v1/me/grants/{pid}/refuse")))
            .bearer_auth(&ct),
    );
    assert_eq!(st, 200);
    let (st, e) = send(
        me.post(s.url(&format!("/v1/me/grants/{pid}/approve")))
            .bearer_auth(&ct),
    );
    assert_eq!((st, &e["code"]), (409, &json!("grant_not_pending")));
    let entry = last_denied(&s);
    assert_eq!(
        (&entry["code"], &entry["actor"]["kind"]),
        (&json!("grant_not_pending"), &json!("citizen"))
    );
    assert!(entry["subject"].is_string());

    // Before any identity: no certificate, an unknown agency, an invalid bearer. Counted by
    // code in /metrics, never in the log.
    let before = entries(&s, "access.denied").len();
    let (cert, key) =
        s.ca.issue(vec![uri("urn:vault:agency:khong-ton-tai")], false, false);
    let stranger = s.client(Some(&vault_tests::server::Identity { cert, key }));
    for (req, status, code) in [
        (
            me.get(s.url("/v1/purposes")),
            401,
            "authentication_required",
        ),
        (stranger.get(s.url("/v1/purposes")), 403, "unknown_agency"),
        (
            me.get(s.url("/v1/me/record")).bearer_auth("not.a.token"),
            401,
            "bearer_invalid",
        ),
    ] {
        let (st, e) = send(req);
        assert_eq!((st, e["code"].as_str().unwrap()), (status, code));
    }
    assert_eq!(entries(&s, "access.denied").len(), before);
    let metrics = Client::new()
        .get(s.metrics_url())
        .send()
        .unwrap()
        .text()
        .unwrap();
    for code in [
        "authentication_required",
        "unknown_agency",
        "bearer_invalid",
    ] {
        assert!(
            metrics.contains(&format!("vault_denials_total{{code=\"{code}\"}}")),
            "{code} not counted: {metrics}"
        );
    }
}

#[test]
fn no_release_of_a_grant_is_logged_after_its_revocation() {
    let (s, people) = TestServer::start(2, &Limits::default());
    let land = s.client(Some(&s.agency_identity(LAND)));
    let citizen = people[0].0.clone();
    for trial in 0..8 {
        let (st, g) = send(land.post(s.url("/v1/grants")).json(&body(
            &citizen,
            "land_use_certificate",
            &format!("HS-R{trial}"),
            "cb-1",
            &["full_name"],
        )));
        assert_eq!(st, 201, "{g}");
        let gid = g["grant_id"].as_str().unwrap().to_owned();
        let token = g["access_token"].as_str().unwrap().to_owned();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let (land, token, citizen) = (&land, &token, &citizen);
                let url = s.url(&format!("/v1/citizens/{citizen}/fields?fields=full_name"));
                // One release each: four of the grant's five uses, so the revocation always
                // finds it live.
                scope.spawn(move || {
                    let _ = land.get(&url).bearer_auth(token).send();
                });
            }
            let r = land.delete(s.url(&format!("/v1/grants/{gid}"))).send();
            assert_eq!(r.unwrap().status().as_u16(), 204);
        });
        let order: Vec<(u64, String)> = {
            let auditor = s.client(None);
            let token = s.auditor_token("kt-order");
            let (_, page) = send(
                auditor
                    .get(s.url("/v1/audit/entries?limit=1000&agency=vp-dang-ky-dat-dai"))
                    .bearer_auth(&token),
            );
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["entry"]["grant_id"] == json!(gid))
                .map(|i| {
                    (
                        i["index"].as_u64().unwrap(),
                        i["entry"]["event"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        let revoked = order
            .iter()
            .find(|(_, e)| e == "grant.revoked")
            .map(|(i, _)| *i)
            .expect("a grant.revoked entry");
        assert!(
            order
                .iter()
                .all(|(i, e)| e != "record.released" || *i < revoked),
            "trial {trial}: a release logged after the revocation: {order:?}"
        );
    }
}

#[test]
fn a_replay_answers_the_grant_as_it_is_now_and_never_a_token_already_delivered() {
    let (s, people) = TestServer::start(2, &Limits::default());
    let land = s.client(Some(&s.agency_identity(LAND)));
    let bhxh = s.client(Some(&s.agency_identity(BHXH)));
    let citizen = &people[0].0;
    let b = body(
        citizen,
        "land_use_certificate",
        "HS-1",
        "cb-1",
        &["full_name"],
    );
    let post = |c: &Client, b: &Value, key: &str| {
        let r = c
            .post(s.url("/v1/grants"))
            .header("Idempotency-Key", key)
            .json(b)
            .send()
            .unwrap();
        let replayed = r.headers().contains_key("idempotent-replayed");
        let (st, v) = json_of(r);
        (st, v, replayed)
    };
    let (st, first, _) = post(&land, &b, "k-1");
    assert_eq!(st, 201);
    assert!(first["access_token"].is_string());
    let (st, again, replayed) = post(&land, &b, "k-1");
    assert_eq!((st, replayed), (200, true), "{again}");
    assert_eq!(again["grant_id"], first["grant_id"]);
    assert_eq!(again["status"], "active");
    assert!(again.get("access_token").is_none(), "{again}");
    let gid = first["grant_id"].as_str().unwrap();
    assert_eq!(
        land.delete(s.url(&format!("/v1/grants/{gid}")))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let (st, again, _) = post(&land, &b, "k-1");
    assert_eq!((st, &again["status"]), (200, &json!("revoked")), "{again}");
    assert!(again.get("access_token").is_none());
    // Pending, then approved: the replay hands the token out once, then never again.
    let p = body(
        citizen,
        "social_insurance_lookup",
        "HS-2",
        "cb-2",
        &["full_name"],
    );
    let (st, pending, _) = post(&bhxh, &p, "k-2");
    assert_eq!(st, 202);
    let (st, still, _) = post(&bhxh, &p, "k-2");
    assert_eq!((st, &still["status"]), (202, &json!("pending_consent")));
    assert!(still["consent_expires_at"].is_string(), "{still}");
    let pid = pending["grant_id"].as_str().unwrap();
    let (st, _) = send(
        s.client(None)
            .post(s.url(&format!("/v1/me/grants/{pid}/approve")))
            .bearer_auth(s.citizen_token(citizen)),
    );
    assert_eq!(st, 200);
    let (st, now, _) = post(&bhxh, &p, "k-2");
    assert_eq!(st, 200);
    assert!(now["access_token"].is_string(), "{now}");
    let (_, later, _) = post(&bhxh, &p, "k-2");
    assert!(later.get("access_token").is_none(), "{later}");
    let (_, status) = send(bhxh.get(s.url(&format!("/v1/grants/{pid}"))));
    assert!(status.get("access_token").is_none(), "{status}");
}

#[test]
fn one_field_with_a_comma_is_not_two_fields_under_one_idempotency_key() {
    let (s, people) = TestServer::start(2, &Limits::default());
    let land = s.client(Some(&s.agency_identity(LAND)));
    let citizen = &people[0].0;
    let post = |fields: &[&str]| {
        send(
            land.post(s.url("/v1/grants"))
                .header("Idempotency-Key", "same")
                .json(&body(
                    citizen,
                    "land_use_certificate",
                    "HS-1",
                    "cb-1",
                    fields,
                )),
        )
    };
    assert_eq!(post(&["full_name", "tax_code"]).0, 201);
    let (st, e) = post(&["full_name,tax_code"]);
    assert_eq!((st, &e["code"]), (422, &json!("idempotency_conflict")));
}

#[test]
fn revoking_an_ended_grant_changes_nothing() {
    let (s, people) = TestServer::start(2, &Limits::default());
    let land = s.client(Some(&s.agency_identity(LAND)));
    let citizen = &people[0].0;
    let (st, g) = send(land.post(s.url("/v1/grants")).json(&body(
        citizen,
        "land_use_certificate",
        "HS-1",
        "cb-1",
        &["full_name"],
    )));
    assert_eq!(st, 201);
    let (gid, token) = (
        g["grant_id"].as_str().unwrap(),
        g["access_token"].as_str().unwrap(),
    );
    for _ in 0..g["max_uses"].as_u64().unwrap() {
        let (st, _) = send(
            land.get(s.url(&format!("/v1/citizens/{citizen}/fields?fields=full_name")))
                .bearer_auth(token),
        );
        assert_eq!(st, 200);
    }
    let revoked_before = entries(&s, "grant.revoked").len();
    for _ in 0..2 {
        let r = land
            .delete(s.url(&format!("/v1/grants/{gid}")))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let (_, status) = send(land.get(s.url(&format!("/v1/grants/{gid}"))));
    assert_eq!(status["status"], "exhausted");
    assert_eq!(entries(&s, "grant.revoked").len(), revoked_before);
    // A revoked grant: the second DELETE adds nothing either.
    let (_, g2) = send(land.post(s.url("/v1/grants")).json(&body(
        citizen,
        "land_use_certificate",
        "HS-2",
        "cb-1",
        &["full_name"],
    )));
    let gid2 = g2["grant_id"].as_str().unwrap();
    for _ in 0..2 {
        let r = land
            .delete(s.url(&format!("/v1/grants/{gid2}")))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    assert_eq!(entries(&s, "grant.revoked").len(), revoked_before + 1);
}

#[test]
fn a_request_id_that_could_carry_a_citizen_id_is_replaced() {
    let (mut s, _) = TestServer::start(2, &Limits::default());
    let c = s.client(None);
    let id_of = |given: &str| {
        c.get(s.url("/healthz"))
            .header("X-Request-Id", given)
            .send()
            .unwrap()
            .headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(id_of("req-2026_abc"), "req-2026_abc");
    for bad in [
        "079199385999",
        "a079199385999b",
        "x".repeat(65).as_str(),
        "a b",
    ] {
        let got = id_of(bad);
        assert_ne!(got, bad);
        assert!(!vault_core::id::has_long_digit_run(&got));
    }
    s.stop();
    assert!(!s.log_text().contains("079199385999"));
}

#[test]
fn only_known_purposes_get_postings() {
    let (mut s, people) = TestServer::start(2, &Limits::default());
    let land = s.client(Some(&s.agency_identity(LAND)));
    for i in 0..20 {
        let purpose = if i % 2 == 0 {
            format!("khong-co-{i}")
        } else {
            format!("not an identifier {i}!")
        };
        let (st, e) = send(land.post(s.url("/v1/grants")).json(&body(
            &people[0].0,
            &purpose,
            "HS-1",
            "cb-1",
            &["full_name"],
        )));
        assert_eq!((st, &e["code"]), (400, &json!("unknown_purpose")), "{e}");
    }
    let denied = entries(&s, "grant.denied");
    assert_eq!(denied.len(), 20);
    assert!(
        denied.iter().all(|e| e.get("purpose").is_none()),
        "{denied:?}"
    );
    s.stop();
    let postings = s.vault.data().join("audit/index/postings");
    let policy = vault_core::policy::PolicySet::load_dir(&vault_tests::policies_dir()).unwrap();
    for f in std::fs::read_dir(&postings).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        if let Some(hex) = name.strip_prefix("p-") {
            let purpose = String::from_utf8(hex::decode(hex).unwrap()).unwrap();
            assert!(
                policy.purpose(&purpose).is_some(),
                "a postings file for `{purpose}`"
            );
        }
    }
}

#[test]
fn jurisdiction_is_the_ward_on_the_two_tier_map() {
    let (s, people) = TestServer::start(20, &Limits::default());
    // Demo citizens live in a ward, commune or special zone, never a district.
    let ward = |p: &Value| p["residence_ward"].as_str().unwrap().to_owned();
    assert!(
        people
            .iter()
            .all(|(_, f)| f.get("residence_district").is_none())
    );
    assert!(
        people
            .iter()
            .all(|(_, f)| vault_core::geo::unit(&ward(f)).is_some())
    );
    // The city's residence registry (the source of truth) moves one citizen into Phường Sài
    // Gòn and another into the neighbouring Phường Bến Thành (both once in Quận 1).
    let registry = s.client(Some(&s.agency_identity("cong-an-tphcm-cu-tru")));
    let (inside, outside) = (people[0].0.clone(), people[1].0.clone());
    for (citizen, unit) in [(&inside, "phuong-sai-gon"), (&outside, "phuong-ben-thanh")] {
        let (st, v) = send(
            registry
                .put(s.url(&format!("/v1/citizens/{citizen}")))
                .json(&json!({"fields": {"residence_ward": unit}, "source": "cu-tru"})),
        );
        assert_eq!(st, 200, "{v}");
    }
    let (st, e) = send(
        registry
            .put(s.url(&format!("/v1/citizens/{inside}")))
            .json(&json!({"fields": {"residence_district": "760"}, "source": "cu-tru"})),
    );
    assert_eq!(
        (st, &e["code"]),
        (400, &json!("unknown_field")),
        "no district field"
    );
    let ward_agency = s.client(Some(&s.agency_identity("ubnd-phuong-sai-gon")));
    let ask = |citizen: &str| {
        send(ward_agency.post(s.url("/v1/grants")).json(&body(
            citizen,
            "construction_permit",
            "GPXD-1",
            "cb-1",
            &["full_name"],
        )))
    };
    assert_eq!(ask(&inside).0, 201);
    let (st, e) = ask(&outside);
    assert_eq!((st, &e["code"]), (403, &json!("outside_jurisdiction")));
    // The district agencies of the old map are gone.
    let (cert, key) =
        s.ca.issue(vec![uri("urn:vault:agency:ubnd-quan-1")], false, false);
    let district = s.client(Some(&vault_tests::server::Identity { cert, key }));
    let (st, e) = send(district.get(s.url("/v1/purposes")));
    assert_eq!((st, &e["code"]), (403, &json!("unknown_agency")));
}

#[test]
fn audited_refusals_are_limited_per_identity_and_attributed_by_the_route() {
    let (s, people) = TestServer::start(2, &Limits::default());
    let me = s.client(None);
    let ct = s.citizen_token(&people[0].0);
    let before = entries(&s, "access.denied").len();
    let mut limited = 0;
    for _ in 0..150 {
        let (st, _) = send(me.get(s.url("/v1/audit/checkpoint")).bearer_auth(&ct));
        match st {
            403 => {}
            429 => limited += 1,
            other => panic!("{other}"),
        }
    }
    let appended = entries(&s, "access.denied").len() - before;
    assert!(limited > 0, "past the burst a refusal answers 429");
    assert_eq!(
        appended,
        150 - limited,
        "only the refusals answered 403 are in the log"
    );
    // An agency certificate that also carries a citizen's token is refused on an agency
    // route as the agency, not as the citizen.
    let land = s.client(Some(&s.agency_identity(LAND)));
    let (st, _) = send(
        land.get(s.url("/v1/purposes?x=1"))
            .bearer_auth(s.citizen_token(&people[1].0)),
    );
    assert_eq!(st, 400);
    let entry = last_denied(&s);
    assert_eq!(
        (&entry["actor"]["kind"], &entry["actor"]["agency"]),
        (&json!("agency"), &json!(LAND))
    );
    assert_eq!(entry["action"], "purposes.list");
    // A replay of a grant the citizen refused answers the refusal, audited.
    let bhxh = s.client(Some(&s.agency_identity(BHXH)));
    let b = body(
        &people[0].0,
        "social_insurance_lookup",
        "HS-9",
        "cb-9",
        &["full_name"],
    );
    let post = || {
        send(
            bhxh.post(s.url("/v1/grants"))
                .header("Idempotency-Key", "k-9")
                .json(&b),
        )
    };
    let (st, p) = post();
    assert_eq!(st, 202);
    let gid = p["grant_id"].as_str().unwrap();
    let (st, _) = send(
        me.post(s.url(&format!("/v1/me/grants/{gid}/refuse")))
            .bearer_auth(s.citizen_token(&people[0].0)),
    );
    assert_eq!(st, 200);
    let (st, e) = post();
    assert_eq!((st, &e["code"]), (403, &json!("consent_refused")));
    let entry = last_denied(&s);
    assert_eq!(
        (&entry["code"], &entry["grant_id"]),
        (&json!("consent_refused"), &json!(gid))
    );
}
