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

fn status_line(s: &TestServer, key: &str) -> String {
    ok(s, &["status"])
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn changing_commands_are_carried_out_by_the_running_server_under_load() {
    let policies = tempfile::tempdir().unwrap();
    vault_tests::bench::copy_dir(&vault_tests::policies_dir(), policies.path()).unwrap();
    let limits = Limits {
        policies: Some(policies.path().to_owned()),
        ..Limits::default()
    };
    let (mut s, people) = TestServer::start(6, &limits);
    let sock = s.vault.data().join("admin.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pid = s.pid().unwrap();
    assert!(
        status_line(&s, "server:").contains(&format!("vault-server (pid {pid}) runs here")),
        "{}",
        ok(&s, &["status"])
    );
    // `--data` from the environment, as the server takes it.
    let out = std::process::Command::new(vault_tests::binary("vaultctl"))
        .arg("status")
        .env("VAULT_DATA", s.vault.data())
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains(&format!("pid {pid}")),
        "{}",
        text(&out.stderr)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&s, &people[..3], Arc::clone(&stop));

    // Import new citizens through the server (the file passed, not re-opened by path).
    let file = s.vault.root().join("more.jsonl");
    let demo = s.vault.ctl(&["demo-data", "--count", "40", "--seed", "99"]);
    std::fs::write(&file, &demo.stdout).unwrap();
    let said = ok(&s, &["import", file.to_str().unwrap()]);
    assert!(said.contains("40 created"), "{said}");
    let newcomer = text(&demo.stdout)
        .lines()
        .next()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["citizen_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .unwrap();
    let police = s.client(Some(&s.agency_identity(AGENCY)));
    let (st, g) = json_of(
        police
            .post(s.url("/v1/grants"))
            .json(
                &json!({"citizen_id": newcomer, "purpose": "driver_licence_renewal",
                          "dossier_id": "HS-OPS-2", "fields": ["full_name"],
                          "official": {"id": "can-bo-02"}}),
            )
            .send()
            .unwrap(),
    );
    assert_eq!(st, 201, "the imported citizen is served at once: {g}");

    // Key rotation while releases go on; every record reads back afterwards.
    let before = status_line(&s, "keys:");
    let said = ok(&s, &["keys", "rotate"]);
    assert!(said.contains("KEK v1 -> v2"), "{said}");
    assert!(status_line(&s, "keys:").contains("KEK v2"), "{before}");
    let said = ok(&s, &["keys", "rotate-token"]);
    assert!(said.contains("token signing key v2"), "{said}");

    // Erasure through the server: the citizen is gone for the API at once.
    let gone = &people[5].0;
    ok(&s, &["erase", "--citizen", gone]);
    let (st, g) = json_of(
        police
            .post(s.url("/v1/grants"))
            .json(
                &json!({"citizen_id": gone, "purpose": "driver_licence_renewal",
                          "dossier_id": "HS-OPS-3", "fields": ["full_name"],
                          "official": {"id": "can-bo-02"}}),
            )
            .send()
            .unwrap(),
    );
    if st == 201 {
        let (st, _) = json_of(
            police
                .get(s.url(&format!("/v1/citizens/{gone}/fields?fields=full_name")))
                .bearer_auth(g["access_token"].as_str().unwrap())
                .send()
                .unwrap(),
        );
        assert_eq!(st, 404, "an erased citizen's fields are gone");
    } else {
        assert_eq!(st, 404, "{g}");
    }

    // Reload: a changed policy set is taken and recorded; a broken one is refused.
    let hash = |s: &TestServer| status_line(s, "policy set:");
    let first = hash(&s);
    let purpose = policies.path().join("purposes/driver_licence_renewal.toml");
    let original = std::fs::read_to_string(&purpose).unwrap();
    std::fs::write(
        &purpose,
        original.replacen("max_ttl_seconds = ", "max_ttl_seconds = 1", 1),
    )
    .unwrap();
    let said = ok(&s, &["reload"]);
    assert!(said.contains("->"), "{said}");
    let second = hash(&s);
    assert_ne!(first, second);
    std::fs::write(&purpose, "this is not = = toml").unwrap();
    let out = s.vault.ctl(&["reload"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("driver_licence_renewal.toml") && err.contains("stays"),
        "{err}"
    );
    assert_eq!(hash(&s), second, "the set in force stays");
    // SIGHUP reloads too.
    std::fs::write(&purpose, &original).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hash(&s) != first && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(hash(&s), first, "SIGHUP reloaded the original set");

    stop.store(true, Ordering::Relaxed);
    assert!(loader.join().unwrap() > 0);
    assert!(s.stop().unwrap().success(), "{}", s.log_text());
    assert!(!sock.exists(), "the socket goes with the server");
    // Every record still reads (under the new KEK), and the log verifies.
    let v = crate::open_vault(&s.vault.data());
    for (id, _) in people.iter().take(5) {
        v.record(&vault_core::CitizenId::parse(id).unwrap())
            .unwrap();
    }
    drop(v);
    let all = ok(&s, &["audit", "verify"]);
    assert!(all.starts_with("audit log verified:"), "{all}");
    let log = ok(&s, &["audit", "export"]);
    for event in ["\"key.rotated\"", "\"record.erased\""] {
        assert!(log.contains(event), "{event}");
    }
    assert!(
        log.contains(&second.split_whitespace().last().unwrap().to_owned()),
        "an entry made under the reloaded set records its hash"
    );
}

#[test]
fn dev_mode_refuses_a_vault_it_did_not_make() {
    let v = vault_tests::TestVault::initialized();
    let out = std::process::Command::new(vault_tests::binary("vault-server"))
        .args(["dev", "--data"])
        .arg(v.data())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("VAULT_TEST_ROOT_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("was not made by `vault-server dev`") && err.contains("vault-server serve"),
        "{err}"
    );
    assert!(!v.data().join("dev").exists(), "nothing was added to it");
    let out = v.ctl(&["status"]);
    assert!(
        text(&out.stdout).contains("records:         0 citizens"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn the_walk_in_dev_modes_readme_runs_as_written() {
    let dev = vault_tests::portal::DevServer::start();
    let readme = std::fs::read_to_string(dev.data.join("dev/README.txt")).unwrap();
    assert!(
        readme.contains(&format!("V={}", dev.origin)),
        "the README names the bound address: {readme}"
    );
    assert!(
        !readme.contains("<index>") && !readme.contains("<access_token"),
        "{readme}"
    );
    // The command lines, as a reader pastes them (indented two spaces in the file).
    let starts = [
        "V=",
        "A=",
        "VAULTCTL=",
        "curl",
        "TOKEN=",
        "  -d",
        "  $V",
        "R=",
        "echo",
        "CT=",
        "U=",
        "B=",
        "G=",
        "$VAULTCTL",
    ];
    let script: String = readme
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| starts.iter().any(|s| l.starts_with(s)))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(script.lines().count() >= 20, "{script}");
    // `cargo run … --bin vaultctl --` stands for the vaultctl built here.
    let out = pasted(&script, dev.data.parent().unwrap());
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}\n{}", text(&out.stderr));
    assert!(!said.contains("\"code\":"), "a step was refused: {said}");
    assert!(said.contains("audit log verified:"), "{said}");
    assert!(
        said.trim_end().ends_with('}') && said.contains("\"status\":\"active\""),
        "the approved grant's token: {said}"
    );
}

#[test]
fn the_readme_walk_runs_as_written() {
    let dev = vault_tests::portal::DevServer::start();
    let readme = std::fs::read_to_string(vault_tests::repo_root().join("README.md")).unwrap();
    let walk = readme
        .split("## A walk with curl and a browser")
        .nth(1)
        .and_then(|r| r.split("## Operating it").next())
        .unwrap();
    let script: String = walk
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect::<Vec<_>>()
        .join("\n")
        .replace("V=https://127.0.0.1:8443", &format!("V={}", dev.origin));
    assert!(!script.contains('<'), "a placeholder is left: {script}");
    let out = pasted(&script, dev.data.parent().unwrap());
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}\n{}", text(&out.stderr));
    assert!(!said.contains("\"code\":"), "a step was refused: {said}");
    for done in [
        "\"status\":\"rejected\"",
        "\"outcome\":\"dismissed\"",
        "\"status\":\"acknowledged\"",
        "audit export verified:",
        "audit log verified:",
    ] {
        assert!(said.contains(done), "{done}: {said}");
    }
}

/// Runs lines as a reader pastes them into bash, in `dir`, with `cargo run … --bin vaultctl
/// --` standing for the vaultctl built here (a shim named `cargo` first on PATH).
fn pasted(script: &str, dir: &std::path::Path) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().unwrap();
    let shim = bin.path().join("cargo");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nwhile [ \"$1\" != \"--\" ]; do shift; done; shift\nexec {} \"$@\"\n",
            vault_tests::binary("vaultctl").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = std::ffi::OsString::from(bin.path());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("PATH", path)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn the_json_log_is_json_throughout_and_says_what_started_and_who_called() {
    let (mut s, people) = TestServer::start(2, &Limits::default());
    let c = s.client(Some(&s.agency_identity(AGENCY)));
    let _ = c.get(s.url("/v1/purposes")).send().unwrap();
    let _ = c.get(s.url("/v1/no-such-route")).send().unwrap();
    let _ = c.delete(s.url("/v1/purposes")).send().unwrap();
    let _ = s
        .client(None)
        .get(s.url("/v1/me/accesses"))
        .bearer_auth(s.citizen_token(&people[0].0))
        .send()
        .unwrap();
    assert!(s.stop().unwrap().success());
    let log = s.log_text();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let started = events
        .iter()
        .find(|e| e["fields"]["message"] == "vault-server started")
        .expect("a start-up event");
    let f = &started["fields"];
    assert_eq!(f["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(f["policy"].as_str().unwrap().len(), 64);
    assert_eq!(f["kek_version"], 1);
    assert!(f["tree_size"].as_u64().unwrap() > 0);
    assert!(
        f["server_certificate_not_after"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{f}"
    );
    assert!(events.iter().any(|e| {
        e["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("vault-server: listening on https://"))
    }));
    let requests: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "request")
        .map(|e| &e["fields"])
        .collect();
    assert!(
        requests
            .iter()
            .any(|r| r["caller"] == "agency" && r["agency"] == AGENCY && r["status"] == 200)
    );
    assert!(
        requests
            .iter()
            .any(|r| r["status"] == 404 && r["code"] == "not_found"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r["status"] == 405 && r["code"] == "method_not_allowed"),
        "{requests:?}"
    );
    assert!(requests.iter().any(|r| r["caller"] == "bearer"));
}

#[test]
fn a_backup_under_load_restores_into_a_vault_that_serves_with_every_record_and_entry() {
    let (mut s, people) = TestServer::start(20, &Limits::default());
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&s, &people[..4], Arc::clone(&stop));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("vault.backup");
    let said = ok(&s, &["backup", "--out", file.to_str().unwrap()]);
    assert!(said.contains("backup written: 20 citizens"), "{said}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    stop.store(true, Ordering::Relaxed);
    assert!(loader.join().unwrap() > 0);
    assert!(s.stop().unwrap().success(), "{}", s.log_text());
    let bytes = std::fs::read(&file).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        bytes[..bytes.len() - 1]
            .rsplit(|b| *b == b'\n')
            .next()
            .unwrap(),
    )
    .unwrap();
    let size = manifest["manifest"]["tree_size"].as_u64().unwrap();
    // No plaintext in the backup: no citizen id, no value.
    let hay = String::from_utf8_lossy(&bytes);
    for (id, fields) in &people {
        assert!(!hay.contains(id.as_str()));
        assert!(!hay.contains(fields["full_name"].as_str().unwrap()));
    }

    let restored = work.path().join("restored");
    let key = s.vault.data().join("keys/root.key");
    let restore = |from: &std::path::Path, into: &std::path::Path| {
        std::process::Command::new(vault_tests::binary("vaultctl"))
            .arg("--data")
            .arg(into)
            .arg("--root-key")
            .arg(&key)
            .arg("restore")
            .arg("--from")
            .arg(from)
            .env_remove("VAULT_TEST_ROOT_KEY")
            .output()
            .unwrap()
    };
    // A damaged backup is refused, naming the line, and leaves nothing behind.
    let mut damaged = bytes.clone();
    let at = damaged.len() / 2;
    damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
    let bad = work.path().join("damaged.backup");
    std::fs::write(&bad, &damaged).unwrap();
    let out = restore(&bad, &restored);
    assert!(!out.status.success());
    assert!(!restored.exists(), "nothing half-written");
    let out = restore(&file, &restored);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("audit log of {size} entries verified"))
            && said.contains("20 citizens"),
        "{said}"
    );
    // Into a directory that is not empty: refused.
    let out = restore(&file, &restored);
    assert!(!out.status.success() && text(&out.stderr).contains("not empty"));

    // Every entry up to the manifest's size is the original's, byte for byte.
    let export = |data: &std::path::Path| {
        let out = std::process::Command::new(vault_tests::binary("vaultctl"))
            .arg("--data")
            .arg(data)
            .arg("--root-key")
            .arg(&key)
            .args(["audit", "export", "--to", &size.to_string()])
            .env_remove("VAULT_TEST_ROOT_KEY")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        out.stdout
    };
    assert_eq!(export(&restored), export(&s.vault.data()));
    // Every record reads back the same, under the same root key.
    std::fs::create_dir_all(restored.join("keys")).unwrap();
    std::fs::copy(&key, restored.join("keys/root.key")).unwrap();
    {
        let a = crate::open_vault(&s.vault.data());
        let b = crate::open_vault(&restored);
        for (id, _) in &people {
            let id = vault_core::CitizenId::parse(id).unwrap();
            assert_eq!(a.record(&id).unwrap().fields, b.record(&id).unwrap().fields);
        }
    }
    // The restored vault serves.
    let config = std::fs::read_to_string(s.config_path()).unwrap();
    std::fs::write(
        s.config_path(),
        config.replace(
            &format!("data = \"{}\"", s.vault.data().display()),
            &format!("data = \"{}\"", restored.display()),
        ),
    )
    .unwrap();
    s.launch();
    let c = s.client(Some(&s.agency_identity(AGENCY)));
    let (st, g) = json_of(
        c.post(s.url("/v1/grants"))
            .json(
                &json!({"citizen_id": people[7].0, "purpose": "driver_licence_renewal",
                          "dossier_id": "HS-R", "fields": ["full_name"],
                          "official": {"id": "can-bo-01"}}),
            )
            .send()
            .unwrap(),
    );
    assert_eq!(st, 201, "{g}");
    let (st, r) = json_of(
        c.get(s.url(&format!(
            "/v1/citizens/{}/fields?fields=full_name",
            people[7].0
        )))
        .bearer_auth(g["access_token"].as_str().unwrap())
        .send()
        .unwrap(),
    );
    assert_eq!(
        (st, &r["fields"]["full_name"]),
        (200, &people[7].1["full_name"])
    );
    assert!(r["audit"]["index"].as_u64().unwrap() > size);
    assert!(s.stop().unwrap().success());
}

#[test]
fn a_backup_without_a_server_restores_and_is_audited() {
    let v = vault_tests::TestVault::initialized();
    let file = v.root().join("c.jsonl");
    crate::demo_file(&v, &file, 30, 4);
    assert!(v.ctl(&["import", file.to_str().unwrap()]).status.success());
    let backup = v.root().join("b.backup");
    let out = v.ctl(&["backup", "--out", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("30 citizens"));
    // The backup is in the log.
    let log = text(&v.ctl(&["audit", "export"]).stdout);
    assert!(
        log.lines().last().unwrap().contains("\"backup.created\""),
        "{log}"
    );
    let into = v.root().join("copy");
    let out = std::process::Command::new(vault_tests::binary("vaultctl"))
        .arg("--data")
        .arg(&into)
        .arg("--root-key")
        .arg(v.data().join("keys/root.key"))
        .args(["restore", "--from", backup.to_str().unwrap()])
        .env_remove("VAULT_TEST_ROOT_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Without the root key: refused, nothing written.
    let out = std::process::Command::new(vault_tests::binary("vaultctl"))
        .arg("--data")
        .arg(v.root().join("copy2"))
        .args(["restore", "--from", backup.to_str().unwrap()])
        .env_remove("VAULT_TEST_ROOT_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("the root key is never in a backup"),
        "{}",
        text(&out.stderr)
    );
    assert!(!v.root().join("copy2").exists());
}
