//! Operating a running vault: read-only `vaultctl` commands beside a serving
//! `vault-server` (no lock, under load), and what the operator is told.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use vault_tests::server::{Limits, TestServer};
use vault_tests::text;

use crate::server::json_of;

const AGENCY: &str = "csgt-cong-an-tphcm";

/// Releases in a loop until `stop`, on the server's agency certificate.
fn load(
    s: &TestServer,
    people: &[(String, serde_json::Value)],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let c = s.client(Some(&s.agency_identity(AGENCY)));
    let url = |p: &str| s.url(p);
    let grants = url("/v1/grants");
    let reads: Vec<(String, String)> = people
        .iter()
        .map(|(id, _)| {
            (
                id.clone(),
                url(&format!("/v1/citizens/{id}/fields?fields=full_name")),
            )
        })
        .collect();
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for (id, read) in &reads {
                let (st, g) = json_of(
                    c.post(&grants)
                        .json(
                            &json!({"citizen_id": id, "purpose": "driver_licence_renewal",
                                      "dossier_id": "HS-OPS", "fields": ["full_name"],
                                      "official": {"id": "can-bo-01"}}),
                        )
                        .send()
                        .unwrap(),
                );
                assert_eq!(st, 201, "{g}");
                let (st, _) = json_of(
                    c.get(read)
                        .bearer_auth(g["access_token"].as_str().unwrap())
                        .send()
                        .unwrap(),
                );
                assert_eq!(st, 200);
                n += 1;
            }
        }
        n
    })
}

/// Runs `vaultctl` on the server's vault; its stdout, or the test fails with its stderr.
fn ok(s: &TestServer, args: &[&str]) -> String {
    let out = s.vault.ctl(args);
    assert!(
        out.status.success(),
        "vaultctl {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn read_only_audit_commands_work_beside_a_running_server_under_load() {
    let (mut s, people) = TestServer::start(5, &Limits::default());
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&s, &people, Arc::clone(&stop));
    let ok = |args: &[&str]| ok(&s, args);
    let key = ok(&["audit", "pubkey"]);
    assert!(key.trim().contains("/audit+"), "{key}");
    let mut last_size = 0;
    for _ in 0..3 {
        let note = ok(&["audit", "checkpoint"]);
        let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
        assert!(size >= last_size);
        last_size = size;
        let verified = ok(&["audit", "verify"]);
        assert!(verified.starts_with("audit log verified:"), "{verified}");
        let proof: serde_json::Value =
            serde_json::from_str(&ok(&["audit", "proof", "--index", "0"])).unwrap();
        assert!(proof["root"].is_string(), "{proof}");
    }
    // An export and the checkpoint of its size verify offline with the published key.
    let note = ok(&["audit", "checkpoint"]);
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    let export = ok(&["audit", "export", "--to", &size.to_string()]);
    assert_eq!(export.lines().count() as u64, size);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("log.jsonl"), &export).unwrap();
    std::fs::write(dir.path().join("cp.txt"), &note).unwrap();
    let log = dir.path().join("log.jsonl").display().to_string();
    let cp = dir.path().join("cp.txt").display().to_string();
    let verified = ok(&[
        "audit",
        "verify",
        "--log",
        &log,
        "--checkpoint",
        &cp,
        "--key",
        key.trim(),
    ]);
    assert!(verified.starts_with("audit export verified:"), "{verified}");

    stop.store(true, Ordering::Relaxed);
    assert!(loader.join().unwrap() > 0, "the load ran");
    // The server was never disturbed: it stops cleanly and its log verifies in full.
    assert!(s.stop().unwrap().success(), "{}", s.log_text());
    let all = self::ok(&s, &["audit", "verify"]);
    assert!(all.starts_with("audit log verified:"), "{all}");
}
