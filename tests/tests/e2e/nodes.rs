//! Several `vault-server` nodes on one PostgreSQL database (SPEC §10): a grant made on one
//! node is used on another, the last use of a grant is won by exactly one caller across the
//! nodes, every node proves against the one log, and `vaultctl` reads the shared log.

use std::sync::Barrier;

use serde_json::{Value, json};
use vault_core::audit::{Checkpoint, merkle};
use vault_tests::pg::PgCluster;
use vault_tests::server::{Identity, Limits, TestServer};
use vault_tests::text;

use crate::server::json_of;

/// The land registry: its purpose needs no consent and allows five uses.
pub(crate) const LAND: &str = "vp-dang-ky-dat-dai";
pub(crate) const LAND_PURPOSE: &str = "land_use_certificate";

/// A vault on a fresh cluster, and its first node.
pub(crate) fn first_node(citizens: u64) -> (PgCluster, TestServer, Vec<String>) {
    let pg = PgCluster::start(None);
    let (s, people) = TestServer::start(
        citizens,
        &Limits {
            store_url: Some(pg.url()),
            ..Limits::default()
        },
    );
    let ids = people.into_iter().map(|(id, _)| id).collect();
    (pg, s, ids)
}

fn hash(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// A grant without consent (land use: official purpose, max_uses > 1) on `s`; (id, token,
/// max_uses).
pub(crate) fn grant(
    s: &TestServer,
    agency: &Identity,
    purpose: &str,
    citizen: &str,
    dossier: &str,
) -> (String, String, u64) {
    let c = s.client(Some(agency));
    let (st, g) = json_of(
        c.post(s.url("/v1/grants"))
            .json(
                &json!({"citizen_id": citizen, "purpose": purpose, "dossier_id": dossier,
                          "fields": ["full_name"], "official": {"id": "can-bo-01"}}),
            )
            .send()
            .unwrap(),
    );
    assert_eq!(st, 201, "{g}");
    (
        g["grant_id"].as_str().unwrap().to_owned(),
        g["access_token"].as_str().unwrap().to_owned(),
        g["max_uses"].as_u64().unwrap(),
    )
}

pub(crate) fn release(
    s: &TestServer,
    agency: &Identity,
    token: &str,
    citizen: &str,
) -> (u16, Value) {
    let c = s.client(Some(agency));
    json_of(
        c.get(s.url(&format!("/v1/citizens/{citizen}/fields?fields=full_name")))
            .bearer_auth(token)
            .send()
            .unwrap(),
    )
}

#[test]
fn a_grant_made_on_one_node_is_used_on_another_and_its_last_use_has_one_winner() {
    let (_pg, a, people) = first_node(20);
    let b = a.another_node();
    // One agency certificate, presented to both nodes (the token is bound to it).
    let land = &a.agency_identity(LAND);
    let citizen = &people[0];
    let (gid, token, max_uses) = grant(&a, land, LAND_PURPOSE, citizen, "HS-N-1");
    assert!(max_uses >= 2, "the race needs a grant of several uses");
    // Used on B, then proved on A against A's checkpoint.
    let (st, r) = release(&b, land, &token, citizen);
    assert_eq!(st, 200, "{r}");
    let index = r["audit"]["index"].as_u64().unwrap();
    let leaf = hash(r["audit"]["leaf_hash"].as_str().unwrap());
    let auditor = a.client(None);
    let note = auditor
        .get(a.url("/v1/audit/checkpoint"))
        .bearer_auth(a.auditor_token("kt-01"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let verifier = vault_core::audit::LogVerifier::parse(
        auditor
            .get(a.url("/v1/audit/pubkey"))
            .send()
            .unwrap()
            .text()
            .unwrap()
            .trim(),
    )
    .unwrap();
    let cp = Checkpoint::verify(&note, &verifier).unwrap();
    assert!(cp.size > index);
    let (st, proof) = json_of(
        auditor
            .get(a.url(&format!(
                "/v1/audit/proof/inclusion?index={index}&tree_size={}",
                cp.size
            )))
            .bearer_auth(a.auditor_token("kt-01"))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{proof}");
    let hashes: Vec<[u8; 32]> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash(h.as_str().unwrap()))
        .collect();
    merkle::verify_inclusion(index, cp.size, &leaf, &hashes, &cp.root).unwrap();
    // Spend all but the last use, alternating nodes.
    for k in 1..max_uses - 1 {
        let node = if k % 2 == 0 { &a } else { &b };
        assert_eq!(release(node, land, &token, citizen).0, 200);
    }
    // The last use: 16 callers at once, half on each node.
    let gate = Barrier::new(16);
    let outcomes: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|k| {
                let (node, gate, token) = (if k % 2 == 0 { &a } else { &b }, &gate, &token);
                scope.spawn(move || {
                    gate.wait();
                    release(node, land, token, citizen)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = outcomes.iter().filter(|(st, _)| *st == 200).count();
    assert_eq!(winners, 1, "{outcomes:?}");
    for (st, e) in outcomes.iter().filter(|(st, _)| *st != 200) {
        assert!(*st == 403 || *st == 409 || *st == 410, "{st} {e}");
    }
    // Both nodes see the grant exhausted.
    for node in [&a, &b] {
        let c = node.client(Some(land));
        let (_, g) = json_of(
            c.get(node.url(&format!("/v1/grants/{gid}")))
                .send()
                .unwrap(),
        );
        assert_eq!(g["status"], "exhausted", "{g}");
    }
    // Exactly max_uses releases in the one log, and it verifies from the command line.
    let out = a.vault.ctl(&["audit", "export"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let released = text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["entry"]["event"] == "record.released" && e["entry"]["grant_id"] == json!(gid)
        })
        .count();
    assert_eq!(released as u64, max_uses);
    let out = a.vault.ctl(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
