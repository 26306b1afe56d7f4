//! TLS refusals with a real, independent client (`openssl s_client`): TLS 1.0 and 1.1 and
//! non-AEAD suites never complete a handshake with the vault, while TLS 1.2 with an AEAD
//! suite and TLS 1.3 do. Each refusal has a positive control: the same client with the
//! same options completes a handshake with `openssl s_server`, so a refusal is the vault's,
//! not the client's. (No certificate, another CA's, an expired one and one naming no agency:
//! `server::every_route_refuses_missing_and_wrong_credentials_with_problem_json`.)

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vault_tests::server::{Limits, TestServer};

/// Legacy protocols and suites need OpenSSL's security level 0 on the client side.
const LEGACY: &str = "DEFAULT@SECLEVEL=0";
/// CBC (non-AEAD) suites for TLS 1.2 with ECDSA and RSA keys.
const CBC: &str = "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:\
                   ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:AES128-SHA256:AES128-SHA:\
                   @SECLEVEL=0";

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn of(s: &TestServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let id = s.agency_identity("bench-agency");
        std::fs::write(dir.path().join("client.pem"), &id.cert).unwrap();
        std::fs::write(dir.path().join("client.key"), &id.key).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `openssl s_client` to `addr` with `args`, sending one HTTP request: whether an HTTP
/// answer came back (the handshake completed) and what the client printed.
fn s_client(addr: &str, ca: &Path, pki: &Pki, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            addr,
            "-servername",
            "localhost",
            "-CAfile",
        ])
        .arg(ca)
        .arg("-cert")
        .arg(pki.path("client.pem"))
        .arg("-key")
        .arg(pki.path("client.key"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // openssl is needed for this test (.ci/run installs it).
        .spawn()
        .unwrap();
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        // Closing stdin too early can end s_client before the answer: it waits for EOF
        // from the server instead (-ign_eof below).
    }
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The vault answers HTTP/1.1, `s_server -www` HTTP/1.0.
    (
        said.contains("HTTP/1.1 200") || said.contains("HTTP/1.0 200"),
        said,
    )
}

/// A control server: `openssl s_server` with the vault's own certificate, accepting
/// `args` (a legacy protocol or suite), answering HTTP with `-www`.
struct Control {
    child: std::process::Child,
    addr: String,
}

impl Control {
    fn start(pki_dir: &Path, args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-www", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(pki_dir.join("server.pem"))
            .arg("-key")
            .arg(pki_dir.join("server.key"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn legacy_protocols_and_non_aead_suites_are_refused_modern_ones_accepted() {
    let work = tempfile::tempdir().unwrap();
    let (s, _) = TestServer::start(
        2,
        &Limits {
            policies: Some(
                vault_tests::bench::bench_policies(work.path(), &vault_tests::bench::FIELDS)
                    .unwrap(),
            ),
            ..Limits::default()
        },
    );
    let pki = Pki::of(&s);
    let ca = s.pki_dir().join("ca.pem");
    let vault = s.addr.to_string();

    // Accepted: TLS 1.3, and TLS 1.2 with an AEAD suite.
    for args in [
        vec!["-tls1_3", "-ign_eof"],
        vec![
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
            "-ign_eof",
        ],
    ] {
        let (ok, said) = s_client(&vault, &ca, &pki, &args);
        assert!(ok, "{args:?} must be accepted: {said}");
    }

    // Refused by the vault; accepted by the control server with the same client options.
    let refused: [(&str, Vec<&str>, Vec<&str>); 3] = [
        (
            "TLS 1.0",
            vec!["-tls1", "-cipher", LEGACY, "-ign_eof"],
            vec!["-tls1", "-cipher", LEGACY],
        ),
        (
            "TLS 1.1",
            vec!["-tls1_1", "-cipher", LEGACY, "-ign_eof"],
            vec!["-tls1_1", "-cipher", LEGACY],
        ),
        (
            "TLS 1.2 with CBC suites",
            vec!["-tls1_2", "-cipher", CBC, "-ign_eof"],
            vec!["-tls1_2", "-cipher", CBC],
        ),
    ];
    for (what, client, server) in refused {
        let control = Control::start(&s.pki_dir(), &server);
        let (ok, said) = s_client(&control.addr, &ca, &pki, &client);
        assert!(
            ok,
            "control: the client must manage {what} with s_server: {said}"
        );
        let (ok, said) = s_client(&vault, &ca, &pki, &client);
        assert!(!ok, "{what} must be refused by the vault: {said}");
        assert!(
            said.contains("alert")
                || said.contains("no protocols")
                || said.contains("handshake failure")
                || said.contains("Cipher is (NONE)"),
            "{what}: refused at the handshake: {said}"
        );
    }
}
