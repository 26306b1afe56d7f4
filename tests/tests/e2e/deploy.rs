//! What `deploy/` ships, checked with the tools an operator would use: the systemd unit
//! with `systemd-analyze verify` and its exposure score, the Kubernetes manifests with
//! `kubernetes-validate`, the configuration they carry with the server's own parser, and
//! the server running as an unprivileged user that can write only its data directory.
//! (No image can be built here: no registry is reachable for the base images.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use vault_tests::server::{Limits, TestServer};
use vault_tests::{repo_root, text};

/// Whether a tool is on PATH; in CI (`CDV_TESTS_REQUIRE_ROOT`) it must be.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("CDV_TESTS_REQUIRE_ROOT").is_none(),
        "{tool} is required in CI (.ci/run installs it)"
    );
    found
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    if !have("systemd-analyze") {
        return;
    }
    let unit =
        std::fs::read_to_string(repo_root().join("deploy/systemd/vault-server.service")).unwrap();
    for needed in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=vault",
        "LimitNOFILE=",
        "StateDirectory=vault",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    // `verify` checks that the executable exists: point it at the one built here.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault-server.service");
    let binary = vault_tests::binary("vault-server");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/vault-server", binary.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && text(&out.stderr).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let said = text(&out.stdout);
    let score: f64 = said
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for vault-server.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score: {said}{}", text(&out.stderr)));
    assert!(score <= 2.0, "exposure {score} (at most 2.0, \"OK\")");
}

#[test]
fn the_kubernetes_manifests_validate_and_carry_a_configuration_the_server_accepts() {
    let dir = repo_root().join("deploy/kubernetes");
    let manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(manifests.len() >= 4, "{manifests:?}");
    let statefulset = std::fs::read_to_string(dir.join("statefulset.yaml")).unwrap();
    for needed in [
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "path: /healthz",
        "path: /readyz",
        "volumeClaimTemplates",
        "secretName: vault-root-key",
    ] {
        assert!(
            statefulset.contains(needed),
            "statefulset.yaml lacks {needed}"
        );
    }
    assert!(
        std::fs::read_to_string(dir.join("networkpolicy.yaml"))
            .unwrap()
            .contains("kind: NetworkPolicy")
    );
    // The configuration in the ConfigMap parses and validates as the server reads it.
    let map = std::fs::read_to_string(dir.join("configmap.yaml")).unwrap();
    let toml: String = map
        .split("vault-server.toml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    // Its files, as the Secrets and the image would provide them, under a scratch root.
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().display().to_string();
    let toml = toml.replace("= \"/", &format!("= \"{root}/"));
    for line in toml.lines() {
        let Some(path) = line
            .split(&format!("\"{root}/"))
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let path = scratch.path().join(path);
        if path.extension().is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
        } else {
            std::fs::create_dir_all(&path).unwrap();
        }
    }
    vault_server::config::Config::parse(&toml, "configmap.yaml", &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e}"));
    if !have("kubernetes-validate") {
        return;
    }
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&manifests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn the_server_runs_as_an_unprivileged_user_writing_only_its_data_directory() {
    // Needs root to hand the files to another user and switch to it.
    use std::os::unix::fs::MetadataExt as _;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        assert!(
            std::env::var_os("CDV_TESTS_REQUIRE_ROOT").is_none(),
            "CI runs this test as root"
        );
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let (mut s, people) = TestServer::start(
        3,
        &Limits {
            parent: Some(parent.path().to_owned()),
            ..Limits::default()
        },
    );
    s.stop();
    // Everything readable by the server's user; only the data directory its own.
    let root = s.vault.root().to_owned();
    let run = |args: &[&str]| {
        let ok = Command::new(args[0])
            .args(&args[1..])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{args:?}");
    };
    run(&[
        "chmod",
        "0755",
        parent.path().to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    run(&["chmod", "-R", "a+rX", root.join("pki").to_str().unwrap()]);
    run(&["chmod", "a+r", s.config_path().to_str().unwrap()]);
    run(&[
        "chown",
        "-R",
        "nobody:nogroup",
        s.vault.data().to_str().unwrap(),
    ]);
    s.run_as = Some(65534);
    s.launch();
    let c = s.client(Some(&s.agency_identity("csgt-cong-an-tphcm")));
    let r = c.get(s.url("/readyz")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", s.log_text());
    let g: serde_json::Value = c
        .post(s.url("/v1/grants"))
        .json(
            &serde_json::json!({"citizen_id": people[0].0, "purpose": "driver_licence_renewal",
                                   "dossier_id": "HS-U", "fields": ["full_name"],
                                   "official": {"id": "can-bo-01"}}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    let r = c
        .get(s.url(&format!(
            "/v1/citizens/{}/fields?fields=full_name",
            people[0].0
        )))
        .bearer_auth(g["access_token"].as_str().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The process is nobody's, and nothing outside the data directory became its.
    let pid = s.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_owned();
    assert!(uid.split_whitespace().nth(1) == Some("65534"), "{uid}");
    assert!(s.stop().unwrap().success(), "{}", s.log_text());
    let out = Command::new("find")
        .arg(&root)
        .args(["-user", "nobody", "-not", "-path"])
        .arg(format!("{}/*", s.vault.data().display()))
        .args(["-not", "-path"])
        .arg(s.vault.data())
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout).trim(),
        "",
        "files the server made outside its data directory"
    );
}
