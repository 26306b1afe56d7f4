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
    let pg = PgCluster::start();
    let (s, ids) = node_on(&pg.url(), citizens);
    (pg, s, ids)
}

/// A vault in the database at `url`, and its first node.
fn node_on(url: &str, citizens: u64) -> (TestServer, Vec<String>) {
    let (s, people) = TestServer::start(
        citizens,
        &Limits {
            store_url: Some(url.to_owned()),
            ..Limits::default()
        },
    );
    (s, people.into_iter().map(|(id, _)| id).collect())
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
    proved(&a, index, &leaf, &cp);
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
    let released = export(&a)
        .into_iter()
        .filter(|e| {
            e["entry"]["event"] == "record.released" && e["entry"]["grant_id"] == json!(gid)
        })
        .count();
    assert_eq!(released as u64, max_uses);
    let out = a.vault.ctl(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// What a load thread saw: acknowledged releases (index, leaf hash) and refusals by status.
#[derive(Debug, Default)]
struct Seen {
    acked: Vec<(u64, String)>,
    /// Grants made.
    grants: Vec<String>,
    unavailable: usize,
    other: Vec<String>,
}

/// Grants and releases on `nodes` (round-robin) until `stop`, recording every answer.
fn load(
    nodes: &[&TestServer],
    agency: &Identity,
    people: &[String],
    stop: &std::sync::atomic::AtomicBool,
    seed: usize,
) -> Seen {
    let mut seen = Seen::default();
    let clients: Vec<_> = nodes
        .iter()
        .map(|n| {
            reqwest::blocking::Client::builder()
                .use_preconfigured_tls(n.tls_config(Some(agency)))
                .timeout(std::time::Duration::from_secs(15))
                .build()
                .unwrap()
        })
        .collect();
    let mut k = seed;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        k += 1;
        let at = k % nodes.len();
        let (node, c) = (nodes[at], &clients[at]);
        let citizen = &people[k % people.len()];
        let g = c
            .post(node.url("/v1/grants"))
            .json(&json!({"citizen_id": citizen, "purpose": LAND_PURPOSE,
                          "dossier_id": format!("HS-L-{seed}-{k}"),
                          "fields": ["full_name"], "official": {"id": "can-bo-01"}}))
            .send();
        let token = match g {
            Ok(r) if r.status().as_u16() == 201 => {
                let g: Value = r.json().unwrap();
                seen.grants.push(g["grant_id"].as_str().unwrap().to_owned());
                g["access_token"].as_str().unwrap().to_owned()
            }
            Ok(r) if r.status().as_u16() == 503 => {
                seen.unavailable += 1;
                continue;
            }
            Ok(r) => {
                seen.other.push(format!("grant: {}", r.status()));
                continue;
            }
            // A node killed or restarting: nothing acknowledged.
            Err(_) => continue,
        };
        for u in 0..5 {
            let at = (k + u) % nodes.len();
            let r = clients[at]
                .get(nodes[at].url(&format!("/v1/citizens/{citizen}/fields?fields=full_name")))
                .bearer_auth(&token)
                .send();
            match r {
                Ok(r) if r.status().as_u16() == 200 => {
                    let v: Value = r.json().unwrap();
                    seen.acked.push((
                        v["audit"]["index"].as_u64().unwrap(),
                        v["audit"]["leaf_hash"].as_str().unwrap().to_owned(),
                    ));
                }
                Ok(r) if r.status().as_u16() == 503 => seen.unavailable += 1,
                Ok(r) => seen.other.push(format!("release: {}", r.status())),
                Err(_) => {}
            }
        }
    }
    seen
}

/// Entry `index` is in the tree of checkpoint `cp` with leaf hash `leaf`, by the inclusion
/// proof `s` serves an auditor.
fn proved(s: &TestServer, index: u64, leaf: &[u8; 32], cp: &Checkpoint) {
    let (st, proof) = json_of(
        s.client(None)
            .get(s.url(&format!(
                "/v1/audit/proof/inclusion?index={index}&tree_size={}",
                cp.size
            )))
            .bearer_auth(s.auditor_token("kt-01"))
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
    merkle::verify_inclusion(index, cp.size, leaf, &hashes, &cp.root).unwrap();
}

/// The whole log's exported lines (`vaultctl audit export`), each with `index`, `leaf_hash`
/// and `entry`.
fn export(s: &TestServer) -> Vec<Value> {
    let out = s.vault.ctl(&["audit", "export"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// Index → leaf hash of the whole log, from `vaultctl audit export`.
fn exported(s: &TestServer) -> std::collections::HashMap<u64, String> {
    export(s)
        .into_iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["leaf_hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every acknowledged release is in the log with the leaf hash its caller was given.
fn all_in_log(s: &TestServer, acked: &[(u64, String)]) {
    let log = exported(s);
    for (index, leaf) in acked {
        assert_eq!(log.get(index), Some(leaf), "acknowledged release {index}");
    }
    let out = s.vault.ctl(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Four load workers over both nodes: 2 s, then `event`, then 8 s more. What they saw, and
/// the status of one grant-and-release on each node afterwards (neither restarted).
fn through(
    a: &TestServer,
    b: &TestServer,
    land: &Identity,
    people: &[String],
    event: impl FnOnce(),
) -> (Vec<Seen>, Vec<u16>) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|k| {
                let stop = &stop;
                scope.spawn(move || load(&[a, b], land, people, stop, k * 1_000_000))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_secs(2));
        event();
        std::thread::sleep(std::time::Duration::from_secs(8));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let seen: Vec<Seen> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let after = [a, b]
            .iter()
            .map(|n| release_once(n, land, &people[0]))
            .collect();
        (seen, after)
    })
}

#[test]
fn a_database_cut_off_gives_503s_releases_nothing_unlogged_and_heals_without_a_restart() {
    let (pg, a, people) = first_node(20);
    let b = a.another_node();
    let land = a.agency_identity(LAND);
    // The database goes away for a few seconds (both nodes lose it), then comes back.
    let (seen, after) = through(&a, &b, &land, &people, || {
        pg.stop();
        std::thread::sleep(std::time::Duration::from_secs(4));
        pg.run_server();
    });
    let acked: Vec<(u64, String)> = seen.iter().flat_map(|s| s.acked.clone()).collect();
    let unavailable: usize = seen.iter().map(|s| s.unavailable).sum();
    let other: Vec<&String> = seen.iter().flat_map(|s| &s.other).collect();
    assert!(unavailable > 0, "the cut showed no 503");
    assert!(other.is_empty(), "{other:?}");
    assert!(acked.len() > 10, "{} releases acknowledged", acked.len());
    assert_eq!(after, [200, 200]);
    all_in_log(&a, &acked);
    // No index was given twice.
    let mut indexes: Vec<u64> = acked.iter().map(|(i, _)| *i).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), acked.len());
}

/// One grant and one release on `s`; the release's status.
fn release_once(s: &TestServer, agency: &Identity, citizen: &str) -> u16 {
    let (_, token, _) = grant(s, agency, LAND_PURPOSE, citizen, "HS-AFTER");
    release(s, agency, &token, citizen).0
}

/// The pid of the process holding the sequencer lease (its holder name is host/pid/nonce).
fn sequencer_pid(pg: &PgCluster) -> Option<u32> {
    let holder = pg.psql("SELECT holder FROM audit_lease WHERE expires > now()");
    holder.split('/').nth(1)?.parse().ok()
}

#[test]
fn killing_the_sequencer_node_under_load_loses_no_acknowledged_release_over_20_rounds() {
    let (pg, mut a, people) = first_node(20);
    let mut b = a.another_node();
    let land = a.agency_identity(LAND);
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut grants: Vec<String> = Vec::new();
    let mut kills = 0;
    for round in 0..20 {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let seen: Vec<Seen> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|k| {
                    let (nodes, land, people, stop) = ([&a, &b], &land, &people, &stop);
                    scope.spawn(move || load(&nodes, land, people, stop, round * 10 + k))
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(
                700 + 97 * (round as u64 % 7),
            ));
            // kill -9 whichever node sequences now; the other must take over and go on.
            let nodes = [a.pid(), b.pid()];
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let pid = loop {
                match sequencer_pid(&pg) {
                    Some(p) if nodes.contains(&Some(p)) => break p,
                    _ if std::time::Instant::now() > deadline => {
                        stop.store(true, std::sync::atomic::Ordering::SeqCst);
                        panic!("round {round}: no node holds the lease under load");
                    }
                    _ => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            };
            let killed = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
            std::thread::sleep(std::time::Duration::from_secs(5));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        kills += 1;
        for s in &seen {
            assert!(s.other.is_empty(), "round {round}: {:?}", s.other);
            acked.extend(s.acked.iter().cloned());
            grants.extend(s.grants.iter().cloned());
        }
        // Restart the killed node (a dead child is relaunched; the live one keeps serving).
        for n in [&mut a, &mut b] {
            if !n.is_running() {
                n.kill();
                n.launch();
            }
        }
        all_in_log(&a, &acked);
    }
    assert_eq!(kills, 20);
    assert!(acked.len() > 100, "{} releases acknowledged", acked.len());
    // Every use spent is in the log: a use and its entry commit together, so a node killed
    // between them left neither.
    let mut logged: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for e in export(&a)
        .into_iter()
        .filter(|e| e["entry"]["event"] == "record.released")
    {
        *logged
            .entry(e["entry"]["grant_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let c = a.client(Some(&land));
    for gid in &grants {
        let (st, g) = json_of(c.get(a.url(&format!("/v1/grants/{gid}"))).send().unwrap());
        assert_eq!(st, 200, "{g}");
        assert_eq!(
            g["uses"].as_u64(),
            Some(logged.get(gid).copied().unwrap_or(0)),
            "grant {gid}: uses spent and record.released entries"
        );
    }
    // The last acknowledged release is provable against a later checkpoint.
    let (index, leaf) = acked.iter().max_by_key(|(i, _)| *i).unwrap().clone();
    let auditor = a.client(None);
    let note = auditor
        .get(a.url("/v1/audit/checkpoint"))
        .bearer_auth(a.auditor_token("kt-01"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let body = Checkpoint::parse(&format!("{}\n", note.split("\n\n").next().unwrap())).unwrap();
    proved(&a, index, &hash(&leaf), &body);
}

#[test]
fn losing_the_primary_with_a_synchronous_standby_loses_no_acknowledged_release() {
    let primary = PgCluster::start();
    let standby = PgCluster::standby_of(&primary, "standby1");
    primary.require_sync_standby("standby1");
    // Both hosts in the URL: the nodes connect to whichever accepts writes.
    let url = format!(
        "postgres://vault@127.0.0.1:{},127.0.0.1:{}/vault?target_session_attrs=read-write&sslmode=disable",
        primary.port, standby.port
    );
    let (a, people) = node_on(&url, 20);
    let b = a.another_node();
    let land = a.agency_identity(LAND);
    // The primary's machine is lost; the operator (or Patroni) promotes the standby.
    let (seen, after) = through(&a, &b, &land, &people, || {
        primary.kill();
        std::thread::sleep(std::time::Duration::from_millis(500));
        standby.promote();
    });
    let acked: Vec<(u64, String)> = seen.iter().flat_map(|s| s.acked.clone()).collect();
    let other: Vec<&String> = seen.iter().flat_map(|s| &s.other).collect();
    assert!(other.is_empty(), "{other:?}");
    assert!(acked.len() > 10, "{} releases acknowledged", acked.len());
    assert_eq!(
        after,
        [200, 200],
        "the nodes serve from the promoted standby"
    );
    // What the nodes acknowledged is on the promoted standby (vaultctl follows the URL too).
    assert!(!primary.accepts());
    all_in_log(&a, &acked);
}

#[test]
fn an_embedded_vault_migrates_into_postgresql_with_its_root_and_a_consistent_log() {
    let (mut s, people) = TestServer::start(10, &Limits::default());
    let people: Vec<String> = people.into_iter().map(|(id, _)| id).collect();
    let land = s.agency_identity(LAND);
    let (gid, token, _) = grant(&s, &land, LAND_PURPOSE, &people[1], "HS-M-1");
    let (st, before) = release(&s, &land, &token, &people[1]);
    assert_eq!(st, 200, "{before}");
    let auditor = |s: &TestServer, path: &str| -> (u16, Value) {
        json_of(
            s.client(None)
                .get(s.url(path))
                .bearer_auth(s.auditor_token("kt-01"))
                .send()
                .unwrap(),
        )
    };
    let note = |s: &TestServer| {
        s.client(None)
            .get(s.url("/v1/audit/checkpoint"))
            .bearer_auth(s.auditor_token("kt-01"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let old_note = note(&s);
    let old = Checkpoint::parse(&format!("{}\n", old_note.split("\n\n").next().unwrap())).unwrap();
    s.stop();

    let pg = PgCluster::start();
    let out = s.vault.ctl(&["migrate", "--to", &pg.url()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains(&hex::encode(old.root)), "{said}");
    // The configuration still says sled: the server refuses instead of serving the old files.
    assert!(s.try_launch().is_err());
    let mut config = std::fs::read_to_string(s.config_path()).unwrap();
    config.push_str(&format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{}\"\n",
        pg.url()
    ));
    std::fs::write(s.config_path(), config).unwrap();
    s.launch();

    // The grant, its spent use and the record came along.
    let c = s.client(Some(&land));
    let (_, g) = json_of(c.get(s.url(&format!("/v1/grants/{gid}"))).send().unwrap());
    assert_eq!(g["uses"], 1, "{g}");
    let (st, after) = release(&s, &land, &token, &people[1]);
    assert_eq!(st, 200, "{after}");
    assert_eq!(after["fields"], before["fields"]);
    // The new log extends the old one: a consistency proof from the old checkpoint.
    let new_note = note(&s);
    let new = Checkpoint::parse(&format!("{}\n", new_note.split("\n\n").next().unwrap())).unwrap();
    assert!(new.size > old.size);
    let (st, proof) = auditor(
        &s,
        &format!(
            "/v1/audit/proof/consistency?from={}&to={}",
            old.size, new.size
        ),
    );
    assert_eq!(st, 200, "{proof}");
    let hashes: Vec<[u8; 32]> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash(h.as_str().unwrap()))
        .collect();
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &hashes).unwrap();
    // The old checkpoint is served as it was signed.
    assert!(
        pg.psql(&format!(
            "SELECT count(*) FROM audit_checkpoints WHERE size = {}",
            old.size
        )) == "1"
    );
    let out = s.vault.ctl(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A second migration is refused: the vault is in PostgreSQL now.
    s.stop();
    let again = s.vault.ctl(&["migrate", "--to", &pg.url()]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already in PostgreSQL"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn verification_code_checks_are_limited_across_nodes() {
    let (_pg, a, people) = first_node(3);
    let b = a.another_node();
    let token = a.citizen_token(&people[0]);
    // 10 checks a minute per citizen, wherever they land: 6 on one node and 6 on the other
    // would all pass with limits per node. Paced past the nodes' 200 ms reports, and all in
    // one minute's window (started early enough in it).
    let into_minute = a.server_now().rem_euclid(60);
    if into_minute > 45 {
        std::thread::sleep(std::time::Duration::from_secs(61 - into_minute as u64));
    }
    let statuses: Vec<u16> = (0..12)
        .map(|k| {
            let node = if k % 2 == 0 { &a } else { &b };
            std::thread::sleep(std::time::Duration::from_millis(450));
            node.client(None)
                .post(node.url("/v1/me/verify"))
                .bearer_auth(&token)
                .json(&json!({"verification_code": "ZZZZZZZZ"}))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    let passed = statuses.iter().filter(|&&c| c == 200).count();
    assert_eq!(passed, 10, "{statuses:?}");
    assert_eq!(&statuses[10..], [429, 429], "{statuses:?}");
}
