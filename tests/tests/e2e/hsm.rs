//! The root key in a PKCS#11 token (SoftHSM2 from Debian, a token made by the test): `init`
//! creates a key object that never leaves the token, and `import`, `keys rotate`, `audit
//! verify`, `status`, `serve` and a restart all work with it; a wrong or missing PIN is
//! refused plainly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use vault_tests::server::{AUDIENCE, Ca, ISSUER, install_provider, jwks_of, oidc_key};
use vault_tests::{binary, policies_dir, text};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn softhsm() -> bool {
    let found = Path::new(MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("CDV_TESTS_REQUIRE_ROOT").is_none(),
        "SoftHSM2 is required in CI (.ci/run installs softhsm2)"
    );
    found
}

#[test]
fn a_root_key_in_a_pkcs11_token_imports_rotates_serves_and_restarts() {
    if !softhsm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let made = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "vault",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let data = dir.path().join("vault-data");
    let key = format!("pkcs11:token=vault;object=vault-root?module-path={MODULE}");
    let ctl = |args: &[&str], pin: Option<&str>| {
        let mut c = Command::new(binary("vaultctl"));
        c.arg("--data")
            .arg(&data)
            .arg("--policies")
            .arg(policies_dir())
            .arg("--root-key")
            .arg(&key)
            .args(args)
            .env("SOFTHSM2_CONF", &conf)
            .env_remove("VAULT_TEST_ROOT_KEY")
            .env_remove("VAULT_PKCS11_PIN");
        if let Some(p) = pin {
            c.env("VAULT_PKCS11_PIN", p);
        }
        c.output().unwrap()
    };
    let ok = |args: &[&str]| {
        let out = ctl(args, Some("1234"));
        assert!(
            out.status.success(),
            "vaultctl {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let said = ok(&["init"]);
    assert!(said.contains("never leaves"), "{said}");
    assert!(!data.join("keys/root.key").exists(), "no key file");
    let demo = ctl(&["demo-data", "--count", "25", "--seed", "3"], None);
    let file = dir.path().join("c.jsonl");
    std::fs::write(&file, &demo.stdout).unwrap();
    assert!(ok(&["import", file.to_str().unwrap()]).contains("25 created"));
    assert!(ok(&["keys", "rotate"]).contains("KEK v1 -> v2"));
    assert!(ok(&["audit", "verify"]).starts_with("audit log verified:"));
    assert!(ok(&["status"]).contains("records:         25 citizens"));
    // A wrong PIN and no PIN are refused, saying what is wrong.
    let out = ctl(&["status"], Some("9999"));
    assert!(
        !out.status.success() && text(&out.stderr).contains("PIN"),
        "{}",
        text(&out.stderr)
    );
    let out = ctl(&["status"], None);
    assert!(!out.status.success() && text(&out.stderr).contains("VAULT_PKCS11_PIN"));

    // Serve it, stop it, serve it again.
    install_provider();
    let ca = Ca::new("hsm test CA");
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let (cert, k) = ca.issue(
        vec![rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ]))],
        true,
        false,
    );
    std::fs::write(pki.join("server.pem"), cert).unwrap();
    std::fs::write(pki.join("server.key"), k).unwrap();
    std::fs::write(pki.join("ca.pem"), &ca.pem).unwrap();
    let pk8 = oidc_key();
    std::fs::write(pki.join("jwks.json"), jwks_of(&[(&pk8, "k1")]).to_string()).unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata = \"{}\"\nroot_key = \"{key}\"\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\
             [oidc]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{}\"\n\
             [server]\nmetrics_listen = \"off\"\n",
            data.display(),
            pki.join("server.pem").display(),
            pki.join("server.key").display(),
            pki.join("ca.pem").display(),
            pki.join("jwks.json").display(),
        ),
    )
    .unwrap();
    for round in 0..2 {
        let mut child = Command::new(binary("vault-server"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("SOFTHSM2_CONF", &conf)
            .env("VAULT_PKCS11_PIN", "1234")
            .env_remove("VAULT_TEST_ROOT_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = String::new();
        let addr = loop {
            let Some(Ok(l)) = lines.next() else {
                let _ = child.kill();
                panic!("round {round}: the server did not start: {log}");
            };
            log.push_str(&l);
            log.push('\n');
            if let Some(a) = vault_tests::server::after(&l, "listening on https://") {
                break a.to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let client = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let ready = client.get(format!("https://{addr}/readyz")).send().unwrap();
        assert_eq!(ready.status().as_u16(), 200, "round {round}");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(child.wait().unwrap().success(), "round {round}");
    }
    assert!(ok(&["audit", "verify"]).starts_with("audit log verified:"));
}
